//! Fake workers, a router per test, and raw and hyper clients.

use bonus_ids::{ManifestId, PublicKey, SecretKey};
use bonus_router::{RouteTable, Router, RouterConfig, RouterLimits, RouterStatus};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any condition may take before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What a fake worker does with `/v1/run/...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers 200 with what it saw (see [`FakeWorker`]).
    Echo,
    /// Reads the request, then closes the connection without answering.
    DropRun,
}

/// A worker stand-in. `/v1/health` answers "ok" after `health_delay`
/// (changed with [`FakeWorker::set_health_delay`]);
/// `/v1/run/<hex><path>` counts the request and, for [`Behaviour::Echo`],
/// answers with `x-echo-path`, `x-echo-method`, `x-echo-request-id`,
/// `x-echo-forwarded-host`, `x-echo-router`, `x-bonus-fuel: 42`,
/// `x-bonus-manifest-id` and the request body. A function path starting
/// with `/slow` answers after 700 ms.
pub struct FakeWorker {
    pub key: PublicKey,
    pub url: String,
    pub runs: Arc<AtomicU64>,
    health_delay_us: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeWorker {
    pub async fn start(seed: u8, behaviour: Behaviour, health_delay: Duration) -> FakeWorker {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake worker");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let runs = Arc::new(AtomicU64::new(0));
        let counter = runs.clone();
        let delay_us = u64::try_from(health_delay.as_micros()).expect("a test delay");
        let health_delay_us = Arc::new(AtomicU64::new(delay_us));
        let delay = health_delay_us.clone();
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it closes every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counter, delay) = (counter.clone(), delay.clone());
                let service = hyper::service::service_fn(move |request| {
                    let health_delay = Duration::from_micros(delay.load(Ordering::SeqCst));
                    answer(request, behaviour, health_delay, counter.clone())
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeWorker {
            key: SecretKey::from_seed([seed; 32]).public(),
            url,
            runs,
            health_delay_us,
            task,
        }
    }

    /// From now on, health probes are answered after `delay`.
    pub fn set_health_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).expect("a test delay");
        self.health_delay_us.store(micros, Ordering::SeqCst);
    }

    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    /// Closes its port and every connection.
    pub async fn kill(&self) {
        self.task.abort();
        let port = self.url.rsplit(':').next().expect("a port").to_string();
        // Wait until the port refuses connections.
        wait_until("the killed worker's port to close", || async {
            TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .is_err()
        })
        .await;
    }
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    request: http::Request<Incoming>,
    behaviour: Behaviour,
    health_delay: Duration,
    runs: Arc<AtomicU64>,
) -> Result<http::Response<Full<Bytes>>, std::io::Error> {
    let path = request.uri().path().to_string();
    if path == "/v1/health" {
        tokio::time::sleep(health_delay).await;
        return Ok(http::Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    let Some(rest) = path.strip_prefix("/v1/run/") else {
        let mut response = http::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        return Ok(response);
    };
    runs.fetch_add(1, Ordering::SeqCst);
    let hex = rest.get(..64).unwrap_or_default().to_string();
    let echo_path = request
        .uri()
        .path_and_query()
        .map(|pq| pq.to_string())
        .unwrap_or_default();
    let header = |name: &str| request.headers().get(name).cloned();
    let seen = [
        ("x-echo-request-id", header("x-bonus-request-id")),
        ("x-echo-forwarded-host", header("x-forwarded-host")),
        ("x-echo-router", header("x-bonus-router")),
        ("x-echo-period", header("x-bonus-period")),
        ("x-bonus-request-id", header("x-bonus-request-id")),
    ];
    let method = request.method().to_string();
    let body = request.into_body().collect().await.map(|c| c.to_bytes());
    if behaviour == Behaviour::DropRun {
        // An error from the service makes hyper close the connection.
        return Err(std::io::Error::other("dropping the connection on purpose"));
    }
    if rest[hex.len()..].starts_with("/slow") {
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let mut response = http::Response::new(Full::new(body.unwrap_or_default()));
    let headers = response.headers_mut();
    for (name, value) in seen {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
    headers.insert(
        "x-echo-path",
        echo_path.parse().expect("a path is a header value"),
    );
    headers.insert(
        "x-echo-method",
        method.parse().expect("a method is a header value"),
    );
    headers.insert("x-bonus-fuel", 42.into());
    headers.insert(
        "x-bonus-manifest-id",
        format!("manifest:{hex}").parse().expect("hex"),
    );
    Ok(response)
}

/// A router serving on 127.0.0.1, stopped when dropped.
pub struct TestRouter {
    pub addr: SocketAddr,
    pub key: PublicKey,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), bonus_router::RouterError>>>,
}

impl TestRouter {
    pub async fn start(limits: RouterLimits, table: RouteTable) -> TestRouter {
        TestRouter::start_with(limits, table, None).await
    }

    /// With a worker in the router's process.
    pub async fn start_with(
        limits: RouterLimits,
        table: RouteTable,
        local: Option<Arc<dyn bonus_router::LocalWorker>>,
    ) -> TestRouter {
        let key = SecretKey::from_seed([200; 32]);
        let public = key.public();
        let config = RouterConfig {
            key,
            ledger: None,
            limits,
        };
        let router = Router::bind("127.0.0.1:0".parse().expect("an address"), config)
            .await
            .expect("bind the router");
        router.set_table(table);
        if let Some(local) = local {
            router.set_local_worker(local);
        }
        let addr = router.local_addr();
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(router.run(async {
            let _ = stopped.await;
        }));
        TestRouter {
            addr,
            key: public,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Starts shutdown; `task` then completes.
    pub fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn status(&self) -> RouterStatus {
        let response = get(&self.url("/v1/router/status"), None).await;
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str(&response.body).expect("status JSON")
    }

    /// Waits until `n` workers are healthy.
    pub async fn wait_healthy(&self, n: usize) {
        wait_until("workers to be healthy", || async {
            self.status()
                .await
                .workers
                .iter()
                .filter(|w| w.healthy)
                .count()
                == n
        })
        .await;
    }
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `condition` until it holds; panics after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// `GET url` with an optional Host header.
pub async fn get(url: &str, host: Option<&str>) -> Answer {
    send("GET", url, host, Bytes::new()).await
}

pub async fn send(method: &str, url: &str, host: Option<&str>, body: Bytes) -> Answer {
    let host: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
    send_with(method, url, &host, body).await
}

/// [`send`] with extra headers.
pub async fn send_with(method: &str, url: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body)).expect("a request");
    let response = tokio::time::timeout(DEADLINE, client().request(request))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A table with one worker per `workers` entry (price 5) and the name
/// `hello` → `manifest` (price max 10).
pub fn table(workers: &[&FakeWorker], manifest: ManifestId) -> RouteTable {
    let mut table = RouteTable::new();
    for worker in workers {
        table
            .insert_worker(worker.key, &worker.url, 5)
            .expect("a valid worker");
    }
    let owner = SecretKey::from_seed([100; 32]).public();
    table
        .insert_name(
            "hello",
            bonus_router::NameRoute::single(owner, manifest, 10),
        )
        .expect("a valid name");
    table
}

/// Sends raw bytes on `stream` and reads one response (head and a
/// Content-Length body): (status, head, body).
pub async fn raw_exchange(stream: &mut TcpStream, bytes: &[u8]) -> (u16, String, String) {
    stream.write_all(bytes).await.expect("write");
    read_response(stream).await
}

pub async fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed inside a body");
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned();
    (status, head, body)
}

/// Waits until the peer closes `stream` (EOF or reset); how long it took.
pub async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + deadline).into(), stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

pub const HEALTH_REQUEST: &[u8] = b"GET /v1/router/health HTTP/1.1\r\nHost: localhost\r\n\r\n";
