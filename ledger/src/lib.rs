//! Bind names, register nodes and settle metered usage on a BFT ledger.
//!
//! This crate will own transactions, the deterministic state machine
//! (accounts, names → manifests, nodes, validators, settlements, stakes),
//! consensus via `commonware-consensus`, and blocks and state in redb. Its
//! state changes only on finalization. Nothing is implemented yet; see
//! `docs/ARCHITECTURE.md`.
