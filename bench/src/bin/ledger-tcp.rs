//! The ledger over real TCP on loopback: 4 `bonus validator` processes.
//!
//! - Finality: sequential transfers, each submitted to one validator's API
//!   and polled (every 1 ms) until final there; p50/p99. Anchor: the
//!   median round trip of a status query to the same API.
//! - Throughput: N pre-signed transfers from N/64 funded accounts (a
//!   signer may have 64 nonces waiting) submitted over keep-alive
//!   connections to all four validators; finalized transactions per
//!   second until the last is final on validator 0. Anchor: the same
//!   transactions applied by the state machine alone on one core.
//!
//!   With BATCH > 1, each request carries BATCH transactions
//!   (`POST /v1/ledger/txs/batch`) instead of one.
//!
//! Usage: `ledger-tcp BONUS_BINARY [SAMPLES] [TXS] [CONNECTIONS_PER_VALIDATOR] [BATCH]`

use anyhow::{Context as _, bail};
use bonus_ids::SecretKey;
use bonus_ledger::limits::MEMPOOL_NONCE_WINDOW;
use bonus_ledger::{ChainId, SignedTx, TxBody};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Validators(Vec<Child>);

impl Validators {
    /// CPU seconds (user + system) the validator processes used so far.
    fn cpu_seconds(&self) -> f64 {
        self.0
            .iter()
            .map(|child| cpu_seconds(&child.id().to_string()))
            .sum()
    }
}

/// CPU seconds (user + system) process `pid` ("self" for this one) used
/// so far; 0 if it is gone.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesized command name; utime and stime are
    // the 14th and 15th fields, in clock ticks.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

impl Drop for Validators {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One keep-alive HTTP/1 connection.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(host: &str) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Conn {
            sender,
            host: host.to_string(),
        })
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<serde_json::Value> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host)
            .body(Full::new(Bytes::from(body)))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: {status} {value}");
        }
        Ok(value)
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let bonus = PathBuf::from(args.next().context(
        "usage: ledger-tcp BONUS_BINARY [SAMPLES] [TXS] [CONNECTIONS_PER_VALIDATOR] [BATCH]",
    )?);
    let samples: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(200);
    let txs: u64 = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    // Each connection submits one transaction at a time, so too few of
    // them measure the client's round trips rather than the validators.
    let per_conn: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(2);
    let batch: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1);

    let dir = std::env::temp_dir().join(format!("bonus-ledger-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = dir.join("net");
    let base = 21_000 + (std::process::id() % 1_000) as u16 * 8;
    let status = Command::new(&bonus)
        .args([
            "ledger",
            "genesis",
            "--validators",
            "4",
            "-q",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(&net)
        .status()?;
    if !status.success() {
        bail!("bonus ledger genesis failed");
    }
    let validators = Validators(
        (0..4)
            .map(|i| spawn_validator(&bonus, &net, i))
            .collect::<anyhow::Result<_>>()?,
    );
    let hosts: Vec<String> = (0..4)
        .map(|i| format!("127.0.0.1:{}", base + 100 + i))
        .collect();
    let faucet = SecretKey::load(&net.join("faucet.key"))?;
    // A fresh account: a validator's balance also moves with fee rewards.
    let to = SecretKey::from_seed([0x70; 32]).public();

    // Wait for the network.
    let started = Instant::now();
    let mut conns = Vec::new();
    for host in &hosts {
        loop {
            if let Ok(mut conn) = Conn::open(host).await
                && conn.call("GET", "/v1/ledger/status", vec![]).await.is_ok()
            {
                conns.push(conn);
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("validator {host} did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    while conns[0].call("GET", "/v1/ledger/status", vec![]).await?["height"].as_u64() < Some(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Anchor: a status round trip.
    let mut rtts = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        conns[0].call("GET", "/v1/ledger/status", vec![]).await?;
        rtts.push(t.elapsed());
    }
    rtts.sort();

    let status = conns[0].call("GET", "/v1/ledger/status", vec![]).await?;
    let chain_id = parse_chain_id(status["chain_id"].as_str().context("no chain id")?)?;

    // Finality.
    let mut latencies = Vec::new();
    for nonce in 0..samples as u64 {
        let tx = SignedTx::sign(
            &faucet,
            &chain_id,
            nonce,
            TxBody::Transfer { to, amount: 1 },
        );
        let conn = &mut conns[nonce as usize % 4];
        let t = Instant::now();
        let accepted = conn.call("POST", "/v1/ledger/txs", tx.encode()).await?;
        let id = accepted["id"].as_str().context("no id")?.to_string();
        loop {
            let status = conn
                .call("GET", &format!("/v1/ledger/txs/{id}"), vec![])
                .await?;
            if status["status"] == "finalized" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let rtt = percentile(&rtts, 0.5);
    println!(
        "loopback finality, 4 validators, {samples} txs: p50 {:.1} ms, p99 {:.1} ms (status round trip p50 {:.3} ms; finality = {:.0}x)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(rtt),
        percentile(&latencies, 0.5).as_secs_f64() / rtt.as_secs_f64()
    );

    // Block finality as each validator measured it (its own proposals).
    let mut block_p50 = Vec::new();
    for conn in &mut conns {
        let status = conn.call("GET", "/v1/ledger/status", vec![]).await?;
        if let Some(p50) = status["finality_ms"]["p50"].as_f64() {
            block_p50.push(p50);
        }
    }
    block_p50.sort_by(f64::total_cmp);
    if let Some(median) = block_p50.get(block_p50.len() / 2) {
        println!(
            "loopback block finality (proposal to finalized, per validator p50s): {:?} ms, median {median:.1} ms",
            block_p50
                .iter()
                .map(|v| (v * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        );
    }

    // Throughput: fund enough senders that each has one window's worth.
    let window = MEMPOOL_NONCE_WINDOW;
    let senders: Vec<SecretKey> = (0..txs.div_ceil(window))
        .map(|i| {
            let mut seed = [0x5e; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            SecretKey::from_seed(seed)
        })
        .collect();
    let mut nonce = samples as u64;
    for group in senders.chunks(window as usize) {
        for sender in group {
            let fund = TxBody::Transfer {
                to: sender.public(),
                amount: 10 * window,
            };
            let tx = SignedTx::sign(&faucet, &chain_id, nonce, fund);
            conns[0].call("POST", "/v1/ledger/txs", tx.encode()).await?;
            nonce += 1;
        }
        wait_for_nonce(&mut conns[0], &faucet, nonce).await?;
    }
    let to_before = balance(&mut conns[0], &to).await?;
    let signed: Vec<Vec<u8>> = senders
        .iter()
        .flat_map(|sender| {
            (0..window).map(|n| {
                SignedTx::sign(sender, &chain_id, n, TxBody::Transfer { to, amount: 1 }).encode()
            })
        })
        .take(txs as usize)
        .collect();
    let anchor = state_machine_rate(&senders, &to, txs);
    let cpu_before = validators.cpu_seconds();
    let client_before = cpu_seconds("self");
    let height_before = conns[0].call("GET", "/v1/ledger/status", vec![]).await?["height"]
        .as_u64()
        .unwrap_or(0);
    let t = Instant::now();
    let mut tasks = Vec::new();
    let chunks = hosts.len() * per_conn;
    for (index, chunk) in signed.chunks(signed.len().div_ceil(chunks)).enumerate() {
        let host = hosts[index % hosts.len()].clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&host).await?;
            if batch <= 1 {
                for tx in chunk {
                    conn.call("POST", "/v1/ledger/txs", tx).await?;
                }
                return anyhow::Ok(());
            }
            for txs in chunk.chunks(batch) {
                let mut body = Vec::new();
                for tx in txs {
                    bonus_ledger::tx::push_frame(&mut body, tx);
                }
                let answer = conn.call("POST", "/v1/ledger/txs/batch", body).await?;
                let results = answer["results"].as_array().context("no results")?;
                if let Some(refused) = results.iter().find(|r| r.get("error").is_some()) {
                    bail!("a transaction of the batch was refused: {refused}");
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let submitted = t.elapsed();
    loop {
        let done = balance(&mut conns[0], &to).await? - to_before;
        if done >= txs {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("only {done} of {txs} transactions final after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = t.elapsed();
    let cpu = validators.cpu_seconds() - cpu_before;
    let client = cpu_seconds("self") - client_before;
    let blocks = conns[0].call("GET", "/v1/ledger/status", vec![]).await?["height"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(height_before);
    let rate = txs as f64 / elapsed.as_secs_f64();
    let per_validator_us = cpu / 4.0 / txs as f64 * 1e6;
    println!(
        "validator CPU per finalized transfer: {per_validator_us:.0} µs each (4 validators, {cpu:.2} CPU-s in all, \
         incl. block production while idle); with a core per validator that is {:.0} tx/s; \
         the client used {:.0} µs per transfer ({client:.2} CPU-s) of the same cores",
        1e6 / per_validator_us,
        client / txs as f64 * 1e6
    );
    println!(
        "loopback throughput, 4 validators: {txs} signed transfers final in {:.2} s = {:.0} tx/s \
         in {blocks} blocks (submitted over {chunks} connections, {batch} per request, in {:.2} s; state machine alone on one core: {:.0} tx/s; ratio {:.2})",
        elapsed.as_secs_f64(),
        rate,
        submitted.as_secs_f64(),
        anchor,
        rate / anchor
    );
    drop(validators);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn spawn_validator(bonus: &Path, net: &Path, i: usize) -> anyhow::Result<Child> {
    Ok(Command::new(bonus)
        .args(["validator", "-q"])
        .arg("--genesis")
        .arg(net.join("genesis.json"))
        .arg("--key-file")
        .arg(net.join(format!("validator-{i}.key")))
        .arg("--data-dir")
        .arg(net.join(format!("v{i}")))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// Transfers per second through `State::apply` alone (signature check
/// included), single-threaded, from the same senders in one block.
fn state_machine_rate(senders: &[SecretKey], to: &bonus_ids::PublicKey, txs: u64) -> f64 {
    let funds: Vec<(&SecretKey, u64)> = senders
        .iter()
        .map(|s| (s, 10 * MEMPOOL_NONCE_WINDOW))
        .collect();
    let mut h = bonus_ledger::sim::Harness::new("anchor", bonus_ledger::Params::DEV, &funds);
    let chain_id = h.chain_id();
    let signed: Vec<SignedTx> = senders
        .iter()
        .flat_map(|sender| {
            (0..MEMPOOL_NONCE_WINDOW)
                .map(|n| {
                    SignedTx::sign(
                        sender,
                        &chain_id,
                        n,
                        TxBody::Transfer { to: *to, amount: 1 },
                    )
                })
                .collect::<Vec<_>>()
        })
        .take(txs as usize)
        .collect();
    let ctx = h.next_block(1);
    let t = Instant::now();
    for tx in &signed {
        h.state.apply(tx, ctx).expect("applies");
    }
    txs as f64 / t.elapsed().as_secs_f64()
}

async fn balance(conn: &mut Conn, key: &bonus_ids::PublicKey) -> anyhow::Result<u64> {
    let account = conn
        .call("GET", &format!("/v1/ledger/accounts/{key}"), vec![])
        .await?;
    let text = account["balance"].as_str().context("no balance")?;
    Ok(text.parse()?)
}

async fn wait_for_nonce(conn: &mut Conn, key: &SecretKey, nonce: u64) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let account = conn
            .call(
                "GET",
                &format!("/v1/ledger/accounts/{}", key.public()),
                vec![],
            )
            .await?;
        let now: u64 = account["nonce"].as_str().context("no nonce")?.parse()?;
        if now >= nonce {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("funding transfers not final after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn parse_chain_id(text: &str) -> anyhow::Result<ChainId> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect::<Result<_, _>>()?;
    Ok(ChainId(bytes.try_into().map_err(|_| {
        anyhow::anyhow!("chain id is not 32 bytes")
    })?))
}
