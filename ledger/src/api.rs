//! The query API, independent of any HTTP framework: a request's method,
//! path and body in, a status and a JSON body out. The node serves it over
//! HTTP; the CLI and the JS client read it.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/ledger/status` | height, state root, validators, mempool size |
//! | GET | `/v1/ledger/accounts/<ed25519:hex>` | balance, nonce, stake, unbonding |
//! | GET | `/v1/ledger/names` and `/v1/ledger/names/<name>` | owner, manifest, traffic, unpaid |
//! | GET | `/v1/ledger/nodes` | registered workers and routers |
//! | GET | `/v1/ledger/batches/<worker>/<sequence>` | whether the batch settled |
//! | GET | `/v1/ledger/blocks/<height>` | the block and its finalization certificate |
//! | GET | `/v1/ledger/txs/<id hex>` | pending, finalized (height) or unknown |
//! | POST | `/v1/ledger/txs` | submit an encoded signed transaction |

use crate::chain::{Chain, TxStatus};
use crate::tx::TxBody;
use crate::{NodeRole, State};
use bonus_ids::PublicKey;
use serde_json::{Value, json};

/// Largest request body: one transaction.
pub const MAX_BODY_BYTES: usize = crate::tx::MAX_TX_BYTES;

/// Answers one query. `status` is an HTTP status code.
pub fn handle(chain: &Chain, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let segments: Vec<&str> = path
        .trim_start_matches("/v1/ledger")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (method, segments.as_slice()) {
        ("GET", ["status"]) => (200, status(chain)),
        ("GET", ["accounts", key]) => match key.parse::<PublicKey>() {
            Ok(key) => (200, account(&chain.state(), &key)),
            Err(e) => bad(format!("invalid account {key:?}: {e}")),
        },
        ("GET", ["names"]) => {
            let state = chain.state();
            let names: Vec<Value> = state.names().map(|(n, _)| name(&state, n)).collect();
            (200, json!({ "names": names }))
        }
        ("GET", ["names", n]) => {
            let state = chain.state();
            match state.name(n) {
                Some(_) => (200, name(&state, n)),
                None => (
                    404,
                    json!({ "error": format!("no name {n:?} on the ledger") }),
                ),
            }
        }
        ("GET", ["nodes"]) => {
            let state = chain.state();
            let nodes: Vec<Value> = state
                .nodes()
                .map(|(key, node)| {
                    json!({
                        "key": key.to_string(),
                        "role": match node.role { NodeRole::Worker => "worker", NodeRole::Router => "router" },
                        "endpoint": node.endpoint,
                        "region": node.region,
                        "price_per_million_fuel": node.price_per_million_fuel,
                        "stake": state.account(key).map_or(0, |a| a.stake),
                    })
                })
                .collect();
            (200, json!({ "nodes": nodes }))
        }
        ("GET", ["batches", worker, sequence]) => {
            let (Ok(worker), Ok(sequence)) = (worker.parse::<PublicKey>(), sequence.parse::<u64>())
            else {
                return bad("expected /v1/ledger/batches/<ed25519:hex>/<sequence>".into());
            };
            let settled = chain.state().is_settled(&worker, sequence);
            (
                200,
                json!({ "worker": worker.to_string(), "sequence": sequence, "settled": settled }),
            )
        }
        ("GET", ["blocks", height]) => {
            let Ok(height) = height.parse::<u64>() else {
                return bad(format!("invalid height {height:?}"));
            };
            block(chain, height)
        }
        ("GET", ["txs", id]) => {
            let Some(id) = parse_hex32(id) else {
                return bad("expected a 64-hex-digit transaction id".into());
            };
            let status = match chain.status(&id) {
                TxStatus::Pending => json!({ "status": "pending" }),
                TxStatus::Finalized(height) => json!({ "status": "finalized", "height": height }),
                TxStatus::Unknown => json!({ "status": "unknown" }),
            };
            (200, status)
        }
        ("POST", ["txs"]) => match chain.submit(body) {
            Ok(id) => (202, json!({ "id": hex(&id), "status": "pending" })),
            Err(e) => bad(e.to_string()),
        },
        _ => (
            404,
            json!({ "error": format!("no such ledger endpoint: {method} {path}; see GET /v1/ledger/status") }),
        ),
    }
}

fn bad(reason: String) -> (u16, Value) {
    (400, json!({ "error": reason }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn status(chain: &Chain) -> Value {
    let state = chain.state();
    let mut finality = chain.finality_samples();
    finality.sort();
    let pick = |q: f64| {
        finality
            .get(((finality.len().max(1) - 1) as f64 * q).round() as usize)
            .map(|d| d.as_secs_f64() * 1e3)
    };
    json!({
        "finality_ms": { "p50": pick(0.5), "p99": pick(0.99), "samples": finality.len() },
        "height": chain.height(),
        "state_root": hex(&state.root()),
        "validators": state.validators().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "mempool": chain.mempool_len(),
        "fee_pool": state.fee_pool(),
        "total_supply": state.total_supply().to_string(),
    })
}

fn account(state: &State, key: &PublicKey) -> Value {
    let account = state.account(key).cloned().unwrap_or_default();
    json!({
        "account": key.to_string(),
        "balance": account.balance,
        "nonce": account.nonce,
        "stake": account.stake,
        "unbonding": account.unbonding.iter().map(|(amount, at)| json!({ "amount": amount, "at_height": at })).collect::<Vec<_>>(),
        "slashed": state.is_slashed(key),
    })
}

fn name(state: &State, n: &str) -> Value {
    let Some(entry) = state.name(n) else {
        return Value::Null;
    };
    json!({
        "name": n,
        "owner": entry.owner.to_string(),
        "manifest_id": entry.manifest_id.to_string(),
        "traffic": entry.traffic.iter().map(|(m, w)| json!({ "manifest_id": m.to_string(), "weight": w })).collect::<Vec<_>>(),
        "unpaid": entry.unpaid,
    })
}

fn block(chain: &Chain, height: u64) -> (u16, Value) {
    let store = chain.store();
    let (block, certificate) = match (store.block(height), store.certificate(height)) {
        (Ok(Some(block)), Ok(certificate)) => (block, certificate),
        (Ok(None), _) => {
            return (
                404,
                json!({ "error": format!("no finalized block at height {height} (finalized height is {})", chain.height()) }),
            );
        }
        (Err(e), _) | (_, Err(e)) => return (500, json!({ "error": e.to_string() })),
    };
    let txs: Vec<Value> = block
        .txs
        .iter()
        .map(|tx| {
            json!({
                "id": hex(&tx.id()),
                "signer": tx.signer.to_string(),
                "nonce": tx.nonce,
                "kind": kind(&tx.body),
            })
        })
        .collect();
    (
        200,
        json!({
            "height": block.height,
            "digest": hex(commonware_cryptography::Digestible::digest(&block).as_ref()),
            "parent": hex(block.parent.as_ref()),
            "state_root": hex(&block.state_root),
            "txs": txs,
            "certificate": certificate.map(|c| hex(&c)),
        }),
    )
}

fn kind(body: &TxBody) -> &'static str {
    match body {
        TxBody::Transfer { .. } => "transfer",
        TxBody::Deploy { .. } => "deploy",
        TxBody::SetTraffic { .. } => "set_traffic",
        TxBody::RegisterNode { .. } => "register_node",
        TxBody::Settle(_) => "settle",
        TxBody::Attest(_) => "attest",
        TxBody::Stake { .. } => "stake",
        TxBody::Unstake { .. } => "unstake",
        TxBody::Slash { .. } => "slash",
    }
}
