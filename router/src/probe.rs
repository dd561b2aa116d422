//! Health probes: every `probe_interval` (and at once when the table
//! gains workers), `GET {worker}/v1/health` on each known worker. A probe
//! answered 2xx within [`PROBE_TIMEOUT`] marks the worker up and feeds its
//! RTT average; anything else marks it down. One probe per worker at a
//! time: a slow worker is skipped, not piled on.

use crate::limits::{PROBE_BODY_BYTES_MAX, PROBE_TIMEOUT};
use crate::select::WorkerHealth;
use crate::state::{Shared, WorkerClient, error_chain};
use bonus_ids::PublicKey;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Probes every worker of the current table, forever (aborted at shutdown).
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(shared.limits.probe_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probes = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shared.table_changed.notified() => {}
            Some(_) = probes.join_next(), if !probes.is_empty() => continue,
        }
        let table = shared.table();
        for worker in table.workers() {
            if worker.health.probing.swap(true, Ordering::AcqRel) {
                continue;
            }
            probes.spawn(probe(
                shared.probe_client.clone(),
                worker.key,
                format!("{}/v1/health", worker.base),
                worker.health.clone(),
            ));
        }
    }
}

async fn probe(client: WorkerClient, key: PublicKey, url: String, health: Arc<WorkerHealth>) {
    match tokio::time::timeout(PROBE_TIMEOUT, once(&client, &url)).await {
        Ok(Ok(rtt)) => {
            let rtt_us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
            if health.probe_succeeded(rtt_us) {
                tracing::info!(worker = %key, rtt_us, "worker is up");
            }
        }
        Ok(Err(reason)) => {
            if health.mark_down() {
                tracing::warn!(worker = %key, %url, %reason, "worker is down");
            }
        }
        Err(_) => {
            if health.mark_down() {
                tracing::warn!(worker = %key, %url, "worker is down: no health answer within 1 s");
            }
        }
    }
    health.probing.store(false, Ordering::Release);
}

/// One probe: the time to the answer's head.
async fn once(client: &WorkerClient, url: &str) -> Result<Duration, String> {
    let request = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let response = client.request(request).await.map_err(|e| error_chain(&e))?;
    let rtt = started.elapsed();
    let status = response.status();
    // Read the body out so the connection goes back to the pool.
    Limited::new(response.into_body(), PROBE_BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("health answered {status}"));
    }
    Ok(rtt)
}
