//! A network of validators inside commonware's deterministic simulator,
//! shared by the simulation tests and the latency benchmark: the real
//! validator (simplex, marshal, buffered broadcast, resolver, finalizer,
//! in-memory redb) over `p2p::simulated` links with latency, jitter and
//! loss that the caller chooses, and can cut and heal.

use crate::chain::{
    self, Byzantine, Chain, ChainStore, Channels, Handles, Timeouts, ValidatorConfig,
};
use crate::genesis::{Genesis, GenesisBalance, GenesisValidator};
use crate::{Params, State};
use bonus_ids::SecretKey;
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
    /// The real validator, stamping its proposals this many ms ahead of
    /// its clock.
    ClockAheadMs(u64),
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

/// Stake each simulated validator bonds at genesis.
pub const VALIDATOR_STAKE: u64 = 1_000_000;

/// The genesis file of `n` simulated validators and the faucet (p2p
/// addresses are never dialed: the simulated network routes by key).
pub fn genesis_file(n: usize) -> Genesis {
    let validators = (0..n)
        .map(|i| GenesisValidator {
            key: key(i).public().to_string(),
            p2p: std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
            api: None,
            stake: VALIDATOR_STAKE,
        })
        .collect();
    let mut balances: Vec<GenesisBalance> = (0..n)
        .map(|i| GenesisBalance {
            account: key(i).public().to_string(),
            amount: 1_000,
        })
        .collect();
    balances.push(GenesisBalance {
        account: faucet().public().to_string(),
        amount: u64::MAX / 4,
    });
    Genesis {
        chain: "simulation".into(),
        params: Params::DEV,
        validators,
        balances,
    }
}

/// The genesis state of [`genesis_file`].
pub fn genesis(n: usize) -> State {
    genesis_file(n)
        .state()
        .expect("the simulated genesis is valid")
}

impl SimNetwork {
    /// Starts one validator per role, all linked with `link`.
    pub async fn start(
        context: &deterministic::Context,
        roles: &[Role],
        link: Link,
        timeouts: Timeouts,
    ) -> SimNetwork {
        Self::start_with(context, roles, link, timeouts, genesis_file(roles.len())).await
    }

    /// [`SimNetwork::start`] from a given genesis (its validators must be
    /// the simulation's keys `0..roles.len()`, in order).
    pub async fn start_with(
        context: &deterministic::Context,
        roles: &[Role],
        link: Link,
        timeouts: Timeouts,
        genesis: Genesis,
    ) -> SimNetwork {
        let n = roles.len();
        let genesis_state = genesis.state().expect("a valid simulation genesis");
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
                genesis_state.clone(),
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
                Role::ClockAheadMs(ms) => Some(Byzantine::ClockAheadMs(*ms)),
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

/// A ledger without consensus, for state-machine tests and benchmarks:
/// the real [`State`] driven block by block with a clock the test moves.
/// Each [`Harness::run`] applies one transaction in a block of its own and
/// checks the rejection rule (a refused transaction changes nothing).
pub struct Harness {
    /// The state after the last block.
    pub state: State,
    /// The last block's height.
    pub height: u64,
    /// The last block's time, ms.
    pub time_ms: u64,
}

/// Block time of the harness's first block: 2026-01-01.
pub const HARNESS_START_MS: u64 = 1_767_225_600_000;

impl Harness {
    /// Genesis with `balances`, four simulated validators (each with
    /// [`VALIDATOR_STAKE`] bonded) and `params`, on a chain named `chain`.
    pub fn new(chain: &str, params: Params, balances: &[(&SecretKey, u64)]) -> Harness {
        let mut genesis = genesis_file(4);
        genesis.chain = chain.to_string();
        genesis.params = params;
        genesis.balances = balances
            .iter()
            .map(|(key, amount)| GenesisBalance {
                account: key.public().to_string(),
                amount: *amount,
            })
            .collect();
        Harness {
            state: genesis.state().expect("a valid genesis"),
            height: 0,
            time_ms: HARNESS_START_MS,
        }
    }

    /// The network's chain id.
    pub fn chain_id(&self) -> crate::ChainId {
        *self.state.chain_id()
    }

    /// `body` signed by `key` with its next nonce, for this network.
    pub fn sign(&self, key: &SecretKey, body: crate::TxBody) -> crate::SignedTx {
        crate::SignedTx::sign(key, &self.chain_id(), self.state.nonce(&key.public()), body)
    }

    /// Starts the next block `after_ms` after the last one.
    pub fn next_block(&mut self, after_ms: u64) -> crate::BlockCtx {
        self.height += 1;
        self.time_ms += after_ms.max(1);
        let ctx = crate::BlockCtx {
            height: self.height,
            time_ms: self.time_ms,
        };
        self.state
            .begin_block(ctx)
            .expect("the harness clock moves forward");
        ctx
    }

    /// Applies `tx` in a block of its own, 1 ms after the last; on a
    /// refusal, asserts that nothing changed.
    pub fn apply(&mut self, tx: &crate::SignedTx) -> Result<(), crate::TxError> {
        let ctx = self.next_block(1);
        let before = self.state.clone();
        let result = self.state.apply(tx, ctx);
        if result.is_err() {
            assert!(
                self.state == before,
                "a refused transaction changed the state"
            );
        }
        self.state.end_block();
        result
    }

    /// Signs `body` as `key` and applies it.
    pub fn run(&mut self, key: &SecretKey, body: crate::TxBody) -> Result<(), crate::TxError> {
        let tx = self.sign(key, body);
        self.apply(&tx)
    }

    /// An empty block `ms` after the last one.
    pub fn advance(&mut self, ms: u64) {
        self.next_block(ms);
        self.state.end_block();
    }

    /// Advances to the first block of the next settlement period.
    pub fn next_period(&mut self) {
        let period_ms = self.state.params().period_ms;
        let next = (self.time_ms / period_ms + 1) * period_ms;
        self.advance(next - self.time_ms);
    }

    /// The current settlement period.
    pub fn period(&self) -> u64 {
        self.state.period()
    }
}

/// Fuel limit per invocation of [`test_deploy`]'s manifests.
pub const TEST_FUEL_MAX: u64 = 1_000_000;

/// A Deploy of `owner`'s function `name` at `version` (a real signed
/// manifest with a fuel limit of [`TEST_FUEL_MAX`] and the given consent),
/// and the manifest's id.
pub fn test_deploy(
    owner: &SecretKey,
    name: &str,
    version: u32,
    price_max: u64,
    spend_max: u64,
) -> (bonus_ids::ManifestId, crate::TxBody) {
    use bonus_registry::{Manifest, ManifestBudget, ManifestLimits};
    let manifest = Manifest {
        name: name.to_string(),
        artifact_id: bonus_ids::ArtifactId::of(format!("{name}-{version}").as_bytes()),
        artifact_bytes: 1,
        limits: ManifestLimits {
            fuel_max: TEST_FUEL_MAX,
            memory_bytes_max: 64 << 20,
            deadline_ms: 1_000,
        },
        budget: ManifestBudget {
            price_per_million_fuel_max: price_max,
            spend_per_period_max: spend_max,
        },
        env: Vec::new(),
        allowed_outbound_hosts: Vec::new(),
        routes: Vec::new(),
        version,
        parent: (version > 1).then(|| bonus_ids::ManifestId::from_bytes([version as u8; 32])),
        owner: owner.public(),
    };
    let signed = manifest.sign(owner).expect("a valid test manifest");
    (
        signed.id(),
        crate::TxBody::Deploy {
            manifest: signed.encode(),
        },
    )
}
