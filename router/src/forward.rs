//! One request, top to bottom: name → route → payment → concurrency slot →
//! body → worker → forward (retrying only where the request cannot have
//! reached a worker) → response streamed back and counted for attestation.
//!
//! Every refusal is a [`Refusal`]: a status and a sentence that says what
//! to do, sent as `text/plain` with the request id.

use crate::body::{Guarded, RouterBody, insert_request_id, text};
use crate::limits::RETRIES_MAX;
use crate::route::{self, Target};
use crate::select::{self, Candidate, WorkerHealth};
use crate::state::{Shared, WorkerClient, error_chain};
use crate::table::{NameEntry, SplitRoute, WorkerEntry};
use crate::{RouteTable, RouterLimits, attest, status};
use bonus_ids::{PublicKey, RequestId};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The request id, set by the router and kept from the worker.
pub(crate) const REQUEST_ID: &str = "x-bonus-request-id";
/// The router's key, for the worker's receipt.
const ROUTER: &str = "x-bonus-router";
/// The worker that answered.
const WORKER: &str = "x-bonus-worker";
/// The Host the client sent.
const FORWARDED_HOST: &str = "x-forwarded-host";

/// Headers that describe one connection, never forwarded either way
/// (with `proxy-*` and whatever `Connection` names).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A request the router answers itself.
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// Answers one request from the edge. Never fails: every failure is an
/// answer.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Response<RouterBody> {
    let request_id = shared.next_request_id();
    if let Some(response) = status::answer(&shared, &request, request_id) {
        return response;
    }
    match forward(&shared, request, request_id).await {
        Ok(response) => response,
        Err(refusal) => {
            let mut response = text(refusal.status, request_id, &refusal.message);
            if refusal.status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    }
}

async fn forward(
    shared: &Shared,
    request: Request<Incoming>,
    request_id: RequestId,
) -> Result<Response<RouterBody>, Refusal> {
    let host = host_of(&request)?;
    let target = route::target(host.as_deref(), request.uri())
        .map_err(|e| Refusal::new(e.status(), e.message()))?;
    let table = shared.table();
    let entry = admit(&table, &target)?;
    let slot = Slot::acquire(&entry.inflight, shared.limits.concurrency_per_function).ok_or_else(
        || {
            Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} has {} requests in flight, the most this router allows; retry in a second",
                    target.name, shared.limits.concurrency_per_function
                ),
            )
        },
    )?;
    let split = pick_split(shared, &entry.route.splits)?;
    let (parts, body) = request.into_parts();
    let body = read_body(body, &shared.limits).await?;
    let outgoing = Outgoing {
        parts: &parts,
        body,
        target: &target,
        split,
        request_id,
        period: attest::period_now(shared),
    };
    let (response, worker, outstanding) = send(shared, &table, &outgoing).await?;
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    // A worker that says it did not run the request is not vouched for.
    if let Some(period) = outgoing.period
        && worker.attest
        && !response.headers().contains_key(NOT_RUN)
    {
        attest::count(shared, period, split.manifest_id, worker.key);
    }
    Ok(finish(response, worker, request_id, (slot, outstanding)))
}

/// The Host header, or the authority of an absolute-form request target.
fn host_of(request: &Request<Incoming>) -> Result<Option<String>, Refusal> {
    match request.headers().get(header::HOST) {
        Some(value) => value
            .to_str()
            .map(|host| Some(host.to_string()))
            .map_err(|_| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid Host header: it must be printable ASCII",
                )
            }),
        None => Ok(request.uri().authority().map(|a| a.to_string())),
    }
}

/// The name's table entry, if it is deployed and paid for.
fn admit<'t>(table: &'t RouteTable, target: &Target) -> Result<&'t NameEntry, Refusal> {
    let name = &target.name;
    let entry = table.entry(name).ok_or_else(|| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no function named {name:?} is deployed; deploy it with `bonus deploy`"),
        )
    })?;
    if entry.route.unpaid {
        return Err(Refusal::new(
            StatusCode::PAYMENT_REQUIRED,
            format!(
                "the owner of {name:?} cannot pay for it (its balance or this period's budget is spent); the owner can top up with `bonus transfer` and raise the budget with `bonus fund`"
            ),
        ));
    }
    Ok(entry)
}

fn pick_split<'r>(shared: &Shared, splits: &'r [SplitRoute]) -> Result<&'r SplitRoute, Refusal> {
    let weights = splits.iter().map(|split| split.weight);
    select::pick_weighted(weights, shared.rng.next_u64())
        .and_then(|index| splits.get(index))
        .ok_or_else(|| {
            // The table refuses routes without weight.
            debug_assert!(false, "a route in the table has weight");
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "route without weight")
        })
}

/// The whole request body, within the size and time limits.
async fn read_body(body: Incoming, limits: &RouterLimits) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} bytes, the most this router forwards",
                limits.body_bytes_max
            ),
        )
    };
    // A declared length over the limit is refused before reading a byte.
    if body.size_hint().lower() > limits.body_bytes_max {
        return Err(too_large());
    }
    // Most requests (GET) have none: no timer to arm for them.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limit = usize::try_from(limits.body_bytes_max).unwrap_or(usize::MAX);
    match tokio::time::timeout(
        limits.body_read_timeout,
        Limited::new(body, limit).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {}", error_chain(&*e)),
        )),
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                limits.body_read_timeout.as_millis()
            ),
        )),
    }
}

/// What is sent to a worker, whichever worker it is.
struct Outgoing<'a> {
    parts: &'a http::request::Parts,
    body: Bytes,
    target: &'a Target,
    split: &'a SplitRoute,
    request_id: RequestId,
    /// The period this request is attested in, if the router attests.
    period: Option<u64>,
}

thread_local! {
    /// This thread's pool of connections to workers (one serving runtime
    /// per thread; see [`crate::state::worker_client`]).
    static CLIENT: WorkerClient = crate::state::worker_client();
}

/// Calls `f` with this thread's worker client.
fn with_client<T>(f: impl FnOnce(&WorkerClient) -> T) -> T {
    CLIENT.with(f)
}

/// A worker's answer header: it refused before running the function.
pub const NOT_RUN: &str = "x-bonus-not-run";

/// The settlement period the router attests a forwarded request in; the
/// worker files its receipt under the same period.
pub const PERIOD: &str = "x-bonus-period";

/// Sends to the chosen worker; on a failed connection (the request never
/// left), to up to [`RETRIES_MAX`] others. Anything else is final: the
/// function may have run.
async fn send<'t>(
    shared: &Shared,
    table: &'t RouteTable,
    outgoing: &Outgoing<'_>,
) -> Result<(Response<RouterBody>, &'t WorkerEntry, Outstanding), Refusal> {
    let mut tried: Vec<PublicKey> = Vec::new();
    loop {
        let worker = pick_worker(table, outgoing, &tried, shared.rng.next_u64())?;
        let outstanding = Outstanding::start(&worker.health);
        let local = shared.local.get().filter(|local| local.key() == worker.key);
        let request = build(shared, outgoing, worker, local.is_some())?;
        let sent = async {
            match local {
                // In process: no connection, so nothing to fail but the call.
                Some(local) => Ok(local.call(outgoing.split.manifest_id, request).await),
                None => with_client(|client| client.request(request))
                    .await
                    .map(|response| response.map(BodyExt::boxed)),
            }
        };
        let sent = tokio::time::timeout(shared.limits.forward_timeout, sent);
        let error = match sent.await {
            Ok(Ok(response)) if response.headers().contains_key(NOT_RUN) => {
                // The worker refused before running anything (it could not
                // load the function, or is at its concurrency limit): as
                // safe to retry elsewhere as a failed connection, if there
                // is an elsewhere.
                let mut others = tried.clone();
                others.push(worker.key);
                let another = others.len() <= RETRIES_MAX
                    && pick_worker(table, outgoing, &others, shared.rng.next_u64()).is_ok();
                if !another {
                    return Ok((response, worker, outstanding));
                }
                tried = others;
                shared.retried.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Ok(response)) => {
                worker.health.served(outgoing.split.manifest_id);
                return Ok((response, worker, outstanding));
            }
            Ok(Err(error)) => error,
            Err(_) => {
                return Err(Refusal::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "worker {} did not answer within {} s",
                        worker.key,
                        shared.limits.forward_timeout.as_secs_f64()
                    ),
                ));
            }
        };
        if !error.is_connect() {
            return Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "worker {} failed before answering: {}",
                    worker.key,
                    error_chain(&error)
                ),
            ));
        }
        if worker.health.mark_down() {
            tracing::warn!(worker = %worker.key, error = %error_chain(&error), "worker unreachable; marked down");
        }
        tried.push(worker.key);
        if tried.len() > RETRIES_MAX {
            return Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "could not connect to {} workers for {}",
                    tried.len(),
                    outgoing.target.name
                ),
            ));
        }
        shared.retried.fetch_add(1, Ordering::Relaxed);
    }
}

/// The worker for this attempt, or 503 saying why there is none.
fn pick_worker<'t>(
    table: &'t RouteTable,
    outgoing: &Outgoing<'_>,
    tried: &[PublicKey],
    random: u64,
) -> Result<&'t WorkerEntry, Refusal> {
    let price_max = outgoing.split.price_per_million_fuel_max;
    let (mut healthy, mut entries, mut candidates) = (0, Vec::new(), Vec::new());
    for worker in table.workers() {
        let Some(rtt_us) = worker
            .health
            .rtt_us()
            .filter(|_| worker.health.is_healthy())
        else {
            continue;
        };
        healthy += 1;
        if worker.price_per_million_fuel > price_max || tried.contains(&worker.key) {
            continue;
        }
        entries.push(worker);
        candidates.push(Candidate {
            key: worker.key,
            rtt_us,
            outstanding: worker.health.outstanding.load(Ordering::Relaxed),
            warm: worker.health.is_warm(&outgoing.split.manifest_id),
        });
    }
    if let Some(index) = select::choose(&outgoing.split.manifest_id, &candidates, random) {
        return Ok(entries[index]);
    }
    let name = &outgoing.target.name;
    let registered = table.worker_count();
    let why = if healthy > 0 && tried.is_empty() {
        format!(", none at or below its price of {price_max} per million fuel")
    } else {
        String::new()
    };
    Err(Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no healthy worker can run {name} ({registered} registered, {healthy} healthy{why}); retry shortly"
        ),
    ))
}

/// The request to `worker`: `/v1/run/<manifest hex><function path>`
/// (only the function path for a worker in this process), end-to-end
/// headers, and the router's own.
fn build(
    shared: &Shared,
    outgoing: &Outgoing<'_>,
    worker: &WorkerEntry,
    local: bool,
) -> Result<Request<Full<Bytes>>, Refusal> {
    let uri = match local {
        true => outgoing.target.path_and_query.clone(),
        false => format!(
            "{}/v1/run/{}{}",
            worker.base,
            outgoing.split.manifest_id.to_hex(),
            outgoing.target.path_and_query
        ),
    };
    let uri: http::Uri = uri.parse().map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "the request path cannot be forwarded",
        )
    })?;
    let mut request = Request::new(Full::new(outgoing.body.clone()));
    *request.method_mut() = outgoing.parts.method.clone();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    copy_end_to_end(&outgoing.parts.headers, headers);
    // The client's Host names the router; the worker's comes from the URI.
    headers.remove(header::HOST);
    // Recomputed from the collected body.
    headers.remove(header::CONTENT_LENGTH);
    // Only the router says which Host the client used.
    headers.remove(FORWARDED_HOST);
    if let Some(host) = outgoing.parts.headers.get(header::HOST) {
        headers.insert(FORWARDED_HOST, host.clone());
    }
    insert_request_id(headers, outgoing.request_id);
    headers.insert(ROUTER, shared.router_header.clone());
    // Only the router says which period it attests in.
    headers.remove(PERIOD);
    if let Some(period) = outgoing.period {
        headers.insert(PERIOD, HeaderValue::from(period));
    }
    Ok(request)
}

/// Copies `from` into `to` without hop-by-hop headers.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        let hop = HOP_BY_HOP.contains(&name.as_str())
            || name.as_str().starts_with("proxy-")
            || named.iter().any(|n| n == name.as_str());
        if !hop {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The worker's response, with end-to-end headers, `x-bonus-worker`, and
/// its body holding `guards` until it ends.
fn finish<G: Send + Sync + Unpin + 'static>(
    response: Response<RouterBody>,
    worker: &WorkerEntry,
    request_id: RequestId,
    guards: G,
) -> Response<RouterBody> {
    let (mut parts, body) = response.into_parts();
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 2);
    copy_end_to_end(&parts.headers, &mut headers);
    headers.insert(WORKER, worker.key_header.clone());
    if !headers.contains_key(REQUEST_ID) {
        insert_request_id(&mut headers, request_id);
    }
    parts.headers = headers;
    Response::from_parts(parts, Guarded::wrap(body, guards))
}

/// A per-function concurrency slot, released when the response ends.
struct Slot(Arc<AtomicU64>);

impl Slot {
    fn acquire(inflight: &Arc<AtomicU64>, max: usize) -> Option<Slot> {
        let before = inflight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(inflight.clone());
        (before < max as u64).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One forward in flight to a worker, until its response ends.
struct Outstanding(Arc<WorkerHealth>);

impl Outstanding {
    fn start(health: &Arc<WorkerHealth>) -> Outstanding {
        health.outstanding.fetch_add(1, Ordering::AcqRel);
        Outstanding(health.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut from = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("x-kept", "a"),
            ("accept", "text/plain"),
        ] {
            from.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        from.append(
            HeaderName::from_static("x-kept"),
            HeaderValue::from_static("b"),
        );
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to);
        let mut names: Vec<&str> = to.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "x-kept"]);
        assert_eq!(to.get_all("x-kept").iter().count(), 2);
    }

    #[test]
    fn slots_stop_at_the_limit_and_come_back() {
        let inflight = Arc::new(AtomicU64::new(0));
        let first = Slot::acquire(&inflight, 2).expect("free");
        let second = Slot::acquire(&inflight, 2).expect("free");
        assert!(Slot::acquire(&inflight, 2).is_none());
        drop(first);
        assert!(Slot::acquire(&inflight, 2).is_some());
        drop(second);
        assert_eq!(inflight.load(Ordering::Relaxed), 0);
    }
}
