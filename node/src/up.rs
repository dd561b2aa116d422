//! `bonus up`: a whole network on loopback, as separate processes over the
//! real P2P, consensus and HTTP: 4 validators, 2 workers, 1 router, with a
//! funded dev account. Its keys, genesis and data live in one directory,
//! so running it again resumes the same network.
//!
//! Ports, from `base_port` (B): router B; validators' consensus B+10+i and
//! API B+20+i; workers' API B+30+i and P2P B+40+i.

use anyhow::{Context, bail};
use bonus_ids::{PublicKey, SecretKey};
use bonus_ledger::genesis::{Genesis, GenesisBalance, GenesisValidator};
use bonus_ledger::{Params, client::LedgerClient};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Validators in a local network.
pub const VALIDATORS: usize = 4;
/// Workers in a local network.
pub const WORKERS: usize = 2;

/// What each node account starts with (enough to stake and pay fees).
const NODE_FUNDS: u64 = 1_000_000;
/// What the dev account starts with.
const DEV_FUNDS: u64 = 1_000_000_000_000;

/// A local network's addresses, written once to `network.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    /// Base port.
    pub base_port: u16,
    /// The router's URL.
    pub router: String,
    /// Validators' API URLs.
    pub ledger: Vec<String>,
    /// Workers' API URLs.
    pub workers: Vec<String>,
    /// The funded dev account.
    pub dev_account: String,
    /// The network's chain id.
    pub chain_id: String,
}

impl Network {
    /// The network described in `dir`, if one was created there.
    pub fn load(dir: &Path) -> anyhow::Result<Option<Network>> {
        let path = dir.join("network.json");
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; delete {} to start a new network",
                path.display(),
                dir.display()
            )
        })?))
    }

    /// The URL a name is served at through the router.
    pub fn url_of(&self, name: &str) -> String {
        let port = self.router.rsplit(':').next().unwrap_or("80");
        format!("http://{name}.localhost:{port}/")
    }
}

/// How to start a local network.
pub struct UpConfig {
    /// Where it lives (`$BONUS_HOME/up`).
    pub dir: PathBuf,
    /// First port (used only when the network is created).
    pub base_port: u16,
    /// The `bonus` binary to start nodes with.
    pub exe: PathBuf,
    /// The account funded at genesis (the user's key).
    pub dev_account: PublicKey,
    /// Test mode: worker `i` answers health probes this much later (a far
    /// worker), for nearest-routing tests without network namespaces.
    pub probe_delays_ms: Vec<u64>,
}

/// One node process and how to start it again.
struct Node {
    name: String,
    args: Vec<std::ffi::OsString>,
    child: Child,
    /// Recent restarts, to give up on a node that keeps crashing.
    restarts: Vec<Instant>,
}

/// A node restarted this often within a minute is left stopped.
const RESTARTS_PER_MINUTE_MAX: usize = 5;

/// A running local network; stopping it (or dropping it) stops every node.
pub struct Up {
    /// Its addresses.
    pub network: Network,
    /// Where it lives.
    pub dir: PathBuf,
    children: Vec<Node>,
    exe: PathBuf,
    /// Held while it runs: a second `bonus up` on the same directory fails.
    _lock: File,
}

/// Starts (or resumes) the network in `config.dir`; `progress` hears each
/// step. Returns once every node is up and registered.
pub fn start(config: &UpConfig, progress: &dyn Fn(&str)) -> anyhow::Result<Up> {
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("cannot create {}", config.dir.display()))?;
    let lock_path = config.dir.join("lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another `bonus up` is running on {}; stop it (Ctrl-C) first, or set BONUS_HOME to start a separate network",
            config.dir.display()
        );
    }
    let network = match Network::load(&config.dir)? {
        Some(network) => {
            progress("resuming the network");
            network
        }
        None => {
            progress("creating a new network");
            create(config)?
        }
    };
    check_ports_free(network.base_port)?;
    let mut up = Up {
        network,
        dir: config.dir.clone(),
        children: Vec::new(),
        exe: config.exe.clone(),
        _lock: lock,
    };
    std::fs::create_dir_all(config.dir.join("logs"))?;
    let base = up.network.base_port;
    let dir = &config.dir;
    for i in 0..VALIDATORS {
        let args = os_args([
            "validator".into(),
            "--genesis".into(),
            dir.join("genesis.json").into(),
            "--key-file".into(),
            dir.join(format!("validator-{i}.key")).into(),
            "--data-dir".into(),
            dir.join(format!("validator-{i}")).into(),
        ]);
        up.spawn(&format!("validator-{i}"), args)?;
    }
    progress("waiting for the validators to finalize blocks");
    let ledger = LedgerClient::new(&up.network.ledger)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    up.wait(
        &runtime,
        Duration::from_secs(120),
        "the validators",
        || async {
            let status = ledger.status().await.ok()?;
            (status.height > 0).then_some(())
        },
    )?;
    let ledger_args: Vec<std::ffi::OsString> = up
        .network
        .ledger
        .iter()
        .flat_map(|u| ["--ledger".into(), u.into()])
        .collect();
    for i in 0..WORKERS {
        let mut args = os_args([
            "node".into(),
            "--role".into(),
            "worker".into(),
            "--data-dir".into(),
            dir.join(format!("worker-{i}")).into(),
            "--api".into(),
            format!("127.0.0.1:{}", base + 30 + i as u16).into(),
            "--p2p".into(),
            format!("/ip4/127.0.0.1/tcp/{}", base + 40 + i as u16).into(),
        ]);
        if let Some(delay) = config.probe_delays_ms.get(i).filter(|d| **d > 0) {
            args.extend(["--probe-delay-ms".into(), delay.to_string().into()]);
        }
        args.extend(ledger_args.iter().cloned());
        up.spawn(&format!("worker-{i}"), args)?;
    }
    let mut args = os_args([
        "node".into(),
        "--role".into(),
        "router".into(),
        "--data-dir".into(),
        dir.join("router").into(),
        "--listen".into(),
        format!("127.0.0.1:{base}").into(),
    ]);
    args.extend(ledger_args);
    up.spawn("router", args)?;
    progress("waiting for the workers and the router to register");
    let router_health = format!("{}/v1/router/health", up.network.router);
    up.wait(
        &runtime,
        Duration::from_secs(180),
        "the workers and the router",
        || async {
            let nodes = ledger.nodes().await.ok()?.nodes;
            let workers = nodes.iter().filter(|n| n.role == "worker").count();
            let routers = nodes.iter().filter(|n| n.role == "router").count();
            (workers >= WORKERS && routers >= 1 && http_ok(&router_health).await).then_some(())
        },
    )?;
    Ok(up)
}

impl Up {
    fn spawn(&mut self, name: &str, args: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
        let child = self.start_process(name, &args)?;
        self.children.push(Node {
            name: name.to_string(),
            args,
            child,
            restarts: Vec::new(),
        });
        Ok(())
    }

    fn start_process(&self, name: &str, args: &[std::ffi::OsString]) -> anyhow::Result<Child> {
        let log_path = self.dir.join("logs").join(format!("{name}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // A process group of its own: a terminal's Ctrl-C reaches `bonus
        // up` alone, which stops the nodes once each, in order (routers
        // and workers, then validators). In the terminal's group each node
        // would get the SIGINT and then our SIGTERM, and a node exits at
        // once on a second signal instead of draining.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // send SIGTERM to the child when `bonus up` dies, so a killed
        // `bonus up` never leaves a network running behind it.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", self.exe.display()))?;
        // Tests (and curious users) find a node's process here.
        let _ = std::fs::write(
            self.dir.join("logs").join(format!("{name}.pid")),
            child.id().to_string(),
        );
        Ok(child)
    }

    /// Restarts nodes that exited (a crash, or `kill -9`); returns the
    /// name of one that keeps crashing, if any, and leaves it stopped.
    pub fn supervise(&mut self) -> anyhow::Result<Option<String>> {
        for i in 0..self.children.len() {
            if !matches!(self.children[i].child.try_wait(), Ok(Some(_))) {
                continue;
            }
            let name = self.children[i].name.clone();
            let now = Instant::now();
            let node = &mut self.children[i];
            node.restarts
                .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
            if node.restarts.len() >= RESTARTS_PER_MINUTE_MAX {
                return Ok(Some(name));
            }
            node.restarts.push(now);
            tracing::warn!(node = %name, "exited; restarting it");
            let args = node.args.clone();
            let child = self.start_process(&name, &args)?;
            self.children[i].child = child;
        }
        Ok(None)
    }

    fn wait<F, Fut>(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        timeout: Duration,
        what: &str,
        check: F,
    ) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<()>>,
    {
        let started = Instant::now();
        loop {
            if runtime.block_on(check()).is_some() {
                return Ok(());
            }
            if let Some(name) = self.exited() {
                bail!(
                    "{name} stopped while starting; see {}",
                    self.dir.join("logs").join(format!("{name}.log")).display()
                );
            }
            if started.elapsed() > timeout {
                bail!(
                    "{what} did not come up within {} s; see the logs in {}",
                    timeout.as_secs(),
                    self.dir.join("logs").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The name of a node that has exited, if any.
    pub fn exited(&mut self) -> Option<String> {
        self.children.iter_mut().find_map(|node| {
            matches!(node.child.try_wait(), Ok(Some(_))).then(|| node.name.clone())
        })
    }

    /// Stops every node: routers and workers first (they drain and flush),
    /// then validators; SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let order: Vec<usize> = (0..self.children.len()).collect();
        for group in [false, true] {
            for i in &order {
                let Node { name, child, .. } = &mut self.children[*i];
                if name.starts_with("validator") != group {
                    continue;
                }
                // SAFETY: kill(2) on our own child's pid; no memory involved.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            for i in &order {
                let Node { name, child, .. } = &mut self.children[*i];
                if name.starts_with("validator") != group {
                    continue;
                }
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() > deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        }
        self.children.clear();
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
    }
}

fn create(config: &UpConfig) -> anyhow::Result<Network> {
    let dir = &config.dir;
    let base = config.base_port;
    if u32::from(base) + 50 > u32::from(u16::MAX) {
        bail!("--port {base} leaves no room for the network's ports (it needs {base}..{base}+50)");
    }
    let mut validators = Vec::new();
    let mut balances = vec![GenesisBalance {
        account: config.dev_account.to_string(),
        amount: DEV_FUNDS,
    }];
    for i in 0..VALIDATORS {
        let key = SecretKey::generate();
        key.save(&dir.join(format!("validator-{i}.key")))?;
        validators.push(GenesisValidator {
            key: key.public().to_string(),
            p2p: SocketAddr::from(([127, 0, 0, 1], base + 10 + i as u16)),
            api: Some(SocketAddr::from(([127, 0, 0, 1], base + 20 + i as u16))),
            stake: NODE_FUNDS,
        });
    }
    // Node keys are made now so genesis can fund them: they stake from
    // their own balance when they register.
    let mut node_keys = Vec::new();
    for i in 0..WORKERS {
        let worker_dir = dir.join(format!("worker-{i}")).join("worker");
        std::fs::create_dir_all(&worker_dir)?;
        node_keys.push(crate::load_or_create_key(&worker_dir.join("node.key"))?);
    }
    let router_dir = dir.join("router");
    std::fs::create_dir_all(&router_dir)?;
    node_keys.push(crate::load_or_create_key(&router_dir.join("router.key"))?);
    for key in &node_keys {
        balances.push(GenesisBalance {
            account: key.public().to_string(),
            amount: NODE_FUNDS,
        });
    }
    let genesis = Genesis {
        chain: "bonus-up".into(),
        params: Params::DEV,
        validators,
        balances,
    };
    genesis
        .state()
        .map_err(|reason| anyhow::anyhow!("the genesis would be invalid: {reason}"))?;
    std::fs::write(
        dir.join("genesis.json"),
        serde_json::to_string_pretty(&genesis)?,
    )?;
    let network = Network {
        base_port: base,
        router: format!("http://127.0.0.1:{base}"),
        ledger: (0..VALIDATORS)
            .map(|i| format!("http://127.0.0.1:{}", base + 20 + i as u16))
            .collect(),
        workers: (0..WORKERS)
            .map(|i| format!("http://127.0.0.1:{}", base + 30 + i as u16))
            .collect(),
        dev_account: config.dev_account.to_string(),
        chain_id: genesis.chain_id().to_string(),
    };
    // Written last: a network.json means the network is complete.
    std::fs::write(
        dir.join("network.json"),
        serde_json::to_string_pretty(&network)?,
    )?;
    Ok(network)
}

fn os_args<const N: usize>(args: [std::ffi::OsString; N]) -> Vec<std::ffi::OsString> {
    args.into()
}

fn check_ports_free(base: u16) -> anyhow::Result<()> {
    let mut ports = vec![base];
    for i in 0..VALIDATORS as u16 {
        ports.extend([base + 10 + i, base + 20 + i]);
    }
    for i in 0..WORKERS as u16 {
        ports.extend([base + 30 + i, base + 40 + i]);
    }
    for port in ports {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "port {port} on 127.0.0.1 is taken ({e}); is another network running? \
                 Stop it, or start a new network elsewhere: BONUS_HOME=/tmp/other bonus up --port <free port>"
            );
        }
    }
    Ok(())
}

async fn http_ok(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let Some(authority) = uri.authority().map(ToString::to_string) else {
        return false;
    };
    let Ok(Ok(stream)) = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(&authority),
    )
    .await
    else {
        return false;
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(connection);
    let Ok(request) = http::Request::get(uri)
        .header(http::header::HOST, authority)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), sender.send_request(request)).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}
