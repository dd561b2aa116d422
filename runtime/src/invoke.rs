//! One invocation: a fresh store and instance, the guest's `handle` call,
//! and what it cost.

use crate::engine::LoadedComponent;
use crate::host::InvocationCtx;
use crate::logs::GuestLogs;
use crate::outbound::OutboundPolicy;
use crate::{ArtifactId, Limits, RequestId, Runtime, Tier};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Extra time past the guest's deadline for the host to notice and clean up
/// when the guest is parked in a host call (epochs only interrupt wasm code).
const HOST_GRACE: Duration = Duration::from_millis(50);

/// What a guest may reach besides its request. Denied by default.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    /// Environment variables, exactly these and no others.
    pub env: Vec<(String, String)>,
    /// Where outbound HTTP may go.
    pub outbound: Arc<OutboundPolicy>,
}

/// Everything an invocation needs besides the request.
#[derive(Clone, Debug)]
pub struct InvokeParams {
    /// Names the invocation in logs and headers.
    pub request_id: RequestId,
    /// Seeds the guest's randomness; the same seed and request replay exactly.
    pub random_seed: [u8; 32],
    /// Bounds on what it may consume.
    pub limits: Limits,
    /// What it may reach.
    pub caps: Arc<Capabilities>,
}

/// A loaded component: cheap to clone, shared by every request for it.
#[derive(Clone)]
pub struct Function {
    runtime: Runtime,
    loaded: Arc<LoadedComponent>,
}

/// How an invocation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The guest produced a complete response.
    Ok,
    /// The guest trapped (a panic, `unreachable`, an invalid access…).
    Trap {
        /// The trap, in one line.
        message: String,
    },
    /// The guest ran out of its fuel budget.
    FuelExhausted,
    /// The guest exceeded its wall-clock deadline.
    Deadline,
    /// The guest tried to grow memory or a table past its limit.
    MemoryLimit,
    /// The guest's call stack overflowed.
    StackOverflow,
    /// The request body exceeded the limit; the guest never ran.
    RequestTooLarge,
    /// The guest's response body exceeded the limit.
    ResponseTooLarge,
    /// The guest finished without a response, or answered with an error code.
    NoResponse {
        /// What the guest did instead.
        message: String,
    },
    /// No instance slot was free: the node is at its concurrency limit.
    Busy,
    /// The host failed; not the guest's fault.
    HostError {
        /// What failed.
        message: String,
    },
}

impl Outcome {
    /// The HTTP status a server should answer with for this outcome.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Outcome::Ok => S::OK,
            Outcome::Trap { .. } | Outcome::MemoryLimit | Outcome::StackOverflow => {
                S::INTERNAL_SERVER_ERROR
            }
            Outcome::FuelExhausted => S::LOOP_DETECTED,
            Outcome::Deadline => S::GATEWAY_TIMEOUT,
            Outcome::RequestTooLarge => S::PAYLOAD_TOO_LARGE,
            Outcome::ResponseTooLarge | Outcome::NoResponse { .. } => S::BAD_GATEWAY,
            Outcome::Busy => S::SERVICE_UNAVAILABLE,
            Outcome::HostError { .. } => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable name: `ok`, `trap`, `fuel_exhausted`…
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Trap { .. } => "trap",
            Outcome::FuelExhausted => "fuel_exhausted",
            Outcome::Deadline => "deadline",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::StackOverflow => "stack_overflow",
            Outcome::RequestTooLarge => "request_too_large",
            Outcome::ResponseTooLarge => "response_too_large",
            Outcome::NoResponse { .. } => "no_response",
            Outcome::Busy => "busy",
            Outcome::HostError { .. } => "host_error",
        }
    }

    /// A one-line reason for a human, given the limits that applied.
    pub fn reason(&self, limits: &Limits) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Trap { message } => format!("function trapped: {message}"),
            Outcome::FuelExhausted => {
                format!(
                    "function exhausted its fuel budget ({} units)",
                    limits.fuel_max
                )
            }
            Outcome::Deadline => format!("function exceeded its deadline ({:?})", limits.deadline),
            Outcome::MemoryLimit => format!(
                "function exceeded its memory limit ({} MiB)",
                limits.memory_bytes_max >> 20
            ),
            Outcome::StackOverflow => "function overflowed its call stack".into(),
            Outcome::RequestTooLarge => format!(
                "request body exceeds the limit ({} bytes)",
                limits.request_body_bytes_max
            ),
            Outcome::ResponseTooLarge => format!(
                "function response body exceeds the limit ({} bytes)",
                limits.response_body_bytes_max
            ),
            Outcome::NoResponse { message } => format!("function gave no response: {message}"),
            Outcome::Busy => "node is at its concurrency limit; retry".into(),
            Outcome::HostError { message } => format!("host error: {message}"),
        }
    }
}

/// What an invocation consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Fuel consumed: deterministic for a given component, request, seed
    /// and tier. Both tiers charge the same cost per wasm operator, but at
    /// different points of the control flow, so Winch's count differs from
    /// Cranelift's by a few percent (see `tier`).
    pub fuel: u64,
    /// The code that ran, and so metered the fuel.
    pub tier: Tier,
    /// Wall-clock time from request accepted to response complete.
    pub wall: Duration,
    /// Largest linear memory the guest had, in bytes.
    pub memory_bytes_peak: u64,
}

/// The result of one invocation: response (on success), usage, outcome, logs.
#[derive(Debug)]
pub struct Invocation {
    /// The request this answers.
    pub request_id: RequestId,
    /// The complete response, present exactly when `outcome` is `Ok`.
    pub response: Option<http::Response<Bytes>>,
    /// How it ended.
    pub outcome: Outcome,
    /// What it consumed.
    pub usage: Usage,
    /// What the guest printed.
    pub logs: GuestLogs,
}

impl Function {
    pub(crate) fn new(runtime: Runtime, loaded: Arc<LoadedComponent>) -> Self {
        Function { runtime, loaded }
    }

    /// BLAKE3 of the component's bytes.
    pub fn artifact_id(&self) -> ArtifactId {
        self.loaded.artifact_id
    }

    /// Which compiler's code serves the next request.
    pub fn tier(&self) -> Tier {
        self.loaded.current().tier
    }

    /// Waits (blocking, up to `timeout`) until the optimized code serves;
    /// whether it does. For tests and benchmarks: requests never wait.
    pub fn wait_optimized(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.tier() != Tier::Optimized {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Runs one request in a fresh instance. Never panics on guest
    /// behaviour: every failure is an [`Outcome`].
    pub async fn invoke<B>(&self, request: http::Request<B>, params: &InvokeParams) -> Invocation
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let request = match read_request(request, params.limits.request_body_bytes_max).await {
            Ok(request) => request,
            Err(outcome) => return Invocation::refused(params.request_id, outcome, started),
        };
        // The guest runs on a task of its own, not inside the caller's (a
        // hyper connection's): measured ~30 µs of CPU less per request
        // (bench/HISTORY.md). Dropping this future still ends the guest.
        let (function, owned) = (self.clone(), params.clone());
        let mut task = AbortOnDrop(tokio::spawn(async move {
            function.invoke_here(request, &owned, started).await
        }));
        match (&mut task.0).await {
            Ok(invocation) => invocation,
            Err(e) => Invocation::refused(
                params.request_id,
                Outcome::HostError {
                    message: format!("the invocation task failed: {e}"),
                },
                started,
            ),
        }
    }

    async fn invoke_here(
        &self,
        request: http::Request<http_body_util::Full<Bytes>>,
        params: &InvokeParams,
        started: Instant,
    ) -> Invocation {
        let limits = &params.limits;
        let code = self.loaded.current();
        if code.tier == Tier::Baseline {
            self.loaded.baseline_calls.fetch_add(1, Ordering::Relaxed);
        }
        let mut store = Store::new(
            &code.engine,
            InvocationCtx::new(&params.caps, limits, &params.random_seed),
        );
        store.limiter(|ctx| &mut ctx.limiter);
        if self.runtime.fuel_enabled() {
            store
                .set_fuel(limits.fuel_max)
                .expect("fuel is enabled on this engine");
        }
        let deadline = started + limits.deadline;
        match code.tier {
            // Yield to other requests on this thread every epoch tick, and
            // interrupt the guest once its deadline has passed.
            Tier::Optimized => {
                store.set_epoch_deadline(1);
                store.epoch_deadline_callback(move |_| {
                    Ok(if Instant::now() >= deadline {
                        UpdateDeadline::Interrupt
                    } else {
                        UpdateDeadline::Yield(1)
                    })
                });
            }
            // No epochs in Winch's code: yield by fuel; the host's
            // deadline timer in `run` then ends a guest that overstays.
            Tier::Baseline => {
                store
                    .fuel_async_yield_interval(Some(crate::limits::BASELINE_YIELD_FUEL))
                    .expect("the baseline tier is only built with fuel and async");
            }
        }

        let (outcome, pending) = self.run(&mut store, request, limits, deadline).await;
        let fuel = match self.runtime.fuel_enabled() {
            true => limits
                .fuel_max
                .saturating_sub(store.get_fuel().unwrap_or(0)),
            false => 0,
        };
        let ctx = store.into_data();
        let memory_bytes_peak = ctx.limiter.memory_bytes_peak;
        let logs = GuestLogs {
            stdout: ctx.stdout.take(),
            stderr: ctx.stderr.take(),
        };
        // Dropping the host state drops the response sender and body
        // channel, so a pending response resolves now.
        drop(ctx);
        let (outcome, response) = match outcome {
            Outcome::Ok => match pending {
                PendingResponse::Done(Ok(response)) => (Outcome::Ok, Some(response)),
                PendingResponse::Done(Err(outcome)) => (outcome, None),
                PendingResponse::Streaming(pending) => {
                    let remaining = deadline.saturating_duration_since(Instant::now()) + HOST_GRACE;
                    match tokio::time::timeout(remaining, pending).await {
                        Ok(Ok(response)) => (Outcome::Ok, Some(response)),
                        Ok(Err(outcome)) => (outcome, None),
                        Err(_) => (Outcome::Deadline, None),
                    }
                }
            },
            outcome => (outcome, None),
        };
        Invocation {
            request_id: params.request_id,
            response,
            outcome,
            usage: Usage {
                fuel,
                tier: code.tier,
                wall: started.elapsed(),
                memory_bytes_peak,
            },
            logs,
        }
    }

    /// Instantiates and calls the guest, collecting the response as the
    /// guest streams it. Returns the outcome of the call and the response,
    /// which completes once the store is dropped if the guest left it open.
    async fn run(
        &self,
        store: &mut Store<InvocationCtx>,
        request: http::Request<http_body_util::Full<Bytes>>,
        limits: &Limits,
        deadline: Instant,
    ) -> (Outcome, PendingResponse) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let handles = {
            let mut http = store.data_mut().http();
            http.new_incoming_request(Scheme::Http, request)
                .and_then(|req| Ok((req, http.new_response_outparam(sender)?)))
        };
        let (req, out) = match handles {
            Ok(handles) => handles,
            Err(e) => {
                let outcome = Outcome::HostError {
                    message: format!("cannot pass the request to the guest: {e:#}"),
                };
                return (outcome.clone(), PendingResponse::Done(Err(outcome)));
            }
        };
        let mut response: StreamingResponse =
            Box::pin(collect_response(receiver, limits.response_body_bytes_max));
        let pre = &self.loaded.current().pre;
        let call = async {
            let proxy = pre.instantiate_async(&mut *store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, req, out)
                .await
        };
        // Boxed so that dropping it ends its borrow of the store.
        let mut call = Box::pin(call);
        let host_deadline = tokio::time::Instant::from_std(deadline + HOST_GRACE);
        let mut response_done = None;
        // Armed only once the guest waits on the host: most calls finish in
        // their first poll, and registering a timer per request costs more
        // than the call (tokio wakes its driver through an eventfd write).
        let mut host_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let call_result = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = call.as_mut().poll(cx) {
                return Poll::Ready(Ok(result));
            }
            if response_done.is_none()
                && let Poll::Ready(result) = response.as_mut().poll(cx)
            {
                if let Err(Outcome::ResponseTooLarge) = result {
                    return Poll::Ready(Err(Outcome::ResponseTooLarge));
                }
                response_done = Some(result);
            }
            let timer =
                host_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(host_deadline)));
            timer.as_mut().poll(cx).map(|()| Err(Outcome::Deadline))
        })
        .await;
        drop(call);
        let outcome = match call_result {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(e)) => classify(&e, store.data()),
            Err(outcome) => outcome,
        };
        match response_done {
            Some(done) => (outcome, PendingResponse::Done(done)),
            None => (outcome, PendingResponse::Streaming(response)),
        }
    }
}

/// Aborts the task when the invocation's caller goes away.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type StreamingResponse =
    Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, Outcome>> + Send>>;

/// The guest's response once its call has ended: complete, or still
/// streaming from host state that completes once the store is dropped.
enum PendingResponse {
    Done(Result<http::Response<Bytes>, Outcome>),
    Streaming(StreamingResponse),
}

impl Invocation {
    fn refused(request_id: RequestId, outcome: Outcome, started: Instant) -> Self {
        Invocation {
            request_id,
            response: None,
            outcome,
            usage: Usage {
                fuel: 0,
                tier: Tier::Optimized,
                wall: started.elapsed(),
                memory_bytes_peak: 0,
            },
            logs: GuestLogs::default(),
        }
    }
}

async fn read_request<B>(
    request: http::Request<B>,
    body_bytes_max: u64,
) -> Result<http::Request<http_body_util::Full<Bytes>>, Outcome>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > body_bytes_max) {
        return Err(Outcome::RequestTooLarge);
    }
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(body_bytes_max).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(http::Request::from_parts(
            parts,
            http_body_util::Full::new(collected.to_bytes()),
        )),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Outcome::RequestTooLarge),
        Err(e) => Err(Outcome::HostError {
            message: format!("reading the request body: {e}"),
        }),
    }
}

async fn collect_response(
    receiver: tokio::sync::oneshot::Receiver<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>,
    body_bytes_max: u64,
) -> Result<http::Response<Bytes>, Outcome> {
    let response = match receiver.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            return Err(Outcome::NoResponse {
                message: format!("the guest answered with error code {code:?}"),
            });
        }
        Err(_) => {
            return Err(Outcome::NoResponse {
                message: "the guest returned without setting a response".into(),
            });
        }
    };
    let (parts, body) = response.into_parts();
    let limit = usize::try_from(body_bytes_max).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(http::Response::from_parts(parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Outcome::ResponseTooLarge),
        Err(e) => Err(Outcome::NoResponse {
            message: format!("the response body failed: {e}"),
        }),
    }
}

fn classify(error: &wasmtime::Error, ctx: &InvocationCtx) -> Outcome {
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return Outcome::Busy;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => return Outcome::FuelExhausted,
        Some(Trap::Interrupt) => return Outcome::Deadline,
        Some(Trap::StackOverflow) => return Outcome::StackOverflow,
        _ => {}
    }
    // A denied memory.grow makes the guest's allocator fail, which traps
    // (Rust aborts with `unreachable`): report the cause, not the symptom.
    if ctx.limiter.hit_limit {
        return Outcome::MemoryLimit;
    }
    let message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    Outcome::Trap { message }
}
