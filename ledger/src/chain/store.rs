//! Durable chain state in redb: each finalized block, its finalization
//! certificate (when consensus produced one for it), the state after it and
//! the last applied height, written in one transaction per block.

use super::block::Block;
use crate::State;
use commonware_codec::{Encode as _, Read as _};
use redb::{ReadableDatabase as _, TableDefinition};
use std::path::Path;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

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
        tx.open_table(META).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(ChainStore { db: db.into() })
    }

    /// The last applied block and state, if any block was ever applied.
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
        let state = meta
            .get("state")
            .map_err(db_err)?
            .ok_or(StoreError::Corrupt("missing state"))?;
        let state = State::decode(state.value()).map_err(|_| StoreError::Corrupt("state"))?;
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
    /// there or none.
    pub fn commit(
        &self,
        block: &Block,
        certificate: Option<&[u8]>,
        state: &State,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(db_err)?;
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(db_err)?;
            blocks
                .insert(block.height, block.encode().as_ref())
                .map_err(db_err)?;
            if let Some(certificate) = certificate {
                let mut certs = tx.open_table(CERTS).map_err(db_err)?;
                certs.insert(block.height, certificate).map_err(db_err)?;
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert("height", block.height.to_be_bytes().as_slice())
                .map_err(db_err)?;
            meta.insert("state", state.encode().as_slice())
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
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
