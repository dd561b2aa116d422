//! Every bound the ledger enforces, named once. Relations between them are
//! checked at compile time, so a change that breaks one does not build.

/// Largest encoded transaction accepted from the network.
pub const TX_BYTES_MAX: usize = 64 * 1024;

/// Most transactions in one block. Bounds a block's size (and the time to
/// verify it) so marshal and the network can size their buffers.
pub const TXS_PER_BLOCK_MAX: usize = 8192;

/// Largest encoded block: the proposer stops adding transactions before
/// this, and marshal and the network size their buffers from it.
pub const BLOCK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most items in any list inside a transaction (splits, aggregates,
/// attestation counts).
pub const LIST_ITEMS_MAX: usize = 1024;

/// Longest name: a DNS label, the manifest's rule.
pub use bonus_registry::manifest::NAME_BYTES_MAX;

/// Longest endpoint or region string of a node.
pub const NODE_STRING_BYTES_MAX: usize = 256;

/// Largest slashing evidence (two signed votes and their headers).
pub const EVIDENCE_BYTES_MAX: usize = 4096;

/// Most invocations one attestation line may vouch for. A router that
/// forwards more in one period sends several attestations.
pub const INVOCATIONS_PER_ATTESTATION_MAX: u64 = 1_000_000_000;

/// How many periods back an attestation or a batch may refer to: usage of
/// a period older than this is pruned and can no longer settle.
pub const SETTLEMENT_WINDOW_PERIODS: u64 = 4;

/// How many periods of each name's usage the ledger keeps for its owner
/// to read back (`bonus usage`), after the settlement window has closed:
/// an hour of the dev network's 10 s periods. A name has at most one
/// history row per period, so this bounds the history to names × this.
pub const USAGE_HISTORY_PERIODS: u64 = 360;

/// A block's timestamp may run at most this far ahead of a verifier's
/// clock; a proposal further ahead is held until the clock catches up.
pub const CLOCK_DRIFT_MAX_MS: u64 = 2_000;

/// A proposal stamped further ahead than this is refused outright.
pub const CLOCK_AHEAD_REFUSE_MS: u64 = 10_000;

/// Most transactions waiting in one validator's mempool.
pub const MEMPOOL_MAX: usize = 100_000;

/// A signer's transactions are accepted only with nonces in
/// `next .. next + MEMPOOL_NONCE_WINDOW` (`next` from finalized state).
pub const MEMPOOL_NONCE_WINDOW: u64 = 64;

/// Blocks a transaction may wait in the mempool before it is dropped (a
/// transaction behind a nonce gap that never fills).
pub const MEMPOOL_TTL_BLOCKS: u64 = 256;

const _: () = assert!(TX_BYTES_MAX * 8 <= BLOCK_BYTES_MAX);
const _: () = assert!(MEMPOOL_NONCE_WINDOW as usize <= TXS_PER_BLOCK_MAX);
const _: () = assert!(MEMPOOL_MAX >= TXS_PER_BLOCK_MAX);
const _: () = assert!(CLOCK_DRIFT_MAX_MS < CLOCK_AHEAD_REFUSE_MS);
const _: () = assert!(SETTLEMENT_WINDOW_PERIODS >= 1);
const _: () = assert!(USAGE_HISTORY_PERIODS >= SETTLEMENT_WINDOW_PERIODS);
