//! Ledger settlement in the state machine alone (no consensus yet):
//! invocations settled per second of ledger CPU, and ledger bytes per
//! million settled invocations, for batches that aggregate many receipts.
//!
//! Usage: `settle [INVOCATIONS_PER_BATCH] [BATCHES]`

use bonus_ids::{ManifestId, SecretKey};
use bonus_ledger::{Aggregate, Attestation, NodeRole, SettleBatch, SignedTx, State, TxBody};
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
        SecretKey::from_seed([1; 32]),
        SecretKey::from_seed([2; 32]),
        SecretKey::from_seed([3; 32]),
    );
    let mut state = State::genesis(&[
        (owner.public(), u64::MAX / 4),
        (worker.public(), 10),
        (router.public(), 10),
    ])
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let manifest_id = ManifestId::from_bytes([7; 32]);
    let mut nonces = [0u64; 3];
    let mut apply = |state: &mut State, who: usize, key: &SecretKey, body: TxBody, height: u64| {
        let tx = SignedTx::sign(key, nonces[who], body);
        nonces[who] += 1;
        let bytes = tx.encode().len();
        state
            .apply(&tx, height)
            .map(|()| bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    apply(
        &mut state,
        0,
        &owner,
        TxBody::Deploy {
            name: "bench".into(),
            manifest_id,
            fuel_per_invocation_max: 1_000_000,
        },
        0,
    )?;
    for (who, key, role) in [
        (1, &worker, NodeRole::Worker),
        (2, &router, NodeRole::Router),
    ] {
        let body = TxBody::RegisterNode {
            role,
            endpoint: "127.0.0.1:1".into(),
            region: "local".into(),
            price_per_million_fuel: 1,
            stake: 0,
        };
        apply(&mut state, who, key, body, 0)?;
    }
    // Transactions are signed outside the timed region: signing is the
    // worker's and router's work, verifying and applying is the ledger's.
    let mut txs = Vec::new();
    for period in 0..batches {
        let attest = TxBody::Attest(Attestation {
            period,
            counts: vec![(manifest_id, worker.public(), per_batch)],
        });
        txs.push(SignedTx::sign(&router, nonces[2], attest));
        nonces[2] += 1;
        let settle = TxBody::Settle(SettleBatch {
            sequence: period,
            period,
            aggregates: vec![Aggregate {
                manifest_id,
                payer: owner.public(),
                invocations: per_batch,
                fuel: per_batch * 5_000,
            }],
            receipts_root: [period as u8; 32],
        });
        txs.push(SignedTx::sign(&worker, nonces[1], settle));
        nonces[1] += 1;
    }
    let bytes: usize = txs.iter().map(|tx| tx.encode().len()).sum();
    let started = Instant::now();
    for (height, tx) in txs.iter().enumerate() {
        state
            .apply(tx, height as u64 + 1)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
