//! The spammer: writes to the ledger for free. Every transaction pays a
//! flat fee from a funded account, so an empty account writes nothing; the
//! fees go to the validators by stake at each period's end.

use crate::world::*;
use bonus_ledger::sim::{Harness, VALIDATOR_STAKE, key as validator};
use bonus_ledger::{Params, TxBody, TxError};

#[test]
fn an_account_with_nothing_cannot_write() {
    let mut w = World::new();
    let broke = key(77);
    for body in [
        TxBody::Transfer {
            to: w.owner.public(),
            amount: 1,
        },
        deploy(1),
        TxBody::Stake { amount: 1 },
        TxBody::Fund {
            name: "hello".into(),
            spend_per_period_max: 0,
        },
    ] {
        let error = w.refused(&broke, body);
        assert!(matches!(error, TxError::CannotPayFee { .. }), "{error}");
    }
    assert!(
        w.h.state.account(&broke.public()).is_none(),
        "not even an account is created"
    );
}

#[test]
fn fees_are_paid_to_validators_by_stake_at_the_period_end() {
    let params = Params {
        tx_fee: 1_000,
        ..Params::DEV
    };
    let payer = key(5);
    let big = validator(0);
    // Validator 0 bonds a second stake, so "by stake" and "in equal
    // parts" pay differently: 2/5 of the pool to it, 1/5 to each other.
    let mut h = Harness::new(
        "fees",
        params,
        &[(&payer, 10_000_000), (&big, VALIDATOR_STAKE + 1_000)],
    );
    h.run(
        &big,
        TxBody::Stake {
            amount: VALIDATOR_STAKE,
        },
    )
    .expect("a validator may bond more");
    for _ in 0..8 {
        h.run(
            &payer,
            TxBody::Transfer {
                to: key(6).public(),
                amount: 1,
            },
        )
        .expect("pays");
    }
    assert_eq!(h.state.fee_pool(), 9_000, "nine transactions' fees");
    let balances_before: Vec<u64> = (0..4)
        .map(|i| h.state.balance(&validator(i).public()))
        .collect();
    h.next_period();
    assert_eq!(h.state.fee_pool(), 0);
    let paid: Vec<u64> = (0..4)
        .map(|i| h.state.balance(&validator(i).public()) - balances_before[i])
        .collect();
    assert_eq!(paid, [3_600, 1_800, 1_800, 1_800]);
    assert_eq!(
        h.state.account(&big.public()).map(|a| a.stake),
        Some(2 * VALIDATOR_STAKE),
        "fees are paid out, the stake stays bonded"
    );
    assert_eq!(h.state.total_supply(), u128::from(h.state.minted()));
}
