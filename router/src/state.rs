//! What every task of one router shares: the current route table, the
//! HTTP clients, counters and the attestation ledger of forwarded
//! requests. One `Arc<Shared>` per router, alive until `run` returns.

use crate::attest::Pending;
use crate::limits::{CONNECT_TIMEOUT, POOL_IDLE_PER_WORKER_MAX, POOL_IDLE_TIMEOUT, WARN_INTERVAL};
use crate::select::Rng;
use crate::{RouteTable, RouterLimits};
use bonus_ids::{PublicKey, RequestId, SecretKey};
use bonus_ledger::client::LedgerClient;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A pooled keep-alive HTTP/1 client to workers.
pub(crate) type WorkerClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) struct Shared {
    /// Signs attestations.
    pub key: SecretKey,
    /// `ed25519:<hex>`, sent to workers as `x-bonus-router`.
    pub router_header: http::HeaderValue,
    pub limits: RouterLimits,
    pub ledger: Option<Arc<LedgerClient>>,
    table: RwLock<Arc<RouteTable>>,
    /// Wakes the probe task when new workers appear.
    pub table_changed: tokio::sync::Notify,
    /// Open client connections, across every serving thread.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// Probes workers; separate from the forwarding pools so a probe never
    /// queues behind requests and forwarding never reuses a probe's
    /// connection.
    pub probe_client: WorkerClient,
    request_id_prefix: u64,
    request_counter: AtomicU64,
    pub rng: Rng,
    pub forwarded: AtomicU64,
    pub retried: AtomicU64,
    /// Counts waiting to be attested (only with a ledger).
    pub pending: Pending,
    /// The ledger's settlement period length; 0 until first read.
    pub period_ms: AtomicU64,
    /// A worker in this process: requests to it skip HTTP.
    pub local: std::sync::OnceLock<Arc<dyn crate::LocalWorker>>,
}

impl Shared {
    pub(crate) fn new(
        key: SecretKey,
        ledger: Option<Arc<LedgerClient>>,
        limits: RouterLimits,
    ) -> Shared {
        let public = key.public();
        let seed = seed(&public);
        let router_header = http::HeaderValue::from_str(&public.to_string())
            .expect("a public key's text form is a valid header value");
        Shared {
            key,
            router_header,
            limits,
            ledger,
            table: RwLock::new(Arc::new(RouteTable::new())),
            table_changed: tokio::sync::Notify::new(),
            connections: Arc::new(tokio::sync::Semaphore::new(limits.connections_max)),
            probe_client: worker_client(),
            request_id_prefix: seed,
            request_counter: AtomicU64::new(0),
            rng: Rng::new(seed.rotate_left(17)),
            forwarded: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            pending: Pending::default(),
            period_ms: AtomicU64::new(0),
            local: std::sync::OnceLock::new(),
        }
    }

    /// The table requests read now.
    pub(crate) fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in `table`, keeping the health and counters of what it shares
    /// with the old one, and wakes the prober for new workers.
    pub(crate) fn install(&self, mut table: RouteTable) {
        let mut current = self.table.write().unwrap_or_else(|e| e.into_inner());
        table.carry_over(&current);
        *current = Arc::new(table);
        drop(current);
        self.table_changed.notify_one();
    }

    /// A new id: this router's random prefix and a counter.
    pub(crate) fn next_request_id(&self) -> RequestId {
        let count = self.request_counter.fetch_add(1, Ordering::Relaxed);
        RequestId::from_u128((u128::from(self.request_id_prefix) << 64) | u128::from(count))
    }
}

/// A new pool. Forwarding uses one per serving thread (see
/// `forward::with_client`): a pooled connection is driven by the runtime
/// that opened it, so sharing one pool across threads would wake another
/// thread for every request.
pub(crate) fn worker_client() -> WorkerClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_IDLE_PER_WORKER_MAX)
        .build(connector)
}

/// 64 random-enough bits: request ids of two routers (or two runs of one)
/// must not collide, and nothing secret depends on them.
fn seed(public: &PublicKey) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(public.as_bytes());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&format!("{:?}", Instant::now()).into_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Logs a repeated warning at most once per [`WARN_INTERVAL`], with how
/// many were suppressed, so a down ledger or a flood cannot fill the log.
#[derive(Debug, Default)]
pub(crate) struct WarnLimiter {
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarnLimiter {
    /// `Some(suppressed)` when this warning should be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < WARN_INTERVAL) {
            *suppressed += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(suppressed))
    }
}

/// An error and its sources, `: `-separated (hyper's top-level messages
/// alone, like "client error (Connect)", do not say what happened).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves once `flag` is true (or its sender is gone). Returns nothing,
/// so no `watch::Ref` (a lock guard) outlives the wait.
pub(crate) async fn raised(flag: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await;
}
