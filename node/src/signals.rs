//! SIGINT and SIGTERM for the long-running commands (`bonus node`,
//! `bonus serve`): the first stops gracefully, a second exits at once.
//!
//! Both are caught for the whole run, so a second Ctrl-C during a drain is
//! not swallowed by a handler nobody listens to any more: a user who
//! presses it twice does not want to wait. Exiting mid-drain is a crash as
//! far as the node's state goes, and every store of a node survives one
//! (receipts group-commit, the ledger's store commits atomically).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The exit status after a second signal (128 + SIGINT, as a shell reports
/// a process that Ctrl-C ended).
pub const FORCED_EXIT: i32 = 130;

/// SIGINT and SIGTERM, caught.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Catches both. Must run inside a tokio runtime with its I/O driver;
    /// from then on neither kills the process by default.
    pub fn catch() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    /// Runs `stop` at the first signal; exits the process at the second.
    pub async fn stop_then_exit_on_second(mut self, stop: impl FnOnce()) {
        self.recv().await;
        stop();
        self.recv().await;
        tracing::warn!("second signal: exiting without waiting for the drain");
        std::process::exit(FORCED_EXIT);
    }
}
