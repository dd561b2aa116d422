//! What one block costs a validator as the ledger grows: a block of
//! transfers applied to a state of 10 k and of 1 M accounts. Per block it
//! measures what the chain does: clone the parent state (the speculative
//! copy), apply the block (signatures already verified, as in a
//! validator's re-execution), end the block (supply check, the changed
//! rows into the root tree) and read the root, and commit block + changed
//! rows to redb; and the bytes that commit hands to redb (block and rows)
//! and what redb then writes (its pages, from `/proc/self/io`). The first block
//! after genesis writes every row and is not measured. Reports medians and
//! the 1 M / 10 k ratio of each (goal: within 2×).
//!
//! Usage: `block-apply [TXS_PER_BLOCK] [BLOCKS]`

use bonus_ids::SecretKey;
use bonus_ledger::chain::{Block, ChainStore};
use bonus_ledger::{BlockCtx, GenesisSpec, Params, SignedTx, State, TxBody};
use std::time::{Duration, Instant};

struct Figures {
    clone: Duration,
    apply: Duration,
    root: Duration,
    commit: Duration,
    /// Median of each block's clone + apply + root + commit.
    total: Duration,
    bytes: u64,
    /// What the process sent towards the disk during the commit (Linux
    /// `/proc/self/io` `write_bytes`: redb's pages, not just the rows).
    disk_bytes: u64,
    rows: u64,
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run(accounts: u64, txs: u64, blocks: u64) -> anyhow::Result<Figures> {
    let senders: Vec<SecretKey> = (0..txs * (blocks + 1)).map(key).collect();
    // Accounts beyond the senders: public keys only (cheap to make).
    let mut balances: Vec<_> = senders.iter().map(|k| (k.public(), 1_000_000)).collect();
    balances.extend((senders.len() as u64..accounts).map(|i| (key(i).public(), 1)));
    let chain_id = bonus_ledger::ChainId([7; 32]);
    let spec = GenesisSpec {
        balances,
        validators: Vec::new(),
    };
    let mut state =
        State::genesis(chain_id, Params::DEV, &spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = tempfile_dir()?;
    let store = ChainStore::open(&dir.join("chain.redb"))?;
    let (mut clone, mut apply, mut root, mut commit, mut total) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut bytes, mut disk_bytes, mut rows) = (vec![], vec![], vec![]);
    // Block 0 (height 1) writes every row: the store held nothing.
    for b in 0..=blocks {
        let block_txs: Vec<SignedTx> = senders[(b * txs) as usize..((b + 1) * txs) as usize]
            .iter()
            .map(|k| {
                let to = key(accounts - 1 - b).public();
                SignedTx::sign(k, &chain_id, 0, TxBody::Transfer { to, amount: 1 })
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
        clone.push(cloned);
        apply.push(applied);
        root.push(rooted);
        commit.push(committed);
        total.push(cloned + applied + rooted + committed);
        bytes.push(written.bytes);
        disk_bytes.push(disk);
        rows.push(written.rows);
    }
    let _ = std::fs::remove_dir_all(&dir);
    bytes.sort();
    disk_bytes.sort();
    rows.sort();
    Ok(Figures {
        clone: median(clone),
        apply: median(apply),
        root: median(root),
        commit: median(commit),
        total: median(total),
        bytes: bytes[bytes.len() / 2],
        disk_bytes: disk_bytes[disk_bytes.len() / 2],
        rows: rows[rows.len() / 2],
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("bonus-block-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let txs: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1_000);
    let blocks: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(5);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let small = run(10_000, txs, blocks)?;
    let large = run(1_000_000, txs, blocks)?;
    println!(
        "block of {txs} transfers, medians of {blocks} blocks: 10 k accounts | 1 M accounts | ratio"
    );
    for (what, a, b) in [
        ("clone parent state", small.clone, large.clone),
        ("apply txs", small.apply, large.apply),
        ("end block + root", small.root, large.root),
        ("redb commit", small.commit, large.commit),
    ] {
        println!(
            "  {what:<20} {:>9.2} ms | {:>9.2} ms | {:>6.1}x",
            ms(a),
            ms(b),
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
    println!(
        "  {:<20} {:>9.2} ms | {:>9.2} ms | {:>6.1}x",
        "total",
        ms(small.total),
        ms(large.total),
        large.total.as_secs_f64() / small.total.as_secs_f64()
    );
    println!(
        "  {:<20} {:>9} B  | {:>9} B  | {:>6.1}x",
        "bytes written",
        small.bytes,
        large.bytes,
        large.bytes as f64 / small.bytes as f64
    );
    println!(
        "  {:<20} {:>9} B  | {:>9} B  | {:>6.1}x",
        "disk bytes (redb)",
        small.disk_bytes,
        large.disk_bytes,
        large.disk_bytes as f64 / small.disk_bytes.max(1) as f64
    );
    println!(
        "  {:<20} {:>9}    | {:>9}    | {:>6.1}x",
        "rows written",
        small.rows,
        large.rows,
        large.rows as f64 / small.rows as f64
    );
    Ok(())
}
