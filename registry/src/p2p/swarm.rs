//! The libp2p swarm: one task owns it; [`P2p`] talks to it over a channel.

use super::wire::{BlobCodec, BlobRequest, BlobResponse, PROTOCOL};
use super::{BLOCK_SIZE, FetchError};
use crate::Store;
use bao_tree::io::outboard::PreOrderMemOutboard;
use bonus_ids::ArtifactId;
use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryResult, RecordKey};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, noise, tcp, yamux};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How a node joins the overlay.
pub struct P2pConfig {
    /// The one address to listen on and advertise (loopback in tests).
    pub listen: Multiaddr,
    /// Peers to dial first, as `/ip4/…/tcp/…/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// The node key: its public half is the libp2p peer id.
    pub node_key_seed: [u8; 32],
    /// Byzantine test mode: serve every range with one byte flipped.
    pub serve_tampered: bool,
    /// Test mode: wait this long before answering each range (a slow peer).
    pub serve_delay: Duration,
}

/// A handle on the running swarm. Cheap to clone.
#[derive(Clone)]
pub struct P2p {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    listen_addrs: Arc<Vec<Multiaddr>>,
}

pub(crate) enum Command {
    Provide(ArtifactId),
    Providers(ArtifactId, oneshot::Sender<HashSet<PeerId>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    Dial(Multiaddr),
    Request(
        PeerId,
        BlobRequest,
        oneshot::Sender<Result<BlobResponse, String>>,
    ),
}

const COMMANDS_MAX: usize = 1024;
const SERVE_CACHE_ENTRIES_MAX: usize = 8;

#[derive(NetworkBehaviour)]
struct Behaviour {
    kad: kad::Behaviour<kad::store::MemoryStore>,
    blobs: request_response::Behaviour<BlobCodec>,
    identify: identify::Behaviour,
}

impl P2p {
    /// Starts the swarm on the current tokio runtime and waits until it
    /// listens.
    pub async fn start(config: P2pConfig, store: Arc<Store>) -> Result<P2p, FetchError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| FetchError::Network(format!("{what}: {e}"));
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(config.node_key_seed)
            .map_err(|e| failed("node key", &e))?;
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| failed("transport", &e))?
            .with_behaviour(|key| {
                let mut kad_config = kad::Config::new(StreamProtocol::new("/bonus/kad/1"));
                kad_config.set_query_timeout(Duration::from_secs(10));
                let mut kad = kad::Behaviour::with_config(
                    peer_id,
                    kad::store::MemoryStore::new(peer_id),
                    kad_config,
                );
                // No AutoNAT: every node serves the DHT.
                kad.set_mode(Some(kad::Mode::Server));
                Behaviour {
                    kad,
                    blobs: request_response::Behaviour::new(
                        [(PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(Duration::from_secs(30)),
                    ),
                    identify: identify::Behaviour::new(identify::Config::new(
                        "/bonus/1".into(),
                        key.public(),
                    )),
                }
            })
            .map_err(|e| failed("behaviour", &e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        swarm
            .listen_on(config.listen.clone())
            .map_err(|e| failed("listen", &e))?;
        let listen_addr = loop {
            match swarm.next().await {
                Some(SwarmEvent::NewListenAddr { address, .. }) => break address,
                Some(SwarmEvent::ListenerError { error, .. }) => {
                    return Err(failed("listen", &error));
                }
                Some(_) => continue,
                None => return Err(FetchError::Network("swarm ended".into())),
            }
        };
        // Advertise exactly the address listened on, nothing identify or
        // interfaces would add.
        swarm.add_external_address(listen_addr.clone());
        for addr in &config.bootstrap {
            if let Some(peer) = peer_of(addr) {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        let (commands, receiver) = mpsc::channel(COMMANDS_MAX);
        let event_loop = EventLoop {
            swarm,
            store,
            commands: receiver,
            pending_requests: HashMap::new(),
            pending_providers: HashMap::new(),
            served: mpsc::unbounded_channel(),
            serve_cache: Arc::new(Mutex::new(Vec::new())),
            serve_tampered: config.serve_tampered,
            serve_delay: config.serve_delay,
        };
        tokio::spawn(event_loop.run());
        Ok(P2p {
            commands,
            peer_id,
            listen_addrs: Arc::new(vec![listen_addr]),
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Addresses to dial this node at, with its peer id.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .iter()
            .map(|a| {
                a.clone()
                    .with(libp2p::multiaddr::Protocol::P2p(self.peer_id))
            })
            .collect()
    }

    /// Announces that this node holds `artifact_id`.
    pub async fn provide(&self, artifact_id: ArtifactId) {
        let _ = self.commands.send(Command::Provide(artifact_id)).await;
    }

    pub(crate) async fn providers(&self, artifact_id: ArtifactId) -> HashSet<PeerId> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Providers(artifact_id, tx))
            .await
            .is_err()
        {
            return HashSet::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Joins a peer learned after start (from the ledger's node registry,
    /// say), `/ip4/…/tcp/…/p2p/<peer id>`; nothing if already connected.
    pub async fn dial(&self, addr: Multiaddr) {
        let _ = self.commands.send(Command::Dial(addr)).await;
    }

    /// Peers with an open connection.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::ConnectedPeers(tx))
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    pub(crate) async fn request(
        &self,
        peer: PeerId,
        request: BlobRequest,
    ) -> Result<BlobResponse, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request(peer, request, tx))
            .await
            .map_err(|_| "the swarm stopped".to_string())?;
        rx.await.map_err(|_| "the swarm stopped".to_string())?
    }
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

type Served = (ResponseChannel<BlobResponse>, BlobResponse);

type ServeCache = Arc<Mutex<Vec<(ArtifactId, Arc<(Vec<u8>, PreOrderMemOutboard)>)>>>;

struct EventLoop {
    swarm: libp2p::Swarm<Behaviour>,
    store: Arc<Store>,
    commands: mpsc::Receiver<Command>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<BlobResponse, String>>>,
    pending_providers: HashMap<kad::QueryId, (HashSet<PeerId>, oneshot::Sender<HashSet<PeerId>>)>,
    /// Answers computed off the loop, to be sent from it.
    served: (
        mpsc::UnboundedSender<Served>,
        mpsc::UnboundedReceiver<Served>,
    ),
    serve_cache: ServeCache,
    serve_tampered: bool,
    serve_delay: Duration,
}

impl EventLoop {
    async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                Some((channel, response)) = self.served.1.recv() => {
                    let _ = self.swarm.behaviour_mut().blobs.send_response(channel, response);
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Provide(id) => {
                let key = RecordKey::new(id.as_bytes());
                if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                    tracing::warn!(artifact_id = %id, error = %e, "cannot announce");
                }
            }
            Command::Providers(id, reply) => {
                let query = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(RecordKey::new(id.as_bytes()));
                self.pending_providers
                    .insert(query, (HashSet::new(), reply));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Dial(addr) => {
                let Some(peer) = peer_of(&addr) else {
                    tracing::warn!(%addr, "a peer address needs /p2p/<peer id>");
                    return;
                };
                if self.swarm.is_connected(&peer) {
                    return;
                }
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, error = %e, "cannot dial peer");
                }
                let _ = self.swarm.behaviour_mut().kad.bootstrap();
            }
            Command::Request(peer, request, reply) => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .blobs
                    .send_request(&peer, request);
                self.pending_requests.insert(id, reply);
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                ..
            })) => self.on_query(id, result, step.last),
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(event)) => self.on_blob_event(event),
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(%peer_id, "connected");
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            _ => {}
        }
    }

    fn on_query(&mut self, id: kad::QueryId, result: QueryResult, last: bool) {
        if let QueryResult::GetProviders(result) = result
            && let Some((found, _)) = self.pending_providers.get_mut(&id)
        {
            if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result {
                found.extend(providers);
            }
            if last && let Some((found, reply)) = self.pending_providers.remove(&id) {
                let _ = reply.send(found);
            }
        }
    }

    fn on_blob_event(&mut self, event: request_response::Event<BlobRequest, BlobResponse>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve(request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            _ => {}
        }
    }

    /// Answers off the event loop: reading a blob and building its bao
    /// outboard is disk and CPU work.
    fn serve(&mut self, request: BlobRequest, channel: ResponseChannel<BlobResponse>) {
        tracing::debug!(?request, "serving");
        let store = self.store.clone();
        let cache = self.serve_cache.clone();
        let served = self.served.0.clone();
        let tamper = self.serve_tampered;
        let delay = match request {
            BlobRequest::Range { .. } => self.serve_delay,
            BlobRequest::Info(_) => Duration::ZERO,
        };
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(delay);
            let response = answer(&store, &cache, request, tamper);
            let _ = served.send((channel, response));
        });
    }
}

fn answer(store: &Store, cache: &ServeCache, request: BlobRequest, tamper: bool) -> BlobResponse {
    match request {
        BlobRequest::Info(id) => match store.blob_info(&id) {
            Ok(info) => BlobResponse::Info(info.map(|i| i.bytes)),
            Err(e) => BlobResponse::Unavailable(e.to_string()),
        },
        BlobRequest::Range {
            artifact_id,
            start_chunk,
            end_chunk,
        } => {
            let entry = match cached_blob(store, cache, &artifact_id) {
                Ok(entry) => entry,
                Err(e) => return BlobResponse::Unavailable(e.to_string()),
            };
            let (data, outboard) = &*entry;
            let ranges = bao_tree::ChunkRanges::from(
                bao_tree::ChunkNum(start_chunk)..bao_tree::ChunkNum(end_chunk),
            );
            let mut encoded = Vec::new();
            if let Err(e) = bao_tree::io::sync::encode_ranges_validated(
                &data[..],
                outboard,
                &ranges,
                &mut encoded,
            ) {
                return BlobResponse::Unavailable(format!("encoding: {e}"));
            }
            if tamper && !encoded.is_empty() {
                let last = encoded.len() - 1;
                encoded[last] ^= 0x55;
            }
            BlobResponse::Range(encoded)
        }
    }
}

fn cached_blob(
    store: &Store,
    cache: &ServeCache,
    artifact_id: &ArtifactId,
) -> crate::Result<Arc<(Vec<u8>, PreOrderMemOutboard)>> {
    if let Some((_, entry)) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(id, _)| id == artifact_id)
    {
        return Ok(entry.clone());
    }
    let data = store.read_blob(artifact_id)?;
    let outboard = PreOrderMemOutboard::create(&data, BLOCK_SIZE);
    let entry = Arc::new((data, outboard));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= SERVE_CACHE_ENTRIES_MAX {
        cache.remove(0);
    }
    cache.push((*artifact_id, entry.clone()));
    Ok(entry)
}
