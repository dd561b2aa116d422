//! sdk-js end to end: JS handlers built with the SDK answer under
//! `bonus serve` and, unchanged, under `wasmtime serve`; their fuel is
//! deterministic; a throwing handler gives a 500 and a logged message; a
//! syntax error fails the build with file and line; the JS client deploys
//! to a real node through the API `bonus deploy` uses. The JS packages' own
//! tests (`node --test`) run here too, so `cargo test --workspace` covers
//! them.

use bonus_tests::{
    NodeProcess, Serve, WasmtimeServe, bonus, http_request, js_guest, node_js, sdk_js_ready,
    shared_cache_dir, wasmtime_bin,
};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Serializes the first load of a 12 MiB component: one cranelift compile
/// at a time on a 2-core machine, then everyone hits the shared cache.
static LOADING: Mutex<()> = Mutex::new(());

fn serve(name: &str, extra: &[&str]) -> Serve {
    let wasm = js_guest(name);
    let cache = shared_cache_dir();
    let mut args = vec!["--cache-dir", cache.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    Serve::start(&wasm, &args)
}

#[test]
fn the_js_packages_tests_pass() {
    let dir = sdk_js_ready();
    let output = Command::new("npm")
        .current_dir(&dir)
        .args(["test", "--silent"])
        .output()
        .expect("running npm test");
    assert!(
        output.status.success(),
        "`npm test` in sdk-js failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn hello_js_answers_under_bonus_serve_with_deterministic_fuel() {
    let server = serve("hello-js", &[]);
    let first = server.get("/");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "hello");
    let fuels: Vec<u64> = (0..5).map(|_| server.get("/").fuel()).collect();
    assert!(
        fuels.iter().all(|&fuel| fuel == first.fuel()),
        "{first:?} {fuels:?}"
    );
    assert!(first.fuel() > 0);
}

#[test]
fn hello_js_runs_unchanged_under_wasmtime_serve() {
    let Some(wasmtime) = wasmtime_bin() else {
        return;
    };
    let wasm = js_guest("hello-js");
    let server = WasmtimeServe::start(&wasmtime, &wasm);
    let response = http_request(&server.addr, "GET", "/any/path", &[], b"");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "hello");
    assert_eq!(response.header("x-bonus-fuel"), None, "not our host");
}

#[test]
fn api_js_routes_json_and_reads_its_env() {
    let server = serve("api-js", &["--env", "GREETING=bonjour"]);
    let greet = server.get("/hello/ada");
    assert_eq!(greet.status, 200, "{}", greet.text());
    assert!(
        greet
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    let json: serde_json::Value = serde_json::from_slice(&greet.body).expect("json");
    assert_eq!(json["greeting"], "bonjour, ada");

    let echo = server.request("POST", "/echo", br#"{"n": 42, "tags": ["a"]}"#);
    assert_eq!(echo.status, 200, "{}", echo.text());
    let json: serde_json::Value = serde_json::from_slice(&echo.body).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"n": 42, "tags": ["a"], "echoed": true})
    );

    assert_eq!(server.request("POST", "/echo", b"{not json").status, 400);
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.request("DELETE", "/echo", b"").status, 405);
}

#[test]
fn a_throwing_handler_answers_500_and_its_message_is_logged() {
    let server = serve("throws-js", &[]);
    assert_eq!(server.get("/ok").text(), "fine");
    let response = server.get("/explode");
    assert_eq!(response.status, 500, "{}", response.text());
    assert!(
        response.text().contains("threw an exception"),
        "{}",
        response.text()
    );
    let request_id = response
        .header("x-bonus-request-id")
        .expect("request id")
        .to_string();
    assert!(
        server.wait_for_log("Error: boom at /explode", Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
    // The message spans lines (its stack); the entry ends with the id.
    let log = server.stderr();
    let entry = &log[log.find("boom at /explode").expect("logged")..];
    let entry = &entry[..entry.find("request_id=").expect("an id") + 11 + 32];
    assert!(
        entry.ends_with(&request_id),
        "logged with the request id: {entry}"
    );
    assert_eq!(server.get("/ok").status, 200, "keeps serving");
}

#[test]
fn invalid_js_fails_the_build_with_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let handler = dir.path().join("handler.js");
    std::fs::write(
        &handler,
        "export default {\n  async fetch(request) {\n    return new Response(\"x\"\n  }\n};\n",
    )
    .expect("write");
    let (ok, _, stderr) = node_js(&[
        "packages/sdk/bin/bonus-build-js.js",
        handler.to_str().expect("UTF-8 path"),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("handler.js:4:3: Expected \")\" but found \"}\""),
        "{stderr}"
    );
    assert!(!dir.path().join("dist").exists(), "nothing written");

    let (ok, _, stderr) = bonus(dir.path(), &["build", handler.to_str().expect("UTF-8")]);
    assert!(!ok);
    assert!(stderr.contains("handler.js:4:3: Expected"), "{stderr}");
    assert!(stderr.contains("fix the handler and retry"), "{stderr}");
}

#[test]
fn bonus_build_builds_a_js_handler() {
    // A handler of its own (a changed greeting), so this build is real,
    // not the cached one the other tests share.
    let home = tempfile::tempdir().expect("home");
    let project = tempfile::tempdir().expect("project");
    let source = std::fs::read_to_string(bonus_tests::root().join("examples/hello-js/index.js"))
        .expect("hello-js source");
    let marker = "built-by-this-test-7f3a";
    let changed = source.replace(
        "new Response(\"hello\")",
        &format!("new Response(\"{marker}\")"),
    );
    assert_ne!(changed, source, "hello-js says hello");
    std::fs::write(project.path().join("index.js"), &changed).expect("write handler");
    let wasm = project.path().join("out.wasm");
    let args = [
        "--json",
        "build",
        project.path().to_str().expect("UTF-8"),
        "-o",
        wasm.to_str().expect("UTF-8"),
    ];
    let (ok, stdout, stderr) = bonus(home.path(), &args);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("Built"), "{stderr}");
    assert!(
        !stderr.contains("up to date"),
        "a first build was cached: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let bytes = std::fs::read(&wasm).expect("built");
    // A component (not a core module), carrying this handler's code.
    assert_eq!(
        &bytes[..8],
        b"\0asm\x0d\x00\x01\x00",
        "not a wasm component"
    );
    assert!(
        bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "the component does not carry the handler's source"
    );
    let id = format!("blake3:{}", blake3::hash(&bytes).to_hex());
    assert_eq!(report["artifact_id"], id.as_str());
    // Unchanged inputs: up to date, the same artifact.
    let (ok, stdout, stderr) = bonus(home.path(), &args);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("up to date"), "inputs unchanged: {stderr}");
    let again: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(again["artifact_id"], id.as_str());
}

/// The JS client deploys through the node API `bonus deploy` uses, with a
/// key `bonus keys new` made; the artifact id is Rust's BLAKE3 of the file.
#[test]
fn the_js_client_deploys_hello_js_to_a_node() {
    let (home, data) = (
        tempfile::tempdir().expect("home"),
        tempfile::tempdir().expect("data"),
    );
    let wasm = js_guest("hello-js");
    // Seed the node's compiled-code cache from the shared one (a miss if
    // the engines differ: then the node compiles, only slower).
    let node_cache = data.path().join("worker/cache");
    std::fs::create_dir_all(&node_cache).expect("cache dir");
    {
        let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        for entry in std::fs::read_dir(shared_cache_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::copy(entry.path(), node_cache.join(entry.file_name()));
        }
    }
    let node = NodeProcess::start(data.path(), &[], &[]);
    let (ok, _, stderr) = bonus(home.path(), &["keys", "new"]);
    assert!(ok, "{stderr}");

    let deploy = |expect_version: u64| {
        let output = Command::new("node")
            .current_dir(sdk_js_ready())
            .args(["packages/client/examples/deploy.js"])
            .arg(&wasm)
            .args(["hello-js", &node.api])
            .env("BONUS_HOME", home.path())
            .output()
            .expect("running node");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{stderr}\nnode log:\n{}",
            node.stderr()
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("one JSON line");
        assert_eq!(report["version"], expect_version, "{report}");
        report
    };
    let first = deploy(1);
    let bytes = std::fs::read(&wasm).expect("built");
    assert_eq!(first["artifact_id"], blake3::hash(&bytes).to_hex().as_str());
    assert_eq!(first["uploaded"], true);
    assert_eq!(
        (first["status"].as_u64(), first["body"].as_str()),
        (Some(200), Some("hello"))
    );
    assert!(
        first["url"]
            .as_str()
            .is_some_and(|url| url.ends_with("/fn/hello-js/"))
    );

    let (status, listing) = node.json("GET", "/v1/functions", b"");
    assert_eq!(status, 200);
    let listed = &listing["functions"][0];
    let manifest_id = format!("manifest:{}", first["manifest_id"].as_str().expect("id"));
    assert_eq!(listed["manifest_id"], manifest_id.as_str(), "{listing}");
    assert_eq!(listed["artifact_bytes"], bytes.len() as u64);

    // Again: the node has the bytes; version 2 chains to version 1.
    let second = deploy(2);
    assert_eq!(second["uploaded"], false);
    assert_eq!(second["artifact_id"], first["artifact_id"]);
    assert_eq!(
        second["fuel"], first["fuel"],
        "same component, same request, same fuel"
    );
    let response = node.request("GET", "/fn/hello-js/", b"");
    assert_eq!(response.text(), "hello");
    assert_eq!(
        response.header("x-bonus-manifest-id"),
        second["manifest_id"].as_str()
    );
    let (ok, listing, _) = bonus(home.path(), &["ls", "--node", &node.api]);
    assert!(ok && listing.contains("hello-js"), "{listing}");
}

/// The JS client's `LedgerClient` against a real one-validator ledger:
/// status, the faucet's genesis balance, empty names, a certified block,
/// an unknown tx and a refused submission (`test/ledger-live.test.js`).
#[test]
fn the_js_client_queries_a_real_validator() {
    use bonus_tests::{ValidatorProcess, wait_until};
    let dir = tempfile::tempdir().expect("temp dir");
    let net = dir.path().join("net");
    bonus_tests::ledger_genesis(dir.path(), &net, 1);
    let validator = ValidatorProcess::start(&net, 0);
    assert!(
        wait_until(Duration::from_secs(120), || validator.height() >= 1),
        "a single validator does not finalize:\n{}",
        validator.stderr()
    );
    let output = Command::new("node")
        .current_dir(sdk_js_ready())
        .args(["--test", "packages/client/test/ledger-live.test.js"])
        .env("BONUS_LEDGER_URL", &validator.api)
        .env("BONUS_LEDGER_GENESIS", net.join("genesis.json"))
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}\nvalidator log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        validator.stderr()
    );
    assert!(
        stdout.contains("# pass 1") && stdout.contains("# skipped 0"),
        "the live test ran, not skipped:\n{stdout}"
    );
}

/// Every JS function carries the same engine (identical code sections,
/// different data). A node that compiled one JS function with Cranelift
/// builds a new one's optimized code from the per-function cache, and each
/// function still answers with its own script and heap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_js_function_reuses_another_ones_code_and_keeps_its_own_data() {
    use bonus_runtime::{Compiler, InvokeParams, Limits, RequestId, Runtime, RuntimeConfig, Tier};
    let tiered = |dir: &std::path::Path| {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.to_owned()),
            instances_max: 20,
            fuel: true,
            compiler: Compiler::Tiered,
            // As a node compiles: Cranelift in a child process, which
            // shares the per-function cache directory.
            compile_child: Some(bonus_runtime::CompileChild {
                program: bonus_tests::bonus_bin(),
                budget: bonus_runtime::CompileBudget::DEFAULT,
            }),
        })
        .expect("runtime builds")
    };
    let optimized = |runtime: &Runtime, wasm: &[u8]| {
        let function = runtime.load(wasm).expect("loads");
        assert_eq!(
            function.tier(),
            Tier::Baseline,
            "not cached whole: Winch first"
        );
        assert!(
            function.wait_optimized(Duration::from_secs(600)),
            "Cranelift's code never arrived"
        );
        function
    };
    let answer = |function: bonus_runtime::Function| async move {
        let request = http::Request::get("http://localhost/")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let params = InvokeParams {
            request_id: RequestId::from_u128(1),
            random_seed: [1; 32],
            limits: Limits::DEFAULT,
            caps: Default::default(),
        };
        let invocation = function.invoke(request, &params).await;
        let body = invocation.response.expect("a response").into_body();
        String::from_utf8_lossy(&body).into_owned()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let api = std::fs::read(js_guest("api-js")).expect("api-js built");
    let hello = std::fs::read(js_guest("hello-js")).expect("hello-js built");

    let first = tiered(dir.path());
    let api_function = tokio::task::block_in_place(|| optimized(&first, &api));
    let stats = first.stats();
    assert!(stats.functions_cached > 1_000, "{stats:?}");
    drop((api_function, first));

    // A restarted node, a JS function it has never seen.
    let second = tiered(dir.path());
    let hello_function = tokio::task::block_in_place(|| optimized(&second, &hello));
    let stats = second.stats();
    let looked_up = stats.function_cache_hits + stats.function_cache_misses;
    assert!(
        stats.function_cache_hits * 100 >= looked_up * 90,
        "at least 90 % of hello-js's functions come from api-js's code: {stats:?}"
    );
    assert_eq!(answer(hello_function).await, "hello");
    let api_again = second.load(&api).expect("api-js loads");
    assert!(
        answer(api_again).await.contains("POST /echo"),
        "api-js keeps its own script"
    );
}
