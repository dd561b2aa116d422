//! Where recent finalized transactions are: id → height, for the query
//! API's transaction status (what `bonus deploy` and every client wait
//! on).
//!
//! It holds the newest [`FINALIZED_TXS_MAX`] ids and forgets the oldest
//! first, so a transaction finalized a moment ago is always found (a
//! cleared map would forget it along with the old ones, and a client
//! waiting on it would be told it was dropped). It lives in memory and is
//! refilled from the stored blocks when the validator opens, so a restart
//! does not forget what was just finalized either. Older transactions are
//! still in their blocks; only this shortcut to them is bounded.

use super::block::Block;
use super::store::{ChainStore, StoreError};
use std::collections::{HashMap, VecDeque};

/// Finalized transaction ids remembered (about 80 MB at the bound).
pub(crate) const FINALIZED_TXS_MAX: usize = 1 << 20;

/// Blocks read back at open, at most: on an idle network most blocks are
/// empty, and opening must stay quick however long the chain is. A full
/// index (1 M ids) takes under a second to refill (`chain-open` in
/// bench/README.md), 4 096 empty blocks a few milliseconds.
const REFILL_BLOCKS_MAX: u64 = 4096;

/// The index: a map and the order its ids came in.
pub(crate) struct TxIndex {
    heights: HashMap<[u8; 32], u64>,
    order: VecDeque<[u8; 32]>,
    max: usize,
}

impl TxIndex {
    pub(crate) fn new(max: usize) -> TxIndex {
        TxIndex {
            heights: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// The index of the stored blocks up to `height`, newest first, up to
    /// the bound (in ids, and in blocks read).
    pub(crate) fn refill(store: &ChainStore, height: u64, max: usize) -> Result<Self, StoreError> {
        // Ids only, newest block first: a block's transactions take ~6×
        // the memory of their ids.
        let mut newest_first: Vec<(u64, Vec<[u8; 32]>)> = Vec::new();
        let mut ids = 0;
        let oldest = height.saturating_sub(REFILL_BLOCKS_MAX - 1).max(1);
        for h in (oldest..=height).rev() {
            if ids >= max {
                break;
            }
            let Some(block) = store.block(h)? else {
                break;
            };
            ids += block.txs.len();
            newest_first.push((h, block.txs.iter().map(|tx| tx.id()).collect()));
        }
        let mut index = TxIndex::new(max);
        index.heights.reserve(ids.min(max));
        index.order.reserve(ids.min(max));
        for (h, block_ids) in newest_first.into_iter().rev() {
            index.insert(h, block_ids);
        }
        Ok(index)
    }

    /// Records a finalized block's transactions, forgetting the oldest
    /// beyond the bound.
    pub(crate) fn insert_block(&mut self, block: &Block) {
        self.insert(block.height, block.txs.iter().map(|tx| tx.id()));
    }

    fn insert(&mut self, height: u64, ids: impl IntoIterator<Item = [u8; 32]>) {
        for id in ids {
            if self.heights.insert(id, height).is_none() {
                self.order.push_back(id);
            }
        }
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.heights.remove(&old);
            }
        }
    }

    pub(crate) fn get(&self, id: &[u8; 32]) -> Option<u64> {
        self.heights.get(id).copied()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heights.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChainId;
    use crate::tx::{SignedTx, TxBody};
    use bonus_ids::SecretKey;

    fn block(height: u64, txs: usize) -> Block {
        let key = SecretKey::from_seed([7; 32]);
        let txs = (0..txs as u64)
            .map(|i| {
                let body = TxBody::Transfer {
                    to: key.public(),
                    amount: 1,
                };
                SignedTx::sign(&key, &ChainId([1; 32]), height * 100 + i, body)
            })
            .collect();
        Block {
            parent: Block::genesis([0; 32]).parent,
            height,
            time_ms: height,
            state_root: [0; 32],
            txs,
        }
    }

    #[test]
    fn the_oldest_are_forgotten_first_and_the_newest_never() {
        let mut index = TxIndex::new(3);
        let (first, second) = (block(1, 2), block(2, 2));
        index.insert_block(&first);
        index.insert_block(&second);
        assert_eq!(index.len(), 3);
        assert_eq!(index.get(&first.txs[0].id()), None);
        assert_eq!(index.get(&first.txs[1].id()), Some(1));
        for tx in &second.txs {
            assert_eq!(index.get(&tx.id()), Some(2));
        }
    }

    #[test]
    fn a_refill_reads_the_newest_blocks_back() {
        let store = ChainStore::in_memory().expect("db");
        let spec = crate::GenesisSpec {
            balances: vec![],
            validators: vec![],
        };
        let state =
            crate::State::genesis(ChainId([1; 32]), crate::Params::DEV, &spec).expect("genesis");
        let blocks: Vec<Block> = (1..=3).map(|h| block(h, 2)).collect();
        for b in &blocks {
            store.commit(b, None, &state).expect("commit");
        }
        let index = TxIndex::refill(&store, 3, 4).expect("refill");
        assert_eq!(index.len(), 4);
        assert_eq!(index.get(&blocks[0].txs[1].id()), None);
        assert_eq!(index.get(&blocks[1].txs[0].id()), Some(2));
        assert_eq!(index.get(&blocks[2].txs[1].id()), Some(3));
    }
}
