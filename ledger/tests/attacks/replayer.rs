//! The replayer: captures a transaction (or equivocation evidence) on its
//! way to one network and posts it unchanged to another that shares the
//! account. The chain id, the hash of the genesis, is in every signed
//! message and in the consensus namespace, so it fails there.

use crate::equivocator::conflicting_notarizes;
use crate::world::*;
use bonus_ledger::chain::{Chain, ChainStore, SubmitError};
use bonus_ledger::sim::Harness;
use bonus_ledger::{Params, TxBody, TxError};

#[test]
fn a_transaction_signed_for_one_network_is_refused_by_another() {
    let (alice, bob) = (key(20), key(21));
    let funds = [(&alice, 1_000_000), (&bob, 0)];
    let mut a = Harness::new("network-a", Params::DEV, &funds);
    let mut b = Harness::new("network-b", Params::DEV, &funds);
    assert_ne!(a.chain_id(), b.chain_id());
    let tx = a.sign(
        &alice,
        TxBody::Transfer {
            to: bob.public(),
            amount: 500,
        },
    );
    a.apply(&tx).expect("valid on its own network");
    assert!(matches!(b.apply(&tx), Err(TxError::BadSignature { .. })));
    assert_eq!(b.state.balance(&bob.public()), 0);
    // The mempool of network B refuses it too.
    let chain = Chain::open(ChainStore::in_memory().expect("db"), b.state.clone()).expect("chain");
    assert!(matches!(
        chain.submit(&tx.encode()),
        Err(SubmitError::BadSignature(_))
    ));
}

#[test]
fn equivocation_evidence_from_another_network_is_refused() {
    let reporter = key(22);
    let funds = [(&reporter, 1_000_000)];
    let mut a = Harness::new("network-a", Params::DEV, &funds);
    let mut b = Harness::new("network-b", Params::DEV, &funds);
    // Validator 1 equivocated on network A: valid evidence there.
    let evidence = conflicting_notarizes(&a.chain_id(), 1);
    let error = b
        .run(
            &reporter,
            TxBody::Slash {
                evidence: evidence.clone(),
            },
        )
        .expect_err("evidence from network A");
    assert!(matches!(error, TxError::InvalidEvidence(_)), "{error}");
    a.run(&reporter, TxBody::Slash { evidence })
        .expect("valid on network A");
}
