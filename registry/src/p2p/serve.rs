//! Serving blobs to peers: have-bitmaps, and segments over long-lived
//! streams (direct TCP or libp2p), from memory ([`HeldSet`]): complete
//! blobs and the verified segments of blobs still being fetched.

use super::held::{Encoded, HeldSet, full_bitmap};
use super::limits::{
    DIRECT_HANDSHAKES_MAX, DIRECT_HELLO_TIMEOUT, STREAM_IDLE_TIMEOUT, STREAMS_SERVED_MAX,
    STREAMS_SERVED_PER_PEER_MAX,
};
use super::wire::{self, BlobRequest, BlobResponse, Direct, Have};
use crate::Store;
use bonus_ids::ArtifactId;
use futures::{AsyncRead, AsyncWrite, StreamExt};
use libp2p::PeerId;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::compat::TokioAsyncReadCompatExt;

/// The direct segment port and the key its tickets are made with.
pub(crate) struct DirectKey {
    pub(crate) port: u16,
    key: [u8; 32],
}

impl DirectKey {
    /// Tickets are MACs under a key derived from the node key: stable
    /// across restarts, unknown to anyone else.
    pub(crate) fn new(port: u16, node_key_seed: &[u8; 32]) -> DirectKey {
        DirectKey {
            port,
            key: blake3::derive_key("bonus/p2p/direct-segment-ticket/v1", node_key_seed),
        }
    }

    fn ticket(&self, peer: &PeerId) -> blake3::Hash {
        blake3::keyed_hash(&self.key, &peer.to_bytes())
    }

    /// Whether `ticket` is the one handed to `peer` (in constant time).
    fn admits(&self, peer: &PeerId, ticket: &[u8; 32]) -> bool {
        self.ticket(peer) == blake3::Hash::from_bytes(*ticket)
    }
}

/// One served stream's place: released, for its peer and in all, on drop.
pub(crate) struct StreamSlot {
    server: Arc<Server>,
    peer: PeerId,
    _permit: OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.server.release_stream(self.peer);
    }
}

/// What a node serves, and how. Shared by the swarm task and the stream
/// tasks; lives as long as the [`P2p`](super::P2p).
pub(crate) struct Server {
    pub(crate) store: Arc<Store>,
    pub(crate) held: Arc<HeldSet>,
    /// Byzantine test mode: every segment with one byte flipped.
    pub(crate) tamper: bool,
    /// Test mode: wait this long before each segment.
    pub(crate) delay: Duration,
    /// Set if segments are also served over plain TCP.
    pub(crate) direct: Option<DirectKey>,
    streams: Arc<Semaphore>,
    streams_by_peer: Mutex<HashMap<PeerId, usize>>,
}

impl Server {
    pub(crate) fn new(
        store: Arc<Store>,
        tamper: bool,
        delay: Duration,
        direct: Option<DirectKey>,
    ) -> Server {
        Server {
            store,
            held: Arc::new(HeldSet::default()),
            tamper,
            delay,
            direct,
            streams: Arc::new(Semaphore::new(STREAMS_SERVED_MAX)),
            streams_by_peer: Mutex::new(HashMap::new()),
        }
    }

    /// Answers `asker`'s have query (blocking: may read the store's
    /// index), with its ticket for the direct port if there is one.
    pub(crate) fn info(&self, artifact_id: &ArtifactId, asker: &PeerId) -> BlobResponse {
        let direct = self.direct.as_ref().map(|direct| Direct {
            port: direct.port,
            ticket: *direct.ticket(asker).as_bytes(),
        });
        if let Some(held) = self.held.get(artifact_id) {
            return BlobResponse::Info(Some(Have {
                bytes: held.bytes(),
                segments: held.have(),
                direct,
            }));
        }
        match self.store.blob_info(artifact_id) {
            Ok(Some(info)) => BlobResponse::Info(Some(Have {
                bytes: info.bytes,
                segments: full_bitmap(wire::n_segments(info.bytes)),
                direct,
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
                let Some(slot) = self.admit(peer) else {
                    continue;
                };
                let server = self.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = server.serve_stream(stream).await {
                        tracing::debug!(%peer, error = %e, "segment stream ended");
                    }
                });
            }
        });
    }

    /// Serves direct segment streams: plain TCP connections that open with
    /// a hello naming a peer and its ticket. At most
    /// `DIRECT_HANDSHAKES_MAX` connections wait for their hello, each at
    /// most `DIRECT_HELLO_TIMEOUT`; then the stream counts against the
    /// named peer's limits like a libp2p one.
    pub(crate) fn spawn_direct_server(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let handshakes = Arc::new(Semaphore::new(DIRECT_HANDSHAKES_MAX));
        tokio::spawn(async move {
            loop {
                let (socket, from) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, say: let some close.
                        tracing::warn!(error = %e, "cannot accept a direct segment stream");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                    tracing::debug!(%from, "too many direct streams without a hello; closing one");
                    continue;
                };
                let server = self.clone();
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    let mut stream = socket.compat();
                    let hello =
                        tokio::time::timeout(DIRECT_HELLO_TIMEOUT, wire::read_hello(&mut stream));
                    let hello = hello.await;
                    drop(handshake);
                    let (peer, ticket) = match hello {
                        Ok(Ok(hello)) => hello,
                        Ok(Err(e)) => {
                            tracing::debug!(%from, error = %e, "bad direct stream hello");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%from, "no direct stream hello in time");
                            return;
                        }
                    };
                    let admitted = server
                        .direct
                        .as_ref()
                        .is_some_and(|direct| direct.admits(&peer, &ticket));
                    if !admitted {
                        tracing::warn!(%from, %peer, "direct stream with a wrong ticket");
                        return;
                    }
                    let Some(_slot) = server.admit(peer) else {
                        return;
                    };
                    if wire::write_hello_accepted(&mut stream).await.is_err() {
                        return;
                    }
                    if let Err(e) = server.serve_stream(stream).await {
                        tracing::debug!(%peer, error = %e, "direct segment stream ended");
                    }
                });
            }
        });
    }

    /// A place for one more stream of `peer`, if neither it nor the node
    /// is at its limit.
    fn admit(self: &Arc<Self>, peer: PeerId) -> Option<StreamSlot> {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many segment streams; dropping one");
            return None;
        };
        let mut by_peer = self
            .streams_by_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let count = by_peer.entry(peer).or_default();
        if *count >= STREAMS_SERVED_PER_PEER_MAX {
            tracing::warn!(%peer, "too many segment streams from one peer; dropping one");
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            server: self.clone(),
            peer,
            _permit: permit,
        })
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
    async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
    ) -> io::Result<()> {
        // One encoding buffer for the stream's life, not a fresh megabyte
        // (and its page faults) per segment.
        let mut encoded = Vec::new();
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
            match self.segment(artifact_id, segment, &mut encoded).await {
                Ok(Encoded::Kept(kept)) => wire::write_segment(&mut stream, segment, &kept).await?,
                Ok(Encoded::InBuffer) => {
                    wire::write_segment(&mut stream, segment, &encoded).await?
                }
                Err(response) => wire::write_stream_response(&mut stream, &response).await?,
            }
        }
    }

    /// A held segment's encoding (kept, or encoded into `buffer`), or the
    /// answer that says why not.
    async fn segment(
        &self,
        artifact_id: ArtifactId,
        segment: u32,
        buffer: &mut Vec<u8>,
    ) -> Result<Encoded, BlobResponse> {
        let held = match self.held.get(&artifact_id) {
            Some(held) => Some(held),
            None => {
                let (store, set) = (self.store.clone(), self.held.clone());
                match tokio::task::spawn_blocking(move || set.load(&store, &artifact_id)).await {
                    Ok(Ok(held)) => held,
                    Ok(Err(e)) => return Err(BlobResponse::Unavailable(e.to_string())),
                    Err(e) => return Err(BlobResponse::Unavailable(e.to_string())),
                }
            }
        };
        let encoded = held
            .and_then(|held| held.encoded(segment, buffer))
            .ok_or(BlobResponse::Missing { segment })?;
        if !self.tamper {
            return Ok(encoded);
        }
        if let Encoded::Kept(kept) = encoded {
            buffer.clear();
            buffer.extend_from_slice(&kept);
        }
        if let Some(last) = buffer.last_mut() {
            *last ^= 0x55;
        }
        Ok(Encoded::InBuffer)
    }
}
