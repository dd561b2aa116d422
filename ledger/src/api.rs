//! The query API, independent of any HTTP framework: a request's method,
//! path and body in, a status and a typed JSON body out. The validator
//! serves it over HTTP; the CLI, the tests and the JS client read the same
//! types. Amounts (balances, stakes, fees, prices, nonces) are decimal
//! strings, so no client rounds them.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/ledger/status` | [`Status`]; with `?after=<height>`, answered once a block above it is final (or after [`STATUS_WAIT_MAX`]) |
//! | GET | `/v1/ledger/accounts/<ed25519:hex>` | [`AccountView`] |
//! | GET | `/v1/ledger/accounts/<ed25519:hex>/proof` | [`AccountProofView`]: the account under the finalized state root |
//! | GET | `/v1/ledger/names` and `/v1/ledger/names/<name>` | [`Names`], [`NameView`] |
//! | GET | `/v1/ledger/names/<name>/usage` | [`NameUsageView`]: invocations, fuel and charges per period, the last [`USAGE_HISTORY_PERIODS`](crate::limits::USAGE_HISTORY_PERIODS) |
//! | GET | `/v1/ledger/manifests/<manifest:hex>` | [`ManifestView`] |
//! | GET | `/v1/ledger/usage/<period>` | [`UsageView`]: every line of a period in the settlement window |
//! | GET | `/v1/ledger/nodes` | [`Nodes`] |
//! | GET | `/v1/ledger/batches/<worker>/<sequence>` | [`BatchView`] |
//! | GET | `/v1/ledger/blocks/<height>` | [`BlockView`] with its certificate |
//! | GET | `/v1/ledger/txs/<id hex>` | [`TxStatusView`] |
//! | POST | `/v1/ledger/txs` | [`Submitted`]: an encoded signed transaction |
//! | POST | `/v1/ledger/txs/batch` | [`SubmittedBatch`]: up to [`BATCH_TXS_MAX`] transactions, each framed by [`crate::tx::push_frame`] |
//!
//! Errors are [`ApiError`] with a 4xx/5xx status.

mod proof;

pub use proof::AccountProofView;

use crate::chain::{Chain, SubmitError, TxStatus};
use crate::{NodeRole, State};
use bonus_ids::{ManifestId, PublicKey};
use serde::{Deserialize, Serialize};

/// Longest a `status?after=` request waits for a new block. Well below
/// the client's call timeout, so a quiet chain never looks like a dead
/// validator.
pub const STATUS_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// The height a `GET /v1/ledger/status?after=<height>` waits to pass, if
/// the query asks to wait (`None` for a plain status or anything else).
pub fn status_wait(method: &str, path: &str, query: Option<&str>) -> Option<u64> {
    if method != "GET" || path.trim_end_matches('/') != "/v1/ledger/status" {
        return None;
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(|height| height.parse().ok())
}

/// Largest request body: one transaction.
pub const BODY_BYTES_MAX: usize = crate::limits::TX_BYTES_MAX;

/// Most transactions in one `POST /v1/ledger/txs/batch`: the signatures
/// of a batch are checked together, so a client with many to send (an
/// exchange, a benchmark) pays one request and one batched check for
/// them instead of one each. A batch costs the validator what its
/// transactions would cost one by one, never more than twice that (one
/// failed batch equation, then each signature alone).
pub const BATCH_TXS_MAX: usize = crate::limits::LIST_ITEMS_MAX;

/// Largest `POST /v1/ledger/txs/batch` body: [`BATCH_TXS_MAX`] framed
/// transactions of a typical size (a transfer is about 130 bytes).
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Whether `path` is the batch endpoint (`/v1/ledger/txs/batch`, with or
/// without a trailing slash, as [`handle`] routes it).
pub fn is_batch(path: &str) -> bool {
    path.trim_end_matches('/') == "/v1/ledger/txs/batch"
}

/// The largest body `path` may carry.
pub fn body_bytes_max(path: &str) -> usize {
    if is_batch(path) {
        BATCH_BYTES_MAX
    } else {
        BODY_BYTES_MAX
    }
}

/// u64 amounts as decimal strings (read back from strings or numbers).
pub mod amount {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as a decimal string.
    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    /// Reads a decimal string (or a plain number).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(d)? {
            Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Either::Number(n) => Ok(n),
        }
    }
}

/// An error answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    /// What went wrong and what to do.
    pub error: String,
}

/// Finality latency of this validator's own recent blocks, ms.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Finality {
    /// Median (None before any sample).
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Samples taken.
    pub samples: usize,
}

/// `GET /v1/ledger/status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The network's chain id (hex).
    pub chain_id: String,
    /// Finalized height.
    pub height: u64,
    /// Timestamp of the finalized block, ms since the Unix epoch.
    pub time_ms: u64,
    /// The current settlement period.
    pub period: u64,
    /// Hex of the state root at `height`.
    pub state_root: String,
    /// Validators' keys.
    pub validators: Vec<String>,
    /// Transactions waiting in this validator's mempool.
    pub mempool: usize,
    /// The fee pool.
    #[serde(with = "amount")]
    pub fee_pool: u64,
    /// Balances + stakes + unbonding + fee pool: what genesis minted.
    #[serde(with = "amount")]
    pub total_supply: u64,
    /// The flat fee every transaction pays.
    #[serde(with = "amount")]
    pub tx_fee: u64,
    /// The network's economics (fee, stake minimums, period length).
    pub params: crate::Params,
    /// Finality latency.
    pub finality_ms: Finality,
}

/// Stake on its way back to the balance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unbonding {
    /// Amount.
    #[serde(with = "amount")]
    pub amount: u64,
    /// Block time at which it returns, ms since the Unix epoch.
    pub release_at_ms: u64,
}

/// `GET /v1/ledger/accounts/<key>`; an unknown account is all zeros.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountView {
    /// `ed25519:<hex>`.
    pub account: String,
    /// Spendable balance.
    #[serde(with = "amount")]
    pub balance: u64,
    /// The nonce its next transaction must carry, by finalized state.
    #[serde(with = "amount")]
    pub nonce: u64,
    /// The nonce after its transactions waiting in this validator's
    /// mempool: what a new transaction should carry now.
    #[serde(with = "amount")]
    pub next_nonce: u64,
    /// Bonded stake.
    #[serde(with = "amount")]
    pub stake: u64,
    /// Unbonding stake.
    pub unbonding: Vec<Unbonding>,
    /// A settlement could not be charged to it.
    pub unpaid: bool,
    /// A validator punished for equivocation.
    pub slashed: bool,
}

/// One weighted manifest of a traffic split.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Split {
    /// `manifest:<hex>`.
    pub manifest_id: String,
    /// Weight.
    pub weight: u32,
}

/// A name as the ledger records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NameView {
    /// The name.
    pub name: String,
    /// Its owner.
    pub owner: String,
    /// Current manifest.
    pub manifest_id: String,
    /// Weighted split (empty: all to `manifest_id`).
    pub traffic: Vec<Split>,
    /// Most charged per period.
    #[serde(with = "amount")]
    pub spend_per_period_max: u64,
    /// Charged so far in the current period.
    #[serde(with = "amount")]
    pub spent_this_period: u64,
    /// Routers answer 402: the owner could not pay, or the budget is spent.
    pub unpaid: bool,
}

/// `GET /v1/ledger/names`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Names {
    /// Every name.
    pub names: Vec<NameView>,
}

/// A registered worker or router.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeView {
    /// Its key.
    pub key: String,
    /// `worker` or `router`.
    pub role: String,
    /// The account it pays.
    pub operator: String,
    /// Where to reach it.
    pub endpoint: String,
    /// Region hint.
    pub region: String,
    /// Price per million fuel.
    #[serde(with = "amount")]
    pub price_per_million_fuel: u64,
    /// Bonded stake.
    #[serde(with = "amount")]
    pub stake: u64,
}

/// `GET /v1/ledger/nodes`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Nodes {
    /// Every node.
    pub nodes: Vec<NodeView>,
}

/// `GET /v1/ledger/manifests/<id>`: a deployed manifest and the signed
/// bytes its owner deployed, for workers and routers that never saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestView {
    /// `manifest:<hex>`.
    pub manifest_id: String,
    /// The name it belongs to.
    pub name: String,
    /// The name's owner: who pays for it.
    pub owner: String,
    /// Fuel limit per invocation.
    #[serde(with = "amount")]
    pub fuel_per_invocation_max: u64,
    /// Most the owner pays per million fuel.
    #[serde(with = "amount")]
    pub price_per_million_fuel_max: u64,
    /// Hex of `SignedManifest::encode()`: verify it before use.
    pub signed: String,
}

/// One manifest's usage by one worker in one period.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageLine {
    /// The name the manifest belongs to.
    pub name: String,
    /// `manifest:<hex>`.
    pub manifest_id: String,
    /// The worker, `ed25519:<hex>`.
    pub worker: String,
    /// Invocations routers vouched for.
    #[serde(with = "amount")]
    pub attested: u64,
    /// Invocations settled (paid for or charged against the budget).
    #[serde(with = "amount")]
    pub settled: u64,
}

/// `GET /v1/ledger/usage/<period>[?worker=<key>]`: usage recorded in one
/// period (the settlement window only).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageView {
    /// The period.
    pub period: u64,
    /// The current period, for context.
    pub current_period: u64,
    /// Every line.
    pub lines: Vec<UsageLine>,
    /// What each name's owner was charged in the period.
    pub charged: Vec<Charged>,
}

/// What one name's owner was charged in a period.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Charged {
    /// The name.
    pub name: String,
    /// The amount (worker earnings and protocol fee).
    #[serde(with = "amount")]
    pub amount: u64,
}

/// One period of a name's usage.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamePeriod {
    /// The period.
    pub period: u64,
    /// When it began: block time, ms since the Unix epoch.
    pub start_ms: u64,
    /// Invocations routers vouched for.
    #[serde(with = "amount")]
    pub routed: u64,
    /// Invocations workers settled.
    #[serde(with = "amount")]
    pub settled: u64,
    /// Fuel of the settled invocations.
    #[serde(with = "amount")]
    pub fuel: u64,
    /// What the owner paid for them (fees included).
    #[serde(with = "amount")]
    pub charged: u64,
}

/// `GET /v1/ledger/names/<name>/usage`: the name's usage in each of the
/// last [`USAGE_HISTORY_PERIODS`](crate::limits::USAGE_HISTORY_PERIODS)
/// periods that had any, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NameUsageView {
    /// The name.
    pub name: String,
    /// The current period, for context.
    pub current_period: u64,
    /// Length of a period, ms.
    pub period_ms: u64,
    /// Periods with usage.
    pub periods: Vec<NamePeriod>,
}

/// `GET /v1/ledger/batches/<worker>/<sequence>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchView {
    /// The worker.
    pub worker: String,
    /// Its batch sequence.
    #[serde(with = "amount")]
    pub sequence: u64,
    /// Whether it settled (within the settlement window).
    pub settled: bool,
}

/// A transaction in a block.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockTx {
    /// Its id (hex).
    pub id: String,
    /// Signer.
    pub signer: String,
    /// Nonce.
    #[serde(with = "amount")]
    pub nonce: u64,
    /// Kind (`transfer`, `deploy`, …).
    pub kind: String,
}

/// `GET /v1/ledger/blocks/<height>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockView {
    /// Height.
    pub height: u64,
    /// Timestamp, ms.
    pub time_ms: u64,
    /// Hex digest (what consensus signed).
    pub digest: String,
    /// Parent digest.
    pub parent: String,
    /// State root after it.
    pub state_root: String,
    /// Its transactions.
    pub txs: Vec<BlockTx>,
    /// Hex of its finalization certificate, if consensus certified this
    /// block itself.
    pub certificate: Option<String>,
}

/// `GET /v1/ledger/txs/<id>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TxStatusView {
    /// Waiting in this validator's mempool.
    Pending,
    /// Final at `height`.
    Finalized {
        /// Height.
        height: u64,
    },
    /// Never seen here, dropped because it no longer applies, or
    /// finalized before the newest 2²⁰ transactions a validator indexes
    /// (its block still holds it).
    Unknown,
}

/// `POST /v1/ledger/txs`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Submitted {
    /// The transaction id (hex).
    pub id: String,
    /// Always `pending`.
    pub status: String,
}

impl Submitted {
    /// Accepted into the mempool as `id`.
    pub fn pending(id: &[u8; 32]) -> Submitted {
        Submitted {
            id: hex(id),
            status: "pending".into(),
        }
    }
}

/// `POST /v1/ledger/txs/batch`: what became of each transaction, in the
/// order sent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubmittedBatch {
    /// One per transaction.
    pub results: Vec<BatchResult>,
}

/// One transaction of a batch: accepted (its id, `pending`) or refused
/// (why).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum BatchResult {
    /// Accepted into the mempool.
    Accepted(Submitted),
    /// Refused, as `POST /v1/ledger/txs` would have refused it alone.
    Refused(ApiError),
}

/// A status and a JSON body.
pub type Answer = (u16, serde_json::Value);

fn ok<T: Serialize>(status: u16, body: T) -> Answer {
    (
        status,
        serde_json::to_value(body).expect("API types serialize"),
    )
}

fn err(status: u16, error: String) -> Answer {
    ok(status, ApiError { error })
}

/// The answer to `POST /v1/ledger/txs`, from what the chain made of it.
pub fn submitted(result: Result<[u8; 32], SubmitError>) -> Answer {
    match result {
        Ok(id) => ok(202, Submitted::pending(&id)),
        Err(e) => err(400, e.to_string()),
    }
}

/// The answer to `POST /v1/ledger/txs/batch` (200 even when some were
/// refused: each result says).
pub fn submitted_batch(results: Vec<Result<[u8; 32], SubmitError>>) -> Answer {
    let results = results
        .into_iter()
        .map(|result| match result {
            Ok(id) => BatchResult::Accepted(Submitted::pending(&id)),
            Err(e) => BatchResult::Refused(ApiError {
                error: e.to_string(),
            }),
        })
        .collect();
    ok(200, SubmittedBatch { results })
}

/// The frames of a batch body, or the 400 that refuses it.
pub fn batch_frames(body: &[u8]) -> Result<Vec<&[u8]>, Answer> {
    match crate::tx::split_frames(body, BATCH_TXS_MAX) {
        Ok(frames) if frames.is_empty() => Err(err(
            400,
            "an empty batch: send at least one transaction".into(),
        )),
        Ok(frames) => Ok(frames),
        Err(e) => Err(err(
            400,
            format!(
                "a batch is up to {BATCH_TXS_MAX} transactions, each a 4-byte big-endian length and the encoded transaction: {e}"
            ),
        )),
    }
}

/// Answers one query.
pub fn handle(chain: &Chain, method: &str, path: &str, body: &[u8]) -> Answer {
    let segments: Vec<&str> = path
        .trim_start_matches("/v1/ledger")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (method, segments.as_slice()) {
        ("GET", ["status"]) => ok(200, status(chain)),
        ("GET", ["accounts", key]) => match key.parse::<PublicKey>() {
            Ok(key) => {
                let mut view = account(&chain.state(), &key);
                view.next_nonce = chain.next_nonce(&key);
                ok(200, view)
            }
            Err(e) => err(400, format!("invalid account {key:?}: {e}")),
        },
        ("GET", ["accounts", key, "proof"]) => match key.parse::<PublicKey>() {
            Ok(key) => {
                let (height, state) = chain.applied();
                ok(200, AccountProofView::new(&state, height, &key))
            }
            Err(e) => err(400, format!("invalid account {key:?}: {e}")),
        },
        ("GET", ["names"]) => {
            let state = chain.state();
            let names = state.names().filter_map(|(n, _)| name(&state, n)).collect();
            ok(200, Names { names })
        }
        ("GET", ["names", n]) => match name(&chain.state(), n) {
            Some(view) => ok(200, view),
            None => err(404, format!("no name {n:?} on the ledger")),
        },
        ("GET", ["names", n, "usage"]) => match name_usage(&chain.state(), n) {
            Some(view) => ok(200, view),
            None => err(404, format!("no name {n:?} on the ledger")),
        },
        ("GET", ["nodes"]) => ok(200, nodes(&chain.state())),
        ("GET", ["manifests", id]) => match id.parse::<ManifestId>() {
            Ok(id) => match manifest(&chain.state(), &id) {
                Some(view) => ok(200, view),
                None => err(404, format!("{id} is not deployed on the ledger")),
            },
            Err(e) => err(400, e.to_string()),
        },
        ("GET", ["usage", period]) => match period.parse::<u64>() {
            Ok(period) => ok(200, usage(&chain.state(), period)),
            Err(_) => err(400, format!("invalid period {period:?}")),
        },
        ("GET", ["batches", worker, sequence]) => {
            let (Ok(worker), Ok(sequence)) = (worker.parse::<PublicKey>(), sequence.parse::<u64>())
            else {
                return err(
                    400,
                    "expected /v1/ledger/batches/<ed25519:hex>/<sequence>".into(),
                );
            };
            let settled = chain.state().is_settled(&worker, sequence);
            ok(
                200,
                BatchView {
                    worker: worker.to_string(),
                    sequence,
                    settled,
                },
            )
        }
        ("GET", ["blocks", height]) => match height.parse::<u64>() {
            Ok(height) => block(chain, height),
            Err(_) => err(400, format!("invalid height {height:?}")),
        },
        ("GET", ["txs", id]) => {
            let Some(id) = parse_hex32(id) else {
                return err(400, "expected a 64-hex-digit transaction id".into());
            };
            let status = match chain.status(&id) {
                TxStatus::Pending => TxStatusView::Pending,
                TxStatus::Finalized(height) => TxStatusView::Finalized { height },
                TxStatus::Unknown => TxStatusView::Unknown,
            };
            ok(200, status)
        }
        ("POST", ["txs"]) => submitted(chain.submit(body)),
        ("POST", ["txs", "batch"]) => match batch_frames(body) {
            Ok(frames) => submitted_batch(chain.submit_many(frames)),
            Err(refused) => refused,
        },
        _ => err(
            404,
            format!("no such ledger endpoint: {method} {path}; see GET /v1/ledger/status"),
        ),
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn status(chain: &Chain) -> Status {
    let state = chain.state();
    let mut finality = chain.finality_samples();
    finality.sort();
    let pick = |q: f64| {
        finality
            .get(((finality.len().max(1) - 1) as f64 * q).round() as usize)
            .map(|d| d.as_secs_f64() * 1e3)
    };
    Status {
        chain_id: state.chain_id().to_string(),
        height: chain.height(),
        time_ms: state.time_ms(),
        period: state.period(),
        state_root: hex(&state.root()),
        validators: state.validators().iter().map(ToString::to_string).collect(),
        mempool: chain.mempool_len(),
        fee_pool: state.fee_pool(),
        total_supply: state.minted(),
        tx_fee: state.params().tx_fee,
        params: *state.params(),
        finality_ms: Finality {
            p50: pick(0.5),
            p99: pick(0.99),
            samples: finality.len(),
        },
    }
}

/// An account's view (all zeros if unknown).
pub fn account(state: &State, key: &PublicKey) -> AccountView {
    let account = state.account(key).unwrap_or_default();
    AccountView {
        account: key.to_string(),
        balance: account.balance,
        nonce: account.nonce,
        next_nonce: account.nonce,
        stake: account.stake,
        unbonding: account
            .unbonding
            .iter()
            .map(|(amount, at)| Unbonding {
                amount: *amount,
                release_at_ms: *at,
            })
            .collect(),
        unpaid: account.unpaid,
        slashed: state.is_slashed(key),
    }
}

/// A name's view, if it is bound.
pub fn name(state: &State, n: &str) -> Option<NameView> {
    let entry = state.name(n)?;
    Some(NameView {
        name: n.to_string(),
        owner: entry.owner.to_string(),
        manifest_id: entry.manifest_id.to_string(),
        traffic: entry
            .traffic
            .iter()
            .map(|(m, w)| Split {
                manifest_id: m.to_string(),
                weight: *w,
            })
            .collect(),
        spend_per_period_max: entry.spend_per_period_max,
        spent_this_period: state.spent(state.period(), n),
        unpaid: state.is_unpaid(n),
    })
}

/// A name's usage history, if the name is bound.
pub fn name_usage(state: &State, n: &str) -> Option<NameUsageView> {
    state.name(n)?;
    let current_period = state.period();
    let period_ms = state.params().period_ms;
    let oldest = (current_period + 1).saturating_sub(crate::limits::USAGE_HISTORY_PERIODS);
    let periods = (oldest..=current_period)
        .filter_map(|period| {
            let usage = state.name_usage(period, n)?;
            Some(NamePeriod {
                period,
                start_ms: period.saturating_mul(period_ms),
                routed: usage.routed,
                settled: usage.settled,
                fuel: usage.fuel,
                charged: usage.charged,
            })
        })
        .collect();
    Some(NameUsageView {
        name: n.to_string(),
        current_period,
        period_ms,
        periods,
    })
}

/// A deployed manifest's view.
pub fn manifest(state: &State, id: &ManifestId) -> Option<ManifestView> {
    let entry = state.manifest(id)?;
    Some(ManifestView {
        manifest_id: id.to_string(),
        name: entry.name.clone(),
        owner: state
            .name(&entry.name)
            .map(|n| n.owner.to_string())
            .unwrap_or_default(),
        fuel_per_invocation_max: entry.fuel_per_invocation_max,
        price_per_million_fuel_max: entry.price_per_million_fuel_max,
        signed: hex(&entry.signed),
    })
}

/// Usage recorded in a period.
pub fn usage(state: &State, period: u64) -> UsageView {
    UsageView {
        period,
        current_period: state.period(),
        lines: state
            .period_usage(period)
            .map(|(m, w, u)| UsageLine {
                name: state
                    .manifest(m)
                    .map(|e| e.name.clone())
                    .unwrap_or_default(),
                manifest_id: m.to_string(),
                worker: w.to_string(),
                attested: u.attested,
                settled: u.settled,
            })
            .collect(),
        charged: state
            .period_spent(period)
            .map(|(name, amount)| Charged {
                name: name.to_string(),
                amount,
            })
            .collect(),
    }
}

fn nodes(state: &State) -> Nodes {
    let nodes = state
        .nodes()
        .map(|(key, node)| NodeView {
            key: key.to_string(),
            role: match node.role {
                NodeRole::Worker => "worker",
                NodeRole::Router => "router",
            }
            .into(),
            operator: node.operator.to_string(),
            endpoint: node.endpoint.clone(),
            region: node.region.clone(),
            price_per_million_fuel: node.price_per_million_fuel,
            stake: state.account(key).map_or(0, |a| a.stake),
        })
        .collect();
    Nodes { nodes }
}

fn block(chain: &Chain, height: u64) -> Answer {
    let store = chain.store();
    let (block, certificate) = match (store.block(height), store.certificate(height)) {
        (Ok(Some(block)), Ok(certificate)) => (block, certificate),
        (Ok(None), _) => {
            return err(
                404,
                format!(
                    "no finalized block at height {height} (finalized height is {})",
                    chain.height()
                ),
            );
        }
        (Err(e), _) | (_, Err(e)) => return err(500, e.to_string()),
    };
    let txs = block
        .txs
        .iter()
        .map(|tx| BlockTx {
            id: hex(&tx.id()),
            signer: tx.signer.to_string(),
            nonce: tx.nonce,
            kind: tx.body.kind().into(),
        })
        .collect();
    ok(
        200,
        BlockView {
            height: block.height,
            time_ms: block.time_ms,
            digest: hex(commonware_cryptography::Digestible::digest(&block).as_ref()),
            parent: hex(block.parent.as_ref()),
            state_root: hex(&block.state_root),
            txs,
            certificate: certificate.map(|c| hex(&c)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::status_wait as wait;

    #[test]
    fn only_a_well_formed_status_query_waits() {
        let status = "/v1/ledger/status";
        assert_eq!(wait("GET", status, Some("after=7")), Some(7));
        assert_eq!(
            wait("GET", "/v1/ledger/status/", Some("x=1&after=9")),
            Some(9)
        );
        let max = format!("after={}", u64::MAX);
        assert_eq!(wait("GET", status, Some(&max)), Some(u64::MAX));
        // Anything else answers at once.
        assert_eq!(wait("GET", status, None), None);
        assert_eq!(wait("GET", status, Some("after=")), None);
        assert_eq!(wait("GET", status, Some("after=-1")), None);
        assert_eq!(
            wait("GET", status, Some("after=99999999999999999999999")),
            None
        );
        assert_eq!(wait("GET", "/v1/ledger/names", Some("after=7")), None);
        assert_eq!(wait("POST", status, Some("after=7")), None);
    }
}
