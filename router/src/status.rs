//! The router's own endpoints, answered on any Host before name routing:
//! `GET /v1/router/health` ("ok") and `GET /v1/router/status`
//! ([`RouterStatus`] as JSON, the type clients read back).

use crate::body::{RouterBody, full, insert_request_id, text};
use crate::state::Shared;
use bonus_ids::RequestId;
use http::{Method, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// The router's own health path.
pub const HEALTH_PATH: &str = "/v1/router/health";
/// The router's status path.
pub const STATUS_PATH: &str = "/v1/router/status";

/// `GET /v1/router/status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterStatus {
    /// The router's key, `ed25519:<hex>`.
    pub router: String,
    /// The ledger height the route table was read at; `None` for a table
    /// set by hand.
    pub height: Option<u64>,
    /// Every routed name, sorted.
    pub names: Vec<String>,
    /// Every known worker.
    pub workers: Vec<WorkerStatus>,
    /// Responses received from workers since start.
    pub requests_forwarded: u64,
    /// Attempts retried on another worker after a failed connection.
    pub requests_retried: u64,
    /// Forwarded requests not yet attested on the ledger.
    pub attested_pending: u64,
}

/// One worker as the router sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerStatus {
    /// `ed25519:<hex>`.
    pub key: String,
    /// `http://host:port`.
    pub url: String,
    /// Its price per million fuel.
    pub price_per_million_fuel: u64,
    /// The last probe (or connection) succeeded.
    pub healthy: bool,
    /// Moving average of its probe round trip, µs; `None` before the first.
    pub rtt_us: Option<u64>,
    /// Requests in flight to it.
    pub outstanding: u64,
}

/// The answer, if `request` is for one of the router's own paths.
pub(crate) fn answer<B>(
    shared: &Shared,
    request: &Request<B>,
    request_id: RequestId,
) -> Option<Response<RouterBody>> {
    let path = request.uri().path();
    if path != HEALTH_PATH && path != STATUS_PATH {
        return None;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            request_id,
            &format!("{path} answers GET only"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return Some(response);
    }
    if path == HEALTH_PATH {
        return Some(text(StatusCode::OK, request_id, "ok"));
    }
    let json = serde_json::to_vec_pretty(&snapshot(shared)).unwrap_or_default();
    let mut response = Response::new(full(json));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    insert_request_id(headers, request_id);
    Some(response)
}

/// What the router knows now.
pub(crate) fn snapshot(shared: &Shared) -> RouterStatus {
    let table = shared.table();
    let workers = table
        .workers()
        .map(|worker| WorkerStatus {
            key: worker.key.to_string(),
            url: worker.base.clone(),
            price_per_million_fuel: worker.price_per_million_fuel,
            healthy: worker.health.is_healthy(),
            rtt_us: worker.health.rtt_us(),
            outstanding: worker.health.outstanding.load(Ordering::Relaxed),
        })
        .collect();
    RouterStatus {
        router: shared.key.public().to_string(),
        height: table.height,
        names: table.names().into_iter().map(str::to_string).collect(),
        workers,
        requests_forwarded: shared.forwarded.load(Ordering::Relaxed),
        requests_retried: shared.retried.load(Ordering::Relaxed),
        attested_pending: shared.pending.total(),
    }
}
