//! The row store: a block logs only the rows it changed, the log folds
//! into the row table a key range per commit, reopening (also mid-fold)
//! replays the log and checks the rows against the stored root, and an old
//! whole-state database is refused with the way out.

use super::{ChainStore, META, STATE_LOG, STATE_ROWS, StoreError, replay};
use crate::chain::Block;
use crate::sim::Harness;
use crate::{Params, TxBody};
use bonus_ids::SecretKey;
use redb::ReadableTable as _;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn block(h: &Harness, txs: Vec<crate::SignedTx>) -> Block {
    Block {
        parent: Block::genesis([0; 32]).parent,
        height: h.height,
        time_ms: h.time_ms,
        state_root: h.state.root(),
        txs,
    }
}

/// A store holding a few committed blocks of transfers (the log folded
/// once it holds `fold_rows` rows), and its harness.
fn committed(path: &std::path::Path, fold_rows: u64) -> (ChainStore, Harness) {
    let store = ChainStore::open(path)
        .expect("open")
        .with_fold_rows(fold_rows);
    let mut h = Harness::new("store", Params::DEV, &[(&key(1), 1_000), (&key(2), 1_000)]);
    h.advance(1);
    let first = store
        .commit(&block(&h, vec![]), None, &h.state)
        .expect("commit");
    // The store held nothing: every row is written.
    assert!(first.full);
    assert_eq!(first.rows, h.state.rows().len() as u64);
    for amount in 1..4 {
        let tx = h.sign(
            &key(1),
            TxBody::Transfer {
                to: key(2).public(),
                amount,
            },
        );
        h.apply(&tx).expect("transfers");
        let written = store
            .commit(&block(&h, vec![tx]), Some(b"cert"), &h.state)
            .expect("commit");
        // The globals (time, fee pool), the sender and the recipient.
        assert!(!written.full);
        assert_eq!(written.rows, 3);
        assert!(written.bytes < 1_000);
    }
    (store, h)
}

#[test]
fn a_block_writes_only_the_rows_it_changed_and_reopens_to_the_same_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    // Three blocks of three rows stay in the log: reopening replays them.
    let (store, h) = committed(&path, 1_000);
    assert_eq!(log_entries(&store), 3);
    drop(store);
    let store = ChainStore::open(&path).expect("reopen");
    let applied = store.applied().expect("loads").expect("a block");
    assert_eq!(applied.height, h.height);
    assert!(applied.state == h.state);
    assert_eq!(applied.state.root(), h.state.root());
}

fn log_entries(store: &ChainStore) -> u64 {
    use redb::{ReadableDatabase as _, ReadableTableMetadata as _};
    let tx = store.db.begin_read().expect("read");
    tx.open_table(STATE_LOG).expect("log").len().expect("len")
}

#[test]
fn the_log_folds_into_the_row_table_and_reopens_to_the_same_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    // Three rows a block, folded once the log holds five: the second and
    // the fourth commit fold.
    let (mut store, mut h) = committed(&path, 5);
    assert_eq!(log_entries(&store), 1);
    store = store.with_fold_rows(1);
    let tx = h.sign(
        &key(2),
        TxBody::Transfer {
            to: key(1).public(),
            amount: 7,
        },
    );
    h.apply(&tx).expect("transfers");
    let written = store
        .commit(&block(&h, vec![tx]), None, &h.state)
        .expect("commit");
    // The logged block's three rows and this one's, the same three keys.
    assert_eq!(written.folded, 3);
    assert_eq!(log_entries(&store), 0);
    // The row table alone now holds the state.
    let table_rows: Vec<(Vec<u8>, Vec<u8>)> = {
        use redb::ReadableDatabase as _;
        let tx = store.db.begin_read().expect("read");
        let table = tx.open_table(STATE_ROWS).expect("rows");
        table
            .iter()
            .expect("iter")
            .map(|row| {
                let (k, v) = row.expect("row");
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect()
    };
    let mut expected = h.state.rows();
    expected.sort();
    assert_eq!(table_rows, expected);
    drop(store);
    let applied = ChainStore::open(&path)
        .expect("reopen")
        .applied()
        .expect("loads")
        .expect("a block");
    assert!(applied.state == h.state);
}

#[test]
fn reopening_detects_a_corrupted_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let (store, h) = committed(&path, 1_000);
    drop(store);
    {
        let db = redb::Database::create(&path).expect("open raw");
        let tx = db.begin_write().expect("write");
        {
            let mut log = tx.open_table(STATE_LOG).expect("log");
            let mut value = log
                .get(h.height)
                .expect("read")
                .expect("the last block is logged")
                .value()
                .to_vec();
            // The last byte: the recipient's nonce or the globals' time,
            // which decodes but no longer gives the stored root.
            *value.last_mut().expect("not empty") ^= 1;
            log.insert(h.height, value.as_slice()).expect("write");
        }
        tx.commit().expect("commit");
    }
    let store = ChainStore::open(&path).expect("opens");
    assert!(matches!(
        store.applied(),
        Err(StoreError::StateRootMismatch { .. } | StoreError::Corrupt(_))
    ));
}

#[test]
fn a_state_not_following_the_stored_one_is_written_whole() {
    let store = ChainStore::in_memory().expect("db");
    let mut h = Harness::new("store", Params::DEV, &[(&key(1), 1_000)]);
    h.advance(1);
    store
        .commit(&block(&h, vec![]), None, &h.state)
        .expect("commit");
    // Two blocks later without the one between: its changes do not apply.
    h.advance(1);
    h.advance(1);
    let written = store
        .commit(&block(&h, vec![]), None, &h.state)
        .expect("commit");
    assert!(written.full);
    let applied = store.applied().expect("loads").expect("a block");
    assert!(applied.state == h.state);
}

fn corrupt_a_row(path: &std::path::Path, row_key: &[u8], at: usize) {
    let db = redb::Database::create(path).expect("open raw");
    let tx = db.begin_write().expect("write");
    {
        let mut rows = tx.open_table(STATE_ROWS).expect("rows");
        let mut value = rows
            .get(row_key)
            .expect("read")
            .expect("the row exists")
            .value()
            .to_vec();
        value[at] ^= 1;
        rows.insert(row_key, value.as_slice()).expect("write");
    }
    tx.commit().expect("commit");
}

#[test]
fn reopening_detects_a_corrupted_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    // Every block folds, so the row table holds every row.
    drop(committed(&path, 1));
    // The nonce of account 1 (balance 8 bytes, then nonce): supply still
    // holds, so only the root catches it.
    let row_key = [&[1u8][..], key(1).public().as_bytes()].concat();
    corrupt_a_row(&path, &row_key, 15);
    let store = ChainStore::open(&path).expect("opens");
    assert!(matches!(
        store.applied(),
        Err(StoreError::StateRootMismatch { .. })
    ));
    drop(store);
    // Its balance: supply no longer holds, refused as it loads.
    corrupt_a_row(&path, &row_key, 15);
    corrupt_a_row(&path, &row_key, 7);
    let store = ChainStore::open(&path).expect("opens");
    assert!(matches!(store.applied(), Err(StoreError::Corrupt(_))));
}

#[test]
fn an_old_whole_state_database_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let tx = db.begin_write().expect("write");
        tx.open_table(META)
            .expect("meta")
            .insert("state", b"old".as_slice())
            .expect("insert");
        tx.commit().expect("commit");
    }
    let error = ChainStore::open(&path).err().expect("refused");
    assert!(matches!(error, StoreError::OldFormat));
    assert!(
        error
            .to_string()
            .contains("delete the ledger data directory")
    );
}

fn row(key: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (key.as_bytes().to_vec(), value.as_bytes().to_vec())
}

fn change(key: &str, value: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        key.as_bytes().to_vec(),
        value.map(|v| v.as_bytes().to_vec()),
    )
}

#[test]
fn replaying_the_log_updates_inserts_and_deletes_in_key_order() {
    let stored = vec![row("b", "1"), row("d", "2"), row("f", "3"), row("h", "4")];
    let logged = [
        change("a", Some("new first")),
        change("b", None),
        change("c", Some("new between")),
        change("d", Some("2'")),
        change("g", None), // deleted after being logged as new: absent
        change("z", Some("new last")),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        replay(stored, logged),
        vec![
            row("a", "new first"),
            row("c", "new between"),
            row("d", "2'"),
            row("f", "3"),
            row("h", "4"),
            row("z", "new last"),
        ]
    );
}

#[test]
fn a_fold_applies_tombstones_and_empties_the_log() {
    let store = ChainStore::in_memory().expect("db").with_fold_rows(3);
    let tx = store.db.begin_write().expect("write");
    {
        let mut rows = tx.open_table(STATE_ROWS).expect("rows");
        for (key, value) in [row("a", "1"), row("b", "2")] {
            rows.insert(key.as_slice(), value.as_slice())
                .expect("insert");
        }
        drop(rows);
        let mut log = tx.open_table(STATE_LOG).expect("log");
        let first = super::write_changes(&[crate::state::RowChange {
            key: b"a".to_vec(),
            value: None,
        }]);
        let second = super::write_changes(&[
            crate::state::RowChange {
                key: b"b".to_vec(),
                value: Some(b"2'".to_vec()),
            },
            crate::state::RowChange {
                key: b"c".to_vec(),
                value: Some(b"3".to_vec()),
            },
        ]);
        log.insert(7, first.as_slice()).expect("log");
        log.insert(8, second.as_slice()).expect("log");
        let mut meta = tx.open_table(META).expect("meta");
        meta.insert("log_rows", 3u64.to_be_bytes().as_slice())
            .expect("count");
        let folded = store.fold_step(&tx, &mut meta, &mut log, 8).expect("folds");
        // Fewer rows than a slice: one step folds them all.
        assert_eq!(folded.rows, 3);
        assert!(folded.finished);
        assert_eq!(log.iter().expect("iter").count(), 0);
        assert!(meta.get("fold_upto").expect("meta").is_none());
    }
    tx.commit().expect("commit");
    let tx = redb::ReadableDatabase::begin_read(&*store.db).expect("read");
    let rows = tx.open_table(STATE_ROWS).expect("rows");
    let all: Vec<(Vec<u8>, Vec<u8>)> = rows
        .iter()
        .expect("iter")
        .map(|r| {
            let (k, v) = r.expect("row");
            (k.value().to_vec(), v.value().to_vec())
        })
        .collect();
    assert_eq!(all, vec![row("b", "2'"), row("c", "3")]);
}

/// The same database as a process that restarted would see it: nothing of
/// the fold in memory.
fn restarted(store: &ChainStore) -> ChainStore {
    ChainStore {
        db: store.db.clone(),
        fold_rows: store.fold_rows,
        fold_load_rows: store.fold_load_rows,
        fold_slice_min: store.fold_slice_min,
        frozen: Default::default(),
    }
}

/// Transfers round a ring of `keys`, a block each, committed to `store`
/// (three rows a block: the globals, the sender, the recipient); checks
/// after each that a restarted store loads the same state, and goes on
/// with it every other block when `restart`.
fn ring(
    store: &mut ChainStore,
    h: &mut Harness,
    keys: &[SecretKey],
    blocks: usize,
    restart: bool,
) -> Vec<super::Committed> {
    let mut written = Vec::new();
    for b in 0..blocks {
        let from = &keys[b % keys.len()];
        let to = keys[(b + 1) % keys.len()].public();
        let tx = h.sign(from, TxBody::Transfer { to, amount: 1 });
        h.apply(&tx).expect("transfers");
        written.push(
            store
                .commit(&block(h, vec![tx]), None, &h.state)
                .expect("commit"),
        );
        let again = restarted(store);
        let applied = again.applied().expect("loads").expect("a block");
        assert!(applied.state == h.state, "reopened at block {b}");
        // Half the time go on with the restarted store: its first fold
        // step reads the frozen log back.
        if restart && b % 2 == 1 {
            *store = again;
        }
    }
    written
}

/// Six funded keys, their harness one block in, and a store that folds
/// every `fold_rows` logged rows one row per step, with its first commit
/// (which writes every row) made.
fn fold_setup(fold_rows: u64) -> (Vec<SecretKey>, Harness, ChainStore, super::Committed) {
    let keys: Vec<SecretKey> = (1..=6).map(key).collect();
    let balances: Vec<(&SecretKey, u64)> = keys.iter().map(|k| (k, 1_000)).collect();
    let mut h = Harness::new("fold", Params::DEV, &balances);
    h.advance(1);
    let mut store = ChainStore::in_memory()
        .expect("db")
        .with_fold_rows(fold_rows);
    store.fold_slice_min = 1;
    let first = store
        .commit(&block(&h, vec![]), None, &h.state)
        .expect("commit");
    (keys, h, store, first)
}

#[test]
fn a_fold_is_spread_over_commits_a_key_range_each_and_survives_restarts() {
    let (keys, mut h, mut store, first) = fold_setup(30);
    assert!(first.full);
    // Ten blocks log 30 rows: the tenth freezes them (7 distinct rows: the
    // globals and six accounts) and folds the first.
    let written = ring(&mut store, &mut h, &keys, 10, true);
    assert!(written[..9].iter().all(|w| w.folded == 0));
    assert_eq!(written[9].folded, 1);
    assert!(!written[9].fold_finished);
    // One row a commit until the last, which deletes the frozen entries
    // and leaves the six logged since.
    let written = ring(&mut store, &mut h, &keys, 6, true);
    assert!(written.iter().all(|w| w.folded == 1));
    assert_eq!(
        written.iter().map(|w| w.fold_finished).collect::<Vec<_>>(),
        [false, false, false, false, false, true]
    );
    assert_eq!(log_entries(&store), 6);
    // Nothing more to fold until the next log fills up.
    let written = ring(&mut store, &mut h, &keys, 3, true);
    assert!(written.iter().all(|w| w.folded == 0));
}

#[test]
fn a_fold_finishes_at_once_when_the_next_log_fills_up_first() {
    let (keys, mut h, mut store, _) = fold_setup(6);
    let written = ring(&mut store, &mut h, &keys, 4, true);
    let folded: Vec<u64> = written.iter().map(|w| w.folded).collect();
    let finished: Vec<bool> = written.iter().map(|w| w.fold_finished).collect();
    // The second block freezes the log: 6 rows, 4 distinct (the globals
    // and the first three keys of the ring), and folds one; the third
    // folds one more; at the fourth the next log holds 6 rows too, so the
    // frozen one's last two go at once.
    assert_eq!(folded, [0, 1, 1, 2], "{finished:?}");
    assert!(finished[3]);
    assert!(!finished[..3].iter().any(|f| *f));
}

#[test]
fn a_frozen_log_is_read_back_over_commits_before_it_folds() {
    let (keys, mut h, mut store, _) = fold_setup(30);
    // One logged block (3 rows) read back a commit.
    store.fold_load_rows = 3;
    let written = ring(&mut store, &mut h, &keys, 21, false);
    let folded: Vec<u64> = written.iter().map(|w| w.folded).collect();
    // The tenth block freezes 10 logged blocks, read back one a commit:
    // the last read (the nineteenth) folds the first row. At the
    // twentieth the next log holds 30 rows: the other 6 go at once.
    let mut expected = vec![0; 21];
    expected[18] = 1;
    expected[19] = 6;
    assert_eq!(folded, expected);
    assert!(written[19].fold_finished);
    assert_eq!(log_entries(&store), 11);
}
