//! `bonus traffic`, `bonus rollback` and `bonus fund`: what a function's
//! owner changes on the ledger after deploying it.

use crate::commands::deploy::ledger_client;
use crate::commands::{GlobalArgs, keys};
use crate::output;
use anyhow::{Context, bail};
use bonus_ids::ManifestId;
use bonus_ledger::TxBody;
use bonus_ledger::client::LedgerClient;
use std::time::Duration;

/// Split a name's traffic between its versions by weight, e.g. 90 % to
/// the current version and 10 % to a new one. Every version must have been
/// deployed under this name; `bonus deploy` makes the new version current
/// with all the traffic, so split after deploying it.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example (v2 just deployed; send 10 % to it, 90 % back to v1):\n  \
    bonus traffic hello --split v1=90 --split v2=10"
)]
pub struct TrafficArgs {
    /// The function's name.
    name: String,
    /// `VERSION=WEIGHT` (version `v3` or `3`, or a manifest id), repeatable.
    #[arg(long = "split", value_name = "VERSION=WEIGHT", required = true)]
    splits: Vec<String>,
    /// Signing key name.
    #[arg(long, default_value = "default")]
    key: String,
    /// A ledger validator's API (repeatable) [default: the local network's].
    #[arg(long = "ledger", value_name = "URL")]
    ledger: Vec<String>,
}

/// Make the previous version current again, with all the traffic.
#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// The function's name.
    name: String,
    /// Signing key name.
    #[arg(long, default_value = "default")]
    key: String,
    /// A ledger validator's API (repeatable) [default: the local network's].
    #[arg(long = "ledger", value_name = "URL")]
    ledger: Vec<String>,
}

/// Set the most a function's owner pays per settlement period, and clear
/// the owner's unpaid mark: routers answer 402 while an owner cannot pay
/// (its balance ran out, or the name spent its budget this period). Top
/// up the balance first with `bonus transfer` if it ran out.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example (allow hello up to 50 000 per period):\n  bonus fund hello --spend-max 50000"
)]
pub struct FundArgs {
    /// The function's name.
    name: String,
    /// Most charged per period for this name, fees included (0: never).
    #[arg(long, value_name = "AMOUNT")]
    spend_max: u64,
    /// Signing key name (the owner).
    #[arg(long, default_value = "default")]
    key: String,
    /// A ledger validator's API (repeatable) [default: the local network's].
    #[arg(long = "ledger", value_name = "URL")]
    ledger: Vec<String>,
}

/// Every version deployed under `name`, newest first: (version, id, signed bytes).
async fn versions(
    ledger: &LedgerClient,
    name: &str,
) -> anyhow::Result<Vec<(u32, ManifestId, Vec<u8>)>> {
    let Some(view) = ledger.name(name).await? else {
        bail!("no function named {name:?} on the ledger; deploy it first");
    };
    // Walk the parent chain from the current manifest.
    let mut out = Vec::new();
    let mut next: Option<ManifestId> = Some(view.manifest_id.parse()?);
    while let Some(id) = next.take() {
        let Some(manifest) = ledger.manifest(&id).await? else {
            break;
        };
        let bytes = bonus_node::hex_decode(&manifest.signed)
            .context("the ledger sent a manifest that is not hex")?;
        let signed = bonus_registry::SignedManifest::decode(&bytes)?;
        next = signed.manifest().parent;
        out.push((signed.manifest().version, id, bytes));
        if out.len() > 1000 {
            break;
        }
    }
    Ok(out)
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Submits `body`, waits for its finality, and reads `name` back: callers
/// check the view, because a refused transaction is final too.
async fn submit(
    ledger: &LedgerClient,
    key: &bonus_ids::SecretKey,
    name: &str,
    body: TxBody,
    quiet: bool,
) -> anyhow::Result<bonus_ledger::api::NameView> {
    let spinner = indicatif::ProgressBar::new_spinner();
    if quiet {
        spinner.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    spinner.set_message("waiting for the ledger to finalize");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let result = async {
        let id = ledger.sign_and_submit(key, body).await?;
        Ok::<_, anyhow::Error>(ledger.wait_final(&id, Duration::from_secs(60)).await?)
    }
    .await;
    spinner.finish_and_clear();
    result?;
    ledger.name(name).await?.context("the name vanished")
}

pub fn traffic(global: &GlobalArgs, args: TrafficArgs) -> anyhow::Result<()> {
    let key = keys::load_key(&args.key)?;
    let ledger = ledger_client(&args.ledger)?;
    block_on(async {
        let known = versions(&ledger, &args.name).await?;
        let mut splits = Vec::new();
        for split in &args.splits {
            let (which, weight) = split
                .split_once('=')
                .with_context(|| format!("--split expects VERSION=WEIGHT, got {split:?}"))?;
            let weight: u32 = weight
                .parse()
                .with_context(|| format!("weight {weight:?} is not a number"))?;
            let id = match which.trim_start_matches('v').parse::<u32>() {
                Ok(version) => known
                    .iter()
                    .find(|(v, _, _)| *v == version)
                    .map(|(_, id, _)| *id)
                    .with_context(|| format!("{} has no version {version}", args.name))?,
                Err(_) => which.parse::<ManifestId>()?,
            };
            splits.push((id, weight));
        }
        let view = submit(
            &ledger,
            &key,
            &args.name,
            TxBody::SetTraffic {
                name: args.name.clone(),
                splits: splits.clone(),
            },
            global.quiet,
        )
        .await?;
        if view.traffic.len() != splits.len() {
            bail!(
                "the ledger did not apply the split (are you the owner of {}? see `bonus names {}`)",
                args.name,
                args.name
            );
        }
        output::status(
            global.quiet,
            "Split",
            format!("{}: {}", args.name, args.splits.join(", ")),
        );
        Ok(())
    })
}

pub fn rollback(global: &GlobalArgs, args: RollbackArgs) -> anyhow::Result<()> {
    let key = keys::load_key(&args.key)?;
    let ledger = ledger_client(&args.ledger)?;
    block_on(async {
        let known = versions(&ledger, &args.name).await?;
        let Some((version, id, bytes)) = known.get(1).cloned() else {
            bail!("{} has no earlier version to roll back to", args.name);
        };
        // Re-deploying the parent's signed manifest makes it current and
        // clears any split; its id and terms are what the owner signed then.
        let view = submit(
            &ledger,
            &key,
            &args.name,
            TxBody::Deploy { manifest: bytes },
            global.quiet,
        )
        .await?;
        if view.manifest_id != id.to_string() {
            bail!(
                "the ledger did not roll back {} (are you its owner?)",
                args.name
            );
        }
        if global.json {
            println!(
                "{}",
                serde_json::json!({ "name": args.name, "version": version, "manifest_id": id.to_string() })
            );
        }
        output::status(
            global.quiet,
            "Rolled back",
            format!("{} to v{version} ({id})", args.name),
        );
        Ok(())
    })
}

pub fn fund(global: &GlobalArgs, args: FundArgs) -> anyhow::Result<()> {
    let key = keys::load_key(&args.key)?;
    let ledger = ledger_client(&args.ledger)?;
    block_on(async {
        let Some(view) = ledger.name(&args.name).await? else {
            bail!(
                "no function named {:?} on the ledger; deploy it first",
                args.name
            );
        };
        if view.owner != key.public().to_string() {
            bail!(
                "{} belongs to {}, not to key {:?}; pass the owner's --key",
                args.name,
                view.owner,
                args.key
            );
        }
        let view = submit(
            &ledger,
            &key,
            &args.name,
            TxBody::Fund {
                name: args.name.clone(),
                spend_per_period_max: args.spend_max,
            },
            global.quiet,
        )
        .await?;
        if view.spend_per_period_max != args.spend_max {
            bail!("the ledger did not apply the budget for {}", args.name);
        }
        if global.json {
            println!("{}", serde_json::to_string(&view)?);
        }
        let state = match view.unpaid {
            true => "still unpaid: the balance cannot cover it; top up with `bonus transfer`",
            false => "paid",
        };
        output::status(
            global.quiet,
            "Funded",
            format!(
                "{}: at most {} per period ({state})",
                args.name, args.spend_max
            ),
        );
        Ok(())
    })
}
