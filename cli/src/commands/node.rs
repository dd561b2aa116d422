//! `bonus node`: run a node.

use crate::commands::GlobalArgs;
use crate::node::{NodeConfig, libp2p_addr::Multiaddr};
use crate::{guest_build, output};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Run a node: store and spread artifacts peer to peer, accept deploys on
/// its HTTP API, and serve functions at `/fn/<name>/`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example (two nodes on one machine):\n  \
    bonus node --data-dir /tmp/a --api 127.0.0.1:4000 --p2p /ip4/127.0.0.1/tcp/4100\n  \
    bonus node --data-dir /tmp/b --api 127.0.0.1:4001 --p2p /ip4/127.0.0.1/tcp/4101 \\\n    \
    --bootstrap /ip4/127.0.0.1/tcp/4100/p2p/<peer id printed by the first>")]
pub struct NodeArgs {
    /// Where the node keeps its key, store and compiled code [default: $BONUS_HOME/node].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    api: SocketAddr,
    /// P2P listen address; it is also the only address advertised.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/4100")]
    p2p: Multiaddr,
    /// A peer to join through, `/ip4/…/tcp/…/p2p/<peer id>` (repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Largest artifact accepted, bytes.
    #[arg(long, default_value_t = bonus_registry::ARTIFACT_BYTES_MAX)]
    max_artifact_bytes: u64,
    /// Byzantine test mode: serve peers corrupted artifact data.
    #[arg(long, hide = true)]
    serve_tampered: bool,
    /// Test mode: a slow peer, waiting this long before each range it serves.
    #[arg(long, hide = true, default_value_t = 0)]
    serve_delay_ms: u64,
}

pub fn run(global: &GlobalArgs, args: NodeArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => guest_build::bonus_home()?.join("node"),
    };
    let json = global.json;
    let quiet = global.quiet;
    let config = NodeConfig {
        data_dir,
        api_addr: args.api,
        p2p_listen: args.p2p,
        bootstrap: args.bootstrap,
        artifact_bytes_max: args.max_artifact_bytes,
        serve_tampered: args.serve_tampered,
        serve_delay: std::time::Duration::from_millis(args.serve_delay_ms),
    };
    crate::node::run(config, move |api, p2p| {
        let addrs: Vec<String> = p2p.addrs().iter().map(ToString::to_string).collect();
        if json {
            println!(
                "{}",
                serde_json::json!({ "api": format!("http://{api}"), "peer_id": p2p.peer_id().to_string(), "p2p": addrs })
            );
        }
        output::status(
            quiet,
            "Listening",
            format!("API http://{api}, P2P {}", addrs.join(", ")),
        );
    })
}
