//! Deterministic simulation of four validators: commonware's deterministic
//! runtime (seeded scheduling and time) and its simulated p2p network
//! (latency, jitter and 2 % loss on every link). Each scenario runs the
//! real ledger validator: simplex, marshal, buffered broadcast, resolver,
//! the application and the finalizer with its redb store (in memory).

#[path = "common/conflicter.rs"]
mod conflicter;

use bonus_ledger::chain::Timeouts;
use bonus_ledger::limits::{CLOCK_AHEAD_REFUSE_MS, CLOCK_DRIFT_MAX_MS};
use bonus_ledger::sim::{Role, SimNetwork, faucet, key};
use bonus_ledger::{SignedTx, TxBody};
use commonware_p2p::simulated::Link;
use commonware_runtime::{Clock, Runner, deterministic};
use commonware_utils::probability;
use std::time::Duration;

const LOSSY: Link = Link {
    latency: Duration::from_millis(50),
    jitter: Duration::from_millis(10),
    success_rate: probability!(0.98),
};

/// What a scenario does to the network.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Honest,
    /// Validator 3 crashes after height 3.
    Crash,
    /// Validator 3 proposes blocks with a wrong state root.
    InvalidBlocks,
    /// Validator 3 sends conflicting notarize votes (commonware's mock).
    Equivocator,
    /// {0,1} and {2,3} cannot talk for 10 s, then heal.
    Partition,
    /// Validator 3 stamps its proposals this many ms ahead of its clock.
    ClockAheadMs(u64),
}

struct Outcome {
    /// (height, state root) of each honest validator at the end.
    tips: Vec<(u64, [u8; 32])>,
    /// Roots of every honest validator at a common height.
    roots_at: Vec<[u8; 32]>,
    slashed: bool,
    /// Invalid proposals the honest validators refused.
    rejected: u64,
    /// Faucet transfers finalized (its nonce on validator 0).
    finalized_transfers: u64,
    /// The furthest any honest validator's finalized time was seen ahead
    /// of the clock, ms (0 if never ahead).
    max_ahead_ms: u64,
    audit: String,
}

fn run(seed: u64, scenario: Scenario, target: u64) -> Outcome {
    let config = deterministic::Config::new()
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(600)));
    deterministic::Runner::new(config).start(|context| async move {
        let last = match scenario {
            Scenario::InvalidBlocks => Role::InvalidBlocks,
            Scenario::Equivocator => Role::External,
            Scenario::ClockAheadMs(ms) => Role::ClockAheadMs(ms),
            _ => Role::Honest,
        };
        let roles = [Role::Honest, Role::Honest, Role::Honest, last];
        let mut net = SimNetwork::start(&context, &roles, LOSSY, Timeouts::LOCAL).await;
        let _byzantine_votes = net
            .external
            .pop()
            .map(|(i, channels)| conflicter::start(&context, &net, i, channels));
        let chains = net.chains.clone();

        // A stream of transfers from the faucet, each to one validator's
        // mempool (whoever leads next includes it).
        let honest: Vec<usize> = match scenario {
            Scenario::Honest | Scenario::Partition => vec![0, 1, 2, 3],
            _ => vec![0, 1, 2],
        };
        let faucet = faucet();
        let chain_id = *chains[0].state().chain_id();
        let mut nonce = 0;
        let mut crashed = false;
        let mut partitioned_at = None;
        let start = context.current();
        let mut max_ahead_ms = 0;
        loop {
            let heights: Vec<u64> = honest.iter().map(|&i| chains[i].height()).collect();
            let now_ms = unix_ms(context.current());
            for &i in &honest {
                let ahead = chains[i].state().time_ms().saturating_sub(now_ms);
                assert!(
                    ahead <= CLOCK_DRIFT_MAX_MS,
                    "{scenario:?}: validator {i} finalized a block {ahead} ms ahead of the clock"
                );
                max_ahead_ms = max_ahead_ms.max(ahead);
            }
            if heights.iter().all(|h| *h >= target) {
                break;
            }
            for _ in 0..3 {
                let to = key((nonce % 4) as usize).public();
                let tx = SignedTx::sign(&faucet, &chain_id, nonce, TxBody::Transfer { to, amount: 1 });
                let _ = chains[honest[(nonce as usize) % honest.len()]].submit_tx(tx);
                nonce += 1;
            }
            if scenario == Scenario::Crash && !crashed && chains[3].height() >= 3 {
                net.crash(3).await;
                crashed = true;
            }
            if scenario == Scenario::Partition && partitioned_at.is_none() && heights.iter().all(|h| *h >= 2) {
                for a in [0, 1] {
                    for b in [2, 3] {
                        net.cut(a, b).await;
                    }
                }
                partitioned_at = Some((context.current(), heights.iter().copied().max().unwrap_or(0)));
            }
            if let Some((at, height_then)) = partitioned_at {
                let elapsed = context.current().duration_since(at).unwrap_or_default();
                if elapsed < Duration::from_secs(10) {
                    // No side has a quorum: nothing may finalize.
                    assert!(
                        heights.iter().all(|h| *h <= height_then + 1),
                        "a minority partition finalized blocks: {heights:?}"
                    );
                } else if elapsed < Duration::from_secs(11) {
                    for a in [0, 1] {
                        for b in [2, 3] {
                            net.link(a, b, LOSSY).await;
                            net.link(b, a, LOSSY).await;
                        }
                    }
                    partitioned_at = Some((at - Duration::from_secs(3600), height_then));
                }
            }
            let waited = context.current().duration_since(start).unwrap_or_default();
            assert!(
                waited < Duration::from_secs(300),
                "{scenario:?}: no progress to height {target} in 300 s of simulated time: {heights:?}"
            );
            context.sleep(Duration::from_millis(100)).await;
        }
        // Compare at the lowest common height via each store.
        let common = honest.iter().map(|&i| chains[i].height()).min().unwrap_or(0);
        let roots_at = honest
            .iter()
            .map(|&i| {
                chains[i]
                    .store()
                    .block(common)
                    .expect("store readable")
                    .expect("every honest validator stored the common height")
                    .state_root
            })
            .collect();
        let slashed = honest
            .iter()
            .any(|&i| chains[i].state().is_slashed(&key(3).public()));
        let tips = honest
            .iter()
            .map(|&i| (chains[i].height(), chains[i].state().root()))
            .collect();
        let rejected = honest.iter().map(|&i| chains[i].rejected_blocks()).sum();
        let finalized_transfers = chains[0]
            .state()
            .account(&faucet.public())
            .map_or(0, |a| a.nonce);
        Outcome {
            tips,
            roots_at,
            slashed,
            rejected,
            finalized_transfers,
            max_ahead_ms,
            audit: context.auditor().state(),
        }
    })
}

fn unix_ms(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn assert_agree(outcome: &Outcome) {
    assert!(
        outcome.finalized_transfers > 0,
        "no transaction was finalized"
    );
    let first = outcome.roots_at[0];
    assert!(
        outcome.roots_at.iter().all(|r| *r == first),
        "honest validators disagree on the state root at a common height"
    );
}

#[test]
fn four_honest_validators_finalize_and_agree() {
    let outcome = run(1, Scenario::Honest, 10);
    assert_agree(&outcome);
    assert!(outcome.tips.iter().all(|(h, _)| *h >= 10));
}

#[test]
fn progress_continues_with_one_crashed_validator() {
    let outcome = run(2, Scenario::Crash, 10);
    assert_agree(&outcome);
}

#[test]
fn invalid_blocks_from_a_byzantine_proposer_are_never_finalized() {
    // Every finalized block re-executes to its root on every honest
    // validator (the finalizer asserts it), and they agree.
    for seed in 30..33 {
        let outcome = run(seed, Scenario::InvalidBlocks, 10);
        assert_agree(&outcome);
        assert!(
            outcome.rejected > 0,
            "seed {seed}: no invalid proposal was refused"
        );
    }
    let outcome = run(3, Scenario::InvalidBlocks, 10);
    assert_agree(&outcome);
    assert!(
        outcome.rejected > 0,
        "the invalid proposals never reached verification"
    );
}

#[test]
fn an_equivocating_validator_is_caught_and_slashed() {
    for seed in 40..44 {
        let outcome = run(seed, Scenario::Equivocator, 12);
        assert_agree(&outcome);
        assert!(
            outcome.slashed,
            "seed {seed}: the equivocation was not turned into a Slash"
        );
    }
}

#[test]
fn a_proposer_far_ahead_of_the_clock_is_refused() {
    for seed in 50..52 {
        let outcome = run(seed, Scenario::ClockAheadMs(6 * CLOCK_AHEAD_REFUSE_MS), 10);
        assert_agree(&outcome);
        assert!(
            outcome.rejected > 0,
            "seed {seed}: no proposal from the future was refused"
        );
        // `run` asserts no honest validator ever finalized a time more
        // than the drift ahead of its clock.
    }
}

#[test]
fn a_proposer_a_little_ahead_is_held_until_the_clock_catches_up() {
    for seed in 60..62 {
        let outcome = run(seed, Scenario::ClockAheadMs(CLOCK_DRIFT_MAX_MS + 500), 10);
        assert_agree(&outcome);
        // Its early blocks were held, not refused: they finalized once
        // they were at most the drift ahead.
        assert!(
            outcome.max_ahead_ms > 0,
            "seed {seed}: no early block was ever finalized"
        );
    }
}

#[test]
fn a_healed_partition_resumes_progress() {
    let outcome = run(5, Scenario::Partition, 8);
    assert_agree(&outcome);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let a = run(7, Scenario::Honest, 5);
    let b = run(7, Scenario::Honest, 5);
    assert_eq!(a.audit, b.audit, "same seed, different execution");
    assert_eq!(a.tips, b.tips);
}
