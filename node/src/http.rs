//! The accept loop shared by the worker's API and the validator's query
//! API: HTTP/1.1 over hyper, one task per connection, with the limits every
//! listening surface needs (a connection cap, a header-read timeout, an
//! idle keep-alive timeout) and a graceful stop that drains requests.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// What one listener tolerates from its clients.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Open connections at once; more are accepted and closed at once.
    pub connections_max: usize,
    /// A request's header must arrive within this.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with nothing in flight is closed after this.
    pub idle_timeout: Duration,
    /// In-flight requests get this long to finish after a stop.
    pub drain_timeout: Duration,
}

impl HttpLimits {
    /// Defaults for an internal API.
    pub const DEFAULT: HttpLimits = HttpLimits {
        connections_max: 4096,
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(10),
    };
}

/// A stop signal shared by every task of a node: `true` once stopping.
pub type Stop = watch::Receiver<bool>;

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: Stop) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Serves `handle` on every connection `listener` accepts until `stop`,
/// then drains in-flight requests (up to `limits.drain_timeout`).
pub async fn serve<F, Fut>(
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    stop: Stop,
    handle: F,
) where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, typically: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stopped(stop.clone()) => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream); // Over the cap: closing at once costs less than queueing.
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let stop = stop.clone();
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            serve_connection(stream, limits, stop, handle).await;
            open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + limits.drain_timeout;
    while open.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn serve_connection<F, Fut>(
    stream: tokio::net::TcpStream,
    limits: HttpLimits,
    stop: Stop,
    handle: F,
) where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    // Requests in flight on this connection, and when the last one ended
    // (µs since it opened): hyper has no idle timeout of its own for
    // keep-alive connections. Kept in atomics and looked at on a tick, so a
    // request costs no task wake-up or timer of its own.
    let opened = tokio::time::Instant::now();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let idle_since_us = Arc::new(AtomicU64::new(0));
    let service = {
        let (in_flight, idle_since_us) = (in_flight.clone(), idle_since_us.clone());
        hyper::service::service_fn(move |request| {
            in_flight.fetch_add(1, Ordering::AcqRel);
            let response = handle(request);
            let (in_flight, idle_since_us) = (in_flight.clone(), idle_since_us.clone());
            async move {
                let response = response.await;
                idle_since_us.store(micros_since(opened), Ordering::Release);
                in_flight.fetch_sub(1, Ordering::AcqRel);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 << 10)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = false;
    // Half the timeout: an idle connection closes within 1.5× of it.
    let tick = (limits.idle_timeout / 2).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = stopped(stop.clone()), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = ticks.tick(), if !stopping => {
                let idle_for = micros_since(opened)
                    .saturating_sub(idle_since_us.load(Ordering::Acquire));
                if in_flight.load(Ordering::Acquire) == 0
                    && Duration::from_micros(idle_for) >= limits.idle_timeout
                {
                    connection.as_mut().graceful_shutdown();
                    stopping = true;
                }
            }
        }
    }
}

fn micros_since(start: tokio::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `count` (≥ 1) listeners on one address with `SO_REUSEPORT`, one per
/// serving thread (the router's helper: it serves the same way).
pub(crate) use bonus_router::reuseport_listeners;
