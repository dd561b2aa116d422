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
    let dead = FakeWorker::start(1, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
    let live = FakeWorker::start(2, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
    let router =
        TestRouter::start(probe_once(), table(&[&dead, &live], ManifestId::of(b"m"))).await;
    router.wait_healthy(2).await;
    // Healthy by its last probe, but its port is now closed.
    dead.kill().await;
    for _ in 0..20 {
        let answer = get(&router.url("/fn/hello/"), None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("x-bonus-worker"), live.key.to_string());
    }
    assert_eq!(live.runs(), 20);
    let status = router.status().await;
    // Both workers are near and equally loaded: the dead one was chosen
    // at least once in 20 (each time with probability 1/2) until it was
    // marked down by the failed connection.
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
    let dropping = FakeWorker::start(1, Behaviour::DropRun, EVEN_HEALTH_DELAY).await;
    let good = FakeWorker::start(2, Behaviour::Echo, EVEN_HEALTH_DELAY).await;
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
    assert!(failed >= 1, "the dropping worker was chosen at least once");
    // Every request the dropping worker saw failed, and none went on to
    // the good worker: the function may have run.
    assert_eq!(dropping.runs(), failed);
    assert_eq!(good.runs(), ok);
    assert_eq!(router.status().await.requests_retried, 0);
}
