//! The worker role: stores and spreads artifacts (registry + P2P), runs
//! functions in fresh metered sandboxes, records a receipt per invocation
//! and settles them on the ledger.
//!
//! With a ledger, names and manifests come from finalized ledger state: a
//! router asks for a manifest by id (`/v1/run/<manifest>/…`); a manifest
//! this worker has never seen is fetched from the ledger (the signed bytes
//! the owner deployed, verified), its artifact from peers. Without one
//! (a standalone node, as in the registry tests), the node keeps its own
//! name map: posting a signed manifest binds its name here.

mod api;
pub mod logs;
pub mod owner;
pub mod receipts;
mod settle;

use crate::http::{HttpLimits, Stop};
use crate::pipeline::Pipeline;
use anyhow::Context;
use bonus_ids::{ManifestId, SecretKey};
use bonus_ledger::client::LedgerClient;
use bonus_registry::p2p::{Multiaddr, P2p, P2pConfig};
use bonus_registry::{Store, StoreConfig};
use bonus_runtime::{Runtime, RuntimeConfig};
use receipts::Receipts;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to run a worker.
pub struct WorkerConfig {
    /// Key, store, compiled code and receipts live here.
    pub data_dir: PathBuf,
    /// The worker's HTTP API (routers forward here).
    pub api_addr: SocketAddr,
    /// P2P listen address; the only address advertised.
    pub p2p_listen: Multiaddr,
    /// Peers to join through (more come from the ledger's node registry).
    pub bootstrap: Vec<Multiaddr>,
    /// Largest artifact accepted.
    pub artifact_bytes_max: u64,
    /// Byzantine test mode: serve corrupted artifact data.
    pub serve_tampered: bool,
    /// Test mode: wait this long before serving each range.
    pub serve_delay: Duration,
    /// Serve segments on a plain TCP port too.
    pub direct_segments: bool,
    /// The ledger: names, manifests, registration and settlement.
    pub ledger: Option<Arc<LedgerClient>>,
    /// What the worker charges per million fuel.
    pub price_per_million_fuel: u64,
    /// Region hint published on the ledger.
    pub region: String,
    /// Invocations at once, at most (the owner's cap); beyond it 503.
    pub concurrency_max: usize,
    /// Test mode: answer health probes this much later (a far worker).
    pub probe_delay: Duration,
    /// The owner's cap on fuel burned per second (all functions).
    pub fuel_per_second_max: Option<u64>,
    /// Take requests only while the owner's machine is otherwise idle.
    pub idle_only: Option<owner::IdlePolicy>,
    /// Where Cranelift runs (see [`bonus_runtime::CompileChild`]).
    pub compile_child: Option<bonus_runtime::CompileChild>,
}

/// A function version, ready to invoke.
pub struct Deployed {
    /// The manifest it was loaded from.
    pub manifest_id: ManifestId,
    /// Its name (its logs are kept under it).
    pub name: String,
    /// The loaded component.
    pub function: bonus_runtime::Function,
    /// The manifest's limits, capped by the node's.
    pub limits: bonus_runtime::Limits,
    /// Its environment and outbound policy.
    pub caps: Arc<bonus_runtime::Capabilities>,
}

/// What a running worker shares between requests.
pub struct Worker {
    /// The node key (ledger identity and P2P peer id).
    pub key: SecretKey,
    /// Artifacts and manifests.
    pub store: Arc<Store>,
    /// The P2P overlay.
    pub p2p: P2p,
    /// The wasm runtime.
    pub runtime: Runtime,
    /// Request ids, seeds, response shaping.
    pub pipeline: Pipeline,
    /// Loaded functions by manifest.
    deployed: Mutex<HashMap<ManifestId, Arc<Deployed>>>,
    /// One load at a time: two first requests compile once.
    loading: tokio::sync::Mutex<()>,
    /// Names resolved on the ledger, with when.
    names: Mutex<HashMap<String, (Instant, ManifestId)>>,
    /// What functions printed, for their owners.
    logs: logs::RecentLogs,
    /// Owners' logs reads already answered (no replays).
    answered_reads: logs::AnsweredReads,
    ledger: Option<Arc<LedgerClient>>,
    receipts: Option<Receipts>,
    period_ms: u64,
    price: u64,
    concurrency: tokio::sync::Semaphore,
    probe_delay: Duration,
    fuel_rate: Option<owner::FuelRate>,
    idle: Option<Arc<owner::IdleWatch>>,
}

/// How long a name resolved on the ledger is trusted before asking again.
const NAME_TTL: Duration = Duration::from_millis(500);

/// What `on_ready` learns once the worker listens.
pub struct Ready<'a> {
    /// The API address.
    pub api: SocketAddr,
    /// The P2P overlay (peer id, addresses).
    pub p2p: &'a P2p,
    /// The worker's key.
    pub key: bonus_ids::PublicKey,
    /// The worker, for a router in the same process.
    pub local: Arc<dyn bonus_router::LocalWorker>,
}

/// Runs a worker until `stop`; then drains requests and flushes receipts.
pub async fn run(
    config: WorkerConfig,
    stop: Stop,
    on_ready: impl FnOnce(Ready<'_>),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let key = crate::load_or_create_key(&config.data_dir.join("node.key"))?;
    let store = Arc::new(
        Store::open(
            &config.data_dir.join("store"),
            StoreConfig {
                artifact_bytes_max: config.artifact_bytes_max,
                ..StoreConfig::default()
            },
        )
        .context("opening the node's store")?,
    );
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(config.data_dir.join("cache")),
        // A cold worker answers within a second, on Winch's code, while
        // Cranelift's compiles.
        compiler: bonus_runtime::Compiler::Tiered,
        compile_child: config.compile_child.clone(),
        ..RuntimeConfig::default()
    })?;
    let mut bootstrap = config.bootstrap.clone();
    let mut period_ms = 10_000;
    if let Some(ledger) = &config.ledger {
        let status = ledger.status().await?;
        period_ms = status.params.period_ms.max(1);
        // Peers from the ledger's node registry: other workers publish
        // their P2P address after their HTTP endpoint.
        for node in ledger.nodes().await?.nodes {
            if node.role != "worker" || node.key == key.public().to_string() {
                continue;
            }
            if let Some(addr) = crate::endpoint_p2p(&node.endpoint) {
                bootstrap.push(addr);
            }
        }
    }
    let p2p = P2p::start(
        P2pConfig {
            listen: config.p2p_listen,
            bootstrap,
            node_key_seed: key.seed(),
            serve_tampered: config.serve_tampered,
            serve_delay: config.serve_delay,
            direct_segments: config.direct_segments,
        },
        store.clone(),
    )
    .await
    .context("starting the P2P overlay")?;
    for blob in store.blobs()? {
        p2p.provide(blob.artifact_id).await;
    }
    let listeners =
        crate::http::reuseport_listeners(config.api_addr, api_threads()).with_context(|| {
            format!(
                "cannot listen on {}; is another node running there? pick another --api address",
                config.api_addr
            )
        })?;
    let api_addr = listeners[0].local_addr()?;
    let receipts = match config.ledger {
        Some(_) => Some(Receipts::open(&config.data_dir.join("receipts"))?),
        None => None,
    };
    let idle = match config.idle_only {
        Some(policy) => Some(
            owner::IdleWatch::start(policy)
                .context("--idle-only needs /proc/stat to measure the machine's load")?,
        ),
        None => None,
    };
    let worker = Arc::new(Worker {
        pipeline: Pipeline::new(&key.seed()),
        key,
        store,
        p2p,
        runtime,
        deployed: Mutex::new(HashMap::new()),
        loading: tokio::sync::Mutex::new(()),
        names: Mutex::new(HashMap::new()),
        logs: logs::RecentLogs::default(),
        answered_reads: logs::AnsweredReads::default(),
        ledger: config.ledger,
        receipts,
        period_ms,
        price: config.price_per_million_fuel,
        concurrency: tokio::sync::Semaphore::new(config.concurrency_max.max(1)),
        probe_delay: config.probe_delay,
        fuel_rate: config.fuel_per_second_max.map(owner::FuelRate::new),
        idle,
    });
    if let Some(ledger) = &worker.ledger {
        let p2p_addr = worker
            .p2p
            .addrs()
            .first()
            .map(|a| format!(" {a}"))
            .unwrap_or_default();
        crate::register(
            ledger,
            &worker.key,
            bonus_ledger::NodeRole::Worker,
            worker.key.public(),
            format!("http://{api_addr}{p2p_addr}"),
            config.region,
            worker.price,
        )
        .await?;
    }
    on_ready(Ready {
        api: api_addr,
        p2p: &worker.p2p,
        key: worker.key.public(),
        local: Arc::new(InProcess(worker.clone())),
    });
    let peering = worker
        .ledger
        .is_some()
        .then(|| tokio::spawn(peer_loop(worker.clone(), stop.clone())));
    let settling = worker
        .ledger
        .is_some()
        .then(|| tokio::spawn(settle::run(worker.clone(), stop.clone())));
    serve_api(listeners, worker.clone(), stop).await?;
    if let Some(receipts) = &worker.receipts {
        receipts.flush();
    }
    for task in [settling, peering].into_iter().flatten() {
        task.abort();
    }
    Ok(())
}

/// Threads serving the API: one per core this process may run on.
fn api_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Serves the API from one current-thread runtime per listener (one per
/// core), as `bonus serve` does, until `stop`; returns once every thread
/// has drained. Measured on one core: a multi-thread runtime cost ~30 µs
/// more per invocation (66 vs 36 µs of worker CPU per request).
async fn serve_api(
    listeners: Vec<std::net::TcpListener>,
    worker: Arc<Worker>,
    stop: Stop,
) -> anyhow::Result<()> {
    let limits = HttpLimits {
        connections_max: (HttpLimits::DEFAULT.connections_max / listeners.len()).max(1),
        ..HttpLimits::DEFAULT
    };
    let mut done = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let (worker, stop) = (worker.clone(), stop.clone());
        let (finished, finished_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        std::thread::Builder::new()
            .name(format!("bonus-api-{index}"))
            .spawn(move || {
                let served = (|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("building an API runtime")?;
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)
                            .context("using the API listener")?;
                        api::serve(listener, worker, limits, stop).await;
                        anyhow::Ok(())
                    })
                })();
                let _ = finished.send(served);
            })
            .context("starting an API thread")?;
        done.push(finished_rx);
    }
    for finished in done {
        match finished.await {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("an API thread panicked; see the log above"),
        }
    }
    Ok(())
}

/// The worker as a router in the same process calls it: no HTTP, the
/// same checks, limits, receipts and answers as `/v1/run/<manifest>/`.
struct InProcess(Arc<Worker>);

impl bonus_router::LocalWorker for InProcess {
    fn key(&self) -> bonus_ids::PublicKey {
        self.0.key.public()
    }

    fn call(
        &self,
        manifest: ManifestId,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = http::Response<bonus_router::RouterBody>> + Send>,
    > {
        use http_body_util::BodyExt;
        let worker = self.0.clone();
        Box::pin(async move {
            api::invoke(&worker, manifest, api::forwarded_host(request))
                .await
                .map(|body| body.map_err(|never| match never {}).boxed())
        })
    }
}

impl Worker {
    fn period_now(&self) -> u64 {
        crate::now_ms() / self.period_ms
    }
}

/// How often the ledger's node registry is read for new peers.
const PEER_REFRESH: Duration = Duration::from_secs(5);

async fn peer_loop(worker: Arc<Worker>, stop: Stop) {
    loop {
        worker.join_peers().await;
        tokio::select! {
            () = tokio::time::sleep(PEER_REFRESH) => {}
            () = crate::http::stopped(stop.clone()) => return,
        }
    }
}

impl Worker {
    /// Dials every other worker the ledger lists (nothing for those
    /// already connected).
    async fn join_peers(&self) {
        let Some(ledger) = &self.ledger else { return };
        let connected = self.p2p.connected_peers().await.len();
        let nodes = match ledger.nodes().await {
            Ok(nodes) => nodes.nodes,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the node registry");
                return;
            }
        };
        let me = self.key.public().to_string();
        for node in nodes {
            if node.role == "worker"
                && node.key != me
                && let Some(addr) = crate::endpoint_p2p(&node.endpoint)
            {
                self.p2p.dial(addr).await;
            }
        }
        // Give new connections a moment, so a fetch right after finds them.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.p2p.connected_peers().await.len() <= connected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
