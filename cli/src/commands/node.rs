//! `bonus node`: run a node with one or more roles.

use crate::commands::GlobalArgs;
use crate::{guest_build, output};
use anyhow::Context;
use bonus_node::config::{Event, NodeConfig, Role};
use bonus_registry::p2p::Multiaddr;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Run a node: a worker (runs functions, settles their usage), a router
/// (the HTTP edge), a validator (keeps the ledger), or several at once.
///
/// With `--ledger`, a worker or router registers itself on the ledger
/// (staking the role's minimum from its own key's balance), takes names
/// and manifests from finalized state and settles usage there. Without
/// it, a worker is a standalone node with its own name map.
/// SIGINT or SIGTERM stops it gracefully: in-flight requests finish,
/// receipts are flushed, last attestations submitted. A second one exits
/// at once.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    bonus up                      (a whole local network; easier)\n  \
    bonus node --role worker --ledger http://127.0.0.1:7020 --api 127.0.0.1:7030 --p2p /ip4/127.0.0.1/tcp/7040\n  \
    bonus node --role router --ledger http://127.0.0.1:7020 --listen 127.0.0.1:8080\n  \
    bonus node --config node.toml   (the same settings as TOML: roles, data_dir, ledger, [worker], [router], [validator])")]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    /// A TOML configuration file; the flags below are then ignored.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Role to run (repeatable).
    #[arg(long = "role", value_enum, default_values_t = [RoleArg::Worker])]
    roles: Vec<RoleArg>,
    /// Where the node keeps its keys, store, receipts and chain [default: $BONUS_HOME/node].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A ledger validator's API URL (repeatable; they are tried in turn).
    #[arg(long = "ledger", value_name = "URL")]
    ledger: Vec<String>,
    /// Worker: HTTP API address (routers forward here).
    #[arg(long, default_value = "127.0.0.1:4000")]
    api: SocketAddr,
    /// Worker: P2P listen address; it is also the only address advertised.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/4100")]
    p2p: Multiaddr,
    /// Worker: a peer to join through, `/ip4/…/tcp/…/p2p/<peer id>` (repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Worker: price per million fuel charged to function owners.
    #[arg(long, default_value_t = 1_000)]
    price: u64,
    /// Worker: region hint published on the ledger.
    #[arg(long, default_value = "local")]
    region: String,
    /// Worker: invocations at once, at most.
    #[arg(long, default_value_t = 1024)]
    concurrency: usize,
    /// Worker: fuel burned per second at most, all functions together;
    /// beyond it requests go to other workers.
    #[arg(long, value_name = "FUEL")]
    fuel_per_second_max: Option<u64>,
    /// Worker: take requests only while the rest of this machine is idle
    /// (backs off when other processes use more than half its CPU, resumes
    /// after 3 s below a quarter).
    #[arg(long)]
    idle_only: bool,
    /// Worker: largest artifact accepted, bytes.
    #[arg(long, default_value_t = bonus_registry::ARTIFACT_BYTES_MAX)]
    max_artifact_bytes: u64,
    /// Router: public HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Validator: the genesis file.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Validator: its key file [default: the node key].
    #[arg(long)]
    validator_key_file: Option<PathBuf>,
    /// Validator: query API address [default: from the genesis file].
    #[arg(long)]
    validator_api: Option<SocketAddr>,
    /// Test mode: answer health probes this much later (a far worker).
    #[arg(long, hide = true, default_value_t = 0)]
    probe_delay_ms: u64,
    /// Byzantine test mode: serve peers corrupted artifact data.
    #[arg(long, hide = true)]
    serve_tampered: bool,
    /// Test mode: a slow peer, waiting this long before each range it serves.
    #[arg(long, hide = true, default_value_t = 0)]
    serve_delay_ms: u64,
    /// Worker: serve artifact segments over libp2p only, with no second
    /// TCP port (the OS picks it, on the --p2p address's IP): for a
    /// firewall that opens only the --p2p port. Fetching still uses the
    /// direct ports other nodes offer.
    #[arg(long)]
    no_direct_segments: bool,
}

#[derive(clap::Subcommand, Debug)]
enum NodeCommand {
    /// A worker's served invocations, fuel, and pending and settled earnings.
    Status {
        /// The worker's API [default: every worker of the local network].
        #[arg(long)]
        node: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RoleArg {
    Worker,
    Router,
    Validator,
}

pub fn run(global: &GlobalArgs, args: NodeArgs) -> anyhow::Result<()> {
    if let Some(NodeCommand::Status { node }) = args.command {
        return status(global, node);
    }
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => from_flags(args)?,
    };
    config.compile_child = Some(
        bonus_runtime::CompileChild::this_program()
            .context("cannot locate the bonus executable")?,
    );
    let (json, quiet) = (global.json, global.quiet);
    bonus_node::config::run(config, move |event| {
        if json && let Ok(line) = serde_json::to_string(&event) {
            println!("{line}");
        }
        match event {
            Event::Validator { api, height } => output::status(
                quiet,
                "Validating",
                format!("API {api}, resuming at height {height}"),
            ),
            Event::Worker { api, key, p2p, .. } => output::status(
                quiet,
                "Working",
                format!("as {key}; API {api}, P2P {}", p2p.join(", ")),
            ),
            Event::Router { url, key } => {
                output::status(quiet, "Routing", format!("as {key} on {url}"))
            }
            Event::Stopping => output::status(quiet, "Stopping", "draining requests"),
        }
    })
}

fn from_flags(args: NodeArgs) -> anyhow::Result<NodeConfig> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => guest_build::bonus_home()?.join("node"),
    };
    let mut roles: Vec<Role> = args
        .roles
        .iter()
        .map(|r| match r {
            RoleArg::Worker => Role::Worker,
            RoleArg::Router => Role::Router,
            RoleArg::Validator => Role::Validator,
        })
        .collect();
    roles.dedup();
    Ok(NodeConfig {
        roles,
        data_dir,
        ledger: args.ledger,
        worker: bonus_node::config::WorkerSection {
            api: args.api,
            p2p: args.p2p,
            bootstrap: args.bootstrap,
            price: args.price,
            region: args.region,
            concurrency: args.concurrency,
            fuel_per_second_max: args.fuel_per_second_max,
            idle_only: args.idle_only,
            max_artifact_bytes: args.max_artifact_bytes,
            probe_delay_ms: args.probe_delay_ms,
            serve_tampered: args.serve_tampered,
            serve_delay_ms: args.serve_delay_ms,
            direct_segments: !args.no_direct_segments,
        },
        router: bonus_node::config::RouterSection {
            listen: args.listen,
        },
        validator: bonus_node::config::ValidatorSection {
            genesis: args.genesis,
            key_file: args.validator_key_file,
            api: args.validator_api,
        },
        compile_child: None,
    })
}

fn status(global: &GlobalArgs, mut nodes: Vec<String>) -> anyhow::Result<()> {
    if nodes.is_empty() {
        let network = bonus_node::up::Network::load(&guest_build::bonus_home()?.join("up"))?;
        match network {
            Some(network) => nodes = network.workers,
            None => anyhow::bail!(
                "no local network: pass --node http://<worker API>, or start one with `bonus up`"
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut all = Vec::new();
    for node in &nodes {
        let client = bonus_node::client::NodeClient::new(node)?;
        // One node down (restarting, say) must not hide the others.
        let info = runtime.block_on(client.node_info());
        all.push((node.clone(), info));
    }
    if global.json {
        let values: Vec<_> = all
            .iter()
            .map(|(node, info)| match info {
                Ok(info) => serde_json::to_value(info).expect("wire types serialize"),
                Err(e) => serde_json::json!({ "url": node, "error": format!("{e:#}") }),
            })
            .collect();
        println!("{}", serde_json::json!({ "nodes": values }));
        return Ok(());
    }
    for (node, info) in &all {
        let info = match info {
            Ok(info) => info,
            Err(e) => {
                println!("{node}  unreachable: {e:#}");
                continue;
            }
        };
        println!("{node}  {}", info.key);
        let Some(usage) = &info.usage else {
            println!("  standalone node (no ledger): nothing to settle");
            continue;
        };
        let invocations = |n| output::counted(n, "invocation", "invocations");
        println!(
            "  served      {}, {} fuel",
            invocations(usage.invocations),
            usage.fuel
        );
        println!(
            "  pending     {} not yet settled",
            output::counted(
                usage.pending_invocations,
                "routed invocation",
                "routed invocations"
            )
        );
        println!(
            "  settled     {}, {} fuel in {}: earned {}",
            invocations(usage.settled_invocations),
            usage.settled_fuel,
            output::counted(usage.batches, "batch", "batches"),
            usage.earned
        );
        if usage.dropped > 0 {
            println!(
                "  dropped     {} (the disk could not keep up)",
                output::counted(usage.dropped, "receipt", "receipts")
            );
        }
    }
    Ok(())
}
