//! `bonus ls`: functions and versions a node knows.

use crate::commands::GlobalArgs;
use crate::commands::deploy::node_url;
use bonus_node::client::NodeClient;

/// List the functions (and their versions) a node knows.
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// The node's API [default: a worker of the local network `bonus up`
    /// started].
    #[arg(long, env = "BONUS_NODE")]
    node: Option<String>,
}

pub fn run(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<()> {
    let client = NodeClient::new(&node_url(args.node.as_deref())?)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut functions = tokio.block_on(client.functions())?;
    if global.json {
        println!("{}", serde_json::json!({ "functions": functions }));
        return Ok(());
    }
    functions.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    println!("NAME                     VERSION  CURRENT  MANIFEST             ARTIFACT");
    let short = |text: &str| {
        let hex = text.rsplit(':').next().unwrap_or(text);
        hex.chars().take(16).collect::<String>()
    };
    for f in &functions {
        println!(
            "{:<24} {:>7}  {:<8} {:<20} {}",
            f.name,
            f.version,
            if f.current { "*" } else { "" },
            short(&f.manifest_id),
            short(&f.artifact_id),
        );
    }
    Ok(())
}
