//! Signature checking of signed transfers, the largest share of a
//! validator's CPU under load: microseconds per signature through
//! `SignedTx::verify_all` for batches of 1, 8, 64, 512 and 4096 (a
//! client's single submission, a handful arriving together, gossip, a
//! whole block). Anchor: one `verify_all` call per transaction, in the
//! same run. Prints which curve25519 backend the CPU can run (the AVX-512
//! IFMA one is compiled in by `.cargo/config.toml`; without the CPU
//! feature the AVX2 one runs).
//!
//! Usage: `verify [ROUNDS]` (default 5; medians).

use bonus_ids::SecretKey;
use bonus_ledger::{ChainId, SignedTx, TxBody};
use std::time::Instant;

const SIZES: [usize; 5] = [1, 8, 64, 512, 4096];

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5);
    let chain = ChainId([7; 32]);
    let to = SecretKey::from_seed([9; 32]).public();
    let total = *SIZES.iter().max().unwrap_or(&1);
    let txs: Vec<SignedTx> = (0..total as u64)
        .map(|i| {
            let mut seed = [0x5e; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            let key = SecretKey::from_seed(seed);
            SignedTx::sign(&key, &chain, 0, TxBody::Transfer { to, amount: 1 })
        })
        .collect();
    let refs: Vec<&SignedTx> = txs.iter().collect();
    // Warm the decoded-key cache, as a validator's is for its known signers.
    assert!(SignedTx::verify_all(&refs, &chain).iter().all(|ok| *ok));

    let avx512 = std::arch::is_x86_feature_detected!("avx512ifma")
        && std::arch::is_x86_feature_detected!("avx512vl");
    println!(
        "CPU: avx512ifma+vl {}, avx2 {}",
        avx512,
        std::arch::is_x86_feature_detected!("avx2")
    );

    let single = median(rounds, || {
        let t = Instant::now();
        for tx in &refs {
            assert!(SignedTx::verify_all(&[*tx], &chain)[0]);
        }
        t.elapsed().as_secs_f64() * 1e6 / refs.len() as f64
    });
    println!("one at a time: {single:.1} µs per signature (anchor)");
    for size in SIZES {
        let per_sig = median(rounds, || {
            let t = Instant::now();
            for chunk in refs.chunks(size) {
                assert!(SignedTx::verify_all(chunk, &chain).iter().all(|ok| *ok));
            }
            t.elapsed().as_secs_f64() * 1e6 / refs.len() as f64
        });
        println!(
            "batches of {size:>4}: {per_sig:5.1} µs per signature ({:.2}× one at a time)",
            single / per_sig
        );
    }
    Ok(())
}

fn median(rounds: usize, mut run: impl FnMut() -> f64) -> f64 {
    let mut samples: Vec<f64> = (0..rounds.max(1)).map(|_| run()).collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
