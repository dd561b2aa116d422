//! The route table from the ledger: wait for each new finalized block
//! (`status?after=<height>`, a long poll), then read names, nodes and the
//! manifests not seen yet, build a table and swap it in; at most once per
//! `refresh_interval`. A name deployed in a block is routable as soon as
//! the router hears of the block, not at its next poll. A failed read
//! keeps the old table (a router with stale routes serves; a router with
//! none does not).

use crate::limits::REFRESH_BACKOFF_MAX;
use crate::state::{Shared, WarnLimiter};
use crate::table;
use bonus_ids::ManifestId;
use bonus_ledger::client::{ClientError, LedgerClient};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What the refresh task remembers between polls.
#[derive(Default)]
struct Seen {
    /// The height the current table was read at.
    height: Option<u64>,
    /// Price consent of manifests read so far (manifests never change).
    prices: HashMap<ManifestId, u64>,
}

/// Follows the ledger forever (aborted at shutdown).
pub(crate) async fn run(shared: Arc<Shared>, ledger: Arc<LedgerClient>) {
    let mut seen = Seen::default();
    let failing = WarnLimiter::default();
    let skipping = WarnLimiter::default();
    let mut last: Option<tokio::time::Instant> = None;
    // Failed refreshes in a row: each doubles the wait, up to
    // REFRESH_BACKOFF_MAX, so a ledger that refuses connections at once
    // is not asked 20 times a second.
    let mut failures = 0u32;
    loop {
        if let Some(last) = last {
            let wait = shared
                .limits
                .refresh_interval
                .saturating_mul(1 << failures.min(16))
                .min(REFRESH_BACKOFF_MAX.max(shared.limits.refresh_interval));
            tokio::time::sleep_until(last + wait).await;
        }
        last = Some(tokio::time::Instant::now());
        let result = refresh(&shared, &ledger, &mut seen).await;
        failures = match result {
            Ok(_) => 0,
            Err(_) => failures.saturating_add(1),
        };
        match result {
            Ok(skipped) if !skipped.is_empty() => {
                if let Some(suppressed) = skipping.allow() {
                    tracing::warn!(
                        suppressed,
                        ?skipped,
                        "parts of the ledger's routes left out"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(suppressed) = failing.allow() {
                    tracing::warn!(suppressed, error = %e, "cannot refresh routes; keeping the old table");
                }
            }
        }
    }
}

/// One poll; what was left out of a new table.
async fn refresh(
    shared: &Shared,
    ledger: &LedgerClient,
    seen: &mut Seen,
) -> Result<table::Skipped, ClientError> {
    let status = match seen.height {
        Some(height) => ledger.status_after(height).await?,
        None => ledger.status().await?,
    };
    shared
        .period_ms
        .store(status.params.period_ms, Ordering::Relaxed);
    if seen.height == Some(status.height) {
        return Ok(table::Skipped::new());
    }
    let names = ledger.names().await?;
    let nodes = ledger.nodes().await?;
    let wanted = table::manifest_ids(&names);
    seen.prices.retain(|id, _| wanted.contains(id));
    for manifest_id in wanted {
        if seen.prices.contains_key(&manifest_id) {
            continue;
        }
        if let Some(view) = ledger.manifest(&manifest_id).await? {
            seen.prices
                .insert(manifest_id, view.price_per_million_fuel_max);
        }
    }
    let (mut table, skipped) =
        table::from_ledger(&names, &nodes, &seen.prices, &shared.key.public());
    table.height = Some(status.height);
    shared.install(table);
    seen.height = Some(status.height);
    Ok(skipped)
}
