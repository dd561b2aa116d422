//! Peer-to-peer distribution of artifacts over libp2p.
//!
//! Kademlia provider records say who holds an artifact; the blob protocol
//! ([`wire`]) moves it in segments, each bao-encoded by the sender and
//! verified against the artifact id (the BLAKE3 root) by the receiver as it
//! arrives, so a lying peer is caught at its first bad segment and the
//! segment is fetched elsewhere. Peers come from a bootstrap list; nodes
//! listen on, and advertise, only the address they are given.

mod fetch;
mod swarm;
pub mod wire;

pub use fetch::{FetchError, FetchReport};
pub use libp2p::{Multiaddr, PeerId};
pub use swarm::{P2p, P2pConfig};

/// Chunk-group size of the bao tree: parents are kept per 16 KiB.
pub(crate) const BLOCK_SIZE: bao_tree::BlockSize = bao_tree::BlockSize::from_chunk_log(4);

/// One request moves this many 1 KiB chunks (1 MiB).
pub(crate) const SEGMENT_CHUNKS: u64 = 1024;
