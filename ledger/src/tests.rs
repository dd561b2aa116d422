//! State-machine tests: each bad transaction is rejected with its reason,
//! changes nothing, and the supply is conserved.

use crate::tx::{Aggregate, Attestation, NodeRole, SettleBatch, SignedTx, TxBody};
use crate::{State, TxError, UNBONDING_BLOCKS};
use bonus_ids::{ManifestId, SecretKey};

struct Net {
    state: State,
    alice: SecretKey,
    bob: SecretKey,
    worker: SecretKey,
    router: SecretKey,
    height: u64,
}

const FUEL_MAX: u64 = 1_000_000;
const PRICE: u64 = 1_000; // per million fuel

fn manifest(n: u8) -> ManifestId {
    ManifestId::from_bytes([n; 32])
}

impl Net {
    fn new() -> Net {
        let (alice, bob) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let (worker, router) = (SecretKey::from_seed([3; 32]), SecretKey::from_seed([4; 32]));
        let state = State::genesis(&[
            (alice.public(), 1_000_000),
            (bob.public(), 10),
            (worker.public(), 100),
            (router.public(), 100),
        ])
        .expect("genesis");
        Net {
            state,
            alice,
            bob,
            worker,
            router,
            height: 1,
        }
    }

    fn nonce(&self, key: &SecretKey) -> u64 {
        self.state.account(&key.public()).map_or(0, |a| a.nonce)
    }

    fn tx(&self, key: &SecretKey, body: TxBody) -> SignedTx {
        SignedTx::sign(key, self.nonce(key), body)
    }

    /// Applies and checks the rejection rule: an error changes nothing.
    fn apply(&mut self, tx: &SignedTx) -> Result<(), TxError> {
        let before = self.state.clone();
        let result = self.state.apply(tx, self.height);
        if result.is_err() {
            assert_eq!(
                self.state, before,
                "a rejected transaction changed the state"
            );
        }
        self.height += 1;
        result
    }

    fn run(&mut self, key: &SecretKey, body: TxBody) -> Result<(), TxError> {
        let tx = self.tx(key, body);
        self.apply(&tx)
    }

    /// alice deploys "hello" at manifest 1; worker and router register.
    fn with_function(mut self) -> Net {
        let deploy = TxBody::Deploy {
            name: "hello".into(),
            manifest_id: manifest(1),
            fuel_per_invocation_max: FUEL_MAX,
        };
        self.run(&self.alice.clone_key(), deploy).expect("deploy");
        let register = |role| TxBody::RegisterNode {
            role,
            endpoint: "127.0.0.1:4000".into(),
            region: "local".into(),
            price_per_million_fuel: PRICE,
            stake: 50,
        };
        self.run(&self.worker.clone_key(), register(NodeRole::Worker))
            .expect("worker registers");
        self.run(&self.router.clone_key(), register(NodeRole::Router))
            .expect("router registers");
        self
    }

    fn attest(&mut self, period: u64, invocations: u64) {
        let body = TxBody::Attest(Attestation {
            period,
            counts: vec![(manifest(1), self.worker.public(), invocations)],
        });
        self.run(&self.router.clone_key(), body).expect("attests");
    }

    fn batch(&self, sequence: u64, period: u64, invocations: u64, fuel: u64) -> TxBody {
        TxBody::Settle(SettleBatch {
            sequence,
            period,
            aggregates: vec![Aggregate {
                manifest_id: manifest(1),
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
fn transfers_move_funds_and_reject_double_spends() {
    let mut net = Net::new();
    let (alice, bob) = (net.alice.clone_key(), net.bob.public());
    net.run(
        &alice,
        TxBody::Transfer {
            to: bob,
            amount: 600_000,
        },
    )
    .expect("first spend");
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
    assert_eq!(net.state.balance(&bob), 600_010);
    assert_eq!(net.state.total_supply(), 1_000_210);
}

#[test]
fn replays_wrong_nonces_and_forgeries_are_rejected() {
    let mut net = Net::new();
    let tx = net.tx(
        &net.alice.clone_key(),
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 5,
        },
    );
    net.apply(&tx).expect("first time");
    assert!(matches!(
        net.apply(&tx),
        Err(TxError::WrongNonce {
            expected: 1,
            got: 0,
            ..
        })
    ));
    let gap = SignedTx::sign(
        &net.alice,
        7,
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 5,
        },
    );
    assert!(matches!(net.apply(&gap), Err(TxError::WrongNonce { .. })));
    let mut forged = net.tx(
        &net.alice.clone_key(),
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 5,
        },
    );
    forged.body = TxBody::Transfer {
        to: net.bob.public(),
        amount: 500_000,
    };
    assert!(matches!(
        net.apply(&forged),
        Err(TxError::BadSignature { .. })
    ));
}

#[test]
fn overflow_is_rejected() {
    let whale = SecretKey::from_seed([8; 32]);
    // The supply itself must fit in u64, so no balance can overflow later.
    assert_eq!(
        State::genesis(&[(whale.public(), u64::MAX), (whale.public(), 1)]),
        Err(TxError::Overflow)
    );
    // A price so high that fuel × price does not fit is refused, not wrapped.
    let mut net = Net::new().with_function();
    let greedy = TxBody::RegisterNode {
        role: NodeRole::Worker,
        endpoint: "w".into(),
        region: "r".into(),
        price_per_million_fuel: u64::MAX,
        stake: 0,
    };
    net.run(&net.worker.clone_key(), greedy)
        .expect("re-registers");
    net.attest(1, u64::MAX / FUEL_MAX);
    let huge = net.batch(0, 1, u64::MAX / FUEL_MAX, (u64::MAX / FUEL_MAX) * FUEL_MAX);
    assert_eq!(
        net.run(&net.worker.clone_key(), huge),
        Err(TxError::Overflow)
    );
}

#[test]
fn only_a_names_owner_may_update_it() {
    let mut net = Net::new().with_function();
    let bob = net.bob.clone_key();
    let steal = TxBody::Deploy {
        name: "hello".into(),
        manifest_id: manifest(2),
        fuel_per_invocation_max: 1,
    };
    assert!(matches!(
        net.run(&bob, steal),
        Err(TxError::NotNameOwner { .. })
    ));
    let update = TxBody::Deploy {
        name: "hello".into(),
        manifest_id: manifest(2),
        fuel_per_invocation_max: 5,
    };
    net.run(&net.alice.clone_key(), update)
        .expect("owner updates");
    assert_eq!(
        net.state.name("hello").expect("bound").manifest_id,
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
    net.run(&net.alice.clone_key(), split)
        .expect("gradual rollout");
    let foreign = TxBody::SetTraffic {
        name: "hello".into(),
        splits: vec![(manifest(7), 1)],
    };
    assert!(matches!(
        net.run(&net.alice.clone_key(), foreign),
        Err(TxError::InvalidTraffic { .. })
    ));
}

#[test]
fn settlement_pays_the_worker_and_the_fee_pool_once() {
    let mut net = Net::new().with_function();
    net.attest(1, 100);
    let alice_before = net.state.balance(&net.alice.public());
    let worker_before = net.state.balance(&net.worker.public());
    let batch = net.batch(0, 1, 100, 50_000_000);
    net.run(&net.worker.clone_key(), batch.clone())
        .expect("settles");
    // 50M fuel at 1000 per million = 50_000, plus a 1 % fee.
    assert_eq!(
        net.state.balance(&net.worker.public()),
        worker_before + 50_000
    );
    assert_eq!(
        net.state.balance(&net.alice.public()),
        alice_before - 50_500
    );
    assert_eq!(net.state.fee_pool(), 500);
    assert!(net.state.is_settled(&net.worker.public(), 0));
    // The same batch id again, even re-signed with a fresh nonce.
    let again = net.run(&net.worker.clone_key(), batch);
    assert!(
        matches!(again, Err(TxError::BatchAlreadySettled { .. })),
        "{again:?}"
    );
}

#[test]
fn settlement_is_capped_by_attestations_and_fuel_limits() {
    let mut net = Net::new().with_function();
    net.attest(1, 10);
    let worker = net.worker.clone_key();
    let over = net.batch(0, 1, 11, 1);
    assert!(matches!(
        net.run(&worker, over),
        Err(TxError::ExceedsAttestation { .. })
    ));
    let inflated = net.batch(0, 1, 10, 10 * FUEL_MAX + 1);
    assert!(matches!(
        net.run(&worker, inflated),
        Err(TxError::FuelOverLimit { .. })
    ));
    net.run(&worker, net.batch(0, 1, 6, 6))
        .expect("within bounds");
    // Attested 10, settled 6: a second batch of 5 exceeds what is left.
    assert!(matches!(
        net.run(&worker, net.batch(1, 1, 5, 5)),
        Err(TxError::ExceedsAttestation { .. })
    ));
    net.run(&worker, net.batch(1, 1, 4, 4)).expect("the rest");
    // Only registered routers attest, only registered workers settle.
    let bob = net.bob.clone_key();
    let fake = TxBody::Attest(Attestation {
        period: 2,
        counts: vec![(manifest(1), bob.public(), 5)],
    });
    assert!(matches!(net.run(&bob, fake), Err(TxError::NotANode { .. })));
    assert!(matches!(
        net.run(&bob, net.batch(0, 1, 1, 1)),
        Err(TxError::NotANode { .. })
    ));
}

#[test]
fn an_owner_who_cannot_pay_is_marked_unpaid() {
    let mut net = Net::new();
    let bob = net.bob.clone_key();
    let deploy = TxBody::Deploy {
        name: "broke".into(),
        manifest_id: manifest(1),
        fuel_per_invocation_max: FUEL_MAX,
    };
    net.run(&bob, deploy).expect("deploys");
    let register = TxBody::RegisterNode {
        role: NodeRole::Worker,
        endpoint: "w".into(),
        region: "r".into(),
        price_per_million_fuel: PRICE,
        stake: 0,
    };
    net.run(&net.worker.clone_key(), register).expect("worker");
    let register = TxBody::RegisterNode {
        role: NodeRole::Router,
        endpoint: "r".into(),
        region: "r".into(),
        price_per_million_fuel: 0,
        stake: 0,
    };
    net.run(&net.router.clone_key(), register).expect("router");
    net.attest(1, 10);
    let batch = TxBody::Settle(SettleBatch {
        sequence: 0,
        period: 1,
        aggregates: vec![Aggregate {
            manifest_id: manifest(1),
            payer: bob.public(),
            invocations: 10,
            fuel: 10_000_000,
        }],
        receipts_root: [0; 32],
    });
    let worker_before = net.state.balance(&net.worker.public());
    net.run(&net.worker.clone_key(), batch)
        .expect("batch recorded");
    assert!(net.state.name("broke").expect("bound").unpaid);
    assert_eq!(net.state.balance(&bob.public()), 10, "nothing taken");
    assert_eq!(
        net.state.balance(&net.worker.public()),
        worker_before,
        "nothing credited"
    );
}

#[test]
fn stake_unbonds_after_the_unbonding_period() {
    let mut net = Net::new();
    let alice = net.alice.clone_key();
    net.run(&alice, TxBody::Stake { amount: 1000 })
        .expect("stakes");
    assert!(matches!(
        net.run(&alice, TxBody::Unstake { amount: 1001 }),
        Err(TxError::InsufficientFunds { .. })
    ));
    let height = net.height;
    net.run(&alice, TxBody::Unstake { amount: 1000 })
        .expect("unstakes");
    let balance = net.state.balance(&alice.public());
    net.state.end_block(height + UNBONDING_BLOCKS - 1);
    assert_eq!(
        net.state.balance(&alice.public()),
        balance,
        "still unbonding"
    );
    net.state.end_block(height + UNBONDING_BLOCKS);
    assert_eq!(net.state.balance(&alice.public()), balance + 1000);
    assert_eq!(net.state.total_supply(), 1_000_210);
}

#[test]
fn the_same_transactions_give_the_same_root() {
    let run = || {
        let mut net = Net::new().with_function();
        net.attest(1, 100);
        net.run(&net.worker.clone_key(), net.batch(0, 1, 100, 1000))
            .expect("settles");
        net.state.root()
    };
    assert_eq!(run(), run());
    let mut other = Net::new().with_function();
    other.attest(1, 99);
    assert_ne!(run(), other.state.root());
}

/// Every kind of transaction, for codec tests.
fn every_kind(net: &Net) -> Vec<SignedTx> {
    let bodies = vec![
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 5,
        },
        TxBody::Deploy {
            name: "hello".into(),
            manifest_id: manifest(1),
            fuel_per_invocation_max: FUEL_MAX,
        },
        TxBody::SetTraffic {
            name: "hello".into(),
            splits: vec![(manifest(1), 90), (manifest(2), 10)],
        },
        TxBody::RegisterNode {
            role: NodeRole::Router,
            endpoint: "127.0.0.1:1".into(),
            region: "eu".into(),
            price_per_million_fuel: 7,
            stake: 3,
        },
        net.batch(1, 2, 3, 4),
        TxBody::Attest(Attestation {
            period: 2,
            counts: vec![(manifest(1), net.worker.public(), 3)],
        }),
        TxBody::Stake { amount: 1 },
        TxBody::Unstake { amount: 1 },
        TxBody::Slash {
            evidence: vec![0, 1, 2],
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| SignedTx::sign(&net.alice, i as u64, body))
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
    assert!(SignedTx::decode(&vec![0; crate::tx::MAX_TX_BYTES + 1]).is_err());
}

#[test]
fn state_encoding_round_trips_with_its_root() {
    let mut net = Net::new().with_function();
    net.attest(1, 10);
    let batch = net.batch(1, 1, 10, 1_000);
    net.run(&net.worker.clone_key(), batch).expect("settles");
    net.run(&net.alice.clone_key(), TxBody::Stake { amount: 100 })
        .expect("stakes");
    let state = net.state.clone().with_validators([net.bob.public()]);
    let decoded = State::decode(&state.encode()).expect("decodes");
    assert_eq!(decoded, state);
    assert_eq!(decoded.root(), state.root());
    assert!(State::decode(&state.encode()[1..]).is_err());
}

#[test]
fn forged_slashing_evidence_is_rejected_and_changes_nothing() {
    let mut net = Net::new();
    net.state = net.state.clone().with_validators([net.bob.public()]);
    for evidence in [vec![], vec![0], vec![9, 1, 2], vec![0; 300]] {
        let err = net
            .run(&net.alice.clone_key(), TxBody::Slash { evidence })
            .expect_err("garbage evidence");
        assert!(matches!(err, TxError::InvalidEvidence(_)), "{err}");
    }
}

#[test]
fn the_chain_store_commits_blocks_atomically_and_reopens() {
    use crate::chain::{Block, ChainStore};
    let dir = std::env::temp_dir().join(format!("bonus-ledger-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("chain.redb");
    let net = Net::new();
    let block = Block {
        parent: Block::genesis(net.state.root()).parent,
        height: 1,
        state_root: net.state.root(),
        txs: every_kind(&net),
    };
    {
        let store = ChainStore::open(&path).expect("open");
        assert!(store.applied().expect("read").is_none());
        store
            .commit(&block, Some(b"certificate"), &net.state)
            .expect("commit");
    }
    let store = ChainStore::open(&path).expect("reopen");
    let applied = store.applied().expect("read").expect("one block");
    assert_eq!(applied.height, 1);
    assert_eq!(applied.block, block);
    assert_eq!(applied.state, net.state);
    assert_eq!(
        store.certificate(1).expect("read").as_deref(),
        Some(&b"certificate"[..])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_validator_re_executes_blocks_and_refuses_forged_or_wrong_ones() {
    use crate::chain::{Block, Chain, ChainStore};
    let net = Net::new();
    let chain =
        Chain::open(ChainStore::in_memory().expect("db"), net.state.clone()).expect("chain");
    let genesis = chain.genesis().clone();
    let transfer = net.tx(
        &net.alice,
        TxBody::Transfer {
            to: net.bob.public(),
            amount: 5,
        },
    );
    let mut expected = net.state.clone();
    expected.apply(&transfer, 1).expect("applies");
    expected.end_block(1);
    let good = Block {
        parent: commonware_cryptography::Digestible::digest(&genesis),
        height: 1,
        state_root: expected.root(),
        txs: vec![transfer.clone()],
    };
    let state = chain
        .execute(&good, &net.state)
        .expect("a valid block executes");
    assert_eq!(state.root(), good.state_root);

    let mut wrong_root = good.clone();
    wrong_root.state_root = [0; 32];
    assert!(chain.execute(&wrong_root, &net.state).is_err());

    // A transaction never seen before is verified during execution: a
    // forged signature (someone else's, over other bytes) is refused.
    let mut forged = transfer.clone();
    forged.body = TxBody::Transfer {
        to: net.bob.public(),
        amount: 500_000,
    };
    let mut forged_block = good.clone();
    forged_block.txs = vec![forged];
    assert!(chain.execute(&forged_block, &net.state).is_err());

    // A transaction that does not apply (overdraft) makes the block invalid.
    let overdraft = net.tx(
        &net.bob,
        TxBody::Transfer {
            to: net.alice.public(),
            amount: 1_000,
        },
    );
    let mut bad_block = good;
    bad_block.txs = vec![overdraft];
    assert!(chain.execute(&bad_block, &net.state).is_err());
}

#[test]
fn the_mempool_refuses_bad_transactions_and_counts_nonces_without_gaps() {
    use crate::chain::{Chain, ChainStore, SubmitError};
    let net = Net::new();
    let chain =
        Chain::open(ChainStore::in_memory().expect("db"), net.state.clone()).expect("chain");
    let transfer = |nonce| {
        SignedTx::sign(
            &net.alice,
            nonce,
            TxBody::Transfer {
                to: net.bob.public(),
                amount: 1,
            },
        )
    };
    assert!(matches!(
        chain.submit(b"garbage"),
        Err(SubmitError::Decode(_))
    ));
    let mut forged = transfer(0);
    forged.nonce = 1;
    assert!(matches!(
        chain.submit(&forged.encode()),
        Err(SubmitError::BadSignature(_))
    ));
    assert_eq!(chain.mempool_len(), 0);
    chain.submit_tx(transfer(0)).expect("nonce 0");
    chain.submit_tx(transfer(2)).expect("nonce 2 waits");
    // Nonce 1 is missing: the next usable nonce is 1, not 3.
    assert_eq!(chain.next_nonce(&net.alice.public()), 1);
}
