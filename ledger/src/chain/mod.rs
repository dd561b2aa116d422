//! The replicated chain: blocks of transactions ordered by commonware
//! simplex, disseminated and backfilled by commonware marshal, applied to
//! [`State`] strictly in height order and persisted in redb.
//!
//! Execution is speculative before finality and authoritative after it: a
//! proposer (and every verifier) applies a block's transactions to its
//! parent's state and checks the root the block commits to; only finalized
//! blocks, delivered in order by marshal, change the durable state.

pub mod block;
mod mempool;
pub mod store;
pub mod tcp;
mod txindex;
mod validator;

pub use block::{Block, Digest};
pub use store::{ChainStore, Committed, FOLD_ROWS, StoreError};
pub use validator::{
    Byzantine, Channels, Handles, NAMESPACE, Scheme, Timeouts, ValidatorConfig, consensus_key,
    consensus_public, max_message_size, namespace, start,
};

use crate::limits::{BLOCK_BYTES_MAX, MEMPOOL_MAX, TXS_PER_BLOCK_MAX};
use crate::tx::SignedTx;
use crate::{BlockCtx, DecodeError, State, TxError};
use bonus_ids::PublicKey;
use commonware_cryptography::{Digested, Digestible as _};
use futures::{Stream, StreamExt as _};
use mempool::Mempool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use txindex::TxIndex;

/// Messages per second each peer may send on each consensus channel. The
/// network sizes each channel's buffer from it (a burst per peer), so it
/// is a memory bound as much as a rate limit.
pub const CHANNEL_QUOTA: std::num::NonZeroU32 = commonware_utils::NZU32!(1_000);

/// Why a submitted transaction was not accepted into the mempool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The bytes are not a transaction.
    #[error("not a transaction: {0}")]
    Decode(#[from] DecodeError),
    /// The signature does not verify (forged, or signed for another network).
    #[error("bad signature from {0} (forged, or signed for another network's chain id)")]
    BadSignature(PublicKey),
    /// The nonce is too far ahead of the account's next one.
    #[error(
        "nonce {got} of {signer} is too far ahead (next is {next}); send the earlier ones first"
    )]
    NonceTooFar {
        /// Signer.
        signer: PublicKey,
        /// The transaction's nonce.
        got: u64,
        /// The account's next nonce.
        next: u64,
    },
    /// The signer cannot pay the fees of what it has waiting.
    #[error(
        "{signer} has {balance}, not enough for the fees of its waiting transactions ({needed}); fund the account first"
    )]
    CannotPayFees {
        /// Signer.
        signer: PublicKey,
        /// Its balance.
        balance: u64,
        /// Fees of its waiting transactions, this one included.
        needed: u128,
    },
    /// The nonce was already used by a finalized transaction.
    #[error("nonce {got} already used by {signer} (next is {next})")]
    StaleNonce {
        /// Signer.
        signer: PublicKey,
        /// The transaction's nonce.
        got: u64,
        /// The account's next nonce.
        next: u64,
    },
    /// The mempool is full; retry later.
    #[error("mempool full ({MEMPOOL_MAX} transactions); retry later")]
    Full,
}

/// What a transaction's status is, as far as this validator knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Waiting in this validator's mempool.
    Pending,
    /// Finalized at this height.
    Finalized(u64),
    /// Neither: never seen, dropped because it no longer applies, or
    /// finalized before the newest transactions the index holds.
    Unknown,
}

struct Inner {
    /// The state after the last applied (finalized) block.
    state: Arc<State>,
    height: u64,
    digest: Digest,
    /// States after blocks verified or proposed but not yet finalized,
    /// keyed by block digest (and the applied tip's).
    speculative: HashMap<Digest, (u64, Arc<State>)>,
    /// Waiting transactions.
    mempool: Mempool,
    /// Recent finalized transaction ids → height.
    finalized_txs: TxIndex,
    /// Ids of transactions whose signature this validator has checked:
    /// re-executing them (proposal, verification, finalization) skips the
    /// ed25519 verification, the dominant cost of a transaction.
    verified: std::collections::HashSet<[u8; 32]>,
}

/// Bound on remembered verified ids (cleared, then re-learned, beyond it).
const VERIFIED_MAX: usize = 1 << 20;

/// One validator's view of the chain: the applied state, speculative
/// states of unfinalized blocks, the mempool, and the durable store.
pub struct Chain {
    inner: Mutex<Inner>,
    store: ChainStore,
    genesis: Block,
    applied: tokio::sync::watch::Sender<u64>,
    rejected: std::sync::atomic::AtomicU64,
    gossip: Mutex<Option<futures::channel::mpsc::UnboundedSender<Vec<u8>>>>,
    /// When this validator proposed each of its unfinalized blocks.
    proposed: Mutex<HashMap<Digest, std::time::SystemTime>>,
    /// Proposal → finalization (applied here) of its own recent blocks.
    finality: Mutex<std::collections::VecDeque<std::time::Duration>>,
    /// Woken when a transaction enters the mempool.
    arrivals: tokio::sync::Notify,
}

/// Every this many blocks the whole mempool is swept (the signers of each
/// block are swept with it).
const MEMPOOL_SWEEP_BLOCKS: u64 = 16;

/// How many recent finality samples a validator keeps.
const FINALITY_SAMPLES: usize = 4096;

impl Chain {
    /// Opens the chain: resumes from the store's last applied block, or
    /// starts from `genesis_state`.
    pub fn open(store: ChainStore, genesis_state: State) -> Result<Arc<Chain>, StoreError> {
        let genesis = Block::genesis(genesis_state.root());
        let (mut state, height, digest) = match store.applied()? {
            Some(applied) => (applied.state, applied.height, applied.block.digest()),
            None => (genesis_state, 0, genesis.digest()),
        };
        // This chain folds what it finalizes into the state's base.
        state.detach();
        let finalized_txs = TxIndex::refill(&store, height, txindex::FINALIZED_TXS_MAX)?;
        let state = Arc::new(state);
        let mut speculative = HashMap::new();
        speculative.insert(digest, (height, state.clone()));
        let (applied, _) = tokio::sync::watch::channel(height);
        Ok(Arc::new(Chain {
            inner: Mutex::new(Inner {
                state,
                height,
                digest,
                speculative,
                mempool: Mempool::default(),
                finalized_txs,
                verified: Default::default(),
            }),
            store,
            genesis,
            applied,
            rejected: Default::default(),
            gossip: Mutex::new(None),
            proposed: Mutex::new(HashMap::new()),
            finality: Mutex::new(std::collections::VecDeque::new()),
            arrivals: tokio::sync::Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock already stopped the validator.
        self.inner.lock().expect("chain lock poisoned")
    }

    /// The genesis block (height 0) marshal starts from.
    pub fn genesis(&self) -> &Block {
        &self.genesis
    }

    /// Height of the last applied (finalized) block.
    pub fn height(&self) -> u64 {
        self.lock().height
    }

    /// Waits for height changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The state after the last applied block.
    pub fn state(&self) -> Arc<State> {
        self.lock().state.clone()
    }

    /// The last applied height and the state after it, read together.
    pub fn applied(&self) -> (u64, Arc<State>) {
        let inner = self.lock();
        (inner.height, inner.state.clone())
    }

    /// The durable store (blocks and certificates by height).
    pub fn store(&self) -> &ChainStore {
        &self.store
    }

    /// Accepts a client's transaction into the mempool after decoding it
    /// and checking its signature and nonce against the finalized state,
    /// and gossips it to the other validators.
    pub fn submit(&self, bytes: &[u8]) -> Result<[u8; 32], SubmitError> {
        self.submit_tx(SignedTx::decode(bytes)?)
    }

    /// Client transactions submitted at about the same time: each checked
    /// as by [`Chain::submit`], their signatures in one batch (much
    /// cheaper per signature than one check each); the result of each, in
    /// order. Each accepted one is gossiped.
    pub fn submit_many<'b>(
        &self,
        frames: impl IntoIterator<Item = &'b [u8]>,
    ) -> Vec<Result<[u8; 32], SubmitError>> {
        let frames: Vec<&[u8]> = frames.into_iter().collect();
        let decoded = frames
            .iter()
            .map(|bytes| SignedTx::decode(bytes).map_err(SubmitError::from))
            .collect();
        let results = self.accept_many(decoded);
        let gossip = self.gossip.lock().expect("gossip lock poisoned");
        if let Some(queue) = gossip.as_ref() {
            // Decoding accepts only the canonical encoding: the frame is it.
            for (result, bytes) in results.iter().zip(frames) {
                if result.is_ok() {
                    let _ = queue.unbounded_send(bytes.to_vec());
                }
            }
        }
        results
    }

    /// [`Chain::submit`] for a decoded transaction.
    pub fn submit_tx(&self, tx: SignedTx) -> Result<[u8; 32], SubmitError> {
        let bytes = tx.encode();
        let id = self.accept(tx)?;
        let gossip = self.gossip.lock().expect("gossip lock poisoned");
        if let Some(queue) = gossip.as_ref() {
            let _ = queue.unbounded_send(bytes);
        }
        Ok(id)
    }

    /// A transaction gossiped by a peer: checked like a client's, not
    /// gossiped again.
    pub fn submit_from_peer(&self, bytes: &[u8]) -> Result<[u8; 32], SubmitError> {
        self.accept(SignedTx::decode(bytes)?)
    }

    /// A batch of transactions gossiped by a peer, each checked like a
    /// client's (their signatures in one batch), none gossiped again.
    pub fn submit_batch_from_peer<'b>(
        &self,
        frames: impl IntoIterator<Item = &'b [u8]>,
    ) -> Vec<Result<[u8; 32], SubmitError>> {
        let decoded: Vec<Result<SignedTx, SubmitError>> = frames
            .into_iter()
            .map(|bytes| SignedTx::decode(bytes).map_err(SubmitError::from))
            .collect();
        self.accept_many(decoded)
    }

    /// The queue of transactions to gossip (one consumer: the validator).
    fn gossip_queue(&self) -> futures::channel::mpsc::UnboundedReceiver<Vec<u8>> {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        *self.gossip.lock().expect("gossip lock poisoned") = Some(sender);
        receiver
    }

    fn accept(&self, tx: SignedTx) -> Result<[u8; 32], SubmitError> {
        let mut results = self.accept_many(vec![Ok(tx)]);
        results.pop().expect("accept_many answers each transaction")
    }

    /// Admits each transaction that passes the cheap checks and then its
    /// signature; the result of each, in order.
    fn accept_many(
        &self,
        txs: Vec<Result<SignedTx, SubmitError>>,
    ) -> Vec<Result<[u8; 32], SubmitError>> {
        let (txs, chain_id) = {
            let inner = self.lock();
            let checked: Vec<Result<SignedTx, SubmitError>> = txs
                .into_iter()
                .map(|tx| {
                    let tx = tx?;
                    inner.mempool.check(&tx, &inner.state)?;
                    Ok(tx)
                })
                .collect();
            (checked, *inner.state.chain_id())
        };
        // Verified after the cheap checks and outside the lock: it is the
        // expensive part.
        let unchecked: Vec<&SignedTx> = txs.iter().filter_map(|tx| tx.as_ref().ok()).collect();
        let mut verdicts = SignedTx::verify_all(&unchecked, &chain_id).into_iter();
        let txs: Vec<Result<SignedTx, SubmitError>> = txs
            .into_iter()
            .map(|tx| {
                let tx = tx?;
                if verdicts.next() == Some(true) {
                    Ok(tx)
                } else {
                    Err(SubmitError::BadSignature(tx.signer))
                }
            })
            .collect();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut admitted = false;
        let results = txs
            .into_iter()
            .map(|tx| {
                let tx = tx?;
                let id = tx.id();
                inner.mempool.admit(tx, id, &inner.state, inner.height)?;
                if inner.verified.len() >= VERIFIED_MAX {
                    inner.verified.clear();
                }
                inner.verified.insert(id);
                admitted = true;
                Ok(id)
            })
            .collect();
        if admitted {
            self.arrivals.notify_waiters();
        }
        results
    }

    /// Where a transaction is.
    pub fn status(&self, id: &[u8; 32]) -> TxStatus {
        let inner = self.lock();
        if let Some(height) = inner.finalized_txs.get(id) {
            return TxStatus::Finalized(height);
        }
        if inner.mempool.contains(id) {
            return TxStatus::Pending;
        }
        TxStatus::Unknown
    }

    /// The nonce a new transaction from `signer` should use: after the
    /// finalized state and anything of theirs already waiting here.
    pub fn next_nonce(&self, signer: &PublicKey) -> u64 {
        let inner = self.lock();
        // Only a gapless run counts: a transaction after a gap never
        // applies, so building on it would wedge the signer.
        inner.mempool.next_nonce(signer, inner.state.nonce(signer))
    }

    /// Time from proposal to finalization of this validator's own recent
    /// blocks (the consensus latency, without waiting for inclusion).
    pub fn finality_samples(&self) -> Vec<std::time::Duration> {
        self.finality
            .lock()
            .expect("finality lock poisoned")
            .iter()
            .copied()
            .collect()
    }

    fn record_proposal(&self, digest: Digest, at: std::time::SystemTime) {
        let mut proposed = self.proposed.lock().expect("proposal lock poisoned");
        if proposed.len() > 1024 {
            proposed.clear();
        }
        proposed.insert(digest, at);
    }

    fn record_finalized(&self, digest: &Digest, at: std::time::SystemTime) {
        let proposed = self
            .proposed
            .lock()
            .expect("proposal lock poisoned")
            .remove(digest);
        if let Some(elapsed) = proposed.and_then(|p| at.duration_since(p).ok()) {
            let mut samples = self.finality.lock().expect("finality lock poisoned");
            if samples.len() == FINALITY_SAMPLES {
                samples.pop_front();
            }
            samples.push_back(elapsed);
        }
    }

    /// Proposals this validator refused to vote for (invalid, or stamped
    /// too far ahead of its clock).
    pub fn rejected_blocks(&self) -> u64 {
        self.rejected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waiting transactions.
    pub fn mempool_len(&self) -> usize {
        self.lock().mempool.len()
    }

    /// Builds a block on `parent` at `now_ms` (or just after the parent,
    /// if this clock is behind it): mempool transactions that apply
    /// cleanly to the parent's state, signers taking turns, within the
    /// block limits.
    fn build(
        &self,
        parent: &Digested<Block>,
        parent_state: &State,
        now_ms: u64,
    ) -> (Block, Arc<State>) {
        let ctx = BlockCtx {
            height: parent.inner().height + 1,
            time_ms: now_ms.max(parent_state.time_ms() + 1),
        };
        let mut state = parent_state.child();
        state
            .begin_block(ctx)
            .expect("a block time after the parent's is valid");
        // Twice a block's worth: enough to fill it past transactions that
        // no longer apply, without copying a large mempool per block.
        let candidates =
            self.lock()
                .mempool
                .candidates(parent_state, ctx.height, 2 * TXS_PER_BLOCK_MAX);
        let mut txs = Vec::new();
        let mut dead = Vec::new();
        let mut bytes = 128;
        for tx in candidates {
            if txs.len() >= TXS_PER_BLOCK_MAX {
                break;
            }
            let size = tx.encode().len() + 5;
            if bytes + size > BLOCK_BYTES_MAX {
                break;
            }
            // Everything in the mempool was verified on the way in.
            match state.apply_verified(&tx, ctx) {
                Ok(()) => {
                    bytes += size;
                    txs.push(tx);
                }
                // An earlier transaction of its signer was dropped from
                // this block; it may apply in a later one.
                Err(TxError::WrongNonce { .. }) => {}
                // Its turn came and it does not apply: it never will on
                // this chain (the same transaction, same state).
                Err(_) => dead.push((tx.signer, tx.nonce)),
            }
        }
        if !dead.is_empty() {
            let mut inner = self.lock();
            for (signer, nonce) in dead {
                inner.mempool.remove(&signer, nonce);
            }
        }
        state.end_block();
        let block = Block {
            parent: parent.digest(),
            height: ctx.height,
            time_ms: ctx.time_ms,
            state_root: state.root(),
            txs,
        };
        (block, Arc::new(state))
    }

    /// Re-executes `block` on its parent's state; the resulting state if
    /// its time moves forward, every transaction applies and the root
    /// matches.
    pub(crate) fn execute(&self, block: &Block, parent_state: &State) -> Result<State, BlockError> {
        if block.txs.len() > TXS_PER_BLOCK_MAX {
            return Err(BlockError::TooManyTxs);
        }
        let ids: Vec<[u8; 32]> = block.txs.iter().map(SignedTx::id).collect();
        let unverified: Vec<bool> = {
            let inner = self.lock();
            ids.iter().map(|id| !inner.verified.contains(id)).collect()
        };
        let chain_id = *parent_state.chain_id();
        let mut state = parent_state.child();
        state.begin_block(block.ctx()).map_err(BlockError::Time)?;
        // Every signature this validator has not seen yet, in one batch;
        // the block is refused at the first bad one.
        let unseen: Vec<usize> = (0..block.txs.len()).filter(|i| unverified[*i]).collect();
        let unseen_txs: Vec<&SignedTx> = unseen.iter().map(|i| &block.txs[*i]).collect();
        if let Some(bad) = SignedTx::first_invalid(&unseen_txs, &chain_id) {
            let index = unseen[bad];
            return Err(BlockError::Tx {
                index,
                error: TxError::BadSignature {
                    signer: block.txs[index].signer,
                },
            });
        }
        for (index, tx) in block.txs.iter().enumerate() {
            state
                .apply_verified(tx, block.ctx())
                .map_err(|error| BlockError::Tx { index, error })?;
        }
        state.end_block();
        if state.root() != block.state_root {
            return Err(BlockError::StateRoot);
        }
        Ok(state)
    }

    /// The state after `parent`, replaying unknown ancestors from
    /// `ancestors` (parent's parent first) back to one whose state we hold.
    async fn state_after(
        &self,
        parent: &Digested<Block>,
        mut ancestors: impl Stream<Item = Digested<Block>> + Unpin,
    ) -> Option<Arc<State>> {
        if let Some((_, state)) = self.lock().speculative.get(&parent.digest()) {
            return Some(state.clone());
        }
        let mut chain = vec![parent.clone()];
        let base = loop {
            let ancestor = ancestors.next().await?;
            if let Some((_, state)) = self.lock().speculative.get(&ancestor.digest()) {
                break state.clone();
            }
            if ancestor.inner().height <= self.height() {
                // Below our applied tip and not on our chain: not buildable.
                return None;
            }
            chain.push(ancestor);
        };
        let mut state = base;
        for block in chain.iter().rev() {
            let next = self.execute(block.inner(), &state).ok()?;
            state = Arc::new(next);
            self.lock()
                .speculative
                .insert(block.digest(), (block.inner().height, state.clone()));
        }
        Some(state)
    }

    /// Makes every applied block durable (one fsync for all of them).
    pub(crate) fn sync_store(&self) {
        self.persist().expect("cannot persist finalized blocks");
    }

    /// Makes every block applied so far durable, for a clean stop: the
    /// finalizer syncs its group commits every 100 ms or 16 blocks,
    /// and a process that exits between two syncs would otherwise leave
    /// the last blocks for marshal to deliver again at the next start.
    pub fn persist(&self) -> Result<(), StoreError> {
        self.store.sync()
    }

    /// Applies a finalized block (marshal delivers them in height order,
    /// at least once), persists it with its certificate, and prunes.
    fn apply_finalized(
        &self,
        block: &Digested<Block>,
        certificate: Option<Vec<u8>>,
        now: std::time::SystemTime,
    ) {
        let digest = block.digest();
        self.record_finalized(&digest, now);
        let block = block.inner();
        let (parent_height, parent_digest, cached, parent_state) = {
            let inner = self.lock();
            (
                inner.height,
                inner.digest,
                inner.speculative.get(&digest).map(|(_, s)| s.clone()),
                inner.state.clone(),
            )
        };
        if block.height <= parent_height {
            return; // Redelivery after a restart.
        }
        assert_eq!(
            (block.height, block.parent),
            (parent_height + 1, parent_digest),
            "marshal delivered a finalized block out of order"
        );
        let state = match cached {
            Some(state) => state,
            None => Arc::new(
                self.execute(block, &parent_state)
                    .expect("a finalized block is invalid: more than f validators are faulty"),
            ),
        };
        state.finalize();
        // A validator that cannot persist must stop rather than vote on.
        // Durable at the finalizer's next `sync_store`, before marshal hears
        // the block was processed: after a crash it is delivered again.
        self.store
            .commit_deferred(block, certificate.as_deref(), &state)
            .expect("cannot persist a finalized block");
        let mut inner = self.lock();
        inner.state = state.clone();
        inner.height = block.height;
        inner.digest = digest;
        let height = block.height;
        inner.speculative.retain(|_, (h, _)| *h > height);
        inner.speculative.insert(digest, (height, state.clone()));
        inner.finalized_txs.insert_block(block);
        let inner = &mut *inner;
        // Each signer once, however many of its transactions the block has.
        let signers: std::collections::BTreeSet<_> =
            block.txs.iter().map(|tx| &tx.signer).collect();
        inner.mempool.prune(&state, height, signers);
        if height.is_multiple_of(MEMPOOL_SWEEP_BLOCKS) {
            inner.mempool.prune_all(&state, height);
        }
        self.applied.send_replace(height);
    }
}

/// Why a proposed block is invalid.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BlockError {
    #[error("too many transactions")]
    TooManyTxs,
    #[error("transaction {index} does not apply: {error}")]
    Tx { index: usize, error: TxError },
    #[error("state root mismatch")]
    StateRoot,
    #[error("{0}")]
    Time(TxError),
}
