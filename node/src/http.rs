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
use std::sync::atomic::{AtomicUsize, Ordering};
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
    // Requests in flight on this connection, and when the last one ended:
    // hyper has no idle timeout of its own for keep-alive connections.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (activity, mut idle_since) = watch::channel(tokio::time::Instant::now());
    let activity = Arc::new(activity);
    let service = {
        let in_flight = in_flight.clone();
        let activity = activity.clone();
        hyper::service::service_fn(move |request| {
            in_flight.fetch_add(1, Ordering::Relaxed);
            let response = handle(request);
            let in_flight = in_flight.clone();
            let activity = activity.clone();
            async move {
                let response = response.await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                activity.send_replace(tokio::time::Instant::now());
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
    loop {
        let idle_deadline = *idle_since.borrow() + limits.idle_timeout;
        tokio::select! {
            _ = connection.as_mut() => return,
            () = stopped(stop.clone()), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_since.changed() => {}
            () = tokio::time::sleep_until(idle_deadline) => {
                if in_flight.load(Ordering::Relaxed) == 0 {
                    connection.as_mut().graceful_shutdown();
                    stopping = true;
                }
                idle_since.mark_unchanged();
                activity.send_replace(tokio::time::Instant::now());
            }
        }
    }
}
