//! Store and spread signed, content-addressed function artifacts.
//!
//! This crate will own content ids (BLAKE3), manifests and their signatures,
//! the local blob store (redb index + files) and P2P distribution with
//! verified fetch. It never executes code and never decides who owns a name
//! (the ledger does). Nothing is implemented yet; see `docs/ARCHITECTURE.md`.
