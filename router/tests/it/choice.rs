//! Traffic splits and worker choice over many requests.

use crate::support::{Behaviour, FakeWorker, TestRouter, get, table};
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
