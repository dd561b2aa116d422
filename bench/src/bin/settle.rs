//! Ledger settlement in the state machine alone (no consensus): invocations
//! settled per second of ledger CPU, and ledger bytes per million settled
//! invocations, for batches that aggregate many receipts. Each period has
//! one attestation and one batch; the block clock moves one period per
//! pair, so the settlement window prunes as it would on a live network.
//!
//! Usage: `settle [INVOCATIONS_PER_BATCH] [BATCHES]`

use bonus_ids::SecretKey;
use bonus_ledger::sim::Harness;
use bonus_ledger::{Aggregate, Attestation, NodeRole, Params, SettleBatch, SignedTx, TxBody};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let per_batch: u64 = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batches: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(2_000);
    let (owner, worker, router) = (
        SecretKey::from_seed([0x61; 32]),
        SecretKey::from_seed([0x62; 32]),
        SecretKey::from_seed([0x63; 32]),
    );
    let params = Params::DEV;
    let mut h = Harness::new(
        "bench",
        params,
        &[
            (&owner, u64::MAX / 4),
            (&worker, 1_000_000),
            (&router, 1_000_000),
        ],
    );
    let (manifest_id, deploy) = bonus_ledger::sim::test_deploy(&owner, "bench", 1, 10, u64::MAX);
    let run = |h: &mut Harness, key: &SecretKey, body: TxBody| {
        h.run(key, body).map_err(|e| anyhow::anyhow!("{e}"))
    };
    run(&mut h, &owner, deploy)?;
    for (key, role) in [(&worker, NodeRole::Worker), (&router, NodeRole::Router)] {
        let body = TxBody::RegisterNode {
            role,
            operator: key.public(),
            endpoint: "127.0.0.1:1".into(),
            region: "local".into(),
            price_per_million_fuel: 1,
            stake: params.worker_stake_min.max(params.router_stake_min),
        };
        run(&mut h, key, body)?;
    }
    // Transactions are signed outside the timed region: signing is the
    // worker's and router's work, verifying and applying is the ledger's.
    let chain_id = h.chain_id();
    let first_period = h.period();
    let (mut router_nonce, mut worker_nonce) = (
        h.state.nonce(&router.public()),
        h.state.nonce(&worker.public()),
    );
    let mut pairs = Vec::new();
    for i in 0..batches {
        let period = first_period + i;
        let attest = TxBody::Attest(Attestation {
            period,
            counts: vec![(manifest_id, worker.public(), per_batch)],
        });
        let attest = SignedTx::sign(&router, &chain_id, router_nonce, attest);
        router_nonce += 1;
        let settle = TxBody::Settle(SettleBatch {
            sequence: i,
            period,
            aggregates: vec![Aggregate {
                manifest_id,
                payer: owner.public(),
                invocations: per_batch,
                fuel: per_batch * 5_000, // within the test manifest's fuel limit
            }],
            receipts_root: [i as u8; 32],
        });
        let settle = SignedTx::sign(&worker, &chain_id, worker_nonce, settle);
        worker_nonce += 1;
        pairs.push((attest, settle));
    }
    let bytes: usize = pairs
        .iter()
        .map(|(a, s)| a.encode().len() + s.encode().len())
        .sum();
    let started = Instant::now();
    for (i, (attest, settle)) in pairs.iter().enumerate() {
        if i > 0 {
            h.next_period();
        }
        h.apply(attest).map_err(|e| anyhow::anyhow!("{e}"))?;
        h.apply(settle).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let elapsed = started.elapsed();
    let invocations = per_batch * batches;
    println!(
        "batches={batches} invocations_per_batch={per_batch} settled={invocations} in {:.1} ms: {:.0} invocations/s of ledger CPU; {:.0} ledger bytes per 1M invocations (attest + settle txs)",
        elapsed.as_secs_f64() * 1e3,
        invocations as f64 / elapsed.as_secs_f64(),
        bytes as f64 / (invocations as f64 / 1e6),
    );
    Ok(())
}
