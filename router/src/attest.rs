//! The router's vouching: how many requests it forwarded to each worker
//! for each manifest, per settlement period, attested on the ledger so
//! workers can be paid for that much and no more.
//!
//! Counted when a worker's response head arrives. Submitted every
//! `attest_interval` and at shutdown. A submission the ledger dropped or
//! refused is put back and retried; one that may still land (not final in
//! time) is not, since over-attesting costs payers. Periods the ledger no
//! longer accepts are dropped with a warning.

use crate::limits::{ATTEST_FINAL_WAIT, ATTEST_LINES_PER_TX_MAX, ATTEST_PENDING_LINES_MAX};
use crate::state::{Shared, WarnLimiter, now_ms, raised};
use bonus_ids::{ManifestId, PublicKey};
use bonus_ledger::client::{ClientError, LedgerClient};
use bonus_ledger::limits::{INVOCATIONS_PER_ATTESTATION_MAX, SETTLEMENT_WINDOW_PERIODS};
use bonus_ledger::{Attestation, TxBody};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// One line of an attestation: (period, manifest, worker).
pub(crate) type Line = (u64, ManifestId, PublicKey);

/// What the ledger says when a period is outside its window.
const OUTSIDE_WINDOW: &str = "outside the settlement window";

/// Forwarded counts not yet attested.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    counts: Mutex<BTreeMap<Line, u64>>,
    full: WarnLimiter,
}

impl Pending {
    /// Adds `n` forwarded requests to `line`. A new line past
    /// [`ATTEST_PENDING_LINES_MAX`] is dropped: memory stays bounded if the
    /// ledger is away for long.
    pub(crate) fn add(&self, line: Line, n: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= ATTEST_PENDING_LINES_MAX && !counts.contains_key(&line) {
            drop(counts);
            if let Some(suppressed) = self.full.allow() {
                tracing::warn!(
                    suppressed,
                    "attestation backlog full; a forwarded count is lost"
                );
            }
            return;
        }
        let count = counts.entry(line).or_default();
        *count = count.saturating_add(n);
    }

    /// Takes every pending count.
    pub(crate) fn take(&self) -> BTreeMap<Line, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts counts back for the next round.
    pub(crate) fn restore(&self, lines: &[(ManifestId, PublicKey, u64)], period: u64) {
        for (manifest_id, worker, n) in lines {
            self.add((period, *manifest_id, *worker), *n);
        }
    }

    /// Puts taken counts back whole.
    fn restore_all(&self, counts: BTreeMap<Line, u64>) {
        for (line, n) in counts {
            self.add(line, n);
        }
    }

    /// Requests counted and not yet attested.
    pub(crate) fn total(&self) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.values().fold(0, |sum, n| sum.saturating_add(*n))
    }
}

/// The settlement period a request forwarded now is attested in; `None`
/// when the router attests nothing. Sent to the worker (in [`PERIOD`]) so
/// that its receipt and this count land in the same period even when the
/// request crosses a period boundary.
///
/// [`PERIOD`]: crate::PERIOD
pub(crate) fn period_now(shared: &Shared) -> Option<u64> {
    // No ledger, nothing attested.
    shared.ledger.as_ref()?;
    let period_ms = shared.period_ms.load(std::sync::atomic::Ordering::Relaxed);
    // Zero until the first read of the ledger; routes come from the ledger
    // with the period, so only a test installing a table by hand sees it.
    (period_ms != 0).then(|| now_ms() / period_ms)
}

/// Counts one forwarded request in `period` (from [`period_now`]).
pub(crate) fn count(shared: &Shared, period: u64, manifest_id: ManifestId, worker: PublicKey) {
    shared.pending.add((period, manifest_id, worker), 1);
}

/// Splits counts into transactions: one period each, lines sorted, at most
/// [`ATTEST_LINES_PER_TX_MAX`] lines, no line above the ledger's maximum.
pub(crate) fn plan(counts: BTreeMap<Line, u64>) -> Vec<Attestation> {
    let mut plans: Vec<Attestation> = Vec::new();
    for ((period, manifest_id, worker), mut n) in counts {
        while n > 0 {
            let part = n.min(INVOCATIONS_PER_ATTESTATION_MAX);
            n -= part;
            let open = plans
                .last_mut()
                .filter(|p| p.period == period && p.counts.len() < ATTEST_LINES_PER_TX_MAX);
            match open {
                Some(plan) => plan.counts.push((manifest_id, worker, part)),
                None => plans.push(Attestation {
                    period,
                    counts: vec![(manifest_id, worker, part)],
                }),
            }
        }
    }
    plans
}

/// Attests every `interval` until `stop` turns true, then submits what is
/// left once more without waiting for finality (nobody would resend it).
pub(crate) async fn run(
    shared: std::sync::Arc<Shared>,
    ledger: std::sync::Arc<LedgerClient>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => round(&shared, &ledger, &mut stop).await,
            _ = raised(&mut stop) => break,
        }
    }
    round(&shared, &ledger, &mut stop).await;
    let lost = shared.pending.total();
    if lost > 0 {
        tracing::warn!(lost, "forwarded requests left unattested at shutdown");
    }
}

/// Submits what is pending, one transaction at a time.
async fn round(shared: &Shared, ledger: &LedgerClient, stop: &mut watch::Receiver<bool>) {
    let counts = shared.pending.take();
    let period_ms = shared.period_ms.load(std::sync::atomic::Ordering::Relaxed);
    if counts.is_empty() || period_ms == 0 {
        shared.pending.restore_all(counts);
        return;
    }
    let current = now_ms() / period_ms;
    let (live, stale): (BTreeMap<Line, u64>, BTreeMap<Line, u64>) = counts
        .into_iter()
        .partition(|((period, _, _), _)| period + SETTLEMENT_WINDOW_PERIODS > current);
    if !stale.is_empty() {
        tracing::warn!(
            lines = stale.len(),
            current,
            "dropping forwarded counts of periods the ledger no longer accepts"
        );
    }
    for attestation in plan(live) {
        submit(shared, ledger, attestation, stop).await;
    }
}

/// Submits one attestation and, unless the router is stopping, waits for
/// it to be final to learn whether it must be resent.
async fn submit(
    shared: &Shared,
    ledger: &LedgerClient,
    attestation: Attestation,
    stop: &mut watch::Receiver<bool>,
) {
    let (period, lines) = (attestation.period, attestation.counts.clone());
    let id = match ledger
        .sign_and_submit(&shared.key, TxBody::Attest(attestation))
        .await
    {
        Ok(id) => id,
        Err(ClientError::Refused { message, .. }) if message.contains(OUTSIDE_WINDOW) => {
            tracing::warn!(period, %message, "the ledger refused an attestation's period; dropped");
            return;
        }
        Err(e) => {
            tracing::warn!(period, error = %e, "attestation not submitted; retrying next round");
            shared.pending.restore(&lines, period);
            return;
        }
    };
    if *stop.borrow() {
        return;
    }
    let waited = tokio::select! {
        waited = ledger.wait_final(&id, ATTEST_FINAL_WAIT) => waited,
        // Stopping: it may still land, and there is no next round.
        _ = raised(stop) => return,
    };
    match waited {
        Ok(height) => tracing::debug!(period, height, lines = lines.len(), "attested"),
        Err(ClientError::Dropped { .. }) => {
            tracing::warn!(
                period,
                id,
                "attestation dropped by the ledger; retrying next round"
            );
            shared.pending.restore(&lines, period);
        }
        // It may still land: attesting again could count twice.
        Err(e) => tracing::warn!(period, id, error = %e, "attestation not known final; not resent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bonus_ids::SecretKey;

    fn worker(seed: u8) -> PublicKey {
        SecretKey::from_seed([seed; 32]).public()
    }

    #[test]
    fn plans_are_per_period_sorted_and_bounded() {
        let mut counts = BTreeMap::new();
        for index in 0..(ATTEST_LINES_PER_TX_MAX as u32 + 5) {
            counts.insert((7, ManifestId::of(&index.to_le_bytes()), worker(1)), 1);
        }
        counts.insert((6, ManifestId::of(b"x"), worker(2)), 3);
        counts.insert(
            (8, ManifestId::of(b"y"), worker(2)),
            INVOCATIONS_PER_ATTESTATION_MAX + 1,
        );
        let plans = plan(counts);
        let shape: Vec<(u64, usize)> = plans.iter().map(|p| (p.period, p.counts.len())).collect();
        assert_eq!(
            shape,
            [(6, 1), (7, ATTEST_LINES_PER_TX_MAX), (7, 5), (8, 2)]
        );
        for plan in &plans {
            assert!(
                plan.counts
                    .windows(2)
                    .all(|w| (w[0].0, w[0].1) <= (w[1].0, w[1].1))
            );
        }
        let split: Vec<u64> = plans[3].counts.iter().map(|line| line.2).collect();
        assert_eq!(split, [INVOCATIONS_PER_ATTESTATION_MAX, 1]);
    }

    #[test]
    fn pending_counts_add_take_and_restore() {
        let pending = Pending::default();
        let line = (3, ManifestId::of(b"m"), worker(1));
        pending.add(line, 1);
        pending.add(line, 2);
        assert_eq!(pending.total(), 3);
        let taken = pending.take();
        assert_eq!(taken.get(&line), Some(&3));
        assert_eq!(pending.total(), 0);
        pending.restore(&[(line.1, line.2, 3)], 3);
        assert_eq!(pending.take(), taken);
    }
}
