//! A small HTTP client for a node's API, used by the CLI's commands.

use crate::wire;
use anyhow::{Context, bail};
use bonus_ids::ArtifactId;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;

/// A node's API at `base` (`http://host:port`).
pub struct NodeClient {
    base: http::Uri,
    authority: String,
    /// What to start if the server is unreachable.
    server: &'static str,
}

impl NodeClient {
    pub fn new(base: &str) -> anyhow::Result<NodeClient> {
        let base: http::Uri = base
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("invalid node URL {base:?}; expected http://host:port"))?;
        if base.scheme_str() != Some("http") {
            bail!("node URL {base} must start with http://");
        }
        let authority = base
            .authority()
            .map(ToString::to_string)
            .with_context(|| format!("node URL {base} has no host"))?;
        Ok(NodeClient {
            base,
            authority,
            server: "bonus node",
        })
    }

    /// A client for a validator's ledger query API.
    pub fn ledger(base: &str) -> anyhow::Result<NodeClient> {
        Ok(NodeClient {
            server: "bonus validator",
            ..NodeClient::new(base)?
        })
    }

    async fn send<B>(
        &self,
        request: http::Request<B>,
    ) -> anyhow::Result<(http::StatusCode, http::HeaderMap, Bytes)>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| {
                format!(
                    "cannot reach {}; is `{}` running there?",
                    self.base, self.server
                )
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .context("the node closed the connection")?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the node's answer")?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    fn request(&self, method: http::Method, path: &str) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base()))
            .header(http::header::HOST, &self.authority)
    }

    /// The artifact's size if the node holds it.
    pub async fn artifact_bytes(&self, id: &ArtifactId) -> anyhow::Result<Option<u64>> {
        let request = self
            .request(
                http::Method::HEAD,
                &format!("/v1/artifacts/{}", id.to_hex()),
            )
            .body(Full::new(Bytes::new()))?;
        let (status, headers, _) = self.send(request).await?;
        match status {
            http::StatusCode::OK => Ok(headers
                .get("x-bonus-artifact-bytes")
                .and_then(|v| v.to_str().ok()?.parse().ok())),
            http::StatusCode::NOT_FOUND => Ok(None),
            other => bail!("the node answered {other} for artifact {id}"),
        }
    }

    /// Streams `bytes` to the node in chunks, calling `progress` after each.
    pub async fn put_artifact(
        &self,
        id: &ArtifactId,
        bytes: Bytes,
        progress: impl Fn(u64) + Send + 'static,
    ) -> anyhow::Result<wire::ArtifactStored> {
        const CHUNK_BYTES: usize = 256 << 10;
        let len = bytes.len();
        let chunks: Vec<Bytes> = (0..len.div_ceil(CHUNK_BYTES).max(1))
            .map(|idx| bytes.slice(idx * CHUNK_BYTES..((idx + 1) * CHUNK_BYTES).min(len)))
            .collect();
        let mut sent = 0u64;
        let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
            sent += chunk.len() as u64;
            progress(sent);
            Ok::<_, std::convert::Infallible>(Frame::data(chunk))
        }));
        let request = self
            .request(http::Method::PUT, &format!("/v1/artifacts/{}", id.to_hex()))
            .header(http::header::CONTENT_LENGTH, len)
            .body(StreamBody::new(stream))?;
        let (status, _, body) = self.send(request).await?;
        answer(status, &body)
    }

    /// Posts a signed manifest.
    pub async fn post_manifest(&self, encoded: Vec<u8>) -> anyhow::Result<wire::ManifestStored> {
        let request = self
            .request(http::Method::POST, "/v1/manifests")
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(Bytes::from(encoded)))?;
        let (status, _, body) = self.send(request).await?;
        answer(status, &body)
    }

    /// `GET path` as JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.get(path).await
    }

    /// `GET path`, read as `T`.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let request = self
            .request(http::Method::GET, path)
            .body(Full::new(Bytes::new()))?;
        let (status, _, body) = self.send(request).await?;
        answer(status, &body)
    }

    /// `GET /v1/logs/<name>?after=<seq>`, signed by `owner` now.
    pub async fn logs(
        &self,
        name: &str,
        after: u64,
        owner: &bonus_ids::SecretKey,
    ) -> anyhow::Result<wire::Logs> {
        let time_ms = signed_read_time_ms();
        let signature = owner.sign(&wire::logs_auth_message(name, time_ms));
        let request = self
            .request(http::Method::GET, &format!("/v1/logs/{name}?after={after}"))
            .header(
                wire::LOGS_AUTH_HEADER,
                format!("{},{time_ms},{signature}", owner.public()),
            )
            .body(Full::new(Bytes::new()))?;
        let (status, _, body) = self.send(request).await?;
        answer(status, &body)
    }

    /// `GET /v1/node`.
    pub async fn node_info(&self) -> anyhow::Result<wire::NodeInfo> {
        self.get("/v1/node").await
    }

    /// `GET /v1/functions`.
    pub async fn functions(&self) -> anyhow::Result<Vec<wire::FunctionInfo>> {
        Ok(self
            .get::<wire::Functions>("/v1/functions")
            .await?
            .functions)
    }

    /// `POST path` with a binary body; the JSON answer.
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<serde_json::Value> {
        let request = self
            .request(http::Method::POST, path)
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(Bytes::from(body)))?;
        let (status, _, body) = self.send(request).await?;
        answer(status, &body)
    }

    /// The base URL.
    pub fn base(&self) -> String {
        self.base.to_string().trim_end_matches('/').to_string()
    }
}

/// The time a signed logs read carries: the clock's, but always after this
/// process's previous one. A worker answers each signed read once (a
/// captured header cannot be replayed), and ed25519 signatures are
/// deterministic, so two reads of a name in one millisecond would
/// otherwise be one read and a refused "replay".
fn signed_read_time_ms() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let next = |last: u64| now.max(last + 1);
    match LAST.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
        Some(next(last))
    }) {
        Ok(last) | Err(last) => next(last),
    }
}

fn answer<T: serde::de::DeserializeOwned>(
    status: http::StatusCode,
    body: &[u8],
) -> anyhow::Result<T> {
    if !status.is_success() {
        let message = match serde_json::from_slice::<wire::ErrorBody>(body) {
            Ok(error) => error.error,
            Err(_) => String::from_utf8_lossy(body).into_owned(),
        };
        bail!("the node refused ({status}): {message}");
    }
    serde_json::from_slice(body).map_err(|e| {
        anyhow::anyhow!(
            "the node answered something this bonus cannot read ({e}); is it another version of bonus?"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_their_wire_type_and_refusals_name_the_reason() {
        let listed: wire::Functions =
            answer(http::StatusCode::OK, br#"{"functions":[]}"#).expect("a listing");
        assert!(listed.functions.is_empty());

        let refused = answer::<wire::Functions>(
            http::StatusCode::CONFLICT,
            br#"{"error":"the name hello belongs to someone else"}"#,
        )
        .expect_err("a refusal");
        let message = format!("{refused:#}");
        assert!(
            message.contains("409") && message.contains("belongs to someone else"),
            "{message}"
        );

        let plain = answer::<wire::Functions>(http::StatusCode::BAD_GATEWAY, b"upstream down")
            .expect_err("a refusal");
        assert!(format!("{plain:#}").contains("upstream down"));

        let unexpected = answer::<wire::Functions>(http::StatusCode::OK, br#"{"fns":1}"#)
            .expect_err("not a listing");
        assert!(format!("{unexpected:#}").contains("another version"));
    }

    #[test]
    fn signed_reads_never_carry_the_same_time_twice() {
        let times: Vec<u64> = (0..1_000).map(|_| signed_read_time_ms()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis() as u64;
        // Ahead of the clock by at most the reads made in the same ms,
        // far inside the worker's 5-minute window.
        let last = times[times.len() - 1];
        assert!(last <= now + 1_000, "{last} against {now}");
    }
}
