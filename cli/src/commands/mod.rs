//! One module per verb.

mod build;
mod deploy;
mod inspect;
pub mod keys;
mod ledger;
mod logs;
mod ls;
mod node;
mod rollout;
mod serve;
mod up;
mod usage;
mod validator;

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
    /// Start a whole local network (validators, workers, router) and deploy the examples.
    Up(up::UpArgs),
    /// Run a node: worker, router and/or validator roles.
    Node(node::NodeArgs),
    /// Build a Rust or JavaScript/TypeScript function into a component.
    Build(build::BuildArgs),
    /// Deploy a component to a node under a name.
    Deploy(deploy::DeployArgs),
    /// List the functions a node knows.
    Ls(ls::LsArgs),
    /// Show a file's content id and validity, or an id's or name's details.
    Inspect(inspect::InspectArgs),
    /// Manage signing keys.
    Keys(keys::KeysArgs),
    /// Run a ledger validator (BFT consensus) and its query API.
    Validator(validator::ValidatorArgs),
    /// Ledger status, or a genesis for a local network.
    Ledger(ledger::LedgerArgs),
    /// Show an account's balance.
    Balance(ledger::BalanceArgs),
    /// Send funds, and wait until the transfer is final.
    Transfer(ledger::TransferArgs),
    /// List names bound on the ledger.
    Names(ledger::NamesArgs),
    /// A function's invocations and cost per settlement period.
    Usage(usage::UsageArgs),
    /// A function's recent output and failures, from every worker (owner only).
    Logs(logs::LogsArgs),
    /// Split a name's traffic between its versions (gradual rollout).
    Traffic(rollout::TrafficArgs),
    /// Make a name's previous version current again.
    Rollback(rollout::RollbackArgs),
    /// Set a function's spending cap per period and clear a 402.
    Fund(rollout::FundArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args),
        Command::Up(args) => up::run(&cli.global, args),
        Command::Node(args) => node::run(&cli.global, args),
        Command::Build(args) => build::run(&cli.global, args),
        Command::Deploy(args) => deploy::run(&cli.global, args),
        Command::Ls(args) => ls::run(&cli.global, args),
        Command::Inspect(args) => inspect::run(&cli.global, args),
        Command::Keys(args) => keys::run(&cli.global, args),
        Command::Validator(args) => validator::run(&cli.global, args),
        Command::Ledger(args) => ledger::run(&cli.global, args),
        Command::Balance(args) => ledger::balance(&cli.global, args),
        Command::Transfer(args) => ledger::transfer(&cli.global, args),
        Command::Names(args) => ledger::names(&cli.global, args),
        Command::Usage(args) => usage::run(&cli.global, args),
        Command::Logs(args) => logs::run(&cli.global, args),
        Command::Traffic(args) => rollout::traffic(&cli.global, args),
        Command::Rollback(args) => rollout::rollback(&cli.global, args),
        Command::Fund(args) => rollout::fund(&cli.global, args),
    }
}
