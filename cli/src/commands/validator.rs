//! `bonus validator`: run a ledger validator and its query API.

use crate::commands::GlobalArgs;
use crate::output;
use anyhow::Context as _;
use bonus_ids::SecretKey;
use bonus_ledger::chain::Timeouts;
use bonus_ledger::genesis::Genesis;
use bonus_node::validator::ValidatorConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Run a ledger validator: BFT consensus (simplex) with the other genesis
/// validators over encrypted p2p, blocks and state in redb under
/// --data-dir, and the ledger query API over HTTP.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example (a 4-validator network on this machine):\n  \
    bonus ledger genesis --validators 4 --dir /tmp/net\n  \
    bonus validator --genesis /tmp/net/genesis.json --key-file /tmp/net/validator-0.key --data-dir /tmp/net/v0\n  \
    (and likewise validator-1..3; each takes its p2p and API address from the genesis file)")]
pub struct ValidatorArgs {
    /// The genesis file (validators, their addresses, initial balances).
    #[arg(long)]
    genesis: PathBuf,
    /// This validator's key file.
    #[arg(long)]
    key_file: PathBuf,
    /// Where blocks, certificates, state and consensus storage live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Query API address [default: this validator's `api` in the genesis file].
    #[arg(long)]
    api: Option<SocketAddr>,
    /// How long to wait for a leader's proposal before voting to skip, ms.
    #[arg(long, default_value_t = 1000)]
    leader_timeout_ms: u64,
}

pub fn run(global: &GlobalArgs, args: ValidatorArgs) -> anyhow::Result<()> {
    let genesis = Genesis::load(&args.genesis)?;
    let key = SecretKey::load(&args.key_file)
        .with_context(|| format!("cannot load the key file {}", args.key_file.display()))?;
    let me = key.public().to_string();
    let entry = genesis
        .validators
        .iter()
        .find(|v| v.key == me)
        .with_context(|| {
            format!(
                "key {me} is not a validator in {}; use one of its validators' key files",
                args.genesis.display()
            )
        })?
        .clone();
    let api = args.api.or(entry.api).with_context(
        || "no API address: pass --api or set this validator's \"api\" in the genesis file",
    )?;
    let leader = std::time::Duration::from_millis(args.leader_timeout_ms.max(1));
    let timeouts = Timeouts {
        leader,
        certification: leader * 2,
        retry: leader,
    };
    let (json, quiet) = (global.json, global.quiet);
    let p2p = entry.p2p;
    bonus_node::validator::run(
        ValidatorConfig {
            genesis,
            key,
            data_dir: args.data_dir,
            api,
            timeouts,
        },
        move |ready| {
            let height = ready.chain.height();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "api": format!("http://{api}"), "key": me, "p2p": p2p.to_string(), "height": height })
                );
            }
            output::status(
                quiet,
                "Validating",
                format!("as {me}; API http://{api}, p2p {p2p}, resuming at height {height}"),
            );
            let stopped = move |height| {
                output::status(
                    quiet,
                    "Stopped",
                    format!("with blocks up to {height} on disk"),
                );
            };
            if let Err(e) = bonus_node::validator::exit_on_signal(ready.chain.clone(), stopped) {
                // It still validates; a signal then ends it as a crash would.
                tracing::warn!(error = %e, "cannot catch SIGINT and SIGTERM");
            }
        },
    )
}
