//! `bonus serve`: a one-worker node with no ledger, serving one function: hyper 1 on one current-thread
//! tokio runtime per worker thread, each with its own `SO_REUSEPORT`
//! listener, so the kernel spreads connections and threads share nothing
//! but the loaded component. SIGINT or SIGTERM stops it gracefully.

use crate::pipeline::Pipeline;
use crate::signals::StopSignals;
use anyhow::Context;
use bonus_router::{RouterLimits, ServeLimits};
use bonus_runtime::{ArtifactId, Capabilities, Function, Limits};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// What to serve.
pub struct ServerConfig {
    pub function: Function,
    pub limits: Limits,
    pub caps: Arc<Capabilities>,
}

/// Listeners bound before the component is loaded: a taken port fails at
/// once, not after a compile that can take seconds, and a request sent
/// during that compile waits in the backlog for its answer instead of
/// being refused.
pub struct Listening {
    listeners: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
}

impl Listening {
    /// `threads` `SO_REUSEPORT` listeners on `addr`.
    pub fn bind(addr: SocketAddr, threads: usize) -> anyhow::Result<Listening> {
        let listeners =
            crate::http::reuseport_listeners(addr, threads.max(1)).with_context(|| {
                format!(
                    "cannot listen on {addr}; is another server using it? pick another with --addr"
                )
            })?;
        let local_addr = listeners[0]
            .local_addr()
            .context("reading the bound address")?;
        Ok(Listening {
            listeners,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Ready to serve `config`; stop signals are caught from here on.
    pub fn serve(self, config: ServerConfig) -> anyhow::Result<Server> {
        let signals = Signals::catch()?;
        let mut node_secret = [0u8; 32];
        getrandom::fill(&mut node_secret).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        Ok(Server {
            listeners: self.listeners,
            local_addr: self.local_addr,
            state: Arc::new(State {
                function: config.function,
                limits: config.limits,
                caps: config.caps,
                pipeline: Pipeline::new(&node_secret),
            }),
            signals,
        })
    }
}

/// Listeners bound and a component loaded, not yet serving.
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
    state: Arc<State>,
    signals: Signals,
}

/// SIGINT and SIGTERM, caught from [`Listening::serve`] on: a signal that
/// arrives once the address is printed stops the server gracefully
/// instead of killing it mid-request.
struct Signals {
    runtime: tokio::runtime::Runtime,
    caught: StopSignals,
}

impl Signals {
    fn catch() -> anyhow::Result<Signals> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the signal runtime")?;
        let caught = runtime
            .block_on(async { StopSignals::catch() })
            .context("catching SIGINT and SIGTERM")?;
        Ok(Signals { runtime, caught })
    }

    /// On a thread of its own: the first signal sets `stop`, a second one
    /// exits at once.
    fn forward(self, stop: watch::Sender<bool>) -> anyhow::Result<()> {
        let Signals { runtime, caught } = self;
        std::thread::Builder::new()
            .name("bonus-signals".into())
            .spawn(move || {
                runtime.block_on(caught.stop_then_exit_on_second(|| {
                    tracing::info!(
                        drain_timeout = ?SERVE_LIMITS.drain_timeout,
                        "stopping: no new connections, in-flight requests finish; signal again to exit at once"
                    );
                    let _ = stop.send(true);
                }))
            })
            .context("spawning the signal thread")?;
        Ok(())
    }
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
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn artifact_id(&self) -> ArtifactId {
        self.state.function.artifact_id()
    }

    /// Serves until SIGINT or SIGTERM, then closes the listeners, lets
    /// in-flight requests finish (up to the drain timeout, 10 s) and
    /// returns. A second signal exits at once.
    pub fn run(self) -> anyhow::Result<()> {
        let (stop_tx, stop) = watch::channel(false);
        self.signals.forward(stop_tx)?;
        let mut threads = Vec::new();
        // One cap for the process, whichever thread accepts.
        let cap = Arc::new(Semaphore::new(RouterLimits::DEFAULT.connections_max));
        for (thread_idx, listener) in self.listeners.into_iter().enumerate() {
            let (state, cap, stop) = (self.state.clone(), cap.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("bonus-http-{thread_idx}"))
                .spawn(move || serve_thread(listener, cap, stop, state))
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
    stop: crate::http::Stop,
    state: Arc<State>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // The same edge as a router's: connection cap, head and idle
        // timeouts, drain on stop.
        bonus_router::serve_http(
            listener,
            cap,
            SERVE_LIMITS,
            crate::http::stopped(stop),
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
