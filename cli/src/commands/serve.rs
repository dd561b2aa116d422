//! `bonus serve`: one function, served locally over HTTP.

use crate::commands::GlobalArgs;
use crate::{guest_build, output};
use anyhow::Context;
use bonus_node::serve as server;
use bonus_runtime::{
    Capabilities, CompileChild, Compiler, Limits, OutboundPolicy, Runtime, RuntimeConfig,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Serve one function over HTTP on this machine.
///
/// PATH is a `.wasm` component (a `wasi:http/proxy` component, as built for
/// `wasm32-wasip2`), a Rust project directory, or a JavaScript/TypeScript
/// handler (file or directory, built with sdk-js); projects are built first.
/// Every request runs in a fresh sandbox; responses carry `x-bonus-fuel`
/// and `x-bonus-request-id`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  bonus serve examples/hello\n  bonus serve examples/hello-js\n  \
    bonus serve fn.wasm --addr 127.0.0.1:8080 --env GREETING=hi --allow-outbound https://api.example.com"
)]
pub struct ServeArgs {
    /// A `.wasm` component, or a Rust project or JS/TS handler to build first.
    path: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Worker threads, each with its own listener (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Fuel budget per request (about one unit per wasm instruction).
    #[arg(long, default_value_t = Limits::DEFAULT.fuel_max)]
    fuel: u64,
    /// Wall-clock deadline per request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = Limits::DEFAULT.deadline.as_millis() as u64)]
    deadline_ms: u64,
    /// Linear memory limit per request, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = Limits::DEFAULT.memory_bytes_max >> 20)]
    memory_mib: u64,
    /// Largest request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT.request_body_bytes_max)]
    max_request_body: u64,
    /// Largest response body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT.response_body_bytes_max)]
    max_response_body: u64,
    /// Environment variable for the function, `KEY=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Allow outbound HTTP to `scheme://host[:port]`; `*` wildcards allowed (repeatable).
    #[arg(long = "allow-outbound", value_name = "PATTERN")]
    allow_outbound: Vec<String>,
    /// Where compiled code is cached [default: $BONUS_HOME/cache or ~/.bonus/cache].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Do not count fuel (only to measure its cost; responses then say 0).
    #[arg(long, hide = true)]
    no_fuel: bool,
    /// Compile with Cranelift before serving. By default a component not
    /// in the cache is served at once by Winch's (baseline) code while
    /// Cranelift compiles it in the background.
    #[arg(long)]
    no_tiered: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let wasm_path = guest_build::resolve(&args.path, global.quiet)?;
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("cannot read {}; check the path", wasm_path.display()))?;
    let outbound = OutboundPolicy::from_patterns(&args.allow_outbound)?;
    let cache_dir = match args.cache_dir {
        Some(dir) => dir,
        None => crate::guest_build::bonus_home()?.join("cache"),
    };
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache_dir),
        fuel: !args.no_fuel,
        compiler: match args.no_tiered {
            true => Compiler::Cranelift,
            false => Compiler::Tiered,
        },
        compile_child: Some(
            CompileChild::this_program().context("cannot locate the bonus executable")?,
        ),
        ..RuntimeConfig::default()
    })?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let listening = server::Listening::bind(args.addr, threads)?;
    output::status(global.quiet, "Loading", wasm_path.display());
    let function = runtime
        .load(&wasm)
        .with_context(|| format!("cannot serve {}", wasm_path.display()))?;
    let limits = Limits {
        fuel_max: args.fuel,
        deadline: Duration::from_millis(args.deadline_ms),
        memory_bytes_max: args.memory_mib << 20,
        request_body_bytes_max: args.max_request_body,
        response_body_bytes_max: args.max_response_body,
        ..Limits::DEFAULT
    };
    let config = server::ServerConfig {
        function,
        limits,
        caps: Arc::new(Capabilities {
            env: args.env,
            outbound: Arc::new(outbound),
        }),
    };
    let bound = listening.serve(config)?;
    let url = format!("http://{}", bound.local_addr());
    if global.json {
        let line = serde_json::json!({
            "url": url,
            "artifact_id": bound.artifact_id().to_string(),
            "path": wasm_path,
        });
        println!("{line}");
    }
    output::status(
        global.quiet,
        "Serving",
        format!(
            "{} on {url} ({threads} threads); Ctrl-C stops",
            bound.artifact_id()
        ),
    );
    bound.run()?;
    output::status(global.quiet, "Stopped", url);
    Ok(())
}
