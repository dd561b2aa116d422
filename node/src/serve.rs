//! `bonus serve`: a one-worker node with no ledger, serving one function: hyper 1 on one current-thread
//! tokio runtime per worker thread, each with its own `SO_REUSEPORT`
//! listener, so the kernel spreads connections and threads share nothing
//! but the loaded component.

use crate::pipeline::Pipeline;
use anyhow::Context;
use bonus_runtime::{ArtifactId, Capabilities, Function, Limits};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
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
    pipeline: Pipeline,
}

/// A request's header must arrive within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    pub fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        let listeners = crate::http::reuseport_listeners(config.addr, config.threads.max(1))
            .with_context(|| {
                format!(
                    "cannot listen on {}; is another server using it? pick another with --addr",
                    config.addr
                )
            })?;
        let local_addr = listeners[0]
            .local_addr()
            .context("reading the bound address")?;
        let mut node_secret = [0u8; 32];
        getrandom::fill(&mut node_secret).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        Ok(Server {
            listeners,
            local_addr,
            state: Arc::new(State {
                function: config.function,
                limits: config.limits,
                caps: config.caps,
                pipeline: Pipeline::new(&node_secret),
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
                // Without a timer hyper's header timeout is silently off,
                // and a client sending half a header holds a task forever.
                if let Err(e) = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
    })
}

async fn handle(state: &State, request: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    let request_id = state.pipeline.next_id();
    let (_, response) = state
        .pipeline
        .run(
            &state.function,
            request_id,
            request,
            state.limits,
            state.caps.clone(),
        )
        .await;
    response
}
