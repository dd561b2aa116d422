//! A network of validators inside commonware's deterministic simulator,
//! shared by the simulation tests and the latency benchmark: the real
//! validator (simplex, marshal, buffered broadcast, resolver, finalizer,
//! in-memory redb) over `p2p::simulated` links with latency, jitter and
//! loss that the caller chooses, and can cut and heal.

use crate::State;
use crate::chain::{
    self, Byzantine, Chain, ChainStore, Channels, Handles, Timeouts, ValidatorConfig,
};
use bonus_ids::{PublicKey, SecretKey};
use commonware_cryptography::ed25519;
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Quota, Supervisor as _, deterministic};
use commonware_utils::NZUsize;
use std::sync::Arc;

/// What a simulated validator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The real validator.
    Honest,
    /// The real validator, proposing blocks with a wrong state root.
    InvalidBlocks,
    /// Nothing: its channels are handed back to the caller, which may
    /// run its own (Byzantine) actor on them.
    External,
}

/// Simulated p2p channels.
pub type SimChannels = Channels<
    simulated::Sender<ed25519::PublicKey, deterministic::Context>,
    simulated::Receiver<ed25519::PublicKey>,
>;

/// The running simulated network.
pub struct SimNetwork {
    /// Link control.
    pub oracle: Oracle<ed25519::PublicKey, deterministic::Context>,
    /// Consensus keys, by index.
    pub public: Vec<ed25519::PublicKey>,
    /// Every validator's chain (an `External` one never advances).
    pub chains: Vec<Arc<Chain>>,
    /// Running validators' tasks (None for `External` or crashed).
    pub handles: Vec<Option<Handles>>,
    /// Channels of `External` validators, by index.
    pub external: Vec<(usize, SimChannels)>,
}

/// Validator `i`'s key in simulations.
pub fn key(i: usize) -> SecretKey {
    SecretKey::from_seed([i as u8 + 1; 32])
}

/// The simulations' funded account.
pub fn faucet() -> SecretKey {
    SecretKey::from_seed([0xfa; 32])
}

/// Genesis for `n` simulated validators and the faucet.
pub fn genesis(n: usize) -> State {
    let validators: Vec<PublicKey> = (0..n).map(|i| key(i).public()).collect();
    let mut balances: Vec<(PublicKey, u64)> = validators.iter().map(|v| (*v, 1_000)).collect();
    balances.push((faucet().public(), u64::MAX / 2));
    State::genesis(&balances)
        .expect("genesis balances fit")
        .with_validators(validators)
}

impl SimNetwork {
    /// Starts one validator per role, all linked with `link`.
    pub async fn start(
        context: &deterministic::Context,
        roles: &[Role],
        link: Link,
        timeouts: Timeouts,
    ) -> SimNetwork {
        let n = roles.len();
        let public: Vec<ed25519::PublicKey> = (0..n)
            .map(|i| chain::consensus_public(&key(i).public()))
            .collect();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: chain::max_message_size(),
                max_peers_per_set: NZUsize!(n),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            public.clone(),
        )
        .await;
        network.start();
        let quota = Quota::per_second(chain::CHANNEL_QUOTA);
        let mut net = SimNetwork {
            oracle,
            public: public.clone(),
            chains: Vec::new(),
            handles: Vec::new(),
            external: Vec::new(),
        };
        for (i, role) in roles.iter().enumerate() {
            let control = net.oracle.control(public[i].clone());
            let register = async |channel| {
                control
                    .register(channel, quota)
                    .await
                    .expect("the simulated network registers channels")
            };
            let channels = Channels {
                votes: register(0).await,
                certificates: register(1).await,
                resolver: register(2).await,
                backfill: register(3).await,
                blocks: register(4).await,
                txs: register(5).await,
            };
            let chain = Chain::open(
                ChainStore::in_memory().expect("an in-memory database opens"),
                genesis(n),
            )
            .expect("a fresh chain opens");
            net.chains.push(chain.clone());
            let byzantine = match role {
                Role::External => {
                    net.external.push((i, channels));
                    net.handles.push(None);
                    continue;
                }
                Role::Honest => None,
                Role::InvalidBlocks => Some(Byzantine::InvalidBlocks),
            };
            let handles = chain::start(
                context.child("validator").with_attribute("index", i),
                ValidatorConfig {
                    key: key(i),
                    validators: public.clone(),
                    partition: format!("validator-{i}"),
                    timeouts,
                    byzantine,
                },
                chain,
                channels,
                net.oracle.manager(),
                net.oracle.control(public[i].clone()),
            )
            .await;
            net.handles.push(Some(handles));
        }
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    net.link(a, b, link.clone()).await;
                }
            }
        }
        net
    }

    /// Adds the directed link `a → b`.
    pub async fn link(&mut self, a: usize, b: usize, link: Link) {
        let _ = self
            .oracle
            .add_link(self.public[a].clone(), self.public[b].clone(), link)
            .await;
    }

    /// Removes both directions between `a` and `b`.
    pub async fn cut(&mut self, a: usize, b: usize) {
        let (pa, pb) = (self.public[a].clone(), self.public[b].clone());
        let _ = self.oracle.remove_link(pa.clone(), pb.clone()).await;
        let _ = self.oracle.remove_link(pb, pa).await;
    }

    /// Stops validator `i`'s tasks and cuts it off, as a crash would.
    pub async fn crash(&mut self, i: usize) {
        if let Some(handles) = self.handles[i].take() {
            handles.consensus.abort();
            handles.marshal.abort();
            handles.finalizer.abort();
            handles.gossip.abort();
        }
        for other in 0..self.public.len() {
            if other != i {
                self.cut(i, other).await;
            }
        }
    }
}
