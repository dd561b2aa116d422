//! The node's HTTP API: JSON at the edge, artifacts streamed.
//!
//! - `GET  /v1/node`: peer id, P2P addresses, counts.
//! - `HEAD|GET /v1/artifacts/<id>`: whether the node holds it / its bytes.
//! - `PUT  /v1/artifacts/<id>`: upload, streamed, verified against `<id>`,
//!   size-limited while streaming, checked to be a servable component.
//! - `POST /v1/artifacts/<id>/fetch`: fetch it from peers.
//! - `POST /v1/manifests`: a signed manifest (binary); stores it (and,
//!   without a ledger, binds its name here), fetching its artifact from
//!   peers if needed.
//! - `GET  /v1/functions`: the functions this node knows.
//! - `GET  /v1/health`: for routers' probes.
//! - `GET  /v1/logs/<name>?after=<seq>`: the name's recent lines here, for
//!   its owner only (a signed, timed request: `logs.rs`).
//! - `/v1/run/<manifest>/<path>`: run a function version (routers call it;
//!   `x-bonus-router` marks the request as routed, so it is settled).
//! - `/fn/<name>/<path>`: invoke the function a name points at.

use super::receipts::Receipt;
use super::{Deployed, NAME_TTL, Worker};
use crate::http::{HttpLimits, Stop};
use crate::pipeline::headers;
use crate::wire;
use bonus_ids::{ArtifactId, ManifestId, PublicKey, RequestId};
use bonus_registry::{Error as RegistryError, NameBinder, SignedManifest};
use bonus_runtime::{Capabilities, Limits, OutboundPolicy};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Response = http::Response<Full<Bytes>>;

/// Largest signed manifest accepted.
const MANIFEST_BYTES_MAX: usize = 64 << 10;

pub async fn serve(
    listener: tokio::net::TcpListener,
    worker: Arc<Worker>,
    limits: HttpLimits,
    stop: Stop,
) {
    crate::http::serve(listener, limits, stop, move |request| {
        let worker = worker.clone();
        async move { route(&worker, request).await }
    })
    .await;
}

async fn route(node: &Arc<Worker>, request: http::Request<Incoming>) -> Response {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    let method = request.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["v1", "node"]) => node_info(node).await,
        (Method::GET | Method::HEAD, ["v1", "artifacts", id]) => {
            get_artifact(node, id, request.method() == Method::HEAD)
        }
        (Method::PUT, ["v1", "artifacts", id]) => put_artifact(node, id, request).await,
        (Method::POST, ["v1", "artifacts", id, "fetch"]) => fetch_artifact(node, id).await,
        (Method::POST, ["v1", "manifests"]) => post_manifest(node, request).await,
        (Method::GET, ["v1", "functions"]) => list_functions(node).await,
        (Method::GET, ["v1", "logs", name]) => {
            let name = name.to_string();
            read_logs(node, &name, &request).await
        }
        (Method::GET, ["v1", "health"]) => {
            if !node.probe_delay.is_zero() {
                tokio::time::sleep(node.probe_delay).await;
            }
            // Routers send nothing to a worker whose owner is busy.
            match node.idle.as_ref().filter(|idle| idle.backing_off()) {
                Some(_) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({ "ok": false, "reason": "idle-only: the owner is using the machine" }),
                ),
                None => json(StatusCode::OK, serde_json::json!({ "ok": true })),
            }
        }
        (_, ["v1", "run", manifest, ..]) => {
            let manifest = manifest.to_string();
            invoke_manifest(node, &manifest, request).await
        }
        (_, ["fn", name, ..]) => {
            let name = name.to_string();
            invoke_name(node, &name, request).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint; see `bonus node --help`",
        ),
    }
}

fn json(status: StatusCode, value: impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(&value).expect("wire types serialize");
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json(
        status,
        wire::ErrorBody {
            error: message.to_string(),
        },
    )
}

fn registry_error(e: &RegistryError) -> Response {
    let status = match e {
        RegistryError::ArtifactTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        RegistryError::ArtifactUnknown { .. } | RegistryError::ManifestUnknown { .. } => {
            StatusCode::NOT_FOUND
        }
        RegistryError::NameTaken { .. } => StatusCode::CONFLICT,
        RegistryError::ManifestSignatureInvalid { .. } => StatusCode::UNAUTHORIZED,
        RegistryError::Index(_)
        | RegistryError::Io { .. }
        | RegistryError::FetchNotStored { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e)
}

async fn node_info(node: &Worker) -> Response {
    let blobs = node.store.blobs().map(|b| b.len()).unwrap_or(0);
    let peers = node.p2p.connected_peers().await.len();
    let receipts = node.receipts.as_ref().and_then(|r| r.summary().ok());
    json(
        StatusCode::OK,
        wire::NodeInfo {
            key: node.key.public().to_string(),
            price_per_million_fuel: node.price.to_string(),
            usage: receipts,
            peer_id: node.p2p.peer_id().to_string(),
            p2p_addrs: node.p2p.addrs().iter().map(ToString::to_string).collect(),
            artifacts: blobs,
            connected_peers: peers,
            idle_only: node.idle.as_ref().map(|idle| wire::IdleStatus {
                backing_off: idle.backing_off(),
                others_load: idle.others_load(),
            }),
        },
    )
}

fn parse_id(id: &str) -> Result<ArtifactId, Box<Response>> {
    id.parse()
        .map_err(|e: bonus_ids::InvalidArtifactId| Box::new(error(StatusCode::BAD_REQUEST, e)))
}

fn get_artifact(node: &Worker, id: &str, head: bool) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match node.store.blob_info(&id) {
        Ok(Some(info)) if head => {
            let mut response = http::Response::new(Full::new(Bytes::new()));
            response
                .headers_mut()
                .insert("x-bonus-artifact-bytes", info.bytes.into());
            response
        }
        Ok(Some(_)) => match node.store.read_blob(&id) {
            Ok(bytes) => http::Response::new(Full::new(Bytes::from(bytes))),
            Err(e) => registry_error(&e),
        },
        Ok(None) => error(StatusCode::NOT_FOUND, format!("unknown artifact {id}")),
        Err(e) => registry_error(&e),
    }
}

async fn put_artifact(node: &Arc<Worker>, id: &str, request: http::Request<Incoming>) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    if let Ok(Some(_)) = node.store.blob_info(&id) {
        return json(
            StatusCode::OK,
            wire::ArtifactStored {
                artifact_id: id.to_string(),
                bytes: None,
                new: false,
            },
        );
    }
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut writer = match node.store.writer(Some(id), declared) {
        Ok(writer) => writer,
        Err(e) => return registry_error(&e),
    };
    // Kept in memory too (bounded by the artifact limit) to check it is a
    // servable component before it is committed.
    let mut bytes = Vec::new();
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}")),
        };
        if let Some(chunk) = frame.data_ref() {
            if let Err(e) = writer.write(chunk) {
                return registry_error(&e);
            }
            bytes.extend_from_slice(chunk);
        }
    }
    let runtime = node.runtime.clone();
    let checked = tokio::task::spawn_blocking(move || runtime.load(&bytes).map(|_| ())).await;
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
    let bytes = writer.bytes();
    match writer.commit() {
        Ok(id) => {
            node.p2p.provide(id).await;
            json(
                StatusCode::CREATED,
                wire::ArtifactStored {
                    artifact_id: id.to_string(),
                    bytes: Some(bytes),
                    new: true,
                },
            )
        }
        Err(e) => registry_error(&e),
    }
}

async fn fetch_artifact(node: &Arc<Worker>, id: &str) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match node.p2p.fetch(id, &node.store).await {
        Ok(report) => json(
            StatusCode::OK,
            wire::Fetched {
                artifact_id: id.to_string(),
                bytes: report.bytes,
                segments_by_peer: report
                    .segments_by_peer
                    .iter()
                    .map(|(peer, n)| (peer.to_string(), *n))
                    .collect(),
                segments_retried: report.segments_retried,
                direct_streams: report.direct_streams,
            },
        ),
        Err(bonus_registry::p2p::FetchError::NoSource { .. }) => {
            error(StatusCode::NOT_FOUND, format!("no peer holds {id}"))
        }
        // This node's own disk or index failed, not the peers.
        Err(bonus_registry::p2p::FetchError::Store(e)) => registry_error(&e),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

async fn post_manifest(node: &Arc<Worker>, request: http::Request<Incoming>) -> Response {
    let body = match http_body_util::Limited::new(request.into_body(), MANIFEST_BYTES_MAX)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("manifest: {e}")),
    };
    let signed = match SignedManifest::decode(&body) {
        Ok(signed) => signed,
        Err(e) => return registry_error(&e),
    };
    let artifact_id = signed.manifest().artifact_id;
    if let Ok(None) = node.store.blob_info(&artifact_id)
        && let Err(e) = node.p2p.fetch(artifact_id, &node.store).await
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "artifact {artifact_id} is not on this node and could not be fetched ({e}); upload it first"
            ),
        );
    }
    // With a ledger, names are bound by a finalized Deploy, not here.
    let stored = match node.ledger {
        Some(_) => node.store.put_manifest(&signed).map(|_| ()),
        None => node
            .store
            .put_manifest(&signed)
            .and_then(|_| node.store.bind(&signed)),
    };
    if let Err(e) = stored {
        return registry_error(&e);
    }
    let manifest = signed.manifest();
    json(
        StatusCode::CREATED,
        wire::ManifestStored {
            manifest_id: signed.id().to_string(),
            name: manifest.name.clone(),
            version: manifest.version,
            artifact_id: artifact_id.to_string(),
            path: format!("/fn/{}/", manifest.name),
        },
    )
}

/// The manifests this worker holds; `current` as the ledger binds names
/// (one query for all of them), or as this node does when it has no ledger.
async fn list_functions(node: &Worker) -> Response {
    let manifests = match node.store.manifests() {
        Ok(manifests) => manifests,
        Err(e) => return registry_error(&e),
    };
    let on_ledger: Option<HashMap<String, String>> = match &node.ledger {
        None => None,
        Some(ledger) => match ledger.names().await {
            Ok(names) => Some(
                names
                    .names
                    .into_iter()
                    .map(|n| (n.name, n.manifest_id))
                    .collect(),
            ),
            Err(e) => return error(StatusCode::BAD_GATEWAY, e),
        },
    };
    let functions = manifests
        .iter()
        .map(|signed| {
            let m = signed.manifest();
            let current = match &on_ledger {
                Some(names) => names.get(&m.name) == Some(&signed.id().to_string()),
                None => node.store.resolve(&m.name).ok().flatten() == Some(signed.id()),
            };
            wire::FunctionInfo {
                name: m.name.clone(),
                version: m.version,
                manifest_id: signed.id().to_string(),
                artifact_id: m.artifact_id.to_string(),
                artifact_bytes: m.artifact_bytes,
                price_per_million_fuel_max: m.budget.price_per_million_fuel_max,
                spend_per_period_max: m.budget.spend_per_period_max,
                owner: m.owner.to_string(),
                current,
            }
        })
        .collect();
    json(StatusCode::OK, wire::Functions { functions })
}

/// `GET /v1/logs/<name>?after=<seq>`: for the name's owner only.
async fn read_logs(
    worker: &Arc<Worker>,
    name: &str,
    request: &http::Request<Incoming>,
) -> Response {
    let auth = request
        .headers()
        .get(wire::LOGS_AUTH_HEADER)
        .and_then(|v| v.to_str().ok());
    let now_ms = super::logs::auth_now_ms();
    let read = match super::logs::signer(auth, name, now_ms) {
        Ok(read) => read,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e),
    };
    let owner = match name_owner(worker, name).await {
        Ok(owner) => owner,
        Err(response) => return *response,
    };
    let answered = &worker.answered_reads;
    if let Err(e) = super::logs::authorize(&read, name, owner, answered, now_ms) {
        use super::logs::AuthError;
        let status = match e {
            AuthError::NotOwner { .. } => StatusCode::FORBIDDEN,
            AuthError::TooManyReads => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::UNAUTHORIZED,
        };
        return error(status, e);
    }
    let after = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("after="))
        .map(str::parse::<u64>);
    let after = match after {
        None => 0,
        Some(Ok(after)) => after,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "`after` is a line number"),
    };
    json(
        StatusCode::OK,
        wire::Logs {
            name: name.to_string(),
            lines: worker.logs.since(name, after),
        },
    )
}

/// Who owns `name`: on the ledger, else the manifest it is bound to here.
async fn name_owner(worker: &Arc<Worker>, name: &str) -> Result<PublicKey, Box<Response>> {
    let Some(ledger) = &worker.ledger else {
        let id = resolve_name(worker, name).await?;
        return match worker.store.manifest(&id) {
            Ok(Some(signed)) => Ok(signed.manifest().owner),
            Ok(None) => Err(Box::new(error(
                StatusCode::NOT_FOUND,
                format!("{name:?} is bound to {id}, which this node does not hold"),
            ))),
            Err(e) => Err(Box::new(registry_error(&e))),
        };
    };
    match ledger.name(name).await {
        Ok(Some(view)) => view.owner.parse().map_err(|e| {
            Box::new(error(
                StatusCode::BAD_GATEWAY,
                format!("the ledger's owner of {name:?}: {e}"),
            ))
        }),
        Ok(None) => Err(unknown_name(name)),
        Err(e) => Err(Box::new(error(StatusCode::BAD_GATEWAY, e))),
    }
}

fn unknown_name(name: &str) -> Box<Response> {
    Box::new(error(
        StatusCode::NOT_FOUND,
        format!("no function named {name:?} is deployed; deploy it with `bonus deploy`"),
    ))
}

/// `/fn/<name>/…`: resolve the name (on the ledger, else locally) and
/// run it. Not routed: nobody vouches for it, so it is never paid for.
async fn invoke_name(
    worker: &Arc<Worker>,
    name: &str,
    request: http::Request<Incoming>,
) -> Response {
    let manifest_id = match resolve_name(worker, name).await {
        Ok(id) => id,
        Err(response) => return *response,
    };
    invoke(worker, manifest_id, function_request(request, 3)).await
}

/// `/v1/run/<manifest>/…`: what routers call.
async fn invoke_manifest(
    worker: &Arc<Worker>,
    manifest: &str,
    request: http::Request<Incoming>,
) -> Response {
    match manifest.parse::<ManifestId>() {
        Ok(id) => invoke(worker, id, function_request(request, 4)).await,
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// The request as the function sees it: the path after the first `skip`
/// segments (`/fn/<name>` or `/v1/run/<manifest>`), and the client's Host.
fn function_request<B>(request: http::Request<B>, skip: usize) -> http::Request<B> {
    let (mut parts, body) = request.into_parts();
    let rest = parts
        .uri
        .path()
        .splitn(skip + 1, '/')
        .nth(skip)
        .unwrap_or("");
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = format!("/{rest}{query}")
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    forwarded_host(http::Request::from_parts(parts, body))
}

/// The Host the client sent to the router, as the function's Host.
pub(super) fn forwarded_host<B>(mut request: http::Request<B>) -> http::Request<B> {
    if let Some(host) = request.headers_mut().remove("x-forwarded-host") {
        request.headers_mut().insert(http::header::HOST, host);
    }
    request
}

/// Runs a request whose URI is the function's own path (from the HTTP
/// API, or from a router in this process).
pub(super) async fn invoke<B>(
    worker: &Arc<Worker>,
    manifest_id: ManifestId,
    request: http::Request<B>,
) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Ok(_permit) = worker.concurrency.try_acquire() else {
        return not_run(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this worker is at its concurrency limit; retry or use another worker",
        ));
    };
    if worker.idle.as_ref().is_some_and(|idle| idle.backing_off()) {
        return not_run(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this worker runs only while its owner's machine is idle, and it is busy; another worker can serve this",
        ));
    }
    if let Some(Err(wait)) = worker.fuel_rate.as_ref().map(|rate| rate.admit()) {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this worker has burned its owner's fuel-per-second cap; another worker can serve this",
        );
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(wait.as_secs() + 1),
        );
        return not_run(response);
    }
    let deployed = match deployed(worker, manifest_id).await {
        Ok(deployed) => deployed,
        Err(response) => return not_run(*response),
    };
    let router = request.headers().get(headers::ROUTER).is_some();
    let period = receipt_period(worker, router, request.headers());
    let request_id = request
        .headers()
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| u128::from_str_radix(v, 16).ok())
        .map(RequestId::from_u128)
        .unwrap_or_else(|| worker.pipeline.next_id());
    let (invocation, mut response) = worker
        .pipeline
        .run(
            &deployed.function,
            request_id,
            request,
            deployed.limits,
            deployed.caps.clone(),
        )
        .await;
    if let Some(rate) = &worker.fuel_rate {
        rate.charge(invocation.usage.fuel);
    }
    worker
        .logs
        .record(&deployed.name, manifest_id, &invocation, &deployed.limits);
    if let Some(receipts) = &worker.receipts {
        receipts.record(Receipt {
            request_id,
            manifest_id,
            period,
            fuel: invocation.usage.fuel,
            routed: router,
            outcome: u8::from(!matches!(invocation.outcome, bonus_runtime::Outcome::Ok)),
        });
    }
    // Which version answered: useful during gradual rollouts.
    if let Ok(value) = http::HeaderValue::from_str(&deployed.manifest_id.to_hex()) {
        response.headers_mut().insert(headers::MANIFEST_ID, value);
    }
    response
}

/// The period a receipt is filed under: the one its router attests it in
/// (so a request crossing a period boundary is claimed where it is
/// vouched for), if that is within a period of this worker's clock;
/// otherwise this worker's own.
fn receipt_period(worker: &Worker, routed: bool, sent: &http::HeaderMap) -> u64 {
    let own = worker.period_now();
    let told = sent
        .get(headers::PERIOD)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match told {
        Some(period) if routed && period.abs_diff(own) <= 1 => period,
        _ => own,
    }
}

/// Marks a refusal that ran nothing, so a router may try another worker.
fn not_run(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(headers::NOT_RUN, http::HeaderValue::from_static("1"));
    response
}

async fn resolve_name(worker: &Arc<Worker>, name: &str) -> Result<ManifestId, Box<Response>> {
    let not_found = || unknown_name(name);
    let Some(ledger) = &worker.ledger else {
        return match worker.store.resolve(name) {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(not_found()),
            Err(e) => Err(Box::new(registry_error(&e))),
        };
    };
    if let Some((at, id)) = worker
        .names
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        && at.elapsed() < NAME_TTL
    {
        return Ok(*id);
    }
    let view = match ledger.name(name).await {
        Ok(Some(view)) => view,
        Ok(None) => return Err(not_found()),
        Err(e) => return Err(Box::new(error(StatusCode::BAD_GATEWAY, e))),
    };
    let id: ManifestId = view
        .manifest_id
        .parse()
        .map_err(|e| Box::new(error(StatusCode::BAD_GATEWAY, e)))?;
    worker
        .names
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), (Instant::now(), id));
    Ok(id)
}

/// The signed manifest: from the store, or from the ledger (verified: it
/// decodes, its signature holds and its id is the one asked for).
async fn manifest(worker: &Worker, id: ManifestId) -> Result<SignedManifest, Box<Response>> {
    match worker.store.manifest(&id) {
        Ok(Some(signed)) => return Ok(signed),
        Ok(None) => {}
        Err(e) => return Err(Box::new(registry_error(&e))),
    }
    let unknown = || {
        Box::new(error(
            StatusCode::NOT_FOUND,
            format!("unknown manifest {id}"),
        ))
    };
    let Some(ledger) = &worker.ledger else {
        return Err(unknown());
    };
    let view = match ledger.manifest(&id).await {
        Ok(Some(view)) => view,
        Ok(None) => return Err(unknown()),
        Err(e) => return Err(Box::new(error(StatusCode::BAD_GATEWAY, e))),
    };
    let bytes = crate::hex_decode(&view.signed).ok_or_else(|| {
        Box::new(error(
            StatusCode::BAD_GATEWAY,
            "the ledger sent a manifest that is not hex",
        ))
    })?;
    let signed = SignedManifest::decode(&bytes).map_err(|e| Box::new(registry_error(&e)))?;
    if signed.id() != id {
        return Err(Box::new(error(
            StatusCode::BAD_GATEWAY,
            format!("the ledger sent manifest {} for {id}", signed.id()),
        )));
    }
    Ok(signed)
}

/// The loaded function of a manifest: cached, or fetched (manifest from
/// the ledger, artifact from peers), compiled and cached.
async fn deployed(worker: &Arc<Worker>, id: ManifestId) -> Result<Arc<Deployed>, Box<Response>> {
    let cached = |worker: &Worker| {
        worker
            .deployed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    };
    if let Some(hit) = cached(worker) {
        return Ok(hit);
    }
    let _loading = worker.loading.lock().await;
    if let Some(hit) = cached(worker) {
        return Ok(hit);
    }
    let signed = manifest(worker, id).await?;
    let manifest = signed.manifest().clone();
    if worker.ledger.is_some() && manifest.budget.price_per_million_fuel_max < worker.price {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            format!(
                "{id} pays at most {} per million fuel; this worker charges {}",
                manifest.budget.price_per_million_fuel_max, worker.price
            ),
        )));
    }
    if worker
        .p2p
        .fetch(manifest.artifact_id, &worker.store)
        .await
        .is_err()
    {
        // A peer that registered since the last refresh may hold it.
        worker.join_peers().await;
        if let Err(e) = worker.p2p.fetch(manifest.artifact_id, &worker.store).await {
            return Err(Box::new(error(StatusCode::BAD_GATEWAY, e)));
        }
    }
    // Kept with its artifact, so this node can serve both to peers.
    if let Err(e) = worker.store.put_manifest(&signed) {
        return Err(Box::new(registry_error(&e)));
    }
    let (runtime, store, artifact_id) = (
        worker.runtime.clone(),
        worker.store.clone(),
        manifest.artifact_id,
    );
    let loaded = tokio::task::spawn_blocking(move || {
        let bytes = store.read_blob(&artifact_id).map_err(|e| e.to_string())?;
        runtime.load(&bytes).map_err(|e| e.to_string())
    })
    .await;
    let function = match loaded {
        Ok(Ok(function)) => function,
        Ok(Err(e)) => return Err(Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e))),
        Err(e) => return Err(Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e))),
    };
    let limits = Limits {
        fuel_max: manifest.limits.fuel_max,
        memory_bytes_max: manifest.limits.memory_bytes_max,
        deadline: Duration::from_millis(u64::from(manifest.limits.deadline_ms)),
        ..Limits::DEFAULT
    }
    .capped_by(&Limits::DEFAULT);
    // Patterns were checked when the manifest was signed by `bonus deploy`;
    // a manifest built elsewhere with a bad pattern gets no outbound access.
    let outbound =
        OutboundPolicy::from_patterns(&manifest.allowed_outbound_hosts).unwrap_or_default();
    let deployed = Arc::new(Deployed {
        manifest_id: id,
        name: manifest.name.clone(),
        function,
        limits,
        caps: Arc::new(Capabilities {
            env: manifest.env.clone(),
            outbound: Arc::new(outbound),
        }),
    });
    worker
        .deployed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, deployed.clone());
    Ok(deployed)
}
