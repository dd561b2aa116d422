//! The ledger's block: what consensus orders (by its SHA-256 digest) and
//! marshal disseminates, stores and backfills.

use crate::limits::{BLOCK_BYTES_MAX, TX_BYTES_MAX, TXS_PER_BLOCK_MAX};
use crate::params::BlockCtx;
use crate::tx::SignedTx;
use bytes::BufMut;
use commonware_codec::Buf;
use commonware_codec::{EncodeSize, Error as CodecError, Read, ReadExt as _, Write, varint::UInt};
use commonware_consensus::{Heightable, types::Height};
use commonware_cryptography::{Digestible, Hasher as _, Sha256, sha256};

/// The digest consensus orders.
pub type Digest = sha256::Digest;

/// A block: its parent, height, timestamp, the transactions it applies in
/// order and the state root after applying them.
///
/// Invariant (checked by every validator before it votes): each transaction
/// applies cleanly to the parent's state, and `state_root` is the root that
/// results. A block that breaks it never gets an honest vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Parent's digest.
    pub parent: Digest,
    /// Height (genesis is 0).
    pub height: u64,
    /// Proposer's clock, ms since the Unix epoch: strictly above the
    /// parent's, and at most `CLOCK_DRIFT_MAX_MS` ahead of a verifier's
    /// clock when it votes. Periods and unbonding are measured in it.
    pub time_ms: u64,
    /// State root after this block.
    pub state_root: [u8; 32],
    /// Transactions, in execution order.
    pub txs: Vec<SignedTx>,
}

impl Block {
    /// The genesis block: no parent, no transactions, the genesis state root.
    pub fn genesis(state_root: [u8; 32]) -> Block {
        Block {
            parent: Sha256::hash(&[b"bonus/ledger/genesis"]),
            height: 0,
            time_ms: 0,
            state_root,
            txs: Vec::new(),
        }
    }

    /// Where this block's transactions apply.
    pub fn ctx(&self) -> BlockCtx {
        BlockCtx {
            height: self.height,
            time_ms: self.time_ms,
        }
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        UInt(self.height).write(buf);
        UInt(self.time_ms).write(buf);
        buf.put_slice(&self.state_root);
        UInt(self.txs.len() as u32).write(buf);
        for tx in &self.txs {
            let bytes = tx.encode();
            UInt(bytes.len() as u32).write(buf);
            buf.put_slice(&bytes);
        }
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.parent.encode_size()
            + UInt(self.height).encode_size()
            + UInt(self.time_ms).encode_size()
            + 32
            + UInt(self.txs.len() as u32).encode_size()
            + self
                .txs
                .iter()
                .map(|tx| {
                    let len = tx.encode().len();
                    UInt(len as u32).encode_size() + len
                })
                .sum::<usize>()
    }
}

impl Read for Block {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height = UInt::<u64>::read(buf)?.0;
        let time_ms = UInt::<u64>::read(buf)?.0;
        if buf.remaining() < 32 {
            return Err(CodecError::EndOfBuffer);
        }
        let mut state_root = [0; 32];
        buf.copy_to_slice(&mut state_root);
        let count = UInt::<u32>::read(buf)?.0 as usize;
        if count > TXS_PER_BLOCK_MAX {
            return Err(CodecError::Invalid(
                "ledger::Block",
                "too many transactions",
            ));
        }
        let mut txs = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let len = UInt::<u32>::read(buf)?.0 as usize;
            if len > TX_BYTES_MAX || len > buf.remaining() {
                return Err(CodecError::Invalid(
                    "ledger::Block",
                    "transaction too large",
                ));
            }
            let mut bytes = vec![0; len];
            buf.copy_to_slice(&mut bytes);
            let tx = SignedTx::decode(&bytes)
                .map_err(|_| CodecError::Invalid("ledger::Block", "malformed transaction"))?;
            txs.push(tx);
        }
        Ok(Block {
            parent,
            height,
            time_ms,
            state_root,
            txs,
        })
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        let mut bytes = Vec::with_capacity(self.encode_size());
        self.write(&mut bytes);
        Sha256::hash(&[&bytes])
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        Height::new(self.height)
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl commonware_consensus::BoundedBlock for Block {
    fn max_encode_size(_: &()) -> usize {
        BLOCK_BYTES_MAX
    }
}
