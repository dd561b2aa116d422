//! The product end to end, as separate processes: `bonus up` (4
//! validators, 2 workers, a router), the examples deployed through the
//! ledger, requests through the router to the nearer worker, usage settled
//! on chain; a worker killed -9 under load is restarted and settles what
//! it had committed, nothing twice; a gradual rollout and its rollback;
//! bad input at the edge (malformed Host, oversized body, forged router
//! header, an owner who cannot pay, a network that is down); Ctrl-C
//! drains every node, each signalled once; a second `bonus up` on the
//! same home is refused.

use bonus_ledger::api::{AccountView, UsageView};
use bonus_tests::{guest, http_request, root, wait_until};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(240);

/// A base port with the 50 ports `bonus up` uses above it free.
fn free_base() -> u16 {
    let (low, span) = bonus_tests::fixed_ports(50);
    let start = std::process::id() % 400 * 97;
    for attempt in 0..300u32 {
        let base = (low + (start + attempt * 131) % span) as u16;
        let all_free =
            (0..50u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no block of 50 free loopback ports");
}

struct Up {
    child: Child,
    ready: serde_json::Value,
}

impl Drop for Up {
    fn drop(&mut self) {
        // SIGTERM, so `bonus up` stops its nodes (they die with it anyway).
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Up {
    /// Ctrl-C as a terminal sends it: SIGINT to the job's whole process
    /// group. Waits for `bonus up` to exit.
    fn ctrl_c(&mut self) -> std::process::ExitStatus {
        let group = format!("-{}", self.child.id());
        let sent = Command::new("kill")
            .args(["-s", "INT", "--", &group])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -s INT -- {group} failed");
        bonus_tests::wait_exit(&mut self.child, Duration::from_secs(90))
            .expect("bonus up still runs 90 s after Ctrl-C")
    }
}

/// Worker-1 answers health probes this much later: it looks far.
const FAR_WORKER_DELAY_MS: u64 = 30;

fn bonus_up(home: &Path, base: u16) -> Up {
    let mut child = Command::new(bonus_tests::bonus_bin())
        .args([
            "up",
            "--json",
            "-q",
            "--port",
            &base.to_string(),
            "--probe-delay-ms",
            &format!("0,{FAR_WORKER_DELAY_MS}"),
            "--examples",
        ])
        .arg(root().join("examples"))
        // `bonus up` builds each example alone, with other features than
        // the whole examples workspace, so in `target/guests` it would
        // relink the guests other tests are reading at that moment.
        .env("CARGO_TARGET_DIR", root().join("target/guests-up"))
        .env("BONUS_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // As a shell starts a job: its own process group, so the test can
        // press Ctrl-C on it the way a terminal does (see `ctrl_c`).
        .process_group(0)
        .spawn()
        .expect("spawning bonus up");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading bonus up");
    let ready: serde_json::Value = match serde_json::from_str(&line) {
        Ok(ready) => ready,
        Err(_) => {
            let _ = child.wait();
            let logs = std::fs::read_dir(home.join("up/logs"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| {
                            format!(
                                "{}:\n{}",
                                e.path().display(),
                                std::fs::read_to_string(e.path()).unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            panic!("bonus up did not start; logs:\n{logs}");
        }
    };
    Up { child, ready }
}

fn get<T: serde::de::DeserializeOwned>(api: &str, path: &str) -> T {
    let response = http_request(api, "GET", path, &[], b"");
    assert_eq!(
        response.status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&response.body)
    );
    serde_json::from_slice(&response.body).expect("ledger JSON")
}

/// Settled invocations of `name` over the settlement window.
fn settled(ledger: &str, name: &str) -> (u64, u64, u64) {
    let status: bonus_ledger::api::Status = get(ledger, "/v1/ledger/status");
    let (mut attested, mut settled, mut charged) = (0, 0, 0);
    for period in status.period.saturating_sub(3)..=status.period {
        let usage: UsageView = get(ledger, &format!("/v1/ledger/usage/{period}"));
        for line in usage.lines.iter().filter(|l| l.name == name) {
            attested += line.attested;
            settled += line.settled;
        }
        charged += usage
            .charged
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.amount)
            .sum::<u64>();
    }
    (attested, settled, charged)
}

/// A name's usage as `bonus usage --json` totals it over the ledger's
/// history: (routed, settled, charged).
fn usage_totals(home: &Path, name: &str) -> (u64, u64, u64) {
    let json = bonus_ok(home, &["--json", "usage", name]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("usage JSON");
    let total = |field: &str| {
        value["total"][field]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("usage total {field}: {json}"))
    };
    (total("routed"), total("settled"), total("charged"))
}

/// Invocations settled by every worker, all time (their own counters);
/// `None` while one is unreachable (restarting).
fn worker_settled(home: &Path) -> Option<u64> {
    let (ok, stdout, stderr) = bonus_tests::bonus(home, &["node", "status", "--json"]);
    assert!(ok, "bonus node status: {stderr}");
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    let nodes = value["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "both workers listed: {value}");
    nodes
        .iter()
        .map(|n| n["usage"]["settled_invocations"].as_u64())
        .sum()
}

/// What `n` requests to `/fn/<name>/` through the router got.
#[derive(Default)]
struct Hits {
    ok: usize,
    fuel: u64,
    /// Successes by `x-bonus-worker`.
    by_worker: std::collections::HashMap<String, usize>,
    /// Successes by `x-bonus-manifest-id`.
    by_manifest: std::collections::HashMap<String, usize>,
    /// When each success was answered, and by which worker.
    answered: Vec<(std::time::Instant, String)>,
}

impl Hits {
    /// Successes `worker` answered in `from..=to`.
    fn answered_by(&self, worker: &str, from: std::time::Instant, to: std::time::Instant) -> u64 {
        let within = |at: &std::time::Instant| (from..=to).contains(at);
        self.answered
            .iter()
            .filter(|(at, by)| by == worker && within(at))
            .count() as u64
    }
}

fn hit(router: &str, name: &str, n: usize) -> Hits {
    let mut hits = Hits::default();
    let path = format!("/fn/{name}/");
    for _ in 0..n {
        let response = std::panic::catch_unwind(|| http_request(router, "GET", &path, &[], b""));
        let Ok(response) = response else { continue };
        if response.status == 200 {
            let worker = response
                .header("x-bonus-worker")
                .expect("no x-bonus-worker header");
            *hits.by_worker.entry(worker.to_string()).or_default() += 1;
            hits.answered
                .push((std::time::Instant::now(), worker.to_string()));
            let manifest = response
                .header("x-bonus-manifest-id")
                .expect("no x-bonus-manifest-id header");
            *hits.by_manifest.entry(manifest.to_string()).or_default() += 1;
            hits.ok += 1;
            hits.fuel += response
                .header("x-bonus-fuel")
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    hits
}

/// A request written byte for byte (to send what `http_request` would
/// not, such as a malformed Host); the status code of the answer.
fn raw_status(base: &str, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(base.trim_start_matches("http://")).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("writing");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// `bonus ARGS…` that must succeed; its stdout.
fn bonus_ok(home: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = bonus_tests::bonus(home, args);
    assert!(ok, "bonus {}: {stderr}", args.join(" "));
    stdout
}

/// A worker's key (`GET /v1/node`).
fn worker_key(api: &str) -> String {
    let value: serde_json::Value = get(api, "/v1/node");
    value["key"].as_str().expect("worker key").to_string()
}

/// The manifest that answered one request through the router.
fn manifest_of(router: &str) -> String {
    let response = http_request(router, "GET", "/fn/hello/", &[], b"");
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    response
        .header("x-bonus-manifest-id")
        .expect("manifest id header")
        .to_string()
}

/// Waits until the router's table reflects the ledger's current height.
fn router_caught_up(router: &str, ledger: &str) {
    let status: bonus_ledger::api::Status = get(ledger, "/v1/ledger/status");
    let caught_up = wait_until(DEADLINE, || {
        let value: serde_json::Value = get(router, "/v1/router/status");
        value["height"].as_u64().is_some_and(|h| h >= status.height)
    });
    assert!(
        caught_up,
        "the router never caught up with height {}",
        status.height
    );
}

#[test]
fn bonus_up_routes_settles_and_survives_a_killed_worker() {
    let hello_wasm = guest("hello"); // builds the examples before `bonus up` needs them
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let base = free_base();
    let up = bonus_up(home, base);
    let router = up.ready["router"].as_str().expect("router URL").to_string();
    let ledger = up.ready["ledger"][0]
        .as_str()
        .expect("ledger URL")
        .to_string();
    let dev = up.ready["dev_account"]
        .as_str()
        .expect("dev account")
        .to_string();
    assert_eq!(
        up.ready["functions"]["hello"].as_str(),
        Some(format!("http://hello.localhost:{base}/").as_str())
    );
    // With no --node, `bonus ls` asks a worker of this network, and marks
    // the version the ledger binds.
    let listing: serde_json::Value =
        serde_json::from_str(&bonus_ok(home, &["--json", "ls"])).expect("ls JSON");
    let hello = listing["functions"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == "hello"))
        .unwrap_or_else(|| panic!("hello in {listing}"));
    assert_eq!(hello["current"], true, "{listing}");
    let workers: Vec<String> = up.ready["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w.as_str().expect("worker URL").to_string())
        .collect();
    assert_eq!(workers.len(), 2);
    let (near, far) = (worker_key(&workers[0]), worker_key(&workers[1]));

    // A second `bonus up` on the same home is refused, and changes nothing.
    let (ok, _, stderr) =
        bonus_tests::bonus(home, &["up", "--port", &base.to_string(), "--no-examples"]);
    assert!(
        !ok && stderr.contains("another `bonus up` is running"),
        "{stderr}"
    );

    // Bad input at the edge: a clear answer each, nothing forwarded.
    let unknown = http_request(&router, "GET", "/fn/nope/", &[], b"");
    assert_eq!(
        unknown.status,
        404,
        "{}",
        String::from_utf8_lossy(&unknown.body)
    );
    let malformed = raw_status(
        &router,
        "GET / HTTP/1.1\r\nhost: hel/lo!.localhost\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(malformed, 400, "a malformed Host");
    let oversized = http_request(&router, "POST", "/fn/hello/", &[], &vec![b'x'; 11 << 20]);
    assert_eq!(oversized.status, 413, "a body above the router's 10 MiB");

    // An owner who cannot pay: "broke" deploys, then empties its account.
    bonus_ok(home, &["keys", "new", "--name", "broke"]);
    let broke: serde_json::Value = serde_json::from_str(&bonus_ok(
        home,
        &["--json", "keys", "show", "--name", "broke"],
    ))
    .expect("key JSON");
    let broke = broke["public_key"]
        .as_str()
        .expect("public key")
        .to_string();
    let keys = bonus_ok(home, &["--json", "keys", "list"]);
    assert!(
        keys.contains(&format!(r#"{{"name":"broke","public_key":"{broke}"}}"#))
            && keys.contains(&format!(r#"{{"name":"default","public_key":"{dev}"}}"#)),
        "{keys}"
    );
    bonus_ok(home, &["-q", "transfer", &broke, "1000"]);
    let hello_path = hello_wasm.to_str().expect("utf-8 path");
    bonus_ok(
        home,
        &[
            "-q", "deploy", hello_path, "--name", "broke", "--key", "broke",
        ],
    );
    let left: AccountView = get(&ledger, &format!("/v1/ledger/accounts/{broke}"));
    let status: bonus_ledger::api::Status = get(&ledger, "/v1/ledger/status");
    let all_but_fee = (left.balance - status.tx_fee).to_string();
    bonus_ok(
        home,
        &["-q", "transfer", &dev, &all_but_fee, "--key", "broke"],
    );
    let empty: AccountView = get(&ledger, &format!("/v1/ledger/accounts/{broke}"));
    assert_eq!(empty.balance, 0, "the owner has nothing left");
    router_caught_up(&router, &ledger);
    assert_eq!(hit(&router, "broke", 5).ok, 5, "served until settlement");
    // Logs: every worker asked, the owner taken from the ledger's names.
    let (ok, _, stderr) = bonus_tests::bonus(home, &["logs", "hello"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = bonus_tests::bonus(home, &["logs", "hello", "--key", "broke"]);
    assert!(
        !ok && stderr.contains("only the owner of \"hello\""),
        "{stderr}"
    );

    // Anyone can send `x-bonus-router` straight to a worker: it runs, but
    // no router attested it, so it is never paid (checked below: settled
    // invocations are exactly the ones routed).
    let hello_manifest = manifest_of(&router);
    for _ in 0..50 {
        let forged = http_request(
            &workers[1],
            "GET",
            &format!("/v1/run/{hello_manifest}/"),
            &[("x-bonus-router", &dev)],
            b"",
        );
        assert_eq!(forged.status, 200);
    }

    // 1 000 requests through the router, nearly all to the near worker.
    let before: AccountView = get(&ledger, &format!("/v1/ledger/accounts/{dev}"));
    let hits = hit(&router, "hello", 1000);
    assert_eq!(hits.ok, 1000, "every request through the router succeeds");
    assert!(hits.fuel > 0);
    let to_near = hits.by_worker.get(&near).copied().unwrap_or(0);
    assert!(
        to_near >= 900,
        "≥ 90 % to the near worker: {to_near} of 1000 (far: {:?})",
        hits.by_worker.get(&far)
    );

    // Settlement: workers claim after each period ends and routers attest.
    let mut by_workers = 0;
    let routed = 1000 + 5 + 1; // hello, broke, and manifest_of's request
    let settled_all = wait_until(DEADLINE, || {
        by_workers = worker_settled(home).unwrap_or(0);
        by_workers >= routed
    });
    assert!(settled_all, "workers settled {by_workers}, want {routed}");
    assert_eq!(
        by_workers, routed,
        "exactly the invocations routed: nothing twice, nothing forged"
    );
    // The ledger's record agrees, all of it: `bonus usage` reads each
    // name's history, which outlives the settlement window.
    let mut on_ledger = (0, 0);
    let recorded = wait_until(DEADLINE, || {
        let (hello, broke) = (usage_totals(home, "hello"), usage_totals(home, "broke"));
        on_ledger = (hello.0 + broke.0, hello.1 + broke.1);
        on_ledger.1 >= routed
    });
    assert!(recorded, "the ledger shows {on_ledger:?} (routed, settled)");
    assert_eq!(
        on_ledger,
        (routed, routed),
        "the ledger records exactly the invocations routed and settled"
    );
    // What the ledger still holds (its settlement window) agrees.
    let last = settled(&ledger, "hello");
    assert!(
        last.1 <= last.0,
        "never settled beyond what routers attested: {last:?}"
    );
    assert!(last.1 > 0, "the ledger shows the settled usage: {last:?}");
    let after: AccountView = get(&ledger, &format!("/v1/ledger/accounts/{dev}"));
    let paid = before.balance - after.balance;
    assert_eq!(paid, last.2, "the owner paid exactly what was charged");
    // Price 1000 per million fuel plus the 1 % protocol fee, rounded down
    // per settlement line.
    let expected = hits.fuel as f64 / 1000.0 * 1.01;
    assert!(
        (paid as f64 - expected).abs() <= 0.02 * expected + 20.0,
        "paid {paid}, fuel {} → expected about {expected}",
        hits.fuel
    );

    // The owner who could not pay: its usage was settled, it was charged
    // nothing, and the router now answers 402 for its name.
    // Every other request served through the router from here on.
    let mut served = 0;
    let mut unpaid = 0;
    let refused = wait_until(DEADLINE, || {
        unpaid = http_request(&router, "GET", "/fn/broke/", &[], b"").status;
        served += usize::from(unpaid == 200);
        unpaid == 402
    });
    assert!(refused, "an owner who cannot pay gets 402, got {unpaid}");
    let still: AccountView = get(&ledger, &format!("/v1/ledger/accounts/{broke}"));
    assert_eq!(still.balance, 0, "nothing was taken that it did not have");
    // A top-up clears it.
    bonus_ok(home, &["-q", "transfer", &broke, "100000"]);
    let paid_again = wait_until(DEADLINE, || {
        http_request(&router, "GET", "/fn/broke/", &[], b"").status == 200
    });
    assert!(paid_again, "a top-up ends the 402");
    served += 1;

    // kill -9 the near worker under load: requests keep succeeding on the
    // other within 2 s; `bonus up` restarts it; it settles what it had
    // committed.
    let pid_file = home.join("up/logs/worker-0.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .expect("worker pid")
        .trim()
        .to_string();
    let load = {
        let router = router.clone();
        std::thread::spawn(move || hit(&router, "hello", 400))
    };
    std::thread::sleep(Duration::from_millis(200));
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let killed_at = std::time::Instant::now();
    let moved = wait_until(Duration::from_secs(2), || {
        let response = http_request(&router, "GET", "/fn/hello/", &[], b"");
        served += usize::from(response.status == 200);
        response.status == 200 && response.header("x-bonus-worker") == Some(far.as_str())
    });
    assert!(
        moved,
        "traffic did not move to the other worker within 2 s ({:?})",
        killed_at.elapsed()
    );
    let loaded = load.join().expect("load thread");
    assert!(
        loaded.ok >= 390,
        "only in-flight requests may fail: {}/400 succeeded",
        loaded.ok
    );
    let restarted = wait_until(DEADLINE, || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() != pid)
    });
    assert!(restarted, "bonus up restarts a killed worker");

    // Rollout: v2 (same code, another environment), split 90/10, rollback.
    bonus_ok(
        home,
        &[
            "-q",
            "deploy",
            hello_path,
            "--name",
            "hello",
            "-e",
            "RELEASE=2",
        ],
    );
    router_caught_up(&router, &ledger);
    let v2 = manifest_of(&router);
    assert_ne!(v2, hello_manifest, "v2 is current after its deploy");
    bonus_ok(
        home,
        &[
            "-q", "traffic", "hello", "--split", "v1=90", "--split", "v2=10",
        ],
    );
    router_caught_up(&router, &ledger);
    let split = hit(&router, "hello", 1000);
    assert_eq!(split.ok, 1000);
    let to_v2 = split.by_manifest.get(&v2).copied().unwrap_or(0);
    let to_v1 = split.by_manifest.get(&hello_manifest).copied().unwrap_or(0);
    assert_eq!(to_v1 + to_v2, 1000, "{:?}", split.by_manifest);
    assert!(
        (50..=150).contains(&to_v2),
        "10 % ± 5 to v2: {to_v2} of 1000"
    );
    bonus_ok(home, &["-q", "rollback", "hello"]);
    router_caught_up(&router, &ledger);
    let back = hit(&router, "hello", 100);
    assert_eq!(
        back.by_manifest.get(&hello_manifest).copied(),
        Some(100),
        "after the rollback, all to v1: {:?}",
        back.by_manifest
    );

    // Everything served through the router is settled, nothing twice;
    // the killed worker may lose what it answered while its last group
    // commit was under way: a receipt answered during the commit in
    // progress or queued behind it, so within two commit windows (≤ 100 ms
    // each, the receipt log's promise) before the kill, plus the one
    // request in flight. Counted from the load's own answers, not guessed.
    // (+ 1: manifest_of's request for v2.)
    let total = routed + (served + loaded.ok + 1 + 1000 + 100) as u64;
    const COMMIT_WINDOW: Duration = Duration::from_millis(100);
    let lost_max = loaded.answered_by(&near, killed_at - 2 * COMMIT_WINDOW, killed_at) + 1;
    let settled_again = wait_until(DEADLINE, || {
        by_workers = worker_settled(home).unwrap_or(0);
        by_workers + lost_max >= total
    });
    assert!(
        settled_again,
        "workers settled {by_workers} of {total}; at most {lost_max} may be lost with the killed worker"
    );
    assert!(
        by_workers <= total,
        "settled {by_workers} > served {total}: something settled twice"
    );
    let last = settled(&ledger, "hello");
    assert!(
        last.1 <= last.0,
        "never settled beyond what routers attested: {last:?}"
    );
    // Ctrl-C stops every node gracefully, each once: a node that got the
    // terminal's SIGINT and then `bonus up`'s SIGTERM would exit without
    // draining.
    let mut up = up;
    let status = up.ctrl_c();
    assert!(status.success(), "bonus up after Ctrl-C: {status:?}");
    for name in ["worker-0", "worker-1", "router"] {
        let log = std::fs::read_to_string(home.join(format!("up/logs/{name}.log")))
            .unwrap_or_else(|e| panic!("{name}'s log: {e}"));
        let tail = &log[log.len().saturating_sub(2_000)..];
        assert!(log.contains("Stopping"), "{name} did not drain:\n{tail}");
        assert!(
            !log.contains("second signal"),
            "{name} was signalled twice:\n{tail}"
        );
    }
    drop(up);

    // The network is down: a clear error that says what to do.
    let (ok, _, stderr) = bonus_tests::bonus(home, &["usage", "hello"]);
    assert!(!ok);
    assert!(stderr.contains("bonus up"), "{stderr}");
}
