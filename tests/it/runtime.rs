//! The runtime crate against real guest components, in process.

use bonus_runtime::{
    Capabilities, Compiler, Error, Function, InvokeParams, Limits, Outcome, RequestId, Runtime,
    RuntimeConfig, Tier,
};
use bonus_tests::guest;
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;

fn runtime(cache_dir: Option<&std::path::Path>) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: cache_dir.map(ToOwned::to_owned),
        instances_max: 50,
        fuel: true,
        compiler: Compiler::Cranelift,
        compile_child: None,
    })
    .expect("runtime builds")
}

/// Tiered: a component not in the cache starts on Winch's code.
fn tiered_runtime(cache_dir: Option<&std::path::Path>) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: cache_dir.map(ToOwned::to_owned),
        instances_max: 50,
        fuel: true,
        compiler: Compiler::Tiered,
        compile_child: None,
    })
    .expect("runtime builds")
}

/// Winch's code only: the baseline tier, which tiered nodes start on.
fn winch_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: None,
        instances_max: 50,
        fuel: true,
        compiler: Compiler::Winch,
        compile_child: None,
    })
    .expect("runtime builds")
}

/// One instance slot: a second concurrent invocation answers busy.
fn single_slot_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: None,
        instances_max: 1,
        fuel: true,
        compiler: Compiler::Cranelift,
        compile_child: None,
    })
    .expect("runtime builds")
}

fn load(runtime: &Runtime, name: &str) -> Function {
    let wasm = std::fs::read(guest(name)).expect("guest built");
    runtime.load(&wasm).expect("guest loads")
}

fn params(request_id: u128, limits: Limits) -> InvokeParams {
    InvokeParams {
        request_id: RequestId::from_u128(request_id),
        random_seed: [request_id as u8; 32],
        limits,
        caps: Arc::new(Capabilities::default()),
    }
}

fn request(method: &str, path: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid request")
}

#[tokio::test]
async fn hello_answers_200_with_usage() {
    let function = load(&runtime(None), "hello");
    let invocation = function
        .invoke(request("GET", "/", ""), &params(1, Limits::DEFAULT))
        .await;
    assert_eq!(invocation.outcome, Outcome::Ok);
    let response = invocation.response.expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(&response.body()[..], b"hello");
    assert!(invocation.usage.fuel > 0, "fuel is counted");
    assert!(invocation.usage.memory_bytes_peak > 0, "memory is measured");
}

/// The SDK reads a request's parts only when the handler asks for them: a
/// handler that never looks at the body answers a 1 MiB POST for exactly
/// the fuel of a bodiless GET, while one that parses it pays for it.
#[tokio::test]
async fn a_body_the_handler_never_reads_costs_it_nothing() {
    let runtime = runtime(None);
    let fuel = |function: Function, method: &'static str, path: &'static str, body: String| async move {
        let invocation = function
            .invoke(request(method, path, &body), &params(3, Limits::DEFAULT))
            .await;
        assert_eq!(invocation.outcome, Outcome::Ok, "{method} {path}");
        invocation.usage.fuel
    };
    let big = "x".repeat(1 << 20);
    let hello = load(&runtime, "hello");
    let get = fuel(hello.clone(), "GET", "/", String::new()).await;
    let post = fuel(hello, "POST", "/", big.clone()).await;
    assert_eq!(get, post, "hello never reads its body");

    let api = load(&runtime, "api");
    let small = fuel(api.clone(), "POST", "/echo", r#"{"a":1}"#.into()).await;
    let large = fuel(api, "POST", "/echo", format!(r#"{{"a":"{big}"}}"#)).await;
    assert!(
        large > small + (1 << 20),
        "parsing a 1 MiB body costs fuel: {small} vs {large}"
    );
}

#[tokio::test]
async fn fuel_is_identical_across_runs_and_seeds() {
    let function = load(&runtime(None), "api");
    let mut fuels = Vec::new();
    for run in 0..20 {
        let invocation = function
            .invoke(
                request("POST", "/echo", r#"{"a":[1,2,3],"b":"x"}"#),
                &params(run, Limits::DEFAULT),
            )
            .await;
        assert_eq!(invocation.outcome, Outcome::Ok);
        fuels.push(invocation.usage.fuel);
    }
    assert!(fuels[0] > 0);
    assert!(
        fuels.iter().all(|&fuel| fuel == fuels[0]),
        "fuel varies: {fuels:?}"
    );
}

#[tokio::test]
async fn fuel_grows_with_work() {
    let function = load(&runtime(None), "fib");
    let fuel_for = |n: u32| {
        let function = function.clone();
        async move {
            let path = format!("/?n={n}");
            let invocation = function
                .invoke(request("GET", &path, ""), &params(7, Limits::DEFAULT))
                .await;
            assert_eq!(invocation.outcome, Outcome::Ok);
            invocation.usage.fuel
        }
    };
    let small = fuel_for(10).await;
    let large = fuel_for(20).await;
    // fib(20) makes ~120x the calls of fib(10).
    assert!(
        large > small * 50,
        "fuel {small} for n=10, {large} for n=20"
    );
}

#[tokio::test]
async fn captured_logs_are_bounded() {
    let function = load(&runtime(None), "hostile");
    let limits = Limits {
        log_bytes_max: 1000,
        ..Limits::DEFAULT
    };
    let invocation = function
        .invoke(request("GET", "/spam?kb=10", ""), &params(3, limits))
        .await;
    assert_eq!(invocation.outcome, Outcome::Ok);
    let stderr = &invocation.logs.stderr;
    assert_eq!(stderr.bytes.len(), 1000);
    assert!(stderr.bytes.starts_with(b"spam spam"));
    assert!(
        stderr.bytes_dropped > 9000,
        "dropped {}",
        stderr.bytes_dropped
    );
}

#[tokio::test]
async fn limits_end_hostile_invocations_with_the_matching_outcome() {
    hostile_invocations_end_with_the_matching_outcome(load(&runtime(None), "hostile")).await;
}

/// The same limits hold on Winch's code (no epochs: fuel yields and the
/// host's deadline timer end a guest in a loop).
#[tokio::test]
async fn limits_hold_on_the_baseline_tier() {
    let function = load(&winch_runtime(), "hostile");
    assert_eq!(function.tier(), Tier::Baseline);
    hostile_invocations_end_with_the_matching_outcome(function.clone()).await;
    assert_eq!(function.tier(), Tier::Baseline, "never optimized");
}

async fn hostile_invocations_end_with_the_matching_outcome(function: Function) {
    let limits = Limits {
        fuel_max: 200_000_000,
        deadline: std::time::Duration::from_millis(500),
        memory_bytes_max: 16 << 20,
        response_body_bytes_max: 1 << 20,
        request_body_bytes_max: 1024,
        ..Limits::DEFAULT
    };
    type Expect = fn(&Outcome) -> bool;
    let cases: [(&str, Expect); 6] = [
        ("/loop", |o| *o == Outcome::FuelExhausted),
        ("/alloc", |o| *o == Outcome::MemoryLimit),
        ("/recurse", |o| *o == Outcome::StackOverflow),
        (
            "/trap",
            |o| matches!(o, Outcome::Trap { message } if message.contains("unreachable")),
        ),
        ("/huge?mb=4", |o| *o == Outcome::ResponseTooLarge),
        ("/sleep?ms=60000", |o| *o == Outcome::Deadline),
    ];
    for (idx, (path, expected)) in cases.into_iter().enumerate() {
        let invocation = function
            .invoke(request("GET", path, ""), &params(idx as u128, limits))
            .await;
        assert!(
            expected(&invocation.outcome),
            "{path}: {:?}",
            invocation.outcome
        );
        assert!(invocation.response.is_none());
    }
    let oversized = "x".repeat(2048);
    let invocation = function
        .invoke(request("POST", "/ok", &oversized), &params(8, limits))
        .await;
    assert_eq!(invocation.outcome, Outcome::RequestTooLarge);
    assert_eq!(invocation.usage.fuel, 0, "the guest never ran");
    // A deadline without fuel exhaustion: the loop is interrupted by epochs.
    let no_fuel_limit = Limits {
        fuel_max: u64::MAX,
        ..limits
    };
    let invocation = function
        .invoke(request("GET", "/loop", ""), &params(9, no_fuel_limit))
        .await;
    assert_eq!(invocation.outcome, Outcome::Deadline);
    // And the same function still serves.
    let invocation = function
        .invoke(request("GET", "/ok", ""), &params(10, limits))
        .await;
    assert_eq!(invocation.outcome, Outcome::Ok);
}

/// A response header the host refuses is dropped and logged; the response
/// and its other headers still go out (the SDK sends all headers in one
/// host call, and header by header only when that call is refused).
#[tokio::test]
async fn a_refused_response_header_is_dropped_and_logged_not_fatal() {
    let function = load(&runtime(None), "hostile");
    let invocation = function
        .invoke(
            request("GET", "/bad-header", ""),
            &params(1, Limits::DEFAULT),
        )
        .await;
    assert_eq!(invocation.outcome, Outcome::Ok);
    let response = invocation.response.expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(&response.body()[..], b"ok");
    assert_eq!(response.headers()["x-before"], "1");
    assert_eq!(response.headers()["x-after"], "3");
    assert_eq!(response.headers().len(), 3, "{:?}", response.headers());
    let stderr = String::from_utf8_lossy(&invocation.logs.stderr.bytes);
    assert!(
        stderr.contains("dropping response header \"x-bad\\nheader\""),
        "{stderr}"
    );
}

#[test]
fn load_rejects_what_is_not_an_http_component() {
    let runtime = runtime(None);
    let check = |bytes: &[u8], expect: &str| {
        let error = match runtime.load(bytes) {
            Ok(_) => panic!("loaded {bytes:?}"),
            Err(e) => e,
        };
        let message = error.to_string();
        assert!(message.contains(expect), "{message:?} lacks {expect:?}");
        error
    };
    assert!(matches!(
        check(b"hello world", "not a WebAssembly binary"),
        Error::NotWasm { .. }
    ));
    // A valid, empty core module.
    let core = b"\0asm\x01\0\0\0";
    assert!(matches!(
        check(core, "core WebAssembly module, not a component"),
        Error::CoreModuleNotComponent
    ));
    // A valid, empty component: it exports nothing.
    let empty = b"\0asm\x0d\0\x01\0";
    assert!(matches!(
        check(empty, "wasi:http/incoming-handler"),
        Error::NotHttpComponent { .. }
    ));
    // A component header followed by garbage.
    let garbage = b"\0asm\x0d\0\x01\0\xff\xff\xff";
    assert!(matches!(
        check(garbage, "invalid component"),
        Error::InvalidComponent { .. }
    ));
}

#[test]
fn compiled_code_cache_hits_and_rebuilds_corrupt_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wasm = std::fs::read(guest("hello")).expect("guest built");

    let first = runtime(Some(dir.path()));
    first.load(&wasm).expect("loads");
    assert_eq!((first.stats().compiles, first.stats().cache_hits), (1, 0));

    let second = runtime(Some(dir.path()));
    second.load(&wasm).expect("loads");
    assert_eq!((second.stats().compiles, second.stats().cache_hits), (0, 1));

    // Flip one byte in the middle of the entry: detected, rebuilt, never loaded.
    let artifact_id = bonus_runtime::ArtifactId::of(&wasm);
    let entry = second.cache_path(&artifact_id).expect("cache configured");
    let mut bytes = std::fs::read(&entry).expect("entry exists");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).expect("corrupting");
    let third = runtime(Some(dir.path()));
    let function = third.load(&wasm).expect("loads despite the corrupt entry");
    let stats = third.stats();
    assert_eq!(
        (stats.compiles, stats.cache_hits, stats.cache_rejected),
        (1, 0, 1)
    );

    // Truncated entries are caught the same way.
    std::fs::write(&entry, &bytes[..100]).expect("truncating");
    let fourth = runtime(Some(dir.path()));
    fourth.load(&wasm).expect("loads");
    assert_eq!(fourth.stats().cache_rejected, 1);

    // The rebuilt entry is valid again.
    let fifth = runtime(Some(dir.path()));
    fifth.load(&wasm).expect("loads");
    assert_eq!((fifth.stats().compiles, fifth.stats().cache_hits), (0, 1));
    drop(function);
}

#[test]
fn a_loaded_component_is_reused_in_memory() {
    let runtime = runtime(None);
    let wasm = std::fs::read(guest("hello")).expect("guest built");
    let kept = runtime.load(&wasm).expect("loads");
    runtime.load(&wasm).expect("loads");
    runtime.load(&wasm).expect("loads");
    assert_eq!(runtime.stats().compiles, 1);
    drop(kept);
}

/// When every instance slot is taken the node answers busy (503) at once
/// instead of queueing or failing obscurely.
#[tokio::test]
async fn a_full_instance_pool_answers_busy() {
    let runtime = single_slot_runtime();
    let function = load(&runtime, "hostile");
    let sleeper_params = params(1, Limits::DEFAULT);
    let sleeper = function.invoke(request("GET", "/sleep?ms=1000", ""), &sleeper_params);
    let other = async {
        // Let the sleeper take the only slot first.
        tokio::task::yield_now().await;
        function
            .invoke(request("GET", "/ok", ""), &params(2, Limits::DEFAULT))
            .await
    };
    let (slept, refused) = tokio::join!(sleeper, other);
    assert_eq!(slept.outcome, Outcome::Ok);
    assert_eq!(refused.outcome, Outcome::Busy, "{:?}", refused.outcome);
    assert_eq!(refused.outcome.status(), 503);
    // With the slot free again, requests run.
    let after = function
        .invoke(request("GET", "/ok", ""), &params(3, Limits::DEFAULT))
        .await;
    assert_eq!(after.outcome, Outcome::Ok);
}

/// A caller that goes away (a client that disconnects) ends its guest, which
/// runs on a task of its own: the only instance slot is free again long
/// before the guest's 60 s deadline.
#[tokio::test]
async fn dropping_an_invocation_ends_its_guest() {
    let runtime = single_slot_runtime();
    let function = load(&runtime, "hostile");
    let long = params(
        1,
        Limits {
            deadline: std::time::Duration::from_secs(60),
            ..Limits::DEFAULT
        },
    );
    let sleeper = function.invoke(request("GET", "/sleep?ms=60000", ""), &long);
    let dropped = tokio::time::timeout(std::time::Duration::from_millis(300), sleeper).await;
    assert!(dropped.is_err(), "the sleeper ended by itself: {dropped:?}");
    // The aborted task is dropped on one of the runtime's next turns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let after = function
            .invoke(request("GET", "/ok", ""), &params(2, Limits::DEFAULT))
            .await;
        if after.outcome == Outcome::Ok {
            break;
        }
        assert_eq!(after.outcome, Outcome::Busy);
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped guest still holds the only instance slot"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Tiered compilation: the first load serves at once on Winch's code,
/// Cranelift's replaces it in the background and is cached. Fuel is
/// deterministic on each tier and close between them (both charge the same
/// cost per operator, at different points of the control flow; measured
/// 22 094 on Winch vs 22 528 on Cranelift for this request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_code_starts_on_winch_and_switches_to_cranelift_with_fuel_within_5_percent() {
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = tiered_runtime(Some(cache.path()));
    let function = load(&runtime, "api");
    let wasm = std::fs::read(guest("api")).expect("guest built");
    assert_eq!(function.tier(), Tier::Baseline);
    let run = |function: Function| async move {
        let invocation = function
            .invoke(
                request("POST", "/echo", r#"{"a":[1,2,3],"b":"x"}"#),
                &params(5, Limits::DEFAULT),
            )
            .await;
        assert_eq!(invocation.outcome, Outcome::Ok);
        let body = invocation.response.expect("a response").into_body();
        (invocation.usage.fuel, body)
    };
    let (baseline_fuel, baseline_body) = run(function.clone()).await;
    assert_eq!(
        run(function.clone()).await.0,
        baseline_fuel,
        "deterministic"
    );
    let waited = {
        let function = function.clone();
        tokio::task::spawn_blocking(move || {
            function.wait_optimized(std::time::Duration::from_secs(120))
        })
        .await
        .expect("waiting")
    };
    assert!(waited, "Cranelift's code never arrived");
    let (optimized_fuel, optimized_body) = run(function.clone()).await;
    assert_eq!(baseline_body, optimized_body);
    assert_eq!(
        run(function.clone()).await.0,
        optimized_fuel,
        "deterministic"
    );
    let gap = baseline_fuel.abs_diff(optimized_fuel) as f64 / optimized_fuel as f64;
    assert!(
        gap < 0.05,
        "fuel on Winch {baseline_fuel}, on Cranelift {optimized_fuel}: {:.1} % apart",
        gap * 100.0
    );
    let stats = runtime.stats();
    assert_eq!((stats.baseline_compiles, stats.compiles), (1, 1));
    // The optimized code was cached: a new node starts on it.
    let second = tiered_runtime(Some(cache.path()));
    let function = second.load(&wasm).expect("loads");
    assert_eq!(function.tier(), Tier::Optimized);
    assert_eq!(second.stats().baseline_compiles, 0);
}

/// Every request gets a fresh instance: nothing a request leaves in the
/// guest's globals or heap is seen by the next, on either tier.
#[tokio::test]
async fn requests_never_see_each_others_memory_or_globals() {
    for function in [
        load(&runtime(None), "hostile"),
        load(&winch_runtime(), "hostile"),
    ] {
        for (n, secret) in ["alpha", "beta", "gamma"].iter().enumerate() {
            let path = format!("/remember?secret={secret}");
            let invocation = function
                .invoke(
                    request("GET", &path, ""),
                    &params(n as u128, Limits::DEFAULT),
                )
                .await;
            assert_eq!(invocation.outcome, Outcome::Ok);
            let body = invocation.response.expect("a response").into_body();
            assert_eq!(
                &body[..],
                b"0 ",
                "{:?}: request {n} saw an earlier one",
                function.tier()
            );
        }
    }
}

/// `hello` with a second core module that is never instantiated but still
/// compiled: one function of `body_bytes` whose 50 000 locals are all live
/// across a loop. Winch compiles it in one pass; Cranelift takes 24 s on
/// 1 MB of it and more than 10 minutes on 7 MB (bench/README.md).
fn hello_with_compile_bomb(body_bytes: usize) -> Vec<u8> {
    fn leb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            match n {
                0 => return out.push(byte),
                _ => out.push(byte | 0x80),
            }
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u64, out);
        out.extend_from_slice(body);
    }
    const LOCALS: u64 = 50_000;
    // local.get a; local.get b; i64.add; local.set c; in a loop.
    let mut code = Vec::with_capacity(body_bytes + 64);
    leb(1, &mut code); // one group of locals
    leb(LOCALS, &mut code);
    code.push(0x7e); // i64
    code.extend_from_slice(&[0x03, 0x40]); // loop
    let mut random = 0x5eed_u64;
    let mut local = || {
        random = random
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (random >> 33) % LOCALS
    };
    while code.len() < body_bytes {
        let (a, b, c) = (local(), local(), local());
        code.push(0x20);
        leb(a, &mut code);
        code.push(0x20);
        leb(b, &mut code);
        code.push(0x7c);
        code.push(0x21);
        leb(c, &mut code);
    }
    // local.get 0; i32.wrap_i64; br_if 0; end (loop); end (function)
    code.extend_from_slice(&[0x20, 0x00, 0xa7, 0x0d, 0x00, 0x0b, 0x0b]);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module); // type: [] -> []
    section(3, &[1, 0], &mut module); // one function of type 0
    let mut bodies = vec![1];
    leb(code.len() as u64, &mut bodies);
    bodies.extend_from_slice(&code);
    section(10, &bodies, &mut module);
    let mut component = std::fs::read(guest("hello")).expect("guest built");
    section(1, &module, &mut component); // a core module section
    component
}

/// A node's runtime: Cranelift in a child process of `bonus`, here with a
/// 2 s budget.
fn budgeted_runtime(compiler: Compiler, cache_dir: Option<&std::path::Path>) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: cache_dir.map(ToOwned::to_owned),
        instances_max: 50,
        fuel: true,
        compiler,
        compile_child: Some(bonus_runtime::CompileChild {
            program: bonus_tests::bonus_bin(),
            budget: bonus_runtime::CompileBudget {
                cpu_seconds_base: 2,
                cpu_seconds_per_mib: 0,
                memory_bytes: 8 << 30,
            },
        }),
    })
    .expect("runtime builds")
}

async fn answers_hello(function: &Function) {
    let invocation = function
        .invoke(request("GET", "/", ""), &params(9, Limits::DEFAULT))
        .await;
    assert_eq!(invocation.outcome, Outcome::Ok);
    let response = invocation.response.expect("a response");
    assert_eq!(&response.body()[..], b"hello");
}

/// The attacker deploys code that is cheap to upload and ruinous to
/// optimize. A node serves it on Winch's code at once, the kernel stops
/// Cranelift at the budget, and the function keeps serving on Winch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimizing_compile_past_its_budget_is_stopped_and_the_function_stays_on_winch() {
    let runtime = budgeted_runtime(Compiler::Tiered, None);
    let bomb = hello_with_compile_bomb(7 << 20);
    let function = tokio::task::block_in_place(|| runtime.load(&bomb)).expect("Winch compiles it");
    assert_eq!(function.tier(), Tier::Baseline);
    answers_hello(&function).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen_running = false;
    while runtime.stats().compiles_over_budget == 0 {
        // Listed while it runs, so an idle-only worker counts its CPU as
        // its own.
        seen_running |= !bonus_runtime::child::running_children().is_empty();
        assert!(
            std::time::Instant::now() < deadline,
            "Cranelift was not stopped: {:?}",
            runtime.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        seen_running,
        "the compile child was never listed as running"
    );
    assert!(!function.wait_optimized(std::time::Duration::ZERO));
    assert_eq!(function.tier(), Tier::Baseline);
    answers_hello(&function).await;
    assert_eq!(runtime.stats().compiles, 0, "{:?}", runtime.stats());
}

/// Cranelift first (`bonus serve --no-tiered`): the bomb is refused with
/// an error that names the budget, and is not compiled again, nor after a
/// restart on the same cache; ordinary code compiles in the child and
/// serves on Cranelift's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cranelift_first_refuses_a_component_past_its_budget_and_compiles_the_next() {
    let cache = tempfile::tempdir().expect("temp dir");
    let runtime = budgeted_runtime(Compiler::Cranelift, Some(cache.path()));
    let bomb = hello_with_compile_bomb(7 << 20);
    let started = std::time::Instant::now();
    let refused = tokio::task::block_in_place(|| runtime.load(&bomb));
    match refused {
        Err(Error::CompileBudget { cpu_seconds: 2, .. }) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a compile bomb loaded"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(100));
    // Refused again at once, with no compile.
    let refused_at_once = |runtime: &Runtime| {
        let again = std::time::Instant::now();
        let refused = tokio::task::block_in_place(|| runtime.load(&bomb));
        assert!(matches!(refused, Err(Error::CompileBudget { .. })));
        assert!(
            again.elapsed() < std::time::Duration::from_secs(1),
            "not compiled again"
        );
    };
    refused_at_once(&runtime);
    assert_eq!(runtime.stats().compiles_over_budget, 1);

    let hello = tokio::task::block_in_place(|| load(&runtime, "hello"));
    assert_eq!(hello.tier(), Tier::Optimized);
    answers_hello(&hello).await;
    assert_eq!(runtime.stats().compiles, 1);
    drop((hello, runtime));

    // A restarted node: the cache remembers the bomb.
    let restarted = budgeted_runtime(Compiler::Cranelift, Some(cache.path()));
    refused_at_once(&restarted);
    assert_eq!(
        restarted.stats().compiles_over_budget,
        0,
        "no child was started"
    );
}
