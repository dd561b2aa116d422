//! The equivocator: a validator that signs two conflicting votes. Its
//! genesis stake, bonded or unbonding, is taken to the fee pool and it
//! earns no more rewards. Forged evidence (a bad signature, a signer
//! outside the validator set) takes nothing.

use bonus_ids::SecretKey;
use bonus_ledger::chain::{Scheme, consensus_key, consensus_public, namespace};
use bonus_ledger::sim::{Harness, VALIDATOR_STAKE, key as validator};
use bonus_ledger::{ChainId, Params, TxBody, TxError};
use commonware_codec::Encode as _;
use commonware_consensus::simplex::types::{ConflictingNotarize, Notarize, Proposal};
use commonware_consensus::types::{Epoch, Round, View};
use commonware_cryptography::{Hasher as _, Sha256};

/// Evidence that `signer` notarized two blocks in one view on network
/// `chain`, signed as a member of the consensus set `members`, in the
/// ledger's evidence encoding.
fn evidence_signed_by(chain: &ChainId, members: &[SecretKey], signer: &SecretKey) -> Vec<u8> {
    let participants: Vec<_> = members
        .iter()
        .map(|k| consensus_public(&k.public()))
        .collect();
    let participants = commonware_utils::ordered::Set::try_from(participants).expect("distinct");
    let scheme = Scheme::signer(&namespace(chain), participants, consensus_key(signer))
        .expect("the signer is a member");
    let round = Round::new(Epoch::zero(), View::new(7));
    let vote = |payload: &[u8]| {
        let proposal = Proposal::new(round, View::new(6), Sha256::hash(&[payload]));
        Notarize::sign(&scheme, proposal).expect("a member signs")
    };
    let evidence = ConflictingNotarize::new(vote(b"block a"), vote(b"block b"));
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&evidence.encode());
    bytes
}

/// Valid evidence that validator `index` of the simulated four
/// equivocated on network `chain`.
pub fn conflicting_notarizes(chain: &ChainId, index: usize) -> Vec<u8> {
    let members: Vec<SecretKey> = (0..4).map(validator).collect();
    evidence_signed_by(chain, &members, &validator(index))
}

#[test]
fn slashing_takes_bonded_and_unbonding_stake_and_stops_rewards() {
    let reporter = SecretKey::from_seed([30; 32]);
    let params = Params {
        tx_fee: 1_000,
        ..Params::DEV
    };
    let mut h = Harness::new("slash", params, &[(&reporter, 100_000_000)]);
    let cheat = validator(1);
    // The cheat starts unbonding half its stake (it would still be
    // slashable until the unbonding time passes).
    let cheat_funds = 1_000_000;
    h.run(
        &reporter,
        TxBody::Transfer {
            to: cheat.public(),
            amount: cheat_funds,
        },
    )
    .expect("fund");
    h.run(
        &cheat,
        TxBody::Unstake {
            amount: VALIDATOR_STAKE / 2,
        },
    )
    .expect("unstakes");
    let pool_before = h.state.fee_pool();
    let supply = h.state.total_supply();
    let evidence = conflicting_notarizes(h.state.chain_id(), 1);
    h.run(
        &reporter,
        TxBody::Slash {
            evidence: evidence.clone(),
        },
    )
    .expect("slashed");
    let account = h.state.account(&cheat.public()).expect("exists").clone();
    assert_eq!((account.stake, account.unbonding.len()), (0, 0));
    assert!(h.state.is_slashed(&cheat.public()));
    assert_eq!(
        h.state.fee_pool(),
        pool_before + VALIDATOR_STAKE + params.tx_fee
    );
    assert_eq!(
        h.state.total_supply(),
        supply,
        "moved, not minted or burned"
    );
    // Once only.
    let error = h
        .run(&reporter, TxBody::Slash { evidence })
        .expect_err("twice");
    assert!(matches!(error, TxError::AlreadySlashed { .. }), "{error}");
    // Its unbonding never comes back, and it earns nothing at the period
    // end while the honest three share the pool.
    let cheat_balance = h.state.balance(&cheat.public());
    let honest_balance = h.state.balance(&validator(0).public());
    let pool = h.state.fee_pool();
    h.advance(params.unbonding_ms + params.period_ms);
    assert_eq!(h.state.balance(&cheat.public()), cheat_balance);
    assert_eq!(
        h.state.balance(&validator(0).public()),
        honest_balance + pool / 3
    );
}

#[test]
fn forged_evidence_takes_nothing() {
    let reporter = SecretKey::from_seed([31; 32]);
    let mut h = Harness::new("forged", Params::DEV, &[(&reporter, 1_000_000)]);
    let chain = *h.state.chain_id();
    let mut tampered = conflicting_notarizes(&chain, 2);
    let last = tampered.len() - 1;
    tampered[last] ^= 1; // A bit of the second signature.
    // Signed by a key outside the validator set (as a member of a set
    // that includes it).
    let outsider = SecretKey::from_seed([32; 32]);
    let mut members: Vec<SecretKey> = (0..4).map(validator).collect();
    members.push(SecretKey::from_seed(outsider.seed()));
    let impostor = evidence_signed_by(&chain, &members, &outsider);
    for evidence in [
        vec![],
        vec![0],
        vec![9, 1, 2],
        vec![0; 300],
        tampered,
        impostor,
    ] {
        let error = h
            .run(&reporter, TxBody::Slash { evidence })
            .expect_err("forged");
        assert!(matches!(error, TxError::InvalidEvidence(_)), "{error}");
    }
    for i in 0..4 {
        assert!(!h.state.is_slashed(&validator(i).public()));
        assert_eq!(
            h.state.account(&validator(i).public()).map(|a| a.stake),
            Some(VALIDATOR_STAKE)
        );
    }
}
