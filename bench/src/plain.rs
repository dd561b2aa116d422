//! The anchor for Bonus's own per-request work: the plainest wasmtime host
//! with the settings `bonus serve` uses (the same pooling allocator, fuel
//! and epochs), and per request a fresh `Store` with an empty `WasiCtx` and
//! a `WasiHttpCtx`, `instantiate`, `handle`, and the response as the guest
//! writes it. No limits, logs, seeds, deadlines or headers of its own: what
//! wasmtime allows on this machine, so a benchmark can say how much of it
//! Bonus keeps.

use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Per-request host state: nothing but what `wasi:http` needs.
pub struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

const FUEL: u64 = 10_000_000_000;

/// One component on one engine, ready to serve.
#[derive(Clone)]
pub struct PlainHost {
    engine: Engine,
    pre: ProxyPre<Host>,
    fuel: bool,
}

impl PlainHost {
    /// Compiles `wasm` and starts the engine's epoch ticker (5 ms).
    pub fn new(wasm: &[u8], fuel: bool) -> wasmtime::Result<PlainHost> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(1000)
            .total_core_instances(4000)
            .total_memories(2000)
            .total_tables(4000)
            .total_stacks(1000)
            .max_memories_per_component(16)
            .max_tables_per_component(32)
            .max_core_instances_per_component(64)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .max_memory_size(1 << 30)
            .table_elements(1 << 20)
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .concurrency_support(false)
            .consume_fuel(fuel)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::<Host>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        let component = Component::new(&engine, wasm)?;
        let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
        let weak = engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = weak.upgrade() {
                drop(engine);
                std::thread::sleep(Duration::from_millis(5));
                if let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                }
            }
        });
        Ok(PlainHost { engine, pre, fuel })
    }

    /// A fresh store: an empty `WasiCtx`, a `WasiHttpCtx`, fuel and the
    /// epoch deadline set.
    fn store(&self) -> wasmtime::Result<Store<Host>> {
        let mut store = Store::new(
            &self.engine,
            Host {
                wasi: WasiCtx::builder().build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
            },
        );
        if self.fuel {
            store.set_fuel(FUEL)?;
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }

    /// Runs one request in a fresh instance; the response streams while the
    /// guest runs on its own task.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<HyperOutgoingBody>, BoxError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut store = self.store().map_err(boxed)?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(boxed)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(boxed)?;
        let pre = self.pre.clone();
        tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await?;
            Ok::<(), wasmtime::Error>(())
        });
        receiver.await.map_err(boxed)?.map_err(boxed)
    }
}

/// Where one invocation's time goes in the plain host, phase by phase
/// (each in nanoseconds), run inline on the caller's task: what wasmtime
/// itself costs per request with these settings, so a figure can say how
/// much an upstream change to each phase would buy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// `Store::new` with an empty `WasiCtx` and a `WasiHttpCtx`, fuel and
    /// the epoch deadline set.
    pub store_ns: u64,
    /// The request and response-outparam resources.
    pub resources_ns: u64,
    /// `ProxyPre::instantiate_async`.
    pub instantiate_ns: u64,
    /// The guest's `handle`.
    pub call_ns: u64,
    /// Dropping the store: the instance's memories and tables go back to
    /// the pool (reset of what the guest dirtied).
    pub drop_ns: u64,
    /// Receiving the response and collecting its body.
    pub response_ns: u64,
}

impl PlainHost {
    /// One invocation of a bodiless GET of `uri`, timed by phase.
    pub async fn phases(&self, uri: &str) -> wasmtime::Result<Phases> {
        use std::time::Instant;
        let request = http::Request::get(uri).body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let mut phases = Phases::default();
        let ns = |since: Instant| since.elapsed().as_nanos() as u64;
        let started = Instant::now();
        let mut store = self.store()?;
        phases.store_ns = ns(started);
        let started = Instant::now();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        phases.resources_ns = ns(started);
        let started = Instant::now();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        phases.instantiate_ns = ns(started);
        let started = Instant::now();
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await?;
        phases.call_ns = ns(started);
        let started = Instant::now();
        drop(store);
        phases.drop_ns = ns(started);
        let started = Instant::now();
        let response = receiver
            .await
            .map_err(|e| wasmtime::format_err!("no response: {e}"))?
            .map_err(|e| wasmtime::format_err!("the guest answered {e:?}"))?;
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| wasmtime::format_err!("the body: {e:?}"))?;
        phases.response_ns = ns(started);
        Ok(phases)
    }
}

/// What the anchor's service answers with on a host failure.
pub type BoxError = std::io::Error;

fn boxed(e: impl std::fmt::Display) -> BoxError {
    std::io::Error::other(e.to_string())
}
