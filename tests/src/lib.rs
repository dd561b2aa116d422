//! Test support for cross-crate and multi-process tests: builds the guest
//! components once per test run, runs the real `bonus` binary, and speaks
//! just enough HTTP/1.1 to check what it answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Path of a guest component from `examples/`, building all of them once
/// (per process; cargo's own lock serializes concurrent test binaries).
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        ensure_wasip2_target()?;
        let examples = root().join("examples");
        let output = Command::new(cargo())
            .current_dir(&examples)
            .args(["build", "--release", "--quiet"])
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "building the example guests failed (is `rustup target add wasm32-wasip2` done?):\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(root().join("target/guests/wasm32-wasip2/release"))
    });
    match dir {
        Ok(dir) => dir.join(format!("{name}.wasm")),
        Err(e) => panic!("{e}"),
    }
}

/// A fresh machine lacks the guest target; `rustup` adds it (idempotent).
fn ensure_wasip2_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err("`rustup target add wasm32-wasip2` failed".into()),
    }
}

/// The `bonus` binary of this workspace, built if needed.
pub fn bonus_bin() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let profile_dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
            .ok_or("cannot locate the target directory")?;
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut build = Command::new(cargo());
        build
            .current_dir(root())
            .args(["build", "--quiet", "-p", "bonus-cli", "--bin", "bonus"]);
        if release {
            build.arg("--release");
        }
        let status = build
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err("building the bonus binary failed".to_string());
        }
        Ok(profile_dir.join("bonus"))
    });
    match built {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Spawns `command`, captures its stderr in the background, and returns the
/// first stdout line parsed as JSON (the ready line of `--json` commands).
fn spawn_ready(mut command: Command, what: &str) -> (Child, serde_json::Value, Arc<Mutex<String>>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let stderr = Arc::new(Mutex::new(String::new()));
    let pipe = child.stderr.take().expect("stderr is piped");
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut first_line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    BufReader::new(stdout)
        .read_line(&mut first_line)
        .unwrap_or_else(|e| panic!("reading {what}'s stdout: {e}"));
    match serde_json::from_str(&first_line) {
        Ok(ready) => (child, ready, stderr),
        Err(_) => {
            let _ = child.wait();
            let log = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
            panic!("{what} did not start; stderr:\n{log}");
        }
    }
}

/// A `bonus serve` process on an ephemeral loopback port; killed on drop.
pub struct Serve {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    stderr: Arc<Mutex<String>>,
    _home: tempfile_dir::TempHome,
}

mod tempfile_dir {
    /// A private `BONUS_HOME` for one process, removed on drop.
    pub struct TempHome(pub std::path::PathBuf);

    impl TempHome {
        pub fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "bonus-test-{}-{}",
                std::process::id(),
                super::unique()
            ));
            std::fs::create_dir_all(&dir).expect("creating a temp BONUS_HOME");
            TempHome(dir)
        }
    }

    impl Drop for TempHome {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Serve {
    /// Starts `bonus serve WASM ARGS…` and waits until it listens.
    pub fn start(wasm: &Path, args: &[&str]) -> Serve {
        let home = tempfile_dir::TempHome::new();
        let mut command = Command::new(bonus_bin());
        command
            .arg("serve")
            .arg(wasm)
            .args(["--addr", "127.0.0.1:0", "--json", "--threads", "1"])
            .args(args)
            .env("BONUS_HOME", &home.0)
            .env("RUST_LOG", "info");
        let (child, ready, stderr) = spawn_ready(command, "bonus serve");
        Serve {
            child,
            addr: ready["url"]
                .as_str()
                .expect("url in the ready line")
                .to_string(),
            stderr,
            _home: home,
        }
    }

    /// Sends a request and reads the whole response.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        http_request(&self.addr, method, path, &[], body)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, b"")
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the server's stderr contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr().contains(needle))
    }

    /// Sends `signal` (`INT`, `TERM`) to the server, as a terminal would.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits for the server to exit; `None` while it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }
}

/// Waits for `child` to exit; `None` while it still runs after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `x-bonus-fuel`, parsed.
    pub fn fuel(&self) -> u64 {
        self.header("x-bonus-fuel")
            .and_then(|fuel| fuel.parse().ok())
            .expect("x-bonus-fuel header")
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connecting to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("setting a read timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .expect("writing the request");
    // A server may answer (413, say) and close before reading the whole
    // body: a failed body write is not the test's verdict, the response is.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let mut buffer = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(e) if raw.is_empty() => panic!("reading the response: {e}"),
            Err(_) => break,
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A `bonus node` process on ephemeral loopback ports; killed on drop.
pub struct NodeProcess {
    daemon: Daemon,
    /// `http://127.0.0.1:PORT` of its API.
    pub api: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its dialable P2P address, with `/p2p/<peer id>`.
    pub p2p: String,
    /// Its data directory (kept across restarts).
    pub data_dir: PathBuf,
}

impl NodeProcess {
    /// Starts a node in `data_dir`, joining through `bootstrap`.
    pub fn start(data_dir: &Path, bootstrap: &[&str], extra: &[&str]) -> NodeProcess {
        Self::start_with(Command::new(bonus_bin()), data_dir, bootstrap, extra)
    }

    /// Starts a node that cannot write a file past `bytes`, as on a full
    /// disk: a write past it fails with `EFBIG` (SIGXFSZ, which would
    /// kill the node instead, is ignored).
    pub fn start_with_file_limit(
        data_dir: &Path,
        bootstrap: &[&str],
        extra: &[&str],
        bytes: u64,
    ) -> NodeProcess {
        let mut command = Command::new("sh");
        let script = format!(
            "trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"",
            bytes / 1024
        );
        command.arg("-c").arg(script).arg(bonus_bin());
        Self::start_with(command, data_dir, bootstrap, extra)
    }

    fn start_with(
        mut command: Command,
        data_dir: &Path,
        bootstrap: &[&str],
        extra: &[&str],
    ) -> NodeProcess {
        command
            .args([
                "node",
                "--json",
                "--api",
                "127.0.0.1:0",
                "--p2p",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info,bonus_registry=debug");
        for peer in bootstrap {
            command.args(["--bootstrap", peer]);
        }
        let (child, ready, stderr) = spawn_ready(command, "bonus node");
        NodeProcess {
            daemon: Daemon { child, stderr },
            api: ready["api"].as_str().expect("api").to_string(),
            peer_id: ready["peer_id"].as_str().expect("peer id").to_string(),
            p2p: ready["p2p"][0].as_str().expect("p2p address").to_string(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// Everything the node wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.daemon.stderr()
    }

    /// A request to its API.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        http_request(&self.api, method, path, &[], body)
    }

    /// Its API's answer as JSON (any status).
    pub fn json(&self, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let response = self.request(method, path, body);
        let value = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
        (response.status, value)
    }
}

/// A spawned `bonus` process with its stderr collected; killed (-9) on drop.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `bonus ARGS…` with `BONUS_HOME=home`; returns (success, stdout, stderr).
pub fn bonus(home: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(bonus_bin())
        .args(args)
        .env("BONUS_HOME", home)
        .output()
        .expect("running bonus");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A valid component of about `bytes` bytes: `hello` with a custom section
/// appended (custom sections are allowed anywhere in a component).
pub fn inflated_component(bytes: usize, fill: u8) -> Vec<u8> {
    let mut wasm = std::fs::read(guest("hello")).expect("hello is built");
    let name = b"bonus-padding";
    let payload_len = bytes.saturating_sub(wasm.len() + 32);
    let mut section = Vec::new();
    let content_len = leb128_len(name.len() as u64) + name.len() + payload_len;
    leb128(&mut section, content_len as u64);
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name);
    section.extend(std::iter::repeat_n(fill, payload_len));
    wasm.push(0);
    wasm.extend_from_slice(&section);
    wasm
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn leb128_len(value: u64) -> usize {
    let mut out = Vec::new();
    leb128(&mut out, value);
    out.len()
}

/// `sdk-js/`, the npm workspace of the JavaScript SDK and client.
pub fn sdk_js_dir() -> PathBuf {
    root().join("sdk-js")
}

/// Makes sure `sdk-js` is installed and built: runs `npm ci` (which builds
/// the TypeScript client through `prepare`) when `node_modules` or the
/// client's `dist` is missing. Once per process; panics with what to do when
/// node or npm is missing.
pub fn sdk_js_ready() -> PathBuf {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let dir = sdk_js_dir();
        let installed = dir
            .join("node_modules/@bytecodealliance/componentize-js")
            .is_dir();
        let built = dir.join("packages/client/dist/index.js").is_file();
        if installed && built {
            return Ok(());
        }
        let step = if installed { "run build" } else { "ci" };
        let output = Command::new("npm")
            .current_dir(&dir)
            .args(step.split(' '))
            .output()
            .map_err(|e| format!("cannot run npm ({e}); install Node.js 20+ with npm"))?;
        match output.status.success() {
            true => Ok(()),
            false => Err(format!(
                "`npm {step}` in sdk-js failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )),
        }
    });
    match ready {
        Ok(()) => sdk_js_dir(),
        Err(e) => panic!("{e}"),
    }
}

/// Runs `node ARGS…` in `sdk-js`; returns (success, stdout, stderr).
pub fn node_js(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("node")
        .current_dir(sdk_js_ready())
        .args(args)
        .output()
        .expect("running node (install Node.js 20+)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Path of a JS guest component built from `examples/<name>` with the SDK's
/// build script, into `target/guests/js`. Builds run one at a time (they
/// are CPU-heavy) and the script skips a build whose inputs are unchanged.
pub fn js_guest(name: &str) -> PathBuf {
    static BUILDS: Mutex<Vec<(String, Result<PathBuf, String>)>> = Mutex::new(Vec::new());
    let mut builds = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, built)) = builds.iter().find(|(built, _)| built == name) {
        return built.clone().unwrap_or_else(|e| panic!("{e}"));
    }
    let output = root().join(format!("target/guests/js/{name}.wasm"));
    let example = root().join("examples").join(name);
    let (ok, _, stderr) = node_js(&[
        "packages/sdk/bin/bonus-build-js.js",
        example.to_str().expect("UTF-8 path"),
        "-o",
        output.to_str().expect("UTF-8 path"),
    ]);
    let built = match ok {
        true => Ok(output),
        false => Err(format!("building examples/{name} failed:\n{stderr}")),
    };
    builds.push((name.to_string(), built.clone()));
    built.unwrap_or_else(|e| panic!("{e}"))
}

/// One compiled-code cache for every test process, so a 12 MiB JS
/// component is compiled once per run, not once per server.
pub fn shared_cache_dir() -> PathBuf {
    root().join("target/bonus-test-cache")
}

/// The `wasmtime` CLI (version 48) for tests that check a component runs
/// unchanged under `wasmtime serve`: `$BONUS_WASMTIME`, else
/// `target/wasmtime-cli/bin/wasmtime` (where `.ci/run` installs it), else
/// `wasmtime` on PATH. `None` only when `BONUS_SKIP_WASMTIME=1` says to skip;
/// otherwise a missing binary fails the test with how to install it.
pub fn wasmtime_bin() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BONUS_WASMTIME").map(PathBuf::from),
        Some(root().join("target/wasmtime-cli/bin/wasmtime")),
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("wasmtime"))
                .find(|bin| bin.is_file())
        }),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|bin| bin.is_file()) {
        return Some(found);
    }
    if std::env::var("BONUS_SKIP_WASMTIME").is_ok_and(|v| v == "1") {
        eprintln!("skipping: no wasmtime CLI and BONUS_SKIP_WASMTIME=1");
        return None;
    }
    panic!(
        "no wasmtime CLI: run `.ci/run` (installs it into target/wasmtime-cli), or \
         `cargo install wasmtime-cli --version 48.0.8 --locked`, or set BONUS_WASMTIME=/path/to/wasmtime; \
         set BONUS_SKIP_WASMTIME=1 to skip this check"
    )
}

/// A `wasmtime serve` process on an ephemeral loopback port; killed on drop.
pub struct WasmtimeServe {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
}

impl WasmtimeServe {
    /// Starts `wasmtime serve -Scli WASM` and waits until it listens.
    pub fn start(wasmtime: &Path, wasm: &Path) -> WasmtimeServe {
        let mut child = Command::new(wasmtime)
            .args(["serve", "-Scli", "--addr", "127.0.0.1:0"])
            .arg(wasm)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning wasmtime serve");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut addr = None;
        let found = wait_until(Duration::from_secs(300), || {
            let log = output.lock().unwrap_or_else(|e| e.into_inner());
            addr = log
                .lines()
                .find_map(|line| line.strip_prefix("Serving HTTP on "))
                .map(|url| url.trim_end_matches('/').to_string());
            // Stop waiting as soon as it exits (a bad flag, a missing feature).
            addr.is_some() || child.try_wait().is_ok_and(|status| status.is_some())
        });
        // Let the reader threads drain what it printed before exiting.
        if addr.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = output.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match (found, addr) {
            (true, Some(addr)) => WasmtimeServe { child, addr },
            _ => {
                let _ = child.kill();
                panic!("wasmtime serve did not start:\n{log}");
            }
        }
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `bonus validator` process; killed on drop.
pub struct ValidatorProcess {
    daemon: Daemon,
    /// `http://127.0.0.1:PORT` of its query API.
    pub api: String,
}

impl ValidatorProcess {
    /// Starts validator `index` of the network `bonus ledger genesis` made in `net`.
    pub fn start(net: &Path, index: usize) -> ValidatorProcess {
        let mut command = Command::new(bonus_bin());
        command
            .args(["validator", "--json", "--leader-timeout-ms", "500"])
            .arg("--genesis")
            .arg(net.join("genesis.json"))
            .arg("--key-file")
            .arg(net.join(format!("validator-{index}.key")))
            .arg("--data-dir")
            .arg(net.join(format!("v{index}")))
            .env("RUST_LOG", "warn");
        let (child, ready, stderr) = spawn_ready(command, "bonus validator");
        ValidatorProcess {
            daemon: Daemon { child, stderr },
            api: ready["api"].as_str().expect("api").to_string(),
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// `kill -TERM`, then waits (up to `timeout`) for it to exit; its exit
    /// status, or `None` if it is still running (it is then killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-s", "TERM", &self.daemon.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -s TERM failed");
        let mut status = None;
        wait_until(timeout, || {
            status = self.daemon.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            self.daemon.kill();
        }
        status
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.daemon.stderr()
    }

    /// `GET path` on its API as JSON (Null if unreachable or not JSON).
    pub fn get(&self, path: &str) -> serde_json::Value {
        let host = self.api.trim_start_matches("http://");
        if TcpStream::connect(host).is_err() {
            return serde_json::Value::Null;
        }
        match std::panic::catch_unwind(|| http_request(&self.api, "GET", path, &[], b"")) {
            Ok(response) => {
                serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null)
            }
            Err(_) => serde_json::Value::Null,
        }
    }

    /// Its finalized height (0 if unreachable).
    pub fn height(&self) -> u64 {
        self.get("/v1/ledger/status")["height"]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Where tests put servers on fixed ports: `(low, span)`, so that
/// `low..low + span + room` lies below the kernel's ephemeral range. A port
/// picked inside that range can be taken, between the check that it is free
/// and the server's bind, by any outgoing connection of a concurrent test.
pub fn fixed_ports(room: u16) -> (u32, u32) {
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    match ephemeral_low.checked_sub(LOW + u32::from(room)) {
        Some(span) if span >= 5_000 => (LOW, span),
        // A machine with a low ephemeral range: above it, and hope.
        _ => (61_000, 4_000 - u32::from(room)),
    }
}

/// A base port such that `base..base+n` and `base+100..base+100+n` are all
/// free on 127.0.0.1 right now (the layout `bonus ledger genesis` uses).
pub fn free_port_block(n: u16) -> u16 {
    // Tests in one process run concurrently: never hand out a block twice.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = (std::process::id() % 2_000) * 16 + u32::from(call) * 997;
    let (low, span) = fixed_ports(200);
    for attempt in 0..200u32 {
        let base = ((start + attempt * 211) % span + low) as u16;
        let ports = (0..n).flat_map(|i| [base + i, base + 100 + i]);
        let listeners: Vec<_> = ports
            .map(|port| std::net::TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if listeners.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no block of free loopback ports found");
}

/// `bonus ledger genesis` for `validators` validators in `net` (keys,
/// genesis.json and faucet.key), on free loopback ports.
pub fn ledger_genesis(home: &Path, net: &Path, validators: u16) {
    let base = free_port_block(validators);
    let (ok, _, stderr) = bonus(
        home,
        &[
            "ledger",
            "genesis",
            "--validators",
            &validators.to_string(),
            "--dir",
            net.to_str().expect("UTF-8 path"),
            "--base-port",
            &base.to_string(),
        ],
    );
    assert!(ok, "bonus ledger genesis failed: {stderr}");
}
