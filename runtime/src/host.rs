//! Per-invocation host state: the `T` of `Store<T>`.
//!
//! Everything a guest can reach lives here and is dropped with the store at
//! the end of its one request: no state survives into another request.

use crate::logs::LogPipe;
use crate::outbound::OutboundPolicy;
use crate::rng::SeededRng;
use crate::{Capabilities, Limits};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// The host side of one invocation.
pub(crate) struct InvocationCtx {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: LogPipe,
    pub(crate) stderr: LogPipe,
}

impl InvocationCtx {
    pub(crate) fn new(caps: &Capabilities, limits: &Limits, random_seed: &[u8; 32]) -> Self {
        let stdout = LogPipe::new(limits.log_bytes_max);
        let stderr = LogPipe::new(limits.log_bytes_max);
        // Nothing is granted through WASI but what is listed here: no
        // preopened directories, no sockets, no inherited environment.
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&caps.env)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .secure_random(SeededRng::new(random_seed, "secure"))
            .insecure_random(SeededRng::new(random_seed, "insecure"))
            .insecure_random_seed(u128::from_le_bytes(
                random_seed[..16]
                    .try_into()
                    .expect("a 32-byte seed has 16 bytes"),
            ));
        InvocationCtx {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                policy: caps.outbound.clone(),
            },
            limiter: MemoryLimiter::new(limits),
            stdout,
            stderr,
        }
    }
}

impl WasiView for InvocationCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InvocationCtx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Enforces the outbound allow-list before any connection is attempted.
struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        if !self.policy.allows(request.uri()) {
            tracing::debug!(uri = %request.uri(), "outbound request denied");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let default_hooks: &mut dyn WasiHttpHooks = wasmtime_wasi_http::default_hooks();
        default_hooks.send_request(request, options, fut)
    }
}

/// Denies memory and table growth past the invocation's limits and records
/// the peak, so a denied growth can be reported as a limit, not a bug.
pub(crate) struct MemoryLimiter {
    memory_bytes_max: usize,
    table_elements_max: usize,
    pub(crate) memory_bytes_peak: u64,
    pub(crate) hit_limit: bool,
}

impl MemoryLimiter {
    fn new(limits: &Limits) -> Self {
        MemoryLimiter {
            memory_bytes_max: usize::try_from(limits.memory_bytes_max).unwrap_or(usize::MAX),
            table_elements_max: limits.table_elements_max as usize,
            memory_bytes_peak: 0,
            hit_limit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.hit_limit = true;
            return Ok(false);
        }
        self.memory_bytes_peak = self.memory_bytes_peak.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements_max {
            self.hit_limit = true;
            return Ok(false);
        }
        Ok(true)
    }
}
