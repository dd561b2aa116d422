//! State-machine tests: each bad transaction is rejected with its reason
//! and changes nothing (the harness checks it), fees are paid, and the
//! supply is conserved (checked by the state itself after every step, and
//! recounted here).

use crate::sim::{Harness, test_deploy};
use crate::tx::{Aggregate, Attestation, NodeRole, SettleBatch, SignedTx, TxBody};
use crate::{ChainId, Params, State, TxError};
use bonus_ids::{ManifestId, SecretKey};

const FUEL_MAX: u64 = crate::sim::TEST_FUEL_MAX;
const PRICE: u64 = 1_000; // per million fuel
const PRICE_MAX: u64 = 2_000;
const BUDGET: u64 = 1_000_000;
const STAKE: u64 = Params::DEV.worker_stake_min;
const FEE: u64 = Params::DEV.tx_fee;

/// Alice's manifest of "hello" at version `n`.
fn manifest(n: u8) -> ManifestId {
    test_deploy(&key(21), "hello", u32::from(n), PRICE_MAX, BUDGET).0
}

fn unknown_manifest() -> ManifestId {
    ManifestId::from_bytes([7; 32])
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

struct Net {
    h: Harness,
    alice: SecretKey,
    bob: SecretKey,
    worker: SecretKey,
    router: SecretKey,
    /// The manifest "hello" is deployed with (attest and batch use it).
    hello: ManifestId,
}

fn deploy(owner: &SecretKey, name: &str, version: u32) -> TxBody {
    test_deploy(owner, name, version, PRICE_MAX, BUDGET).1
}

fn register(role: NodeRole, operator: &SecretKey, stake: u64) -> TxBody {
    TxBody::RegisterNode {
        role,
        operator: operator.public(),
        endpoint: "127.0.0.1:4000".into(),
        region: "local".into(),
        price_per_million_fuel: PRICE,
        stake,
    }
}

impl Net {
    fn new() -> Net {
        let (alice, bob, worker, router) = (key(21), key(22), key(23), key(24));
        let h = Harness::new(
            "unit",
            Params::DEV,
            &[
                (&alice, 1_000_000),
                (&bob, 10),
                (&worker, 10_000),
                (&router, 10_000),
            ],
        );
        Net {
            h,
            alice,
            bob,
            worker,
            router,
            hello: manifest(1),
        }
    }

    fn run(&mut self, who: &SecretKey, body: TxBody) -> Result<(), TxError> {
        let result = self.h.run(who, body);
        assert_eq!(
            self.h.state.total_supply(),
            u128::from(self.h.state.minted())
        );
        result
    }

    fn balance(&self, who: &SecretKey) -> u64 {
        self.h.state.balance(&who.public())
    }

    /// alice deploys "hello" at manifest 1; worker and router register,
    /// each its own operator.
    fn with_function(mut self) -> Net {
        let (alice, worker, router) = (
            self.alice.clone_key(),
            self.worker.clone_key(),
            self.router.clone_key(),
        );
        self.run(&alice, deploy(&alice, "hello", 1))
            .expect("deploy");
        self.run(&worker, register(NodeRole::Worker, &worker, STAKE))
            .expect("worker registers");
        self.run(&router, register(NodeRole::Router, &router, STAKE))
            .expect("router registers");
        self
    }

    fn attest(&mut self, invocations: u64) {
        let body = TxBody::Attest(Attestation {
            period: self.h.period(),
            counts: vec![(self.hello, self.worker.public(), invocations)],
        });
        let router = self.router.clone_key();
        self.run(&router, body).expect("attests");
    }

    fn batch(&self, sequence: u64, invocations: u64, fuel: u64) -> TxBody {
        TxBody::Settle(SettleBatch {
            sequence,
            period: self.h.period(),
            aggregates: vec![Aggregate {
                manifest_id: self.hello,
                payer: self.alice.public(),
                invocations,
                fuel,
            }],
            receipts_root: [9; 32],
        })
    }
}

trait CloneKey {
    fn clone_key(&self) -> SecretKey;
}

impl CloneKey for SecretKey {
    fn clone_key(&self) -> SecretKey {
        SecretKey::from_seed(self.seed())
    }
}

#[test]
fn transfers_move_funds_pay_the_fee_and_reject_double_spends() {
    let mut net = Net::new();
    let (alice, bob) = (net.alice.clone_key(), net.bob.public());
    let supply = net.h.state.minted();
    net.run(
        &alice,
        TxBody::Transfer {
            to: bob,
            amount: 600_000,
        },
    )
    .expect("first spend");
    // `Harness::apply` checks that a refused transaction changes nothing.
    let second = net.run(
        &alice,
        TxBody::Transfer {
            to: bob,
            amount: 600_000,
        },
    );
    assert!(
        matches!(second, Err(TxError::InsufficientFunds { .. })),
        "{second:?}"
    );
    assert_eq!(net.h.state.nonce(&alice.public()), 1, "nonce given back");
    let broke = key(99);
    let unpaid = net.run(&broke, TxBody::Transfer { to: bob, amount: 1 });
    assert!(
        matches!(unpaid, Err(TxError::CannotPayFee { .. })),
        "{unpaid:?}"
    );
    assert_eq!(net.h.state.balance(&bob), 600_010);
    assert_eq!(
        net.balance(&alice),
        1_000_000 - 600_000 - FEE,
        "one fee, for the applied transfer"
    );
    assert_eq!(net.h.state.fee_pool(), FEE);
    assert_eq!(net.h.state.minted(), supply);
}

#[test]
fn replays_wrong_nonces_and_forgeries_are_rejected() {
    let mut net = Net::new();
    let alice = net.alice.clone_key();
    let to = net.bob.public();
    let tx = net.h.sign(&alice, TxBody::Transfer { to, amount: 5 });
    net.h.apply(&tx).expect("first time");
    assert!(matches!(
        net.h.apply(&tx),
        Err(TxError::WrongNonce {
            expected: 1,
            got: 0,
            ..
        })
    ));
    let gap = SignedTx::sign(
        &alice,
        &net.h.chain_id(),
        7,
        TxBody::Transfer { to, amount: 5 },
    );
    assert!(matches!(net.h.apply(&gap), Err(TxError::WrongNonce { .. })));
    let mut forged = net.h.sign(&alice, TxBody::Transfer { to, amount: 5 });
    forged.body = TxBody::Transfer {
        to,
        amount: 500_000,
    };
    assert!(matches!(
        net.h.apply(&forged),
        Err(TxError::BadSignature { .. })
    ));
}

#[test]
fn the_supply_must_fit_in_u64_and_charges_never_wrap() {
    let whale = key(8);
    let genesis = crate::sim::genesis_file(1);
    let spec = crate::GenesisSpec {
        balances: vec![(whale.public(), u64::MAX), (whale.public(), 1)],
        validators: vec![],
    };
    assert_eq!(
        State::genesis(genesis.chain_id(), Params::DEV, &spec).err(),
        Some(TxError::Overflow)
    );
    // A price so high that fuel × price does not fit is refused, not wrapped.
    let mut net = Net::new();
    let (alice, worker, router) = (
        net.alice.clone_key(),
        net.worker.clone_key(),
        net.router.clone_key(),
    );
    let (greedy_id, greedy_terms) = test_deploy(&alice, "hello", 1, u64::MAX, u64::MAX);
    net.hello = greedy_id;
    net.run(&alice, greedy_terms).expect("deploys");
    let mut greedy = register(NodeRole::Worker, &worker, STAKE);
    if let TxBody::RegisterNode {
        price_per_million_fuel,
        ..
    } = &mut greedy
    {
        *price_per_million_fuel = u64::MAX;
    }
    net.run(&worker, greedy).expect("registers");
    net.run(&router, register(NodeRole::Router, &router, STAKE))
        .expect("router");
    let invocations = crate::limits::INVOCATIONS_PER_ATTESTATION_MAX;
    net.attest(invocations);
    let huge = net.batch(0, invocations, invocations * FUEL_MAX);
    assert_eq!(net.run(&worker, huge), Err(TxError::Overflow));
}

#[test]
fn only_a_names_owner_may_update_it() {
    let mut net = Net::new().with_function();
    let (alice, bob) = (net.alice.clone_key(), net.bob.clone_key());
    assert!(matches!(
        net.run(&bob, deploy(&bob, "hello", 2)),
        Err(TxError::NotNameOwner { .. })
    ));
    net.run(&alice, deploy(&alice, "hello", 2))
        .expect("owner updates");
    assert_eq!(
        net.h.state.name("hello").expect("bound").manifest_id,
        manifest(2)
    );
    let split = TxBody::SetTraffic {
        name: "hello".into(),
        splits: vec![(manifest(1), 90), (manifest(2), 10)],
    };
    assert!(matches!(
        net.run(&bob, split.clone()),
        Err(TxError::NotNameOwner { .. })
    ));
    net.run(&alice, split).expect("gradual rollout");
    let foreign = TxBody::SetTraffic {
        name: "hello".into(),
        splits: vec![(unknown_manifest(), 1)],
    };
    assert!(matches!(
        net.run(&alice, foreign),
        Err(TxError::InvalidTraffic { .. })
    ));
    let fund = TxBody::Fund {
        name: "hello".into(),
        spend_per_period_max: 5,
    };
    assert!(matches!(
        net.run(&bob, fund.clone()),
        Err(TxError::NotNameOwner { .. })
    ));
    net.run(&alice, fund).expect("owner sets the budget");
    assert_eq!(
        net.h
            .state
            .name("hello")
            .expect("bound")
            .spend_per_period_max,
        5
    );
}

#[test]
fn settlement_pays_the_operator_and_the_fee_pool_once() {
    let mut net = Net::new().with_function();
    net.attest(100);
    let worker = net.worker.clone_key();
    let alice_before = net.balance(&net.alice);
    let worker_before = net.balance(&worker);
    let pool_before = net.h.state.fee_pool();
    let batch = net.batch(0, 100, 50_000_000);
    net.run(&worker, batch.clone()).expect("settles");
    // 50M fuel at 1000 per million = 50_000, plus a 1 % fee; the worker
    // pays its transaction fee.
    assert_eq!(net.balance(&worker), worker_before + 50_000 - FEE);
    assert_eq!(net.balance(&net.alice), alice_before - 50_500);
    assert_eq!(net.h.state.fee_pool(), pool_before + 500 + FEE);
    assert_eq!(net.h.state.spent(net.h.period(), "hello"), 50_500);
    assert!(net.h.state.is_settled(&worker.public(), 0));
    // The same batch id again, even re-signed with a fresh nonce.
    let again = net.run(&worker, batch);
    assert!(
        matches!(again, Err(TxError::BatchAlreadySettled { .. })),
        "{again:?}"
    );
}

#[test]
fn a_names_usage_is_kept_for_its_owner_after_the_window_then_pruned() {
    use crate::limits::{SETTLEMENT_WINDOW_PERIODS, USAGE_HISTORY_PERIODS};
    let mut net = Net::new().with_function();
    let period = net.h.period();
    net.attest(100);
    net.attest(20);
    let worker = net.worker.clone_key();
    net.run(&worker, net.batch(0, 100, 50_000_000))
        .expect("settles");
    let usage = |net: &Net| net.h.state.name_usage(period, "hello");
    let expected = crate::state::NameUsage {
        routed: 120,
        settled: 100,
        fuel: 50_000_000,
        charged: 50_500,
    };
    assert_eq!(usage(&net), Some(expected));
    assert_eq!(net.h.state.name_usage(period, "other"), None);
    // Past the settlement window, the lines that settle are gone but the
    // name's record stays for its owner, until the history ends.
    for _ in 0..SETTLEMENT_WINDOW_PERIODS {
        net.h.next_period();
    }
    assert_eq!(net.h.state.period_usage(period).count(), 0);
    assert_eq!(usage(&net), Some(expected));
    for _ in SETTLEMENT_WINDOW_PERIODS..USAGE_HISTORY_PERIODS - 1 {
        net.h.next_period();
    }
    assert_eq!(usage(&net), Some(expected), "the last period it is kept");
    net.h.next_period();
    assert_eq!(usage(&net), None, "pruned");
    assert_eq!(net.h.state.root(), net.h.state.root_recomputed());
}

#[test]
fn settlement_is_capped_by_attestations_and_fuel_limits() {
    let mut net = Net::new().with_function();
    net.attest(10);
    let worker = net.worker.clone_key();
    assert!(matches!(
        net.run(&worker, net.batch(0, 11, 1)),
        Err(TxError::ExceedsAttestation { .. })
    ));
    assert!(matches!(
        net.run(&worker, net.batch(0, 10, 10 * FUEL_MAX + 1)),
        Err(TxError::FuelOverLimit { .. })
    ));
    net.run(&worker, net.batch(0, 6, 6)).expect("within bounds");
    // Attested 10, settled 6: a second batch of 5 exceeds what is left.
    assert!(matches!(
        net.run(&worker, net.batch(1, 5, 5)),
        Err(TxError::ExceedsAttestation { .. })
    ));
    net.run(&worker, net.batch(1, 4, 4)).expect("the rest");
    // Only registered routers attest, only registered workers settle.
    let bob = net.bob.clone_key();
    let fake = TxBody::Attest(Attestation {
        period: net.h.period(),
        counts: vec![(manifest(1), worker.public(), 5)],
    });
    assert!(matches!(net.run(&bob, fake), Err(TxError::NotANode { .. })));
    assert!(matches!(
        net.run(&bob, net.batch(0, 1, 1)),
        Err(TxError::NotANode { .. })
    ));
}

#[test]
fn stake_unbonds_after_the_unbonding_time_not_a_block_count() {
    let mut net = Net::new();
    let alice = net.alice.clone_key();
    net.run(&alice, TxBody::Stake { amount: 1000 })
        .expect("stakes");
    assert!(matches!(
        net.run(&alice, TxBody::Unstake { amount: 1001 }),
        Err(TxError::InsufficientFunds { .. })
    ));
    net.run(&alice, TxBody::Unstake { amount: 1000 })
        .expect("unstakes");
    let unstaked_at = net.h.time_ms;
    let balance = net.balance(&alice);
    // Ten thousand quick blocks are not enough: unbonding is measured in time.
    for _ in 0..10_000 {
        net.h.advance(1);
    }
    assert_eq!(net.balance(&alice), balance, "still unbonding");
    let due = unstaked_at + Params::DEV.unbonding_ms;
    net.h.advance(due - net.h.time_ms - 1);
    assert_eq!(net.balance(&alice), balance, "1 ms early");
    net.h.advance(1);
    assert_eq!(net.balance(&alice), balance + 1000);
}

#[test]
fn a_block_time_must_move_forward() {
    let mut net = Net::new();
    net.h.advance(5);
    let now = net.h.time_ms;
    for time_ms in [now - 1, now] {
        let ctx = crate::BlockCtx {
            height: 99,
            time_ms,
        };
        assert!(matches!(
            net.h.state.clone().begin_block(ctx),
            Err(TxError::BlockTimeNotIncreasing { .. })
        ));
    }
}

#[test]
fn the_same_transactions_give_the_same_root() {
    let run = |invocations| {
        let mut net = Net::new().with_function();
        net.attest(invocations);
        let worker = net.worker.clone_key();
        net.run(&worker, net.batch(0, 10, 1000)).expect("settles");
        net.h.state.root()
    };
    assert_eq!(run(100), run(100));
    assert_ne!(run(100), run(99));
}

/// Every kind of transaction, for codec tests.
fn every_kind(net: &Net) -> Vec<SignedTx> {
    let bodies = vec![
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 5,
        },
        deploy(&net.alice, "hello", 1),
        TxBody::SetTraffic {
            name: "hello".into(),
            splits: vec![(manifest(1), 90), (manifest(2), 10)],
        },
        register(NodeRole::Router, &net.bob, 3),
        TxBody::Deregister,
        net.batch(1, 3, 4),
        TxBody::Attest(Attestation {
            period: 2,
            counts: vec![(manifest(1), net.worker.public(), 3)],
        }),
        TxBody::Stake { amount: 1 },
        TxBody::Unstake { amount: 1 },
        TxBody::Slash {
            evidence: vec![0, 1, 2],
        },
        TxBody::Fund {
            name: "hello".into(),
            spend_per_period_max: 9,
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| SignedTx::sign(&net.alice, &net.h.chain_id(), i as u64, body))
        .collect()
}

#[test]
fn transactions_decode_to_themselves_and_garbage_is_rejected() {
    let net = Net::new();
    for tx in every_kind(&net) {
        let bytes = tx.encode();
        assert_eq!(SignedTx::decode(&bytes).as_ref(), Ok(&tx));
        // Every strict prefix is truncated, never a panic or a different tx.
        for cut in 0..bytes.len() {
            assert!(
                SignedTx::decode(&bytes[..cut]).is_err(),
                "prefix {cut} decoded"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(SignedTx::decode(&trailing).is_err());
    }
    // A count claiming more items than bytes left cannot make us allocate.
    let mut hostile = SignedTx::sign(
        &net.alice,
        &net.h.chain_id(),
        0,
        TxBody::SetTraffic {
            name: "x".into(),
            splits: vec![],
        },
    )
    .encode();
    let count_at = 32 + 8 + 1 + 2;
    hostile[count_at] = 0xff;
    hostile.splice(count_at + 1..count_at + 1, [0xff, 0xff, 0xff, 0x0f]);
    assert!(SignedTx::decode(&hostile).is_err());
    assert!(SignedTx::decode(&vec![0; crate::limits::TX_BYTES_MAX + 1]).is_err());
}

#[test]
fn a_signature_covers_the_chain_id() {
    let net = Net::new();
    let tx = net.h.sign(
        &net.alice,
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 1,
        },
    );
    assert!(tx.verify(&net.h.chain_id()));
    assert!(!tx.verify(&ChainId([7; 32])));
}

#[test]
fn state_rows_round_trip_with_their_root() {
    let mut net = Net::new().with_function();
    net.attest(10);
    let (worker, alice) = (net.worker.clone_key(), net.alice.clone_key());
    net.run(&worker, net.batch(1, 10, 1_000)).expect("settles");
    net.run(&alice, TxBody::Stake { amount: 100 })
        .expect("stakes");
    net.run(&alice, TxBody::Unstake { amount: 40 })
        .expect("unstakes");
    let state = net.h.state.clone();
    let rows = state.rows();
    let decoded = State::from_rows(rows.clone()).expect("decodes");
    assert!(decoded == state);
    assert_eq!(decoded.root(), state.root());
    assert_eq!(state.root_recomputed(), state.root());
    // A truncated row, an unknown one or a missing globals row is refused.
    let mut truncated = rows.clone();
    truncated[1].1.pop();
    assert!(State::from_rows(truncated).is_err());
    let mut unknown = rows.clone();
    unknown.push((vec![0x99], vec![]));
    assert!(State::from_rows(unknown).is_err());
    assert!(State::from_rows(rows[1..].to_vec()).is_err());
    // Rows that do not conserve supply are refused: one more coin for alice.
    let alice_key = [&[1u8][..], net.alice.public().as_bytes()].concat();
    let mut inflated = rows;
    let row = inflated
        .iter_mut()
        .find(|(k, _)| *k == alice_key)
        .expect("alice has a row");
    row.1[7] ^= 1;
    assert!(State::from_rows(inflated).is_err());
}

#[test]
fn the_chain_store_reopens_with_what_it_committed() {
    use crate::chain::{Block, ChainStore};
    let dir = tempdir();
    let path = dir.join("chain.redb");
    let net = Net::new();
    let block = Block {
        parent: Block::genesis(net.h.state.root()).parent,
        height: 1,
        time_ms: net.h.time_ms + 1,
        state_root: net.h.state.root(),
        txs: every_kind(&net),
    };
    {
        let store = ChainStore::open(&path).expect("open");
        assert!(store.applied().expect("read").is_none());
        store
            .commit(&block, Some(b"certificate"), &net.h.state)
            .expect("commit");
    }
    let store = ChainStore::open(&path).expect("reopen");
    let applied = store.applied().expect("read").expect("one block");
    assert_eq!(applied.height, 1);
    assert_eq!(applied.block, block);
    assert!(applied.state == net.h.state);
    assert_eq!(
        store.certificate(1).expect("read").as_deref(),
        Some(&b"certificate"[..])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "bonus-ledger-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn a_validator_re_executes_blocks_and_refuses_forged_or_wrong_ones() {
    use crate::chain::{Block, Chain, ChainStore};
    let net = Net::new();
    let chain =
        Chain::open(ChainStore::in_memory().expect("db"), net.h.state.clone()).expect("chain");
    let genesis = chain.genesis().clone();
    let transfer = net.h.sign(
        &net.alice,
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 5,
        },
    );
    let ctx = crate::BlockCtx {
        height: 1,
        time_ms: net.h.time_ms + 10,
    };
    let mut expected = net.h.state.clone();
    expected.begin_block(ctx).expect("time moves");
    expected.apply(&transfer, ctx).expect("applies");
    let good = Block {
        parent: commonware_cryptography::Digestible::digest(&genesis),
        height: 1,
        time_ms: ctx.time_ms,
        state_root: expected.root(),
        txs: vec![transfer.clone()],
    };
    let state = chain
        .execute(&good, &net.h.state)
        .expect("a valid block executes");
    assert_eq!(state.root(), good.state_root);

    let mut wrong_root = good.clone();
    wrong_root.state_root = [0; 32];
    assert!(chain.execute(&wrong_root, &net.h.state).is_err());

    let mut stale_time = good.clone();
    stale_time.time_ms = net.h.state.time_ms();
    assert!(chain.execute(&stale_time, &net.h.state).is_err());

    // A transaction never seen before is verified during execution: a
    // forged signature (someone else's, over other bytes) is refused.
    let mut forged = transfer.clone();
    forged.body = TxBody::Transfer {
        to: net.bob.public(),
        amount: 500_000,
    };
    let mut forged_block = good.clone();
    forged_block.txs = vec![forged];
    assert!(chain.execute(&forged_block, &net.h.state).is_err());

    // A transaction that does not apply (overdraft) makes the block invalid.
    let overdraft = net.h.sign(
        &net.bob,
        TxBody::Transfer {
            to: net.alice.public(),
            amount: 1_000,
        },
    );
    let mut bad_block = good;
    bad_block.txs = vec![overdraft];
    assert!(chain.execute(&bad_block, &net.h.state).is_err());
}

/// A chain on `net`'s genesis with nothing applied, and a transfer of 1
/// to bob signed by `key` with `nonce`: what the mempool tests submit.
fn mempool_chain(net: &Net) -> std::sync::Arc<crate::chain::Chain> {
    use crate::chain::{Chain, ChainStore};
    Chain::open(ChainStore::in_memory().expect("db"), net.h.state.clone()).expect("chain")
}

fn transfer_to_bob(net: &Net, key: &SecretKey, nonce: u64) -> SignedTx {
    let to = net.bob.public();
    SignedTx::sign(
        key,
        &net.h.chain_id(),
        nonce,
        TxBody::Transfer { to, amount: 1 },
    )
}

#[test]
fn the_mempool_refuses_bad_transactions_and_counts_nonces_without_gaps() {
    use crate::chain::SubmitError;
    let net = Net::new();
    let chain = mempool_chain(&net);
    let transfer = |key: &SecretKey, nonce| transfer_to_bob(&net, key, nonce);
    assert!(matches!(
        chain.submit(b"garbage"),
        Err(SubmitError::Decode(_))
    ));
    let mut forged = transfer(&net.alice, 0);
    forged.nonce = 1;
    assert!(matches!(
        chain.submit(&forged.encode()),
        Err(SubmitError::BadSignature(_))
    ));
    assert_eq!(chain.mempool_len(), 0);
    chain.submit_tx(transfer(&net.alice, 0)).expect("nonce 0");
    chain
        .submit_tx(transfer(&net.alice, 2))
        .expect("nonce 2 waits");
    // Nonce 1 is missing: the next usable nonce is 1, not 3.
    assert_eq!(chain.next_nonce(&net.alice.public()), 1);
    // Beyond the nonce window.
    let far = crate::limits::MEMPOOL_NONCE_WINDOW;
    assert!(matches!(
        chain.submit_tx(transfer(&net.alice, far)),
        Err(SubmitError::NonceTooFar { .. })
    ));
    // An account with nothing cannot queue anything.
    assert!(matches!(
        chain.submit_tx(transfer(&key(99), 0)),
        Err(SubmitError::CannotPayFees { .. })
    ));
    // Bob (balance 10, fee 1) can have at most 10 waiting.
    for nonce in 0..10 {
        chain
            .submit_tx(transfer(&net.bob, nonce))
            .expect("affordable");
    }
    assert!(matches!(
        chain.submit_tx(transfer(&net.bob, 10)),
        Err(SubmitError::CannotPayFees { .. })
    ));
    assert_eq!(chain.mempool_len(), 12);
}

#[test]
fn submissions_checked_together_get_each_their_own_verdict() {
    use crate::chain::SubmitError;
    let net = Net::new();
    let chain = mempool_chain(&net);
    let transfer = |key: &SecretKey, nonce| transfer_to_bob(&net, key, nonce).encode();
    // A forgery among honest transactions fails the batch equation; each
    // is then judged alone, and only the forgery is refused.
    let mut forged = SignedTx::decode(&transfer(&net.bob, 0)).expect("decodes");
    forged.nonce = 1;
    let frames = [
        transfer(&net.alice, 0),
        forged.encode(),
        b"garbage".to_vec(),
        transfer(&net.alice, 1),
        transfer(&net.bob, 0),
    ];
    let results = chain.submit_many(frames.iter().map(Vec::as_slice));
    assert_eq!(results.len(), 5);
    assert!(
        results[0].is_ok() && results[3].is_ok() && results[4].is_ok(),
        "{results:?}"
    );
    assert!(matches!(results[1], Err(SubmitError::BadSignature(_))));
    assert!(matches!(results[2], Err(SubmitError::Decode(_))));
    assert_eq!(chain.mempool_len(), 3);
    assert_eq!(chain.next_nonce(&net.alice.public()), 2);
}

/// A chain reopened on a store whose block 1 holds alice's transfer of 5
/// to bob (nonce 0), as after a restart; and that transfer.
fn reopened_after_one_transfer(net: &Net) -> (std::sync::Arc<crate::chain::Chain>, SignedTx) {
    use crate::chain::{Block, Chain, ChainStore};
    let store = ChainStore::in_memory().expect("db");
    let transfer = net.h.sign(
        &net.alice,
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 5,
        },
    );
    let mut after = net.h.state.clone();
    let ctx = crate::BlockCtx {
        height: 1,
        time_ms: net.h.time_ms + 1,
    };
    after.begin_block(ctx).expect("time");
    after.apply(&transfer, ctx).expect("applies");
    let block = Block {
        parent: Block::genesis(net.h.state.root()).parent,
        height: 1,
        time_ms: ctx.time_ms,
        state_root: after.root(),
        txs: vec![transfer.clone()],
    };
    store.commit(&block, None, &after).expect("commit");
    let chain = Chain::open(store, net.h.state.clone()).expect("chain");
    (chain, transfer)
}

#[test]
fn a_stale_nonce_is_refused_by_the_mempool() {
    use crate::chain::SubmitError;
    let net = Net::new();
    let (chain, transfer) = reopened_after_one_transfer(&net);
    assert!(matches!(
        chain.submit_tx(transfer),
        Err(SubmitError::StaleNonce {
            got: 0,
            next: 1,
            ..
        })
    ));
}

#[test]
fn a_reopened_chain_still_says_where_a_transaction_finalized() {
    let net = Net::new();
    let (chain, transfer) = reopened_after_one_transfer(&net);
    // A client that saw it pending is told it is final, not dropped.
    assert_eq!(
        chain.status(&transfer.id()),
        crate::chain::TxStatus::Finalized(1)
    );
}

#[test]
fn frames_split_back_to_what_was_pushed_and_nothing_malformed_passes() {
    use crate::DecodeError;
    use crate::limits::TX_BYTES_MAX;
    use crate::tx::{push_frame, split_frames};
    let mut message = Vec::new();
    for tx in [&b"one"[..], b"", b"three"] {
        push_frame(&mut message, tx);
    }
    assert_eq!(
        split_frames(&message, 3),
        Ok(vec![&b"one"[..], b"", b"three"])
    );
    assert_eq!(split_frames(&message, 2), Err(DecodeError::TooLarge));
    assert_eq!(
        split_frames(&message[..message.len() - 1], 3),
        Err(DecodeError::Truncated)
    );
    assert_eq!(split_frames(&message[..2], 3), Err(DecodeError::Truncated));
    let huge = (TX_BYTES_MAX as u32 + 1).to_be_bytes();
    assert_eq!(split_frames(&huge, 3), Err(DecodeError::TooLarge));
    assert_eq!(split_frames(&[], 3), Ok(vec![]));
}
