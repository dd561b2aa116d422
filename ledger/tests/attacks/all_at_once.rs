//! Every attacker at once, beside honest traffic, on seven validators in
//! the deterministic simulator (lossy links; two Byzantine: a proposer of
//! invalid blocks and an equivocating voter): honest transfers and
//! settlements finalize, the equivocator is slashed, the honest validators
//! agree, supply is conserved, and no honest balance moves except by its
//! owner's signature or consent.

use crate::conflicter;
use crate::splitter::torsioned;
use crate::world::{FUEL_MAX, PRICE, STAKE, attest, batch, deploy, manifest, register};
use bonus_ids::SecretKey;
use bonus_ledger::chain::{Chain, Timeouts, TxStatus};
use bonus_ledger::genesis::GenesisBalance;
use bonus_ledger::limits::MEMPOOL_NONCE_WINDOW;
use bonus_ledger::sim::{Role, SimNetwork, genesis_file, key as validator};
use bonus_ledger::{ChainId, NodeRole, Params, SignedTx, TxBody};
use commonware_p2p::simulated::Link;
use commonware_runtime::{Clock, Runner, deterministic};
use commonware_utils::probability;
use std::sync::Arc;
use std::time::Duration;

const LOSSY: Link = Link {
    latency: Duration::from_millis(30),
    jitter: Duration::from_millis(10),
    success_rate: probability!(0.98),
};

fn key(tag: u8) -> SecretKey {
    SecretKey::from_seed([tag; 32])
}

const FUNDS: u64 = 10_000_000;
const TRANSFERS: u64 = 30;
/// Validators 0..HONEST are honest; HONEST proposes invalid blocks and
/// HONEST + 1 equivocates (f = 2 of 7).
const HONEST: usize = 5;
const EQUIVOCATOR: usize = HONEST + 1;
/// The deadbeat's funds: its deploy fee and not much more.
const POOR_FUNDS: u64 = 50;

/// Submits to honest validator `nonce % HONEST` and returns the id; a
/// refusal at the door is returned as None.
fn submit(chains: &[Arc<Chain>], tx: SignedTx) -> Option<[u8; 32]> {
    let target = (tx.nonce % HONEST as u64) as usize;
    chains[target].submit_tx(tx).ok()
}

/// Waits (in simulated time, up to 120 s) until `done` holds on every
/// honest validator; past the deadline, fails with `why()`.
async fn on_every_honest(
    context: &deterministic::Context,
    chains: &[Arc<Chain>],
    done: impl Fn(&Chain) -> bool,
    why: impl Fn() -> String,
) {
    let started = context.current();
    while !chains[..HONEST].iter().all(|c| done(c)) {
        let waited = context
            .current()
            .duration_since(started)
            .unwrap_or_default();
        assert!(waited < Duration::from_secs(120), "{}", why());
        context.sleep(Duration::from_millis(20)).await;
    }
}

async fn final_on_all(context: &deterministic::Context, chains: &[Arc<Chain>], id: [u8; 32]) {
    on_every_honest(
        context,
        chains,
        |c| matches!(c.status(&id), TxStatus::Finalized(_)),
        || {
            format!(
                "an honest transaction never finalized: {:?} at heights {:?}, mempools {:?}",
                chains.iter().map(|c| c.status(&id)).collect::<Vec<_>>(),
                chains.iter().map(|c| c.height()).collect::<Vec<_>>(),
                chains.iter().map(|c| c.mempool_len()).collect::<Vec<_>>(),
            )
        },
    )
    .await;
}

#[test]
fn every_attacker_at_once_beside_honest_traffic() {
    let config = deterministic::Config::new()
        .with_seed(21)
        .with_timeout(Some(Duration::from_secs(900)));
    deterministic::Runner::new(config).start(|context| async move {
        let (owner, worker, router, payer, payee) = (key(41), key(42), key(43), key(44), key(45));
        let (drainer, hijacker, jammer, puppet) = (key(51), key(52), key(53), key(54));
        let (splitter, poor) = (key(55), key(10));
        let mut genesis = genesis_file(HONEST + 2);
        for k in [
            &owner, &worker, &router, &payer, &drainer, &hijacker, &jammer, &puppet, &splitter,
        ] {
            genesis.balances.push(GenesisBalance {
                account: k.public().to_string(),
                amount: FUNDS,
            });
        }
        genesis.balances.push(GenesisBalance {
            account: poor.public().to_string(),
            amount: POOR_FUNDS,
        });
        let mut roles = vec![Role::Honest; HONEST];
        roles.extend([Role::InvalidBlocks, Role::External]);
        let mut net =
            SimNetwork::start_with(&context, &roles, LOSSY, Timeouts::LOCAL, genesis).await;
        let (index, channels) = net.external.pop().expect("the equivocator's channels");
        let _equivocator = conflicter::start(&context, &net, index, channels);
        let chains = net.chains.clone();
        let chain_id = *chains[0].state().chain_id();
        let other_network = ChainId([0x0b; 32]);
        let sign =
            |k: &SecretKey, nonce: u64, body: TxBody| SignedTx::sign(k, &chain_id, nonce, body);
        while chains[0].height() < 2 {
            context.sleep(Duration::from_millis(20)).await;
        }

        // Honest set-up: a function, a worker and a router of two operators.
        let setup = [
            sign(&owner, 0, deploy(1)),
            sign(
                &worker,
                0,
                register(NodeRole::Worker, &worker, PRICE, STAKE),
            ),
            sign(&router, 0, register(NodeRole::Router, &router, 0, STAKE)),
            // The deadbeat deploys with next to nothing.
            sign(&poor, 0, deploy(10)),
        ];
        // Attackers, all at once.
        let attacks = [
            // A router with no stake; a sock puppet; a self-attestation.
            sign(&drainer, 0, register(NodeRole::Router, &drainer, 0, 0)),
            sign(
                &puppet,
                0,
                register(NodeRole::Worker, &drainer, u64::MAX, STAKE),
            ),
            sign(&drainer, 1, attest(0, 1, &puppet, 1_000_000)),
            // The owner's manifest, deployed first by someone else.
            sign(&hijacker, 0, deploy(1)),
        ];
        let mut honest_ids: Vec<[u8; 32]> = setup
            .into_iter()
            .filter_map(|tx| submit(&chains, tx))
            .collect();
        assert_eq!(honest_ids.len(), 4, "honest set-up refused at the door");
        for tx in attacks {
            let _ = submit(&chains, tx);
        }
        // The jammer's gap, junk from unfunded keys, a replay from another network.
        for nonce in 1..MEMPOOL_NONCE_WINDOW {
            let _ = chains[0].submit_tx(sign(
                &jammer,
                nonce,
                TxBody::Transfer {
                    to: jammer.public(),
                    amount: 1,
                },
            ));
        }
        for i in 0..2_000u64 {
            let mut seed = [0x77; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            let junk = sign(
                &SecretKey::from_seed(seed),
                0,
                TxBody::Transfer {
                    to: payer.public(),
                    amount: 1,
                },
            );
            assert!(chains[1].submit_tx(junk).is_err(), "unfunded junk admitted");
        }
        let replay = SignedTx::sign(
            &owner,
            &other_network,
            1,
            TxBody::Transfer {
                to: drainer.public(),
                amount: FUNDS / 2,
            },
        );
        assert!(
            chains[2].submit_tx(replay).is_err(),
            "a replay from another network admitted"
        );
        // The splitter's signature, valid only under the cofactored rule,
        // gets one verdict everywhere; with `s` off by one it gets none.
        let plain = sign(
            &splitter,
            0,
            TxBody::Transfer {
                to: payee.public(),
                amount: 7,
            },
        );
        let broken = torsioned(plain.clone(), &splitter, &chain_id, true);
        assert!(
            chains[3].submit_tx(broken).is_err(),
            "a bad signature admitted"
        );
        let crafted = torsioned(plain, &splitter, &chain_id, false);
        honest_ids.push(submit(&chains, crafted).expect("valid under ZIP-215"));

        // Honest transfers.
        for nonce in 0..TRANSFERS {
            let id = submit(
                &chains,
                sign(
                    &payer,
                    nonce,
                    TxBody::Transfer {
                        to: payee.public(),
                        amount: 1,
                    },
                ),
            )
            .expect("an honest transfer is admitted");
            honest_ids.push(id);
        }
        for id in &honest_ids {
            final_on_all(&context, &chains, *id).await;
        }
        // Honest settlement: the router vouches, then the worker settles.
        let period = chains[0].state().period();
        let id = submit(&chains, sign(&router, 1, attest(period, 1, &worker, 100)))
            .expect("attest admitted");
        final_on_all(&context, &chains, id).await;
        let fuel = 100 * FUEL_MAX / 200;
        let id = submit(
            &chains,
            sign(&worker, 1, batch(0, period, 1, &owner, 100, fuel)),
        )
        .expect("settle admitted");
        final_on_all(&context, &chains, id).await;
        // The deadbeat's function runs past what it can pay: the line is
        // not credited and it is marked unpaid, until a friend tops it up.
        let id = submit(&chains, sign(&router, 2, attest(period, 10, &worker, 100)))
            .expect("attest admitted");
        final_on_all(&context, &chains, id).await;
        let id = submit(
            &chains,
            sign(&worker, 2, batch(1, period, 10, &poor, 10, 10 * FUEL_MAX)),
        )
        .expect("settle admitted");
        final_on_all(&context, &chains, id).await;
        assert!(chains[..HONEST].iter().all(|c| c.state().is_unpaid("poor")));
        let id = submit(
            &chains,
            sign(
                &payer,
                TRANSFERS,
                TxBody::Transfer {
                    to: poor.public(),
                    amount: 1_000,
                },
            ),
        )
        .expect("a top-up admitted");
        final_on_all(&context, &chains, id).await;
        // The equivocation is seen, turned into evidence and slashed.
        let equivocator = validator(EQUIVOCATOR).public();
        on_every_honest(
            &context,
            &chains,
            |c| c.state().is_slashed(&equivocator),
            || "the equivocator was never slashed".to_string(),
        )
        .await;

        // Agreement, conservation, and every balance explained.
        let fee = Params::DEV.tx_fee;
        let cost = fuel * PRICE / 1_000_000;
        let due = cost + cost / 100;
        let common = chains[..HONEST]
            .iter()
            .map(|c| c.height())
            .min()
            .unwrap_or(0);
        let roots: Vec<_> = chains[..HONEST]
            .iter()
            .map(|c| {
                c.store()
                    .block(common)
                    .expect("readable")
                    .expect("stored")
                    .state_root
            })
            .collect();
        assert!(
            roots.iter().all(|r| *r == roots[0]),
            "honest validators disagree"
        );
        assert!(
            chains[..HONEST]
                .iter()
                .map(|c| c.rejected_blocks())
                .sum::<u64>()
                > 0,
            "no invalid proposal was refused"
        );
        for chain in &chains[..HONEST] {
            let state = chain.state();
            assert_eq!(state.total_supply(), u128::from(state.minted()));
            assert_eq!(
                state.balance(&owner.public()),
                FUNDS - fee - due,
                "owner: one deploy fee and the consented charge"
            );
            assert_eq!(
                state.balance(&payer.public()),
                FUNDS - TRANSFERS * (1 + fee) - (1_000 + fee)
            );
            assert_eq!(state.balance(&payee.public()), TRANSFERS + 7);
            assert_eq!(state.balance(&splitter.public()), FUNDS - 7 - fee);
            assert_eq!(
                state.balance(&worker.public()),
                FUNDS - STAKE - 3 * fee + cost,
                "the worker's operator is paid, and for the deadbeat nothing"
            );
            assert_eq!(
                state.balance(&poor.public()),
                POOR_FUNDS - fee + 1_000,
                "the deadbeat paid its deploy fee, nothing for work it could not pay"
            );
            assert!(!state.is_unpaid("poor"), "the top-up cleared it");
            assert!(state.is_slashed(&validator(EQUIVOCATOR).public()));
            assert!(
                !state.is_slashed(&validator(HONEST).public()),
                "a wrong root is refused, not slashed"
            );
            assert!(
                state.node(&drainer.public()).is_none(),
                "an unstaked router registered"
            );
            assert_eq!(
                state.name("hello").map(|n| n.owner),
                Some(owner.public()),
                "a manifest was hijacked"
            );
            assert_eq!(
                state.manifest(&manifest(1)).map(|m| m.name.as_str()),
                Some("hello")
            );
            assert_eq!(
                state.usage(period, &manifest(1), &puppet.public()).attested,
                0
            );
            assert_eq!(
                state.nonce(&jammer.public()),
                0,
                "nothing after the gap applied"
            );
            assert_eq!(
                state.balance(&drainer.public()),
                FUNDS,
                "its refused transactions cost it nothing"
            );
        }
    });
}
