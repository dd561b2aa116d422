//! `bonus node`: one node of the network. It stores and spreads artifacts
//! (registry + P2P), accepts deploys over its HTTP API, and serves the
//! functions it knows at `/fn/<name>/…`.
//!
//! Until the ledger binds names globally, a node keeps its own name map
//! (`NameBinder` on its store); posting a signed manifest to any node binds
//! it there and fetches its artifact from peers if needed.

mod api;
pub mod client;

pub use client::NodeClient;

use anyhow::Context;
use bonus_ids::SecretKey;
use bonus_registry::p2p::{P2p, P2pConfig};
use bonus_registry::{Store, StoreConfig};
use bonus_runtime::{Runtime, RuntimeConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How to run a node.
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub p2p_listen: libp2p_addr::Multiaddr,
    pub bootstrap: Vec<libp2p_addr::Multiaddr>,
    pub artifact_bytes_max: u64,
    pub serve_tampered: bool,
    pub serve_delay: std::time::Duration,
}

/// Re-exported address type, so callers need no libp2p dependency of their own.
pub mod libp2p_addr {
    pub use bonus_registry::p2p::Multiaddr;
}

/// What a running node shares between requests.
pub struct Node {
    pub store: Arc<Store>,
    pub p2p: P2p,
    pub runtime: Runtime,
    /// Keys per-request guest randomness: unpredictable to clients,
    /// reproducible by this node for audits.
    pub seed_key: [u8; 32],
    /// Loaded functions by name, so a request does not re-read, re-verify
    /// and re-load its artifact. Evicted when the name is rebound.
    pub deployed: Mutex<HashMap<String, Arc<Deployed>>>,
}

/// A name's current function, ready to invoke.
pub struct Deployed {
    /// The manifest it was loaded from.
    pub manifest_id: bonus_ids::ManifestId,
    /// The loaded component.
    pub function: bonus_runtime::Function,
    /// The manifest's limits, capped by the node.
    pub limits: bonus_runtime::Limits,
    /// Its environment and outbound policy.
    pub caps: Arc<bonus_runtime::Capabilities>,
}

/// Starts the node and serves its API until the process stops. `on_ready`
/// gets the API address, peer id and P2P addresses once both listen.
pub fn run(config: NodeConfig, on_ready: impl FnOnce(SocketAddr, &P2p)) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let key_path = config.data_dir.join("node.key");
    let node_key = match key_path.exists() {
        true => SecretKey::load(&key_path)?,
        false => {
            let key = SecretKey::generate();
            key.save(&key_path)?;
            key
        }
    };
    let store = Arc::new(
        Store::open(
            &config.data_dir.join("store"),
            StoreConfig {
                artifact_bytes_max: config.artifact_bytes_max,
                ..StoreConfig::default()
            },
        )
        .context("opening the node's store")?,
    );
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(config.data_dir.join("cache")),
        ..RuntimeConfig::default()
    })?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    tokio.block_on(async move {
        let p2p = P2p::start(
            P2pConfig {
                listen: config.p2p_listen,
                bootstrap: config.bootstrap,
                node_key_seed: node_key.seed(),
                serve_tampered: config.serve_tampered,
                serve_delay: config.serve_delay,
            },
            store.clone(),
        )
        .await
        .context("starting the P2P overlay")?;
        for blob in store.blobs()? {
            p2p.provide(blob.artifact_id).await;
        }
        let listener = tokio::net::TcpListener::bind(config.api_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}; pick another --api address",
                    config.api_addr
                )
            })?;
        let api_addr = listener.local_addr()?;
        on_ready(api_addr, &p2p);
        let seed_key = blake3::derive_key("bonus request seeds v1", &node_key.seed());
        let node = Arc::new(Node {
            store,
            p2p,
            runtime,
            seed_key,
            deployed: Mutex::new(HashMap::new()),
        });
        api::serve(listener, node).await
    })
}
