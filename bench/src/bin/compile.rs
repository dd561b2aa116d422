//! Compile time of components, each from an empty cache: with Winch (what
//! a tiered node runs first), with Cranelift in this process, and with
//! `--child BONUS`, Cranelift in a compile child of that `bonus` binary
//! under the default budget (what a node does), so the child's own cost
//! shows beside the in-process compile of the same run.
//!
//! `bench/bomb.py` writes components that are cheap to upload and costly
//! to optimize; `--no-in-process` skips Cranelift in this process, which
//! on a large bomb does not end. A compile that errs or is stopped prints
//! why.
//!
//! Usage: `compile [--child BONUS] [--no-in-process] COMPONENT.wasm...`

use bonus_runtime::{CompileChild, Compiler, Runtime, RuntimeConfig};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let child = match args.iter().position(|a| a == "--child") {
        Some(at) if at + 1 < args.len() => {
            let program = args.remove(at + 1);
            args.remove(at);
            Some(CompileChild {
                program: std::fs::canonicalize(program)?,
                budget: Default::default(),
            })
        }
        Some(_) => anyhow::bail!("--child needs the path of a bonus binary"),
        None => None,
    };
    let in_process = match args.iter().position(|a| a == "--no-in-process") {
        Some(at) => {
            args.remove(at);
            false
        }
        None => true,
    };
    anyhow::ensure!(
        !args.is_empty(),
        "usage: compile [--child BONUS] [--no-in-process] COMPONENT.wasm..."
    );
    let mut ways = vec![("winch", Compiler::Winch, None)];
    if in_process {
        ways.push(("cranelift", Compiler::Cranelift, None));
    }
    if child.is_some() {
        ways.push(("cranelift (child)", Compiler::Cranelift, child));
    }
    for file in &args {
        let wasm = std::fs::read(file)?;
        for (way, compiler, compile_child) in &ways {
            let runtime = Runtime::new(RuntimeConfig {
                compiler: *compiler,
                compile_child: compile_child.clone(),
                ..RuntimeConfig::default()
            })?;
            let started = Instant::now();
            let outcome = match runtime.load(&wasm) {
                Ok(_) => "loaded".to_string(),
                Err(e) => format!("not loaded: {e}"),
            };
            println!(
                "{file} ({} B), {way}: {:.1} ms, {outcome}",
                wasm.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
