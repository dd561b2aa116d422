//! Ledger commands: `bonus ledger status|genesis`, `bonus balance`,
//! `bonus transfer`, `bonus names`.

use crate::commands::{GlobalArgs, keys};
use crate::output;
use anyhow::{Context as _, bail};
use bonus_ids::{PublicKey, SecretKey};
use bonus_ledger::api::{AccountView, NameView, Names, Status, Submitted, TxStatusView};
use bonus_ledger::genesis::{Genesis, GenesisBalance, GenesisValidator};
use bonus_ledger::{ChainId, Params, SignedTx, TxBody};
use bonus_node::client::NodeClient;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the ledger's query API is.
#[derive(clap::Args, Debug)]
pub struct LedgerUrl {
    /// A validator's query API [default: the local network `bonus up` runs].
    #[arg(long, env = "BONUS_LEDGER")]
    ledger: Option<String>,
}

impl LedgerUrl {
    fn client(&self) -> anyhow::Result<NodeClient> {
        if let Some(url) = &self.ledger {
            return NodeClient::ledger(url);
        }
        let home = crate::guest_build::bonus_home()?.join("up");
        match bonus_node::up::Network::load(&home)? {
            Some(network) => NodeClient::ledger(&network.ledger[0]),
            None => bail!(
                "no ledger: pass --ledger http://<validator API>, or start a network with `bonus up`"
            ),
        }
    }
}

/// A typed answer of the ledger's query API.
async fn get<T: DeserializeOwned>(client: &NodeClient, path: &str) -> anyhow::Result<T> {
    let value = client.get_json(path).await?;
    serde_json::from_value(value).with_context(|| {
        format!(
            "the ledger at {} answered {path} in an unexpected shape; is it the same version as this bonus?",
            client.base()
        )
    })
}

/// Inspect the ledger or create a genesis.
#[derive(clap::Args, Debug)]
pub struct LedgerArgs {
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(clap::Subcommand, Debug)]
enum LedgerCommand {
    /// Chain id, finalized height, state root, validators, mempool size.
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
        /// Stake each validator bonds at genesis (earns fees; slashable).
        #[arg(long, default_value_t = 1_000_000)]
        validator_stake: u64,
        /// Flat fee of every transaction.
        #[arg(long, default_value_t = Params::DEV.tx_fee)]
        tx_fee: u64,
        /// Settlement period, seconds of block time.
        #[arg(long, default_value_t = Params::DEV.period_ms / 1000)]
        period_secs: u64,
        /// How long unstaked funds stay slashable, seconds of block time.
        #[arg(long, default_value_t = Params::DEV.unbonding_ms / 1000)]
        unbonding_secs: u64,
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
            let status: Status =
                block_on(async { get(&url.client()?, "/v1/ledger/status").await })?;
            if global.json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                println!("chain id    {}", status.chain_id);
                println!("height      {}", status.height);
                println!("period      {}", status.period);
                println!("state root  {}", status.state_root);
                println!("mempool     {}", status.mempool);
                println!("fee pool    {}", status.fee_pool);
                println!("tx fee      {}", status.tx_fee);
                println!("validators  {}", status.validators.len());
                for v in &status.validators {
                    println!("  {v}");
                }
            }
            Ok(())
        }
        LedgerCommand::Genesis {
            validators,
            dir,
            base_port,
            faucet,
            validator_stake,
            tx_fee,
            period_secs,
            unbonding_secs,
        } => {
            let params = Params {
                tx_fee,
                period_ms: period_secs.saturating_mul(1000),
                unbonding_ms: unbonding_secs.saturating_mul(1000),
                ..Params::DEV
            };
            params
                .validate()
                .map_err(|reason| anyhow::anyhow!("{reason}; change the flag and retry"))?;
            let plan = GenesisPlan {
                count: validators,
                base_port,
                faucet,
                validator_stake,
                params,
            };
            genesis(global, plan, dir)
        }
    }
}

struct GenesisPlan {
    count: usize,
    base_port: u16,
    faucet: u64,
    validator_stake: u64,
    params: Params,
}

fn genesis(global: &GlobalArgs, plan: GenesisPlan, dir: PathBuf) -> anyhow::Result<()> {
    let GenesisPlan {
        count,
        base_port,
        faucet: faucet_amount,
        validator_stake,
        params,
    } = plan;
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
            stake: validator_stake,
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
        params,
        validators,
        balances,
    };
    genesis
        .state()
        .map_err(|reason| anyhow::anyhow!("the genesis would be invalid: {reason}"))?;
    let path = dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_string_pretty(&genesis)?)?;
    if global.json {
        println!(
            "{}",
            serde_json::json!({
                "genesis": path,
                "faucet": faucet.public().to_string(),
                "chain_id": genesis.chain_id().to_string(),
            })
        );
    }
    output::status(
        global.quiet,
        "Created",
        format!(
            "{} with {count} validators (chain id {}); faucet {} (key {})",
            path.display(),
            genesis.chain_id(),
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
    let view: AccountView = block_on(async {
        get(
            &args.url.client()?,
            &format!("/v1/ledger/accounts/{account}"),
        )
        .await
    })?;
    if global.json {
        println!("{}", serde_json::to_string(&view)?);
    } else {
        let unbonding: u64 = view.unbonding.iter().map(|u| u.amount).sum();
        println!(
            "{account}: balance {}, stake {}, unbonding {unbonding}, nonce {}{}",
            view.balance,
            view.stake,
            view.nonce,
            if view.unpaid {
                " (unpaid: top up to be served again)"
            } else {
                ""
            }
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
        let status: Status = get(&client, "/v1/ledger/status").await?;
        let chain_id = parse_chain_id(&status.chain_id)?;
        let account: AccountView =
            get(&client, &format!("/v1/ledger/accounts/{}", key.public())).await?;
        // The ledger would drop it at its block; say why before sending.
        let needed = u128::from(args.amount) + u128::from(status.tx_fee);
        if u128::from(account.balance) < needed {
            bail!(
                "{} has {} to spend; this transfer needs {needed} ({} and the fee of {})",
                key.public(),
                account.balance,
                args.amount,
                status.tx_fee
            );
        }
        let tx = SignedTx::sign(
            &key,
            &chain_id,
            account.nonce,
            TxBody::Transfer {
                to,
                amount: args.amount,
            },
        );
        let accepted = client.post_bytes("/v1/ledger/txs", tx.encode()).await?;
        let accepted: Submitted = serde_json::from_value(accepted)
            .context("the ledger answered the submission in an unexpected shape")?;
        let id = accepted.id;
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
            let status: TxStatusView = get(&client, &format!("/v1/ledger/txs/{id}")).await?;
            match status {
                TxStatusView::Finalized { height } => {
                    spinner.finish_and_clear();
                    return Ok((id, Some(height)));
                }
                TxStatusView::Unknown => {
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
    let client = args.url.client()?;
    let list: Vec<NameView> = block_on(async {
        Ok(match &args.name {
            Some(_) => vec![get::<NameView>(&client, &path).await?],
            None => get::<Names>(&client, &path).await?.names,
        })
    })?;
    if global.json {
        match &args.name {
            Some(_) => println!("{}", serde_json::to_string(&list[0])?),
            None => println!("{}", serde_json::to_string(&Names { names: list })?),
        }
        return Ok(());
    }
    if list.is_empty() {
        println!("no names on the ledger yet");
    }
    for entry in list {
        println!(
            "{}  {}  owner {}  budget {}/period ({} spent){}",
            entry.name,
            entry.manifest_id,
            entry.owner,
            entry.spend_per_period_max,
            entry.spent_this_period,
            if entry.unpaid { "  (unpaid)" } else { "" }
        );
    }
    Ok(())
}

/// The chain id from `bonus ledger status`'s hex.
fn parse_chain_id(text: &str) -> anyhow::Result<ChainId> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .with_context(|| format!("the ledger sent an invalid chain id {text:?}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("the ledger sent a chain id that is not 32 bytes"))?;
    Ok(ChainId(bytes))
}
