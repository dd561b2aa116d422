//! `bonus deploy`: upload a component and sign its manifest.

use crate::commands::{GlobalArgs, keys};
use crate::output;
use anyhow::{Context, bail};
use bonus_ids::{ArtifactId, ManifestId, SecretKey};
use bonus_ledger::TxBody;
use bonus_ledger::client::LedgerClient;
use bonus_node::client::NodeClient;
use bonus_node::up::Network;
use bonus_registry::{Manifest, ManifestBudget, ManifestLimits};
use bonus_runtime::Limits;
use std::path::PathBuf;

/// Deploy a component to a node: upload it (unless the node has it), sign a
/// manifest with your key and bind the name.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
The manifest you sign carries your budget: the most you pay per million fuel
(--price-max) and per settlement period (--spend-max). Nobody can charge you
beyond it; changing it means deploying a new manifest.

Example:
  bonus deploy target/wasm32-wasip2/release/hello.wasm --name hello --price-max 500 --spend-max 0")]
pub struct DeployArgs {
    /// The `.wasm` component.
    wasm: PathBuf,
    /// The function's name (a DNS label: a-z, 0-9, '-').
    #[arg(long)]
    name: String,
    /// A node's API to upload to [default: a worker of the local network
    /// `bonus up` started]. With --node and no --ledger, the name is
    /// bound on that node only (a standalone node).
    #[arg(long, env = "BONUS_NODE")]
    node: Option<String>,
    /// A ledger validator's API (repeatable) [default: the local network's].
    #[arg(long = "ledger", value_name = "URL")]
    ledger: Vec<String>,
    /// Signing key name.
    #[arg(long, default_value = "default")]
    key: String,
    /// Environment variable, `KEY=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Allowed outbound host pattern (repeatable).
    #[arg(long = "allow-outbound", value_name = "PATTERN")]
    allow_outbound: Vec<String>,
    /// Fuel budget per request.
    #[arg(long, default_value_t = Limits::DEFAULT.fuel_max)]
    fuel: u64,
    /// Memory limit per request, MiB.
    #[arg(long, default_value_t = Limits::DEFAULT.memory_bytes_max >> 20)]
    memory_mib: u64,
    /// Deadline per request, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u32,
    /// Most you pay per million fuel: a worker whose registered price is
    /// above it cannot charge for this function.
    #[arg(
        long,
        value_name = "U64",
        default_value_t = ManifestBudget::DEV.price_per_million_fuel_max
    )]
    price_max: u64,
    /// Most you are charged per settlement period for this function; 0 =
    /// never charged.
    #[arg(
        long,
        value_name = "U64",
        default_value_t = ManifestBudget::DEV.spend_per_period_max
    )]
    spend_max: u64,
    /// Check and sign, but upload nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send only the signed manifest: the node fetches the artifact from
    /// its peers (for a second node, after deploying to a first).
    #[arg(long)]
    no_upload: bool,
}

/// Reads the file to deploy and refuses what is not a component before
/// anything is signed or sent.
fn read_component(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read {}; check the path", path.display()))?;
    bonus_runtime::check_header(&bytes)
        .with_context(|| format!("cannot deploy {}", path.display()))?;
    Ok(bytes)
}

pub fn run(global: &GlobalArgs, args: DeployArgs) -> anyhow::Result<()> {
    if args.node.is_none() || !args.ledger.is_empty() {
        return run_network(global, args);
    }
    let key = keys::load_key(&args.key)?;
    let bytes = read_component(&args.wasm)?;
    let artifact_id = ArtifactId::of(&bytes);
    let terms = Terms::from_args(&args)?;
    let client = NodeClient::new(args.node.as_deref().unwrap_or_default())?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let (version, parent) = current_version(&client, &args.name, &key.public()).await?;
        let signed = terms.sign(&args.name, (artifact_id, bytes.len()), (version, parent), &key, global.quiet)?;
        if args.dry_run {
            output::status(global.quiet, "Checked", format!("{} v{version} (dry run, nothing sent)", args.name));
            println!("{}", serde_json::json!({ "manifest_id": signed.id().to_string(), "artifact_id": artifact_id.to_string() }));
            return Ok(());
        }
        output::status(global.quiet, "Deploying", format!("{} ({artifact_id})", args.name));
        match client.artifact_bytes(&artifact_id).await? {
            Some(_) => output::status(global.quiet, "Skipping", "upload: the node already has this artifact"),
            None if args.no_upload => output::status(global.quiet, "Skipping", "upload: the node fetches from peers"),
            None => upload(&client, artifact_id, bytes, global.quiet).await?,
        }
        let answer = client.post_manifest(signed.encode()).await?;
        let url = format!("{}{}", client.base(), answer.path);
        if global.json {
            println!("{}", serde_json::json!({
                "name": args.name, "version": version, "manifest_id": signed.id().to_string(),
                "artifact_id": artifact_id.to_string(), "url": url,
            }));
        } else {
            output::status(global.quiet, "Deployed", format!("{} v{version} ({})", args.name, signed.id()));
            println!("{url}");
        }
        Ok(())
    })
}

/// What the owner consents to, in words, for the status line.
fn describe_budget(budget: &ManifestBudget) -> String {
    match budget.spend_per_period_max {
        0 => "never charged (--spend-max 0)".to_string(),
        spend => format!(
            "at most {} per million fuel, {spend} per settlement period",
            budget.price_per_million_fuel_max
        ),
    }
}

async fn upload(
    client: &NodeClient,
    artifact_id: ArtifactId,
    bytes: Vec<u8>,
    quiet: bool,
) -> anyhow::Result<()> {
    let bar = match quiet {
        true => indicatif::ProgressBar::hidden(),
        false => indicatif::ProgressBar::new(bytes.len() as u64),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "   Uploading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = bar.clone();
    let result = client
        .put_artifact(&artifact_id, bytes.into(), move |sent| {
            progress.set_position(sent)
        })
        .await;
    bar.finish_and_clear();
    result.context("uploading the artifact")?;
    Ok(())
}

/// The next version number and its parent, from what the node knows.
async fn current_version(
    client: &NodeClient,
    name: &str,
    owner: &bonus_ids::PublicKey,
) -> anyhow::Result<(u32, Option<ManifestId>)> {
    let functions = client.functions().await?;
    let Some(current) = functions.iter().find(|f| f.name == name && f.current) else {
        return Ok((1, None));
    };
    if current.owner != owner.to_string() {
        anyhow::bail!(
            "the name {name:?} belongs to {}; deploy under another --name",
            current.owner
        );
    }
    let parent = current.manifest_id.parse().with_context(|| {
        format!(
            "the node lists {name:?} with a manifest id it cannot parse: {}",
            current.manifest_id
        )
    })?;
    Ok((current.version + 1, Some(parent)))
}

/// What to sign besides the artifact: the function's terms.
pub struct Terms {
    pub env: Vec<(String, String)>,
    pub allowed_outbound_hosts: Vec<String>,
    pub limits: ManifestLimits,
    pub budget: ManifestBudget,
}

impl Terms {
    /// The manifest `key` signs: version `version.0` of `name` (after the
    /// manifest `version.1`, if any), running the artifact `artifact_id` of
    /// `artifact_bytes` bytes under these terms.
    fn sign(
        self,
        name: &str,
        (artifact_id, artifact_bytes): (ArtifactId, usize),
        (version, parent): (u32, Option<ManifestId>),
        key: &SecretKey,
        quiet: bool,
    ) -> anyhow::Result<bonus_registry::SignedManifest> {
        let manifest = Manifest {
            name: name.to_string(),
            artifact_id,
            artifact_bytes: artifact_bytes as u64,
            limits: self.limits,
            budget: self.budget,
            env: self.env,
            allowed_outbound_hosts: self.allowed_outbound_hosts,
            routes: Vec::new(),
            version,
            parent,
            owner: key.public(),
        };
        let signed = manifest.sign(key)?;
        output::status(quiet, "Budget", describe_budget(&signed.manifest().budget));
        Ok(signed)
    }

    fn from_args(args: &DeployArgs) -> anyhow::Result<Terms> {
        bonus_runtime::OutboundPolicy::from_patterns(&args.allow_outbound)?;
        let mut env = Vec::new();
        for pair in &args.env {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("--env expects KEY=VALUE, got {pair:?}"))?;
            env.push((k.to_string(), v.to_string()));
        }
        env.sort();
        env.dedup_by(|a, b| a.0 == b.0);
        Ok(Terms {
            env,
            allowed_outbound_hosts: args.allow_outbound.clone(),
            limits: ManifestLimits {
                fuel_max: args.fuel,
                memory_bytes_max: args.memory_mib << 20,
                deadline_ms: args.deadline_ms,
            },
            budget: ManifestBudget {
                price_per_million_fuel_max: args.price_max,
                spend_per_period_max: args.spend_max,
            },
        })
    }

    /// Defaults, as `bonus deploy` without flags.
    pub fn dev() -> Terms {
        Terms {
            env: Vec::new(),
            allowed_outbound_hosts: Vec::new(),
            limits: ManifestLimits {
                fuel_max: Limits::DEFAULT.fuel_max,
                memory_bytes_max: Limits::DEFAULT.memory_bytes_max,
                deadline_ms: 10_000,
            },
            budget: ManifestBudget::DEV,
        }
    }
}

/// Where a network deploy goes.
pub struct Target {
    /// Workers to upload to, tried in turn.
    pub workers: Vec<String>,
    /// The ledger.
    pub ledger: LedgerClient,
    /// How to print a name's URL.
    pub url_of: Box<dyn Fn(&str) -> String>,
}

/// A client of the given validators, or of the local network's.
pub fn ledger_client(ledger: &[String]) -> anyhow::Result<LedgerClient> {
    if !ledger.is_empty() {
        return Ok(LedgerClient::new(ledger)?);
    }
    match Network::load(&crate::guest_build::bonus_home()?.join("up"))? {
        Some(network) => Ok(LedgerClient::new(&network.ledger)?),
        None => bail!("no ledger: pass --ledger URL, or start a network with `bonus up`"),
    }
}

/// The given node's API, or the first worker of the local network's.
pub fn node_url(node: Option<&str>) -> anyhow::Result<String> {
    if let Some(node) = node {
        return Ok(node.to_string());
    }
    let network = Network::load(&crate::guest_build::bonus_home()?.join("up"))?;
    match network.and_then(|n| n.workers.first().cloned()) {
        Some(worker) => Ok(worker),
        None => bail!("no node: pass --node URL, or start a network with `bonus up`"),
    }
}

impl Target {
    /// A local network's workers and ledger.
    pub fn of_network(network: &Network) -> anyhow::Result<Target> {
        let network = network.clone();
        Ok(Target {
            workers: network.workers.clone(),
            ledger: LedgerClient::new(&network.ledger)?,
            url_of: Box::new(move |name| network.url_of(name)),
        })
    }

    /// The local network `bonus up` started, or the given URLs.
    pub fn resolve(node: Option<&str>, ledger: &[String]) -> anyhow::Result<Target> {
        let network = Network::load(&crate::guest_build::bonus_home()?.join("up"))?;
        let workers = match (node, &network) {
            (Some(node), _) => vec![node.to_string()],
            (None, Some(network)) => network.workers.clone(),
            (None, None) => bail!(
                "no local network: start one with `bonus up`, or pass --node URL --ledger URL"
            ),
        };
        let ledger_urls = match (ledger.is_empty(), &network) {
            (false, _) => ledger.to_vec(),
            (true, Some(network)) => network.ledger.clone(),
            (true, None) => {
                bail!("no ledger: pass --ledger URL, or start a network with `bonus up`")
            }
        };
        let url_of: Box<dyn Fn(&str) -> String> = match network {
            Some(network) if ledger.is_empty() => Box::new(move |name| network.url_of(name)),
            _ => Box::new(|name| format!("http://{name}.<router host>/")),
        };
        Ok(Target {
            workers,
            ledger: LedgerClient::new(&ledger_urls)?,
            url_of,
        })
    }
}

/// A finished deploy.
pub struct Deployed {
    pub manifest_id: ManifestId,
    pub version: u32,
    pub height: u64,
    pub url: String,
}

/// Uploads the artifact to a worker, signs the manifest, submits `Deploy`
/// to the ledger and waits until it is final.
pub async fn deploy_to_network(
    target: &Target,
    key: &SecretKey,
    name: &str,
    bytes: Vec<u8>,
    terms: Terms,
    quiet: bool,
) -> anyhow::Result<Deployed> {
    let artifact_id = ArtifactId::of(&bytes);
    let (version, parent) = ledger_version(&target.ledger, name, &key.public()).await?;
    let signed = terms.sign(
        name,
        (artifact_id, bytes.len()),
        (version, parent),
        key,
        quiet,
    )?;
    output::status(
        quiet,
        "Deploying",
        format!("{name} v{version} ({artifact_id})"),
    );
    let mut uploaded = None;
    let mut last_error = None;
    for worker in &target.workers {
        let client = NodeClient::new(worker)?;
        let attempt = async {
            if client.artifact_bytes(&artifact_id).await?.is_none() {
                upload(&client, artifact_id, bytes.clone(), quiet).await?;
            }
            client.post_manifest(signed.encode()).await
        };
        match attempt.await {
            Ok(_) => {
                uploaded = Some(worker.clone());
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    if uploaded.is_none() {
        let reason = last_error.map_or_else(|| "no worker given".to_string(), |e| format!("{e:#}"));
        bail!("no worker took the artifact: {reason}");
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    if quiet {
        spinner.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    spinner.set_message(format!(
        "{name}: waiting for the ledger to finalize the deploy"
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let result = async {
        let id = target
            .ledger
            .sign_and_submit(
                key,
                TxBody::Deploy {
                    manifest: signed.encode(),
                },
            )
            .await?;
        Ok::<_, anyhow::Error>(
            target
                .ledger
                .wait_final(&id, std::time::Duration::from_secs(60))
                .await?,
        )
    }
    .await;
    spinner.finish_and_clear();
    let height = result?;
    let bound = target.ledger.name(name).await?;
    if bound.map(|n| n.manifest_id) != Some(signed.id().to_string()) {
        bail!(
            "the ledger did not bind {name:?} to {} (is the name someone else's, or your balance too low? see `bonus names {name}` and `bonus balance`)",
            signed.id()
        );
    }
    Ok(Deployed {
        manifest_id: signed.id(),
        version,
        height,
        url: (target.url_of)(name),
    })
}

/// The next version and its parent, from the ledger; refuses a name that
/// belongs to someone else.
async fn ledger_version(
    ledger: &LedgerClient,
    name: &str,
    owner: &bonus_ids::PublicKey,
) -> anyhow::Result<(u32, Option<ManifestId>)> {
    let Some(current) = ledger.name(name).await? else {
        return Ok((1, None));
    };
    if current.owner != owner.to_string() {
        bail!(
            "the name {name:?} belongs to {}; deploy under another --name",
            current.owner
        );
    }
    let id: ManifestId = current.manifest_id.parse()?;
    let version = match ledger.manifest(&id).await? {
        Some(view) => bonus_node::hex_decode(&view.signed)
            .and_then(|bytes| bonus_registry::SignedManifest::decode(&bytes).ok())
            .map_or(1, |signed| signed.manifest().version + 1),
        None => 1,
    };
    Ok((version, Some(id)))
}

fn run_network(global: &GlobalArgs, args: DeployArgs) -> anyhow::Result<()> {
    let key = keys::load_key(&args.key)?;
    let bytes = read_component(&args.wasm)?;
    let terms = Terms::from_args(&args)?;
    if args.dry_run || args.no_upload {
        bail!("--dry-run and --no-upload apply to a standalone node (--node without --ledger)");
    }
    let target = Target::resolve(args.node.as_deref(), &args.ledger)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deployed = tokio.block_on(deploy_to_network(
        &target,
        &key,
        &args.name,
        bytes,
        terms,
        global.quiet,
    ))?;
    if global.json {
        println!(
            "{}",
            serde_json::json!({
                "name": args.name, "version": deployed.version,
                "manifest_id": deployed.manifest_id.to_string(),
                "height": deployed.height, "url": deployed.url,
            })
        );
    } else {
        output::status(
            global.quiet,
            "Deployed",
            format!(
                "{} v{} ({}), final at height {}",
                args.name, deployed.version, deployed.manifest_id, deployed.height
            ),
        );
        println!("{}", deployed.url);
    }
    Ok(())
}
