//! What one block costs a validator as the ledger grows: blocks of
//! transfers from random senders applied to a state of 10 k and of 1 M
//! accounts. Per block it measures what the chain does: clone the parent
//! state (the speculative copy), apply the block (signatures already
//! verified, as in a validator's re-execution), end the block (supply
//! check, the changed rows into the root tree) and read the root, and
//! commit block + change set to redb; and the bytes that commit hands to
//! redb and what redb then writes (its pages, from `/proc/self/io`).
//!
//! The store logs each block's change set, freezes the log every
//! `FOLD_ROWS` rows and folds it into its row table over the next
//! `FOLD_SLICES` commits, a key range each. The run goes on until FOLDS
//! folds have finished (the first block after genesis writes every row and
//! is not measured), so the mean over the measured blocks is the amortized
//! cost, folds included. Reports the median and the mean of each phase,
//! the slowest commit, and the 1 M / 10 k ratios (goal: within 2×).
//!
//! With `--fold-rows 1`, every block's rows go straight into the row
//! table (the store before the log), for comparison.
//!
//! Usage: `block-apply [--fold-rows N] [TXS_PER_BLOCK] [FOLDS]`

use bonus_ids::SecretKey;
use bonus_ledger::chain::{Block, ChainStore};
use bonus_ledger::{BlockCtx, GenesisSpec, Params, SignedTx, State, TxBody};
use std::time::{Duration, Instant};

/// One phase's per-block samples.
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }
    fn max(&self) -> f64 {
        self.0.iter().copied().fold(0.0, f64::max)
    }
}

#[derive(Default)]
struct Figures {
    /// Milliseconds per block.
    clone: Samples,
    apply: Samples,
    root: Samples,
    commit: Samples,
    total: Samples,
    /// Bytes the commit handed to redb (block, change set, folded rows).
    bytes: Samples,
    /// What the process sent towards the disk during the commit (Linux
    /// `/proc/self/io` `write_bytes`: redb's pages, not just the rows).
    disk_bytes: Samples,
    rows: Samples,
    blocks: usize,
}

/// Bytes this process has caused to be written to storage so far (0 where
/// `/proc/self/io` does not exist).
fn disk_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn key(i: u64) -> SecretKey {
    let mut seed = [0xb1; 32];
    seed[..8].copy_from_slice(&i.to_be_bytes());
    SecretKey::from_seed(seed)
}

/// splitmix64: the senders' order, the same in every run.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn run(accounts: u64, txs: u64, folds: u64, fold_rows: u64) -> anyhow::Result<Figures> {
    let keys: Vec<SecretKey> = (0..accounts).map(key).collect();
    let mut nonces = vec![0u64; keys.len()];
    let balances: Vec<_> = keys.iter().map(|k| (k.public(), 1_000_000)).collect();
    let chain_id = bonus_ledger::ChainId([7; 32]);
    let spec = GenesisSpec {
        balances,
        validators: Vec::new(),
    };
    let mut state =
        State::genesis(chain_id, Params::DEV, &spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = tempfile_dir()?;
    let store = ChainStore::open(&dir.join("chain.redb"))?.with_fold_rows(fold_rows);
    let mut f = Figures::default();
    let mut random = 0x5eed;
    let mut folded = 0;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Block 0 (height 1) writes every row: the store held nothing.
    for b in 0.. {
        if folded == folds {
            break;
        }
        let to = keys[(accounts - 1 - b % accounts) as usize].public();
        let block_txs: Vec<SignedTx> = (0..txs)
            .map(|_| {
                let sender = (next_random(&mut random) % accounts) as usize;
                let nonce = nonces[sender];
                nonces[sender] += 1;
                SignedTx::sign(
                    &keys[sender],
                    &chain_id,
                    nonce,
                    TxBody::Transfer { to, amount: 1 },
                )
            })
            .collect();
        let ctx = BlockCtx {
            height: b + 1,
            time_ms: 1_000 * (b + 1),
        };
        let t = Instant::now();
        let mut next = state.clone();
        let cloned = t.elapsed();
        let t = Instant::now();
        next.begin_block(ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        for tx in &block_txs {
            next.apply_verified(tx, ctx)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let applied = t.elapsed();
        let t = Instant::now();
        next.end_block();
        let state_root = next.root();
        let rooted = t.elapsed();
        let block = Block {
            parent: Block::genesis([0; 32]).parent,
            height: ctx.height,
            time_ms: ctx.time_ms,
            state_root,
            txs: block_txs,
        };
        let disk_before = disk_written();
        let t = Instant::now();
        let written = store.commit(&block, None, &next)?;
        let committed = t.elapsed();
        let disk = disk_written() - disk_before;
        state = next;
        if b == 0 {
            anyhow::ensure!(written.full, "the first commit writes every row");
            continue;
        }
        anyhow::ensure!(!written.full, "a later commit writes only changed rows");
        if written.fold_finished {
            folded += 1;
        }
        f.clone.push(ms(cloned));
        f.apply.push(ms(applied));
        f.root.push(ms(rooted));
        f.commit.push(ms(committed));
        f.total.push(ms(cloned + applied + rooted + committed));
        f.bytes.push(written.bytes as f64);
        f.disk_bytes.push(disk as f64);
        f.rows.push(written.rows as f64);
        f.blocks += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(f)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("bonus-block-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let fold_rows = match args.iter().position(|a| a == "--fold-rows") {
        Some(at) if at + 1 < args.len() => {
            let rows = args.remove(at + 1).parse()?;
            args.remove(at);
            rows
        }
        Some(_) => anyhow::bail!("--fold-rows needs a number of rows"),
        None => bonus_ledger::chain::FOLD_ROWS,
    };
    let mut args = args.into_iter();
    let txs: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1_000);
    let folds: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1);
    anyhow::ensure!(
        txs > 0 && folds > 0,
        "usage: block-apply [TXS_PER_BLOCK] [FOLDS]"
    );
    // Folding every block: measure as many blocks as the default would.
    let folds = if fold_rows < bonus_ledger::chain::FOLD_ROWS {
        folds * bonus_ledger::chain::FOLD_ROWS / (fold_rows.max(txs))
    } else {
        folds
    };
    let small = run(10_000, txs, folds, fold_rows)?;
    let large = run(1_000_000, txs, folds, fold_rows)?;
    println!(
        "blocks of {txs} transfers until the log folded {folds} time(s) ({} | {} blocks)",
        small.blocks, large.blocks
    );
    println!(
        "  {:<20} {:>21} | {:>21} | {:>15}",
        "per block", "10 k: median  mean", "1 M: median  mean", "ratio: med mean"
    );
    let row = |what: &str, a: &Samples, b: &Samples, unit: &str, scale: f64| {
        println!(
            "  {what:<20} {:>9.2} {:>8.2} {unit:<2} | {:>9.2} {:>8.2} {unit:<2} | {:>7.2}x {:>6.2}x",
            a.median() / scale,
            a.mean() / scale,
            b.median() / scale,
            b.mean() / scale,
            b.median() / a.median(),
            b.mean() / a.mean()
        );
    };
    row("clone parent state", &small.clone, &large.clone, "ms", 1.0);
    row("apply txs", &small.apply, &large.apply, "ms", 1.0);
    row("end block + root", &small.root, &large.root, "ms", 1.0);
    row("redb commit", &small.commit, &large.commit, "ms", 1.0);
    row("total", &small.total, &large.total, "ms", 1.0);
    row("bytes to redb", &small.bytes, &large.bytes, "kB", 1e3);
    row(
        "disk bytes (redb)",
        &small.disk_bytes,
        &large.disk_bytes,
        "kB",
        1e3,
    );
    row("rows changed", &small.rows, &large.rows, "", 1.0);
    println!(
        "  slowest commit: {:.1} ms | {:.1} ms",
        small.commit.max(),
        large.commit.max()
    );
    Ok(())
}
