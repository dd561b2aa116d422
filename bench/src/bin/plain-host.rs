//! Serves one component with [`bonus_bench::plain::PlainHost`]: the anchor
//! `bench/runtime.py` measures `bonus serve` against. One current-thread
//! runtime, TCP_NODELAY, as `bonus serve --threads 1`.
//!
//! Usage: `plain-host COMPONENT.wasm [ADDR] [--no-fuel]`

use bonus_bench::plain::PlainHost;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fuel = !args.iter().any(|a| a == "--no-fuel");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let wasm = positional
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: plain-host COMPONENT.wasm [ADDR] [--no-fuel]"))?;
    let addr = positional
        .get(1)
        .map_or("127.0.0.1:3200", |a| a.as_str())
        .to_string();
    let host = PlainHost::new(&std::fs::read(wasm)?, fuel).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let host = host.clone();
            async move {
                let request = request.map(|body| {
                    http_body_util::BodyExt::map_err(body, |e: hyper::Error| {
                        wasmtime_wasi_http::p2::hyper_request_error(e)
                    })
                });
                host.handle(request).await
            }
        });
    bonus_bench::serve(&addr, service)
}
