//! The splitter: wants the validators to disagree about one of its
//! transactions, so that a block holding it is valid to some and invalid
//! to others. Validators verify signatures in batches (gossip, blocks),
//! and a batch equation with the cofactorless rule of `verify_strict`
//! can be fooled: put a small-order point into the nonce `R` and the
//! batch's random weights cancel it one time in eight. Under the ZIP-215
//! rules the ledger uses, single and batch verification give the same
//! verdict, so the crafted signature is judged the same way however it is
//! grouped; and a bad signature in a batch is refused alone. ZIP-215
//! also accepts, for a key of small order, a signature anyone can make:
//! such keys verify nothing, so money sent to one stays put.

use crate::world::*;
use bonus_ids::{SecretKey, Signature};
use bonus_ledger::chain::{Chain, ChainStore, SubmitError};
use bonus_ledger::sim::Harness;
use bonus_ledger::{ChainId, Params, SignedTx, TxBody};
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

/// Re-signs `tx` as `key` with the nonce point moved by a point of
/// order eight: `R = rB + T`, `s = r + H(R, A, M)·a`. The cofactored
/// equation holds; the cofactorless one misses by `T`.
pub fn torsioned(mut tx: SignedTx, key: &SecretKey, chain: &ChainId, tweak_s: bool) -> SignedTx {
    let expanded = Sha512::digest(key.seed());
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&expanded[..32]);
    secret[0] &= 248;
    secret[31] &= 127;
    secret[31] |= 64;
    let a = Scalar::from_bytes_mod_order(secret);
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(b"splitter nonce").into());
    let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1]).compress();
    let mut h = Sha512::new();
    h.update(big_r.as_bytes());
    h.update(key.public().as_bytes());
    h.update(tx.message(chain));
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let mut s = r + k * a;
    if tweak_s {
        s += Scalar::ONE;
    }
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(big_r.as_bytes());
    bytes[32..].copy_from_slice(s.as_bytes());
    tx.signature = Signature::from_bytes(bytes);
    tx
}

fn transfers(h: &mut Harness, from: &[SecretKey], to: &SecretKey) -> Vec<SignedTx> {
    from.iter()
        .map(|key| {
            h.sign(
                key,
                TxBody::Transfer {
                    to: to.public(),
                    amount: 1,
                },
            )
        })
        .collect()
}

#[test]
fn a_torsioned_signature_gets_the_same_verdict_alone_and_in_every_batch() {
    let splitter = key(30);
    let honest: Vec<SecretKey> = (31..63).map(key).collect();
    let mut funds: Vec<(&SecretKey, u64)> = honest.iter().map(|k| (k, 1_000_000)).collect();
    funds.push((&splitter, 1_000_000));
    let mut h = Harness::new("splitter", Params::DEV, &funds);
    let chain = h.chain_id();
    let plain = h.sign(
        &splitter,
        TxBody::Transfer {
            to: honest[0].public(),
            amount: 7,
        },
    );
    let crafted = torsioned(plain.clone(), &splitter, &chain, false);
    let broken = torsioned(plain, &splitter, &chain, true);
    // The crafted signature is one `verify_strict` refuses: the test
    // plays the case where the two rules part.
    assert!(
        splitter
            .public()
            .verify(&crafted.message(&chain), &crafted.signature)
            .is_err()
    );
    assert!(crafted.verify(&chain), "valid under ZIP-215");
    assert!(!broken.verify(&chain));
    let others = transfers(&mut h, &honest, &splitter);
    // Every position in batches of every size: one verdict each time.
    for size in [1, 2, 3, 8, 33] {
        for at in 0..size {
            let mut batch: Vec<&SignedTx> = others.iter().take(size - 1).collect();
            batch.insert(at, &crafted);
            let verdicts = SignedTx::verify_all(&batch, &chain);
            assert!(verdicts.iter().all(|ok| *ok), "size {size}, at {at}");
            batch[at] = &broken;
            let verdicts = SignedTx::verify_all(&batch, &chain);
            for (index, ok) in verdicts.iter().enumerate() {
                assert_eq!(*ok, index != at, "size {size}, at {at}, index {index}");
            }
        }
    }
    // The state machine applies it like any other signed transfer.
    let before = h.state.balance(&honest[0].public());
    h.apply(&crafted)
        .expect("the same verdict in the state machine");
    assert_eq!(h.state.balance(&honest[0].public()), before + 7);
}

#[test]
fn a_bad_signature_in_a_gossip_batch_is_refused_alone() {
    let honest: Vec<SecretKey> = (70..90).map(key).collect();
    let mut funds: Vec<(&SecretKey, u64)> = honest.iter().map(|k| (k, 1_000_000)).collect();
    let sink = key(91);
    funds.push((&sink, 0));
    let mut h = Harness::new("gossip", Params::DEV, &funds);
    let mut txs = transfers(&mut h, &honest, &sink);
    // A forger's copy of honest[5]'s transfer, to itself.
    let mut forged = txs[5].clone();
    forged.body = TxBody::Transfer {
        to: key(92).public(),
        amount: 999_999,
    };
    let other_network = Harness::new("elsewhere", Params::DEV, &funds);
    let replayed = other_network.sign(
        &honest[6],
        TxBody::Transfer {
            to: sink.public(),
            amount: 1,
        },
    );
    txs[6] = replayed;
    let store = ChainStore::in_memory().expect("db");
    let validator = Chain::open(store, h.state.clone()).expect("chain");
    let mut frames: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
    frames.insert(3, forged.encode());
    frames.insert(10, b"not a transaction".to_vec());
    let results = validator.submit_batch_from_peer(frames.iter().map(Vec::as_slice));
    assert_eq!(results.len(), frames.len());
    for (index, result) in results.iter().enumerate() {
        match index {
            3 => assert!(
                matches!(result, Err(SubmitError::BadSignature(_))),
                "forged"
            ),
            10 => assert!(matches!(result, Err(SubmitError::Decode(_))), "garbage"),
            // honest[6]'s transfer signed for the other network.
            7 => assert!(
                matches!(result, Err(SubmitError::BadSignature(_))),
                "replayed"
            ),
            _ => assert!(result.is_ok(), "honest transfer {index}: {result:?}"),
        }
    }
    assert_eq!(validator.mempool_len(), honest.len() - 1);
}

#[test]
fn a_small_order_key_verifies_nothing() {
    let honest = key(93);
    let h = Harness::new("weak", Params::DEV, &[(&honest, 1_000_000)]);
    let chain = h.chain_id();
    // The identity point: y = 1.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = bonus_ids::PublicKey::from_bytes(identity).expect("the identity is a curve point");
    assert!(weak.is_weak());
    // R = identity, s = 0: valid for every message under bare ZIP-215.
    let mut forged = [0u8; 64];
    forged[0] = 1;
    let forged = Signature::from_bytes(forged);
    {
        use commonware_codec::DecodeExt;
        use commonware_cryptography::Verifier;
        let bare = commonware_cryptography::ed25519::PublicKey::decode(identity.to_vec())
            .expect("decodes");
        let signature =
            commonware_cryptography::ed25519::Signature::decode(forged.as_bytes().to_vec())
                .expect("decodes");
        assert!(bare.verify(b"any namespace", b"any message", &signature));
    }
    let theft = SignedTx {
        signer: weak,
        nonce: 0,
        body: TxBody::Transfer {
            to: honest.public(),
            amount: 1,
        },
        signature: forged,
    };
    let fair = h.sign(
        &honest,
        TxBody::Transfer {
            to: key(94).public(),
            amount: 1,
        },
    );
    assert!(!theft.verify(&chain));
    assert_eq!(
        SignedTx::verify_all(&[&theft, &fair], &chain),
        [false, true]
    );
    assert_eq!(
        SignedTx::verify_all(&[&fair, &theft, &fair], &chain),
        [true, false, true]
    );
    assert_eq!(SignedTx::first_invalid(&[&fair, &theft], &chain), Some(1));
    assert_eq!(SignedTx::first_invalid(&[&fair, &fair], &chain), None);
}
