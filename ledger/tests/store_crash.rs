//! The chain store under a real crash: a child process commits blocks in
//! a loop and is killed with SIGKILL mid-stream; reopened, the store holds
//! a consistent last block (its height, block and state from one commit),
//! and the state is exactly the one that block produced. With deferred
//! commits (the validator's group commit), at least every synced block is
//! there.

use bonus_ids::SecretKey;
use bonus_ledger::chain::{Block, ChainStore};
use bonus_ledger::sim::Harness;
use bonus_ledger::{Params, State, TxBody};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITER: &str = "BONUS_STORE_CRASH_WRITER";

fn payer() -> SecretKey {
    SecretKey::from_seed([0x42; 32])
}

/// The deterministic chain the writer commits: block `h` holds one
/// transfer; returns the block and the state after it.
struct Chain {
    h: Harness,
    parent: bonus_ledger::chain::Digest,
}

impl Chain {
    fn new() -> Chain {
        let h = Harness::new("crash", Params::DEV, &[(&payer(), 1_000_000_000)]);
        let parent = commonware_cryptography::Digestible::digest(&Block::genesis(h.state.root()));
        Chain { h, parent }
    }

    fn next(&mut self) -> Block {
        let to = SecretKey::from_seed([0x43; 32]).public();
        let tx = self.h.sign(&payer(), TxBody::Transfer { to, amount: 1 });
        self.h.apply(&tx).expect("the transfer applies");
        let block = Block {
            parent: self.parent,
            height: self.h.height,
            time_ms: self.h.time_ms,
            state_root: self.h.state.root(),
            txs: vec![tx],
        };
        self.parent = commonware_cryptography::Digestible::digest(&block);
        block
    }
}

/// The child: commit blocks forever, reporting each durable height on
/// stdout; deferred, it syncs every 5 blocks and reports only those.
fn write_until_killed(path: &str, deferred: bool) {
    let store = ChainStore::open(std::path::Path::new(path)).expect("open");
    let mut chain = Chain::new();
    loop {
        let block = chain.next();
        if deferred {
            store
                .commit_deferred(&block, Some(b"certificate"), &chain.h.state)
                .expect("commit");
            if !block.height.is_multiple_of(5) {
                continue;
            }
            store.sync().expect("sync");
        } else {
            store
                .commit(&block, Some(b"certificate"), &chain.h.state)
                .expect("commit");
        }
        println!("{}", block.height);
    }
}

#[test]
fn a_kill_mid_write_leaves_the_last_whole_commit() {
    crash_and_reopen("a_kill_mid_write_leaves_the_last_whole_commit", false);
}

#[test]
fn a_kill_between_syncs_keeps_every_synced_block() {
    crash_and_reopen("a_kill_between_syncs_keeps_every_synced_block", true);
}

fn crash_and_reopen(test: &str, deferred: bool) {
    if let Ok(path) = std::env::var(WRITER) {
        write_until_killed(&path, deferred);
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture"])
        .env(WRITER, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("piped");
    let started = Instant::now();
    let mut reported = 0u64;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Ok(height) = line.trim().parse::<u64>() {
            reported = height;
        }
        if reported >= 50 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the writer stalled"
        );
    }
    assert!(reported >= 50, "the writer did not get going");
    // SIGKILL while it is committing the next blocks.
    child.kill().expect("kill -9");
    let _ = child.wait();

    let store = ChainStore::open(&path).expect("reopens after a crash");
    let applied = store.applied().expect("readable").expect("some block");
    assert!(applied.height >= reported, "a durable commit was lost");
    assert_eq!(applied.block.height, applied.height);
    assert_eq!(
        applied.block.state_root,
        applied.state.root(),
        "block and state from different commits"
    );
    // Replaying the same chain to that height gives the same state.
    let mut chain = Chain::new();
    let mut expected = None;
    for _ in 0..applied.height {
        expected = Some(chain.next());
    }
    assert_eq!(expected.as_ref(), Some(&applied.block));
    let replayed: &State = &chain.h.state;
    assert!(
        *replayed == applied.state,
        "the stored state differs from a replay"
    );
    assert_eq!(
        store
            .certificate(applied.height)
            .expect("readable")
            .as_deref(),
        Some(&b"certificate"[..])
    );
}
