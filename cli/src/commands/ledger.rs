//! Ledger commands: `bonus ledger status|genesis`, `bonus balance`,
//! `bonus transfer`, `bonus names`.

use crate::commands::{GlobalArgs, keys};
use crate::node::client::NodeClient;
use crate::output;
use anyhow::{Context as _, bail};
use bonus_ids::{PublicKey, SecretKey};
use bonus_ledger::genesis::{Genesis, GenesisBalance, GenesisValidator};
use bonus_ledger::{SignedTx, TxBody};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the ledger's query API is.
#[derive(clap::Args, Debug)]
pub struct LedgerUrl {
    /// A validator's query API.
    #[arg(long, env = "BONUS_LEDGER", default_value = "http://127.0.0.1:7200")]
    ledger: String,
}

impl LedgerUrl {
    fn client(&self) -> anyhow::Result<NodeClient> {
        NodeClient::ledger(&self.ledger)
    }
}

/// Inspect the ledger or create a genesis.
#[derive(clap::Args, Debug)]
pub struct LedgerArgs {
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(clap::Subcommand, Debug)]
enum LedgerCommand {
    /// Finalized height, state root, validators, mempool size.
    Status(LedgerUrl),
    /// Create keys and a genesis file for a local network.
    Genesis {
        /// How many validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory for genesis.json, validator-N.key and faucet.key (must not exist).
        #[arg(long)]
        dir: PathBuf,
        /// First port: validator N's p2p is BASE+N, its API BASE+100+N.
        #[arg(long, default_value_t = 7100)]
        base_port: u16,
        /// The dev faucet's balance.
        #[arg(long, default_value_t = 1_000_000_000_000)]
        faucet: u64,
    },
}

/// Show an account's balance, nonce and stake.
#[derive(clap::Args, Debug)]
pub struct BalanceArgs {
    /// The account (`ed25519:<hex>`) [default: the public half of --key].
    account: Option<String>,
    /// Signing key name whose account to show.
    #[arg(long, default_value = "default")]
    key: String,
    #[command(flatten)]
    url: LedgerUrl,
}

/// Send funds to another account, and wait until the transfer is final.
#[derive(clap::Args, Debug)]
pub struct TransferArgs {
    /// Recipient, `ed25519:<hex>`.
    to: String,
    /// Amount.
    amount: u64,
    /// Signing key name (the payer).
    #[arg(long, default_value = "default", conflicts_with = "key_file")]
    key: String,
    /// A key file instead of a named key (e.g. a local network's faucet.key).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Return once the transaction is accepted, without waiting for finality.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    url: LedgerUrl,
}

/// List names bound on the ledger, or show one.
#[derive(clap::Args, Debug)]
pub struct NamesArgs {
    /// One name to show.
    name: Option<String>,
    #[command(flatten)]
    url: LedgerUrl,
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

pub fn run(global: &GlobalArgs, args: LedgerArgs) -> anyhow::Result<()> {
    match args.command {
        LedgerCommand::Status(url) => {
            let status = block_on(async { url.client()?.get_json("/v1/ledger/status").await })?;
            if global.json {
                println!("{status}");
            } else {
                println!("height      {}", status["height"]);
                println!(
                    "state root  {}",
                    status["state_root"].as_str().unwrap_or("?")
                );
                println!("mempool     {}", status["mempool"]);
                println!("fee pool    {}", status["fee_pool"]);
                if let Some(validators) = status["validators"].as_array() {
                    println!("validators  {}", validators.len());
                    for v in validators {
                        println!("  {}", v.as_str().unwrap_or("?"));
                    }
                }
            }
            Ok(())
        }
        LedgerCommand::Genesis {
            validators,
            dir,
            base_port,
            faucet,
        } => genesis(global, validators, dir, base_port, faucet),
    }
}

fn genesis(
    global: &GlobalArgs,
    count: usize,
    dir: PathBuf,
    base_port: u16,
    faucet_amount: u64,
) -> anyhow::Result<()> {
    if count == 0 || count > 50 {
        bail!("--validators must be between 1 and 50");
    }
    if dir.exists() {
        bail!("{} exists; pick a new --dir", dir.display());
    }
    let last_port = u32::from(base_port) + 100 + count as u32;
    if last_port > u32::from(u16::MAX) {
        bail!("--base-port {base_port} leaves no room for {count} validators");
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut validators = Vec::new();
    let mut balances = Vec::new();
    for i in 0..count {
        let key = SecretKey::generate();
        key.save(&dir.join(format!("validator-{i}.key")))?;
        let port = base_port + i as u16;
        validators.push(GenesisValidator {
            key: key.public().to_string(),
            p2p: ([127, 0, 0, 1], port).into(),
            api: Some(([127, 0, 0, 1], port + 100).into()),
        });
        balances.push(GenesisBalance {
            account: key.public().to_string(),
            amount: 1_000_000,
        });
    }
    let faucet = SecretKey::generate();
    faucet.save(&dir.join("faucet.key"))?;
    balances.push(GenesisBalance {
        account: faucet.public().to_string(),
        amount: faucet_amount,
    });
    let genesis = Genesis {
        chain: "bonus-local".into(),
        validators,
        balances,
    };
    let path = dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_string_pretty(&genesis)?)?;
    if global.json {
        println!(
            "{}",
            serde_json::json!({ "genesis": path, "faucet": faucet.public().to_string() })
        );
    }
    output::status(
        global.quiet,
        "Created",
        format!(
            "{} with {count} validators; faucet {} (key {})",
            path.display(),
            faucet.public(),
            dir.join("faucet.key").display()
        ),
    );
    Ok(())
}

fn load_signer(key: &str, key_file: Option<&PathBuf>) -> anyhow::Result<SecretKey> {
    match key_file {
        Some(path) => SecretKey::load(path)
            .with_context(|| format!("cannot load the key file {}", path.display())),
        None => keys::load_key(key),
    }
}

pub fn balance(global: &GlobalArgs, args: BalanceArgs) -> anyhow::Result<()> {
    let account: PublicKey = match &args.account {
        Some(text) => text.parse().with_context(|| {
            format!("{text:?} is not an account; expected ed25519:<64 hex digits>")
        })?,
        None => keys::load_key(&args.key)?.public(),
    };
    let value = block_on(async {
        args.url
            .client()?
            .get_json(&format!("/v1/ledger/accounts/{account}"))
            .await
    })?;
    if global.json {
        println!("{value}");
    } else {
        println!(
            "{account}: balance {}, stake {}, nonce {}",
            value["balance"], value["stake"], value["nonce"]
        );
    }
    Ok(())
}

pub fn transfer(global: &GlobalArgs, args: TransferArgs) -> anyhow::Result<()> {
    let to: PublicKey = args.to.parse().with_context(|| {
        format!(
            "{:?} is not an account; expected ed25519:<64 hex digits>",
            args.to
        )
    })?;
    if args.amount == 0 {
        bail!("the amount must be positive");
    }
    let key = load_signer(&args.key, args.key_file.as_ref())?;
    let client = args.url.client()?;
    let quiet = global.quiet;
    let (id, height) = block_on(async {
        let account = client
            .get_json(&format!("/v1/ledger/accounts/{}", key.public()))
            .await?;
        let nonce = account["nonce"]
            .as_u64()
            .context("the ledger sent no nonce")?;
        let tx = SignedTx::sign(
            &key,
            nonce,
            TxBody::Transfer {
                to,
                amount: args.amount,
            },
        );
        let accepted = client.post_bytes("/v1/ledger/txs", tx.encode()).await?;
        let id = accepted["id"].as_str().unwrap_or_default().to_string();
        if args.no_wait {
            return Ok((id, None));
        }
        let spinner = indicatif::ProgressBar::new_spinner();
        if quiet {
            spinner.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        spinner.set_message("waiting for finality");
        spinner.enable_steady_tick(Duration::from_millis(100));
        let started = Instant::now();
        loop {
            let status = client.get_json(&format!("/v1/ledger/txs/{id}")).await?;
            match status["status"].as_str() {
                Some("finalized") => {
                    spinner.finish_and_clear();
                    return Ok((id, status["height"].as_u64()));
                }
                Some("unknown") => {
                    spinner.finish_and_clear();
                    bail!(
                        "transaction {id} was dropped (it no longer applies: balance or nonce changed); check `bonus balance` and retry"
                    );
                }
                _ if started.elapsed() > Duration::from_secs(60) => {
                    spinner.finish_and_clear();
                    bail!(
                        "transaction {id} is not final after 60 s; is a quorum of validators running? (`bonus ledger status`)"
                    );
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })?;
    if global.json {
        println!("{}", serde_json::json!({ "id": id, "height": height }));
    }
    match height {
        Some(height) => output::status(
            quiet,
            "Transferred",
            format!(
                "{} to {to} (tx {id}, final at height {height})",
                args.amount
            ),
        ),
        None => output::status(quiet, "Submitted", format!("tx {id}")),
    }
    Ok(())
}

pub fn names(global: &GlobalArgs, args: NamesArgs) -> anyhow::Result<()> {
    let path = match &args.name {
        Some(name) => format!("/v1/ledger/names/{name}"),
        None => "/v1/ledger/names".into(),
    };
    let value = block_on(async { args.url.client()?.get_json(&path).await })?;
    if global.json {
        println!("{value}");
        return Ok(());
    }
    let list = match &args.name {
        Some(_) => vec![value],
        None => value["names"].as_array().cloned().unwrap_or_default(),
    };
    if list.is_empty() {
        println!("no names on the ledger yet");
    }
    for entry in list {
        println!(
            "{}  {}  owner {}{}",
            entry["name"].as_str().unwrap_or("?"),
            entry["manifest_id"].as_str().unwrap_or("?"),
            entry["owner"].as_str().unwrap_or("?"),
            if entry["unpaid"].as_bool() == Some(true) {
                "  (unpaid)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
