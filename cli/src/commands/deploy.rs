//! `bonus deploy`: upload a component and sign its manifest.

use crate::commands::{GlobalArgs, keys};
use crate::node::NodeClient;
use crate::output;
use anyhow::Context;
use bonus_ids::{ArtifactId, ManifestId};
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
    /// The node's API.
    #[arg(long, env = "BONUS_NODE", default_value = "http://127.0.0.1:4000")]
    node: String,
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

pub fn run(global: &GlobalArgs, args: DeployArgs) -> anyhow::Result<()> {
    let key = keys::load_key(&args.key)?;
    let bytes = std::fs::read(&args.wasm)
        .with_context(|| format!("cannot read {}; check the path", args.wasm.display()))?;
    let artifact_id = ArtifactId::of(&bytes);
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
    let client = NodeClient::new(&args.node)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let (version, parent) = current_version(&client, &args.name, &key.public()).await?;
        let manifest = Manifest {
            name: args.name.clone(),
            artifact_id,
            artifact_bytes: bytes.len() as u64,
            limits: ManifestLimits {
                fuel_max: args.fuel,
                memory_bytes_max: args.memory_mib << 20,
                deadline_ms: args.deadline_ms,
            },
            budget: ManifestBudget {
                price_per_million_fuel_max: args.price_max,
                spend_per_period_max: args.spend_max,
            },
            env,
            allowed_outbound_hosts: args.allow_outbound.clone(),
            routes: Vec::new(),
            version,
            parent,
            owner: key.public(),
        };
        let signed = manifest.sign(&key)?;
        output::status(global.quiet, "Budget", describe_budget(&signed.manifest().budget));
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
        let url = format!("{}{}", client.base(), answer["path"].as_str().unwrap_or("/"));
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
    let listing = client.get_json("/v1/functions").await?;
    let current = listing["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == name && f["current"] == true);
    let Some(current) = current else {
        return Ok((1, None));
    };
    if current["owner"].as_str() != Some(owner.to_string().as_str()) {
        anyhow::bail!(
            "the name {name:?} belongs to {}; deploy under another --name",
            current["owner"].as_str().unwrap_or("another account")
        );
    }
    let version = current["version"].as_u64().unwrap_or(0) as u32 + 1;
    let parent = current["manifest_id"]
        .as_str()
        .and_then(|id| id.parse().ok());
    Ok((version, parent))
}
