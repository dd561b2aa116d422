//! Peer-to-peer distribution of artifacts over libp2p.
//!
//! Kademlia provider records say who holds an artifact, announced as soon
//! as a node has verified one segment of it; a have-bitmap query
//! ([`wire::BlobRequest::Info`]) says which segments. A fetcher pulls
//! different segments from every holder at once, the origin and other
//! fetchers alike, over one long-lived stream per peer with several
//! segments in flight. Each segment is bao-encoded by the sender and
//! verified against the artifact id (the BLAKE3 root) by the receiver as
//! it arrives, so a lying peer is caught at its first bad segment, dropped
//! for the rest of the fetch, and the segment is fetched elsewhere. Nodes
//! serve the segments they have verified (their encodings as they arrived)
//! while they fetch the rest, and write each into the store's temp file as
//! it verifies; the blob is committed once all are in. Peers
//! come from a bootstrap list; nodes listen on, and advertise, only the
//! address they are given.

mod fetch;
mod held;
pub(crate) mod limits;
mod serve;
mod swarm;
#[cfg(test)]
mod tests;
pub mod wire;

pub use fetch::{FetchError, FetchReport};
pub use libp2p::{Multiaddr, PeerId};
pub use swarm::{P2p, P2pConfig};

/// Chunk-group size of the bao tree: parents are kept per 16 KiB.
pub(crate) const BLOCK_SIZE: bao_tree::BlockSize = bao_tree::BlockSize::from_chunk_log(4);
