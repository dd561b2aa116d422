//! A node's configuration (flags or a TOML file, same fields) and
//! [`run`], which starts its roles and stops them on SIGINT or SIGTERM.

use crate::http::stopped;
use crate::signals::StopSignals;
use anyhow::{Context, bail};
use bonus_ledger::chain::Chain;
use bonus_ledger::client::LedgerClient;
use bonus_registry::p2p::Multiaddr;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs functions and settles their usage.
    Worker,
    /// The HTTP edge: routes requests to workers and attests them.
    Router,
    /// Keeps the ledger (BFT consensus).
    Validator,
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Roles to run (at least one).
    pub roles: Vec<Role>,
    /// Keys, stores, receipts and chain data.
    pub data_dir: PathBuf,
    /// Ledger validators' API URLs (a validator role adds its own).
    #[serde(default)]
    pub ledger: Vec<String>,
    /// Worker settings.
    #[serde(default)]
    pub worker: WorkerSection,
    /// Router settings.
    #[serde(default)]
    pub router: RouterSection,
    /// Validator settings.
    #[serde(default)]
    pub validator: ValidatorSection,
    /// Where a worker runs Cranelift on the code it is sent: a child process
    /// of the `bonus` binary under a budget. Set by the binary, not by the
    /// file; `None` compiles in this process.
    #[serde(skip)]
    pub compile_child: Option<bonus_runtime::CompileChild>,
}

/// `[worker]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Internal API (routers forward here).
    pub api: SocketAddr,
    /// P2P listen address.
    pub p2p: Multiaddr,
    /// Extra peers to join through.
    pub bootstrap: Vec<Multiaddr>,
    /// Price per million fuel.
    pub price: u64,
    /// Region hint.
    pub region: String,
    /// Invocations at once.
    pub concurrency: usize,
    /// Fuel burned per second, at most (all functions together).
    pub fuel_per_second_max: Option<u64>,
    /// Take requests only while the rest of the machine is idle.
    pub idle_only: bool,
    /// Largest artifact accepted.
    pub max_artifact_bytes: u64,
    /// Test mode: delay health answers (a far worker).
    pub probe_delay_ms: u64,
    /// Byzantine test mode: serve corrupted artifact data.
    pub serve_tampered: bool,
    /// Test mode: a slow peer.
    pub serve_delay_ms: u64,
    /// Serve artifact segments on a second, plain TCP port too (bulk
    /// without libp2p's encryption; every segment is verified anyway).
    pub direct_segments: bool,
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            api: SocketAddr::from(([127, 0, 0, 1], 4000)),
            p2p: "/ip4/127.0.0.1/tcp/4100"
                .parse()
                .expect("a valid literal multiaddr"),
            bootstrap: Vec::new(),
            price: 1_000,
            region: "local".into(),
            concurrency: 1024,
            fuel_per_second_max: None,
            idle_only: false,
            max_artifact_bytes: bonus_registry::ARTIFACT_BYTES_MAX,
            probe_delay_ms: 0,
            serve_tampered: false,
            serve_delay_ms: 0,
            direct_segments: true,
        }
    }
}

/// `[router]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSection {
    /// The public HTTP address.
    pub listen: SocketAddr,
}

impl Default for RouterSection {
    fn default() -> Self {
        RouterSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// `[validator]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidatorSection {
    /// The genesis file.
    pub genesis: Option<PathBuf>,
    /// The validator key [default: the node key].
    pub key_file: Option<PathBuf>,
    /// Query API address [default: from the genesis file].
    pub api: Option<SocketAddr>,
}

impl NodeConfig {
    /// Reads a TOML configuration file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid node config", path.display()))
    }
}

/// What a node reports as its roles come up.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The validator's API listens.
    Validator {
        /// API URL.
        api: String,
        /// Height it resumed at.
        height: u64,
    },
    /// The worker is registered and listens.
    Worker {
        /// API URL.
        api: String,
        /// Its key.
        key: String,
        /// Its libp2p peer id.
        peer_id: String,
        /// Its dialable P2P addresses (with `/p2p/<peer id>`).
        p2p: Vec<String>,
    },
    /// The router is registered and listens.
    Router {
        /// Public URL.
        url: String,
        /// Its key.
        key: String,
    },
    /// Stopping (signal received).
    Stopping,
}

/// Runs the node's roles until SIGINT or SIGTERM, then stops them
/// gracefully: no new connections, in-flight requests drained, receipts
/// flushed, last attestations submitted.
pub fn run(
    config: NodeConfig,
    report: impl Fn(Event) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    if config.roles.is_empty() {
        bail!("a node needs at least one role: --role worker, router or validator");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let report = Arc::new(report);
    let mut ledger_urls = config.ledger.clone();
    let mut validator = None;
    if config.roles.contains(&Role::Validator) {
        let (url, chain) = start_validator(&config, report.clone())?;
        ledger_urls.insert(0, url);
        validator = Some(chain);
    }
    let serves = config.roles.iter().any(|r| *r != Role::Validator);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let result = tokio.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let signals = {
            let report = report.clone();
            let caught = StopSignals::catch();
            tokio::spawn(async move {
                let Ok(caught) = caught else {
                    // Without signal handlers the node still runs; it stops only when killed.
                    return std::future::pending().await;
                };
                caught
                    .stop_then_exit_on_second(|| {
                        report(Event::Stopping);
                        let _ = stop_tx.send(true);
                    })
                    .await;
            })
        };
        if !serves {
            stopped(stop).await;
            return Ok(());
        }
        if ledger_urls.is_empty() && config.roles.contains(&Role::Router) {
            bail!("a router needs the ledger: pass --ledger http://<validator API>");
        }
        let ledger = match ledger_urls.is_empty() {
            true => None,
            false => Some(Arc::new(LedgerClient::new(&ledger_urls)?)),
        };
        let mut tasks = tokio::task::JoinSet::new();
        // A router beside a worker calls it in process.
        let (local_tx, local_rx) = tokio::sync::oneshot::channel();
        let local_rx = (config.roles.contains(&Role::Worker)
            && config.roles.contains(&Role::Router))
        .then_some(local_rx);
        if config.roles.contains(&Role::Worker) {
            let w = &config.worker;
            let worker_config = crate::worker::WorkerConfig {
                data_dir: config.data_dir.join("worker"),
                api_addr: w.api,
                p2p_listen: w.p2p.clone(),
                bootstrap: w.bootstrap.clone(),
                artifact_bytes_max: w.max_artifact_bytes,
                serve_tampered: w.serve_tampered,
                serve_delay: Duration::from_millis(w.serve_delay_ms),
                direct_segments: w.direct_segments,
                ledger: ledger.clone(),
                price_per_million_fuel: w.price,
                region: w.region.clone(),
                concurrency_max: w.concurrency,
                probe_delay: Duration::from_millis(w.probe_delay_ms),
                fuel_per_second_max: w.fuel_per_second_max,
                idle_only: w.idle_only.then(crate::worker::owner::IdlePolicy::default),
                compile_child: config.compile_child.clone(),
            };
            let (stop, report) = (stop.clone(), report.clone());
            tasks.spawn(async move {
                crate::worker::run(worker_config, stop, move |ready| {
                    let _ = local_tx.send(ready.local.clone());
                    report(Event::Worker {
                        api: format!("http://{}", ready.api),
                        key: ready.key.to_string(),
                        peer_id: ready.p2p.peer_id().to_string(),
                        p2p: ready.p2p.addrs().iter().map(ToString::to_string).collect(),
                    });
                })
                .await
                .context("worker")
            });
        }
        if config.roles.contains(&Role::Router) {
            let ledger = ledger.clone().context("a router needs the ledger")?;
            let key = crate::load_or_create_key(&config.data_dir.join("router.key"))?;
            let listen = config.router.listen;
            let (stop, report) = (stop.clone(), report.clone());
            tasks.spawn(
                async move { run_router(key, ledger, listen, local_rx, stop, report).await },
            );
        }
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            let result = done.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = result {
                // One role failing stops the node: half a node misleads.
                signals.abort();
                first_error.get_or_insert(e);
                tasks.abort_all();
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    });
    // The validator thread ends with the process; what it applied is
    // made durable first (see `validator::exit_on_signal`).
    let persisted = validator.map_or(Ok(()), |chain| chain.persist());
    result?;
    persisted.context("persisting the last finalized blocks")
}

/// Waits for the worker in this process, if any.
type LocalWorkerReady = Option<tokio::sync::oneshot::Receiver<Arc<dyn bonus_router::LocalWorker>>>;

async fn run_router(
    key: bonus_ids::SecretKey,
    ledger: Arc<LedgerClient>,
    listen: SocketAddr,
    local: LocalWorkerReady,
    stop: crate::http::Stop,
    report: Arc<impl Fn(Event) + Send + Sync + 'static>,
) -> anyhow::Result<()> {
    let public = key.public();
    let router = bonus_router::Router::bind(
        listen,
        bonus_router::RouterConfig {
            key: bonus_ids::SecretKey::from_seed(key.seed()),
            ledger: Some(ledger.clone()),
            limits: bonus_router::RouterLimits::default(),
        },
    )
    .await?;
    let url = format!("http://{}", router.local_addr());
    // With a worker in this process, one operator runs both: the ledger
    // then never lets this router vouch for that worker (it would be
    // vouching for itself), though it still routes to it, in process.
    let mut operator = public;
    if let Some(Ok(local)) = match local {
        Some(ready) => Some(ready.await),
        None => None,
    } {
        operator = local.key();
        router.set_local_worker(local);
    }
    crate::register(
        &ledger,
        &key,
        bonus_ledger::NodeRole::Router,
        operator,
        url.clone(),
        "local".into(),
        0,
    )
    .await?;
    report(Event::Router {
        url,
        key: public.to_string(),
    });
    router.run(stopped(stop)).await?;
    Ok(())
}

fn start_validator(
    config: &NodeConfig,
    report: Arc<impl Fn(Event) + Send + Sync + 'static>,
) -> anyhow::Result<(String, Arc<Chain>)> {
    let v = &config.validator;
    let genesis_path = v
        .genesis
        .as_ref()
        .context("a validator needs --genesis FILE")?;
    let genesis = bonus_ledger::genesis::Genesis::load(genesis_path)?;
    let key = match &v.key_file {
        Some(path) => bonus_ids::SecretKey::load(path)
            .with_context(|| format!("cannot load the key file {}", path.display()))?,
        None => crate::load_or_create_key(&config.data_dir.join("node.key"))?,
    };
    let me = key.public().to_string();
    let api = v
        .api
        .or_else(|| genesis.validators.iter().find(|g| g.key == me).and_then(|g| g.api))
        .context("no API address: pass --validator-api or set this validator's \"api\" in the genesis file")?;
    let leader = Duration::from_secs(1);
    let validator_config = crate::validator::ValidatorConfig {
        genesis,
        key,
        data_dir: config.data_dir.join("validator"),
        api,
        timeouts: bonus_ledger::chain::Timeouts {
            leader,
            certification: leader * 2,
            retry: leader,
        },
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Arc<Chain>>>();
    let failed_tx = ready_tx.clone();
    std::thread::Builder::new()
        .name("validator".into())
        .spawn(move || {
            let result = crate::validator::run(validator_config, move |ready| {
                report(Event::Validator {
                    api: format!("http://{}", ready.api),
                    height: ready.chain.height(),
                });
                let _ = ready_tx.send(Ok(ready.chain.clone()));
            });
            if let Err(e) = result {
                tracing::error!(error = %e, "the validator stopped");
                let _ = failed_tx.send(Err(e));
            }
        })
        .context("spawning the validator thread")?;
    match ready_rx.recv() {
        Ok(Ok(chain)) => Ok((format!("http://{api}"), chain)),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("the validator stopped before it was ready; see the log above"),
    }
}
