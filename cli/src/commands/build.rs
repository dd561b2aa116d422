//! `bonus build`: turn a project into a `wasi:http` component.

use crate::commands::GlobalArgs;
use crate::guest_build;
use anyhow::Context;
use bonus_ids::ArtifactId;
use std::path::PathBuf;

/// Build a function into a `.wasm` component: a Rust project with cargo
/// for `wasm32-wasip2`, or a JavaScript/TypeScript handler
/// (`export default { fetch }`) with sdk-js (componentize-js, pre-initialized).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  bonus build examples/hello-js\n  \
    bonus build handler.ts -o handler.wasm\n  bonus build examples/hello")]
pub struct BuildArgs {
    /// A Rust project directory, or a JS/TS handler file or its directory.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Where to write the component [default: cargo's target dir, or
    /// `<project>/dist/<name>.wasm` for JS].
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: BuildArgs) -> anyhow::Result<()> {
    let wasm = if guest_build::is_js_handler(&args.path) {
        guest_build::build_js(&args.path, args.output.as_deref(), global.quiet)?
    } else {
        let built = guest_build::resolve(&args.path, global.quiet)?;
        match &args.output {
            Some(output) => {
                std::fs::copy(&built, output).with_context(|| {
                    format!(
                        "cannot write {}; check the directory exists",
                        output.display()
                    )
                })?;
                output.clone()
            }
            None => built,
        }
    };
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let artifact_id = ArtifactId::of(&bytes);
    if global.json {
        println!(
            "{}",
            serde_json::json!({ "wasm": wasm, "artifact_id": artifact_id.to_string(), "bytes": bytes.len() })
        );
    } else {
        println!("{}", wasm.display());
    }
    Ok(())
}
