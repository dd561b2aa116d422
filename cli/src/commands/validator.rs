//! `bonus validator`: run a ledger validator and its query API.

use crate::commands::GlobalArgs;
use crate::output;
use anyhow::Context as _;
use bonus_ids::SecretKey;
use bonus_ledger::chain::{Chain, Timeouts, tcp};
use bonus_ledger::genesis::Genesis;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Run a ledger validator: BFT consensus (simplex) with the other genesis
/// validators over encrypted p2p, blocks and state in redb under
/// --data-dir, and the ledger query API over HTTP.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example (a 4-validator network on this machine):\n  \
    bonus ledger genesis --validators 4 --dir /tmp/net\n  \
    bonus validator --genesis /tmp/net/genesis.json --key-file /tmp/net/validator-0.key --data-dir /tmp/net/v0\n  \
    (and likewise validator-1..3; each takes its p2p and API address from the genesis file)")]
pub struct ValidatorArgs {
    /// The genesis file (validators, their addresses, initial balances).
    #[arg(long)]
    genesis: PathBuf,
    /// This validator's key file.
    #[arg(long)]
    key_file: PathBuf,
    /// Where blocks, certificates, state and consensus storage live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Query API address [default: this validator's `api` in the genesis file].
    #[arg(long)]
    api: Option<SocketAddr>,
    /// How long to wait for a leader's proposal before voting to skip, ms.
    #[arg(long, default_value_t = 1000)]
    leader_timeout_ms: u64,
}

pub fn run(global: &GlobalArgs, args: ValidatorArgs) -> anyhow::Result<()> {
    let genesis = Genesis::load(&args.genesis)?;
    let key = SecretKey::load(&args.key_file)
        .with_context(|| format!("cannot load the key file {}", args.key_file.display()))?;
    let me = key.public().to_string();
    let entry = genesis
        .validators
        .iter()
        .find(|v| v.key == me)
        .with_context(|| {
            format!(
                "key {me} is not a validator in {}; use one of its validators' key files",
                args.genesis.display()
            )
        })?
        .clone();
    let api = args.api.or(entry.api).with_context(
        || "no API address: pass --api or set this validator's \"api\" in the genesis file",
    )?;
    // Bind before starting consensus so a taken port fails fast.
    let listener = std::net::TcpListener::bind(api)
        .with_context(|| format!("cannot listen on {api}; is another validator running?"))?;
    listener.set_nonblocking(true)?;
    let leader = std::time::Duration::from_millis(args.leader_timeout_ms.max(1));
    let timeouts = Timeouts {
        leader,
        certification: leader * 2,
        retry: leader,
    };
    let (json, quiet) = (global.json, global.quiet);
    let p2p = entry.p2p;
    tcp::run(
        tcp::TcpConfig {
            key,
            genesis,
            data_dir: args.data_dir,
            listen: p2p,
            timeouts,
        },
        move |chain| {
            let height = chain.height();
            std::thread::Builder::new()
                .name("ledger-api".into())
                .spawn(move || serve_api(listener, chain))
                .expect("spawn the API thread");
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "api": format!("http://{api}"), "key": me, "p2p": p2p.to_string(), "height": height })
                );
            }
            output::status(
                quiet,
                "Validating",
                format!("as {me}; API http://{api}, p2p {p2p}, resuming at height {height}"),
            );
        },
    )?;
    Ok(())
}

fn serve_api(listener: std::net::TcpListener, chain: Arc<Chain>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the API runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "cannot use the API listener");
                return;
            }
        };
        crate::http_server::serve(listener, move |request| {
            let chain = chain.clone();
            async move { answer(&chain, request).await }
        })
        .await;
    });
}

async fn answer(
    chain: &Chain,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let body = match Limited::new(request.into_body(), bonus_ledger::api::BODY_BYTES_MAX)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return json(
                413,
                serde_json::json!({ "error": format!("a transaction is at most {} bytes", bonus_ledger::api::BODY_BYTES_MAX) }),
            );
        }
    };
    let (status, value) = bonus_ledger::api::handle(chain, &method, &path, &body);
    json(status, value)
}

fn json(status: u16, value: serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
