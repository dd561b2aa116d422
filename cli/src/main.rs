//! The `bonus` command: serve, deploy and run WebAssembly functions.
//!
//! `main` only parses, runs and maps errors to exit codes; each verb lives in
//! `commands/`.

mod commands;
mod guest_build;
mod output;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: a validator at 1 M accounts
/// spends ~16 % less per block and `bonus serve` answers ~5 % more
/// requests/s (bench/HISTORY.md, session 18). Per-request sandboxes and the
/// ledger's copy-on-write maps allocate and free many small blocks. Built
/// without its transparent huge pages (the workspace's `no_thp`): with them
/// an artifact fetch took 1.75x as long, and blocks were no faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A node compiles other people's code with Cranelift in a child process
    // of this binary, under a CPU and memory budget.
    if let Some(code) = bonus_runtime::child::serve_if_child() {
        return code;
    }
    let cli = commands::Cli::parse();
    output::init_tracing(cli.global.verbose, cli.global.quiet);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            output::print_error(&error);
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
