//! The accept loop shared by the worker's API and the validator's query
//! API, with the limits every listening surface needs (a connection cap, a
//! header-read timeout, an idle keep-alive timeout) and a graceful stop
//! that drains requests. The loop itself is the router's edge
//! ([`bonus_router::serve_http`]): one hardened server, not one per role.

use bonus_router::ServeLimits;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use std::future::Future;
use std::sync::Arc;
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
/// then drains in-flight requests (up to `limits.drain_timeout`): the
/// router's hardened edge loop ([`bonus_router::serve_http`]), so every
/// listening surface of a node times out dribbled heads and idle
/// connections the same way.
pub async fn serve<F, Fut>(
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    stop: Stop,
    handle: F,
) where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let cap = Arc::new(Semaphore::new(limits.connections_max));
    let serve_limits = ServeLimits {
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: limits.idle_timeout,
        drain_timeout: limits.drain_timeout,
    };
    bonus_router::serve_http(listener, cap, serve_limits, stopped(stop), handle).await;
}

/// `count` (≥ 1) listeners on one address with `SO_REUSEPORT`, one per
/// serving thread (the router's helper: it serves the same way).
pub(crate) use bonus_router::reuseport_listeners;

#[cfg(test)]
mod tests {
    use super::{HttpLimits, serve};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const GENEROUS: Duration = Duration::from_secs(10);
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

    async fn start(limits: HttpLimits) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(listener, limits, stop_rx, |_request| async {
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
        }));
        (addr, stop)
    }

    /// Sends one request and reads its response head and 2-byte body.
    async fn exchange(stream: &mut TcpStream) -> String {
        stream.write_all(REQUEST).await.expect("write");
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        while !answer.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(GENEROUS, stream.read(&mut buffer))
                .await
                .expect("an answer in time")
                .expect("read");
            assert!(n > 0, "closed before answering: {answer:?}");
            answer.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// How long until the server closes `stream`.
    async fn closed_after(stream: &mut TcpStream) -> Duration {
        let started = Instant::now();
        let mut buffer = [0u8; 1024];
        loop {
            match tokio::time::timeout(GENEROUS, stream.read(&mut buffer)).await {
                Ok(Ok(0) | Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("still open after {GENEROUS:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_half_sent_head_is_cut_but_an_idle_keep_alive_connection_outlives_the_head_timeout() {
        let (addr, _stop) = start(HttpLimits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(30),
            ..HttpLimits::DEFAULT
        })
        .await;
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        assert!(exchange(&mut idle).await.starts_with("HTTP/1.1 200"));
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHo")
            .await
            .expect("write");
        let took = closed_after(&mut slow).await;
        assert!(took >= Duration::from_millis(250), "cut after {took:?}");
        // Idle for twice the head timeout (hyper's own header timer alone
        // would have closed it): still served.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(exchange(&mut idle).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn past_the_cap_a_connection_is_closed_and_stop_closes_idle_ones() {
        let (addr, stop) = start(HttpLimits {
            connections_max: 2,
            ..HttpLimits::DEFAULT
        })
        .await;
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            assert!(exchange(&mut stream).await.starts_with("HTTP/1.1 200"));
            open.push(stream);
        }
        let mut third = TcpStream::connect(addr).await.expect("the kernel accepts");
        let took = closed_after(&mut third).await;
        assert!(took < Duration::from_secs(2), "closed after {took:?}");
        stop.send(true).expect("the server listens");
        for stream in &mut open {
            closed_after(stream).await;
        }
    }
}
