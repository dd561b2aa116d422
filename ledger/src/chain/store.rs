//! Durable chain state in redb: each finalized block, its finalization
//! certificate (when consensus produced one for it), the state after it and
//! the last applied height, written in one transaction per block.
//!
//! The state is kept as rows (`state_rows`, keyed by row key; see
//! `State::rows`) plus a log of the rows each block changed since
//! (`state_log`, keyed by height). A block appends its change set to the
//! log as one value, so a commit costs what the block touched whatever the
//! size of the state: written into the row table directly, each of a
//! block's ~1 000 random keys would dirty its own page of a large table.
//! Once the log holds [`FOLD_ROWS`] rows it is frozen and folded into the
//! row table in key order, where many rows share each page. Reading the
//! frozen log back and folding it both take one step per commit (a
//! [`FOLD_LOAD_STEPS`]th of the log, then one of [`FOLD_SLICES`] key
//! ranges), so no commit stalls the validator for the whole fold; logging
//! goes on meanwhile.
//! The state root is stored beside the height; reopening reloads every row,
//! replays the whole log (a row already folded gets the same value again),
//! recomputes the root and refuses a store whose rows do not match it.

use super::block::Block;
use crate::State;
use crate::codec::{Reader, Writer};
use crate::state::RowChange;
use commonware_codec::{Encode as _, Read as _};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const STATE_ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_rows");
const STATE_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("state_log");

/// The layout this code writes: the state as rows and a log of change sets.
const FORMAT: u8 = 3;
/// The layout before the log (rows only): an empty log, so it opens as is.
const FORMAT_ROWS_ONLY: u8 = 2;

/// Rows the log may hold before it is folded into the row table (about
/// 520 blocks of 1 000 transfers, ~55 MB of log). Larger folds share more
/// pages per row: a fold into a table of 1 M rows dirties each of its
/// ~20 000 leaf pages about once, not once per row. But reopening replays
/// more (`block-apply`: folding every 131 072 rows made the amortized
/// commit 1.4x slower).
pub const FOLD_ROWS: u64 = 1 << 19;

/// Commits a frozen log is folded over, one key range each: a whole fold
/// in one commit took ~1 s at 1 M accounts (`block-apply`), a stall no
/// validator should take in one go. Far fewer than the ~520 blocks that
/// fill the next [`FOLD_ROWS`], so a fold ends long before the next one.
pub const FOLD_SLICES: usize = 128;

/// Rows below which a frozen log is folded in one commit.
const FOLD_SLICE_MIN: usize = 4_096;

/// Commits a frozen log is read back over (into memory, merged by key)
/// before its fold starts: reading all of it in one commit took ~0.5 s at
/// 1 M accounts.
pub const FOLD_LOAD_STEPS: u64 = 32;

/// Why the chain store failed. Any of these stops the validator: it must
/// never vote on a state it cannot persist.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb failed.
    #[error("ledger database: {0}")]
    Db(String),
    /// Bytes in the database do not decode.
    #[error("ledger database is corrupt: {0}")]
    Corrupt(&'static str),
    /// The stored rows do not give the stored state root.
    #[error(
        "ledger database is corrupt: the state rows at height {height} do not match its state root; delete the ledger data directory and let the validator resync"
    )]
    StateRootMismatch {
        /// The last applied height.
        height: u64,
    },
    /// A database written by an older version (the whole state in one value).
    #[error(
        "ledger database is in an older format (the whole state in one value); delete the ledger data directory (chain.redb) and let the validator resync from its peers"
    )]
    OldFormat,
}

/// What one commit wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// State rows written or deleted.
    pub rows: u64,
    /// Bytes handed to redb: the block, its certificate, the rows' keys
    /// and values (its own page overhead not counted).
    pub bytes: u64,
    /// Whether every row was rewritten (the store did not hold the state
    /// the block's changes apply to, e.g. the first commit).
    pub full: bool,
    /// Rows this commit folded from a frozen log into the row table (0
    /// unless a fold is under way; counted after merging, so a row changed
    /// by several logged blocks counts once).
    pub folded: u64,
    /// Whether this commit folded the last rows of a frozen log (and
    /// deleted its entries).
    pub fold_finished: bool,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// What the store holds at open: the last applied block and the state after it.
pub struct Applied {
    /// Height of the last applied block.
    pub height: u64,
    /// That block.
    pub block: Block,
    /// The state after it.
    pub state: State,
}

/// The redb file (or an in-memory database in simulations). Clones share
/// the database, so a simulated restart reopens what was written.
#[derive(Clone)]
pub struct ChainStore {
    db: Arc<redb::Database>,
    fold_rows: u64,
    /// Logged rows one commit reads back into a frozen log.
    fold_load_rows: u64,
    fold_slice_min: usize,
    /// The frozen log being folded, merged in key order: read from the log
    /// once, when the fold starts (again after a restart), not once per
    /// slice. Where the fold has reached is in the database.
    frozen: Arc<Mutex<Option<Frozen>>>,
}

/// A frozen log: its entries up to `upto` as far as read back
/// (`read_through`), later changes of a key replacing earlier ones.
struct Frozen {
    upto: u64,
    read_through: Option<u64>,
    rows: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl ChainStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<ChainStore, StoreError> {
        let db = redb::Database::create(path).map_err(db_err)?;
        Self::init(db)
    }

    /// An in-memory database (deterministic simulations).
    pub fn in_memory() -> Result<ChainStore, StoreError> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err)?;
        Self::init(db)
    }

    fn init(db: redb::Database) -> Result<ChainStore, StoreError> {
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(BLOCKS).map_err(db_err)?;
        tx.open_table(CERTS).map_err(db_err)?;
        tx.open_table(STATE_ROWS).map_err(db_err)?;
        tx.open_table(STATE_LOG).map_err(db_err)?;
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            if meta.get("state").map_err(db_err)?.is_some() {
                return Err(StoreError::OldFormat);
            }
            let format = meta
                .get("format")
                .map_err(db_err)?
                .map(|v| v.value().to_vec());
            match format.as_deref() {
                None | Some([FORMAT_ROWS_ONLY]) => {
                    meta.insert("format", [FORMAT].as_slice()).map_err(db_err)?;
                }
                Some([FORMAT]) => {}
                Some(_) => return Err(StoreError::Corrupt("unknown format")),
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(ChainStore {
            db: db.into(),
            fold_rows: FOLD_ROWS,
            fold_load_rows: fold_load_rows(FOLD_ROWS),
            fold_slice_min: FOLD_SLICE_MIN,
            frozen: Arc::default(),
        })
    }

    /// Folds the log into the row table once it holds `rows` rows instead
    /// of [`FOLD_ROWS`] (1: every block writes its rows into the table).
    pub fn with_fold_rows(mut self, rows: u64) -> ChainStore {
        self.fold_rows = rows.max(1);
        self.fold_load_rows = fold_load_rows(self.fold_rows);
        self
    }

    /// The last applied block and state, if any block was ever applied.
    /// Loads every row (O(state)), replays the log over them and checks
    /// they give the stored root.
    pub fn applied(&self) -> Result<Option<Applied>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        let Some(height) = meta.get("height").map_err(db_err)? else {
            return Ok(None);
        };
        let height = u64::from_be_bytes(
            height
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("height"))?,
        );
        let root: [u8; 32] = meta
            .get("root")
            .map_err(db_err)?
            .ok_or(StoreError::Corrupt("missing state root"))?
            .value()
            .try_into()
            .map_err(|_| StoreError::Corrupt("state root"))?;
        let log = tx.open_table(STATE_LOG).map_err(db_err)?;
        let mut logged = std::collections::BTreeMap::new();
        for entry in log.iter().map_err(db_err)? {
            let (_, changes) = entry.map_err(db_err)?;
            read_changes(changes.value(), &mut logged)?;
        }
        let table = tx.open_table(STATE_ROWS).map_err(db_err)?;
        let mut stored = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (key, value) = row.map_err(db_err)?;
            stored.push((key.value().to_vec(), value.value().to_vec()));
        }
        let rows = replay(stored, logged);
        let state = State::from_rows(rows).map_err(|_| StoreError::Corrupt("state rows"))?;
        if state.root() != root {
            return Err(StoreError::StateRootMismatch { height });
        }
        let block = self
            .block(height)?
            .ok_or(StoreError::Corrupt("missing last block"))?;
        Ok(Some(Applied {
            height,
            block,
            state,
        }))
    }

    /// Writes a finalized block, its certificate, the state after it and
    /// the new height in one transaction, on disk when this returns: after
    /// a crash either all of it is there or none. Only the rows the block
    /// changed are written when the store holds the state they apply to
    /// (the parent's); otherwise every row is rewritten.
    pub fn commit(
        &self,
        block: &Block,
        certificate: Option<&[u8]>,
        state: &State,
    ) -> Result<Committed, StoreError> {
        self.write(block, certificate, state, redb::Durability::Immediate)
    }

    /// [`ChainStore::commit`] without waiting for the disk: the commit is
    /// visible at once and durable with the next [`ChainStore::sync`] (or
    /// durable commit). A crash before that reopens the store at an earlier
    /// whole commit, so the caller must be able to redo what follows it
    /// (the validator acknowledges blocks to marshal only once synced).
    pub fn commit_deferred(
        &self,
        block: &Block,
        certificate: Option<&[u8]>,
        state: &State,
    ) -> Result<Committed, StoreError> {
        self.write(block, certificate, state, redb::Durability::None)
    }

    /// Makes every commit so far durable (one fsync).
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    fn write(
        &self,
        block: &Block,
        certificate: Option<&[u8]>,
        state: &State,
        durability: redb::Durability,
    ) -> Result<Committed, StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(durability).map_err(db_err)?;
        let mut committed = Committed::default();
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(db_err)?;
            let encoded = block.encode();
            blocks
                .insert(block.height, encoded.as_ref())
                .map_err(db_err)?;
            committed.bytes += encoded.len() as u64;
            if let Some(certificate) = certificate {
                let mut certs = tx.open_table(CERTS).map_err(db_err)?;
                certs.insert(block.height, certificate).map_err(db_err)?;
                committed.bytes += certificate.len() as u64;
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let stored_root = meta
                .get("root")
                .map_err(db_err)?
                .map(|v| v.value().to_vec());
            let root = state.root();
            match state.changes() {
                Some(changes) if stored_root.as_deref() == Some(&changes.base_root[..]) => {
                    let encoded = write_changes(&changes.rows);
                    let mut log = tx.open_table(STATE_LOG).map_err(db_err)?;
                    log.insert(block.height, encoded.as_slice())
                        .map_err(db_err)?;
                    committed.bytes += encoded.len() as u64;
                    committed.rows = changes.rows.len() as u64;
                    let log_rows = read_u64(&meta, "log_rows")? + committed.rows;
                    meta.insert("log_rows", log_rows.to_be_bytes().as_slice())
                        .map_err(db_err)?;
                    let folded = self.fold_step(&tx, &mut meta, &mut log, block.height)?;
                    committed.folded = folded.rows;
                    committed.bytes += folded.bytes;
                    committed.fold_finished = folded.finished;
                }
                _ => {
                    *self.lock_frozen() = None;
                    meta.remove("fold_upto").map_err(db_err)?;
                    meta.remove("fold_after").map_err(db_err)?;
                    tx.delete_table(STATE_LOG).map_err(db_err)?;
                    tx.open_table(STATE_LOG).map_err(db_err)?;
                    tx.delete_table(STATE_ROWS).map_err(db_err)?;
                    let mut rows = tx.open_table(STATE_ROWS).map_err(db_err)?;
                    for (key, value) in state.rows() {
                        rows.insert(key.as_slice(), value.as_slice())
                            .map_err(db_err)?;
                        committed.bytes += (key.len() + value.len()) as u64;
                        committed.rows += 1;
                    }
                    meta.insert("log_rows", 0u64.to_be_bytes().as_slice())
                        .map_err(db_err)?;
                    committed.full = true;
                }
            }
            meta.insert("height", block.height.to_be_bytes().as_slice())
                .map_err(db_err)?;
            meta.insert("root", root.as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(committed)
    }

    /// Freezes the log once it holds `fold_rows` rows (none frozen yet),
    /// then reads the next part of the frozen log into memory until all of
    /// it is, and then folds its next key range into the row table; the
    /// last range deletes the frozen entries. Everything it
    /// writes is in the commit's transaction, where the fold has reached
    /// included.
    fn fold_step(
        &self,
        tx: &redb::WriteTransaction,
        meta: &mut redb::Table<'_, &str, &[u8]>,
        log: &mut redb::Table<'_, u64, &[u8]>,
        height: u64,
    ) -> Result<Folded, StoreError> {
        let mut log_rows = read_u64(meta, "log_rows")?;
        let mut upto = read_opt_u64(meta, "fold_upto")?;
        if upto.is_none() && log_rows >= self.fold_rows {
            upto = Some(height);
            meta.insert("fold_upto", height.to_be_bytes().as_slice())
                .map_err(db_err)?;
            meta.remove("fold_after").map_err(db_err)?;
            // The frozen rows leave the count: it measures the next log.
            log_rows = 0;
            meta.insert("log_rows", 0u64.to_be_bytes().as_slice())
                .map_err(db_err)?;
        }
        let Some(upto) = upto else {
            return Ok(Folded::default());
        };
        // The next log filled up first (blocks far larger than usual):
        // the rest of this fold goes now, so frozen logs never pile up.
        let hurry = log_rows >= self.fold_rows;
        let mut frozen = self.lock_frozen();
        let frozen = match &mut *frozen {
            Some(held) if held.upto == upto => held,
            slot => slot.insert(Frozen {
                upto,
                read_through: None,
                rows: BTreeMap::new(),
            }),
        };
        if frozen.read_through != Some(upto) {
            frozen.read(log, if hurry { u64::MAX } else { self.fold_load_rows })?;
            if frozen.read_through != Some(upto) {
                return Ok(Folded::default());
            }
        }
        let after = meta
            .get("fold_after")
            .map_err(db_err)?
            .map(|v| v.value().to_vec());
        let from = match &after {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Unbounded,
        };
        let limit = if hurry {
            usize::MAX
        } else {
            frozen
                .rows
                .len()
                .div_ceil(FOLD_SLICES)
                .max(self.fold_slice_min)
        };
        let mut rows = tx.open_table(STATE_ROWS).map_err(db_err)?;
        let mut folded = Folded::default();
        let mut last = None;
        for (key, value) in frozen
            .rows
            .range::<[u8], _>((from, Bound::Unbounded))
            .take(limit)
        {
            folded.rows += 1;
            folded.bytes += key.len() as u64;
            match value {
                Some(value) => {
                    rows.insert(key.as_slice(), value.as_slice())
                        .map_err(db_err)?;
                    folded.bytes += value.len() as u64;
                }
                None => {
                    rows.remove(key.as_slice()).map_err(db_err)?;
                }
            }
            last = Some(key);
        }
        let more = last.is_some_and(|key| {
            frozen
                .rows
                .range::<[u8], _>((Bound::Excluded(key.as_slice()), Bound::Unbounded))
                .next()
                .is_some()
        });
        match last {
            Some(key) if more => {
                meta.insert("fold_after", key.as_slice()).map_err(db_err)?;
            }
            _ => {
                log.retain_in(..=upto, |_, _| false).map_err(db_err)?;
                meta.remove("fold_upto").map_err(db_err)?;
                meta.remove("fold_after").map_err(db_err)?;
                folded.finished = true;
            }
        }
        Ok(folded)
    }

    fn lock_frozen(&self) -> std::sync::MutexGuard<'_, Option<Frozen>> {
        self.frozen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A finalized block by height.
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let blocks = tx.open_table(BLOCKS).map_err(db_err)?;
        match blocks.get(height).map_err(db_err)? {
            None => Ok(None),
            Some(bytes) => {
                let mut buf = bytes::Bytes::copy_from_slice(bytes.value());
                Block::read_cfg(&mut buf, &())
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt("block"))
            }
        }
    }

    /// The encoded finalization certificate of a block, if consensus
    /// certified that block itself (an ancestor finalized implicitly by a
    /// descendant's certificate has none of its own).
    pub fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let certs = tx.open_table(CERTS).map_err(db_err)?;
        Ok(certs
            .get(height)
            .map_err(db_err)?
            .map(|v| v.value().to_vec()))
    }
}

/// The rows after the log: `stored` (in key order, as the row table
/// holds them) with each logged change applied, a logged `None` deleting.
fn replay(
    stored: Vec<(Vec<u8>, Vec<u8>)>,
    logged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rows = Vec::with_capacity(stored.len() + logged.len());
    let mut logged = logged.into_iter().peekable();
    for (key, value) in stored {
        // Both are in key order: the log's rows before this one are new,
        // and its row for this key (if any) replaces it.
        while let Some((new, value)) = logged.next_if(|(k, _)| *k < key) {
            rows.extend(value.map(|value| (new, value)));
        }
        match logged.next_if(|(k, _)| *k == key) {
            Some((key, Some(value))) => rows.push((key, value)),
            Some((_, None)) => {}
            None => rows.push((key, value)),
        }
    }
    rows.extend(logged.filter_map(|(key, value)| Some((key, value?))));
    rows
}

/// Logged rows one commit reads back: a [`FOLD_LOAD_STEPS`]th of a full
/// log, and a small log (fewer than [`FOLD_SLICE_MIN`]) all at once.
fn fold_load_rows(fold_rows: u64) -> u64 {
    fold_rows
        .div_ceil(FOLD_LOAD_STEPS)
        .max(FOLD_SLICE_MIN as u64)
}

/// A `u64` in the meta table (0 when absent).
fn read_u64(meta: &redb::Table<'_, &str, &[u8]>, name: &str) -> Result<u64, StoreError> {
    Ok(read_opt_u64(meta, name)?.unwrap_or(0))
}

/// A `u64` in the meta table, if present.
fn read_opt_u64(
    meta: &redb::Table<'_, &str, &[u8]>,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    match meta.get(name).map_err(db_err)? {
        None => Ok(None),
        Some(value) => Ok(Some(u64::from_be_bytes(
            value
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("meta counter"))?,
        ))),
    }
}

/// One block's change set as a log value: a row count, then per row its
/// key and either its new value or nothing (deleted).
fn write_changes(rows: &[RowChange]) -> Vec<u8> {
    let bytes: usize = rows
        .iter()
        .map(|row| row.key.len() + row.value.as_ref().map_or(0, Vec::len) + 8)
        .sum();
    let mut w = Writer::with_capacity(bytes + 8);
    w.len(rows.len());
    for row in rows {
        w.blob(&row.key);
        match &row.value {
            Some(value) => {
                w.u8(1);
                w.blob(value);
            }
            None => w.u8(0),
        }
    }
    w.0
}

/// Reads a log value into `into`, a later change of a key replacing an
/// earlier one; returns how many rows it held.
fn read_changes(
    bytes: &[u8],
    into: &mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Result<u64, StoreError> {
    let corrupt = |_| StoreError::Corrupt("state log");
    let mut r = Reader(bytes);
    let n = r.count(usize::MAX, 2).map_err(corrupt)?;
    for _ in 0..n {
        let key = r.blob(usize::MAX).map_err(corrupt)?;
        let value = match r.u8().map_err(corrupt)? {
            0 => None,
            1 => Some(r.blob(usize::MAX).map_err(corrupt)?),
            _ => return Err(StoreError::Corrupt("state log")),
        };
        into.insert(key, value);
    }
    r.finish().map_err(corrupt)?;
    Ok(n as u64)
}

/// What one fold step wrote into the row table.
#[derive(Default)]
struct Folded {
    /// Rows written or deleted.
    rows: u64,
    /// Their keys and values.
    bytes: u64,
    /// Whether it was the fold's last step.
    finished: bool,
}

impl Frozen {
    /// Reads the next logged entries up to `upto`, at least `rows` rows of
    /// them unless fewer are left.
    fn read(&mut self, log: &redb::Table<'_, u64, &[u8]>, rows: u64) -> Result<(), StoreError> {
        let from = match self.read_through {
            Some(height) => Bound::Excluded(height),
            None => Bound::Unbounded,
        };
        let mut read = 0;
        // All of it, unless the loop stops early.
        let mut through = self.upto;
        for entry in log
            .range::<u64>((from, Bound::Included(self.upto)))
            .map_err(db_err)?
        {
            let (height, changes) = entry.map_err(db_err)?;
            if read >= rows {
                through = height.value().saturating_sub(1);
                break;
            }
            read += read_changes(changes.value(), &mut self.rows)?;
        }
        self.read_through = Some(through);
        Ok(())
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
