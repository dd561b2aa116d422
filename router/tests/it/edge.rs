//! The hostile edge: slow heads, idle connections, the connection cap and
//! graceful shutdown.

use crate::support::{
    Behaviour, FakeWorker, HEALTH_REQUEST, TestRouter, closed_within, get, raw_exchange, table,
    wait_until,
};
use bonus_ids::{ManifestId, SecretKey};
use bonus_router::{RouteTable, Router, RouterConfig, RouterLimits};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const GENEROUS: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_half_sent_head_is_cut_after_the_header_timeout_but_idle_is_not() {
    let limits = RouterLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        ..RouterLimits::default()
    };
    let router = TestRouter::start(limits, RouteTable::new()).await;
    let mut idle = TcpStream::connect(router.addr).await.expect("connect");
    let mut slow = TcpStream::connect(router.addr).await.expect("connect");
    slow.write_all(b"GET /v1/router/health HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let took = closed_within(&mut slow, GENEROUS)
        .await
        .expect("the slow connection is closed");
    assert!(
        took >= Duration::from_millis(250),
        "closed after {took:?}, before the timeout"
    );
    // Silent for as long, but it never started a head: still served.
    let (status, _, body) = raw_exchange(&mut idle, HEALTH_REQUEST).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_long_request_is_not() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let limits = RouterLimits {
        idle_timeout: Duration::from_millis(300),
        ..RouterLimits::default()
    };
    let router = TestRouter::start(limits, table(&[&worker], ManifestId::of(b"m"))).await;
    router.wait_healthy(1).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    // The worker takes 700 ms, longer than the idle timeout.
    let slow = b"GET /fn/hello/slow HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (status, head, _) = raw_exchange(&mut stream, slow).await;
    assert_eq!(status, 200, "{head}");
    let answered = Instant::now();
    let took = closed_within(&mut stream, GENEROUS)
        .await
        .expect("the idle connection is closed");
    assert!(
        took >= Duration::from_millis(250),
        "closed {took:?} after the answer"
    );
    assert!(answered.elapsed() < GENEROUS);
}

#[tokio::test]
async fn past_the_cap_new_connections_are_closed_at_once() {
    let limits = RouterLimits {
        connections_max: 4,
        ..RouterLimits::default()
    };
    let router = TestRouter::start(limits, RouteTable::new()).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(router.addr).await.expect("connect");
        let (status, _, _) = raw_exchange(&mut stream, HEALTH_REQUEST).await;
        assert_eq!(status, 200);
        open.push(stream);
    }
    let mut fifth = TcpStream::connect(router.addr)
        .await
        .expect("the kernel accepts");
    let took = closed_within(&mut fifth, GENEROUS)
        .await
        .expect("the fifth is closed");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // The four are still served.
    let (status, _, _) = raw_exchange(&mut open[0], HEALTH_REQUEST).await;
    assert_eq!(status, 200);
    // Closing one frees its place.
    drop(open.pop());
    wait_until("a freed place to be usable", || async {
        let Ok(mut stream) = TcpStream::connect(router.addr).await else {
            return false;
        };
        if stream.write_all(HEALTH_REQUEST).await.is_err() {
            return false;
        }
        let mut buffer = [0u8; 12];
        let read = tokio::io::AsyncReadExt::read_exact(&mut stream, &mut buffer).await;
        read.is_ok() && &buffer == b"HTTP/1.1 200"
    })
    .await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_stops() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let mut router = TestRouter::start(
        RouterLimits::default(),
        table(&[&worker], ManifestId::of(b"m")),
    )
    .await;
    router.wait_healthy(1).await;
    let url = router.url("/fn/hello/slow");
    let in_flight = tokio::spawn(async move { get(&url, None).await });
    wait_until("the request to reach the worker", || async {
        worker.runs() == 1
    })
    .await;
    router.stop();
    let answer = in_flight.await.expect("the request task");
    assert_eq!(answer.status, 200, "{answer:?}");
    let task = router.task.take().expect("running");
    let result = tokio::time::timeout(GENEROUS, task)
        .await
        .expect("run returns in time");
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    assert!(
        TcpStream::connect(router.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn binding_a_taken_address_or_zero_limits_fails_clearly() {
    let taken = TestRouter::start(RouterLimits::default(), RouteTable::new()).await;
    let config = || RouterConfig {
        key: SecretKey::from_seed([1; 32]),
        ledger: None,
        limits: RouterLimits::default(),
    };
    let error = Router::bind(taken.addr, config())
        .await
        .err()
        .expect("the address is taken");
    assert!(
        error.to_string().contains(&taken.addr.to_string()),
        "{error}"
    );
    let zero = RouterConfig {
        limits: RouterLimits {
            probe_interval: Duration::ZERO,
            ..RouterLimits::default()
        },
        ..config()
    };
    let error = Router::bind("127.0.0.1:0".parse().expect("addr"), zero)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("probe_interval"), "{error}");
}
