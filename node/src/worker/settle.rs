//! The worker's settlement loop: once a period has ended (and its routers
//! have had time to attest), claim what was served on routers' behalf, up
//! to what they vouched for, in one signed `Settle` batch.
//!
//! At most one batch is in flight. It is written to the receipt store
//! before it is submitted and never changes afterwards, so a retry or a
//! restart resubmits the same content under the same `(worker, sequence)`,
//! which the ledger settles at most once; its claims are counted only when
//! the ledger says it settled.

use super::Worker;
use super::receipts::{Claim, PendingBatch, ReceiptError};
use crate::http::{Stop, stopped};
use bonus_ids::{ManifestId, PublicKey};
use bonus_ledger::client::ClientError;
use bonus_ledger::limits::{LIST_ITEMS_MAX, SETTLEMENT_WINDOW_PERIODS};
use bonus_ledger::{Aggregate, SettleBatch, TxBody};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How often the loop looks for something to settle.
const TICK: Duration = Duration::from_secs(1);

/// A period is settled this long after it ends: routers attest every
/// couple of seconds, and their attestations must be final first.
const SETTLE_DELAY_MS: u64 = 4_000;

/// How long to wait for a batch to become final before asking again.
const FINALITY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum SettleError {
    #[error(transparent)]
    Ledger(#[from] ClientError),
    #[error(transparent)]
    Receipts(#[from] ReceiptError),
}

/// Settles until `stop`.
pub async fn run(worker: Arc<Worker>, stop: Stop) {
    let mut payers: HashMap<ManifestId, PublicKey> = HashMap::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = stopped(stop.clone()) => return,
        }
        if let Err(e) = settle_once(&worker, &mut payers).await {
            tracing::warn!(error = %e, "settlement will retry");
        }
    }
}

async fn settle_once(
    worker: &Worker,
    payers: &mut HashMap<ManifestId, PublicKey>,
) -> Result<(), SettleError> {
    let (Some(ledger), Some(receipts)) = (&worker.ledger, &worker.receipts) else {
        return Ok(());
    };
    if let Some(batch) = receipts.pending()? {
        return finish(worker, batch).await;
    }
    let status = ledger.status().await?;
    let oldest = (status.period + 1).saturating_sub(SETTLEMENT_WINDOW_PERIODS);
    receipts.prune(oldest)?;
    let now = crate::now_ms();
    let mut by_period: BTreeMap<u64, Vec<(ManifestId, super::receipts::Totals)>> = BTreeMap::new();
    for (period, manifest, totals) in receipts.unclaimed()? {
        let ended_at = (period + 1) * worker.period_ms;
        if period >= oldest && now >= ended_at + SETTLE_DELAY_MS && period < status.period {
            by_period
                .entry(period)
                .or_default()
                .push((manifest, totals));
        }
    }
    let me = worker.key.public();
    for (period, lines) in by_period {
        let usage = ledger.usage(period).await?;
        let mut claims = Vec::new();
        for (manifest_id, totals) in lines {
            let text = manifest_id.to_string();
            let left = usage
                .lines
                .iter()
                .find(|l| l.manifest_id == text && l.worker == me.to_string())
                .map_or(0, |l| l.attested - l.settled);
            let unclaimed = totals.served.0 - totals.claimed.0;
            let invocations = left.min(unclaimed);
            if invocations == 0 {
                continue;
            }
            let unclaimed_fuel = totals.served.1.saturating_sub(totals.claimed.1);
            // Claimed fuel in proportion: the average per invocation stays
            // what it was, so it stays within the manifest's limit.
            let fuel = u64::try_from(
                u128::from(unclaimed_fuel) * u128::from(invocations) / u128::from(unclaimed),
            )
            .unwrap_or(u64::MAX);
            let payer = match payers.get(&manifest_id) {
                Some(payer) => *payer,
                None => {
                    let Some(view) = ledger.manifest(&manifest_id).await? else {
                        continue;
                    };
                    let Ok(payer) = view.owner.parse::<PublicKey>() else {
                        continue;
                    };
                    payers.insert(manifest_id, payer);
                    payer
                }
            };
            claims.push(Claim {
                manifest_id,
                payer,
                invocations,
                fuel,
            });
            if claims.len() == LIST_ITEMS_MAX {
                break;
            }
        }
        if claims.is_empty() {
            continue;
        }
        let manifests: Vec<ManifestId> = claims.iter().map(|c| c.manifest_id).collect();
        let batch = PendingBatch {
            sequence: receipts.next_sequence()?,
            period,
            receipts_root: receipts.receipts_root(period, &manifests)?,
            claims,
            price: worker.price,
        };
        receipts.begin_batch(&batch)?;
        return finish(worker, batch).await;
    }
    Ok(())
}

/// Brings the batch in flight to an end: settled (claims counted),
/// refused for good (abandoned, usage stays claimable) or dropped from
/// the mempool (left in flight, resubmitted next time).
async fn finish(worker: &Worker, batch: PendingBatch) -> Result<(), SettleError> {
    let (Some(ledger), Some(receipts)) = (&worker.ledger, &worker.receipts) else {
        return Ok(());
    };
    let me = worker.key.public();
    if ledger.batch(&me, batch.sequence).await?.settled {
        return settled(receipts, &batch);
    }
    let body = TxBody::Settle(SettleBatch {
        sequence: batch.sequence,
        period: batch.period,
        aggregates: batch
            .claims
            .iter()
            .map(|c| Aggregate {
                manifest_id: c.manifest_id,
                payer: c.payer,
                invocations: c.invocations,
                fuel: c.fuel,
            })
            .collect(),
        receipts_root: batch.receipts_root,
    });
    let id = match ledger.sign_and_submit(&worker.key, body).await {
        Ok(id) => id,
        Err(ClientError::Refused {
            status: 400,
            message,
        }) => {
            // The mempool refuses only what can never apply as signed
            // (malformed, unfunded): a new batch is built from scratch.
            tracing::warn!(%message, sequence = batch.sequence, "batch refused; abandoned");
            receipts.batch_abandoned()?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    match ledger.wait_final(&id, FINALITY_WAIT).await {
        Ok(_) => {
            if ledger.batch(&me, batch.sequence).await?.settled {
                settled(receipts, &batch)?;
            } else {
                // Final but refused by the state machine (for example, the
                // period left the window): its content can never settle.
                tracing::warn!(
                    sequence = batch.sequence,
                    "batch refused by the ledger; abandoned"
                );
                receipts.batch_abandoned()?;
            }
            Ok(())
        }
        Err(ClientError::Dropped { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Counts a settled batch's claims.
fn settled(receipts: &super::receipts::Receipts, batch: &PendingBatch) -> Result<(), SettleError> {
    receipts.batch_settled(batch)?;
    tracing::info!(
        sequence = batch.sequence,
        period = batch.period,
        "batch settled"
    );
    Ok(())
}
