//! Traffic splits and worker choice over many requests.

use crate::support::{Behaviour, FakeWorker, TestRouter, get, table, wait_until};
use bonus_ids::{ManifestId, SecretKey};
use bonus_router::{NameRoute, RouteTable, RouterLimits, SplitRoute};
use std::time::Duration;

#[tokio::test]
async fn a_90_10_split_sends_90_10() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let (stable, canary) = (ManifestId::of(b"v1"), ManifestId::of(b"v2"));
    let mut routes = RouteTable::new();
    routes
        .insert_worker(worker.key, &worker.url, 5)
        .expect("valid");
    let split = |manifest_id, weight| SplitRoute {
        manifest_id,
        weight,
        price_per_million_fuel_max: 10,
    };
    let route = NameRoute {
        owner: SecretKey::from_seed([100; 32]).public(),
        unpaid: false,
        splits: vec![split(stable, 9), split(canary, 1)],
    };
    routes.insert_name("hello", route).expect("valid");
    let router = TestRouter::start(RouterLimits::default(), routes).await;
    router.wait_healthy(1).await;
    let mut to_stable = 0;
    for _ in 0..1000 {
        let answer = get(&router.url("/fn/hello/"), None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let path = answer.header("x-echo-path");
        if path.contains(&stable.to_hex()) {
            to_stable += 1;
        } else {
            assert!(path.contains(&canary.to_hex()), "{path}");
        }
    }
    assert!(
        (850..=950).contains(&to_stable),
        "{to_stable} of 1000 to the 90 % manifest"
    );
}

#[tokio::test]
async fn the_nearer_worker_takes_the_traffic() {
    let near = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let far = FakeWorker::start(2, Behaviour::Echo, Duration::from_millis(20)).await;
    let router = TestRouter::start(
        RouterLimits::default(),
        table(&[&near, &far], ManifestId::of(b"m")),
    )
    .await;
    router.wait_healthy(2).await;
    for _ in 0..200 {
        assert_eq!(get(&router.url("/fn/hello/"), None).await.status, 200);
    }
    assert_eq!(near.runs() + far.runs(), 200);
    assert!(far.runs() < 20, "the far worker got {} of 200", far.runs());
}

/// A compile slows a worker's answers to probes: its RTT rises out of the
/// near set, though it is the worker that has the function loaded. The
/// next requests still go to it, not to a worker that must compile first.
#[tokio::test]
async fn a_warm_worker_keeps_its_function_while_its_probes_are_slowed() {
    let workers = [
        FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await,
        FakeWorker::start(2, Behaviour::Echo, Duration::ZERO).await,
    ];
    let router = TestRouter::start(
        RouterLimits::default(),
        table(&[&workers[0], &workers[1]], ManifestId::of(b"m")),
    )
    .await;
    router.wait_healthy(2).await;
    assert_eq!(get(&router.url("/fn/hello/"), None).await.status, 200);
    let (warm, cold) = match workers[0].runs() {
        1 => (&workers[0], &workers[1]),
        _ => (&workers[1], &workers[0]),
    };
    // Both RTTs as the router measures them (probes cost more than the
    // network on a busy test machine).
    let url = router.url("/v1/router/status");
    let warm_key = warm.key.to_string();
    let rtts = || {
        let (url, warm_key) = (url.clone(), warm_key.clone());
        async move {
            let status: serde_json::Value =
                serde_json::from_str(&get(&url, None).await.body).expect("status JSON");
            let rtt = |warm: bool| {
                status["workers"].as_array().and_then(|workers| {
                    workers
                        .iter()
                        .find(|w| (w["key"] == warm_key.as_str()) == warm)
                        .and_then(|w| w["rtt_us"].as_u64())
                })
            };
            (rtt(true).unwrap_or(0), rtt(false).unwrap_or(0))
        }
    };
    // Delayed by the cold worker's RTT + 500 µs, the warm one's RTT settles
    // near 2 × that + 500 µs: out of the near set (1.5 × + 300 µs), within
    // what a warm worker may be (2 × + 2 ms), with room for noise.
    let (_, cold_rtt) = rtts().await;
    warm.set_health_delay(Duration::from_micros(cold_rtt + 500));
    wait_until("the warm worker to fall out of the near set", || async {
        let (w, c) = rtts().await;
        2 * w > 3 * c + 600
    })
    .await;
    for _ in 0..50 {
        assert_eq!(get(&router.url("/fn/hello/"), None).await.status, 200);
    }
    assert_eq!(warm.runs(), 51);
    assert_eq!(cold.runs(), 0, "a cold worker was sent what a warm one had");
}
