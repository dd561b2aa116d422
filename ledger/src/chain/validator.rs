//! Wires one validator: simplex (votes, certificates), marshal (ordered
//! finalized blocks with backfill) over `broadcast::buffered` and the
//! resolver, the ledger application, and the finalizer that applies and
//! persists blocks. Generic over the runtime and the p2p network, so the
//! same code runs in the deterministic simulator and over TCP.

use super::Chain;
use super::block::{Block, Digest};
use crate::limits::{BLOCK_BYTES_MAX, CLOCK_AHEAD_REFUSE_MS, CLOCK_DRIFT_MAX_MS};
use crate::params::ChainId;
use crate::tx::{SignedTx, TxBody};
use bonus_ids::SecretKey;
use commonware_broadcast::buffered;
use commonware_codec::Encode as _;
use commonware_consensus::{
    Application, Reporter,
    marshal::{
        Config as MarshalConfig, Start, Update, ancestry::Ancestry, core::Actor,
        resolver::p2p as marshal_resolver, standard::Inline,
    },
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
        scheme::ed25519 as scheme,
        types::{Activity, Context},
    },
    types::{Epoch, FixedEpocher, Height, ViewDelta},
};
use commonware_cryptography::{Digested, Sha256, certificate::ConstantProvider, ed25519};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::immutable;
use commonware_utils::{Acknowledgement as _, NZDuration, NZU16, NZU64, NZUsize};
use futures::{FutureExt as _, StreamExt as _};
use rand_core::CryptoRng;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Consensus namespace prefix; the chain id follows it (see [`namespace`]).
pub const NAMESPACE: &[u8] = b"bonus-ledger-v3";

/// The consensus namespace of network `chain`: votes, certificates and
/// equivocation evidence from another network never verify here.
pub fn namespace(chain: &ChainId) -> Vec<u8> {
    [NAMESPACE, chain.as_bytes()].concat()
}

/// The signing scheme (ed25519 attestations; certificates list signers).
pub type Scheme = scheme::Scheme;

/// Misbehavior to inject, for tests of safety under Byzantine validators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Proposes blocks whose state root is wrong.
    InvalidBlocks,
    /// Stamps its proposals this many ms after its clock (otherwise valid
    /// blocks, from a proposer that would push the chain's time ahead).
    ClockAheadMs(u64),
}

/// Consensus timers.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// How long to wait for the leader's proposal.
    pub leader: Duration,
    /// How long to wait for a notarization before voting to skip.
    pub certification: Duration,
    /// Re-broadcast period of a timed-out view's votes.
    pub retry: Duration,
}

impl Timeouts {
    /// For loopback and LAN networks.
    pub const LOCAL: Timeouts = Timeouts {
        leader: Duration::from_millis(1_000),
        certification: Duration::from_millis(2_000),
        retry: Duration::from_millis(1_000),
    };
}

/// One validator's configuration.
pub struct ValidatorConfig {
    /// Its ed25519 key: consensus votes and Slash transactions.
    pub key: SecretKey,
    /// Every validator's consensus key (the genesis set).
    pub validators: Vec<ed25519::PublicKey>,
    /// Prefix of the runtime storage partitions (marshal archives, votes).
    pub partition: String,
    /// Timers.
    pub timeouts: Timeouts,
    /// Injected misbehavior (tests only).
    pub byzantine: Option<Byzantine>,
}

/// The p2p channels a validator needs: votes, certificates and
/// simplex's resolver; marshal's backfill and block broadcast.
pub struct Channels<S, R> {
    /// Simplex votes.
    pub votes: (S, R),
    /// Simplex certificates.
    pub certificates: (S, R),
    /// Simplex certificate fetches.
    pub resolver: (S, R),
    /// Marshal backfill.
    pub backfill: (S, R),
    /// Block broadcast.
    pub blocks: (S, R),
    /// Transaction gossip: what a client submits to one validator reaches
    /// every mempool, so whoever leads next can include it.
    pub txs: (S, R),
}

/// The running validator's tasks.
pub struct Handles {
    /// Simplex.
    pub consensus: Handle<()>,
    /// Marshal.
    pub marshal: Handle<()>,
    /// The finalizer (applies and persists blocks).
    pub finalizer: Handle<()>,
    /// Transaction gossip.
    pub gossip: Handle<()>,
}

/// Converts our key to commonware's (the same ed25519 seed).
pub fn consensus_key(key: &SecretKey) -> ed25519::PrivateKey {
    use commonware_codec::DecodeExt as _;
    ed25519::PrivateKey::decode(key.seed().to_vec()).expect("a 32-byte seed is a valid key")
}

/// Converts a bonus public key to commonware's.
pub fn consensus_public(key: &bonus_ids::PublicKey) -> ed25519::PublicKey {
    use commonware_codec::DecodeExt as _;
    ed25519::PublicKey::decode(key.as_bytes().to_vec()).expect("a valid ed25519 public key decodes")
}

/// Starts a validator on `context` with the given channels.
pub async fn start<E, S, R, P, B>(
    context: E,
    config: ValidatorConfig,
    chain: Arc<Chain>,
    channels: Channels<S, R>,
    peers: P,
    blocker: B,
) -> Handles
where
    E: CryptoRng + Spawner + Metrics + Clock + Storage,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    let signer = consensus_key(&config.key);
    let public = commonware_cryptography::Signer::public_key(&signer);
    let participants = commonware_utils::ordered::Set::try_from(config.validators.clone())
        .expect("validators are distinct");
    let namespace = namespace(chain.state().chain_id());
    let scheme =
        Scheme::signer(&namespace, participants, signer).expect("a validator is in the set");
    let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(64));
    let mailbox_size = NZUsize!(MAILBOX_SIZE);

    // The epoch never changes: the validator set is fixed at genesis.
    let epocher = FixedEpocher::new(NZU64!(u64::MAX / 2));
    let (marshal, marshal_handle, finalizer) = start_marshal(
        &context,
        &config.partition,
        &chain,
        (&scheme, &public),
        &epocher,
        (channels.backfill, channels.blocks),
        peers,
        blocker.clone(),
        &page_cache,
    )
    .await;

    let gossip = spawn_gossip(context.child("gossip"), chain.clone(), channels.txs);

    let app = LedgerApp {
        chain: chain.clone(),
        byzantine: config.byzantine,
        idle_wait: config.timeouts.leader / 4,
    };
    let inline = Inline::new(context.child("application"), app, marshal.clone(), epocher);
    let reporter = EvidenceReporter {
        inner: inline.clone(),
        chain: chain.clone(),
        key: Arc::new(config.key),
        reported: Default::default(),
    };
    let engine = simplex::Engine::new(
        context.child("consensus"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: inline.clone(),
            relay: inline,
            reporter,
            strategy: Sequential,
            partition: format!("{}-consensus", config.partition),
            mailbox_size,
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(commonware_cryptography::Digestible::digest(
                chain.genesis(),
            )),
            replay_buffer: NZUsize!(64 * 1024),
            write_buffer: NZUsize!(64 * 1024),
            page_cache,
            leader_timeout: config.timeouts.leader,
            certification_timeout: config.timeouts.certification,
            timeout_retry: config.timeouts.retry,
            view_retention: ViewDelta::new(64),
            skip: SkipPolicy::Enabled {
                timeout: config.timeouts.certification * 3,
                budget: SkipBudget::Participants,
            },
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::Disabled,
            track_historical_votes: false,
        },
    );
    let consensus = engine.start(channels.votes, channels.certificates, channels.resolver);
    info!(validator = %public, height = chain.height(), "validator started");
    Handles {
        consensus,
        marshal: marshal_handle,
        finalizer,
        gossip,
    }
}

/// Marshal, which orders finalized blocks and repairs gaps, with what it
/// needs: the backfill resolver, the block broadcast engine and its two
/// archives; and the finalizer it hands blocks to. Returns marshal's
/// mailbox and the marshal and finalizer tasks.
#[allow(clippy::too_many_arguments)]
async fn start_marshal<E, S, R, P, B>(
    context: &E,
    prefix: &str,
    chain: &Arc<Chain>,
    (scheme, public): (&Scheme, &ed25519::PublicKey),
    epocher: &FixedEpocher,
    (backfill, blocks): ((S, R), (S, R)),
    peers: P,
    blocker: B,
    page_cache: &CacheRef,
) -> (MarshalMailbox, Handle<()>, Handle<()>)
where
    E: CryptoRng + Spawner + Metrics + Clock + Storage,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    let mailbox_size = NZUsize!(MAILBOX_SIZE);
    // Marshal's backfill resolver and block broadcast.
    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: public.clone(),
            peer_provider: peers.clone(),
            blocker,
            mailbox_size,
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        backfill,
    );
    let (broadcast, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: public.clone(),
            mailbox_size,
            deque_size: 16,
            priority: false,
            codec_config: (),
            peer_provider: peers,
            strategy: Sequential,
        },
    );
    broadcast.start(blocks);

    let finalizations = immutable::Archive::init(
        context.child("finalizations"),
        archive_config(prefix, "finalizations", page_cache, <Scheme as commonware_cryptography::certificate::Verifier>::certificate_codec_config_unbounded()),
    )
    .await
    .expect("cannot open the finalizations archive");
    let blocks = immutable::Archive::init(
        context.child("blocks"),
        archive_config(prefix, "blocks", page_cache, ()),
    )
    .await
    .expect("cannot open the blocks archive");

    let (actor, marshal, _floor) = Actor::init(
        context.child("marshal"),
        finalizations,
        blocks,
        MarshalConfig {
            provider: ConstantProvider::new(scheme.clone()),
            epocher: epocher.clone(),
            start: Start::Genesis(Digested::precomputed(
                chain.genesis().clone(),
                commonware_cryptography::Digestible::digest(chain.genesis()),
            )),
            mailbox_size,
            view_retention: ViewDelta::new(64),
            max_repair: NZUsize!(64),
            max_pending_acks: NZUsize!(UNSYNCED_BLOCKS_MAX),
            block_codec_config: (),
            partition_prefix: format!("{prefix}-marshal"),
            prunable_items_per_section: NZU64!(64),
            replay_buffer: NZUsize!(64 * 1024),
            key_write_buffer: NZUsize!(64 * 1024),
            value_write_buffer: NZUsize!(64 * 1024),
            page_cache: page_cache.clone(),
            strategy: Sequential,
        },
    )
    .await;

    // Finalized blocks: marshal → channel → finalizer (which needs the
    // marshal mailbox for each block's certificate).
    let (finalized_tx, finalized_rx) = futures::channel::mpsc::unbounded();
    let marshal_handle = actor.start(Finalized(finalized_tx), buffer, resolver);
    let finalizer = {
        let chain = chain.clone();
        let marshal = marshal.clone();
        context
            .child("finalizer")
            .spawn(move |context| finalize(context, chain, marshal, finalized_rx))
    };

    (marshal, marshal_handle, finalizer)
}

/// Applies finalized blocks in order and commits each to the store
/// without waiting for the disk; one fsync then covers every block applied
/// in the last [`STORE_SYNC_INTERVAL`] (or [`UNSYNCED_BLOCKS_MAX`] of them),
/// and only then are they acknowledged to marshal. A crash loses at most
/// those unacknowledged blocks, which marshal delivers again on restart.
async fn finalize<E: Clock>(
    context: E,
    chain: Arc<Chain>,
    marshal: MarshalMailbox,
    mut finalized_rx: futures::channel::mpsc::UnboundedReceiver<(
        Digested<Block>,
        commonware_utils::acknowledgement::Exact,
    )>,
) {
    let mut unsynced = Vec::new();
    let mut deadline = None;
    loop {
        let next = match deadline {
            None => finalized_rx.next().await,
            Some(at) => futures::select! {
                next = finalized_rx.next().fuse() => next,
                () = context.sleep_until(at).fuse() => {
                    sync_and_acknowledge(&chain, &mut unsynced);
                    deadline = None;
                    continue;
                }
            },
        };
        let Some((block, ack)) = next else {
            sync_and_acknowledge(&chain, &mut unsynced);
            return;
        };
        let certificate = marshal
            .get_finalization(Height::new(block.inner().height))
            .await
            .map(|f| f.encode().to_vec());
        chain.apply_finalized(&block, certificate, context.current());
        unsynced.push(ack);
        deadline.get_or_insert(context.current() + STORE_SYNC_INTERVAL);
        if unsynced.len() >= UNSYNCED_BLOCKS_MAX {
            sync_and_acknowledge(&chain, &mut unsynced);
            deadline = None;
        }
    }
}

fn sync_and_acknowledge(
    chain: &Chain,
    unsynced: &mut Vec<commonware_utils::acknowledgement::Exact>,
) {
    if unsynced.is_empty() {
        return;
    }
    chain.sync_store();
    for ack in unsynced.drain(..) {
        ack.acknowledge();
    }
}

/// Transaction gossip: what this validator admits from clients goes to
/// every peer (batched, so a burst costs few messages: the channel's quota
/// counts messages); what peers send is admitted like a client's (decoded,
/// checked) but not gossiped again.
fn spawn_gossip<E, S, R>(
    context: E,
    chain: Arc<Chain>,
    (mut sender, mut receiver): (S, R),
) -> Handle<()>
where
    E: Spawner + Metrics,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
{
    let mut outbound = chain.gossip_queue();
    context.spawn(move |_| async move {
        loop {
            futures::select! {
                tx = outbound.next() => match tx {
                    Some(first) => {
                        let mut batch = Vec::new();
                        crate::tx::push_frame(&mut batch, &first);
                        while batch.len() < GOSSIP_BATCH_BYTES {
                            match outbound.try_recv() {
                                Ok(tx) => crate::tx::push_frame(&mut batch, &tx),
                                _ => break,
                            }
                        }
                        sender.send(commonware_p2p::Recipients::All, batch, false);
                    }
                    None => return,
                },
                message = receiver.recv().fuse() => match message {
                    Ok((_, bytes)) => {
                        // Refusals are the sender's business, not ours; a
                        // malformed batch is dropped whole.
                        if let Ok(frames) = crate::tx::split_frames(bytes.as_ref(), usize::MAX) {
                            let _ = chain.submit_batch_from_peer(frames);
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    })
}

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 256,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(1024),
        codec_config,
        replay_buffer: NZUsize!(64 * 1024),
        freezer_key_write_buffer: NZUsize!(64 * 1024),
        freezer_value_write_buffer: NZUsize!(64 * 1024),
        ordinal_write_buffer: NZUsize!(64 * 1024),
    }
}

/// Gossip batches stop growing past this.
const GOSSIP_BATCH_BYTES: usize = 256 * 1024;

/// Each actor's mailbox, in messages.
const MAILBOX_SIZE: usize = 1024;

/// How long a finalized block may wait, applied and committed but not yet
/// fsynced, for others to share its fsync.
const STORE_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Most finalized blocks applied but not yet fsynced (and so not yet
/// acknowledged: marshal holds back further blocks at this many).
const UNSYNCED_BLOCKS_MAX: usize = 16;

type MarshalMailbox = commonware_consensus::marshal::core::Mailbox<
    Scheme,
    commonware_consensus::marshal::standard::Standard<Block>,
>;

/// Largest p2p message the validator's channels must admit.
pub fn max_message_size() -> u32 {
    (BLOCK_BYTES_MAX + 64 * 1024) as u32
}

/// Hands marshal's finalized blocks to the finalizer task.
#[derive(Clone)]
struct Finalized(
    futures::channel::mpsc::UnboundedSender<(
        Digested<Block>,
        commonware_utils::acknowledgement::Exact,
    )>,
);

impl Reporter for Finalized {
    type Activity = Update<Block>;

    fn report(&mut self, activity: Update<Block>) -> commonware_actor::Feedback {
        if let Update::Block(block, ack) = activity {
            // If the finalizer is gone the validator is stopping; dropping
            // the ack stops marshal too, which is what we want.
            let _ = self.0.unbounded_send((block, ack));
        }
        commonware_actor::Feedback::Ok
    }
}

/// The ledger as a marshal application: proposes blocks from the mempool
/// and verifies proposals by re-executing them.
#[derive(Clone)]
struct LedgerApp {
    chain: Arc<Chain>,
    byzantine: Option<Byzantine>,
    /// With an empty mempool, how long a leader waits for a transaction
    /// before proposing an empty block: an idle network then makes a few
    /// blocks a second instead of one per round trip, and a transaction
    /// that arrives meanwhile is proposed at once. Well below the leader
    /// timeout, so the view never times out waiting.
    idle_wait: Duration,
}

impl<E: Clock + Send + 'static> Application<E> for LedgerApp {
    type SigningScheme = Scheme;
    type Context = Context<Digest, ed25519::PublicKey>;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        context: (E, Self::Context),
        mut ancestry: impl Ancestry<Block>,
        _input: (),
    ) -> Option<Digested<Block>> {
        // Created before the check: it sees any arrival after this point.
        let arrived = self.chain.arrivals.notified();
        if self.chain.mempool_len() == 0 {
            futures::select! {
                _ = arrived.fuse() => {},
                _ = context.0.sleep(self.idle_wait).fuse() => {},
            }
        }
        let parent = ancestry.next().await?;
        let parent_state = self.chain.state_after(&parent, ancestry).await?;
        let mut now_ms = unix_ms(context.0.current());
        if let Some(Byzantine::ClockAheadMs(ahead)) = self.byzantine {
            now_ms += ahead;
        }
        let (mut block, state) = self.chain.build(&parent, &parent_state, now_ms);
        if self.byzantine == Some(Byzantine::InvalidBlocks) {
            block.state_root = [0xba; 32];
            warn!(
                height = block.height,
                "proposing an invalid block (byzantine test mode)"
            );
        }
        let digest = commonware_cryptography::Digestible::digest(&block);
        self.chain.record_proposal(digest, context.0.current());
        self.chain
            .lock()
            .speculative
            .insert(digest, (block.height, state));
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        context: (E, Self::Context),
        mut ancestry: impl Ancestry<Block>,
    ) -> bool {
        let Some(block) = ancestry.next().await else {
            return false;
        };
        // A block stamped ahead of this clock by more than the drift is
        // held until the clock catches up (it is not invalid, only early);
        // one stamped absurdly far ahead never gets this vote.
        let now_ms = unix_ms(context.0.current());
        let ahead = block.inner().time_ms.saturating_sub(now_ms);
        if ahead > CLOCK_AHEAD_REFUSE_MS {
            warn!(
                height = block.inner().height,
                ahead_ms = ahead,
                "refusing a block from the future"
            );
            self.chain
                .rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        if ahead > CLOCK_DRIFT_MAX_MS {
            context
                .0
                .sleep(Duration::from_millis(ahead - CLOCK_DRIFT_MAX_MS))
                .await;
        }
        let Some(parent) = ancestry.next().await else {
            return false;
        };
        if block.inner().height != parent.inner().height + 1 {
            return false;
        }
        let Some(parent_state) = self.chain.state_after(&parent, ancestry).await else {
            // The parent does not execute: the block is invalid for good.
            return false;
        };
        match self.chain.execute(block.inner(), &parent_state) {
            Ok(state) => {
                let digest = commonware_cryptography::Digestible::digest(&block);
                self.chain
                    .lock()
                    .speculative
                    .insert(digest, (block.inner().height, Arc::new(state)));
                true
            }
            Err(error) => {
                self.chain
                    .rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(height = block.inner().height, %error, "rejecting an invalid block");
                false
            }
        }
    }
}

/// Forwards consensus activity to marshal (through the wrapper) and turns
/// proofs of equivocation into `Slash` transactions signed by this
/// validator.
#[derive(Clone)]
struct EvidenceReporter<I> {
    inner: I,
    chain: Arc<Chain>,
    key: Arc<SecretKey>,
    /// Evidence already turned into a Slash (consensus reports the same
    /// fault more than once).
    reported: Arc<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>>,
}

impl<I: Reporter<Activity = Activity<Scheme, Digest>>> Reporter for EvidenceReporter<I> {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> commonware_actor::Feedback {
        if let Some(evidence) = crate::evidence::from_activity(&activity)
            && self
                .reported
                .lock()
                .expect("evidence lock poisoned")
                .insert(evidence.clone())
        {
            let nonce = self.chain.next_nonce(&self.key.public());
            let chain_id = *self.chain.state().chain_id();
            let tx = SignedTx::sign(&self.key, &chain_id, nonce, TxBody::Slash { evidence });
            match self.chain.submit_tx(tx) {
                Ok(_) => warn!("equivocation detected; Slash submitted"),
                Err(error) => warn!(%error, "cannot submit Slash"),
            }
        }
        self.inner.report(activity)
    }
}

/// Milliseconds since the Unix epoch of a runtime clock reading (the
/// deterministic runtime's clock in simulations).
fn unix_ms(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
