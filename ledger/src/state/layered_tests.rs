//! The accounts' finalized base and per-state layers: a chain that
//! finalizes as it goes reads exactly like one that never does, from its
//! tip, from states kept from before each fold and from forks that lost;
//! layers and kept pre-images stay small; a fork is never folded.

use super::State;
use super::tests::{Rng, key};
use crate::sim::{HARNESS_START_MS, Harness};
use crate::tx::{SignedTx, TxBody};
use crate::{BlockCtx, Params};
use bonus_ids::SecretKey;

/// A genesis state, alone on its base (what a chain folds into).
fn genesis(keys: &[SecretKey]) -> State {
    let balances: Vec<(&SecretKey, u64)> = keys.iter().map(|k| (k, 1_000_000)).collect();
    Harness::new("layers", Params::DEV, &balances).state
}

/// Block `height` on `parent`: `txs` random transfers, some to accounts
/// no row holds yet, some stakes and unstakes (which write through a
/// `&mut`); returns the state after it and the transactions.
fn block(parent: &State, keys: &[SecretKey], height: u64, rng: &mut Rng) -> (State, Vec<SignedTx>) {
    let ctx = BlockCtx {
        height,
        time_ms: HARNESS_START_MS + 1_000 * height + rng.below(500),
    };
    let mut state = parent.child();
    state.begin_block(ctx).expect("time moves forward");
    let mut txs = Vec::new();
    for i in 0..8 {
        let signer = &keys[rng.below(keys.len() as u64) as usize];
        let body = match rng.below(6) {
            0 => TxBody::Transfer {
                to: key(10_000 + height * 8 + i).public(),
                amount: 1 + rng.below(100),
            },
            1 => TxBody::Stake {
                amount: 1 + rng.below(50),
            },
            2 => TxBody::Unstake {
                amount: 1 + rng.below(50),
            },
            _ => TxBody::Transfer {
                to: keys[rng.below(keys.len() as u64) as usize].public(),
                amount: 1 + rng.below(1_000),
            },
        };
        let tx = SignedTx::sign(
            signer,
            state.chain_id(),
            state.nonce(&signer.public()),
            body,
        );
        if state.apply(&tx, ctx).is_ok() {
            txs.push(tx);
        }
    }
    state.end_block();
    (state, txs)
}

/// `txs` replayed on `parent` in a block at `ctx_of`'s time (height plays
/// no part in the state).
fn replay(parent: &State, txs: &[SignedTx], ctx_of: &State) -> State {
    let ctx = BlockCtx {
        height: 0,
        time_ms: ctx_of.time_ms(),
    };
    let mut state = parent.clone();
    state.begin_block(ctx).expect("time moves forward");
    for tx in txs {
        state.apply(tx, ctx).expect("applies as it did");
    }
    state.end_block();
    state
}

fn assert_same(state: &State, reference: &State, what: &str) {
    assert_eq!(state.root(), reference.root(), "{what}: root");
    assert_eq!(
        state.root(),
        state.root_recomputed(),
        "{what}: recomputed root"
    );
    assert!(state == reference, "{what}: content");
    assert_eq!(
        state.total_supply(),
        u128::from(state.minted()),
        "{what}: supply"
    );
}

#[test]
fn a_chain_finalized_as_it_goes_reads_like_one_never_finalized() {
    let keys: Vec<SecretKey> = (0..16).map(key).collect();
    let mut rng = Rng(11);
    // The reference never folds: every state reads through its layers.
    let mut reference = genesis(&keys);
    let mut tip = genesis(&keys);
    // Finality lags: blocks are built on unfinalized parents, and each is
    // finalized (folded) `LAG` blocks later, as under pipelined consensus.
    const LAG: usize = 2;
    let mut unfinalized: std::collections::VecDeque<(State, State)> = Default::default();
    // States kept from before later folds: (state, its reference).
    let mut kept: Vec<(State, State)> = Vec::new();
    // A fork of each block that lost, grown one block further after the
    // winner's fold.
    let mut forks: Vec<(State, State)> = Vec::new();
    for height in 1..=60 {
        let (next, txs) = block(&tip, &keys, height, &mut rng);
        let next_reference = replay(&reference, &txs, &next);
        assert_same(&next, &next_reference, "a block on an unfinalized parent");
        let (fork, fork_txs) = block(&tip, &keys, height, &mut rng);
        let fork_reference = replay(&reference, &fork_txs, &fork);
        unfinalized.push_back((next.clone(), next_reference.clone()));
        if unfinalized.len() > LAG {
            let (finalized, finalized_reference) = unfinalized.pop_front().expect("queued");
            finalized.finalize();
            assert_same(&finalized, &finalized_reference, "a finalized block");
        }
        // The fork reads as before whatever was folded meanwhile; so does
        // its child, which cannot rebase past a fold the fork is not on.
        let (fork_child, fork_child_txs) = block(&fork, &keys, height + 1, &mut rng);
        let fork_child_reference = replay(&fork_reference, &fork_child_txs, &fork_child);
        assert_same(&fork_child, &fork_child_reference, "a fork's child");
        if height % 7 == 0 {
            kept.push((tip.clone(), reference.clone()));
            forks.push((fork_child, fork_child_reference));
        }
        tip = next;
        reference = next_reference;
    }
    for (i, (state, reference)) in kept.iter().enumerate() {
        assert_same(
            state,
            reference,
            &format!("state {i} kept from before later folds"),
        );
    }
    for (i, (fork, reference)) in forks.iter().enumerate() {
        assert_same(fork, reference, &format!("fork {i}"));
    }
}

#[test]
fn layers_hold_only_unfinalized_blocks_and_preimages_go_with_the_last_reader() {
    let keys: Vec<SecretKey> = (0..16).map(key).collect();
    let mut rng = Rng(5);
    let mut tip = genesis(&keys);
    let old = tip.clone();
    for height in 1..=40 {
        let (next, _) = block(&tip, &keys, height, &mut rng);
        // One block of 8 transactions writes a few accounts each (and the
        // validators at a new period): never the whole chain's.
        assert!(
            next.accounts.layer_len() <= 32,
            "block {height}: a layer of {} rows",
            next.accounts.layer_len()
        );
        next.finalize();
        tip = next;
    }
    // `old`, pinned at genesis, still reads genesis; the base keeps every
    // fold's pre-images for it.
    assert_eq!(old.balance(&keys[0].public()), 1_000_000);
    assert!(old.accounts.undo_len() > 30, "{}", old.accounts.undo_len());
    drop(old);
    let (next, _) = block(&tip, &keys, 41, &mut rng);
    next.finalize();
    // Only `tip` (pinned one fold back) and `next` remain.
    assert!(
        next.accounts.undo_len() <= 2,
        "{}",
        next.accounts.undo_len()
    );
}

#[test]
#[should_panic(expected = "a folded state must descend from the base")]
fn a_fork_of_a_finalized_block_is_never_folded() {
    let keys: Vec<SecretKey> = (0..4).map(key).collect();
    let mut rng = Rng(3);
    let genesis = genesis(&keys);
    let (winner, _) = block(&genesis, &keys, 1, &mut rng);
    let (loser, _) = block(&genesis, &keys, 1, &mut rng);
    assert_ne!(winner.root(), loser.root());
    winner.finalize();
    loser.finalize();
}

#[test]
fn copies_of_one_genesis_detached_finalize_different_blocks() {
    let keys: Vec<SecretKey> = (0..4).map(key).collect();
    let mut rng = Rng(9);
    let shared = genesis(&keys);
    let (mut a, mut b) = (shared.clone(), shared.clone());
    a.detach();
    b.detach();
    let (after_a, _) = block(&a, &keys, 1, &mut rng);
    let (after_b, _) = block(&b, &keys, 1, &mut rng);
    after_a.finalize();
    after_b.finalize();
    assert_ne!(after_a.root(), after_b.root());
    assert_eq!(after_a.root(), after_a.root_recomputed());
    assert_eq!(after_b.root(), after_b.root_recomputed());
    // The copy that was never detached reads genesis.
    assert_eq!(shared.root(), shared.root_recomputed());
    assert_eq!(shared.balance(&keys[1].public()), 1_000_000);
}

#[test]
fn a_state_loaded_from_its_rows_finalizes_on_from_there() {
    let keys: Vec<SecretKey> = (0..8).map(key).collect();
    let mut rng = Rng(13);
    let mut tip = genesis(&keys);
    for height in 1..=5 {
        let (next, _) = block(&tip, &keys, height, &mut rng);
        next.finalize();
        tip = next;
    }
    let loaded = State::from_rows(tip.rows()).expect("its own rows load");
    assert_same(&loaded, &tip, "loaded");
    let mut reference = tip.clone();
    let mut tip = loaded;
    for height in 6..=12 {
        let (next, txs) = block(&tip, &keys, height, &mut rng);
        reference = replay(&reference, &txs, &next);
        next.finalize();
        assert_same(&next, &reference, "after loading");
        tip = next;
    }
}
