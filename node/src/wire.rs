//! What the node API answers, typed: the worker builds these and the CLI
//! (through [`crate::client::NodeClient`]) reads them, so both sides agree
//! by construction. sdk-js's `node.ts` mirrors the same JSON. Ids are in
//! their one text form (`bonus_ids`'s `Display`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `GET /v1/node`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's account (`ed25519:<hex>`).
    pub key: String,
    /// What it charges per million fuel, a decimal string.
    pub price_per_million_fuel: String,
    /// Served and settled work; `None` on a node without a ledger.
    pub usage: Option<crate::worker::receipts::Summary>,
    /// libp2p peer id.
    pub peer_id: String,
    /// libp2p listen addresses.
    pub p2p_addrs: Vec<String>,
    /// Artifacts held.
    pub artifacts: usize,
    /// Peers connected now.
    pub connected_peers: usize,
    /// With `--idle-only`: whether it is backing off, and why.
    pub idle_only: Option<IdleStatus>,
}

/// The idle-only controller's view.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleStatus {
    /// Refusing work because the owner is using the machine.
    pub backing_off: bool,
    /// CPU load of everything but this node, in cores.
    pub others_load: f64,
}

/// `PUT /v1/artifacts/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactStored {
    /// The artifact's id.
    pub artifact_id: String,
    /// Its size, when this upload stored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Whether this upload stored it (false: the node held it already).
    pub new: bool,
}

/// `POST /v1/artifacts/<id>/fetch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// The artifact's id.
    pub artifact_id: String,
    /// Its size.
    pub bytes: u64,
    /// Verified segments received from each peer (by peer id).
    pub segments_by_peer: BTreeMap<String, u64>,
    /// Segments that failed verification or transfer and were refetched.
    pub segments_retried: u64,
    /// Sources pulled from over a direct TCP stream.
    pub direct_streams: u64,
}

/// `POST /v1/manifests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestStored {
    /// The manifest's id.
    pub manifest_id: String,
    /// The function's name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// The artifact it runs.
    pub artifact_id: String,
    /// Where this node serves it (`/fn/<name>/`).
    pub path: String,
}

/// `GET /v1/functions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Functions {
    /// Every manifest the node holds.
    pub functions: Vec<FunctionInfo>,
}

/// One manifest in [`Functions`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// The function's name.
    pub name: String,
    /// The manifest's version.
    pub version: u32,
    /// The manifest's id.
    pub manifest_id: String,
    /// The artifact it runs.
    pub artifact_id: String,
    /// The artifact's size.
    pub artifact_bytes: u64,
    /// The owner's consented price maximum per million fuel.
    pub price_per_million_fuel_max: u64,
    /// The owner's budget per period.
    pub spend_per_period_max: u64,
    /// The owner's account.
    pub owner: String,
    /// Whether the name points at this version now.
    pub current: bool,
}

/// Any error answer: `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
}

/// The header a logs request carries: `<owner key>,<time_ms>,<signature>`,
/// the signature over [`logs_auth_message`].
pub const LOGS_AUTH_HEADER: &str = "x-bonus-logs-auth";

/// What the owner signs to read a name's logs: the name and the time, so
/// a request cannot be turned to another name, nor replayed after
/// the worker's window (`worker::logs::AUTH_WINDOW_MS`).
pub fn logs_auth_message(name: &str, time_ms: u64) -> Vec<u8> {
    let mut message = b"bonus/logs/v1\0".to_vec();
    message.extend_from_slice(&time_ms.to_be_bytes());
    message.extend_from_slice(name.as_bytes());
    message
}

/// `GET /v1/logs/<name>?after=<seq>`: the name's recent lines on this worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logs {
    /// The name.
    pub name: String,
    /// Oldest first.
    pub lines: Vec<LogLine>,
}

/// One line of a function's logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its number on this worker: ask `after` the last one to follow.
    pub seq: u64,
    /// When the invocation ended, ms since the Unix epoch.
    pub time_ms: u64,
    /// The request it belongs to (`x-bonus-request-id`).
    pub request_id: String,
    /// The version that ran.
    pub manifest_id: String,
    /// `stdout`, `stderr`, or `error` (how a failed invocation ended).
    pub stream: String,
    /// What was printed (bounded), or the failure's reason.
    pub text: String,
}

#[cfg(test)]
mod tests {
    /// The vector sdk-js's `logs.test.js` checks too.
    #[test]
    fn the_logs_auth_message_is_the_shared_vector() {
        let message = super::logs_auth_message("mine", 1_700_000_000_000);
        let hex: String = message.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "626f6e75732f6c6f67732f7631000000018bcfe568006d696e65");
    }
}
