//! The deadbeat: an owner whose balance runs out. Work it could not pay
//! for is not credited, routers answer 402, and a top-up (a transfer in or
//! an explicit `Fund`) makes it payable again.

use crate::world::*;
use bonus_ids::SecretKey;
use bonus_ledger::sim::Harness;
use bonus_ledger::{NodeRole, Params, TxBody};

#[test]
fn unpaid_clears_when_the_owner_tops_up() {
    let (poor, worker, router, friend) = (key(10), key(11), key(12), key(13));
    let mut h = Harness::new(
        "deadbeat",
        Params::DEV,
        &[
            (&poor, 50),
            (&worker, 100_000),
            (&router, 100_000),
            (&friend, 1_000_000),
        ],
    );
    let run = |h: &mut Harness, k: &SecretKey, b: TxBody| h.run(k, b).expect("honest step");
    run(&mut h, &poor, deploy(10));
    run(
        &mut h,
        &worker,
        register(NodeRole::Worker, &worker, PRICE, STAKE),
    );
    run(
        &mut h,
        &router,
        register(NodeRole::Router, &router, 0, STAKE),
    );
    let period = h.period();
    run(&mut h, &router, attest(period, 10, &worker, 100));
    let worker_before = h.state.balance(&worker.public());
    // 10 invocations of the full fuel limit: 10_000 + fee, far beyond 49.
    run(
        &mut h,
        &worker,
        batch(0, period, 10, &poor, 10, 10 * FUEL_MAX),
    );
    assert!(h.state.is_unpaid("poor"));
    assert_eq!(
        h.state.balance(&poor.public()),
        49,
        "only its own deploy fee left"
    );
    assert_eq!(
        h.state.balance(&worker.public()),
        worker_before - Params::DEV.tx_fee,
        "nothing credited"
    );
    // A top-up clears it; the next settlement is paid.
    run(
        &mut h,
        &friend,
        TxBody::Transfer {
            to: poor.public(),
            amount: 100_000,
        },
    );
    assert!(!h.state.is_unpaid("poor"));
    h.next_period();
    let period = h.period();
    run(&mut h, &router, attest(period, 10, &worker, 10));
    run(
        &mut h,
        &worker,
        batch(1, period, 10, &poor, 10, 10 * FUEL_MAX),
    );
    assert_eq!(h.state.spent(period, "poor"), 10_100);
    assert!(!h.state.is_unpaid("poor"));
    // Marked again, then cleared by an explicit Fund.
    run(&mut h, &router, attest(period, 10, &worker, 100));
    run(
        &mut h,
        &worker,
        batch(2, period, 10, &poor, 100, 100 * FUEL_MAX),
    );
    assert!(h.state.is_unpaid("poor"));
    run(
        &mut h,
        &poor,
        TxBody::Fund {
            name: "poor".into(),
            spend_per_period_max: BUDGET * 2,
        },
    );
    assert!(!h.state.is_unpaid("poor"));
    assert_eq!(h.state.total_supply(), u128::from(h.state.minted()));
}
