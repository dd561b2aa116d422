//! The row tree: the incremental root always equals a recomputation from
//! every row (after random transactions, mid-block and across speculative
//! copies), and account proofs verify against the root and nothing else.

use super::{Account, State, verify_account};
use crate::sim::{Harness, test_deploy};
use crate::tx::{NodeRole, TxBody};
use crate::{BlockCtx, Params};
use bonus_ids::SecretKey;

pub(super) fn key(n: u64) -> SecretKey {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&n.to_be_bytes());
    SecretKey::from_seed(seed)
}

/// splitmix64: a deterministic stream for the random operations.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn harness(keys: &[SecretKey]) -> Harness {
    let balances: Vec<(&SecretKey, u64)> = keys.iter().map(|k| (k, 1_000_000)).collect();
    Harness::new("rows", Params::DEV, &balances)
}

fn check_root(state: &State) {
    assert_eq!(
        state.root(),
        state.root_recomputed(),
        "incremental root drifted"
    );
    assert_eq!(state.total_supply(), u128::from(state.minted()));
}

fn random_body(rng: &mut Rng, keys: &[SecretKey], signer: usize, step: u64) -> TxBody {
    let other = keys[rng.below(keys.len() as u64) as usize].public();
    match rng.below(7) {
        0 => TxBody::Transfer {
            to: other,
            amount: 1 + rng.below(5_000),
        },
        // To an account no row holds yet: its row is created.
        1 => TxBody::Transfer {
            to: key(1_000 + step).public(),
            amount: 1 + rng.below(5_000),
        },
        2 => TxBody::Stake {
            amount: 1 + rng.below(3_000),
        },
        3 => TxBody::Unstake {
            amount: 1 + rng.below(2_000),
        },
        4 => {
            test_deploy(
                &keys[signer],
                &format!("f{signer}"),
                step as u32 + 1,
                10,
                100,
            )
            .1
        }
        5 => TxBody::RegisterNode {
            role: NodeRole::Worker,
            operator: keys[signer].public(),
            endpoint: format!("127.0.0.1:{step}"),
            region: "local".into(),
            price_per_million_fuel: 1,
            stake: Params::DEV.worker_stake_min,
        },
        _ => TxBody::Deregister,
    }
}

#[test]
fn the_incremental_root_equals_a_full_recomputation_after_random_operations() {
    let keys: Vec<SecretKey> = (0..24).map(key).collect();
    let mut h = harness(&keys);
    check_root(&h.state);
    let mut rng = Rng(7);
    for step in 0..300 {
        let signer = rng.below(keys.len() as u64) as usize;
        let body = random_body(&mut rng, &keys, signer, step);
        let _ = h.run(&keys[signer], body);
        if rng.below(10) == 0 {
            // Cross periods (budgets and usage pruned) and release unbonding.
            h.advance(rng.below(2 * Params::DEV.unbonding_ms));
        }
        check_root(&h.state);
    }
}

#[test]
fn a_root_mid_block_and_a_speculative_copy_do_not_disturb_each_other() {
    let keys: Vec<SecretKey> = (0..4).map(key).collect();
    let h = harness(&keys);
    let parent = h.state.clone();
    let parent_root = parent.root();
    let mut child = parent.clone();
    let ctx = BlockCtx {
        height: 1,
        time_ms: h.time_ms + 1,
    };
    child.begin_block(ctx).expect("time moves");
    let tx = h.sign(
        &keys[0],
        TxBody::Transfer {
            to: keys[1].public(),
            amount: 9,
        },
    );
    child.apply(&tx, ctx).expect("applies");
    // Before the block's end: the root of the content, all the same.
    let mid = child.root();
    assert_eq!(mid, child.root_recomputed());
    child.end_block();
    assert_eq!(child.root(), mid);
    assert_ne!(mid, parent_root);
    // The parent copy is untouched by its child.
    assert_eq!(parent.root(), parent_root);
    assert_eq!(parent.root_recomputed(), parent_root);
    assert_eq!(parent.balance(&keys[0].public()), 1_000_000);
}

#[test]
fn an_account_proof_verifies_against_the_root_and_nothing_else() {
    let keys: Vec<SecretKey> = (0..200).map(key).collect();
    let mut h = harness(&keys);
    h.run(
        &keys[0],
        TxBody::Transfer {
            to: keys[1].public(),
            amount: 5,
        },
    )
    .expect("transfers");
    let state = &h.state;
    let root = state.root();
    let alice = keys[0].public();
    let account = state.account(&alice).expect("alice exists");
    let proof = state.prove_account(&alice);
    assert!(verify_account(&root, &alice, Some(&account), &proof));

    // A different balance, another account, another root: refused.
    let richer = Account {
        balance: account.balance + 1,
        ..account.clone()
    };
    assert!(!verify_account(&root, &alice, Some(&richer), &proof));
    assert!(!verify_account(
        &root,
        &keys[2].public(),
        Some(&account),
        &proof
    ));
    let mut other_root = root;
    other_root[0] ^= 1;
    assert!(!verify_account(&other_root, &alice, Some(&account), &proof));
    assert!(!verify_account(&root, &alice, None, &proof));

    // A tampered proof: a sibling, a neighbour's leaf, a dropped level.
    let mut sibling = proof.clone();
    sibling.siblings[2][3][0] ^= 1;
    assert!(!verify_account(&root, &alice, Some(&account), &sibling));
    let mut short = proof.clone();
    short.siblings.pop();
    assert!(!verify_account(&root, &alice, Some(&account), &short));
    if !proof.bucket.is_empty() {
        let mut neighbour = proof.clone();
        neighbour.bucket[0].1[0] ^= 1;
        assert!(!verify_account(&root, &alice, Some(&account), &neighbour));
    }

    // Absence: an unknown key proves it has no account, and not a zero one.
    let stranger = key(9_999).public();
    let absent = state.prove_account(&stranger);
    assert!(verify_account(&root, &stranger, None, &absent));
    assert!(!verify_account(
        &root,
        &stranger,
        Some(&Account::default()),
        &absent
    ));
}
