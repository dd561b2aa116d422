//! `bonus up`: a whole local network in one command.

use crate::commands::deploy::{Target, Terms, deploy_to_network};
use crate::commands::{GlobalArgs, keys};
use crate::{guest_build, output};
use anyhow::Context;
use bonus_ids::{ArtifactId, SecretKey};
use bonus_node::up::{UpConfig, VALIDATORS, WORKERS};
use std::path::PathBuf;
use std::time::Duration;

/// Start a local network on loopback: 4 validators, 2 workers and a
/// router, as separate processes over the real consensus, P2P and HTTP,
/// with your key (`bonus keys`) funded; build and deploy the examples and
/// print their URLs. Ctrl-C stops everything; running it again resumes
/// the same network from $BONUS_HOME/up (delete that directory for a new one).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    bonus up\n  \
    curl http://hello.localhost:7000/\n  \
    bonus deploy fn.wasm --name mine      (in another terminal: deploys to this network)\n  \
    BONUS_HOME=/tmp/net2 bonus up --port 7100   (a second, separate network)")]
pub struct UpArgs {
    /// First port: the router listens on it, the other nodes on the next 50.
    #[arg(long, default_value_t = 7000)]
    port: u16,
    /// The examples directory (functions in it are built and deployed).
    #[arg(long, default_value = "examples")]
    examples: PathBuf,
    /// Example to deploy (repeatable).
    #[arg(long = "example", default_values_t = ["hello".to_string(), "api".to_string()])]
    example: Vec<String>,
    /// Deploy nothing.
    #[arg(long)]
    no_examples: bool,
    /// Test mode: delay each worker's health answers (ms, comma-separated
    /// by worker), making it look far to the router.
    #[arg(long, hide = true, value_delimiter = ',')]
    probe_delay_ms: Vec<u64>,
}

pub fn run(global: &GlobalArgs, args: UpArgs) -> anyhow::Result<()> {
    let quiet = global.quiet;
    let key = match keys::load_key("default") {
        Ok(key) => key,
        Err(_) => {
            let key = SecretKey::generate();
            let path = keys::key_path("default")?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            key.save(&path)?;
            output::status(
                quiet,
                "Created",
                format!("your key {} ({})", key.public(), path.display()),
            );
            key
        }
    };
    let config = UpConfig {
        dir: guest_build::bonus_home()?.join("up"),
        base_port: args.port,
        exe: std::env::current_exe().context("cannot find the bonus binary")?,
        dev_account: key.public(),
        probe_delays_ms: args.probe_delay_ms.clone(),
    };
    let progress = |step: &str| output::status(quiet, "Starting", step);
    let mut up = bonus_node::up::start(&config, &progress)?;
    output::status(
        quiet,
        "Running",
        format!(
            "{VALIDATORS} validators, {WORKERS} workers, 1 router (logs in {})",
            up.dir.join("logs").display()
        ),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut functions = Vec::new();
    if !args.no_examples && args.examples.is_dir() {
        let target = Target::of_network(&up.network)?;
        for name in &args.example {
            let wasm = guest_build::resolve(&args.examples.join(name), quiet)
                .with_context(|| format!("building the example {name}"))?;
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            if runtime.block_on(up_to_date(&target, name, &bytes))? {
                output::status(quiet, "Fresh", format!("{name} is deployed already"));
            } else {
                runtime.block_on(deploy_to_network(
                    &target,
                    &key,
                    name,
                    bytes,
                    Terms::dev(),
                    quiet,
                ))?;
            }
            functions.push((name.clone(), up.network.url_of(name)));
        }
    }
    if global.json {
        println!(
            "{}",
            serde_json::json!({
                "router": up.network.router,
                "ledger": up.network.ledger,
                "workers": up.network.workers,
                "dev_account": up.network.dev_account,
                "functions": functions.iter().map(|(n, u)| (n.clone(), serde_json::json!(u))).collect::<serde_json::Map<_, _>>(),
            })
        );
    } else {
        println!();
        println!("  router   {}", up.network.router);
        println!("  ledger   {}", up.network.ledger[0]);
        for (name, url) in &functions {
            println!("  {name:<8} {url}");
        }
        println!();
        output::status(
            quiet,
            "Ready",
            "deploy more with `bonus deploy fn.wasm --name NAME`; Ctrl-C stops the network",
        );
    }
    let stopped_by = runtime.block_on(async {
        let mut signals = bonus_node::signals::StopSignals::catch()?;
        loop {
            tokio::select! {
                () = signals.recv() => return Ok::<_, anyhow::Error>(None),
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    if let Some(name) = up.supervise()? {
                        return Ok(Some(name));
                    }
                }
            }
        }
    })?;
    output::status(quiet, "Stopping", "the network");
    up.stop();
    match stopped_by {
        Some(name) => anyhow::bail!(
            "{name} kept crashing, so the network was stopped; see {}",
            up.dir.join("logs").join(format!("{name}.log")).display()
        ),
        None => Ok(()),
    }
}

/// Whether `name` already serves exactly these bytes.
async fn up_to_date(target: &Target, name: &str, bytes: &[u8]) -> anyhow::Result<bool> {
    let Some(view) = target.ledger.name(name).await? else {
        return Ok(false);
    };
    let Some(manifest) = target.ledger.manifest(&view.manifest_id.parse()?).await? else {
        return Ok(false);
    };
    let Some(signed) = bonus_node::hex_decode(&manifest.signed)
        .and_then(|b| bonus_registry::SignedManifest::decode(&b).ok())
    else {
        return Ok(false);
    };
    Ok(signed.manifest().artifact_id == ArtifactId::of(bytes))
}
