//! Bodies, retries and failures between the router and workers.

use crate::support::{Behaviour, FakeWorker, TestRouter, get, raw_exchange, table};
use bonus_ids::ManifestId;
use bonus_router::RouterLimits;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Workers whose probes take about this long measure alike, so both are
/// in the near set whatever the scheduler does.
const EVEN_HEALTH_DELAY: Duration = Duration::from_millis(5);

/// Only the probes at start: health then changes only by forwarding.
fn probe_once() -> RouterLimits {
    RouterLimits {
        probe_interval: Duration::from_secs(60),
        ..RouterLimits::default()
    }
}

#[tokio::test]
async fn oversized_and_slow_bodies_never_reach_a_worker() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let limits = RouterLimits {
        body_bytes_max: 1000,
        body_read_timeout: Duration::from_millis(300),
        ..RouterLimits::default()
    };
    let router = TestRouter::start(limits, table(&[&worker], ManifestId::of(b"m"))).await;
    router.wait_healthy(1).await;
    let head = "POST /fn/hello/ HTTP/1.1\r\nHost: localhost\r\n";
    // Declared too large: refused before the body is sent.
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let declared = format!("{head}Content-Length: 1001\r\n\r\n");
    let (status, _, body) = raw_exchange(&mut stream, declared.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than 1000 bytes"), "{body}");
    // Streamed too large: refused once the limit is crossed.
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let chunk = "x".repeat(600);
    let chunked = format!(
        "{head}Transfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (status, _, body) = raw_exchange(&mut stream, chunked.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    // Too slow: 10 of 100 bytes, then nothing.
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let slow = format!("{head}Content-Length: 100\r\n\r\n0123456789");
    let (status, _, body) = raw_exchange(&mut stream, slow.as_bytes()).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(worker.runs(), 0);
    // Exactly at the limit goes through.
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let full = format!("{head}Content-Length: 1000\r\n\r\n{}", "y".repeat(1000));
    let (status, _, body) = raw_exchange(&mut stream, full.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 1000);
    assert_eq!(worker.runs(), 1);
    stream.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_dead_worker_is_retried_on_a_live_one() {
    // Seed 2 is the first rendezvous worker of manifest `m`: idle, the
    // function goes there.
    let dead = FakeWorker::start(2, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
    let live = FakeWorker::start(1, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
    let router =
        TestRouter::start(probe_once(), table(&[&dead, &live], ManifestId::of(b"m"))).await;
    router.wait_healthy(2).await;
    let answer = get(&router.url("/fn/hello/"), None).await;
    assert_eq!(answer.header("x-bonus-worker"), dead.key.to_string());
    // Healthy by its last probe, but its port is now closed.
    dead.kill().await;
    for _ in 0..20 {
        let answer = get(&router.url("/fn/hello/"), None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("x-bonus-worker"), live.key.to_string());
    }
    assert_eq!(live.runs(), 20);
    let status = router.status().await;
    // The dead one was chosen first, until the failed connection marked
    // it down.
    assert!(status.requests_retried >= 1, "{status:?}");
    let dead_status = status
        .workers
        .iter()
        .find(|w| w.key == dead.key.to_string())
        .expect("listed");
    assert!(
        !dead_status.healthy,
        "a failed connection marks the worker down"
    );
}

#[tokio::test]
async fn a_worker_that_drops_the_request_is_502_and_not_retried() {
    // Seed 2 is the first rendezvous worker of `m`: every request goes there.
    let dropping = FakeWorker::start(2, Behaviour::DropRun, EVEN_HEALTH_DELAY).await;
    let good = FakeWorker::start(1, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
    let router = TestRouter::start(
        probe_once(),
        table(&[&dropping, &good], ManifestId::of(b"m")),
    )
    .await;
    router.wait_healthy(2).await;
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..20 {
        let answer = get(&router.url("/fn/hello/"), None).await;
        match answer.status {
            200 => ok += 1,
            502 => {
                failed += 1;
                assert!(
                    answer.body.contains("failed before answering"),
                    "{}",
                    answer.body
                );
                assert!(
                    answer.body.contains(&dropping.key.to_string()),
                    "{}",
                    answer.body
                );
            }
            other => panic!("unexpected {other}: {answer:?}"),
        }
    }
    assert_eq!(failed, 20, "the dropping worker is the function's first");
    // Every request the dropping worker saw failed, and none went on to
    // the good worker: the function may have run.
    assert_eq!(dropping.runs(), failed);
    assert_eq!(good.runs(), ok);
    assert_eq!(router.status().await.requests_retried, 0);
}

/// A worker in the router's process: what it saw, and whether it refuses.
struct InProcess {
    key: bonus_ids::PublicKey,
    refuse: bool,
    seen: std::sync::Mutex<Vec<(bonus_ids::ManifestId, String, String)>>,
}

impl bonus_router::LocalWorker for InProcess {
    fn key(&self) -> bonus_ids::PublicKey {
        self.key
    }

    fn call(
        &self,
        manifest: bonus_ids::ManifestId,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = http::Response<bonus_router::RouterBody>> + Send>,
    > {
        let router = request
            .headers()
            .get("x-bonus-router")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.seen
            .lock()
            .expect("not poisoned")
            .push((manifest, request.uri().to_string(), router));
        let refuse = self.refuse;
        Box::pin(async move {
            use http_body_util::BodyExt;
            let body = http_body_util::Full::new(bytes::Bytes::from_static(b"in process"))
                .map_err(|never| match never {})
                .boxed();
            let mut response = http::Response::new(body);
            if refuse {
                *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                response
                    .headers_mut()
                    .insert(bonus_router::NOT_RUN, http::HeaderValue::from_static("1"));
            }
            response
        })
    }
}

#[tokio::test]
async fn a_worker_in_the_routers_process_is_called_without_http() {
    let worker = FakeWorker::start(1, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
    let manifest = ManifestId::of(b"m");
    let local = std::sync::Arc::new(InProcess {
        key: worker.key,
        refuse: false,
        seen: Default::default(),
    });
    let router = TestRouter::start_with(
        probe_once(),
        table(&[&worker], manifest),
        Some(local.clone()),
    )
    .await;
    router.wait_healthy(1).await;
    for _ in 0..10 {
        let answer = get(&router.url("/fn/hello/a/b?q=1"), None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body, "in process");
        assert_eq!(answer.header("x-bonus-worker"), worker.key.to_string());
    }
    assert_eq!(worker.runs(), 0, "nothing went over HTTP");
    let seen = local.seen.lock().expect("not poisoned");
    assert_eq!(seen.len(), 10);
    assert_eq!(seen[0].0, manifest);
    assert_eq!(seen[0].1, "/a/b?q=1", "the function's own path and query");
    assert_eq!(seen[0].2, router.key.to_string(), "the router's header");
}

#[tokio::test]
async fn an_in_process_refusal_marked_not_run_goes_to_another_worker() {
    let near = FakeWorker::start(1, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
    let other = FakeWorker::start(2, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
    let local = std::sync::Arc::new(InProcess {
        key: near.key,
        refuse: true,
        seen: Default::default(),
    });
    let router = TestRouter::start_with(
        probe_once(),
        table(&[&near, &other], ManifestId::of(b"m")),
        Some(local.clone()),
    )
    .await;
    router.wait_healthy(2).await;
    for _ in 0..10 {
        let answer = get(&router.url("/fn/hello/"), None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("x-bonus-worker"), other.key.to_string());
    }
    assert_eq!(other.runs(), 10);
    assert_eq!(near.runs(), 0);
}
