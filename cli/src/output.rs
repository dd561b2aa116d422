//! Everything the CLI writes to a terminal: status lines, errors, logs.
//!
//! stdout is data (for `--json`); stderr carries cargo-style status lines
//! with right-aligned verbs, and logs.

use std::io::IsTerminal;

/// Prints `   Verb message` to stderr unless quiet, cargo-style.
pub fn status(quiet: bool, verb: &str, message: impl std::fmt::Display) {
    if quiet {
        return;
    }
    if std::io::stderr().is_terminal() {
        eprintln!("\x1b[1;32m{verb:>12}\x1b[0m {message}");
    } else {
        eprintln!("{verb:>12} {message}");
    }
}

/// Prints `error: …` and its `Caused by:` chain.
pub fn print_error(error: &anyhow::Error) {
    let prefix = match std::io::stderr().is_terminal() {
        true => "\x1b[1;31merror\x1b[0m",
        false => "error",
    };
    eprintln!("{prefix}: {error}");
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    if !causes.is_empty() {
        eprintln!("\nCaused by:");
        for (idx, cause) in causes.iter().enumerate() {
            eprintln!("  {idx}: {cause}");
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the level.
pub fn init_tracing(verbose: bool, quiet: bool) {
    let default = match (verbose, quiet) {
        (true, _) => "info,bonus=debug,bonus_registry=debug,bonus_runtime=debug",
        (false, true) => "error",
        (false, false) => "warn,bonus=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// `count` and the noun for it: "1 batch", "2 batches".
pub fn counted(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_take_the_noun_their_number_needs() {
        assert_eq!(super::counted(0, "batch", "batches"), "0 batches");
        assert_eq!(super::counted(1, "batch", "batches"), "1 batch");
        assert_eq!(super::counted(2, "batch", "batches"), "2 batches");
    }
}
