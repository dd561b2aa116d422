//! The jammer: tries to keep honest transactions out of blocks. It holds
//! the lowest public key and queues nonces after a gap (which used to fill
//! every proposal's scan), floods junk (unfunded keys, forged signatures,
//! garbage), and keeps a crowd of funded accounts' nonce windows full.
//! Honest transfers still finalize within 3 blocks of their submission.

use bonus_ids::SecretKey;
use bonus_ledger::chain::{SubmitError, Timeouts, TxStatus};
use bonus_ledger::genesis::GenesisBalance;
use bonus_ledger::limits::MEMPOOL_NONCE_WINDOW;
use bonus_ledger::sim::{Role, SimNetwork, genesis_file};
use bonus_ledger::{SignedTx, TxBody};
use commonware_p2p::simulated::Link;
use commonware_runtime::{Clock, Runner, deterministic};
use commonware_utils::probability;
use std::time::Duration;

const LINK: Link = Link {
    latency: Duration::from_millis(20),
    jitter: Duration::from_millis(5),
    success_rate: probability!(1.0),
};

/// A key whose public key sorts before every other signer's.
fn lowest_key() -> SecretKey {
    (0u32..)
        .map(|i| {
            let mut seed = [0xee; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            SecretKey::from_seed(seed)
        })
        .find(|k| k.public().as_bytes()[0] == 0 && k.public().as_bytes()[1] < 0x10)
        .expect("some seed gives a low key")
}

fn crowd(i: usize) -> SecretKey {
    let mut seed = [0xcc; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    SecretKey::from_seed(seed)
}

const CROWD: usize = 200;
const JUNK: usize = 100_000;

#[test]
fn gaps_junk_and_a_crowd_do_not_keep_honest_transfers_out() {
    let config = deterministic::Config::new()
        .with_seed(11)
        .with_timeout(Some(Duration::from_secs(600)));
    deterministic::Runner::new(config).start(|context| async move {
        let (jammer, honest) = (lowest_key(), SecretKey::from_seed([0x11; 32]));
        let mut genesis = genesis_file(4);
        let fund = |key: &SecretKey| GenesisBalance {
            account: key.public().to_string(),
            amount: 1_000_000,
        };
        genesis.balances.push(fund(&jammer));
        genesis.balances.push(fund(&honest));
        genesis.balances.extend((0..CROWD).map(|i| fund(&crowd(i))));
        let roles = [Role::Honest; 4];
        let net = SimNetwork::start_with(&context, &roles, LINK, Timeouts::LOCAL, genesis).await;
        let chain = net.chains[0].clone();
        let chain_id = *chain.state().chain_id();
        while chain.height() < 2 {
            context.sleep(Duration::from_millis(50)).await;
        }
        let transfer = |key: &SecretKey, nonce: u64| {
            SignedTx::sign(
                key,
                &chain_id,
                nonce,
                TxBody::Transfer {
                    to: honest.public(),
                    amount: 1,
                },
            )
        };
        // The gap: nonces 1.. with 0 never sent; past the window refused.
        for nonce in 1..MEMPOOL_NONCE_WINDOW {
            chain
                .submit_tx(transfer(&jammer, nonce))
                .expect("within the window");
        }
        assert!(matches!(
            chain.submit_tx(transfer(&jammer, MEMPOOL_NONCE_WINDOW)),
            Err(SubmitError::NonceTooFar { .. })
        ));
        // Junk: unfunded keys (refused before any signature check),
        // forged signatures, garbage bytes.
        let mut refused = 0;
        for i in 0..JUNK {
            let result = match i % 10 {
                0 => {
                    let mut forged = transfer(&crowd(i % CROWD), 0);
                    forged.body = TxBody::Transfer {
                        to: jammer.public(),
                        amount: 999,
                    };
                    chain.submit_tx(forged)
                }
                1..=4 => chain.submit(&i.to_be_bytes()),
                _ => {
                    let mut seed = [0x99; 32];
                    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    chain.submit_tx(transfer(&SecretKey::from_seed(seed), 0))
                }
            };
            refused += usize::from(result.is_err());
        }
        assert_eq!(refused, JUNK, "every piece of junk is refused");
        // The crowd fills its whole nonce windows with valid transfers.
        for i in 0..CROWD {
            for nonce in 0..MEMPOOL_NONCE_WINDOW {
                chain
                    .submit_tx(transfer(&crowd(i), nonce))
                    .expect("a funded crowd");
            }
        }
        // Honest transfers, one at a time, each final within 3 blocks.
        for nonce in 0..3 {
            let submitted_at = chain.height();
            let id = chain.submit_tx(transfer(&honest, nonce)).expect("honest");
            let finalized = loop {
                if let TxStatus::Finalized(height) = chain.status(&id) {
                    break height;
                }
                context.sleep(Duration::from_millis(10)).await;
            };
            assert!(
                finalized <= submitted_at + 3,
                "honest transfer {nonce} submitted at height {submitted_at}, final at {finalized}"
            );
        }
        let state = chain.state();
        assert_eq!(
            state.nonce(&jammer.public()),
            0,
            "nothing after the gap ever applied"
        );
        assert_eq!(state.total_supply(), u128::from(state.minted()));
    });
}
