//! Every bound of the router, named once, with their relations checked at
//! compile time.

use crate::RouterError;
use std::time::Duration;

/// Largest buffer hyper keeps per connection for a request head; hyper's
/// own floor is 8 KiB. Larger heads get 431.
pub const HEAD_BUF_BYTES_MAX: usize = 64 << 10;

/// How long a health probe may take before the worker counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long connecting to a worker may take (forwarding and probes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait between route-table refreshes after failures in a row
/// (each doubles the wait from `refresh_interval`).
pub const REFRESH_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// More candidates tried after the first when a worker cannot be reached.
/// Only requests that never reached a worker are retried.
pub const RETRIES_MAX: usize = 2;

/// How long `run` waits for in-flight requests after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long an attestation may take to become final during a round.
pub const ATTEST_FINAL_WAIT: Duration = Duration::from_secs(30);

/// How long the last attestation round at shutdown may take in all.
pub const ATTEST_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Lines per `Attest` transaction: the ledger's list bound.
pub const ATTEST_LINES_PER_TX_MAX: usize = bonus_ledger::limits::LIST_ITEMS_MAX;

/// Most (period, manifest, worker) lines waiting to be attested; past it new
/// lines are dropped with a warning (counts on existing lines still add).
pub const ATTEST_PENDING_LINES_MAX: usize = 64 << 10;

/// Outstanding requests on the preferred warm worker above which a third,
/// random near worker is also considered, so one hot function cannot pile
/// onto two workers while others idle.
pub const SPILL_OUTSTANDING: u64 = 64;

/// How far (in RTT, µs, beyond twice the nearest worker's) a worker that
/// already runs a function may be and still be preferred to a nearer one
/// that would have to compile it first. Small next to a cold start, small
/// next to the distance between regions (tens of ms).
pub const WARM_RTT_SLACK_US: u64 = 2_000;

/// Requests in flight on a warm worker from which a cold one is used
/// instead: under load a function warms up on a second worker (its
/// rendezvous pair), at low load it stays on the one that has it.
pub const WARM_BUSY_OUTSTANDING: u64 = 8;

/// A worker counts as warm for a function it answered within this long.
pub const WARM_FOR: Duration = Duration::from_secs(60);

/// Functions remembered as warm per worker (the most recently served).
pub const WARM_MANIFESTS_MAX: usize = 32;

/// Idle keep-alive connections kept per worker by the forwarding pool.
pub const POOL_IDLE_PER_WORKER_MAX: usize = 128;

/// How long an idle pooled connection to a worker is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of a health answer read (the body is discarded).
pub const PROBE_BODY_BYTES_MAX: usize = 4 << 10;

/// The same warning is logged at most once per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

const _: () = assert!(HEAD_BUF_BYTES_MAX >= 8192, "hyper panics below 8 KiB");
const _: () = assert!(RETRIES_MAX <= 4);
const _: () = assert!(ATTEST_LINES_PER_TX_MAX >= 1);
const _: () = assert!(ATTEST_PENDING_LINES_MAX >= ATTEST_LINES_PER_TX_MAX);
const _: () = assert!(ATTEST_SHUTDOWN_WAIT.as_millis() <= ATTEST_FINAL_WAIT.as_millis());
const _: () = assert!(PROBE_TIMEOUT.as_millis() >= CONNECT_TIMEOUT.as_millis());
const _: () = assert!(RouterLimits::DEFAULT.probe_interval.as_millis() < PROBE_TIMEOUT.as_millis());
const _: () = assert!(RouterLimits::DEFAULT.body_bytes_max <= 1 << 30);

/// What one router accepts from the edge and how often it looks around.
///
/// Every field is a hard bound or a period; [`RouterLimits::DEFAULT`] suits a
/// public router. Zero periods and zero capacities are refused by
/// [`Router::bind`](crate::Router::bind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterLimits {
    /// Open client connections; past it a new connection is accepted and
    /// closed at once.
    pub connections_max: usize,
    /// How long a client may take to send a whole request head, from its
    /// first byte.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a whole request body.
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in flight and no request head
    /// started is closed after this.
    pub idle_timeout: Duration,
    /// A worker's response head must arrive within this, else 504.
    pub forward_timeout: Duration,
    /// Largest request body; larger gets 413.
    pub body_bytes_max: u64,
    /// Requests in flight per function name; past it 429 with `Retry-After`.
    pub concurrency_per_function: usize,
    /// How often each known worker's health is probed.
    pub probe_interval: Duration,
    /// Least time between two route-table refreshes (each follows a new
    /// finalized block, however fast blocks land).
    pub refresh_interval: Duration,
    /// How often forwarded counts are attested on the ledger.
    pub attest_interval: Duration,
}

impl RouterLimits {
    /// Defaults for a public router.
    pub const DEFAULT: RouterLimits = RouterLimits {
        connections_max: 10_000,
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        forward_timeout: Duration::from_secs(60),
        body_bytes_max: 10 << 20,
        concurrency_per_function: 1024,
        probe_interval: Duration::from_millis(250),
        refresh_interval: Duration::from_millis(50),
        attest_interval: Duration::from_secs(2),
    };

    /// Refuses zero periods and capacities (a zero interval would panic in
    /// tokio, a zero capacity would refuse everything).
    pub(crate) fn check(&self) -> Result<(), RouterError> {
        let invalid = |reason: &str| {
            Err(RouterError::InvalidLimits {
                reason: reason.to_string(),
            })
        };
        if self.connections_max == 0 || self.connections_max > tokio::sync::Semaphore::MAX_PERMITS {
            return invalid("connections_max must be between 1 and tokio's semaphore maximum");
        }
        if self.concurrency_per_function == 0 {
            return invalid("concurrency_per_function must be at least 1");
        }
        let periods = [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("forward_timeout", self.forward_timeout),
            ("probe_interval", self.probe_interval),
            ("refresh_interval", self.refresh_interval),
            ("attest_interval", self.attest_interval),
        ];
        for (name, period) in periods {
            if period.is_zero() {
                return invalid(&format!("{name} must be longer than zero"));
            }
        }
        Ok(())
    }
}

impl Default for RouterLimits {
    fn default() -> Self {
        RouterLimits::DEFAULT
    }
}
