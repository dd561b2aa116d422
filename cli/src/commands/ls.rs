//! `bonus ls`: functions and versions a node knows.

use crate::commands::GlobalArgs;
use bonus_node::client::NodeClient;

/// List the functions (and their versions) a node knows.
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// The node's API.
    #[arg(long, env = "BONUS_NODE", default_value = "http://127.0.0.1:4000")]
    node: String,
}

pub fn run(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<()> {
    let client = NodeClient::new(&args.node)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listing = tokio.block_on(client.get_json("/v1/functions"))?;
    if global.json {
        println!("{listing}");
        return Ok(());
    }
    let mut functions: Vec<&serde_json::Value> = listing["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    functions.sort_by_key(|f| {
        (
            f["name"].as_str().unwrap_or("").to_string(),
            f["version"].as_u64(),
        )
    });
    println!("NAME                     VERSION  CURRENT  MANIFEST             ARTIFACT");
    for f in functions {
        let short = |key: &str| {
            let text = f[key].as_str().unwrap_or("");
            let hex = text.rsplit(':').next().unwrap_or(text);
            hex.chars().take(16).collect::<String>()
        };
        println!(
            "{:<24} {:>7}  {:<8} {:<20} {}",
            f["name"].as_str().unwrap_or("?"),
            f["version"],
            if f["current"] == true { "*" } else { "" },
            short("manifest_id"),
            short("artifact_id"),
        );
    }
    Ok(())
}
