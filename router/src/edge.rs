//! The hostile edge: accepting connections under a cap, and bounding how
//! long each may idle or dribble a request head. The node's own HTTP APIs
//! and `bonus serve` serve through it too ([`serve_http`]).
//!
//! hyper's `header_read_timeout` also runs while a keep-alive connection
//! waits for its next request, so on its own it would close idle
//! connections after the header timeout, and the idle timeout could not be
//! longer. [`serve_http`] therefore watches each connection itself: reads are
//! observed through [`Watched`], requests through [`Busy`] guards, and the
//! connection is dropped when a started head takes longer than
//! `header_read_timeout`, or shut down gracefully after `idle_timeout`
//! with nothing in flight. hyper's own timer is kept as a backstop at the
//! sum of both.
//!
//! The watcher looks at the connection on a fixed tick of half the shorter
//! timeout rather than being woken by every request: a request then costs
//! a few atomic stores, not a task wake-up and a timer re-armed at its
//! start and at its end (measured: that was a good part of the router's
//! hop). A head is therefore cut between `header_read_timeout` and 1.5×
//! it, and an idle connection closed within one tick of its timeout.

use crate::body::Guarded;
use crate::forward;
use crate::limits::{HEAD_BUF_BYTES_MAX, SHUTDOWN_GRACE};
use crate::state::{Shared, WarnLimiter, raised};
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// Pause after a failed accept (out of file descriptors, say), so the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a listening surface tolerates from its clients (the router's edge,
/// and every HTTP API of a node: they serve through [`serve_http`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// How long a client may take to send a whole request head, from its
    /// first byte.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight and no request
    /// head started is closed after this.
    pub idle_timeout: Duration,
    /// After shutdown, requests in flight get this long to finish before
    /// their connections are cut.
    pub drain_timeout: Duration,
}

/// Serves the router's edge on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = ServeLimits {
        header_read_timeout: shared.limits.header_read_timeout,
        idle_timeout: shared.limits.idle_timeout,
        drain_timeout: SHUTDOWN_GRACE,
    };
    let cap = shared.connections.clone();
    serve_http(listener, cap, limits, shutdown, move |request| {
        forward::handle(shared.clone(), request)
    })
    .await;
}

/// Serves `handle` on every connection `listener` accepts, while `cap`
/// has a permit for it (past the cap a connection is accepted and closed
/// at once: cheaper than queueing), with a head, idle and drain timeout
/// per [`ServeLimits`]. When `shutdown` resolves it stops accepting, asks
/// every connection to finish its request and close, and waits for them
/// up to `limits.drain_timeout`, then cuts what is left.
pub async fn serve_http<F, Fut, B>(
    listener: TcpListener,
    cap: Arc<Semaphore>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
    handle: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let (over_cap, accept_failed) = (WarnLimiter::default(), WarnLimiter::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match cap.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let connection = connection(stream, limits, closing_rx.clone(), handle.clone());
                        connections.spawn(async move {
                            connection.await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        drop(stream);
                        if let Some(suppressed) = over_cap.allow() {
                            tracing::warn!(suppressed, local = ?listener.local_addr().ok(), "connection cap reached; closing new connections");
                        }
                    }
                },
                Err(e) => {
                    if let Some(suppressed) = accept_failed.allow() {
                        tracing::warn!(suppressed, error = %e, "accept failed");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    // Receivers may all be gone already: nothing to tell then.
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "requests still in flight after the drain timeout; cutting them"
        );
        connections.shutdown().await;
    }
}

/// Serves one connection until it closes, idles out, dribbles, or the
/// server shuts down.
async fn connection<F, Fut, B>(
    stream: TcpStream,
    limits: ServeLimits,
    mut closing: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Best effort: a socket that refuses it still works.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request| {
        let busy = Busy::begin(&service_activity);
        let response = handle(request);
        async move {
            let response = response.await;
            Ok::<_, Infallible>(response.map(|body| Guarded::new(body, busy)))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(
            limits
                .idle_timeout
                .saturating_add(limits.header_read_timeout),
        )
        .max_buf_size(HEAD_BUF_BYTES_MAX)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    let tick = watch_tick(&limits);
    let mut watch = tokio::time::interval_at(Instant::now() + tick, tick);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = raised(&mut closing), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = watch.tick(), if !draining => {
                match activity.due(limits.header_read_timeout, limits.idle_timeout) {
                    Some((at, Due::Head)) if at <= Instant::now() => return,
                    Some((at, Due::Idle)) if at <= Instant::now() => {
                        conn.as_mut().graceful_shutdown();
                        draining = true;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// How often a connection's watcher looks: half the shorter timeout, so
/// neither is overshot by more than half of itself.
fn watch_tick(limits: &ServeLimits) -> Duration {
    (limits.header_read_timeout.min(limits.idle_timeout) / 2).max(Duration::from_millis(1))
}

/// What comes due on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// A request head started and is not complete: drop the connection.
    Head,
    /// Nothing in flight, nothing started: close it gracefully.
    Idle,
}

/// What a connection is doing, as its watcher sees it. Times are µs since
/// `started`; `NONE` means unset.
struct Activity {
    started: Instant,
    /// Requests whose head was read and whose response has not ended.
    in_flight: AtomicU64,
    /// When the connection last had nothing in flight.
    idle_since_us: AtomicU64,
    /// When the first byte of a not yet complete head arrived.
    head_since_us: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            in_flight: AtomicU64::new(0),
            idle_since_us: AtomicU64::new(0),
            head_since_us: AtomicU64::new(NONE),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(NONE - 1)
    }

    fn at(&self, us: u64) -> Instant {
        self.started + Duration::from_micros(us)
    }

    /// Bytes arrived: with nothing in flight, a new head has started.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since_us.load(Ordering::Acquire) == NONE
        {
            self.head_since_us.store(self.now_us(), Ordering::Release);
        }
    }

    /// The next deadline, if any (none while a request is in flight).
    fn due(&self, header_read_timeout: Duration, idle_timeout: Duration) -> Option<(Instant, Due)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since_us.load(Ordering::Acquire) {
            NONE => Some((
                self.at(self.idle_since_us.load(Ordering::Acquire)) + idle_timeout,
                Due::Idle,
            )),
            since => Some((self.at(since) + header_read_timeout, Due::Head)),
        }
    }
}

/// One request on a connection, from its complete head until its response
/// body ends (or is dropped).
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_since_us.store(NONE, Ordering::Release);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity
                .idle_since_us
                .store(activity.now_us(), Ordering::Release);
        }
    }
}

/// A client socket whose reads are reported to its [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
