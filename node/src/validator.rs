//! The validator role: `bonus_ledger::chain` over TCP, and the ledger
//! query API over HTTP with the same limits as every other listener.

use crate::http::{HttpLimits, Stop};
use crate::signals::StopSignals;
use anyhow::Context as _;
use bonus_ids::SecretKey;
use bonus_ledger::chain::{Chain, Timeouts, tcp};
use bonus_ledger::genesis::Genesis;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run a validator.
pub struct ValidatorConfig {
    /// The genesis (validators, addresses, balances, params).
    pub genesis: Genesis,
    /// This validator's key (in the genesis set).
    pub key: SecretKey,
    /// Blocks, state and consensus storage.
    pub data_dir: PathBuf,
    /// Query API address.
    pub api: SocketAddr,
    /// Consensus timers.
    pub timeouts: Timeouts,
}

/// What `on_ready` learns.
pub struct Ready {
    /// The chain, as applied.
    pub chain: Arc<Chain>,
    /// The query API address.
    pub api: SocketAddr,
}

/// Runs the validator on this thread until the process ends. The API is
/// bound first, so a taken port fails before consensus starts.
pub fn run(
    config: ValidatorConfig,
    on_ready: impl FnOnce(&Ready) + Send + 'static,
) -> anyhow::Result<()> {
    let me = config.key.public().to_string();
    let entry = config
        .genesis
        .validators
        .iter()
        .find(|v| v.key == me)
        .with_context(|| {
            format!(
                "key {me} is not a validator in this genesis; use one of its validators' key files"
            )
        })?
        .clone();
    let api = config.api;
    let listener = std::net::TcpListener::bind(api)
        .with_context(|| format!("cannot listen on {api}; is another validator running?"))?;
    listener.set_nonblocking(true)?;
    tcp::run(
        tcp::TcpConfig {
            key: config.key,
            genesis: config.genesis,
            data_dir: config.data_dir,
            listen: entry.p2p,
            timeouts: config.timeouts,
        },
        move |chain| {
            let ready = Ready {
                chain: chain.clone(),
                api,
            };
            let spawned = std::thread::Builder::new()
                .name("ledger-api".into())
                .spawn(move || serve_api(listener, chain));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the API thread");
            }
            on_ready(&ready);
        },
    )?;
    Ok(())
}

/// For a process that runs only a validator (`bonus validator`): catches
/// SIGINT and SIGTERM from now on, and at the first makes every applied
/// block durable, runs `stopped` with the height that is now on disk and
/// exits 0. The consensus engine has no stop of its own; what it was
/// writing when the process exits is what a crash leaves, which its
/// journals survive, and blocks finalized after the sync are not yet
/// acknowledged, so marshal delivers them again.
pub fn exit_on_signal(
    chain: Arc<Chain>,
    stopped: impl FnOnce(u64) + Send + 'static,
) -> std::io::Result<()> {
    // Caught before this returns (the thread reports it), so that no
    // signal after the validator's start kills it; built on a thread of
    // its own because this may be called inside another runtime.
    let (caught_tx, caught) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("validator-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return drop(caught_tx.send(Err(e))),
            };
            let mut signals = match runtime.block_on(async { StopSignals::catch() }) {
                Ok(signals) => signals,
                Err(e) => return drop(caught_tx.send(Err(e))),
            };
            let _ = caught_tx.send(Ok(()));
            runtime.block_on(signals.recv());
            // Applied (committed without a sync), so on disk after it.
            let height = chain.height();
            let code = match chain.persist() {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "cannot persist the last finalized blocks; marshal will deliver them again at the next start");
                    1
                }
            };
            stopped(height);
            std::process::exit(code);
        })?;
    caught
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the signal thread ended early")))
}

fn serve_api(listener: std::net::TcpListener, chain: Arc<Chain>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the API runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "cannot use the API listener");
                return;
            }
        };
        // Never stopped: the validator stops with its process.
        let (_keep, stop): (_, Stop) = tokio::sync::watch::channel(false);
        let submissions = Arc::new(Submissions::default());
        let batches = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT_MAX));
        crate::http::serve(listener, HttpLimits::DEFAULT, stop, move |request| {
            let (chain, submissions, batches) =
                (chain.clone(), submissions.clone(), batches.clone());
            async move { answer(&chain, &submissions, &batches, request).await }
        })
        .await;
    });
}

/// Batch submissions read and checked at once, at most. A batch body is
/// up to 1 MiB against 64 KiB for anything else: without this, the API's
/// 4 096 connections could make a validator hold 4 GiB of bodies. Others
/// wait with their body unread.
const BATCHES_IN_FLIGHT_MAX: usize = 4;

async fn answer(
    chain: &Arc<Chain>,
    submissions: &Arc<Submissions>,
    batches: &tokio::sync::Semaphore,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    if let Some(after) = bonus_ledger::api::status_wait(&method, &path, request.uri().query()) {
        // Bounded, and each waiter holds one of the API's capped
        // connections: a client can hold no more than it could by idling.
        let mut heights = chain.subscribe();
        let _ = tokio::time::timeout(
            bonus_ledger::api::STATUS_WAIT_MAX,
            heights.wait_for(|height| *height > after),
        )
        .await;
    }
    let is_batch = bonus_ledger::api::is_batch(&path);
    let body_max = bonus_ledger::api::body_bytes_max(&path);
    let _batch_turn = match is_batch {
        true => batches.acquire().await.ok(),
        false => None,
    };
    let body = match Limited::new(request.into_body(), body_max).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return json(
                413,
                serde_json::json!({ "error": format!("a request body here is at most {body_max} bytes (one transaction, or a batch at /v1/ledger/txs/batch)") }),
            );
        }
    };
    let (status, value) = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/ledger/txs") => match submit(chain, submissions, body).await {
            Some(result) => bonus_ledger::api::submitted(result),
            None => (
                503,
                serde_json::json!({ "error": "the validator is stopping; submit to another one" }),
            ),
        },
        ("POST", _) if is_batch => match bonus_ledger::api::batch_frames(&body) {
            // Already one batch: checked off the API's runtime, so the
            // other connections keep being answered meanwhile.
            Ok(frames) => {
                let frames: Vec<Bytes> = frames.iter().map(|f| body.slice_ref(f)).collect();
                let chain = chain.clone();
                match tokio::task::spawn_blocking(move || {
                    chain.submit_many(frames.iter().map(|f| &f[..]))
                })
                .await
                {
                    Ok(results) => bonus_ledger::api::submitted_batch(results),
                    Err(_) => (
                        503,
                        serde_json::json!({ "error": "the validator is stopping; submit to another one" }),
                    ),
                }
            }
            Err(refused) => refused,
        },
        _ => bonus_ledger::api::handle(chain, &method, &path, &body),
    };
    json(status, value)
}

type Submitted = Result<[u8; 32], bonus_ledger::chain::SubmitError>;

/// Client transactions waiting to be checked together. Bounded by the
/// API's connection cap: a connection has one request in flight.
#[derive(Default)]
struct Submissions(std::sync::Mutex<Vec<(Bytes, tokio::sync::oneshot::Sender<Submitted>)>>);

impl Submissions {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<(Bytes, tokio::sync::oneshot::Sender<Submitted>)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Submits a client's transaction; `None` if it could not be checked
/// (the validator is stopping). The first submission to find the queue
/// empty starts a task that lets the API's other connections run once
/// (`yield_now` returns after the runtime has polled its sockets) and
/// then checks all that queued meanwhile, their signatures in one batch:
/// checked one at a time as they arrived, client submissions were the
/// largest share of a validator's CPU under load (`bench/HISTORY.md`).
/// A task, not the first request itself: a client that hangs up must not
/// strand the others' submissions.
async fn submit(
    chain: &Arc<Chain>,
    submissions: &Arc<Submissions>,
    body: Bytes,
) -> Option<Submitted> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let first = {
        let mut queue = submissions.lock();
        queue.push((body, sender));
        queue.len() == 1
    };
    if first {
        let (chain, submissions) = (chain.clone(), submissions.clone());
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let batch = std::mem::take(&mut *submissions.lock());
            let (bodies, senders): (Vec<Bytes>, Vec<_>) = batch.into_iter().unzip();
            let results = chain.submit_many(bodies.iter().map(|body| &body[..]));
            for (sender, result) in senders.into_iter().zip(results) {
                let _ = sender.send(result);
            }
        });
    }
    receiver.await.ok()
}

fn json(status: u16, value: serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
