//! A typed HTTP client of the ledger query API (feature `client`), shared
//! by nodes, routers and the CLI: the same structs the API serves.
//!
//! A client holds several validator URLs and asks them in turn, so one
//! validator being down costs a failed connection, not a failed call.

use crate::api::{
    AccountView, ApiError, BatchView, ManifestView, NameUsageView, NameView, Names, Nodes, Status,
    Submitted, TxStatusView, UsageView,
};
use crate::{ChainId, SignedTx, TxBody};
use bonus_ids::{ManifestId, PublicKey, SecretKey};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most bytes of one answer read into memory.
const ANSWER_BYTES_MAX: usize = 16 << 20;

/// How long one call may take before the next validator is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a ledger call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A URL that is not `http://host:port`.
    #[error("invalid ledger URL {url:?}: expected http://host:port")]
    BadUrl {
        /// What was given.
        url: String,
    },
    /// No validator answered.
    #[error(
        "cannot reach any ledger validator ({urls}): {reason}; is the network running (`bonus up`)?"
    )]
    Unreachable {
        /// The URLs tried.
        urls: String,
        /// The last failure.
        reason: String,
    },
    /// The validator answered with an error.
    #[error("the ledger refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its reason.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("the ledger answered in an unexpected shape: {0}")]
    Shape(String),
    /// The transaction left the mempool without being finalized.
    #[error(
        "transaction {id} was dropped (it no longer applies: balance or nonce changed); check `bonus balance` and retry"
    )]
    Dropped {
        /// Its id.
        id: String,
    },
    /// The transaction was not final in time.
    #[error(
        "transaction {id} is not final after {seconds} s; is a quorum of validators running? (`bonus ledger status`)"
    )]
    NotFinal {
        /// Its id.
        id: String,
        /// How long we waited.
        seconds: u64,
    },
}

/// A client of one network's validators.
pub struct LedgerClient {
    urls: Vec<http::Uri>,
    http: Client<HttpConnector, Full<Bytes>>,
    /// The chain id, read once.
    chain_id: tokio::sync::OnceCell<ChainId>,
    /// Which URL answered last: asked first next time.
    preferred: Mutex<usize>,
}

impl LedgerClient {
    /// A client of the validators at `urls` (`http://host:port`).
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Result<LedgerClient, ClientError> {
        let mut parsed = Vec::with_capacity(urls.len());
        for url in urls {
            let url = url.as_ref().trim_end_matches('/');
            let uri: http::Uri = url.parse().map_err(|_| ClientError::BadUrl {
                url: url.to_string(),
            })?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(ClientError::BadUrl {
                    url: url.to_string(),
                });
            }
            parsed.push(uri);
        }
        if parsed.is_empty() {
            return Err(ClientError::BadUrl { url: String::new() });
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Ok(LedgerClient {
            urls: parsed,
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            chain_id: tokio::sync::OnceCell::new(),
            preferred: Mutex::new(0),
        })
    }

    /// The validator URLs, as given.
    pub fn urls(&self) -> Vec<String> {
        self.urls.iter().map(|u| u.to_string()).collect()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, ClientError> {
        let first = *self.preferred.lock().unwrap_or_else(|e| e.into_inner());
        let mut reason = String::new();
        for attempt in 0..self.urls.len() {
            let index = (first + attempt) % self.urls.len();
            let base = &self.urls[index];
            let request = http::Request::builder()
                .method(method.clone())
                .uri(format!("{}{path}", base.to_string().trim_end_matches('/')))
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
                .body(Full::new(body.clone()))
                .map_err(|e| ClientError::Shape(e.to_string()))?;
            let answer = tokio::time::timeout(CALL_TIMEOUT, async {
                let response = self
                    .http
                    .request(request)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let bytes = http_body_util::Limited::new(response.into_body(), ANSWER_BYTES_MAX)
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                Ok::<_, String>((status, bytes))
            })
            .await;
            let (status, bytes) = match answer {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    reason = format!("{base}: {e}");
                    continue;
                }
                Err(_) => {
                    reason = format!("{base}: no answer in {} s", CALL_TIMEOUT.as_secs());
                    continue;
                }
            };
            *self.preferred.lock().unwrap_or_else(|e| e.into_inner()) = index;
            if !status.is_success() {
                let message = serde_json::from_slice::<ApiError>(&bytes)
                    .map(|e| e.error)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
                return Err(ClientError::Refused {
                    status: status.as_u16(),
                    message,
                });
            }
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Shape(e.to_string()));
        }
        Err(ClientError::Unreachable {
            urls: self.urls().join(", "),
            reason,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(http::Method::GET, path, Bytes::new()).await
    }

    /// Height, root, params and finality.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get("/v1/ledger/status").await
    }

    /// The status once a block above `height` is final, or after the
    /// validator's wait bound ([`crate::api::STATUS_WAIT_MAX`]) with the
    /// height unchanged: a follower learns of each block as it lands
    /// instead of polling.
    pub async fn status_after(&self, height: u64) -> Result<Status, ClientError> {
        self.get(&format!("/v1/ledger/status?after={height}")).await
    }

    /// The network's chain id (asked once).
    pub async fn chain_id(&self) -> Result<ChainId, ClientError> {
        self.chain_id
            .get_or_try_init(|| async {
                let status = self.status().await?;
                parse_chain_id(&status.chain_id)
            })
            .await
            .copied()
    }

    /// An account (zeros if unknown).
    pub async fn account(&self, key: &PublicKey) -> Result<AccountView, ClientError> {
        self.get(&format!("/v1/ledger/accounts/{key}")).await
    }

    /// An account with its proof under the last finalized state root;
    /// check it with [`AccountProofView::verify`](crate::api::AccountProofView::verify)
    /// against a root you trust.
    pub async fn account_proof(
        &self,
        key: &PublicKey,
    ) -> Result<crate::api::AccountProofView, ClientError> {
        self.get(&format!("/v1/ledger/accounts/{key}/proof")).await
    }

    /// A bound name, or `None`.
    pub async fn name(&self, name: &str) -> Result<Option<NameView>, ClientError> {
        match self.get(&format!("/v1/ledger/names/{name}")).await {
            Ok(view) => Ok(Some(view)),
            Err(ClientError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A name's usage per period (`None`: no such name).
    pub async fn name_usage(&self, name: &str) -> Result<Option<NameUsageView>, ClientError> {
        match self.get(&format!("/v1/ledger/names/{name}/usage")).await {
            Ok(view) => Ok(Some(view)),
            Err(ClientError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every bound name.
    pub async fn names(&self) -> Result<Names, ClientError> {
        self.get("/v1/ledger/names").await
    }

    /// Every registered worker and router.
    pub async fn nodes(&self) -> Result<Nodes, ClientError> {
        self.get("/v1/ledger/nodes").await
    }

    /// A deployed manifest, or `None`.
    pub async fn manifest(&self, id: &ManifestId) -> Result<Option<ManifestView>, ClientError> {
        match self
            .get(&format!("/v1/ledger/manifests/{}", id.to_hex()))
            .await
        {
            Ok(view) => Ok(Some(view)),
            Err(ClientError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Usage recorded in a period.
    pub async fn usage(&self, period: u64) -> Result<UsageView, ClientError> {
        self.get(&format!("/v1/ledger/usage/{period}")).await
    }

    /// Whether a worker's batch settled.
    pub async fn batch(&self, worker: &PublicKey, sequence: u64) -> Result<BatchView, ClientError> {
        self.get(&format!("/v1/ledger/batches/{worker}/{sequence}"))
            .await
    }

    /// A transaction's status.
    pub async fn tx_status(&self, id: &str) -> Result<TxStatusView, ClientError> {
        self.get(&format!("/v1/ledger/txs/{id}")).await
    }

    /// Submits a signed transaction; its id.
    pub async fn submit(&self, tx: &SignedTx) -> Result<String, ClientError> {
        let submitted: Submitted = self
            .call(
                http::Method::POST,
                "/v1/ledger/txs",
                Bytes::from(tx.encode()),
            )
            .await?;
        Ok(submitted.id)
    }

    /// Submits up to [`crate::api::BATCH_TXS_MAX`] signed transactions in
    /// one request (their signatures are checked together); what became
    /// of each, in order: its id, or why it was refused.
    pub async fn submit_batch(
        &self,
        txs: &[SignedTx],
    ) -> Result<Vec<Result<String, String>>, ClientError> {
        let mut body = Vec::new();
        for tx in txs {
            crate::tx::push_frame(&mut body, &tx.encode());
        }
        let batch: crate::api::SubmittedBatch = self
            .call(
                http::Method::POST,
                "/v1/ledger/txs/batch",
                Bytes::from(body),
            )
            .await?;
        Ok(batch
            .results
            .into_iter()
            .map(|result| match result {
                crate::api::BatchResult::Accepted(submitted) => Ok(submitted.id),
                crate::api::BatchResult::Refused(refused) => Err(refused.error),
            })
            .collect())
    }

    /// Signs `body` with the next nonce the ledger expects from `key`
    /// (after its pending transactions) and submits it; its id.
    pub async fn sign_and_submit(
        &self,
        key: &SecretKey,
        body: TxBody,
    ) -> Result<String, ClientError> {
        let chain_id = self.chain_id().await?;
        let account = self.account(&key.public()).await?;
        let tx = SignedTx::sign(key, &chain_id, account.next_nonce, body);
        self.submit(&tx).await
    }

    /// Waits until a transaction is final (its height) or dropped.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> Result<u64, ClientError> {
        let started = Instant::now();
        // A submission reaches the validator's mempool before it answers,
        // but the next validator asked may not have it yet: `Unknown` is
        // final only once it has been seen pending or time has passed.
        let mut seen = false;
        loop {
            match self.tx_status(id).await? {
                TxStatusView::Finalized { height } => return Ok(height),
                TxStatusView::Pending => seen = true,
                TxStatusView::Unknown if seen || started.elapsed() > Duration::from_secs(2) => {
                    return Err(ClientError::Dropped { id: id.to_string() });
                }
                TxStatusView::Unknown => {}
            }
            if started.elapsed() > timeout {
                return Err(ClientError::NotFinal {
                    id: id.to_string(),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Parses the hex chain id the status reports.
pub fn parse_chain_id(text: &str) -> Result<ChainId, ClientError> {
    let bytes = crate::api::parse_hex32(text)
        .ok_or_else(|| ClientError::Shape(format!("chain id {text:?} is not 64 hex digits")))?;
    Ok(ChainId(bytes))
}
