//! Send each request to the nearest healthy worker.
//!
//! This crate will own the HTTP edge: host/path → route, worker selection
//! (measured RTT, then load, prefer warm), forwarding, retries, traffic
//! splits, rate and size limits, and the router's attestation of receipts.
//! It never runs wasm. Nothing is implemented yet; see `docs/ARCHITECTURE.md`.
