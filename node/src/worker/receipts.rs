//! Usage receipts and settlement bookkeeping, durable in redb.
//!
//! Receipts are group-committed: the request path hands a receipt to a
//! writer thread and never waits for the disk; the thread commits whatever
//! has accumulated in one fsynced transaction, so a crash loses at most the
//! receipts of one commit window (the worker's own earnings, never anyone
//! else's money). In the same transaction the per-(period, manifest)
//! totals that settlement claims from are updated, so totals and receipts
//! never disagree.
//!
//! Settlement state (what was claimed, the next batch sequence, the batch
//! in flight) lives in the same database: a batch is written here before it
//! is submitted and its claims are counted only once the ledger says its
//! `(worker, sequence)` settled, so a crash or a retry never settles twice.

use bonus_ids::{ManifestId, PublicKey, RequestId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// (period, request id) → receipt body.
const RECEIPTS: TableDefinition<(u64, u128), &[u8]> = TableDefinition::new("receipts");
/// (period, manifest) → (invocations, fuel) served on a router's behalf.
const SERVED: TableDefinition<(u64, &[u8; 32]), (u64, u64)> = TableDefinition::new("served");
/// (period, manifest) → (invocations, fuel) claimed by settled batches.
const CLAIMED: TableDefinition<(u64, &[u8; 32]), (u64, u64)> = TableDefinition::new("claimed");
/// Counters: `recorded_invocations`, `recorded_fuel` (every receipt ever
/// committed, so a status query never scans the receipts),
/// `next_sequence`, `settled_invocations`, `settled_fuel`, `earned`,
/// `batches`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The batch in flight (at most one), encoded.
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");

/// Receipts waiting for the writer, at most; beyond it they are dropped
/// (and counted): the disk cannot keep up and the loss is the worker's.
const QUEUE_MAX: usize = 100_000;

/// Receipts kept for audits, in periods after their own.
pub const AUDIT_PERIODS: u64 = 360;

/// Why the receipt store failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// redb failed.
    #[error("receipt store: {0}")]
    Db(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for ReceiptError {
            fn from(e: $t) -> Self {
                ReceiptError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// One invocation, as the worker records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The request.
    pub request_id: RequestId,
    /// The function version that ran.
    pub manifest_id: ManifestId,
    /// Settlement period it ran in.
    pub period: u64,
    /// Fuel it consumed.
    pub fuel: u64,
    /// Whether a router forwarded it (only those can be paid for).
    pub routed: bool,
    /// `Outcome::kind` index: 0 ok, otherwise the platform answered.
    pub outcome: u8,
}

impl Receipt {
    fn encode(&self) -> [u8; 42] {
        let mut out = [0u8; 42];
        out[..32].copy_from_slice(self.manifest_id.as_bytes());
        out[32..40].copy_from_slice(&self.fuel.to_be_bytes());
        out[40] = u8::from(self.routed);
        out[41] = self.outcome;
        out
    }

    /// What the batch's receipts root commits to for this receipt.
    fn leaf(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"bonus/receipt/v1");
        hasher.update(&self.request_id.as_u128().to_be_bytes());
        hasher.update(&self.period.to_be_bytes());
        hasher.update(&self.encode());
        *hasher.finalize().as_bytes()
    }
}

/// A claim of one batch line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The function version.
    pub manifest_id: ManifestId,
    /// Its owner, who pays.
    pub payer: PublicKey,
    /// Invocations claimed.
    pub invocations: u64,
    /// Their fuel.
    pub fuel: u64,
}

/// The batch in flight: fixed once written, so whichever submission lands
/// settles exactly this content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingBatch {
    /// Its sequence.
    pub sequence: u64,
    /// Its period.
    pub period: u64,
    /// Its lines.
    pub claims: Vec<Claim>,
    /// Root of the receipts it covers.
    pub receipts_root: [u8; 32],
    /// The price the worker was registered at (for the earnings shown).
    pub price: u64,
}

impl PendingBatch {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(56 + self.claims.len() * 80);
        for v in [self.sequence, self.period, self.price] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.receipts_root);
        for c in &self.claims {
            out.extend_from_slice(c.manifest_id.as_bytes());
            out.extend_from_slice(c.payer.as_bytes());
            out.extend_from_slice(&c.invocations.to_be_bytes());
            out.extend_from_slice(&c.fuel.to_be_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<PendingBatch> {
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let receipts_root: [u8; 32] = bytes.get(24..56)?.try_into().ok()?;
        let rest = bytes.get(56..)?;
        if rest.len() % 80 != 0 {
            return None;
        }
        let claims = rest
            .chunks_exact(80)
            .map(|c| {
                Some(Claim {
                    manifest_id: ManifestId::from_bytes(c[..32].try_into().ok()?),
                    payer: PublicKey::from_bytes(c[32..64].try_into().ok()?).ok()?,
                    invocations: u64::from_be_bytes(c[64..72].try_into().ok()?),
                    fuel: u64::from_be_bytes(c[72..80].try_into().ok()?),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(PendingBatch {
            sequence: u64_at(0)?,
            period: u64_at(8)?,
            price: u64_at(16)?,
            claims,
            receipts_root,
        })
    }
}

/// Served and claimed totals of one (period, manifest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Invocations served on a router's behalf.
    pub served: (u64, u64),
    /// Invocations and fuel claimed by settled batches.
    pub claimed: (u64, u64),
}

/// A summary for `bonus node status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Invocations recorded (routed or not) since the store was created;
    /// pruning old receipts does not lower it.
    pub invocations: u64,
    /// Their fuel.
    pub fuel: u64,
    /// Routed invocations not yet settled.
    pub pending_invocations: u64,
    /// Invocations settled on the ledger.
    pub settled_invocations: u64,
    /// Fuel settled.
    pub settled_fuel: u64,
    /// Earned by settled batches (before the owner's budget caps).
    pub earned: u64,
    /// Batches settled.
    pub batches: u64,
    /// Receipts lost because the disk could not keep up.
    pub dropped: u64,
}

/// The receipt store and its writer thread.
pub struct Receipts {
    db: Arc<Database>,
    queue: Mutex<Option<mpsc::SyncSender<Receipt>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dropped: std::sync::atomic::AtomicU64,
    /// Group commits made since open.
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl Receipts {
    /// Opens (or creates) the store under `dir` and starts its writer.
    pub fn open(dir: &Path) -> Result<Receipts, ReceiptError> {
        std::fs::create_dir_all(dir).map_err(|e| ReceiptError::Db(e.to_string()))?;
        let db = Arc::new(Database::create(dir.join("receipts.redb"))?);
        let txn = db.begin_write()?;
        {
            let receipts = txn.open_table(RECEIPTS)?;
            txn.open_table(SERVED)?;
            txn.open_table(CLAIMED)?;
            let mut meta = txn.open_table(META)?;
            txn.open_table(PENDING)?;
            // A store from before the counters: count what it holds, once.
            if meta.get("recorded_invocations")?.is_none() {
                let (mut invocations, mut fuel) = (0u64, 0u64);
                for row in receipts.iter()? {
                    invocations += 1;
                    fuel = fuel.saturating_add(receipt_fuel(row?.1.value()));
                }
                meta.insert("recorded_invocations", invocations)?;
                meta.insert("recorded_fuel", fuel)?;
            }
        }
        txn.commit()?;
        let (sender, receiver) = mpsc::sync_channel(QUEUE_MAX);
        let writer_db = db.clone();
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer_commits = commits.clone();
        let writer = std::thread::Builder::new()
            .name("bonus-receipts".into())
            .spawn(move || write_loop(&writer_db, &receiver, &writer_commits))
            .map_err(|e| ReceiptError::Db(e.to_string()))?;
        Ok(Receipts {
            db,
            queue: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            dropped: Default::default(),
            commits,
        })
    }

    /// Group commits made since open (each one fsync).
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues a receipt; never blocks.
    pub fn record(&self, receipt: Receipt) {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let sent = queue.as_ref().is_some_and(|q| q.try_send(receipt).is_ok());
        if !sent {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Commits everything queued and stops the writer (at shutdown).
    pub fn flush(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }

    /// Periods with routed usage not yet fully claimed, and their totals.
    pub fn unclaimed(&self) -> Result<Vec<(u64, ManifestId, Totals)>, ReceiptError> {
        let txn = self.db.begin_read()?;
        let served = txn.open_table(SERVED)?;
        let claimed = txn.open_table(CLAIMED)?;
        let mut out = Vec::new();
        for row in served.iter()? {
            let (key, value) = row?;
            let (period, manifest) = key.value();
            let served = value.value();
            let claimed = claimed
                .get((period, manifest))?
                .map_or((0, 0), |v| v.value());
            if claimed.0 < served.0 {
                out.push((
                    period,
                    ManifestId::from_bytes(*manifest),
                    Totals { served, claimed },
                ));
            }
        }
        Ok(out)
    }

    /// Root of the receipts of `period` for these manifests: a binary
    /// BLAKE3 Merkle tree over the receipts in request-id order.
    pub fn receipts_root(
        &self,
        period: u64,
        manifests: &[ManifestId],
    ) -> Result<[u8; 32], ReceiptError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECEIPTS)?;
        let mut leaves = Vec::new();
        for row in table.range((period, 0u128)..=(period, u128::MAX))? {
            let (key, value) = row?;
            let bytes = value.value();
            let Some(manifest) = bytes.get(..32).and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
                continue;
            };
            let manifest_id = ManifestId::from_bytes(manifest);
            if !manifests.contains(&manifest_id) {
                continue;
            }
            let fuel = bytes
                .get(32..40)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            let receipt = Receipt {
                request_id: RequestId::from_u128(key.value().1),
                manifest_id,
                period,
                fuel,
                routed: bytes.get(40) == Some(&1),
                outcome: bytes.get(41).copied().unwrap_or(0),
            };
            leaves.push(receipt.leaf());
        }
        Ok(merkle_root(leaves))
    }

    /// The batch in flight, if any.
    pub fn pending(&self) -> Result<Option<PendingBatch>, ReceiptError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PENDING)?;
        Ok(table
            .get("batch")?
            .and_then(|v| PendingBatch::decode(v.value())))
    }

    /// The next batch sequence.
    pub fn next_sequence(&self) -> Result<u64, ReceiptError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get("next_sequence")?.map_or(0, |v| v.value()))
    }

    /// Records a batch as in flight (before it is submitted) and advances
    /// the sequence past it.
    pub fn begin_batch(&self, batch: &PendingBatch) -> Result<(), ReceiptError> {
        let txn = self.db.begin_write()?;
        {
            let mut pending = txn.open_table(PENDING)?;
            pending.insert("batch", batch.encode().as_slice())?;
            let mut meta = txn.open_table(META)?;
            meta.insert("next_sequence", batch.sequence + 1)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The batch in flight settled: count its claims.
    pub fn batch_settled(&self, batch: &PendingBatch) -> Result<(), ReceiptError> {
        let txn = self.db.begin_write()?;
        {
            let mut claimed = txn.open_table(CLAIMED)?;
            let mut meta = txn.open_table(META)?;
            let mut settled_fuel = meta.get("settled_fuel")?.map_or(0, |v| v.value());
            let mut earned = meta.get("earned")?.map_or(0, |v| v.value());
            let batches = meta.get("batches")?.map_or(0, |v| v.value());
            let mut settled = meta.get("settled_invocations")?.map_or(0, |v| v.value());
            for c in &batch.claims {
                let key = (batch.period, c.manifest_id.as_bytes());
                let (n, f) = claimed.get(key)?.map_or((0, 0), |v| v.value());
                claimed.insert(key, (n + c.invocations, f + c.fuel))?;
                settled_fuel += c.fuel;
                settled += c.invocations;
                earned += u64::try_from(u128::from(c.fuel) * u128::from(batch.price) / 1_000_000)
                    .unwrap_or(u64::MAX);
            }
            meta.insert("settled_fuel", settled_fuel)?;
            meta.insert("earned", earned)?;
            meta.insert("batches", batches + 1)?;
            meta.insert("settled_invocations", settled)?;
            txn.open_table(PENDING)?.remove("batch")?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The batch in flight can never settle (refused): forget it; its
    /// usage stays unclaimed and goes into a new batch.
    pub fn batch_abandoned(&self) -> Result<(), ReceiptError> {
        let txn = self.db.begin_write()?;
        txn.open_table(PENDING)?.remove("batch")?;
        txn.commit()?;
        Ok(())
    }

    /// Forgets usage of periods the ledger can no longer settle and
    /// receipts older than the audit window.
    pub fn prune(&self, oldest_settleable: u64) -> Result<(), ReceiptError> {
        let txn = self.db.begin_write()?;
        {
            let mut receipts = txn.open_table(RECEIPTS)?;
            let audit_floor = oldest_settleable.saturating_sub(AUDIT_PERIODS);
            receipts.retain(|(period, _), _| period >= audit_floor)?;
            let mut served = txn.open_table(SERVED)?;
            served.retain(|(period, _), _| period >= oldest_settleable)?;
            let mut claimed = txn.open_table(CLAIMED)?;
            claimed.retain(|(period, _), _| period >= oldest_settleable)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Totals for `bonus node status`: counters, and the settleable
    /// periods' usage (a few rows per period and function), never a scan of
    /// the receipts.
    pub fn summary(&self) -> Result<Summary, ReceiptError> {
        let txn = self.db.begin_read()?;
        let served = txn.open_table(SERVED)?;
        let claimed = txn.open_table(CLAIMED)?;
        // Pending counts only periods still settleable (both tables are
        // pruned alike); settled totals are kept as counters.
        let (mut routed, mut claimed_now) = (0u64, 0u64);
        for row in served.iter()? {
            routed += row?.1.value().0;
        }
        for row in claimed.iter()? {
            claimed_now += row?.1.value().0;
        }
        let meta = txn.open_table(META)?;
        let get =
            |k: &str| -> Result<u64, ReceiptError> { Ok(meta.get(k)?.map_or(0, |v| v.value())) };
        Ok(Summary {
            invocations: get("recorded_invocations")?,
            fuel: get("recorded_fuel")?,
            pending_invocations: routed.saturating_sub(claimed_now),
            settled_invocations: get("settled_invocations")?,
            settled_fuel: get("settled_fuel")?,
            earned: get("earned")?,
            batches: get("batches")?,
            dropped: self.dropped.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

impl Drop for Receipts {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The group-commit window the settlement loop promises: a crash loses
/// what was answered during one commit and the group queued behind it.
/// Commits are one fsync each, so the disk sets the window; a slower one
/// is logged.
const COMMIT_WINDOW_MAX: std::time::Duration = std::time::Duration::from_millis(100);

/// Under load a commit starts at most this often: a group gathers for
/// what remains of the interval since the last commit began. Without it a
/// busy worker fsyncs once per disk round trip (dozens a second), and the
/// writer thread took 13 % of the serving core, mostly in the kernel's
/// writeback and context switches (`perf`, hello at 18 k req/s). Half the
/// window, so a gather plus one commit stays within it.
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Receipts per commit, at most: bounds one transaction's size.
const COMMIT_RECEIPTS_MAX: usize = 16_384;

fn write_loop(
    db: &Database,
    queue: &mpsc::Receiver<Receipt>,
    commits: &std::sync::atomic::AtomicU64,
) {
    // Group commit: wait for one receipt, let the rest of the interval
    // pass, take all that queued meanwhile, commit them in one fsync. An
    // idle worker's first receipt is committed at once.
    let mut last_commit: Option<std::time::Instant> = None;
    while let Ok(first) = queue.recv() {
        if let Some(wait) = last_commit
            .map(|at| (at + COMMIT_INTERVAL).saturating_duration_since(std::time::Instant::now()))
            .filter(|wait| !wait.is_zero())
        {
            std::thread::sleep(wait);
        }
        let mut group = vec![first];
        group.extend(queue.try_iter().take(COMMIT_RECEIPTS_MAX - 1));
        let started = std::time::Instant::now();
        last_commit = Some(started);
        if let Err(e) = commit(db, &group) {
            tracing::error!(error = %e, receipts = group.len(), "cannot commit receipts; they are lost");
        }
        commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // What a crash may lose grows with this: say when the disk breaks
        // the window the settlement loop promises.
        let took = started.elapsed();
        if took > COMMIT_WINDOW_MAX - COMMIT_INTERVAL {
            tracing::warn!(
                ms = took.as_millis() as u64,
                receipts = group.len(),
                "a receipts commit took longer than the {} ms window allows; a crash now loses more of this worker's earnings (is the disk overloaded?)",
                COMMIT_WINDOW_MAX.as_millis()
            );
        }
    }
}

/// A stored receipt's fuel (bytes 32..40 of [`Receipt::encode`]).
fn receipt_fuel(encoded: &[u8]) -> u64 {
    encoded
        .get(32..40)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn commit(db: &Database, group: &[Receipt]) -> Result<(), ReceiptError> {
    let txn = db.begin_write()?;
    {
        let mut receipts = txn.open_table(RECEIPTS)?;
        let mut served = txn.open_table(SERVED)?;
        let mut meta = txn.open_table(META)?;
        let (mut invocations, mut fuel) = (0u64, 0u64);
        for r in group {
            let key = (r.period, r.request_id.as_u128());
            if receipts.get(key)?.is_some() {
                continue; // A replayed request id counts once.
            }
            receipts.insert(key, r.encode().as_slice())?;
            invocations += 1;
            fuel = fuel.saturating_add(r.fuel);
            if r.routed {
                let skey = (r.period, r.manifest_id.as_bytes());
                let (n, f) = served.get(skey)?.map_or((0, 0), |v| v.value());
                served.insert(skey, (n + 1, f.saturating_add(r.fuel)))?;
            }
        }
        let counter =
            |k: &str| -> Result<u64, ReceiptError> { Ok(meta.get(k)?.map_or(0, |v| v.value())) };
        let (recorded, recorded_fuel) =
            (counter("recorded_invocations")?, counter("recorded_fuel")?);
        meta.insert("recorded_invocations", recorded + invocations)?;
        meta.insert("recorded_fuel", recorded_fuel.saturating_add(fuel))?;
    }
    txn.commit()?;
    Ok(())
}

/// A binary Merkle root (BLAKE3, an odd node is carried up unchanged);
/// the hash of nothing for no leaves.
fn merkle_root(mut level: Vec<[u8; 32]>) -> [u8; 32] {
    if level.is_empty() {
        return *blake3::hash(b"bonus/receipts/empty").as_bytes();
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut hasher = blake3::Hasher::new();
                    hasher.update(left);
                    hasher.update(right);
                    *hasher.finalize().as_bytes()
                }
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(n: u128, period: u64, routed: bool) -> Receipt {
        Receipt {
            request_id: RequestId::from_u128(n),
            manifest_id: ManifestId::from_bytes([7; 32]),
            period,
            fuel: 100,
            routed,
            outcome: 0,
        }
    }

    fn wait_for(receipts: &Receipts, want: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while receipts.summary().map(|s| s.invocations).unwrap_or(0) < want {
            assert!(
                std::time::Instant::now() < deadline,
                "receipts not committed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn under_load_a_commit_starts_at_most_every_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let receipts = Receipts::open(dir.path()).expect("open");
        let started = std::time::Instant::now();
        // A steady stream, as a busy worker's: ten receipts a millisecond.
        for n in 0..3_000 {
            receipts.record(receipt(n, 5, true));
            if n % 10 == 9 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        receipts.flush();
        let elapsed = started.elapsed();
        // Commits start at least COMMIT_INTERVAL apart (committing as soon
        // as the last one ended would be one per disk round trip).
        let allowed = (elapsed.as_millis() / COMMIT_INTERVAL.as_millis()) as u64 + 2;
        assert!(
            receipts.commits() <= allowed,
            "{} commits in {elapsed:?}, at most {allowed} allowed",
            receipts.commits()
        );
        drop(receipts);
        let receipts = Receipts::open(dir.path()).expect("reopen");
        assert_eq!(receipts.summary().expect("summary").invocations, 3_000);
    }

    #[test]
    fn committed_receipts_survive_reopen_and_count_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let receipts = Receipts::open(dir.path()).expect("open");
            for n in 0..1000 {
                receipts.record(receipt(n, 5, n % 2 == 0));
            }
            receipts.record(receipt(0, 5, true)); // replayed id
            receipts.flush();
        }
        let receipts = Receipts::open(dir.path()).expect("reopen");
        wait_for(&receipts, 1000);
        let summary = receipts.summary().expect("summary");
        assert_eq!(summary.invocations, 1000);
        assert_eq!(summary.fuel, 100_000);
        let unclaimed = receipts.unclaimed().expect("unclaimed");
        assert_eq!(unclaimed.len(), 1);
        assert_eq!(unclaimed[0].2.served, (500, 50_000), "only routed count");
    }

    #[test]
    fn the_summary_counts_without_scanning_and_outlives_pruning() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let receipts = Receipts::open(dir.path()).expect("open");
            for n in 0..50 {
                receipts.record(receipt(n, 5, true));
                receipts.record(receipt(1_000 + n, 1_000, true));
            }
            receipts.flush();
            wait_for(&receipts, 100);
            // Period 5's receipts leave the audit window.
            receipts.prune(5 + AUDIT_PERIODS + 1).expect("prune");
            let summary = receipts.summary().expect("summary");
            assert_eq!((summary.invocations, summary.fuel), (100, 10_000));
            // A store from before the counters has none.
            let txn = receipts.db.begin_write().expect("write");
            {
                let mut meta = txn.open_table(META).expect("meta");
                meta.remove("recorded_invocations").expect("remove");
                meta.remove("recorded_fuel").expect("remove");
            }
            txn.commit().expect("commit");
        }
        // Reopened, it counts what it still holds, once.
        let receipts = Receipts::open(dir.path()).expect("reopen");
        let summary = receipts.summary().expect("summary");
        assert_eq!((summary.invocations, summary.fuel), (50, 5_000));
    }

    #[test]
    fn a_settled_batch_is_claimed_once_and_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payer = bonus_ids::SecretKey::from_seed([9; 32]).public();
        let batch = PendingBatch {
            sequence: 0,
            period: 5,
            claims: vec![Claim {
                manifest_id: ManifestId::from_bytes([7; 32]),
                payer,
                invocations: 10,
                fuel: 1000,
            }],
            receipts_root: [1; 32],
            price: 2_000_000,
        };
        {
            let receipts = Receipts::open(dir.path()).expect("open");
            for n in 0..10 {
                receipts.record(receipt(n, 5, true));
            }
            receipts.flush();
            receipts.begin_batch(&batch).expect("begin");
        }
        // "Crash" between submission and confirmation: the batch is still
        // in flight after a restart, with the same content.
        let receipts = Receipts::open(dir.path()).expect("reopen");
        assert_eq!(receipts.pending().expect("pending"), Some(batch.clone()));
        assert_eq!(receipts.next_sequence().expect("seq"), 1);
        receipts.batch_settled(&batch).expect("settled");
        assert_eq!(receipts.pending().expect("pending"), None);
        assert!(receipts.unclaimed().expect("unclaimed").is_empty());
        let summary = receipts.summary().expect("summary");
        assert_eq!(summary.settled_invocations, 10);
        assert_eq!(summary.earned, 2000);
    }

    #[test]
    fn the_receipts_root_commits_to_every_receipt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let receipts = Receipts::open(dir.path()).expect("open");
        for n in 0..5 {
            receipts.record(receipt(n, 3, true));
        }
        wait_for(&receipts, 5);
        let m = [ManifestId::from_bytes([7; 32])];
        let before = receipts.receipts_root(3, &m).expect("root");
        receipts.record(receipt(99, 3, true));
        wait_for(&receipts, 6);
        assert_ne!(receipts.receipts_root(3, &m).expect("root"), before);
        assert_ne!(receipts.receipts_root(4, &m).expect("root"), before);
    }
}
