//! The libp2p swarm: one task owns it; [`P2p`] talks to it over a channel.

use super::FetchError;
use super::limits::YAMUX_STREAMS_MAX;
use super::serve::{DirectKey, Server};
use super::wire::{BlobCodec, BlobRequest, BlobResponse, PROTOCOL, STREAM_PROTOCOL};
use crate::Store;
use bonus_ids::ArtifactId;
use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryResult, RecordKey};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, noise, tcp, yamux};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
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
    /// Byzantine test mode: serve every segment with one byte flipped.
    pub serve_tampered: bool,
    /// Test mode: wait this long before answering each segment (a slow peer).
    pub serve_delay: Duration,
    /// Also serve segments over plain TCP, on the listen address's IP and
    /// a port the OS picks (announced in Info answers). Fetchers use it
    /// when they can connect, a libp2p stream otherwise.
    pub direct_segments: bool,
}

/// A handle on the running swarm. Cheap to clone.
#[derive(Clone)]
pub struct P2p {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    listen_addrs: Arc<Vec<Multiaddr>>,
    /// Opens segment streams to peers.
    pub(crate) control: libp2p_stream::Control,
    pub(crate) server: Arc<Server>,
}

pub(crate) enum Command {
    Provide(ArtifactId),
    Providers(ArtifactId, oneshot::Sender<HashSet<PeerId>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    PeerIp(PeerId, oneshot::Sender<Option<IpAddr>>),
    Dial(Multiaddr),
    Request(
        PeerId,
        BlobRequest,
        oneshot::Sender<Result<BlobResponse, String>>,
    ),
}

const COMMANDS_MAX: usize = 1024;

#[derive(NetworkBehaviour)]
struct Behaviour {
    kad: kad::Behaviour<kad::store::MemoryStore>,
    blobs: request_response::Behaviour<BlobCodec>,
    streams: libp2p_stream::Behaviour,
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
                || {
                    // Stream windows start at 256 KiB and grow towards the
                    // bandwidth-delay product on their own; this bounds
                    // how many a peer can open.
                    let mut config = yamux::Config::default();
                    config.set_max_num_streams(YAMUX_STREAMS_MAX);
                    config
                },
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
                    streams: libp2p_stream::Behaviour::new(),
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
        let listener = match config.direct_segments {
            true => Some(direct_listener(&listen_addr).await?),
            false => None,
        };
        let direct = listener
            .as_ref()
            .map(|(_, port)| DirectKey::new(*port, &config.node_key_seed));
        let server = Arc::new(Server::new(
            store,
            config.serve_tampered,
            config.serve_delay,
            direct,
        ));
        if let Some((listener, _)) = listener {
            server.clone().spawn_direct_server(listener);
        }
        let mut control = swarm.behaviour().streams.new_control();
        let incoming = control
            .accept(STREAM_PROTOCOL)
            .map_err(|e| failed("segment streams", &e))?;
        server.clone().spawn_stream_server(incoming);
        let (commands, receiver) = mpsc::channel(COMMANDS_MAX);
        let event_loop = EventLoop {
            swarm,
            server: server.clone(),
            commands: receiver,
            pending_requests: HashMap::new(),
            pending_providers: HashMap::new(),
            peer_ips: HashMap::new(),
            served: mpsc::unbounded_channel(),
        };
        tokio::spawn(event_loop.run());
        Ok(P2p {
            commands,
            peer_id,
            listen_addrs: Arc::new(vec![listen_addr]),
            control,
            server,
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

    /// Announces that this node holds `artifact_id`, in whole or in part,
    /// and readies a stored one to be served (if memory allows).
    pub async fn provide(&self, artifact_id: ArtifactId) {
        self.server.warm(artifact_id);
        let _ = self.commands.send(Command::Provide(artifact_id)).await;
    }

    /// Announces a blob being fetched (its first segments verified).
    pub(crate) async fn provide_partial(&self, artifact_id: ArtifactId) {
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

    /// The IP address `peer` is connected from, if it is connected.
    pub(crate) async fn peer_ip(&self, peer: PeerId) -> Option<IpAddr> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::PeerIp(peer, tx)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// The port segments are served on over plain TCP, if they are.
    pub fn direct_port(&self) -> Option<u16> {
        self.server.direct.as_ref().map(|direct| direct.port)
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

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

type Served = (ResponseChannel<BlobResponse>, BlobResponse);

struct EventLoop {
    swarm: libp2p::Swarm<Behaviour>,
    server: Arc<Server>,
    commands: mpsc::Receiver<Command>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<BlobResponse, String>>>,
    pending_providers: HashMap<kad::QueryId, (HashSet<PeerId>, oneshot::Sender<HashSet<PeerId>>)>,
    /// Where each connected peer connects from: the only IP a direct
    /// segment stream to it may go to (a peer cannot point us elsewhere).
    peer_ips: HashMap<PeerId, IpAddr>,
    /// Answers computed off the loop, to be sent from it.
    served: (
        mpsc::UnboundedSender<Served>,
        mpsc::UnboundedReceiver<Served>,
    ),
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
            Command::PeerIp(peer, reply) => {
                let _ = reply.send(self.peer_ips.get(&peer).copied());
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
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    self.peer_ips.insert(peer_id, ip);
                }
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.peer_ips.remove(&peer_id);
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
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve(peer, request, channel),
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

    /// Answers off the event loop: the store's index is disk work.
    fn serve(
        &mut self,
        peer: PeerId,
        request: BlobRequest,
        channel: ResponseChannel<BlobResponse>,
    ) {
        let BlobRequest::Info(artifact_id) = request else {
            let refusal = BlobResponse::Unavailable("segments go on a segment stream".into());
            let _ = self.served.0.send((channel, refusal));
            return;
        };
        let server = self.server.clone();
        let served = self.served.0.clone();
        tokio::task::spawn_blocking(move || {
            let _ = served.send((channel, server.info(&artifact_id, &peer)));
        });
    }
}

/// The listener for direct segment streams: an ephemeral port on the IP of
/// the libp2p listen address (peers learn it from the authenticated Info
/// answer), and that port.
async fn direct_listener(
    listen_addr: &Multiaddr,
) -> Result<(tokio::net::TcpListener, u16), FetchError> {
    let ip = ip_of(listen_addr).ok_or_else(|| {
        FetchError::Network(format!(
            "direct segments need an IP listen address, not {listen_addr}"
        ))
    })?;
    let failed = |e: std::io::Error| FetchError::Network(format!("direct segment port: {e}"));
    let listener = tokio::net::TcpListener::bind((ip, 0))
        .await
        .map_err(failed)?;
    let port = listener.local_addr().map_err(failed)?.port();
    Ok((listener, port))
}
