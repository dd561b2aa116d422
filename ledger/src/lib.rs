//! Bind names, register nodes and settle metered usage on a BFT ledger.
//!
//! This crate owns the ledger's transactions ([`tx`]) and its deterministic
//! state machine ([`State`]): accounts and balances, names → manifests,
//! traffic splits, nodes, stakes, settled batches and the fee pool. Consensus
//! (commonware simplex over commonware-p2p), blocks in redb and the query
//! API are not built yet: the state machine is shaped for them — it has no
//! clock or randomness of its own, every transition is a pure function of
//! (state, transaction, height), and [`State::root`] commits to all of it.
//!
//! # Invariants
//!
//! - Conservation: balances + stakes + unbonding + fee pool never change
//!   except by genesis minting ([`State::total_supply`]); checked after every
//!   applied transaction, and a violation stops the node (`assert!`).
//! - A rejected transaction changes nothing (not even the nonce).
//! - A batch id `(worker, sequence)` settles at most once.
#![deny(missing_docs)]

pub mod api;
pub mod chain;
mod error;
pub mod evidence;
pub mod genesis;
pub mod sim;
mod state;
pub mod tx;

pub use error::TxError;
pub use state::{Account, NameEntry, NodeEntry, State, UNBONDING_BLOCKS};
pub use tx::{Aggregate, Attestation, NodeRole, SettleBatch, SignedTx, TxBody};

#[cfg(test)]
mod tests;
