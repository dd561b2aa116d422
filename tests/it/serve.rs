//! `bonus serve` as a user runs it: the real binary on a loopback port.

use bonus_tests::{Serve, guest, http_request, wait_until};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[test]
fn hello_answers_200_with_fuel_and_request_id() {
    let server = Serve::start(&guest("hello"), &[]);
    let response = server.get("/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    assert!(response.fuel() > 0);
    let first_id = response
        .header("x-bonus-request-id")
        .expect("request id")
        .to_string();
    assert_eq!(first_id.len(), 32);
    let second = server.get("/other");
    assert_ne!(second.header("x-bonus-request-id"), Some(first_id.as_str()));
}

#[test]
fn a_component_built_without_our_sdk_runs_unchanged() {
    let server = Serve::start(&guest("hello-wstd"), &[]);
    let response = server.get("/some/path");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "hello from wstd at /some/path");
}

#[test]
fn api_routes_echoes_json_and_reads_its_env() {
    let server = Serve::start(&guest("api"), &["--env", "GREETING=bonjour"]);
    let greet = server.get("/hello/ada");
    assert_eq!(greet.status, 200);
    assert_eq!(greet.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&greet.body).expect("json");
    assert_eq!(json["greeting"], "bonjour, ada");

    let echo = server.request("POST", "/echo", br#"{"n": 42, "tags": ["a"]}"#);
    assert_eq!(echo.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&echo.body).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"n": 42, "tags": ["a"], "echoed": true})
    );

    let bad = server.request("POST", "/echo", b"{not json");
    assert_eq!(bad.status, 400);
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.request("DELETE", "/echo", b"").status, 405);
}

#[test]
fn fuel_is_identical_across_20_requests() {
    let server = Serve::start(&guest("fib"), &[]);
    let fuels: Vec<u64> = (0..20).map(|_| server.get("/?n=15").fuel()).collect();
    assert!(
        fuels.iter().all(|&fuel| fuel == fuels[0]),
        "fuel varies: {fuels:?}"
    );
    assert_eq!(server.get("/?n=15").text(), "fib(15) = 610");
}

/// Each hostile case gets its status, and the next normal request is
/// answered within a second.
#[test]
fn hostile_cases_are_contained_and_the_server_keeps_serving() {
    let server = Serve::start(
        &guest("hostile"),
        &[
            "--fuel",
            "300000000",
            "--deadline-ms",
            "1500",
            "--memory-mib",
            "32",
            "--max-response-body",
            "1048576",
            "--max-request-body",
            "4096",
        ],
    );
    let cases = [
        ("GET", "/loop", 508, "fuel budget"),
        ("GET", "/alloc", 500, "memory limit"),
        ("GET", "/recurse", 500, "call stack"),
        ("GET", "/trap", 500, "trapped"),
        ("GET", "/huge?mb=8", 502, "response body exceeds"),
        ("GET", "/sleep?ms=60000", 504, "deadline"),
        ("POST", "/ok", 413, "request body exceeds"),
    ];
    for (method, path, status, reason) in cases {
        let body = if method == "POST" {
            vec![b'x'; 8192]
        } else {
            Vec::new()
        };
        let response = server.request(method, path, &body);
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert!(
            response.text().contains(reason),
            "{path}: {:?}",
            response.text()
        );
        assert!(response.header("x-bonus-outcome").is_some(), "{path}");
        let started = Instant::now();
        let next = server.get("/ok");
        assert_eq!(next.status, 200, "after {path}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "after {path}: {:?}",
            started.elapsed()
        );
    }
    assert!(server.wait_for_log("hostile guest panicked on purpose", Duration::from_secs(10)));
}

/// A guest spinning on the only worker thread does not block other requests:
/// epochs make it yield.
#[test]
fn a_spinning_guest_does_not_starve_other_requests() {
    let server = Serve::start(
        &guest("hostile"),
        &["--deadline-ms", "20000", "--fuel", "1000000000000"],
    );
    let addr = server.addr.clone();
    let spinner = std::thread::spawn(move || http_request(&addr, "GET", "/loop", &[], b"").status);
    // Every one of these requests overlaps the spinner, which runs for 20 s.
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(server.get("/ok").status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(!spinner.is_finished(), "the spinner ended early");
    drop(server);
    let _ = spinner.join();
}

/// Sends `GET /sleep?ms=MS` to the hostile guest and returns its reader
/// (the whole raw response) once the request is running: a request on a
/// connection opened after the sleeper's had sent its head is answered by
/// the one serving thread first.
fn sleeper_in_flight(server: &Serve, ms: u64) -> std::thread::JoinHandle<String> {
    let host = server.addr.trim_start_matches("http://");
    let mut sleeper = TcpStream::connect(host).expect("connecting");
    sleeper
        .write_all(
            format!("GET /sleep?ms={ms} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("writing the request");
    let reader = std::thread::spawn(move || {
        let _ = sleeper.set_read_timeout(Some(Duration::from_secs(90)));
        let mut raw = Vec::new();
        let _ = sleeper.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).into_owned()
    });
    assert_eq!(server.get("/ok").status, 200);
    reader
}

/// Sends SIGINT and waits until the server refuses new connections.
fn interrupt_and_wait_until_closed(server: &Serve) {
    let host = server.addr.trim_start_matches("http://");
    server.signal("INT");
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(host)
            .is_err()),
        "still accepting connections after SIGINT"
    );
}

/// SIGINT (Ctrl-C) stops `bonus serve` gracefully: the listener closes at
/// once, a request already running still gets its answer, and the process
/// exits with success.
#[test]
fn sigint_closes_the_listener_lets_in_flight_requests_finish_and_exits_0() {
    let mut server = Serve::start(&guest("hostile"), &[]);
    let sleeper = sleeper_in_flight(&server, 5_000);
    interrupt_and_wait_until_closed(&server);
    assert!(
        !sleeper.is_finished(),
        "the listener was still open when the 5 s request ended"
    );
    let answer = sleeper.join().expect("the sleeper's reader");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slept"),
        "in-flight request cut: {answer:?}; stderr: {}",
        server.stderr()
    );
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("bonus serve still runs after the drain");
    assert!(status.success(), "{status:?}; stderr: {}", server.stderr());
    assert!(
        server.wait_for_log("Stopped", Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
}

/// A second Ctrl-C does not wait for the drain: the process exits with
/// 130 while a request still runs (a drain, even one that timed out,
/// would exit 0).
#[test]
fn a_second_sigint_exits_at_once_without_waiting_for_the_drain() {
    let mut server = Serve::start(&guest("hostile"), &["--deadline-ms", "60000"]);
    let sleeper = sleeper_in_flight(&server, 50_000);
    interrupt_and_wait_until_closed(&server);
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("bonus serve still runs after a second SIGINT");
    assert_eq!(status.code(), Some(130), "stderr: {}", server.stderr());
    let answer = sleeper.join().expect("the sleeper's reader");
    assert!(
        !answer.contains("slept"),
        "the request finished: {answer:?}"
    );
}

#[test]
fn guest_stderr_is_logged_with_the_request_id() {
    let server = Serve::start(&guest("hostile"), &[]);
    let response = server.get("/spam?kb=1");
    assert_eq!(response.status, 200);
    let request_id = response
        .header("x-bonus-request-id")
        .expect("request id")
        .to_string();
    assert!(
        server.wait_for_log(&request_id, Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
    assert!(server.stderr().contains("guest stderr: spam spam"));
}

/// Outbound HTTP is denied unless the destination is allowed.
#[test]
fn outbound_http_follows_the_allow_list() {
    let upstream = TcpListener::bind("127.0.0.1:0").expect("binding an upstream");
    let upstream_addr = upstream.local_addr().expect("address");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in upstream.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nupstream ok",
            );
        }
    });
    let url = format!("http://{upstream_addr}/x");
    let path = format!("/fetch?url={url}");

    let denied = Serve::start(&guest("api"), &[]);
    let response = denied.get(&path);
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.text().contains("HttpRequestDenied"),
        "{}",
        response.text()
    );
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no connection was made"
    );

    let other_port = Serve::start(&guest("api"), &["--allow-outbound", "http://127.0.0.1:1"]);
    let response = other_port.get(&path);
    assert!(
        response.text().contains("HttpRequestDenied"),
        "{}",
        response.text()
    );

    let allowed_pattern = format!("http://127.0.0.1:{}", upstream_addr.port());
    let allowed = Serve::start(&guest("api"), &["--allow-outbound", &allowed_pattern]);
    let response = allowed.get(&path);
    assert_eq!(response.status, 200, "{}", response.text());
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
    assert_eq!(json["body"], "upstream ok");
    assert!(wait_until(Duration::from_secs(5), || {
        accepted.load(std::sync::atomic::Ordering::SeqCst) == 1
    }));
}

#[test]
fn serving_a_file_that_is_not_a_component_fails_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let check = |name: &str, bytes: &[u8], expect: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("writing the file");
        let output = std::process::Command::new(bonus_tests::bonus_bin())
            .arg("serve")
            .arg(&path)
            .args(["--addr", "127.0.0.1:0"])
            .env("BONUS_HOME", dir.path())
            .output()
            .expect("running bonus");
        assert!(!output.status.success(), "{name} was served");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("error:"), "{stderr}");
        assert!(stderr.contains(expect), "{name}: {stderr}");
    };
    check("notes.txt", b"just text", "not a WebAssembly binary");
    check(
        "core.wasm",
        b"\0asm\x01\0\0\0",
        "core WebAssembly module, not a component",
    );
    check("missing.wasm.d", b"", "not a WebAssembly binary");
}

/// The port is bound before the component is compiled: a request sent
/// while it compiles waits for its answer instead of being refused, and a
/// taken port fails before any compile.
#[test]
fn a_request_sent_while_the_component_loads_is_answered() {
    let home = tempfile::tempdir().expect("temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(bonus_tests::bonus_bin())
        .arg("serve")
        .arg(guest("hello"))
        .args(["--addr", &addr, "--threads", "1", "--no-tiered"])
        .env("BONUS_HOME", home.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running bonus serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    // "Loading" is printed after the bind and before the compile.
    let loading = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("Loading"));
    assert!(loading.is_some(), "bonus serve exited before loading");
    let mut stream = TcpStream::connect(&addr).expect("listening before the compile");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let taken = std::process::Command::new(bonus_tests::bonus_bin())
        .arg("serve")
        .arg(guest("hello"))
        .args(["--addr", &addr])
        .env("BONUS_HOME", home.path())
        .output()
        .expect("running a second bonus serve");
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(!taken.status.success());
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!stderr.contains("Loading"), "{stderr}");
    let _ = child.kill();
    let _ = child.wait();
}
