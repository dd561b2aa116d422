//! `bonus inspect`: what a file, an id or a name is.

use crate::commands::GlobalArgs;
use crate::commands::deploy::node_url;
use anyhow::Context;
use bonus_ids::ArtifactId;
use bonus_node::client::NodeClient;
use bonus_runtime::{CompileChild, Compiler, Runtime, RuntimeConfig};
use std::path::Path;

/// Show a local `.wasm` file's content id (equal to `b3sum` of the file) and
/// whether it is a servable component; or what a node knows of an artifact
/// id or a function name (for a function: its current manifest, with the
/// budget its owner signed, `price_per_million_fuel_max` and
/// `spend_per_period_max`).
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A `.wasm` file, an artifact id, or a function name.
    target: String,
    /// The node's API, for ids and names [default: a worker of the local
    /// network `bonus up` started].
    #[arg(long, env = "BONUS_NODE")]
    node: Option<String>,
}

pub fn run(global: &GlobalArgs, args: InspectArgs) -> anyhow::Result<()> {
    let value = if Path::new(&args.target).is_file() {
        inspect_file(Path::new(&args.target))?
    } else {
        let client = NodeClient::new(&node_url(args.node.as_deref())?)?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        tokio.block_on(inspect_remote(&client, &args.target))?
    };
    if global.json {
        println!("{value}");
    } else {
        let fields = value.as_object().into_iter().flatten();
        let width = fields.clone().map(|(key, _)| key.len()).max().unwrap_or(0);
        for (key, field) in fields {
            let shown = field
                .as_str()
                .map(ToString::to_string)
                .unwrap_or_else(|| field.to_string());
            println!("{key:>width$}: {shown}");
        }
    }
    Ok(())
}

fn inspect_file(path: &Path) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(path)?;
    let artifact_id = ArtifactId::of(&bytes);
    // Winch's one pass validates and links as Cranelift would, in a
    // fraction of the time (hello-js: 1.1 s against 8 s), and in time linear
    // in the code; where Winch is unavailable Cranelift runs in a child
    // under its budget, as on a node.
    let runtime = Runtime::new(RuntimeConfig {
        instances_max: 1,
        compiler: Compiler::Winch,
        compile_child: Some(
            CompileChild::this_program().context("cannot locate the bonus executable")?,
        ),
        ..RuntimeConfig::default()
    })?;
    let (valid, problem) = match runtime.load(&bytes) {
        Ok(_) => (true, None),
        Err(e) => (false, Some(e.to_string())),
    };
    let mut value = serde_json::json!({
        "file": path.display().to_string(),
        "artifact_id": artifact_id.to_string(),
        "b3sum": artifact_id.to_hex(),
        "bytes": bytes.len(),
        "http_component": valid,
    });
    if let Some(problem) = problem {
        value["problem"] = problem.into();
    }
    Ok(value)
}

async fn inspect_remote(client: &NodeClient, target: &str) -> anyhow::Result<serde_json::Value> {
    let functions = client.functions().await?;
    if let Ok(id) = target.parse::<ArtifactId>() {
        let bytes = client.artifact_bytes(&id).await?;
        let used_by: Vec<_> = functions
            .iter()
            .filter(|f| f.artifact_id == id.to_string() || f.manifest_id.ends_with(&id.to_hex()))
            .collect();
        return Ok(serde_json::json!({
            "id": id.to_hex(),
            "held_by_node": bytes.is_some(),
            "bytes": bytes,
            "functions": used_by,
        }));
    }
    match functions.iter().find(|f| f.name == target && f.current) {
        Some(function) => Ok(serde_json::to_value(function)?),
        None => anyhow::bail!(
            "{target:?} is not a file, an id, or a function on {}; check `bonus ls`",
            client.base()
        ),
    }
}
