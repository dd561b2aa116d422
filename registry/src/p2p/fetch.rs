//! Fetching an artifact by id from every peer that holds some of it at
//! once, verifying each segment as it arrives.
//!
//! A coordinator ([`Fetch`]) knows each source's have-bitmap and deals
//! segments to one puller task per source ([`pull`]), rarest first, a few
//! in flight on each; a puller keeps one stream open to its peer for the
//! whole fetch. Verified segments are served to other peers at once.

use super::P2p;
use super::held::{Held, bit};
use super::limits::{
    DIRECT_HELLO_TIMEOUT, FETCH_STALL_TIMEOUT, HAVE_REFRESH, PROVIDERS_REFRESH, SEGMENT_TIMEOUT,
    SEGMENTS_IN_FLIGHT_PER_PEER, SOURCES_MAX,
};
use super::wire::{self, BlobRequest, BlobResponse, Direct, Have, STREAM_PROTOCOL, StreamAnswer};
use crate::Store;
use bonus_ids::ArtifactId;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::PeerId;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::compat::TokioAsyncReadCompatExt;

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
    /// Sources pulled from over a direct TCP stream (the others over
    /// libp2p).
    pub direct_streams: u64,
}

impl P2p {
    /// Fetches `artifact_id` from peers into `store` (a no-op if held) and
    /// announces it. Segments are spread over every source, the origin and
    /// peers still fetching it alike; a source that fails or lies is
    /// dropped for this fetch and its segments go to the others.
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
        let started = Instant::now();
        let (bytes, haves) = self.find_sources(artifact_id).await?;
        let found = started.elapsed();
        let bytes_max = store.config().artifact_bytes_max;
        if bytes > bytes_max {
            return Err(FetchError::TooLarge {
                artifact_id,
                bytes,
                bytes_max,
            });
        }
        let file = store.verified_file(artifact_id, bytes)?;
        let held = self
            .server
            .held
            .start_fetch(artifact_id, bytes, file)
            .map_err(FetchError::Network)?;
        let result = Fetch::new(self.clone(), held.clone(), haves).run().await;
        let transferred = started.elapsed();
        let result = match result {
            Ok(report) => held.commit(store).map(|()| report).map_err(Into::into),
            Err(e) => Err(e),
        };
        tracing::debug!(
            %artifact_id,
            bytes,
            sources_ms = found.as_secs_f64() * 1e3,
            transferred_ms = transferred.as_secs_f64() * 1e3,
            stored_ms = started.elapsed().as_secs_f64() * 1e3,
            ok = result.is_ok(),
            "fetch ended"
        );
        self.server.held.end_fetch(&held);
        if result.is_ok() {
            self.provide(artifact_id).await;
        }
        result
    }

    /// Peers that hold some of the artifact, with their have-bitmaps, and
    /// its size (which the bao tree's root later proves). Connected peers
    /// are asked first: in a swarm the origin and the fellow fetchers are
    /// usually among them, and one round trip to each beats a Kademlia
    /// lookup (12–130 ms among 11 nodes on loopback). The lookup runs only
    /// if none of them holds a segment; the fetch itself looks up
    /// providers again as it goes.
    async fn find_sources(
        &self,
        artifact_id: ArtifactId,
    ) -> Result<(u64, HashMap<PeerId, Have>), FetchError> {
        let mut connected = self.connected_peers().await;
        connected.retain(|peer| *peer != self.peer_id());
        connected.truncate(SOURCES_MAX);
        let mut found = self.haves(artifact_id, connected).await;
        let holds_some = |have: &Have| have.segments.iter().any(|byte| *byte != 0);
        if !found.iter().any(|(_, have)| holds_some(have)) {
            let asked: HashSet<PeerId> = found.iter().map(|(peer, _)| *peer).collect();
            let others = self
                .candidates(artifact_id)
                .await
                .into_iter()
                .filter(|peer| !asked.contains(peer))
                .collect();
            found.extend(self.haves(artifact_id, others).await);
        }
        let mut by_size: Vec<(u64, HashMap<PeerId, Have>)> = Vec::new();
        for (peer, have) in found {
            match by_size.iter_mut().find(|(size, _)| *size == have.bytes) {
                Some((_, peers)) => drop(peers.insert(peer, have)),
                None => by_size.push((have.bytes, HashMap::from([(peer, have)]))),
            }
        }
        // Peers may disagree on the size; the majority is tried (a wrong
        // size cannot verify against the root, so liars only cost time).
        by_size.sort_by_key(|(_, peers)| std::cmp::Reverse(peers.len()));
        by_size
            .into_iter()
            .next()
            .ok_or(FetchError::NoSource { artifact_id })
    }

    /// The have-bitmaps of those of `peers` that hold some of the
    /// artifact, asked all at once.
    async fn haves(&self, artifact_id: ArtifactId, peers: Vec<PeerId>) -> Vec<(PeerId, Have)> {
        let mut asks = JoinSet::new();
        for peer in peers {
            let p2p = self.clone();
            asks.spawn(async move { (peer, p2p.have(peer, artifact_id).await) });
        }
        let mut found = Vec::new();
        while let Some(Ok((peer, have))) = asks.join_next().await {
            if let Some(have) = have {
                found.push((peer, have));
            }
        }
        found
    }

    /// Providers and connected peers, but not this node; at most
    /// `SOURCES_MAX`.
    async fn candidates(&self, artifact_id: ArtifactId) -> Vec<PeerId> {
        let mut candidates: HashSet<PeerId> = self.providers(artifact_id).await;
        candidates.extend(self.connected_peers().await);
        candidates.remove(&self.peer_id());
        candidates.into_iter().take(SOURCES_MAX).collect()
    }

    pub(crate) async fn have(&self, peer: PeerId, artifact_id: ArtifactId) -> Option<Have> {
        match self.request(peer, BlobRequest::Info(artifact_id)).await {
            Ok(BlobResponse::Info(have)) => have,
            _ => None,
        }
    }
}

/// What pullers and queries tell the coordinator.
enum Event {
    Have(PeerId, Option<Have>),
    Candidates(Vec<PeerId>),
    Opened {
        direct: bool,
    },
    Verified {
        peer: PeerId,
        segment: u32,
    },
    Missing {
        peer: PeerId,
        segment: u32,
    },
    Failed {
        peer: PeerId,
        reason: String,
    },
    /// A verified segment could not be written to the store.
    Unstorable(crate::Error),
}

/// One fetch's coordinator: owns who-has-what and who-is-asked-what.
struct Fetch {
    p2p: P2p,
    held: Arc<Held>,
    artifact_id: ArtifactId,
    /// Known have-bitmaps of the sources, banned ones removed.
    haves: HashMap<PeerId, Vec<u8>>,
    /// The sources' direct ports and our tickets for them.
    directs: HashMap<PeerId, Direct>,
    candidates: HashSet<PeerId>,
    banned: HashSet<PeerId>,
    asking: HashSet<PeerId>,
    asking_providers: bool,
    /// Segments asked of each puller and not yet answered.
    in_flight: HashMap<PeerId, Vec<u32>>,
    pullers: HashMap<PeerId, mpsc::Sender<u32>>,
    tasks: JoinSet<()>,
    events: (mpsc::Sender<Event>, mpsc::Receiver<Event>),
    /// Where the scan for a segment starts: random, so that fetchers
    /// starting together ask the origin for different segments.
    scan_start: u32,
    report: FetchReport,
    last_failure: String,
    last_progress: Instant,
    /// Set when the store refused a segment: the fetch ends with it.
    unstorable: Option<crate::Error>,
}

impl Fetch {
    fn new(p2p: P2p, held: Arc<Held>, sources: HashMap<PeerId, Have>) -> Fetch {
        let artifact_id = held.artifact_id();
        let random = std::collections::hash_map::RandomState::new().hash_one(artifact_id);
        let n_segments = held.n_segments();
        let directs = sources
            .iter()
            .filter_map(|(peer, have)| Some((*peer, have.direct?)))
            .collect();
        let haves = sources
            .into_iter()
            .map(|(peer, have)| (peer, have.segments))
            .collect::<HashMap<_, _>>();
        Fetch {
            candidates: haves.keys().copied().collect(),
            artifact_id,
            haves,
            directs,
            banned: HashSet::new(),
            asking: HashSet::new(),
            asking_providers: false,
            in_flight: HashMap::new(),
            pullers: HashMap::new(),
            tasks: JoinSet::new(),
            // Room for every answer that can be outstanding at once.
            events: mpsc::channel(SOURCES_MAX * (SEGMENTS_IN_FLIGHT_PER_PEER + 2) + 2),
            scan_start: (random % u64::from(n_segments.max(1))) as u32,
            report: FetchReport {
                bytes: held.bytes(),
                ..FetchReport::default()
            },
            last_failure: String::new(),
            last_progress: Instant::now(),
            unstorable: None,
            held,
            p2p,
        }
    }

    async fn run(mut self) -> Result<FetchReport, FetchError> {
        let mut have_tick = tokio::time::interval(HAVE_REFRESH);
        let mut providers_tick = tokio::time::interval(PROVIDERS_REFRESH);
        loop {
            if let Some(e) = self.unstorable.take() {
                return Err(FetchError::Store(e));
            }
            let idle = self.in_flight.values().all(Vec::is_empty);
            // Idle: every answer asked for has been counted.
            if idle && self.held.is_complete() {
                return Ok(self.report);
            }
            while self.tasks.try_join_next().is_some() {}
            self.deal();
            let idle = self.in_flight.values().all(Vec::is_empty);
            if idle && self.last_progress.elapsed() > FETCH_STALL_TIMEOUT {
                return Err(self.failure());
            }
            tokio::select! {
                Some(event) = self.events.1.recv() => self.on_event(event),
                _ = have_tick.tick() => self.ask_haves(),
                _ = providers_tick.tick() => self.ask_providers(),
            }
        }
    }

    fn failure(&self) -> FetchError {
        if self.report.segments_by_peer.is_empty() && self.last_failure.is_empty() {
            return FetchError::NoSource {
                artifact_id: self.artifact_id,
            };
        }
        FetchError::AllSourcesFailed {
            artifact_id: self.artifact_id,
            reason: format!("stalled; last failure: {}", self.last_failure),
        }
    }

    /// Fills every source's pipeline, one segment per source per round so
    /// that all share the work; each gets the rarest segment it has that
    /// nobody is asked for.
    fn deal(&mut self) {
        let held_now = self.held.have();
        let n_segments = self.held.n_segments();
        let mut asked = vec![false; n_segments as usize];
        for segment in self.in_flight.values().flatten() {
            asked[*segment as usize] = true;
        }
        let mut holders = vec![0u32; n_segments as usize];
        for have in self.haves.values() {
            for (segment, count) in holders.iter_mut().enumerate() {
                *count += u32::from(bit(have, segment as u32));
            }
        }
        let mut peers: Vec<PeerId> = self.haves.keys().copied().collect();
        peers.sort_by_key(|peer| self.in_flight.get(peer).map_or(0, Vec::len));
        loop {
            let mut dealt = false;
            for peer in &peers {
                if self.in_flight.get(peer).map_or(0, Vec::len) >= SEGMENTS_IN_FLIGHT_PER_PEER {
                    continue;
                }
                let Some(have) = self.haves.get(peer) else {
                    continue;
                };
                let wanted = (0..n_segments)
                    .map(|i| (self.scan_start + i) % n_segments)
                    .filter(|s| !bit(&held_now, *s) && !asked[*s as usize] && bit(have, *s))
                    .min_by_key(|s| holders[*s as usize]);
                let Some(segment) = wanted else {
                    continue;
                };
                if self.ask(*peer, segment) {
                    asked[segment as usize] = true;
                    dealt = true;
                }
            }
            if !dealt {
                return;
            }
        }
    }

    /// Hands a segment to the peer's puller, starting it if need be.
    fn ask(&mut self, peer: PeerId, segment: u32) -> bool {
        let puller = self.pullers.entry(peer).or_insert_with(|| {
            let (sender, assigned) = mpsc::channel(SEGMENTS_IN_FLIGHT_PER_PEER);
            let (p2p, held, events) = (self.p2p.clone(), self.held.clone(), self.events.0.clone());
            let source = Source {
                peer,
                direct: self.directs.get(&peer).copied(),
            };
            self.tasks
                .spawn(pull(p2p, source, self.artifact_id, held, assigned, events));
            sender
        });
        if puller.try_send(segment).is_err() {
            return false;
        }
        self.in_flight.entry(peer).or_default().push(segment);
        true
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Have(peer, have) => {
                self.asking.remove(&peer);
                if let Some(have) = have
                    && have.bytes == self.held.bytes()
                    && !self.banned.contains(&peer)
                {
                    if let Some(direct) = have.direct {
                        self.directs.insert(peer, direct);
                    }
                    self.haves.insert(peer, have.segments);
                }
            }
            Event::Candidates(peers) => {
                self.asking_providers = false;
                for peer in peers {
                    if self.candidates.len() < SOURCES_MAX && peer != self.p2p.peer_id() {
                        self.candidates.insert(peer);
                    }
                }
            }
            Event::Opened { direct } => self.report.direct_streams += u64::from(direct),
            Event::Verified { peer, segment } => {
                tracing::debug!(%peer, segment, "segment verified");
                self.answered(peer, segment);
                self.last_progress = Instant::now();
                match self
                    .report
                    .segments_by_peer
                    .iter_mut()
                    .find(|(p, _)| *p == peer)
                {
                    Some((_, count)) => *count += 1,
                    None => self.report.segments_by_peer.push((peer, 1)),
                }
                if self
                    .report
                    .segments_by_peer
                    .iter()
                    .map(|(_, n)| n)
                    .sum::<u64>()
                    == 1
                {
                    // Others may pull it from us from now on.
                    let (p2p, artifact_id) = (self.p2p.clone(), self.artifact_id);
                    tokio::spawn(async move { p2p.provide_partial(artifact_id).await });
                }
            }
            Event::Missing { peer, segment } => {
                self.answered(peer, segment);
                if let Some(have) = self.haves.get_mut(&peer)
                    && let Some(byte) = have.get_mut((segment / 8) as usize)
                {
                    *byte &= !(1 << (segment % 8));
                }
            }
            Event::Unstorable(e) => {
                tracing::error!(artifact_id = %self.artifact_id, error = %e, "cannot store a verified segment");
                self.unstorable = Some(e);
            }
            Event::Failed { peer, reason } => {
                tracing::warn!(%peer, artifact_id = %self.artifact_id, %reason, "dropping source");
                let lost = self.in_flight.remove(&peer).unwrap_or_default();
                self.report.segments_retried += lost.len() as u64;
                self.pullers.remove(&peer);
                self.haves.remove(&peer);
                self.candidates.remove(&peer);
                self.banned.insert(peer);
                self.last_failure = reason;
            }
        }
    }

    fn answered(&mut self, peer: PeerId, segment: u32) {
        if let Some(segments) = self.in_flight.get_mut(&peer) {
            segments.retain(|s| *s != segment);
        }
    }

    /// Asks every candidate that is not known to hold everything which
    /// segments it has now.
    fn ask_haves(&mut self) {
        let all = self.held.n_segments();
        for peer in &self.candidates {
            let complete = self
                .haves
                .get(peer)
                .is_some_and(|have| (0..all).all(|s| bit(have, s)));
            if complete || self.banned.contains(peer) || !self.asking.insert(*peer) {
                continue;
            }
            let (p2p, peer, artifact_id) = (self.p2p.clone(), *peer, self.artifact_id);
            let events = self.events.0.clone();
            self.tasks.spawn(async move {
                let have = p2p.have(peer, artifact_id).await;
                let _ = events.send(Event::Have(peer, have)).await;
            });
        }
    }

    /// Looks up providers: peers that started fetching after us.
    fn ask_providers(&mut self) {
        if self.asking_providers {
            return;
        }
        self.asking_providers = true;
        let (p2p, artifact_id) = (self.p2p.clone(), self.artifact_id);
        let events = self.events.0.clone();
        self.tasks.spawn(async move {
            let mut peers: Vec<PeerId> = p2p.providers(artifact_id).await.into_iter().collect();
            peers.extend(p2p.connected_peers().await);
            let _ = events.send(Event::Candidates(peers)).await;
        });
    }
}

/// A source, and how to reach it directly if it says so.
#[derive(Clone, Copy)]
struct Source {
    peer: PeerId,
    direct: Option<Direct>,
}

/// One source's puller: a stream to the peer for the whole fetch, direct
/// if the peer offers it and it connects, libp2p otherwise; asks for the
/// segments the coordinator assigns, several in flight, and verifies each
/// answer against the root before keeping it. Any failure, a lie above
/// all, ends it: the coordinator drops the peer.
async fn pull(
    p2p: P2p,
    source: Source,
    artifact_id: ArtifactId,
    held: Arc<Held>,
    assigned: mpsc::Receiver<u32>,
    events: mpsc::Sender<Event>,
) {
    let peer = source.peer;
    let pulled = match open_direct(&p2p, source).await {
        Some(stream) => {
            let _ = events.send(Event::Opened { direct: true }).await;
            pull_over(stream, peer, artifact_id, held, assigned, &events).await
        }
        None => {
            let mut control = p2p.control.clone();
            match control.open_stream(peer, STREAM_PROTOCOL).await {
                Ok(stream) => {
                    let _ = events.send(Event::Opened { direct: false }).await;
                    pull_over(stream, peer, artifact_id, held, assigned, &events).await
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    if let Err(reason) = pulled {
        let _ = events.send(Event::Failed { peer, reason }).await;
    }
}

/// A direct stream to the source, at the IP it is connected from (never
/// an address it names), with our hello accepted; `None` if it offers
/// none, or it does not connect and accept in time.
async fn open_direct(
    p2p: &P2p,
    source: Source,
) -> Option<tokio_util::compat::Compat<tokio::net::TcpStream>> {
    let direct = source.direct?;
    let ip = p2p.peer_ip(source.peer).await?;
    let addr = SocketAddr::new(ip, direct.port);
    let connect = async {
        let socket = tokio::net::TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let mut stream = socket.compat();
        wire::write_hello(&mut stream, &p2p.peer_id(), &direct.ticket).await?;
        // A server at its limits closes instead: then libp2p, rather than
        // a failed source.
        wire::read_hello_accepted(&mut stream).await?;
        Ok::<_, std::io::Error>(stream)
    };
    match tokio::time::timeout(DIRECT_HELLO_TIMEOUT, connect).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(peer = %source.peer, %addr, error = %e, "no direct stream; using libp2p");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %source.peer, %addr, "direct stream timed out; using libp2p");
            None
        }
    }
}

async fn pull_over<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    peer: PeerId,
    artifact_id: ArtifactId,
    held: Arc<Held>,
    mut assigned: mpsc::Receiver<u32>,
    events: &mpsc::Sender<Event>,
) -> Result<(), String> {
    let (mut reader, mut writer) = stream.split();
    let (sent, mut awaited) = mpsc::channel::<u32>(SEGMENTS_IN_FLIGHT_PER_PEER);
    let ask = async move {
        while let Some(segment) = assigned.recv().await {
            let request = BlobRequest::Range {
                artifact_id,
                segment,
            };
            wire::write_stream_request(&mut writer, &request)
                .await
                .map_err(|e| format!("asking for segment {segment}: {e}"))?;
            if sent.send(segment).await.is_err() {
                break;
            }
        }
        let _ = writer.close().await;
        Ok::<(), String>(())
    };
    let receive = async move {
        while let Some(segment) = awaited.recv().await {
            // A fresh buffer per answer: a verified segment's frame is kept
            // and served as it is.
            let mut buffer = Vec::new();
            let read = wire::read_stream_answer(&mut reader, &mut buffer);
            let answer = tokio::time::timeout(SEGMENT_TIMEOUT, read)
                .await
                .map_err(|_| format!("segment {segment} timed out"))?
                .map_err(|e| format!("segment {segment}: {e}"))?;
            let event = match answer {
                StreamAnswer::Segment(answered) if answered == segment => {
                    // Verified beside the stream, which goes on being read
                    // meanwhile (its window stays open). At most
                    // SEGMENTS_IN_FLIGHT_PER_PEER answers are held.
                    let encoded = bytes::Bytes::from(buffer).slice(wire::SEGMENT_HEAD..);
                    let (held, events) = (held.clone(), events.clone());
                    tokio::spawn(verify_and_keep(peer, segment, encoded, held, events));
                    continue;
                }
                StreamAnswer::Other(BlobResponse::Missing { segment: answered })
                    if answered == segment =>
                {
                    Event::Missing { peer, segment }
                }
                StreamAnswer::Segment(_) => {
                    return Err(format!("segment {segment}: another segment came"));
                }
                StreamAnswer::Other(other) => {
                    return Err(format!(
                        "segment {segment}: unexpected answer {}",
                        kind(&other)
                    ));
                }
            };
            if events.send(event).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    };
    futures::future::try_join(ask, receive).await.map(|_| ())
}

/// Verifies a segment off the async threads and keeps it; a segment that
/// does not verify is a lie: the coordinator drops its sender. One that
/// cannot be written to the store ends the fetch (the fault is ours).
async fn verify_and_keep(
    peer: PeerId,
    segment: u32,
    encoded: bytes::Bytes,
    held: Arc<Held>,
    events: mpsc::Sender<Event>,
) {
    let kept = tokio::task::spawn_blocking(move || match held.verify(segment, encoded) {
        Ok(verified) => match held.absorb(verified) {
            Ok(_) => Event::Verified { peer, segment },
            Err(e) => Event::Unstorable(e),
        },
        Err(reason) => Event::Failed { peer, reason },
    })
    .await;
    let event = kept.unwrap_or_else(|e| Event::Failed {
        peer,
        reason: format!("verifying segment {segment}: {e}"),
    });
    let _ = events.send(event).await;
}

fn kind(response: &BlobResponse) -> &'static str {
    match response {
        BlobResponse::Info(_) => "info",
        BlobResponse::Segment { .. } => "another segment",
        BlobResponse::Missing { .. } => "missing another segment",
        BlobResponse::Unavailable(_) => "unavailable",
    }
}
