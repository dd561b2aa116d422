//! CPU-heavy: `GET /?n=30` computes fib(n) by naive recursion.

use bonus_sdk::{Request, Response};
use std::hint::black_box;

fn fib(n: u32) -> u64 {
    if n < 2 {
        return n as u64;
    }
    black_box(fib(n - 1)).wrapping_add(fib(n - 2))
}

fn handle(request: Request) -> Response {
    let n = match request.query_param("n").map(|n| n.parse::<u32>()) {
        None => 20,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Response::text(400, "n must be a non-negative integer"),
    };
    Response::text(200, format!("fib({n}) = {}", fib(n)))
}

bonus_sdk::http_component!(handle);
