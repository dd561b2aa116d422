//! One module per verb.

mod serve;

use clap::{Args, Parser, Subcommand};

/// Bonus: a decentralized serverless platform for WebAssembly functions.
#[derive(Parser, Debug)]
#[command(name = "bonus", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Show debug logs.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Hide status lines (errors are always shown).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve one function over HTTP on this machine.
    Serve(serve::ServeArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args),
    }
}
