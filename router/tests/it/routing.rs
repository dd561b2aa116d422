//! Which function a request reaches, and what the router answers itself.

use crate::support::{Behaviour, FakeWorker, TestRouter, get, send, table};
use bonus_ids::{ManifestId, SecretKey};
use bonus_router::{NameRoute, RouterLimits};
use bytes::Bytes;
use std::time::Duration;

#[tokio::test]
async fn host_routing_reaches_the_worker_with_path_query_and_headers() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let manifest = ManifestId::of(b"hello v1");
    let router = TestRouter::start(RouterLimits::default(), table(&[&worker], manifest)).await;
    router.wait_healthy(1).await;
    let host = format!("hello.localhost:{}", router.addr.port());
    let answer = send(
        "POST",
        &router.url("/a/b?x=1"),
        Some(&host),
        Bytes::from("payload"),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("x-echo-path"),
        format!("/v1/run/{}/a/b?x=1", manifest.to_hex())
    );
    assert_eq!(answer.header("x-echo-method"), "POST");
    assert_eq!(answer.body, "payload");
    assert_eq!(answer.header("x-echo-forwarded-host"), host);
    assert_eq!(answer.header("x-echo-router"), router.key.to_string());
    assert_eq!(answer.header("x-bonus-worker"), worker.key.to_string());
    assert_eq!(answer.header("x-bonus-fuel"), "42");
    assert_eq!(
        answer.header("x-bonus-manifest-id"),
        format!("manifest:{}", manifest.to_hex())
    );
    let request_id = answer.header("x-echo-request-id").to_string();
    assert_eq!(request_id.len(), 32);
    assert!(
        request_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(answer.header("x-bonus-request-id"), request_id);
    let again = get(&router.url("/"), Some(&host)).await;
    assert_ne!(
        again.header("x-echo-request-id"),
        request_id,
        "request ids are unique"
    );
    assert_eq!(worker.runs(), 2);
}

#[tokio::test]
async fn path_routing_strips_the_prefix_and_keeps_the_query() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let manifest = ManifestId::of(b"hello v1");
    let router = TestRouter::start(RouterLimits::default(), table(&[&worker], manifest)).await;
    router.wait_healthy(1).await;
    let hex = manifest.to_hex();
    for (path, expect) in [
        ("/fn/hello/a/b?x=1", format!("/v1/run/{hex}/a/b?x=1")),
        ("/fn/hello?x=2", format!("/v1/run/{hex}/?x=2")),
        ("/fn/hello/", format!("/v1/run/{hex}/")),
    ] {
        let answer = get(&router.url(path), None).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.header("x-echo-path"), expect, "{path}");
    }
}

#[tokio::test]
async fn the_router_answers_what_it_cannot_forward() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let manifest = ManifestId::of(b"hello v1");
    let mut routes = table(&[&worker], manifest);
    let owner = SecretKey::from_seed([100; 32]).public();
    let mut unpaid = NameRoute::single(owner, manifest, 10);
    unpaid.unpaid = true;
    routes.insert_name("broke", unpaid).expect("valid");
    // Workers charge 5: a manifest whose owner consents to 4 has none.
    routes
        .insert_name("stingy", NameRoute::single(owner, manifest, 4))
        .expect("valid");
    let router = TestRouter::start(RouterLimits::default(), routes).await;
    router.wait_healthy(1).await;
    let port = router.addr.port();
    let cases = [
        (
            format!("nope.localhost:{port}"),
            "/",
            404,
            "no function named \"nope\" is deployed; deploy it with `bonus deploy`",
        ),
        (format!("127.0.0.1:{port}"), "/", 404, "/fn/NAME/"),
        (
            format!("he_llo.localhost:{port}"),
            "/",
            400,
            "invalid Host header",
        ),
        (format!("hello..localhost:{port}"), "/", 400, "empty label"),
        (format!("hello.localhost:{port}x"), "/", 400, "port"),
        (
            format!("localhost:{port}"),
            "/fn/Hello/",
            400,
            "invalid function name",
        ),
        (format!("broke.localhost:{port}"), "/", 402, "`bonus fund`"),
        (
            format!("stingy.localhost:{port}"),
            "/",
            503,
            "no healthy worker can run stingy (1 registered, 1 healthy",
        ),
        (
            format!("hello.localhost:{port}"),
            "/v1/router/health",
            200,
            "ok",
        ),
    ];
    for (host, path, status, text) in cases {
        let answer = get(&router.url(path), Some(&host)).await;
        assert_eq!(answer.status, status, "{host}{path}: {answer:?}");
        assert!(
            answer.body.contains(text),
            "{host}{path}: {:?} lacks {text:?}",
            answer.body
        );
        assert!(answer.body.ends_with('\n'), "{host}{path}");
        assert_eq!(answer.header("content-type"), "text/plain; charset=utf-8");
        assert_eq!(answer.header("x-bonus-request-id").len(), 32);
    }
    assert_eq!(worker.runs(), 0, "nothing reached the worker");
}

#[tokio::test]
async fn no_healthy_worker_is_503() {
    let manifest = ManifestId::of(b"hello v1");
    // No workers at all.
    let empty = TestRouter::start(RouterLimits::default(), table(&[], manifest)).await;
    let answer = get(&empty.url("/fn/hello/"), None).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        answer.body.contains("(0 registered, 0 healthy"),
        "{}",
        answer.body
    );
    // A worker that never answers its probe.
    let dead = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    dead.kill().await;
    let router = TestRouter::start(RouterLimits::default(), table(&[&dead], manifest)).await;
    let answer = get(&router.url("/fn/hello/"), None).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        answer.body.contains("(1 registered, 0 healthy)"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn status_lists_names_and_workers() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let router = TestRouter::start(
        RouterLimits::default(),
        table(&[&worker], ManifestId::of(b"m")),
    )
    .await;
    router.wait_healthy(1).await;
    assert_eq!(get(&router.url("/fn/hello/"), None).await.status, 200);
    let status = router.status().await;
    assert_eq!(status.router, router.key.to_string());
    assert_eq!(status.names, ["hello"]);
    assert_eq!(status.height, None);
    assert_eq!(status.requests_forwarded, 1);
    assert_eq!(status.attested_pending, 0, "no ledger, no attestation");
    let listed = &status.workers[0];
    assert_eq!(
        (listed.key.as_str(), listed.url.as_str()),
        (worker.key.to_string().as_str(), worker.url.as_str())
    );
    assert!(
        listed.healthy && listed.rtt_us.is_some_and(|rtt| rtt > 0),
        "{listed:?}"
    );
    assert_eq!(listed.outstanding, 0);
}
