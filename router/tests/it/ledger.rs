//! Routes read from a ledger and attestations written to it, against a
//! fake ledger that speaks the query API.

use crate::support::{Behaviour, FakeWorker, get, send_with, wait_until};
use bonus_ids::{ManifestId, PublicKey, SecretKey};
use bonus_ledger::api::{
    AccountView, ApiError, Finality, ManifestView, NameView, Names, NodeView, Nodes, Status,
    Submitted, TxStatusView,
};
use bonus_ledger::client::LedgerClient;
use bonus_ledger::{Params, SignedTx, TxBody};
use bonus_router::{Router, RouterConfig, RouterLimits};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const PERIOD_MS: u64 = 60_000;

/// What the fake ledger holds and has been sent.
struct Book {
    height: u64,
    names: Vec<NameView>,
    nodes: Vec<NodeView>,
    manifests: Vec<ManifestView>,
    /// Refusals for the next submissions, in order.
    refusals: VecDeque<String>,
    submitted: Vec<SignedTx>,
}

type Shared = Arc<Mutex<Book>>;

async fn start_ledger(book: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake ledger");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let book = book.clone();
            let service = hyper::service::service_fn(move |request| answer(book.clone(), request));
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

fn json<T: serde::Serialize>(status: u16, value: &T) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(
        serde_json::to_vec(value).expect("json"),
    )));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("a status");
    response
}

async fn answer(
    book: Shared,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let body = request
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut book = book.lock().expect("the book");
    let segments: Vec<&str> = path.trim_start_matches("/v1/ledger/").split('/').collect();
    Ok(match (method.as_str(), segments.as_slice()) {
        ("GET", ["status"]) => json(200, &status(book.height)),
        ("GET", ["names"]) => json(
            200,
            &Names {
                names: book.names.clone(),
            },
        ),
        ("GET", ["nodes"]) => json(
            200,
            &Nodes {
                nodes: book.nodes.clone(),
            },
        ),
        ("GET", ["manifests", hex]) => {
            match book.manifests.iter().find(|m| m.manifest_id.ends_with(hex)) {
                Some(view) => json(200, view),
                None => json(
                    404,
                    &ApiError {
                        error: "not deployed".into(),
                    },
                ),
            }
        }
        ("GET", ["accounts", key]) => json(200, &account(key, book.submitted.len() as u64)),
        ("POST", ["txs"]) => submit(&mut book, &body),
        ("GET", ["txs", _]) => json(
            200,
            &TxStatusView::Finalized {
                height: book.height,
            },
        ),
        _ => json(
            404,
            &ApiError {
                error: format!("no {path}"),
            },
        ),
    })
}

fn account(key: &str, nonce: u64) -> AccountView {
    AccountView {
        account: key.to_string(),
        balance: 0,
        nonce,
        next_nonce: nonce,
        stake: 0,
        unbonding: vec![],
        unpaid: false,
        slashed: false,
    }
}

/// Takes a transaction, or refuses it with the next refusal.
fn submit(book: &mut Book, body: &[u8]) -> http::Response<Full<Bytes>> {
    if let Some(error) = book.refusals.pop_front() {
        return json(400, &ApiError { error });
    }
    let tx = SignedTx::decode(body).expect("a transaction");
    let id: String = tx.id().iter().map(|b| format!("{b:02x}")).collect();
    book.submitted.push(tx);
    let submitted = Submitted {
        id,
        status: "pending".into(),
    };
    json(202, &submitted)
}

fn status(height: u64) -> Status {
    Status {
        chain_id: "ab".repeat(32),
        height,
        time_ms: 0,
        period: 0,
        state_root: "00".repeat(32),
        validators: vec![],
        mempool: 0,
        fee_pool: 0,
        total_supply: 0,
        tx_fee: 1,
        params: Params {
            period_ms: PERIOD_MS,
            ..Params::DEV
        },
        finality_ms: Finality {
            p50: None,
            p99: None,
            samples: 0,
        },
    }
}

fn node(key: PublicKey, role: &str, operator: PublicKey, endpoint: String) -> NodeView {
    NodeView {
        key: key.to_string(),
        role: role.into(),
        operator: operator.to_string(),
        endpoint,
        region: String::new(),
        price_per_million_fuel: 5,
        stake: 1_000,
    }
}

/// A ledger routing `hello` to `manifest` on `worker`; a router reading it.
async fn network(worker: &FakeWorker, manifest: ManifestId, refusals: &[&str]) -> (Shared, Router) {
    let router_key = SecretKey::from_seed([200; 32]);
    let owner = SecretKey::from_seed([100; 32]).public();
    let operator = SecretKey::from_seed([101; 32]).public();
    let book = Arc::new(Mutex::new(Book {
        height: 7,
        names: vec![NameView {
            name: "hello".into(),
            owner: owner.to_string(),
            manifest_id: manifest.to_string(),
            traffic: vec![],
            spend_per_period_max: 1_000,
            spent_this_period: 0,
            unpaid: false,
        }],
        nodes: vec![
            node(
                router_key.public(),
                "router",
                operator,
                "http://127.0.0.1:1".into(),
            ),
            node(
                worker.key,
                "worker",
                owner,
                format!("{} /ip4/127.0.0.1/tcp/1", worker.url),
            ),
        ],
        manifests: vec![ManifestView {
            manifest_id: manifest.to_string(),
            name: "hello".into(),
            owner: owner.to_string(),
            fuel_per_invocation_max: 1_000_000,
            price_per_million_fuel_max: 10,
            signed: String::new(),
        }],
        refusals: refusals.iter().map(|r| r.to_string()).collect(),
        submitted: vec![],
    }));
    let url = start_ledger(book.clone()).await;
    let config = RouterConfig {
        key: router_key,
        ledger: Some(Arc::new(LedgerClient::new(&[url]).expect("a ledger URL"))),
        limits: RouterLimits {
            refresh_interval: Duration::from_millis(50),
            attest_interval: Duration::from_millis(100),
            ..RouterLimits::default()
        },
    };
    let router = Router::bind("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("bind");
    (book, router)
}

/// Sum of attested counts of (manifest, worker) in the book, checking
/// every attestation on the way.
fn attested(book: &Shared, manifest: ManifestId, worker: PublicKey, router: PublicKey) -> u64 {
    let book = book.lock().expect("the book");
    let now_period = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
        / PERIOD_MS;
    let mut sum = 0;
    for tx in &book.submitted {
        assert_eq!(tx.signer, router, "signed by the router's key");
        let TxBody::Attest(attestation) = &tx.body else {
            panic!("only attestations: {tx:?}");
        };
        assert!(attestation.period + 1 >= now_period && attestation.period <= now_period);
        for (m, w, n) in &attestation.counts {
            assert_eq!((*m, *w), (manifest, worker));
            sum += n;
        }
    }
    sum
}

#[tokio::test]
async fn routes_follow_the_ledger_and_forwarded_requests_are_attested() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let manifest = ManifestId::of(b"hello v1");
    let (book, router) = network(&worker, manifest, &[]).await;
    let (addr, router_key) = (router.local_addr(), router.status().router);
    let url = format!("http://{addr}/fn/hello/");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(router.run(async {
        let _ = stopped.await;
    }));
    wait_until("the ledger's route to work", || async {
        get(&url, None).await.status == 200
    })
    .await;
    // The worker is told the period each request is attested in, whatever
    // the client claims, so its receipt lands where the router vouches.
    let mut told = std::collections::BTreeMap::<u64, u64>::new();
    for _ in 0..4 {
        let forged = [("x-bonus-period", "5")];
        let answer = send_with("GET", &url, &forged, Bytes::new()).await;
        assert_eq!(answer.status, 200);
        let period = answer.header("x-echo-period").parse().expect("a period");
        *told.entry(period).or_default() += 1;
    }
    assert!(
        !told.contains_key(&5),
        "a client cannot pick the period: {told:?}"
    );
    let router_key: PublicKey = router_key.parse().expect("a key");
    wait_until("5 attested", || async {
        attested(&book, manifest, worker.key, router_key) == 5
    })
    .await;
    {
        let book = book.lock().expect("the book");
        let mut by_period = std::collections::BTreeMap::<u64, u64>::new();
        for tx in &book.submitted {
            let TxBody::Attest(attestation) = &tx.body else {
                panic!("only attestations: {tx:?}");
            };
            let n: u64 = attestation.counts.iter().map(|(_, _, n)| n).sum();
            *by_period.entry(attestation.period).or_default() += n;
        }
        for (period, n) in &told {
            assert!(
                by_period.get(period).is_some_and(|attested| attested >= n),
                "{n} requests told period {period}, attested {by_period:?}"
            );
        }
    }
    // A new height marks the name unpaid: the router follows.
    {
        let mut book = book.lock().expect("the book");
        book.names[0].unpaid = true;
        book.height += 1;
    }
    // Requests still forwarded until the router sees the new height count.
    let mut forwarded_before_402 = 0;
    loop {
        match get(&url, None).await.status {
            200 => forwarded_before_402 += 1,
            402 => break,
            other => panic!("unexpected {other}"),
        }
        assert!(
            forwarded_before_402 < 1_000,
            "the router never saw the new height"
        );
    }
    let status: bonus_router::RouterStatus = serde_json::from_str(
        &get(&format!("http://{addr}/v1/router/status"), None)
            .await
            .body,
    )
    .expect("json");
    assert_eq!(status.height, Some(8));
    // Shutdown submits whatever is still pending, once.
    let _ = shutdown.send(());
    assert!(matches!(running.await, Ok(Ok(()))));
    assert_eq!(
        attested(&book, manifest, worker.key, router_key),
        5 + forwarded_before_402,
        "every forwarded request attested once"
    );
}

#[tokio::test]
async fn refused_attestations_are_retried_and_stale_periods_dropped() {
    let worker = FakeWorker::start(1, Behaviour::Echo, Duration::ZERO).await;
    let manifest = ManifestId::of(b"hello v1");
    let refusals = [
        "the mempool is full",
        "period 1 is outside the settlement window (current period 9)",
    ];
    let (book, router) = network(&worker, manifest, &refusals).await;
    let router_key: PublicKey = router.status().router.parse().expect("a key");
    let url = format!("http://{}/fn/hello/", router.local_addr());
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(router.run(async {
        let _ = stopped.await;
    }));
    wait_until("the ledger's route to work", || async {
        get(&url, None).await.status == 200
    })
    .await;
    // The first round is refused for a passing reason and put back; the
    // second is refused for its period and dropped.
    wait_until("both refusals to be used", || async {
        book.lock().expect("book").refusals.is_empty()
    })
    .await;
    assert_eq!(attested(&book, manifest, worker.key, router_key), 0);
    assert_eq!(get(&url, None).await.status, 200);
    wait_until("the later request to be attested", || async {
        attested(&book, manifest, worker.key, router_key) == 1
    })
    .await;
    let _ = shutdown.send(());
    assert!(matches!(running.await, Ok(Ok(()))));
}
