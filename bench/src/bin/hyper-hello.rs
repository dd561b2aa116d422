//! The physical limit: a plain hyper server answering `hello`, on one
//! current-thread runtime, as `bonus serve --threads 1` runs.
//!
//! Usage: `hyper-hello [ADDR]`

use bytes::Bytes;
use http_body_util::Full;
use std::convert::Infallible;

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3100".into());
    let service = hyper::service::service_fn(|_request| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    bonus_bench::serve(&addr, service)
}
