//! Benchmarks for Bonus, run on demand with the scripts beside this crate.
//! Each reports ratios against an anchor measured in the same run.

pub mod plain;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::TokioIo;

/// Serves HTTP/1 on `addr` from one current-thread runtime with
/// TCP_NODELAY, as `bonus serve --threads 1` does: the way every anchor
/// server here runs, so they differ only in what `service` does. Never
/// returns unless binding or accepting fails.
pub fn serve<S, B>(addr: &str, service: S) -> anyhow::Result<()>
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let service = service.clone();
            tokio::task::spawn_local(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
