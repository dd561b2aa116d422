//! Fetching an artifact by id from whichever peers hold it, verifying each
//! segment as it arrives.

use super::wire::{BlobRequest, BlobResponse};
use super::{BLOCK_SIZE, P2p, SEGMENT_CHUNKS};
use crate::Store;
use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::{BaoTree, ChunkNum, ChunkRanges};
use bonus_ids::ArtifactId;
use libp2p::PeerId;
use std::collections::{HashMap, VecDeque};
use tokio::task::JoinSet;

/// Segments requested from one source at a time. On loopback the transfer
/// is CPU-bound (hashing, encryption) and 4 measured 30 % slower than 1
/// (`bench/registry.py`); raise it for links with real round-trip times.
const IN_FLIGHT_PER_SOURCE: usize = 1;

/// Why an artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No reachable peer holds it.
    #[error("no peer holds artifact {artifact_id}; deploy it to a node first")]
    NoSource {
        /// The artifact.
        artifact_id: ArtifactId,
    },
    /// Every peer that held it failed or served bad data.
    #[error("fetching {artifact_id} failed from every peer: {reason}")]
    AllSourcesFailed {
        /// The artifact.
        artifact_id: ArtifactId,
        /// The last failure.
        reason: String,
    },
    /// Peers announce a size above the node's artifact limit.
    #[error("artifact {artifact_id} is {bytes} bytes, above the limit of {bytes_max}")]
    TooLarge {
        /// The artifact.
        artifact_id: ArtifactId,
        /// The announced size.
        bytes: u64,
        /// The limit.
        bytes_max: u64,
    },
    /// The network layer failed.
    #[error("p2p: {0}")]
    Network(String),
    /// Storing the fetched artifact failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// What a finished fetch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Bytes of the artifact.
    pub bytes: u64,
    /// Segments received per peer.
    pub segments_by_peer: Vec<(PeerId, u64)>,
    /// Segments that failed verification or transfer and were refetched.
    pub segments_retried: u64,
}

impl P2p {
    /// Fetches `artifact_id` from peers into `store` (a no-op if held) and
    /// announces it. Segments are spread over every source; a source that
    /// fails or lies is dropped and its segments go to the others.
    pub async fn fetch(
        &self,
        artifact_id: ArtifactId,
        store: &Store,
    ) -> Result<FetchReport, FetchError> {
        if let Some(info) = store.blob_info(&artifact_id)? {
            return Ok(FetchReport {
                bytes: info.bytes,
                ..FetchReport::default()
            });
        }
        let (mut sources, bytes) = self.find_sources(artifact_id).await?;
        let bytes_max = store.config().artifact_bytes_max;
        if bytes > bytes_max {
            return Err(FetchError::TooLarge {
                artifact_id,
                bytes,
                bytes_max,
            });
        }
        let tree = BaoTree::new(bytes, BLOCK_SIZE);
        let n_chunks = bytes.div_ceil(1024).max(1);
        let mut todo: VecDeque<u64> = (0..n_chunks.div_ceil(SEGMENT_CHUNKS)).collect();
        let mut data = vec![0u8; bytes as usize];
        let mut report = FetchReport {
            bytes,
            ..FetchReport::default()
        };
        let mut in_flight = JoinSet::new();
        let mut in_flight_by_peer: HashMap<PeerId, usize> = HashMap::new();
        let mut last_failure = String::new();
        loop {
            // Keep up to IN_FLIGHT_PER_SOURCE segments in flight at each
            // source, dealt round-robin so every source gets a share.
            'deal: while !todo.is_empty() {
                let mut dealt = false;
                for &peer in &sources {
                    let count = in_flight_by_peer.entry(peer).or_default();
                    if *count >= IN_FLIGHT_PER_SOURCE {
                        continue;
                    }
                    let Some(segment) = todo.pop_front() else {
                        break 'deal;
                    };
                    *count += 1;
                    dealt = true;
                    let start_chunk = segment * SEGMENT_CHUNKS;
                    let end_chunk = (start_chunk + SEGMENT_CHUNKS).min(n_chunks);
                    let p2p = self.clone();
                    in_flight.spawn(async move {
                        let request = BlobRequest::Range {
                            artifact_id,
                            start_chunk,
                            end_chunk,
                        };
                        (
                            peer,
                            segment,
                            start_chunk,
                            end_chunk,
                            p2p.request(peer, request).await,
                        )
                    });
                }
                if !dealt {
                    break;
                }
            }
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            let (peer, segment, start_chunk, end_chunk, result) =
                joined.map_err(|e| FetchError::Network(format!("fetch task: {e}")))?;
            if let Some(count) = in_flight_by_peer.get_mut(&peer) {
                *count = count.saturating_sub(1);
            }
            let verified = match result {
                Ok(BlobResponse::Range(encoded)) => verify_segment(
                    artifact_id,
                    tree,
                    start_chunk,
                    end_chunk,
                    &encoded,
                    &mut data,
                ),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e),
            };
            match verified {
                Ok(()) => match report.segments_by_peer.iter_mut().find(|(p, _)| *p == peer) {
                    Some((_, count)) => *count += 1,
                    None => report.segments_by_peer.push((peer, 1)),
                },
                Err(reason) => {
                    tracing::warn!(%peer, %artifact_id, segment, %reason, "dropping source");
                    sources.retain(|p| *p != peer);
                    todo.push_back(segment);
                    report.segments_retried += 1;
                    last_failure = reason;
                    if sources.is_empty() {
                        return Err(FetchError::AllSourcesFailed {
                            artifact_id,
                            reason: last_failure,
                        });
                    }
                }
            }
        }
        if !todo.is_empty() {
            return Err(FetchError::AllSourcesFailed {
                artifact_id,
                reason: last_failure,
            });
        }
        data.truncate(bytes as usize);
        let mut writer = store.writer(Some(artifact_id), Some(bytes))?;
        writer.write(&data)?;
        writer.commit()?;
        self.provide(artifact_id).await;
        Ok(report)
    }

    /// Peers that say they hold the artifact, and its size (which the
    /// bao tree's root later proves).
    async fn find_sources(
        &self,
        artifact_id: ArtifactId,
    ) -> Result<(Vec<PeerId>, u64), FetchError> {
        let mut candidates = self.providers(artifact_id).await;
        candidates.extend(self.connected_peers().await);
        candidates.remove(&self.peer_id());
        let mut asks = JoinSet::new();
        for peer in candidates {
            let p2p = self.clone();
            asks.spawn(async move {
                (
                    peer,
                    p2p.request(peer, BlobRequest::Info(artifact_id)).await,
                )
            });
        }
        let mut by_size: Vec<(u64, Vec<PeerId>)> = Vec::new();
        while let Some(Ok((peer, answer))) = asks.join_next().await {
            if let Ok(BlobResponse::Info(Some(size))) = answer {
                match by_size.iter_mut().find(|(s, _)| *s == size) {
                    Some((_, peers)) => peers.push(peer),
                    None => by_size.push((size, vec![peer])),
                }
            }
        }
        // Peers may disagree on the size; the majority is tried (a wrong
        // size cannot verify against the root, so liars only cost time).
        by_size.sort_by_key(|(_, peers)| std::cmp::Reverse(peers.len()));
        match by_size.into_iter().next() {
            Some((size, peers)) => Ok((peers, size)),
            None => Err(FetchError::NoSource { artifact_id }),
        }
    }
}

/// Decodes one segment's bao encoding, checking every chunk and parent
/// against the root, and writes its data at its offset.
fn verify_segment(
    artifact_id: ArtifactId,
    tree: BaoTree,
    start_chunk: u64,
    end_chunk: u64,
    encoded: &[u8],
    data: &mut Vec<u8>,
) -> Result<(), String> {
    let ranges = ChunkRanges::from(ChunkNum(start_chunk)..ChunkNum(end_chunk));
    let outboard = PreOrderOutboard {
        root: blake3::Hash::from_bytes(*artifact_id.as_bytes()),
        tree,
        data: Vec::new(),
    };
    bao_tree::io::sync::decode_ranges(encoded, &ranges, &mut *data, outboard)
        .map_err(|e| format!("segment failed verification: {e}"))
}
