//! The drainer: tries to charge an owner who never consented, the attack
//! review found (register with no stake, attest for yourself, re-register
//! at any price, settle `fuel × own price`).

use crate::world::*;
use bonus_ledger::limits::{SETTLEMENT_WINDOW_PERIODS, USAGE_HISTORY_PERIODS};
use bonus_ledger::{NodeRole, Params, TxError};

#[test]
fn a_node_without_stake_cannot_register() {
    let mut w = World::new();
    let attacker = w.attacker();
    for (role, stake) in [(NodeRole::Router, 0), (NodeRole::Worker, STAKE - 1)] {
        let error = w.refused(&attacker, register(role, &attacker, PRICE, stake));
        assert!(
            matches!(error, TxError::StakeBelowMinimum { .. }),
            "{error}"
        );
    }
    assert!(w.h.state.node(&attacker.public()).is_none());
}

#[test]
fn a_router_cannot_vouch_for_itself_or_its_own_operator() {
    let mut w = World::new();
    let attacker = w.attacker();
    let period = w.h.period();
    w.ok(&attacker, register(NodeRole::Router, &attacker, 0, STAKE));
    // For itself: it is no worker.
    let error = w.refused(&attacker, attest(period, 1, &attacker, 1_000));
    assert!(matches!(error, TxError::NotANode { .. }), "{error}");
    // It cannot become one: role and operator are fixed at registration.
    let error = w.refused(
        &attacker,
        register(NodeRole::Worker, &attacker, u64::MAX, STAKE),
    );
    assert!(matches!(error, TxError::NodeTermsFixed { .. }), "{error}");
    // A sock-puppet worker run by the same operator.
    let puppet = key(67);
    let attacker_funds = w.balance(&attacker);
    w.ok(
        &attacker,
        bonus_ledger::TxBody::Transfer {
            to: puppet.public(),
            amount: attacker_funds / 2,
        },
    );
    w.ok(&puppet, register(NodeRole::Worker, &attacker, PRICE, STAKE));
    let error = w.refused(&attacker, attest(period, 1, &puppet, 1_000));
    assert!(matches!(error, TxError::SelfAttestation { .. }), "{error}");
    // A worker that does not exist, or a manifest that does not.
    let error = w.refused(&attacker, attest(period, 1, &key(99), 1_000));
    assert!(matches!(error, TxError::NotANode { .. }), "{error}");
    let worker = w.worker();
    let error = w.refused(&attacker, attest(period, 42, &worker, 1_000));
    assert!(matches!(error, TxError::UnknownManifest), "{error}");
    // Out of the window, or beyond the per-line bound.
    let error = w.refused(&attacker, attest(period + 1, 1, &worker, 1));
    assert!(
        matches!(error, TxError::PeriodOutsideWindow { .. }),
        "{error}"
    );
    let huge = bonus_ledger::limits::INVOCATIONS_PER_ATTESTATION_MAX + 1;
    let error = w.refused(&attacker, attest(period, 1, &worker, huge));
    assert!(matches!(error, TxError::Malformed(_)), "{error}");
    let attested =
        w.h.state
            .usage(period, &manifest(1), &puppet.public())
            .attested;
    assert_eq!(attested, 0);
}

#[test]
fn a_worker_priced_above_the_owners_maximum_charges_nothing() {
    let mut w = World::new();
    let (owner, router) = (w.owner(), w.router());
    let greedy = key(68);
    let attacker = w.attacker();
    w.ok(
        &attacker,
        bonus_ledger::TxBody::Transfer {
            to: greedy.public(),
            amount: 100_000,
        },
    );
    w.ok(
        &greedy,
        register(NodeRole::Worker, &attacker, PRICE_MAX + 1, STAKE),
    );
    let period = w.h.period();
    w.ok(&router, attest(period, 1, &greedy, 1_000));
    let before = w.balance(&owner);
    let error = w.refused(
        &greedy,
        batch(0, period, 1, &owner, 1_000, 1_000 * FUEL_MAX),
    );
    assert!(
        matches!(error, TxError::PriceAboveConsent { .. }),
        "{error}"
    );
    assert_eq!(w.balance(&owner), before);
    w.assert_supply();
}

#[test]
fn charges_stop_at_the_owners_budget_per_period() {
    let mut w = World::new();
    let (owner, router, worker) = (w.owner(), w.router(), w.worker());
    let period = w.h.period();
    // Honest-looking but colluding router and worker attest and settle
    // far more than the owner budgeted: 1000 invocations × 1M fuel at
    // 1000 per million = 1M, budget 100k.
    w.ok(&router, attest(period, 1, &worker, 1_000));
    let before = w.balance(&owner);
    w.ok(&worker, batch(0, period, 1, &owner, 10, 10 * FUEL_MAX));
    let first = before - w.balance(&owner);
    assert_eq!(first, 10_000 + 100, "cost plus the 1 % fee");
    w.ok(&worker, batch(1, period, 1, &owner, 990, 990 * FUEL_MAX));
    let charged = before - w.balance(&owner);
    assert_eq!(charged, BUDGET, "charged up to the budget, not beyond");
    assert_eq!(w.h.state.spent(period, "hello"), charged);
    assert!(
        w.h.state.is_unpaid("hello"),
        "over budget: routers answer 402"
    );
    // The next period has a fresh budget and routers serve again.
    w.h.next_period();
    assert!(!w.h.state.is_unpaid("hello"));
    w.assert_supply();
}

#[test]
fn a_name_with_zero_budget_is_never_charged() {
    let mut w = World::new();
    let (owner, router, worker) = (w.owner(), w.router(), w.worker());
    w.ok(&owner, deploy(2));
    let period = w.h.period();
    w.ok(&router, attest(period, 2, &worker, 100));
    let before = (w.balance(&owner), w.balance(&worker));
    assert!(
        w.h.state.is_unpaid("free"),
        "routers answer 402 from the start"
    );
    w.ok(&worker, batch(0, period, 2, &owner, 100, 100 * FUEL_MAX));
    assert_eq!(w.balance(&owner), before.0);
    assert_eq!(
        w.balance(&worker),
        before.1 - Params::DEV.tx_fee,
        "only its own fee"
    );
    assert!(w.h.state.is_unpaid("free"));
}

#[test]
fn stake_cannot_drop_below_the_minimum_while_registered() {
    let mut w = World::new();
    let worker = w.worker();
    let error = w.refused(&worker, bonus_ledger::TxBody::Unstake { amount: 1 });
    assert!(
        matches!(error, TxError::StakeBelowMinimum { .. }),
        "{error}"
    );
    w.ok(&worker, bonus_ledger::TxBody::Deregister);
    assert!(w.h.state.node(&worker.public()).is_none());
    let account = w.h.state.account(&worker.public()).expect("exists");
    assert_eq!(
        (account.stake, account.unbonding.len()),
        (0, 1),
        "the whole stake unbonds"
    );
}

#[test]
fn a_period_past_the_window_cannot_be_replayed_and_its_usage_is_pruned() {
    let mut w = World::new();
    let (owner, router, worker) = (w.owner(), w.router(), w.worker());
    let rows_before = w.h.state.rows().len();
    let period = w.h.period();
    w.ok(&router, attest(period, 1, &worker, 10));
    w.ok(&worker, batch(0, period, 1, &owner, 10, 10 * FUEL_MAX));
    let usage = |w: &World| w.h.state.usage(period, &manifest(1), &worker.public());
    for _ in 1..SETTLEMENT_WINDOW_PERIODS {
        w.h.next_period();
    }
    // The last period that may still settle `period`: all of it is kept.
    assert_eq!((usage(&w).attested, usage(&w).settled), (10, 10));
    assert!(w.h.state.spent(period, "hello") > 0);
    assert!(w.h.state.is_settled(&worker.public(), 0));

    w.h.next_period();
    assert_eq!(w.h.state.period_usage(period).count(), 0, "usage pruned");
    assert_eq!(w.h.state.period_spent(period).count(), 0, "spend pruned");
    assert!(
        !w.h.state.is_settled(&worker.public(), 0),
        "batch id pruned"
    );
    assert_eq!(
        w.h.state.rows().len(),
        rows_before + 1,
        "the state is back to its size before the period, but for the name's usage history"
    );
    // With its batch id forgotten, the old batch must still not pay twice,
    // nor may a router vouch for a period that can no longer settle.
    let before = w.balance(&owner);
    let error = w.refused(&worker, batch(0, period, 1, &owner, 10, 10 * FUEL_MAX));
    assert!(
        matches!(error, TxError::PeriodOutsideWindow { .. }),
        "{error}"
    );
    let error = w.refused(&router, attest(period, 1, &worker, 10));
    assert!(
        matches!(error, TxError::PeriodOutsideWindow { .. }),
        "{error}"
    );
    assert_eq!(w.balance(&owner), before);
    w.assert_supply();
    // The owner's record of the period is kept for a bounded time only.
    assert!(w.h.state.name_usage(period, "hello").is_some());
    while w.h.period() < period + USAGE_HISTORY_PERIODS {
        w.h.next_period();
    }
    assert!(w.h.state.name_usage(period, "hello").is_none());
    assert_eq!(w.h.state.rows().len(), rows_before, "all of it pruned");
}
