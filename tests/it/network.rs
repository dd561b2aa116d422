//! The product end to end, as separate processes: `bonus up` (4
//! validators, 2 workers, a router), the examples deployed through the
//! ledger, requests through the router, usage settled on chain; a worker
//! killed -9 under load is restarted and settles what it had committed,
//! nothing twice; a second `bonus up` on the same home is refused.

use bonus_ledger::api::{AccountView, UsageView};
use bonus_tests::{guest, http_request, root, wait_until};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(240);

/// A base port with the 50 ports `bonus up` uses above it free.
fn free_base() -> u16 {
    let start = 20_000 + (std::process::id() % 400) as u16 * 97;
    for attempt in 0..300u16 {
        let base = 20_000 + (start - 20_000 + attempt * 131) % 40_000;
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

fn bonus_up(home: &Path, base: u16) -> Up {
    let mut child = Command::new(bonus_tests::bonus_bin())
        .args([
            "up",
            "--json",
            "-q",
            "--port",
            &base.to_string(),
            "--examples",
        ])
        .arg(root().join("examples"))
        .env("BONUS_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
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

/// `n` requests to `/fn/hello/` through the router; (successes, fuel).
fn hit(router: &str, n: usize) -> (usize, u64) {
    let mut ok = 0;
    let mut fuel = 0;
    for _ in 0..n {
        let response =
            std::panic::catch_unwind(|| http_request(router, "GET", "/fn/hello/", &[], b""));
        let Ok(response) = response else { continue };
        if response.status == 200 {
            assert!(
                response.header("x-bonus-worker").is_some(),
                "no x-bonus-worker header"
            );
            ok += 1;
            fuel += response
                .header("x-bonus-fuel")
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (ok, fuel)
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
    guest("hello"); // builds the examples once, before `bonus up` needs them
    let home = tempfile::tempdir().expect("tempdir");
    let base = free_base();
    let up = bonus_up(home.path(), base);
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

    // A second `bonus up` on the same home is refused, and changes nothing.
    let (ok, _, stderr) = bonus_tests::bonus(
        home.path(),
        &["up", "--port", &base.to_string(), "--no-examples"],
    );
    assert!(
        !ok && stderr.contains("another `bonus up` is running"),
        "{stderr}"
    );

    // An unknown name is a clear 404 from the router.
    let unknown = http_request(&router, "GET", "/fn/nope/", &[], b"");
    assert_eq!(
        unknown.status,
        404,
        "{}",
        String::from_utf8_lossy(&unknown.body)
    );

    let before: AccountView = get(&ledger, &format!("/v1/ledger/accounts/{dev}"));
    let (ok, fuel) = hit(&router, 1000);
    assert_eq!(ok, 1000, "every request through the router succeeds");
    assert!(fuel > 0);

    // Settlement: workers claim after each period ends and routers attest.
    let mut by_workers = 0;
    let settled_all = wait_until(DEADLINE, || {
        by_workers = worker_settled(home.path()).unwrap_or(0);
        by_workers >= 1000
    });
    assert!(settled_all, "workers settled {by_workers}, want 1000");
    assert_eq!(
        by_workers, 1000,
        "exactly the invocations served, nothing twice"
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
    let expected = fuel as f64 / 1000.0 * 1.01;
    assert!(
        (paid as f64 - expected).abs() <= 0.02 * expected + 20.0,
        "paid {paid}, fuel {fuel} → expected about {expected}"
    );

    // kill -9 one worker under load: requests keep succeeding on the
    // other; `bonus up` restarts it; it settles what it had committed.
    let pid_file = home.path().join("up/logs/worker-0.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .expect("worker pid")
        .trim()
        .to_string();
    let load = {
        let router = router.clone();
        std::thread::spawn(move || hit(&router, 400))
    };
    std::thread::sleep(Duration::from_millis(200));
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (ok2, _) = load.join().expect("load thread");
    assert!(
        ok2 >= 390,
        "only in-flight requests may fail: {ok2}/400 succeeded"
    );
    let restarted = wait_until(DEADLINE, || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() != pid)
    });
    assert!(restarted, "bonus up restarts a killed worker");
    let total = 1000 + ok2 as u64;
    let settled_again = wait_until(DEADLINE, || {
        by_workers = worker_settled(home.path()).unwrap_or(0);
        // The killed worker may lose its last commit window: at most the
        // in-flight receipts, never a double settlement.
        by_workers + 10 >= total
    });
    assert!(settled_again, "workers settled {by_workers} of {total}");
    assert!(
        by_workers <= total,
        "settled {by_workers} > served {total}: something settled twice"
    );
    let last = settled(&ledger, "hello");
    assert!(
        last.1 <= last.0,
        "never settled beyond what routers attested: {last:?}"
    );
    drop(up);
}
