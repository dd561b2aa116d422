//! Bind names, register nodes and settle metered usage on a BFT ledger.
//!
//! This crate owns the ledger's transactions ([`tx`]), its deterministic
//! state machine ([`State`]: accounts, names → manifests with their owners'
//! consented price and budget, staked nodes, settlement, validator stakes
//! and rewards), the replicated chain ([`chain`]: commonware simplex
//! consensus and marshal over commonware-p2p, blocks and state in redb) and
//! the query API ([`api`]). `docs/PROTOCOL.md` states the rules.
//!
//! # Core concepts
//!
//! - [`Genesis`](genesis::Genesis): the file every validator starts from;
//!   its hash is the [`ChainId`] that every signature covers.
//! - [`State`]: a pure function of (genesis, blocks). Every transition is
//!   `begin_block(ctx)`, then `apply(tx, ctx)` per transaction, with no
//!   clock or randomness of its own; [`State::root`] commits to all of it
//!   (a Merkle tree over its rows, so [`State::prove_account`] and
//!   [`verify_account`] let a client check a balance against a root).
//! - [`chain::Chain`]: one validator's view (applied state, speculative
//!   states of unfinalized blocks, mempool, store), shared by the consensus
//!   tasks and the query API for the validator's lifetime.
//!
//! # Invariants
//!
//! - Conservation: balances + stakes + unbonding + fee pool always equal
//!   what genesis minted; checked after every transaction and block, and a
//!   violation stops the node (`assert!`, kept in release builds).
//! - A rejected transaction changes nothing (not even the nonce or a fee).
//! - Money leaves an account only by its owner's signature (transfer,
//!   stake, fee) or consent (a settlement within the manifest's price
//!   maximum and the name's budget), or by a proven equivocation (slash).
//! - A batch id `(worker, sequence)` settles at most once.
#![deny(missing_docs)]

pub mod api;
pub mod chain;
#[cfg(feature = "client")]
pub mod client;
use bonus_ids::codec;
mod error;
pub mod evidence;
pub mod genesis;
pub mod limits;
pub mod params;
pub mod sim;
mod state;
pub mod tx;

pub use codec::DecodeError;
pub use error::TxError;
pub use params::{BlockCtx, ChainId, Params};
pub use state::{
    Account, FEE_BASIS_POINTS, GenesisSpec, ManifestEntry, NameEntry, NameUsage, NodeEntry, State,
    StateProof, Usage, verify_account,
};
pub use tx::{Aggregate, Attestation, NodeRole, SettleBatch, SignedTx, TxBody};

#[cfg(test)]
mod tests;
