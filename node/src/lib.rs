//! A Bonus node, composed from roles, and the local network of `bonus up`.
//!
//! - [`worker`]: runtime + registry peer + receipts + settlement.
//! - router: the `bonus-router` crate, given a key and a ledger client.
//! - [`validator`]: `bonus_ledger::chain` and its query API over HTTP.
//! - [`serve`]: `bonus serve`, a one-worker node with no ledger, sharing
//!   the worker's request [`pipeline`].
//! - [`up`]: starts a whole network on loopback as separate processes.
//!
//! This crate has no protocol rules of its own: what a transaction may do
//! is the ledger's, what a manifest is the registry's, how a request is
//! routed the router's. It wires them, registers the node on the ledger and
//! runs the loops that feed it (settlement, attestations).

pub mod client;
pub mod config;
pub mod http;
pub mod pipeline;
pub mod serve;
pub mod signals;
pub mod up;
pub mod validator;
pub mod wire;
pub mod worker;

use anyhow::{Context, bail};
use bonus_ids::{PublicKey, SecretKey};
use bonus_ledger::NodeRole;
use bonus_ledger::client::LedgerClient;
use bonus_registry::p2p::Multiaddr;
use std::path::Path;
use std::time::Duration;

/// Milliseconds since the Unix epoch (what ledger periods count in).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The node key at `path`, created (0600) on first start.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SecretKey> {
    if path.exists() {
        return SecretKey::load(path)
            .with_context(|| format!("cannot load the node key {}", path.display()));
    }
    let key = SecretKey::generate();
    key.save(path)
        .with_context(|| format!("cannot write the node key {}", path.display()))?;
    Ok(key)
}

/// A node endpoint on the ledger is `http://host:port`, for workers
/// followed by a space and their P2P address. The HTTP part.
pub fn endpoint_http(endpoint: &str) -> &str {
    endpoint.split_whitespace().next().unwrap_or("")
}

/// The P2P part of a worker's endpoint, if any.
pub fn endpoint_p2p(endpoint: &str) -> Option<Multiaddr> {
    endpoint.split_whitespace().nth(1)?.parse().ok()
}

/// Lowercase or uppercase hex to bytes.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Registers `key` on the ledger as a node of `role` run by `operator`
/// (staking the role's minimum from its own balance the first time), or
/// updates its endpoint, region and price; waits until that is final.
pub async fn register(
    ledger: &LedgerClient,
    key: &SecretKey,
    role: NodeRole,
    operator: PublicKey,
    endpoint: String,
    region: String,
    price_per_million_fuel: u64,
) -> anyhow::Result<()> {
    let me = key.public();
    let role_name = role.as_str();
    let status = ledger.status().await?;
    let existing = ledger
        .nodes()
        .await?
        .nodes
        .into_iter()
        .find(|n| n.key == me.to_string());
    if let Some(node) = &existing
        && node.role == role_name
        && node.operator == operator.to_string()
        && node.endpoint == endpoint
        && node.region == region
        && node.price_per_million_fuel == price_per_million_fuel
    {
        return Ok(());
    }
    let minimum = match role {
        NodeRole::Worker => status.params.worker_stake_min,
        NodeRole::Router => status.params.router_stake_min,
    };
    let account = ledger.account(&me).await?;
    let stake = match &existing {
        Some(_) => 0,
        None => minimum.saturating_sub(account.stake),
    };
    let need = stake + status.params.tx_fee;
    if account.balance < need {
        bail!(
            "this {role_name} ({me}) needs {need} on the ledger to register (stake {stake} + fee) and has {}; \
             fund it: `bonus transfer {me} {need}`",
            account.balance
        );
    }
    let id = ledger
        .sign_and_submit(
            key,
            bonus_ledger::TxBody::RegisterNode {
                role,
                operator,
                endpoint: endpoint.clone(),
                region,
                price_per_million_fuel,
                stake,
            },
        )
        .await?;
    ledger.wait_final(&id, Duration::from_secs(60)).await?;
    let registered = ledger
        .nodes()
        .await?
        .nodes
        .into_iter()
        .any(|n| n.key == me.to_string() && n.endpoint == endpoint);
    if !registered {
        bail!(
            "the ledger refused to register {me} as a {role_name} (a validator key, or a different role registered before?)"
        );
    }
    tracing::info!(key = %me, role = role_name, %endpoint, "registered on the ledger");
    Ok(())
}
