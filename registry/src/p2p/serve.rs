//! Serving blobs to peers: have-bitmaps, and segments over long-lived
//! streams, from memory ([`HeldSet`]): complete blobs and the verified
//! segments of blobs still being fetched.

use super::held::{HeldSet, full_bitmap};
use super::limits::{STREAM_IDLE_TIMEOUT, STREAMS_SERVED_MAX, STREAMS_SERVED_PER_PEER_MAX};
use super::wire::{self, BlobRequest, BlobResponse, Have};
use crate::Store;
use bonus_ids::ArtifactId;
use futures::StreamExt;
use libp2p::{PeerId, Stream};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What a node serves, and how. Shared by the swarm task and the stream
/// tasks; lives as long as the [`P2p`](super::P2p).
pub(crate) struct Server {
    pub(crate) store: Arc<Store>,
    pub(crate) held: Arc<HeldSet>,
    /// Byzantine test mode: every segment with one byte flipped.
    pub(crate) tamper: bool,
    /// Test mode: wait this long before each segment.
    pub(crate) delay: Duration,
    streams: Arc<Semaphore>,
    streams_by_peer: Mutex<HashMap<PeerId, usize>>,
}

impl Server {
    pub(crate) fn new(store: Arc<Store>, tamper: bool, delay: Duration) -> Server {
        Server {
            store,
            held: Arc::new(HeldSet::default()),
            tamper,
            delay,
            streams: Arc::new(Semaphore::new(STREAMS_SERVED_MAX)),
            streams_by_peer: Mutex::new(HashMap::new()),
        }
    }

    /// Answers a have query (blocking: may read the store's index).
    pub(crate) fn info(&self, artifact_id: &ArtifactId) -> BlobResponse {
        if let Some(held) = self.held.get(artifact_id) {
            return BlobResponse::Info(Some(Have {
                bytes: held.bytes(),
                segments: held.have(),
            }));
        }
        match self.store.blob_info(artifact_id) {
            Ok(Some(info)) => BlobResponse::Info(Some(Have {
                bytes: info.bytes,
                segments: full_bitmap(wire::n_segments(info.bytes)),
            })),
            Ok(None) => BlobResponse::Info(None),
            Err(e) => BlobResponse::Unavailable(e.to_string()),
        }
    }

    /// Loads a stored blob into memory ahead of the first request for it,
    /// if that evicts nothing.
    pub(crate) fn warm(self: &Arc<Self>, artifact_id: ArtifactId) {
        if !self.held.has_room() || self.held.get(&artifact_id).is_some() {
            return;
        }
        let server = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = server.held.load(&server.store, &artifact_id) {
                tracing::warn!(%artifact_id, error = %e, "cannot load a blob to serve");
            }
        });
    }

    /// Serves every inbound segment stream, each in its own task, at most
    /// `STREAMS_SERVED_MAX` at once.
    pub(crate) fn spawn_stream_server(
        self: Arc<Self>,
        mut incoming: libp2p_stream::IncomingStreams,
    ) {
        tokio::spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                let Ok(permit) = self.streams.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "too many segment streams; dropping one");
                    continue;
                };
                if !self.claim_stream(peer) {
                    tracing::warn!(%peer, "too many segment streams from one peer; dropping one");
                    continue;
                }
                let server = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = server.serve_stream(stream).await {
                        tracing::debug!(%peer, error = %e, "segment stream ended");
                    }
                    server.release_stream(peer);
                    drop(permit);
                });
            }
        });
    }

    fn claim_stream(&self, peer: PeerId) -> bool {
        let mut by_peer = self
            .streams_by_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let count = by_peer.entry(peer).or_default();
        if *count >= STREAMS_SERVED_PER_PEER_MAX {
            return false;
        }
        *count += 1;
        true
    }

    fn release_stream(&self, peer: PeerId) {
        let mut by_peer = self
            .streams_by_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = by_peer.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                by_peer.remove(&peer);
            }
        }
    }

    /// One peer's stream: requests in, answers out in the same order, one
    /// at a time (the peer cannot queue work on us faster than it reads).
    async fn serve_stream(&self, mut stream: Stream) -> io::Result<()> {
        loop {
            let next =
                tokio::time::timeout(STREAM_IDLE_TIMEOUT, wire::read_stream_request(&mut stream));
            let Ok(request) = next.await else {
                return Ok(());
            };
            let Some(request) = request? else {
                return Ok(());
            };
            tracing::debug!(?request, "serving");
            let BlobRequest::Range {
                artifact_id,
                segment,
            } = request
            else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "only ranges go on a segment stream",
                ));
            };
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let response = self.segment(artifact_id, segment).await;
            wire::write_stream_response(&mut stream, &response).await?;
        }
    }

    async fn segment(&self, artifact_id: ArtifactId, segment: u32) -> BlobResponse {
        let held = match self.held.get(&artifact_id) {
            Some(held) => Some(held),
            None => {
                let (store, set) = (self.store.clone(), self.held.clone());
                match tokio::task::spawn_blocking(move || set.load(&store, &artifact_id)).await {
                    Ok(Ok(held)) => held,
                    Ok(Err(e)) => return BlobResponse::Unavailable(e.to_string()),
                    Err(e) => return BlobResponse::Unavailable(e.to_string()),
                }
            }
        };
        match held.and_then(|held| held.encode(segment)) {
            Some(mut encoded) => {
                if self.tamper
                    && let Some(last) = encoded.last_mut()
                {
                    *last ^= 0x55;
                }
                BlobResponse::Segment {
                    segment,
                    encoded: encoded.into(),
                }
            }
            None => BlobResponse::Missing { segment },
        }
    }
}
