//! `bonus logs NAME`: what a function printed and how its failed
//! invocations ended, from every worker, oldest first.

use crate::commands::{GlobalArgs, keys};
use bonus_node::client::NodeClient;
use bonus_node::wire::LogLine;
use std::time::Duration;

/// Show a function's recent output and failures (its owner only).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Workers keep the last 256 lines of each function in memory: \
what it printed to stdout and stderr (2 KiB per invocation), and the reason \
each failed invocation ended (trap, fuel, deadline, memory). Only the name's \
owner may read them: the request is signed with --key."
)]
pub struct LogsArgs {
    /// The function's name.
    name: String,
    /// A worker's API (repeatable) [default: every worker of the local network].
    #[arg(long, value_name = "URL")]
    node: Vec<String>,
    /// The owner's signing key name.
    #[arg(long, default_value = "default")]
    key: String,
    /// Keep printing new lines as they come, until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
}

/// How often `--follow` asks each worker.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

pub fn run(global: &GlobalArgs, args: LogsArgs) -> anyhow::Result<()> {
    let key = keys::load_key(&args.key)?;
    let workers = if args.node.is_empty() {
        match bonus_node::up::Network::load(&crate::guest_build::bonus_home()?.join("up"))? {
            Some(network) => network.workers,
            None => anyhow::bail!(
                "no local network: pass --node http://<worker API>, or start one with `bonus up`"
            ),
        }
    } else {
        args.node.clone()
    };
    let clients = workers
        .iter()
        .map(|url| NodeClient::new(url))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Per worker, the next line number to ask for.
    let mut after = vec![0u64; clients.len()];
    let mut first = true;
    loop {
        let mut lines: Vec<(&str, LogLine)> = Vec::new();
        let (mut answered, mut refused, mut unknown) = (false, None, None);
        for (i, client) in clients.iter().enumerate() {
            match runtime.block_on(client.logs(&args.name, after[i], &key)) {
                Ok(logs) => {
                    answered = true;
                    if let Some(last) = logs.lines.last() {
                        after[i] = last.seq + 1;
                    }
                    lines.extend(logs.lines.into_iter().map(|l| (workers[i].as_str(), l)));
                }
                // A worker down or restarting must not hide the others,
                // nor a standalone node that does not bind the name; a
                // refusal (not the owner) is the answer.
                Err(e) => {
                    let text = format!("{e:#}");
                    if text.contains("cannot reach") {
                        if first {
                            crate::output::status(global.quiet, "Skipping", text);
                        }
                    } else if text.contains("(404") {
                        unknown = Some(e);
                    } else {
                        refused = Some(e);
                    }
                }
            }
        }
        if let Some(e) = refused.or(if answered { None } else { unknown }) {
            return Err(e.context(format!("cannot read the logs of {:?}", args.name)));
        }
        if !answered && first {
            anyhow::bail!(
                "no worker answered; start the network with `bonus up`, or pass --node http://<worker API>"
            );
        }
        lines.sort_by_key(|(_, line)| line.time_ms);
        for (worker, line) in &lines {
            if global.json {
                let mut value = serde_json::to_value(line)?;
                value["worker"] = serde_json::Value::from(*worker);
                println!("{value}");
            } else {
                let version = line.manifest_id.get(..8).unwrap_or(&line.manifest_id);
                println!(
                    "{}  {version}  {:<6}  {}",
                    super::usage::utc(line.time_ms),
                    line.stream,
                    line.text
                );
            }
        }
        if first && lines.is_empty() && !args.follow {
            crate::output::status(
                global.quiet,
                "Empty",
                format!(
                    "no worker holds lines of {:?} (it printed nothing and never failed, or they restarted)",
                    args.name
                ),
            );
        }
        if !args.follow {
            return Ok(());
        }
        first = false;
        std::thread::sleep(FOLLOW_EVERY);
    }
}
