//! What one block costs a validator as the ledger grows: blocks of
//! transfers from random senders applied to a state of 10 k and of 1 M
//! accounts. Per block it measures what the chain does: clone the parent
//! state (the speculative copy), apply the block (signatures already
//! verified, as in a validator's re-execution), end the block (supply
//! check, the changed rows into the root tree) and read the root, commit
//! block + change set to redb, and finalize it (its accounts folded into
//! the shared base, as a validator does on finality); and the bytes that commit hands to
//! redb and what redb then writes (its pages, from `/proc/self/io`).
//!
//! The two ledgers run in two child processes that take turns, 20 blocks
//! each (`--turn-blocks N`; 0: one to the end, then the other), so that
//! the machine's noisy spells fall on both sides of the ratio rather than
//! on whichever ran first.
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
//! Usage: `block-apply [--fold-rows N] [--turn-blocks N] [TXS_PER_BLOCK] [FOLDS]`

/// The allocator of the `bonus` binary, whose validator this stands for.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Folding the block, finalized, into the accounts' shared base.
    finalize: Samples,
    total: Samples,
    /// Bytes the commit handed to redb (block, change set, folded rows).
    bytes: Samples,
    /// What the process sent towards the disk during the commit (Linux
    /// `/proc/self/io` `write_bytes`: redb's pages, not just the rows).
    disk_bytes: Samples,
    rows: Samples,
    blocks: usize,
}

impl Figures {
    /// The samples by name, in a fixed order (the child's report).
    fn series(&mut self) -> [(&'static str, &mut Samples); 9] {
        [
            ("clone", &mut self.clone),
            ("apply", &mut self.apply),
            ("root", &mut self.root),
            ("commit", &mut self.commit),
            ("finalize", &mut self.finalize),
            ("total", &mut self.total),
            ("bytes", &mut self.bytes),
            ("disk_bytes", &mut self.disk_bytes),
            ("rows", &mut self.rows),
        ]
    }
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

/// One ledger being driven block by block: its keys, state and store.
struct Run {
    accounts: u64,
    txs: u64,
    keys: Vec<SecretKey>,
    nonces: Vec<u64>,
    chain_id: bonus_ledger::ChainId,
    state: State,
    store: ChainStore,
    dir: std::path::PathBuf,
    random: u64,
    /// Blocks committed so far.
    height: u64,
    folds_left: u64,
    figures: Figures,
}

impl Run {
    fn new(accounts: u64, txs: u64, folds: u64, fold_rows: u64) -> anyhow::Result<Run> {
        let keys: Vec<SecretKey> = (0..accounts).map(key).collect();
        let balances: Vec<_> = keys.iter().map(|k| (k.public(), 1_000_000)).collect();
        let chain_id = bonus_ledger::ChainId([7; 32]);
        let spec = GenesisSpec {
            balances,
            validators: Vec::new(),
        };
        let state =
            State::genesis(chain_id, Params::DEV, &spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        let dir = tempfile_dir(accounts)?;
        let store = ChainStore::open(&dir.join("chain.redb"))?.with_fold_rows(fold_rows);
        let mut run = Run {
            accounts,
            txs,
            nonces: vec![0; keys.len()],
            keys,
            chain_id,
            state,
            store,
            dir,
            random: 0x5eed,
            height: 0,
            folds_left: folds,
            figures: Figures::default(),
        };
        // Block 1 writes every row (the store held nothing): not measured.
        let written = run.block()?.written;
        anyhow::ensure!(written.full, "the first commit writes every row");
        Ok(run)
    }

    fn done(&self) -> bool {
        self.folds_left == 0
    }

    /// Up to `blocks` measured blocks, fewer if the last fold finishes.
    fn measure(&mut self, blocks: usize) -> anyhow::Result<()> {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for _ in 0..blocks {
            if self.done() {
                break;
            }
            let b = self.block()?;
            anyhow::ensure!(!b.written.full, "a later commit writes only changed rows");
            if b.written.fold_finished {
                self.folds_left -= 1;
            }
            let f = &mut self.figures;
            f.clone.push(ms(b.cloned));
            f.apply.push(ms(b.applied));
            f.root.push(ms(b.rooted));
            f.commit.push(ms(b.committed));
            f.finalize.push(ms(b.finalized));
            f.total.push(ms(b.cloned
                + b.applied
                + b.rooted
                + b.committed
                + b.finalized));
            f.bytes.push(b.written.bytes as f64);
            f.disk_bytes.push(b.disk as f64);
            f.rows.push(b.written.rows as f64);
            f.blocks += 1;
        }
        Ok(())
    }

    /// Builds, applies and commits the next block (its transactions are
    /// signed outside the timed phases).
    fn block(&mut self) -> anyhow::Result<Timed> {
        let b = self.height;
        let accounts = self.accounts;
        let to = self.keys[(accounts - 1 - b % accounts) as usize].public();
        let block_txs: Vec<SignedTx> = (0..self.txs)
            .map(|_| {
                let sender = (next_random(&mut self.random) % accounts) as usize;
                let nonce = self.nonces[sender];
                self.nonces[sender] += 1;
                SignedTx::sign(
                    &self.keys[sender],
                    &self.chain_id,
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
        let mut next = self.state.child();
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
        let written = self.store.commit(&block, None, &next)?;
        let committed = t.elapsed();
        let disk = disk_written() - disk_before;
        let t = Instant::now();
        next.finalize();
        let finalized = t.elapsed();
        self.state = next;
        self.height += 1;
        Ok(Timed {
            cloned,
            applied,
            rooted,
            committed,
            finalized,
            disk,
            written,
        })
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One block's phases.
struct Timed {
    cloned: Duration,
    applied: Duration,
    rooted: Duration,
    committed: Duration,
    finalized: Duration,
    /// `/proc/self/io` write bytes during the commit.
    disk: u64,
    written: bonus_ledger::chain::Committed,
}

/// Measured blocks per turn when the two ledgers take turns: long enough
/// for each to run with its own data in cache, short enough that a noisy
/// spell of the machine falls on both.
const TURN_BLOCKS: usize = 20;

/// One ledger in a child process of its own (its own heap: in one process
/// the 1 M ledger's allocations slowed the 10 k one's end of block by half),
/// driven over stdin/stdout: `turn N` → `done 0|1` (1: finished), `report`
/// → one line of samples per series, then `end`.
struct Child {
    process: std::process::Child,
    to: std::process::ChildStdin,
    from: std::io::BufReader<std::process::ChildStdout>,
    done: bool,
}

impl Child {
    fn spawn(accounts: u64, txs: u64, folds: u64, fold_rows: u64) -> anyhow::Result<Child> {
        let mut process = std::process::Command::new(std::env::current_exe()?)
            .args(["--ledger", &accounts.to_string()])
            .args(["--fold-rows", &fold_rows.to_string()])
            .args([txs.to_string(), folds.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let to = process.stdin.take().expect("piped stdin");
        let from = std::io::BufReader::new(process.stdout.take().expect("piped stdout"));
        let mut child = Child {
            process,
            to,
            from,
            done: false,
        };
        anyhow::ensure!(
            child.line()? == "ready",
            "the {accounts} ledger did not start"
        );
        Ok(child)
    }

    fn line(&mut self) -> anyhow::Result<String> {
        use std::io::BufRead;
        let mut line = String::new();
        anyhow::ensure!(
            self.from.read_line(&mut line)? > 0,
            "a ledger process ended early"
        );
        Ok(line.trim_end().to_string())
    }

    fn turn(&mut self, blocks: usize) -> anyhow::Result<()> {
        use std::io::Write;
        writeln!(self.to, "turn {blocks}")?;
        self.done = match self.line()?.as_str() {
            "done 0" => false,
            "done 1" => true,
            other => anyhow::bail!("unexpected answer {other:?}"),
        };
        Ok(())
    }

    fn report(mut self) -> anyhow::Result<Figures> {
        use std::io::Write;
        writeln!(self.to, "report")?;
        let mut figures = Figures::default();
        for (name, samples) in figures.series() {
            let line = self.line()?;
            let mut words = line.split(' ');
            anyhow::ensure!(words.next() == Some(name), "expected {name}: {line:?}");
            for word in words {
                samples.push(word.parse()?);
            }
        }
        anyhow::ensure!(self.line()? == "end", "a report without its end");
        figures.blocks = figures.total.0.len();
        drop(self.to);
        self.process.wait()?;
        Ok(figures)
    }
}

/// The child's side of [`Child`].
fn serve_ledger(accounts: u64, txs: u64, folds: u64, fold_rows: u64) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut run = Run::new(accounts, txs, folds, fold_rows)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if let Some(blocks) = line.strip_prefix("turn ") {
            run.measure(blocks.parse()?)?;
            writeln!(out, "done {}", u8::from(run.done()))?;
        } else if line == "report" {
            for (name, samples) in run.figures.series() {
                let values: Vec<String> = samples.0.iter().map(f64::to_string).collect();
                writeln!(out, "{name} {}", values.join(" "))?;
            }
            writeln!(out, "end")?;
        } else {
            anyhow::bail!("unknown command {line:?}");
        }
        out.flush()?;
    }
    Ok(())
}

fn tempfile_dir(accounts: u64) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "bonus-block-apply-{}-{accounts}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

const USAGE: &str = "usage: block-apply [--fold-rows N] [--turn-blocks N] [TXS_PER_BLOCK] [FOLDS]";

/// Removes `name N` from `args` and parses N.
fn option<T: std::str::FromStr>(args: &mut Vec<String>, name: &str) -> anyhow::Result<Option<T>> {
    let Some(at) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    anyhow::ensure!(at + 1 < args.len(), "{name} needs a number; {USAGE}");
    let value = args.remove(at + 1);
    args.remove(at);
    let parsed = value
        .parse()
        .map_err(|_| anyhow::anyhow!("{name} {value:?} is not a number; {USAGE}"))?;
    Ok(Some(parsed))
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let fold_rows = option(&mut args, "--fold-rows")?.unwrap_or(bonus_ledger::chain::FOLD_ROWS);
    let ledger: Option<u64> = option(&mut args, "--ledger")?;
    let turn_blocks = option(&mut args, "--turn-blocks")?.unwrap_or(TURN_BLOCKS);
    let mut numbers = args.iter().map(|n| {
        n.parse::<u64>()
            .map_err(|_| anyhow::anyhow!("{n:?} is not a number; {USAGE}"))
    });
    let txs = numbers.next().transpose()?.unwrap_or(1_000);
    let folds = numbers.next().transpose()?.unwrap_or(1);
    anyhow::ensure!(txs > 0 && folds > 0 && numbers.next().is_none(), USAGE);
    if let Some(accounts) = ledger {
        return serve_ledger(accounts, txs, folds, fold_rows);
    }
    // Folding every block: measure as many blocks as the default would.
    let folds = if fold_rows < bonus_ledger::chain::FOLD_ROWS {
        folds * bonus_ledger::chain::FOLD_ROWS / (fold_rows.max(txs))
    } else {
        folds
    };
    // 0: one ledger to the end, then the other (before session 18).
    let turn = if turn_blocks == 0 {
        usize::MAX
    } else {
        turn_blocks
    };
    let mut small = Child::spawn(10_000, txs, folds, fold_rows)?;
    let mut large = Child::spawn(1_000_000, txs, folds, fold_rows)?;
    while !(small.done && large.done) {
        for child in [&mut small, &mut large] {
            if !child.done {
                child.turn(turn)?;
            }
        }
    }
    let (small, large) = (&small.report()?, &large.report()?);
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
    row(
        "finalize (fold)",
        &small.finalize,
        &large.finalize,
        "ms",
        1.0,
    );
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
