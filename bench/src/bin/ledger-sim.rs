//! Finality latency in commonware's deterministic simulator: 4 real
//! validators over links with a fixed one-way latency (default 50 ms, no
//! jitter, no loss). Simplex finalizes in 3 network hops, so the anchor is
//! 3 × latency. Two figures, median and p99 in simulated time, each with
//! its ratio to the anchor: block finality (a validator's proposal to its
//! finalization there: what consensus costs), and transaction latency (a
//! transaction entering one mempool to its block being applied there,
//! which adds gossip and the wait for the next proposal).
//!
//! Usage: `ledger-sim [LATENCY_MS] [SAMPLES]`

use bonus_ledger::chain::{Timeouts, TxStatus};
use bonus_ledger::sim::{Role, SimNetwork, faucet, key};
use bonus_ledger::{SignedTx, TxBody};
use commonware_p2p::simulated::Link;
use commonware_runtime::{Clock, Runner, deterministic};
use commonware_utils::probability;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let latency_ms: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(50);
    let samples: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100);
    let link = Link {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::ZERO,
        success_rate: probability!(1.0),
    };
    let timeouts = Timeouts {
        leader: Duration::from_millis(latency_ms * 10),
        certification: Duration::from_millis(latency_ms * 20),
        retry: Duration::from_millis(latency_ms * 10),
    };
    let config = deterministic::Config::new()
        .with_seed(1)
        .with_timeout(Some(Duration::from_secs(samples * 10 + 600)));
    let (mut latencies, mut blocks) =
        deterministic::Runner::new(config).start(|context| async move {
            let roles = [Role::Honest; 4];
            let net = SimNetwork::start(&context, &roles, link, timeouts).await;
            while net.chains.iter().any(|c| c.height() < 3) {
                context.sleep(Duration::from_millis(10)).await;
            }
            let faucet = faucet();
            let chain_id = *net.chains[0].state().chain_id();
            let mut latencies = Vec::new();
            for nonce in 0..samples {
                let tx = SignedTx::sign(
                    &faucet,
                    &chain_id,
                    nonce,
                    TxBody::Transfer {
                        to: key(1).public(),
                        amount: 1,
                    },
                );
                let target = (nonce % 4) as usize;
                let started = context.current();
                let id = net.chains[target].submit_tx(tx).expect("accepted");
                while !matches!(net.chains[target].status(&id), TxStatus::Finalized(_)) {
                    context.sleep(Duration::from_millis(1)).await;
                }
                latencies.push(
                    context
                        .current()
                        .duration_since(started)
                        .unwrap_or_default(),
                );
                // Spread submissions over the block cycle.
                context.sleep(Duration::from_millis(37 * (nonce % 7))).await;
            }
            let blocks: Vec<Duration> = net
                .chains
                .iter()
                .flat_map(|c| c.finality_samples())
                .collect();
            (latencies, blocks)
        });
    let anchor = Duration::from_millis(3 * latency_ms);
    for (what, samples) in [
        ("block finality", &mut blocks),
        ("tx latency", &mut latencies),
    ] {
        samples.sort();
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let (p50, p99) = (pick(0.5), pick(0.99));
        println!(
            "simulated {what}, {latency_ms} ms one-way links, 4 validators, {} samples: \
             p50 {:.0} ms ({:.2}x of 3 hops = {} ms), p99 {:.0} ms ({:.2}x)",
            samples.len(),
            p50.as_secs_f64() * 1e3,
            p50.as_secs_f64() / anchor.as_secs_f64(),
            anchor.as_millis(),
            p99.as_secs_f64() * 1e3,
            p99.as_secs_f64() / anchor.as_secs_f64(),
        );
    }
    Ok(())
}
