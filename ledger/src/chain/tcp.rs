//! A validator over real TCP: commonware's tokio runtime (storage under
//! the data directory) and `p2p::authenticated::discovery` (encrypted,
//! mutually authenticated connections among the genesis validator set).

use super::{Chain, ChainStore, Channels, StoreError, Timeouts, ValidatorConfig};
use crate::genesis::Genesis;
use bonus_ids::SecretKey;
use commonware_cryptography::{ChaCha20Poly1305, ed25519};
use commonware_p2p::{Ingress, Manager as _, authenticated::discovery};
use commonware_runtime::{Quota, Runner as _, Supervisor as _, tokio as cw_tokio};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::NZUsize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A TCP validator's configuration.
pub struct TcpConfig {
    /// Its key (must be in the genesis validator set).
    pub key: SecretKey,
    /// The genesis.
    pub genesis: Genesis,
    /// Where the chain database and consensus storage live.
    pub data_dir: PathBuf,
    /// Consensus p2p listen address (also what peers dial).
    pub listen: SocketAddr,
    /// Timers.
    pub timeouts: Timeouts,
}

/// Why a validator cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The key is not a genesis validator.
    #[error("this key ({0}) is not a validator in the genesis file")]
    NotAValidator(String),
    /// The genesis file is inconsistent.
    #[error("invalid genesis: {0}")]
    Genesis(String),
    /// The chain database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data directory cannot be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the chain and runs the validator until the process ends. `ready`
/// is called with the chain once consensus is started (to serve queries).
pub fn run(
    config: TcpConfig,
    ready: impl FnOnce(Arc<Chain>) + Send + 'static,
) -> Result<(), StartError> {
    let keys = config
        .genesis
        .validator_keys()
        .map_err(StartError::Genesis)?;
    let me = config.key.public();
    if !keys.contains(&me) {
        return Err(StartError::NotAValidator(me.to_string()));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let state = config.genesis.state().map_err(StartError::Genesis)?;
    let chain = Chain::open(
        ChainStore::open(&config.data_dir.join("chain.redb"))?,
        state,
    )?;

    let validators: Vec<ed25519::PublicKey> = keys.iter().map(super::consensus_public).collect();
    let bootstrappers: Vec<(ed25519::PublicKey, Ingress)> = config
        .genesis
        .validators
        .iter()
        .zip(&validators)
        .filter(|(v, _)| v.p2p != config.listen)
        .map(|(v, key)| (key.clone(), Ingress::Socket(v.p2p)))
        .collect();
    let runtime = cw_tokio::Config::new()
        .with_storage_directory(config.data_dir.join("consensus"))
        .with_worker_threads(2);
    let runner = cw_tokio::Runner::new(runtime);
    let namespace = super::namespace(&config.genesis.chain_id());
    runner.start(|context| async move {
        let signer = super::consensus_key(&config.key);
        let p2p = discovery::Config::local(
            Cups::<_, ChaCha20Poly1305>::new(
                Sake {
                    signer,
                    synchrony_bound: Duration::from_secs(5),
                    max_handshake_age: Duration::from_secs(10),
                    version: sake::Version::V1,
                },
                cups::Version::V1,
            ),
            &namespace,
            config.listen,
            config.listen,
            bootstrappers,
            NZUsize!(validators.len()),
            super::max_message_size(),
            NZUsize!(4096),
        );
        let (mut network, mut oracle) = discovery::Network::new(context.child("network"), p2p);
        let set = commonware_utils::ordered::Set::try_from(validators.clone())
            .expect("genesis validators are distinct");
        oracle.track(0, set);
        let quota = Quota::per_second(super::CHANNEL_QUOTA);
        let channels = Channels {
            votes: network.register(0, quota),
            certificates: network.register(1, quota),
            resolver: network.register(2, quota),
            backfill: network.register(3, quota),
            blocks: network.register(4, quota),
            txs: network.register(5, quota),
        };
        network.start();
        let handles = super::start(
            context.child("validator"),
            ValidatorConfig {
                key: config.key,
                validators,
                partition: "validator".into(),
                timeouts: config.timeouts,
                byzantine: None,
            },
            chain.clone(),
            channels,
            oracle.clone(),
            oracle,
        )
        .await;
        ready(chain);
        let _ = handles.consensus.await;
    });
    Ok(())
}
