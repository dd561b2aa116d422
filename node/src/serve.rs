//! `bonus serve`: a one-worker node with no ledger, serving one function: hyper 1 on one current-thread
//! tokio runtime per worker thread, each with its own `SO_REUSEPORT`
//! listener, so the kernel spreads connections and threads share nothing
//! but the loaded component.

use crate::pipeline::Pipeline;
use anyhow::Context;
use bonus_router::{RouterLimits, ServeLimits};
use bonus_runtime::{ArtifactId, Capabilities, Function, Limits};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

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

/// What `bonus serve` tolerates from its clients: a router's defaults.
const SERVE_LIMITS: ServeLimits = ServeLimits {
    header_read_timeout: RouterLimits::DEFAULT.header_read_timeout,
    idle_timeout: RouterLimits::DEFAULT.idle_timeout,
    drain_timeout: Duration::from_secs(10),
};

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
        // One cap for the process, whichever thread accepts.
        let cap = Arc::new(Semaphore::new(RouterLimits::DEFAULT.connections_max));
        for (thread_idx, listener) in self.listeners.into_iter().enumerate() {
            let (state, cap) = (self.state.clone(), cap.clone());
            let thread = std::thread::Builder::new()
                .name(format!("bonus-http-{thread_idx}"))
                .spawn(move || serve_thread(listener, cap, state))
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

fn serve_thread(
    listener: std::net::TcpListener,
    cap: Arc<Semaphore>,
    state: Arc<State>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // The same edge as a router's: connection cap, head and idle
        // timeouts. It serves until the process is stopped.
        bonus_router::serve_http(
            listener,
            cap,
            SERVE_LIMITS,
            std::future::pending(),
            move |request| {
                let state = state.clone();
                async move { handle(&state, request).await }
            },
        )
        .await;
        Ok(())
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
