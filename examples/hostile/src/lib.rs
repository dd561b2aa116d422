//! Misbehaving on purpose, to test that the host contains each case:
//!
//! - `/loop`: spins forever (deadline or fuel).
//! - `/alloc`: allocates until memory runs out (memory limit).
//! - `/recurse`: recurses without bound (stack overflow).
//! - `/trap`: panics.
//! - `/huge?mb=N`: answers an N MiB body (response size limit).
//! - `/spam?kb=N`: writes N KiB to stderr (log bound).
//! - `/sleep?ms=N`: blocks in a host call (deadline while not in wasm).
//! - `/remember?secret=S`: leaves traces of the request in a global and on
//!   the heap, then answers what earlier requests left there (an isolated
//!   host always gives a fresh instance: `0 ` and nothing).
//! - `/bad-header`: answers with a header the host must refuse (a newline
//!   in its name) between two good ones.
//! - anything else: `ok`.

use bonus_sdk::{Request, Response};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests this instance has seen (a global).
static SEEN: AtomicU64 = AtomicU64::new(0);
/// Secrets this instance has been told (on the heap).
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn handle(request: Request) -> Response {
    let number = |name: &str, default: u64| {
        request
            .query_param(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    match request.path() {
        "/loop" => {
            let mut counter = 0u64;
            loop {
                counter = black_box(counter.wrapping_add(1));
            }
        }
        "/alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        "/recurse" => Response::text(200, format!("{}", recurse(black_box(u64::MAX)))),
        "/trap" => panic!("hostile guest panicked on purpose"),
        "/huge" => Response::new(200, vec![b'x'; (number("mb", 64) as usize) << 20]),
        "/spam" => {
            let line = "spam ".repeat(200) + "\n";
            for _ in 0..number("kb", 1024) {
                eprint!("{line}");
            }
            Response::text(200, "spammed")
        }
        "/sleep" => {
            let pollable =
                bonus_sdk::__private::wasip2::clocks::monotonic_clock::subscribe_duration(
                    number("ms", 60_000) * 1_000_000,
                );
            pollable.block();
            Response::text(200, "slept")
        }
        "/remember" => {
            let before = SEEN.fetch_add(1, Ordering::SeqCst);
            let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
            let earlier = secrets.join(",");
            secrets.push(request.query_param("secret").unwrap_or_default().to_string());
            Response::text(200, format!("{before} {earlier}"))
        }
        "/bad-header" => Response::text(200, "ok")
            .with_header("x-before", "1")
            .with_header("x-bad\nheader", "2")
            .with_header("x-after", "3"),
        _ => Response::text(200, "ok"),
    }
}

fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    black_box(recurse(black_box(depth - 1))).wrapping_add(1)
}

bonus_sdk::http_component!(handle);
