//! Durable chain state in redb: each finalized block, its finalization
//! certificate (when consensus produced one for it), the state after it and
//! the last applied height, written in one transaction per block.
//!
//! The state is kept as rows (`state_rows`, keyed by row key; see
//! `State::rows`): a block writes only the rows it changed, so a commit
//! costs what the block touched. The state root is stored beside the
//! height; reopening reloads every row, recomputes the root and refuses a
//! store whose rows do not match it.

use super::block::Block;
use crate::State;
use commonware_codec::{Encode as _, Read as _};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use std::path::Path;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const STATE_ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_rows");

/// The layout this code writes: the state as rows.
const FORMAT: u8 = 2;

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
    db: std::sync::Arc<redb::Database>,
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
                None => {
                    meta.insert("format", [FORMAT].as_slice()).map_err(db_err)?;
                }
                Some([FORMAT]) => {}
                Some(_) => return Err(StoreError::Corrupt("unknown format")),
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(ChainStore { db: db.into() })
    }

    /// The last applied block and state, if any block was ever applied.
    /// Loads every row (O(state)) and checks they give the stored root.
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
        let table = tx.open_table(STATE_ROWS).map_err(db_err)?;
        let mut rows = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (key, value) = row.map_err(db_err)?;
            rows.push((key.value().to_vec(), value.value().to_vec()));
        }
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
    /// the new height in one transaction: after a crash either all of it is
    /// there or none. Only the rows the block changed are written when the
    /// store holds the state they apply to (the parent's); otherwise every
    /// row is rewritten.
    pub fn commit(
        &self,
        block: &Block,
        certificate: Option<&[u8]>,
        state: &State,
    ) -> Result<Committed, StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(db_err)?;
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
                    let mut rows = tx.open_table(STATE_ROWS).map_err(db_err)?;
                    for row in &changes.rows {
                        match &row.value {
                            Some(value) => {
                                rows.insert(row.key.as_slice(), value.as_slice())
                                    .map_err(db_err)?;
                                committed.bytes += (row.key.len() + value.len()) as u64;
                            }
                            None => {
                                rows.remove(row.key.as_slice()).map_err(db_err)?;
                                committed.bytes += row.key.len() as u64;
                            }
                        }
                        committed.rows += 1;
                    }
                }
                _ => {
                    tx.delete_table(STATE_ROWS).map_err(db_err)?;
                    let mut rows = tx.open_table(STATE_ROWS).map_err(db_err)?;
                    for (key, value) in state.rows() {
                        rows.insert(key.as_slice(), value.as_slice())
                            .map_err(db_err)?;
                        committed.bytes += (key.len() + value.len()) as u64;
                        committed.rows += 1;
                    }
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

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
