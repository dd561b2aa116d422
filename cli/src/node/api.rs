//! The node's HTTP API: JSON at the edge, artifacts streamed.
//!
//! - `GET  /v1/node`: peer id, P2P addresses, counts.
//! - `HEAD|GET /v1/artifacts/<id>`: whether the node holds it / its bytes.
//! - `PUT  /v1/artifacts/<id>`: upload, streamed, verified against `<id>`,
//!   size-limited while streaming, checked to be a servable component.
//! - `POST /v1/artifacts/<id>/fetch`: fetch it from peers.
//! - `POST /v1/manifests`: a signed manifest (binary); binds its name here,
//!   fetching its artifact from peers if needed.
//! - `GET  /v1/functions`: the functions this node knows.
//! - `/fn/<name>/<path>`: invoke the function.

use super::{Deployed, Node};
use crate::server::{log_invocation, respond};
use bonus_ids::{ArtifactId, RequestId};
use bonus_registry::{Error as RegistryError, NameBinder, SignedManifest};
use bonus_runtime::{Capabilities, InvokeParams, Limits, OutboundPolicy};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;

type Response = http::Response<Full<Bytes>>;

/// Largest signed manifest accepted.
const MANIFEST_BYTES_MAX: usize = 64 << 10;

pub async fn serve(listener: tokio::net::TcpListener, node: Arc<Node>) -> anyhow::Result<()> {
    crate::http_server::serve(listener, move |request| {
        let node = node.clone();
        async move { route(&node, request).await }
    })
    .await;
    Ok(())
}

async fn route(node: &Arc<Node>, request: http::Request<Incoming>) -> Response {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    let method = request.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["v1", "node"]) => node_info(node).await,
        (Method::GET | Method::HEAD, ["v1", "artifacts", id]) => {
            get_artifact(node, id, request.method() == Method::HEAD)
        }
        (Method::PUT, ["v1", "artifacts", id]) => put_artifact(node, id, request).await,
        (Method::POST, ["v1", "artifacts", id, "fetch"]) => fetch_artifact(node, id).await,
        (Method::POST, ["v1", "manifests"]) => post_manifest(node, request).await,
        (Method::GET, ["v1", "functions"]) => list_functions(node),
        (_, ["fn", name, ..]) => {
            let name = name.to_string();
            invoke(node, &name, request).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint; see `bonus node --help`",
        ),
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json(status, serde_json::json!({ "error": message.to_string() }))
}

fn registry_error(e: &RegistryError) -> Response {
    let status = match e {
        RegistryError::ArtifactTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        RegistryError::ArtifactUnknown { .. } | RegistryError::ManifestUnknown { .. } => {
            StatusCode::NOT_FOUND
        }
        RegistryError::NameTaken { .. } => StatusCode::CONFLICT,
        RegistryError::ManifestSignatureInvalid { .. } => StatusCode::UNAUTHORIZED,
        RegistryError::Index(_) | RegistryError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e)
}

async fn node_info(node: &Node) -> Response {
    let blobs = node.store.blobs().map(|b| b.len()).unwrap_or(0);
    let peers = node.p2p.connected_peers().await.len();
    json(
        StatusCode::OK,
        serde_json::json!({
            "peer_id": node.p2p.peer_id().to_string(),
            "p2p_addrs": node.p2p.addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "artifacts": blobs,
            "connected_peers": peers,
        }),
    )
}

fn parse_id(id: &str) -> Result<ArtifactId, Box<Response>> {
    id.parse()
        .map_err(|e: bonus_ids::InvalidArtifactId| Box::new(error(StatusCode::BAD_REQUEST, e)))
}

fn get_artifact(node: &Node, id: &str, head: bool) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match node.store.blob_info(&id) {
        Ok(Some(info)) if head => {
            let mut response = http::Response::new(Full::new(Bytes::new()));
            response
                .headers_mut()
                .insert("x-bonus-artifact-bytes", info.bytes.into());
            response
        }
        Ok(Some(_)) => match node.store.read_blob(&id) {
            Ok(bytes) => http::Response::new(Full::new(Bytes::from(bytes))),
            Err(e) => registry_error(&e),
        },
        Ok(None) => error(StatusCode::NOT_FOUND, format!("unknown artifact {id}")),
        Err(e) => registry_error(&e),
    }
}

async fn put_artifact(node: &Arc<Node>, id: &str, request: http::Request<Incoming>) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    if let Ok(Some(_)) = node.store.blob_info(&id) {
        return json(
            StatusCode::OK,
            serde_json::json!({ "artifact_id": id.to_string(), "new": false }),
        );
    }
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut writer = match node.store.writer(Some(id), declared) {
        Ok(writer) => writer,
        Err(e) => return registry_error(&e),
    };
    // Kept in memory too (bounded by the artifact limit) to check it is a
    // servable component before it is committed.
    let mut bytes = Vec::new();
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}")),
        };
        if let Some(chunk) = frame.data_ref() {
            if let Err(e) = writer.write(chunk) {
                return registry_error(&e);
            }
            bytes.extend_from_slice(chunk);
        }
    }
    let runtime = node.runtime.clone();
    let checked = tokio::task::spawn_blocking(move || runtime.load(&bytes).map(|_| ())).await;
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
    let bytes = writer.bytes();
    match writer.commit() {
        Ok(id) => {
            node.p2p.provide(id).await;
            json(
                StatusCode::CREATED,
                serde_json::json!({ "artifact_id": id.to_string(), "bytes": bytes, "new": true }),
            )
        }
        Err(e) => registry_error(&e),
    }
}

async fn fetch_artifact(node: &Arc<Node>, id: &str) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match node.p2p.fetch(id, &node.store).await {
        Ok(report) => json(
            StatusCode::OK,
            serde_json::json!({
                "artifact_id": id.to_string(),
                "bytes": report.bytes,
                "segments_by_peer": report.segments_by_peer.iter()
                    .map(|(peer, n)| (peer.to_string(), serde_json::json!(n)))
                    .collect::<serde_json::Map<_, _>>(),
                "segments_retried": report.segments_retried,
            }),
        ),
        Err(bonus_registry::p2p::FetchError::NoSource { .. }) => {
            error(StatusCode::NOT_FOUND, format!("no peer holds {id}"))
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

async fn post_manifest(node: &Arc<Node>, request: http::Request<Incoming>) -> Response {
    let body = match http_body_util::Limited::new(request.into_body(), MANIFEST_BYTES_MAX)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("manifest: {e}")),
    };
    let signed = match SignedManifest::decode(&body) {
        Ok(signed) => signed,
        Err(e) => return registry_error(&e),
    };
    let artifact_id = signed.manifest().artifact_id;
    if let Ok(None) = node.store.blob_info(&artifact_id)
        && let Err(e) = node.p2p.fetch(artifact_id, &node.store).await
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "artifact {artifact_id} is not on this node and could not be fetched ({e}); upload it first"
            ),
        );
    }
    let stored = node
        .store
        .put_manifest(&signed)
        .and_then(|_| node.store.bind(&signed));
    if let Err(e) = stored {
        return registry_error(&e);
    }
    node.deployed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&signed.manifest().name);
    let manifest = signed.manifest();
    json(
        StatusCode::CREATED,
        serde_json::json!({
            "manifest_id": signed.id().to_string(),
            "name": manifest.name,
            "version": manifest.version,
            "artifact_id": artifact_id.to_string(),
            "path": format!("/fn/{}/", manifest.name),
        }),
    )
}

fn list_functions(node: &Node) -> Response {
    let manifests = match node.store.manifests() {
        Ok(manifests) => manifests,
        Err(e) => return registry_error(&e),
    };
    let functions: Vec<serde_json::Value> = manifests
        .iter()
        .map(|signed| {
            let m = signed.manifest();
            let current = node.store.resolve(&m.name).ok().flatten() == Some(signed.id());
            serde_json::json!({
                "name": m.name,
                "version": m.version,
                "manifest_id": signed.id().to_string(),
                "artifact_id": m.artifact_id.to_string(),
                "artifact_bytes": m.artifact_bytes,
                "price_per_million_fuel_max": m.budget.price_per_million_fuel_max,
                "spend_per_period_max": m.budget.spend_per_period_max,
                "owner": m.owner.to_string(),
                "current": current,
            })
        })
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({ "functions": functions }),
    )
}

async fn invoke(node: &Arc<Node>, name: &str, request: http::Request<Incoming>) -> Response {
    let deployed = match deployed(node, name).await {
        Ok(deployed) => deployed,
        Err(response) => return *response,
    };
    let limits = deployed.limits;
    let request_id = next_request_id();
    let params = InvokeParams {
        request_id: RequestId::from_u128(request_id),
        random_seed: *blake3::keyed_hash(&node.seed_key, &request_id.to_le_bytes()).as_bytes(),
        limits,
        caps: deployed.caps.clone(),
    };
    let (mut parts, body) = request.into_parts();
    let rest = parts
        .uri
        .path()
        .splitn(4, '/')
        .nth(3)
        .unwrap_or("")
        .to_string();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = format!("/{rest}{query}")
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    let invocation = deployed
        .function
        .invoke(http::Request::from_parts(parts, body), &params)
        .await;
    log_invocation(&invocation, &limits);
    let mut response = respond(invocation, &limits);
    // Which version answered: useful during gradual rollouts.
    if let Ok(value) = http::HeaderValue::from_str(&deployed.manifest_id.to_hex()) {
        response.headers_mut().insert("x-bonus-manifest-id", value);
    }
    response
}

/// The loaded function behind a name: from the node's cache, or resolved,
/// fetched from peers if needed, loaded and cached. Rebinding a name
/// (`POST /v1/manifests`) evicts it.
async fn deployed(node: &Arc<Node>, name: &str) -> Result<Arc<Deployed>, Box<Response>> {
    if let Some(hit) = node
        .deployed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
    {
        return Ok(hit.clone());
    }
    let signed = match node.store.resolve(name).and_then(|id| match id {
        Some(id) => node.store.manifest(&id),
        None => Ok(None),
    }) {
        Ok(Some(signed)) => signed,
        Ok(None) => {
            let message = format!("no function named {name:?} on this node");
            return Err(Box::new(error(StatusCode::NOT_FOUND, message)));
        }
        Err(e) => return Err(Box::new(registry_error(&e))),
    };
    let manifest = signed.manifest().clone();
    if let Err(e) = node.p2p.fetch(manifest.artifact_id, &node.store).await {
        return Err(Box::new(error(StatusCode::BAD_GATEWAY, e)));
    }
    let (runtime, store, artifact_id) = (
        node.runtime.clone(),
        node.store.clone(),
        manifest.artifact_id,
    );
    let loaded = tokio::task::spawn_blocking(move || {
        let bytes = store.read_blob(&artifact_id).map_err(|e| e.to_string())?;
        runtime.load(&bytes).map_err(|e| e.to_string())
    })
    .await;
    let function = match loaded {
        Ok(Ok(function)) => function,
        Ok(Err(e)) => return Err(Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e))),
        Err(e) => return Err(Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e))),
    };
    let limits = Limits {
        fuel_max: manifest.limits.fuel_max,
        memory_bytes_max: manifest.limits.memory_bytes_max,
        deadline: Duration::from_millis(u64::from(manifest.limits.deadline_ms)),
        ..Limits::DEFAULT
    }
    .capped_by(&Limits::DEFAULT);
    // Patterns were checked when the manifest was signed by `bonus deploy`;
    // a manifest built elsewhere with a bad pattern gets no outbound access.
    let outbound =
        OutboundPolicy::from_patterns(&manifest.allowed_outbound_hosts).unwrap_or_default();
    let deployed = Arc::new(Deployed {
        manifest_id: signed.id(),
        function,
        limits,
        caps: Arc::new(Capabilities {
            env: manifest.env.clone(),
            outbound: Arc::new(outbound),
        }),
    });
    let mut cache = node.deployed.lock().unwrap_or_else(|e| e.into_inner());
    cache.insert(name.to_string(), deployed.clone());
    Ok(deployed)
}

fn next_request_id() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    u128::from(prefix) << 64 | u128::from(NEXT.fetch_add(1, Ordering::Relaxed))
}
