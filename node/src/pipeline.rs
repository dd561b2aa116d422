//! The one request pipeline of `bonus serve` and of workers: request ids,
//! per-request seeds, limits, invocation, logs and the response headers.

use bonus_ids::RequestId;
use bonus_runtime::{Capabilities, Function, Invocation, InvokeParams, Limits, Outcome};
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Response and forwarding headers, named once.
pub mod headers {
    /// Fuel the invocation consumed.
    pub const FUEL: &str = "x-bonus-fuel";
    /// The request's id (minted by the router, else by the worker).
    pub const REQUEST_ID: &str = "x-bonus-request-id";
    /// The manifest (function version) that answered.
    pub const MANIFEST_ID: &str = "x-bonus-manifest-id";
    /// Why the platform, not the function, answered (`fuel`, `deadline`, …).
    pub const OUTCOME: &str = "x-bonus-outcome";
    /// The router that forwarded the request (its key).
    pub const ROUTER: &str = "x-bonus-router";
    /// The worker that ran it (its key); added by the router.
    pub const WORKER: &str = "x-bonus-worker";
    /// On a worker's refusal: nothing ran, the router may retry elsewhere.
    pub const NOT_RUN: &str = bonus_router::NOT_RUN;
    /// The settlement period the router attests the request in.
    pub const PERIOD: &str = bonus_router::PERIOD;
    /// `baseline` when Winch's code ran (and metered the fuel), during the
    /// seconds after a cold start before Cranelift's code is ready.
    pub const TIER: &str = "x-bonus-tier";
}

/// Most bytes of one invocation's stdout or stderr echoed to the log.
const LOGGED_BYTES_MAX: usize = 2048;

/// Mints request ids and seeds: ids distinct per process, seeds
/// unpredictable to clients and reproducible by this node for audits.
pub struct Pipeline {
    seed_key: [u8; 32],
    prefix: u64,
    counter: AtomicU64,
}

impl Pipeline {
    /// A pipeline whose seeds derive from `node_secret`.
    pub fn new(node_secret: &[u8; 32]) -> Pipeline {
        let mut random = [0u8; 8];
        // Without OS randomness ids stay unique per counter; only
        // distinctness across restarts weakens.
        let _ = getrandom::fill(&mut random);
        Pipeline {
            seed_key: blake3::derive_key("bonus request seeds v1", node_secret),
            prefix: u64::from_le_bytes(random),
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh request id.
    pub fn next_id(&self) -> RequestId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        RequestId::from_u128(u128::from(self.prefix) << 64 | u128::from(n))
    }

    /// Runs one request in a fresh instance and shapes the response.
    pub async fn run<B>(
        &self,
        function: &Function,
        request_id: RequestId,
        mut request: http::Request<B>,
        limits: Limits,
        caps: Arc<Capabilities>,
    ) -> (Invocation, http::Response<Full<Bytes>>)
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if !request.headers().contains_key(http::header::HOST) {
            // wasi:http needs an authority; HTTP/1.0 clients may omit it.
            request.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
        let params = InvokeParams {
            request_id,
            random_seed: *blake3::keyed_hash(&self.seed_key, &request_id.as_u128().to_le_bytes())
                .as_bytes(),
            limits,
            caps,
        };
        let mut invocation = function.invoke(request, &params).await;
        log_invocation(&invocation, &limits);
        let response = respond(&mut invocation, &limits);
        (invocation, response)
    }
}

/// The HTTP response for an invocation: the guest's, or the platform's
/// reason when the guest did not answer; with fuel and request id headers.
pub fn respond(invocation: &mut Invocation, limits: &Limits) -> http::Response<Full<Bytes>> {
    let mut response = match invocation.response.take() {
        Some(response) => response.map(Full::new),
        None => {
            let reason = invocation.outcome.reason(limits) + "\n";
            let mut response = http::Response::new(Full::new(Bytes::from(reason)));
            *response.status_mut() = invocation.outcome.status();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response.headers_mut().insert(
                headers::OUTCOME,
                http::HeaderValue::from_static(invocation.outcome.kind()),
            );
            response
        }
    };
    let fields = response.headers_mut();
    fields.insert(headers::FUEL, invocation.usage.fuel.into());
    if invocation.usage.tier == bonus_runtime::Tier::Baseline {
        fields.insert(headers::TIER, http::HeaderValue::from_static("baseline"));
    }
    if let Ok(id) = http::HeaderValue::from_bytes(&invocation.request_id.hex_digits()) {
        fields.insert(headers::REQUEST_ID, id);
    }
    response
}

/// Logs what the guest printed (bounded) and how the invocation ended.
pub fn log_invocation(invocation: &Invocation, limits: &Limits) {
    let request_id = invocation.request_id;
    for (stream, captured) in [
        ("stdout", &invocation.logs.stdout),
        ("stderr", &invocation.logs.stderr),
    ] {
        if captured.bytes.is_empty() {
            continue;
        }
        let shown = &captured.bytes[..captured.bytes.len().min(LOGGED_BYTES_MAX)];
        let hidden = (captured.bytes.len() - shown.len()) as u64 + captured.bytes_dropped;
        let text = String::from_utf8_lossy(shown);
        tracing::info!(%request_id, bytes_not_shown = hidden, "guest {stream}: {}", text.trim_end());
    }
    match &invocation.outcome {
        Outcome::Ok => tracing::debug!(
            %request_id,
            fuel = invocation.usage.fuel,
            wall_us = invocation.usage.wall.as_micros() as u64,
            "ok"
        ),
        outcome => tracing::warn!(
            %request_id,
            outcome = outcome.kind(),
            fuel = invocation.usage.fuel,
            "{}",
            outcome.reason(limits)
        ),
    }
}
