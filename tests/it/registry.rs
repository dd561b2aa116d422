//! Registry nodes as separate processes on loopback: deploys, P2P spread,
//! lost and lying peers, crashes mid-write and bad input.

use bonus_tests::{NodeProcess, bonus, guest, inflated_component};
use std::io::Write;
use std::time::Duration;

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn artifact_id(bytes: &[u8]) -> String {
    bonus_runtime::ArtifactId::of(bytes).to_hex()
}

/// A raw connection to `node`'s API that has sent the head of `PUT
/// /v1/artifacts/<id>` declaring `length` bytes and `body` (a part of
/// them), as a client that stalls or hangs up mid-upload would.
fn upload_started(node: &NodeProcess, id: &str, length: usize, body: &[u8]) -> std::net::TcpStream {
    let host = node.api.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&host).expect("connects");
    write!(
        stream,
        "PUT /v1/artifacts/{id} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {length}\r\n\r\n"
    )
    .expect("head");
    stream.write_all(body).expect("part of the body");
    stream.flush().expect("flush");
    stream
}

/// What a node shows of an upload that never completed: nothing under
/// its id, and no temp file left.
fn assert_no_partial_upload(node: &NodeProcess, dir: &std::path::Path, id: &str) {
    assert_eq!(
        node.request("HEAD", &format!("/v1/artifacts/{id}"), b"")
            .status,
        404
    );
    let leftovers = std::fs::read_dir(dir.join("worker/store/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(leftovers, 0, "the partial upload was discarded");
}

fn fetch(node: &NodeProcess, id: &str) -> (u16, serde_json::Value) {
    node.json("POST", &format!("/v1/artifacts/{id}/fetch"), b"")
}

fn held(node: &NodeProcess, id: &str) -> Option<Vec<u8>> {
    let response = node.request("GET", &format!("/v1/artifacts/{id}"), b"");
    (response.status == 200).then_some(response.body)
}

/// Deploy to A; B and C obtain the artifact by hash from peers; with A
/// killed, C still gets it from B; C then serves the function.
#[test]
fn an_artifact_spreads_between_three_nodes() {
    let (home, dirs) = (temp(), [temp(), temp(), temp()]);
    let mut a = NodeProcess::start(dirs[0].path(), &[], &[]);
    let b = NodeProcess::start(dirs[1].path(), &[&a.p2p], &[]);
    let c = NodeProcess::start(dirs[2].path(), &[&a.p2p], &[]);
    let wasm_path = guest("hello");
    let wasm = std::fs::read(&wasm_path).expect("built");
    let id = artifact_id(&wasm);

    let (ok, _, stderr) = bonus(home.path(), &["keys", "new"]);
    assert!(ok, "{stderr}");
    let wasm_arg = wasm_path.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = bonus(
        home.path(),
        &["deploy", wasm_arg, "--name", "hello", "--node", &a.api],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.trim().ends_with("/fn/hello/"), "{stdout}");
    assert!(stderr.contains("Deployed"), "{stderr}");

    let (status, report) = fetch(&b, &id);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["segments_by_peer"][&a.peer_id], 1, "{report}");
    assert_eq!(held(&b, &id).as_deref(), Some(&wasm[..]));

    a.kill();
    let (status, report) = fetch(&c, &id);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["segments_by_peer"][&b.peer_id], 1,
        "from B, not A: {report}"
    );
    assert_eq!(held(&c, &id).as_deref(), Some(&wasm[..]));

    // The same signed deploy, sent to C, binds the name there; C serves it.
    let (ok, _, stderr) = bonus(
        home.path(),
        &["deploy", wasm_arg, "--name", "hello", "--node", &c.api],
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("already has this artifact"), "{stderr}");
    let response = c.request("GET", "/fn/hello/", b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    assert!(response.header("x-bonus-manifest-id").is_some());
    let (ok, listing, _) = bonus(home.path(), &["ls", "--node", &c.api]);
    assert!(ok && listing.contains("hello"), "{listing}");
}

/// A peer serving tampered bytes is caught at its first bad segment and the
/// artifact comes from the honest peer.
#[test]
fn a_lying_peer_is_detected_and_avoided() {
    let dirs = [temp(), temp(), temp()];
    let honest = NodeProcess::start(dirs[0].path(), &[], &[]);
    let liar = NodeProcess::start(dirs[1].path(), &[&honest.p2p], &["--serve-tampered"]);
    let wasm = inflated_component(3 << 20, 7);
    let id = artifact_id(&wasm);
    let put = honest.request("PUT", &format!("/v1/artifacts/{id}"), &wasm);
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(fetch(&liar, &id).0, 200, "the liar holds a good copy");

    let fetcher = NodeProcess::start(dirs[2].path(), &[&honest.p2p, &liar.p2p], &[]);
    bonus_tests::wait_until(Duration::from_secs(10), || {
        fetcher.json("GET", "/v1/node", b"").1["connected_peers"] == 2
    });
    let (status, report) = fetch(&fetcher, &id);
    assert_eq!(status, 200, "{report}");
    assert!(
        report["segments_retried"].as_u64() >= Some(1),
        "the liar was asked: {report}"
    );
    assert!(
        report["segments_by_peer"].get(&liar.peer_id).is_none(),
        "{report}"
    );
    assert_eq!(held(&fetcher, &id).as_deref(), Some(&wasm[..]));
}

/// A node whose disk fills up mid-fetch says so, keeps no partial blob and
/// goes on working: a smaller artifact fetches afterwards.
#[test]
fn a_fetch_that_cannot_be_stored_fails_cleanly() {
    let dirs = [temp(), temp()];
    let origin = NodeProcess::start(dirs[0].path(), &[], &[]);
    let full = NodeProcess::start_with_file_limit(dirs[1].path(), &[&origin.p2p], &[], 4 << 20);
    let (big, small) = (
        inflated_component(8 << 20, 3),
        inflated_component(1 << 20, 4),
    );
    let (big_id, small_id) = (artifact_id(&big), artifact_id(&small));
    for (id, wasm) in [(&big_id, &big), (&small_id, &small)] {
        let put = origin.request("PUT", &format!("/v1/artifacts/{id}"), wasm);
        assert_eq!(put.status, 201, "{}", put.text());
    }
    bonus_tests::wait_until(Duration::from_secs(10), || {
        full.json("GET", "/v1/node", b"").1["connected_peers"] == 1
    });

    let (status, report) = fetch(&full, &big_id);
    assert_eq!(status, 500, "{report}");
    let message = report["error"].as_str().unwrap_or_default();
    assert!(message.contains("File too large"), "{report}");
    assert_eq!(held(&full, &big_id), None);
    let (_, info) = full.json("GET", "/v1/node", b"");
    assert_eq!(info["artifacts"], 0, "{info}");

    let (status, report) = fetch(&full, &small_id);
    assert_eq!(status, 200, "{report}");
    assert_eq!(held(&full, &small_id).as_deref(), Some(&small[..]));
}

/// A fetch that loses a source mid-transfer finishes from the others.
#[test]
fn a_fetch_survives_losing_a_source() {
    let dirs = [temp(), temp(), temp()];
    // Both sources are slow (200 ms a segment, four at a time from each),
    // so the transfer of 20 segments outlasts the moment B is killed by
    // several rounds.
    let a = NodeProcess::start(dirs[0].path(), &[], &["--serve-delay-ms", "200"]);
    let mut b = NodeProcess::start(dirs[1].path(), &[&a.p2p], &["--serve-delay-ms", "200"]);
    let wasm = inflated_component(20 << 20, 9);
    let id = artifact_id(&wasm);
    assert_eq!(
        a.request("PUT", &format!("/v1/artifacts/{id}"), &wasm)
            .status,
        201
    );
    assert_eq!(fetch(&b, &id).0, 200);
    let c = NodeProcess::start(dirs[2].path(), &[&a.p2p, &b.p2p], &[]);
    bonus_tests::wait_until(Duration::from_secs(10), || {
        c.json("GET", "/v1/node", b"").1["connected_peers"] == 2
    });
    let api = c.api.clone();
    let id_for_thread = id.clone();
    let fetching = std::thread::spawn(move || {
        bonus_tests::http_request(
            &api,
            "POST",
            &format!("/v1/artifacts/{id_for_thread}/fetch"),
            &[],
            b"",
        )
    });
    // Kill B mid-transfer: once C has verified a segment from B. (B's own
    // log that it served one is not enough: what B wrote may still sit in
    // its socket when it dies, and C never sees it.)
    let from_b = format!("peer={}", b.peer_id);
    let served = bonus_tests::wait_until(Duration::from_secs(30), || {
        c.stderr()
            .lines()
            .any(|line| line.contains("segment verified") && line.contains(&from_b))
    });
    assert!(served, "C never got a segment from B: {}", c.stderr());
    b.kill();
    let response = fetching.join().expect("fetch thread");
    assert_eq!(response.status, 200, "{}", response.text());
    let report: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
    assert!(
        report["segments_retried"].as_u64() >= Some(1),
        "B was lost mid-transfer: {report}"
    );
    assert!(
        report["segments_by_peer"][&b.peer_id].as_u64() >= Some(1),
        "B served some: {report}"
    );
    assert_eq!(held(&c, &id).as_deref(), Some(&wasm[..]));
}

/// kill -9 during an upload, restart: nothing partial is visible.
#[test]
fn a_crash_mid_upload_leaves_nothing_partial() {
    let dir = temp();
    let mut node = NodeProcess::start(dir.path(), &[], &[]);
    let wasm = inflated_component(8 << 20, 3);
    let id = artifact_id(&wasm);
    let stream = upload_started(&node, &id, wasm.len(), &wasm[..wasm.len() / 2]);
    // The node holds a partial temp file now.
    assert!(bonus_tests::wait_until(Duration::from_secs(10), || {
        std::fs::read_dir(dir.path().join("worker/store/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            > 0
    }));
    node.kill();
    drop(stream);

    let node = NodeProcess::start(dir.path(), &[], &[]);
    assert_no_partial_upload(&node, dir.path(), &id);
    assert!(!dir.path().join("worker/store/blobs").join(&id).exists());
    // A complete upload then succeeds.
    assert_eq!(
        node.request("PUT", &format!("/v1/artifacts/{id}"), &wasm)
            .status,
        201
    );
    assert_eq!(held(&node, &id).as_deref(), Some(&wasm[..]));
}

/// Each bad input gets a clear error and stores nothing corrupt.
#[test]
fn bad_uploads_and_manifests_are_refused() {
    let dir = temp();
    let node = NodeProcess::start(dir.path(), &[], &["--max-artifact-bytes", "2000000"]);
    let hello = std::fs::read(guest("hello")).expect("built");
    let hello_id = artifact_id(&hello);

    // Bytes that do not hash to the id they are sent as.
    let wrong = node.json(
        "PUT",
        &format!("/v1/artifacts/{}", artifact_id(b"other")),
        &hello,
    );
    assert_eq!(wrong.0, 400, "{}", wrong.1);
    assert!(
        wrong.1["error"]
            .as_str()
            .unwrap_or("")
            .contains("hash mismatch"),
        "{}",
        wrong.1
    );

    // Declared too large: refused from the headers alone, before any of
    // the body is sent.
    let mut stream = upload_started(&node, &artifact_id(b"big"), 3_000_000, b"");
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut answer).expect("an answer without a body");
    assert_eq!(
        &answer,
        b"HTTP/1.1 413",
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Not wasm, and a core module: the runtime's own errors.
    let refused_as = |bytes: &[u8], expect: &str| {
        let path = format!("/v1/artifacts/{}", artifact_id(bytes));
        let (status, answer) = node.json("PUT", &path, bytes);
        assert_eq!(status, 422, "{answer}");
        let error = answer["error"].as_str().unwrap_or("");
        assert!(error.contains(expect), "{answer}");
    };
    refused_as(b"definitely not wasm", "not a WebAssembly binary");
    refused_as(b"\0asm\x01\0\0\0", "core WebAssembly module");

    // Unknown hash.
    assert_eq!(fetch(&node, &artifact_id(b"nobody has this")).0, 404);

    // Garbage and forged manifests.
    let (status, _) = node.json("POST", "/v1/manifests", b"garbage");
    assert_eq!(status, 400);

    // Concurrent uploads of one artifact: all succeed, one blob.
    let api = node.api.clone();
    let uploads: Vec<_> = (0..4)
        .map(|_| {
            let (api, hello, id) = (api.clone(), hello.clone(), hello_id.clone());
            std::thread::spawn(move || {
                bonus_tests::http_request(&api, "PUT", &format!("/v1/artifacts/{id}"), &[], &hello)
                    .status
            })
        })
        .collect();
    for upload in uploads {
        let status = upload.join().expect("upload thread");
        assert!(status == 201 || status == 200, "{status}");
    }
    let (_, info) = node.json("GET", "/v1/node", b"");
    assert_eq!(info["artifacts"], 1, "{info}");
    assert_eq!(held(&node, &hello_id).as_deref(), Some(&hello[..]));
}

#[test]
fn deploy_signs_with_the_developer_key_and_checks_ownership() {
    let (alice, bob, dir) = (temp(), temp(), temp());
    let node = NodeProcess::start(dir.path(), &[], &[]);
    let wasm = guest("hello");
    let wasm = wasm.to_str().expect("utf-8 path");
    let (ok, _, stderr) = bonus(
        alice.path(),
        &["deploy", wasm, "--name", "mine", "--node", &node.api],
    );
    assert!(!ok);
    assert!(stderr.contains("run `bonus keys new`"), "{stderr}");
    for home in [&alice, &bob] {
        assert!(bonus(home.path(), &["keys", "new"]).0);
    }
    let key_file = alice.path().join("keys/default.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).expect("key").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let (ok, shown, _) = bonus(alice.path(), &["keys", "show"]);
    assert!(ok && shown.trim().starts_with("ed25519:"));
    let secret = std::fs::read_to_string(&key_file).expect("key");
    assert!(!shown.contains(secret.trim()), "the secret was printed");

    // Not a component: refused before anything is signed or sent.
    let text = alice.path().join("notes.wasm");
    std::fs::write(&text, b"just text").expect("writes");
    let (ok, _, stderr) = bonus(
        alice.path(),
        &[
            "deploy",
            text.to_str().expect("utf-8 path"),
            "--name",
            "mine",
            "--node",
            &node.api,
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("not a WebAssembly binary"), "{stderr}");
    assert!(!stderr.contains("Deploying"), "{stderr}");
    let (ok, listed, _) = bonus(alice.path(), &["--json", "ls", "--node", &node.api]);
    assert!(ok);
    assert!(!listed.contains("\"mine\""), "{listed}");

    let (ok, _, stderr) = bonus(
        alice.path(),
        &["deploy", wasm, "--name", "mine", "--node", &node.api],
    );
    assert!(ok, "{stderr}\nnode: {}", node.stderr());
    let first = node.request("GET", "/fn/mine/", b"");
    assert_eq!(first.status, 200);
    let first_id = first
        .header("x-bonus-manifest-id")
        .expect("served by a manifest")
        .to_string();
    let (ok, _, stderr) = bonus(
        bob.path(),
        &["deploy", wasm, "--name", "mine", "--node", &node.api],
    );
    assert!(!ok, "bob took alice's name");
    assert!(stderr.contains("belongs to"), "{stderr}");
    // A second deploy by the owner is version 2 with version 1 as parent.
    // It signs another budget: at most 7 per million fuel, never charged.
    let (ok, stdout, stderr) = bonus(
        alice.path(),
        &[
            "--json",
            "deploy",
            wasm,
            "--name",
            "mine",
            "--node",
            &node.api,
            "--env",
            "A=1",
            "--price-max",
            "7",
            "--spend-max",
            "0",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("never charged"), "{stderr}");
    let deployed: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(deployed["version"], 2);
    let (ok, stdout, stderr) = bonus(
        alice.path(),
        &["--json", "inspect", "mine", "--node", &node.api],
    );
    assert!(ok, "{stderr}");
    let inspected: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(inspected["version"], 2, "{inspected}");
    assert_eq!(inspected["price_per_million_fuel_max"], 7, "{inspected}");
    assert_eq!(inspected["spend_per_period_max"], 0, "{inspected}");
    // The node serves the new version at once (its cache was evicted).
    let manifest_id = deployed["manifest_id"]
        .as_str()
        .expect("id")
        .trim_start_matches("manifest:")
        .to_string();
    let response = node.request("GET", "/fn/mine/", b"");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("x-bonus-manifest-id"),
        Some(manifest_id.as_str())
    );
    assert_ne!(first_id, manifest_id);
}

#[test]
fn inspect_prints_the_b3sum_of_a_file() {
    let home = temp();
    let wasm = guest("hello");
    let bytes = std::fs::read(&wasm).expect("built");
    let (ok, stdout, stderr) = bonus(
        home.path(),
        &["--json", "inspect", wasm.to_str().expect("utf-8")],
    );
    assert!(ok, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(value["b3sum"], blake3::hash(&bytes).to_hex().as_str());
    assert_eq!(value["http_component"], true);
    let not_wasm = home.path().join("x.wasm");
    std::fs::write(&not_wasm, b"nope").expect("writes");
    let (ok, stdout, _) = bonus(
        home.path(),
        &["--json", "inspect", not_wasm.to_str().expect("utf-8")],
    );
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(value["http_component"], false);
    assert!(
        value["problem"]
            .as_str()
            .unwrap_or("")
            .contains("not a WebAssembly binary")
    );
}

/// `bonus logs`: the owner reads what the function printed and why its
/// invocations failed; anyone else, or an unsigned request, reads nothing.
#[test]
fn a_functions_owner_reads_its_logs_and_nobody_else_does() {
    let (alice, bob, dir) = (temp(), temp(), temp());
    let node = NodeProcess::start(dir.path(), &[], &[]);
    for home in [&alice, &bob] {
        assert!(bonus(home.path(), &["keys", "new"]).0);
    }
    let wasm = guest("hostile");
    let (ok, _, stderr) = bonus(
        alice.path(),
        &[
            "deploy",
            wasm.to_str().expect("utf-8"),
            "--name",
            "noisy",
            "--node",
            &node.api,
        ],
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = bonus(alice.path(), &["logs", "noisy", "--node", &node.api]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("no worker holds lines"), "{stderr}");

    assert_eq!(node.request("GET", "/fn/noisy/spam?kb=4", b"").status, 200);
    let trapped = node.request("GET", "/fn/noisy/trap", b"");
    assert_eq!(trapped.status, 500);
    let trap_id = trapped
        .header("x-bonus-request-id")
        .expect("request id")
        .to_string();

    let (ok, stdout, stderr) = bonus(
        alice.path(),
        &["--json", "logs", "noisy", "--node", &node.api],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let streams: Vec<&str> = lines.iter().filter_map(|l| l["stream"].as_str()).collect();
    assert_eq!(streams, ["stderr", "stderr", "error"], "{stdout}");
    assert!(
        lines[0]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("spam spam")
    );
    assert!(
        lines[0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("more bytes not kept")
    );
    assert!(
        lines[1]["text"]
            .as_str()
            .unwrap_or("")
            .contains("panicked on purpose")
    );
    assert!(lines[2]["text"].as_str().unwrap_or("").starts_with("trap"));
    assert_eq!(lines[2]["request_id"], trap_id.as_str());

    // A worker that is down does not hide the others; with none up, an error.
    let down = "http://127.0.0.1:1";
    let (ok, stdout, stderr) = bonus(
        alice.path(),
        &["logs", "noisy", "--node", down, "--node", &node.api],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("panicked on purpose"), "{stdout}");
    assert!(stderr.contains("Skipping"), "{stderr}");
    let (ok, _, stderr) = bonus(alice.path(), &["logs", "noisy", "--node", down]);
    assert!(!ok);
    assert!(stderr.contains("no worker answered"), "{stderr}");

    let (ok, stdout, stderr) = bonus(bob.path(), &["logs", "noisy", "--node", &node.api]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("only the owner of \"noisy\""), "{stderr}");
    let unsigned = node.request("GET", "/v1/logs/noisy", b"");
    assert_eq!(unsigned.status, 401);
    assert!(!String::from_utf8_lossy(&unsigned.body).contains("panicked"));
    // Alice's own signed request, answered once; the same header seen on
    // the wire and sent again reads nothing.
    let key = bonus_ids::SecretKey::load(&alice.path().join("keys/default.key")).expect("key");
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let signature = key.sign(&bonus_node::wire::logs_auth_message("noisy", time_ms));
    let header = format!("{},{time_ms},{signature}", key.public());
    let read = || {
        let headers = [(bonus_node::wire::LOGS_AUTH_HEADER, header.as_str())];
        bonus_tests::http_request(&node.api, "GET", "/v1/logs/noisy", &headers, b"")
    };
    let first = read();
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.text().contains("panicked"), "{}", first.text());
    let replayed = read();
    assert_eq!(replayed.status, 401, "{}", replayed.text());
    assert!(
        replayed.text().contains("already answered"),
        "{}",
        replayed.text()
    );
    assert!(!replayed.text().contains("panicked"));
    let (ok, _, stderr) = bonus(alice.path(), &["logs", "nobody", "--node", &node.api]);
    assert!(!ok);
    assert!(stderr.contains("no function named \"nobody\""), "{stderr}");
}

/// A client that declares more bytes than it sends, then hangs up: the node
/// says so and keeps nothing.
#[test]
fn a_truncated_upload_stores_nothing() {
    let dir = temp();
    let node = NodeProcess::start(dir.path(), &[], &[]);
    let wasm = inflated_component(1 << 20, 5);
    let id = artifact_id(&wasm);
    let mut stream = upload_started(&node, &id, wasm.len(), &wasm[..wasm.len() / 3]);
    stream.shutdown(std::net::Shutdown::Write).expect("hang up");
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("upload interrupted"), "{answer}");
    assert_no_partial_upload(&node, dir.path(), &id);
}
