//! The least a reverse proxy does, the anchor for the router's hop: every
//! request goes to `UPSTREAM` (same method, path, headers and body) over a
//! pooled keep-alive hyper client, the response streamed back. One
//! current-thread runtime, TCP_NODELAY both ways, no limits, no routing.
//!
//! Usage: `hyper-proxy ADDR UPSTREAM` (UPSTREAM like `http://127.0.0.1:3000/prefix`)

use http::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, upstream] = args.as_slice() else {
        anyhow::bail!("usage: hyper-proxy ADDR UPSTREAM");
    };
    let upstream = upstream.trim_end_matches('/').to_string();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = format!("{upstream}{path}").parse::<Uri>()?;
            parts.headers.remove(http::header::HOST);
            let response = client
                .request(http::Request::from_parts(parts, body))
                .await?;
            anyhow::Ok(response)
        }
    });
    bonus_bench::serve(addr, service)
}
