//! Send each request to the nearest healthy worker.
//!
//! The router is the public HTTP edge of a Bonus network. It owns the
//! route from a request to a function (`hello.<router-host>/path` or
//! `<router-host>/fn/hello/path`), the choice of worker, forwarding with
//! safe retries, traffic splits, size, time and concurrency limits, and
//! the router's attestation of how many requests it forwarded. It never
//! runs wasm (it does not depend on the runtime or the registry), never
//! decides who owns a name (the ledger does), and never retries a request
//! that may have run: only a failed connection, or a worker's refusal
//! marked [`NOT_RUN`], is tried on another worker.
//!
//! # Example
//!
//! ```no_run
//! use bonus_ids::{ManifestId, SecretKey};
//! use bonus_router::{NameRoute, RouteTable, Router, RouterConfig, RouterLimits};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RouterConfig {
//!     key: SecretKey::generate(),
//!     ledger: None,
//!     limits: RouterLimits::default(),
//! };
//! let router = Router::bind("127.0.0.1:7000".parse()?, config).await?;
//! let worker = SecretKey::generate().public();
//! let mut table = RouteTable::new();
//! table.insert_worker(worker, "http://127.0.0.1:7100", 1)?;
//! table.insert_name("hello", NameRoute::single(worker, ManifestId::of(b"manifest"), 10))?;
//! router.set_table(table);
//! router.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Core Concepts
//!
//! - [`Router`]: one listening edge. Built by [`Router::bind`], consumed by
//!   [`Router::run`], which owns every task (connections, probes, ledger
//!   polling, attestation) and returns once they are done. Connections are
//!   served by one current-thread runtime per core, each with its own
//!   `SO_REUSEPORT` listener and its own pool of worker connections; the
//!   background tasks run on the caller's runtime.
//! - [`RouteTable`]: names → manifests (weighted, with the owner's price
//!   consent) and workers → endpoints and prices. Immutable once installed;
//!   the router swaps in a new one at each ledger height (or on
//!   [`Router::set_table`]), and a request reads one table throughout.
//!   Worker health and per-name load carry across swaps.
//! - Worker choice: healthy workers within the manifest's price, then the
//!   near set by probed RTT, then the two with the highest rendezvous hash
//!   for the manifest (where it stays warm), then the less loaded of those;
//!   and if that one has not run the manifest in the last minute, a worker
//!   that has, if it is within 2 ms of the nearest and not busy (a probe
//!   slowed by a compile must not send the next request to a cold worker).
//! - [`RouterStatus`]: what `GET /v1/router/status` answers.
//!
//! # Limits
//!
//! [`RouterLimits`] bounds connections, header, body and idle times, body
//! size, per-function concurrency and the task periods; the fixed bounds
//! (retries, probe and connect timeouts, shutdown grace) are in
//! [`limits`]. Answers the router makes itself are `text/plain` with an
//! `x-bonus-request-id`: 400 malformed Host or name, 402 unpaid, 404 no
//! such function, 408 slow body, 413 large body, 429 too many in flight,
//! 502 worker failed, 503 no healthy worker, 504 worker too slow.
#![deny(missing_docs)]

mod attest;
mod body;
mod edge;
mod error;
mod forward;
pub mod limits;
mod listen;
mod probe;
mod refresh;
mod route;
mod select;
mod state;
mod status;
mod table;

pub use body::RouterBody;
pub use edge::{ServeLimits, serve_http};
pub use error::RouterError;
pub use forward::{NOT_RUN, PERIOD};
pub use limits::RouterLimits;
pub use listen::reuseport_listeners;
pub use status::{HEALTH_PATH, RouterStatus, STATUS_PATH, WorkerStatus};
pub use table::{NameRoute, RouteTable, SplitRoute};

use bonus_ids::SecretKey;
use bonus_ledger::client::LedgerClient;
use state::Shared;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a router needs to start.
pub struct RouterConfig {
    /// The router's node key: signs its attestations; its public half is
    /// sent to workers in `x-bonus-router`.
    pub key: SecretKey,
    /// Where routes come from and attestations go. `None`: only the table
    /// given to [`Router::set_table`], and no attestation (tests).
    pub ledger: Option<Arc<LedgerClient>>,
    /// Bounds on what clients may do.
    pub limits: RouterLimits,
}

/// A worker in the router's own process (`bonus node --role worker --role
/// router`): when the router picks it, the request skips the HTTP hop.
/// Everything else is as for any worker: it is chosen by the same rules
/// (health probes, price, load), its answer is retried elsewhere only if
/// marked [`NOT_RUN`], and it is attested only if the ledger allows this
/// router to vouch for it.
pub trait LocalWorker: Send + Sync + 'static {
    /// Its key, as registered on the ledger.
    fn key(&self) -> bonus_ids::PublicKey;

    /// Runs `request` (its URI is the function's path and query; its
    /// headers are what the worker's HTTP API would receive, the router's
    /// own included) on `manifest`, and answers as that API would.
    fn call(
        &self,
        manifest: bonus_ids::ManifestId,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = http::Response<RouterBody>> + Send>>;
}

/// A bound router, not yet serving.
pub struct Router {
    /// One per serving thread, all on `local_addr` (`SO_REUSEPORT`).
    listeners: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Router {
    /// Binds the listener. Fails if the address is taken or the limits
    /// cannot work.
    pub async fn bind(addr: SocketAddr, config: RouterConfig) -> Result<Router, RouterError> {
        config.limits.check()?;
        let bind_error = |source| RouterError::Bind { addr, source };
        let listeners = reuseport_listeners(addr, serving_threads()).map_err(bind_error)?;
        let local_addr = listeners[0].local_addr().map_err(bind_error)?;
        let shared = Arc::new(Shared::new(config.key, config.ledger, config.limits));
        Ok(Router {
            listeners,
            local_addr,
            shared,
        })
    }

    /// The address it listens on (with the real port when bound to 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the route table. With a ledger, the next ledger height
    /// replaces it again. New workers take no traffic until their first
    /// health probe answers, which starts at once.
    pub fn set_table(&self, table: RouteTable) {
        self.shared.install(table);
    }

    /// Sends requests for `local`'s key to it in process. Set once; a
    /// second call is ignored.
    pub fn set_local_worker(&self, local: Arc<dyn LocalWorker>) {
        let _ = self.shared.local.set(local);
    }

    /// What the router knows now (the same as `GET /v1/router/status`).
    pub fn status(&self) -> RouterStatus {
        status::snapshot(&self.shared)
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets
    /// requests in flight finish (up to [`limits::SHUTDOWN_GRACE`]),
    /// submits the last attestations (up to
    /// [`limits::ATTEST_SHUTDOWN_WAIT`]) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), RouterError> {
        let shared = self.shared;
        let mut background = tokio::task::JoinSet::new();
        background.spawn(probe::run(shared.clone()));
        let (stop_attesting, stop_rx) = tokio::sync::watch::channel(false);
        let attesting = shared.ledger.clone().map(|ledger| {
            background.spawn(refresh::run(shared.clone(), ledger.clone()));
            let interval = shared.limits.attest_interval;
            tokio::spawn(attest::run(shared.clone(), ledger, interval, stop_rx))
        });
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let (finished, mut finished_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut serving = 0;
        let mut first_error = None;
        for (index, listener) in self.listeners.into_iter().enumerate() {
            match serve_on_thread(index, listener, &shared, &closing_rx, &finished) {
                Ok(()) => serving += 1,
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        drop(finished);
        if first_error.is_none() {
            // A thread that ends before the shutdown could not serve.
            tokio::select! {
                () = shutdown => {}
                Some(result) = finished_rx.recv() => {
                    serving -= 1;
                    first_error = result.err();
                }
            }
        }
        // Receivers may all be gone already: nothing to tell then.
        let _ = closing.send(true);
        while serving > 0 {
            match finished_rx.recv().await {
                Some(result) => {
                    serving -= 1;
                    if let Err(e) = result {
                        first_error.get_or_insert(e);
                    }
                }
                None => break, // A thread panicked; its panic is logged.
            }
        }
        background.shutdown().await;
        if let Some(mut attesting) = attesting {
            // The task may be gone already if it panicked; nothing to stop.
            let _ = stop_attesting.send(true);
            let done = tokio::time::timeout(limits::ATTEST_SHUTDOWN_WAIT, &mut attesting).await;
            if done.is_err() {
                attesting.abort();
                tracing::warn!(
                    pending = shared.pending.total(),
                    "the ledger did not take the last attestations in time"
                );
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Threads serving connections: one per core this process may run on.
fn serving_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Serves `listener` on a new thread with its own current-thread runtime
/// until `closing` is raised; sends how it ended on `finished`. Measured
/// for the worker's API on one core: a multi-thread runtime cost ~30 µs
/// more per request than one current-thread runtime per core.
fn serve_on_thread(
    index: usize,
    listener: std::net::TcpListener,
    shared: &Arc<Shared>,
    closing: &tokio::sync::watch::Receiver<bool>,
    finished: &tokio::sync::mpsc::UnboundedSender<Result<(), RouterError>>,
) -> Result<(), RouterError> {
    let (shared, mut closing, finished) = (shared.clone(), closing.clone(), finished.clone());
    let start_error = |source| RouterError::Start { source };
    std::thread::Builder::new()
        .name(format!("bonus-router-{index}"))
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let shutdown = async move { state::raised(&mut closing).await };
                        edge::serve(listener, shared, shutdown).await;
                        Ok(())
                    })
                });
            let _ = finished.send(served.map_err(start_error));
        })
        .map(drop)
        .map_err(start_error)
}
