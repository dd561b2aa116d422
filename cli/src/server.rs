//! A local HTTP server for one function: hyper 1 on one current-thread
//! tokio runtime per worker thread, each with its own `SO_REUSEPORT`
//! listener, so the kernel spreads connections and threads share nothing
//! but the loaded component.

use anyhow::Context;
use bonus_runtime::{
    ArtifactId, Capabilities, Function, Invocation, InvokeParams, Limits, Outcome, RequestId,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What to serve and how.
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub threads: usize,
    pub function: Function,
    pub limits: Limits,
    pub caps: Arc<Capabilities>,
}

/// Listeners bound, not yet serving.
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    function: Function,
    limits: Limits,
    caps: Arc<Capabilities>,
    /// Keys request seeds: unpredictable to clients, reproducible here.
    node_secret: [u8; 32],
    /// High half of every request id: distinct per process.
    request_prefix: u64,
    requests: AtomicU64,
}

const LISTEN_BACKLOG: i32 = 1024;

/// Most bytes of one invocation's stdout or stderr echoed to the log.
const LOGGED_BYTES_MAX: usize = 2048;

impl Server {
    pub fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        let mut listeners = Vec::with_capacity(config.threads);
        let first = reuseport_listener(config.addr).with_context(|| {
            format!(
                "cannot listen on {}; is another server using it? pick another with --addr",
                config.addr
            )
        })?;
        let local_addr = first.local_addr().context("reading the bound address")?;
        listeners.push(first);
        for _ in 1..config.threads {
            listeners.push(reuseport_listener(local_addr).context("binding a worker listener")?);
        }
        let mut random = [0u8; 40];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let mut node_secret = [0u8; 32];
        node_secret.copy_from_slice(&random[..32]);
        let request_prefix = u64::from_le_bytes(random[32..].try_into().expect("8 bytes"));
        Ok(Server {
            listeners,
            local_addr,
            state: Arc::new(State {
                function: config.function,
                limits: config.limits,
                caps: config.caps,
                node_secret,
                request_prefix,
                requests: AtomicU64::new(0),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn artifact_id(&self) -> ArtifactId {
        self.state.function.artifact_id()
    }

    /// Serves until the process is stopped.
    pub fn run(self) -> anyhow::Result<()> {
        let mut threads = Vec::new();
        for (thread_idx, listener) in self.listeners.into_iter().enumerate() {
            let state = self.state.clone();
            let thread = std::thread::Builder::new()
                .name(format!("bonus-http-{thread_idx}"))
                .spawn(move || serve_thread(listener, state))
                .context("spawning a worker thread")?;
            threads.push(thread);
        }
        for thread in threads {
            match thread.join() {
                Ok(result) => result?,
                Err(_) => anyhow::bail!("a worker thread panicked; see the log above"),
            }
        }
        Ok(())
    }
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

fn serve_thread(listener: std::net::TcpListener, state: Arc<State>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or similar: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, request).await) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
    })
}

async fn handle(
    state: &State,
    mut request: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    let counter = state.requests.fetch_add(1, Ordering::Relaxed);
    let request_id =
        RequestId::from_u128(u128::from(state.request_prefix) << 64 | u128::from(counter));
    if !request.headers().contains_key(http::header::HOST) {
        // wasi:http needs an authority; HTTP/1.0 clients may omit it.
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost"),
        );
    }
    let params = InvokeParams {
        request_id,
        random_seed: *blake3::keyed_hash(&state.node_secret, &request_id.as_u128().to_le_bytes())
            .as_bytes(),
        limits: state.limits,
        caps: state.caps.clone(),
    };
    let invocation = state.function.invoke(request, &params).await;
    log_invocation(&invocation, &state.limits);
    respond(invocation, &state.limits)
}

pub fn respond(invocation: Invocation, limits: &Limits) -> http::Response<Full<Bytes>> {
    let mut response = match invocation.response {
        Some(response) => response.map(Full::new),
        None => {
            let reason = invocation.outcome.reason(limits) + "\n";
            let mut response = http::Response::new(Full::new(Bytes::from(reason)));
            *response.status_mut() = invocation.outcome.status();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response.headers_mut().insert(
                "x-bonus-outcome",
                http::HeaderValue::from_static(invocation.outcome.kind()),
            );
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert("x-bonus-fuel", invocation.usage.fuel.into());
    if let Ok(id) = http::HeaderValue::from_str(&invocation.request_id.to_string()) {
        headers.insert("x-bonus-request-id", id);
    }
    response
}

pub fn log_invocation(invocation: &Invocation, limits: &Limits) {
    let request_id = invocation.request_id;
    for (stream, captured) in [
        ("stdout", &invocation.logs.stdout),
        ("stderr", &invocation.logs.stderr),
    ] {
        if captured.bytes.is_empty() {
            continue;
        }
        let shown = &captured.bytes[..captured.bytes.len().min(LOGGED_BYTES_MAX)];
        let hidden = (captured.bytes.len() - shown.len()) as u64 + captured.bytes_dropped;
        let text = String::from_utf8_lossy(shown);
        tracing::info!(%request_id, bytes_not_shown = hidden, "guest {stream}: {}", text.trim_end());
    }
    match &invocation.outcome {
        Outcome::Ok => tracing::debug!(
            %request_id,
            fuel = invocation.usage.fuel,
            wall_us = invocation.usage.wall.as_micros() as u64,
            "ok"
        ),
        outcome => tracing::warn!(
            %request_id,
            outcome = outcome.kind(),
            fuel = invocation.usage.fuel,
            "{}",
            outcome.reason(limits)
        ),
    }
}
