//! The state as rows: what the root commits to and what the chain store
//! keeps, one key/value entry per account, name, manifest, node, batch id,
//! usage line, spent budget, name's usage history and validator, plus one
//! row of globals.
//!
//! A row key is a tag byte then the entry's key; a row value is the
//! entry's canonical encoding (the crate's one codec). Derived indexes (the
//! release queue, the running supply) are not rows: they are rebuilt when
//! rows are loaded, and loaded rows must conserve supply like a live state.
//!
//! Each block ends with a flush ([`State::end_block`]): the rows its
//! transactions changed are re-encoded, the tree updates their buckets,
//! and the change set stays with the state until the store writes it.

use super::tree::{Hash, StateProof, Tree, key_hash, value_hash};
use super::{Account, ManifestEntry, NameEntry, NameUsage, NodeEntry, State, Usage};
use crate::codec::{DecodeError, Reader, Writer};
use crate::limits::{NAME_BYTES_MAX, NODE_STRING_BYTES_MAX, TX_BYTES_MAX};
use crate::params::{ChainId, Params};
use crate::tx::read_role;
use bonus_ids::{ManifestId, PublicKey};
use std::sync::Arc;

/// No limit on counts in our own rows beyond the bytes present.
const ANY: usize = usize::MAX;

const TAG_GLOBALS: u8 = 0;
const TAG_ACCOUNT: u8 = 1;
const TAG_NAME: u8 = 2;
const TAG_MANIFEST: u8 = 3;
const TAG_NODE: u8 = 4;
const TAG_BATCH: u8 = 5;
const TAG_USAGE: u8 = 6;
const TAG_SPENT: u8 = 7;
const TAG_VALIDATOR: u8 = 8;
const TAG_HISTORY: u8 = 9;

/// One changed row: its key and its new value (`None`: deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowChange {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
}

/// The rows one flush changed, and the root they were applied to: a store
/// holding exactly that root reaches this state by writing them.
#[derive(Debug, Default)]
pub(crate) struct ChangeSet {
    pub(crate) base_root: Hash,
    pub(crate) rows: Vec<RowChange>,
}

/// How one table's entries become rows.
pub(crate) trait Schema {
    type Key: Ord + Clone + std::fmt::Debug;
    type Value: Clone + PartialEq + std::fmt::Debug;
    const TAG: u8;
    fn write_key(key: &Self::Key, w: &mut Writer);
    fn write_value(value: &Self::Value, w: &mut Writer);
    fn read_key(r: &mut Reader<'_>) -> Result<Self::Key, DecodeError>;
    fn read_value(r: &mut Reader<'_>) -> Result<Self::Value, DecodeError>;
}

/// The rest of a row key as a name (names are the last part of their keys).
fn read_name_tail(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    if r.0.len() > NAME_BYTES_MAX {
        return Err(DecodeError::TooLarge);
    }
    let name = std::str::from_utf8(r.0).map_err(|_| DecodeError::Malformed("invalid UTF-8"))?;
    r.0 = &[];
    Ok(name.to_string())
}

pub(crate) struct Accounts;
impl Schema for Accounts {
    type Key = PublicKey;
    type Value = Account;
    const TAG: u8 = TAG_ACCOUNT;
    fn write_key(key: &PublicKey, w: &mut Writer) {
        w.bytes(key.as_bytes());
    }
    fn write_value(a: &Account, w: &mut Writer) {
        w.u64(a.balance);
        w.u64(a.nonce);
        w.u64(a.stake);
        w.u8(u8::from(a.unpaid));
        w.len(a.unbonding.len());
        for (amount, at) in &a.unbonding {
            w.u64(*amount);
            w.u64(*at);
        }
    }
    fn read_key(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
        r.key()
    }
    fn read_value(r: &mut Reader<'_>) -> Result<Account, DecodeError> {
        let mut account = Account {
            balance: r.u64()?,
            nonce: r.u64()?,
            stake: r.u64()?,
            unpaid: r.bool()?,
            unbonding: Vec::new(),
        };
        for _ in 0..r.count(ANY, 16)? {
            account.unbonding.push((r.u64()?, r.u64()?));
        }
        Ok(account)
    }
}

pub(crate) struct Names;
impl Schema for Names {
    type Key = String;
    type Value = NameEntry;
    const TAG: u8 = TAG_NAME;
    fn write_key(name: &String, w: &mut Writer) {
        w.bytes(name.as_bytes());
    }
    fn write_value(entry: &NameEntry, w: &mut Writer) {
        w.bytes(entry.owner.as_bytes());
        w.bytes(entry.manifest_id.as_bytes());
        w.u64(entry.spend_per_period_max);
        w.len(entry.traffic.len());
        for (m, weight) in &entry.traffic {
            w.bytes(m.as_bytes());
            w.u32(*weight);
        }
    }
    fn read_key(r: &mut Reader<'_>) -> Result<String, DecodeError> {
        read_name_tail(r)
    }
    fn read_value(r: &mut Reader<'_>) -> Result<NameEntry, DecodeError> {
        let owner = r.key()?;
        let manifest_id = r.manifest()?;
        let spend_per_period_max = r.u64()?;
        let mut traffic = Vec::new();
        for _ in 0..r.count(ANY, 36)? {
            traffic.push((r.manifest()?, r.u32()?));
        }
        Ok(NameEntry {
            owner,
            manifest_id,
            traffic,
            spend_per_period_max,
        })
    }
}

pub(crate) struct Manifests;
impl Schema for Manifests {
    type Key = ManifestId;
    type Value = ManifestEntry;
    const TAG: u8 = TAG_MANIFEST;
    fn write_key(m: &ManifestId, w: &mut Writer) {
        w.bytes(m.as_bytes());
    }
    fn write_value(entry: &ManifestEntry, w: &mut Writer) {
        w.str(&entry.name);
        w.u64(entry.fuel_per_invocation_max);
        w.u64(entry.price_per_million_fuel_max);
        w.blob(&entry.signed);
    }
    fn read_key(r: &mut Reader<'_>) -> Result<ManifestId, DecodeError> {
        r.manifest()
    }
    fn read_value(r: &mut Reader<'_>) -> Result<ManifestEntry, DecodeError> {
        Ok(ManifestEntry {
            name: r.str(NAME_BYTES_MAX)?,
            fuel_per_invocation_max: r.u64()?,
            price_per_million_fuel_max: r.u64()?,
            signed: r.blob(TX_BYTES_MAX)?.into(),
        })
    }
}

pub(crate) struct Nodes;
impl Schema for Nodes {
    type Key = PublicKey;
    type Value = NodeEntry;
    const TAG: u8 = TAG_NODE;
    fn write_key(key: &PublicKey, w: &mut Writer) {
        w.bytes(key.as_bytes());
    }
    fn write_value(node: &NodeEntry, w: &mut Writer) {
        w.u8(node.role as u8);
        w.bytes(node.operator.as_bytes());
        w.str(&node.endpoint);
        w.str(&node.region);
        w.u64(node.price_per_million_fuel);
    }
    fn read_key(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
        r.key()
    }
    fn read_value(r: &mut Reader<'_>) -> Result<NodeEntry, DecodeError> {
        Ok(NodeEntry {
            role: read_role(r)?,
            operator: r.key()?,
            endpoint: r.str(NODE_STRING_BYTES_MAX)?,
            region: r.str(NODE_STRING_BYTES_MAX)?,
            price_per_million_fuel: r.u64()?,
        })
    }
}

/// (worker, sequence) → the batch's period.
pub(crate) struct Batches;
impl Schema for Batches {
    type Key = (PublicKey, u64);
    type Value = u64;
    const TAG: u8 = TAG_BATCH;
    fn write_key((worker, sequence): &(PublicKey, u64), w: &mut Writer) {
        w.bytes(worker.as_bytes());
        w.u64(*sequence);
    }
    fn write_value(period: &u64, w: &mut Writer) {
        w.u64(*period);
    }
    fn read_key(r: &mut Reader<'_>) -> Result<(PublicKey, u64), DecodeError> {
        Ok((r.key()?, r.u64()?))
    }
    fn read_value(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
        r.u64()
    }
}

/// (period, manifest, worker) → usage.
pub(crate) struct UsageLines;
impl Schema for UsageLines {
    type Key = (u64, ManifestId, PublicKey);
    type Value = Usage;
    const TAG: u8 = TAG_USAGE;
    fn write_key((period, m, worker): &(u64, ManifestId, PublicKey), w: &mut Writer) {
        w.u64(*period);
        w.bytes(m.as_bytes());
        w.bytes(worker.as_bytes());
    }
    fn write_value(usage: &Usage, w: &mut Writer) {
        w.u64(usage.attested);
        w.u64(usage.settled);
    }
    fn read_key(r: &mut Reader<'_>) -> Result<(u64, ManifestId, PublicKey), DecodeError> {
        Ok((r.u64()?, r.manifest()?, r.key()?))
    }
    fn read_value(r: &mut Reader<'_>) -> Result<Usage, DecodeError> {
        Ok(Usage {
            attested: r.u64()?,
            settled: r.u64()?,
        })
    }
}

/// (period, name) → what its owner was charged.
pub(crate) struct Spent;
impl Schema for Spent {
    type Key = (u64, String);
    type Value = u64;
    const TAG: u8 = TAG_SPENT;
    fn write_key((period, name): &(u64, String), w: &mut Writer) {
        w.u64(*period);
        w.bytes(name.as_bytes());
    }
    fn write_value(amount: &u64, w: &mut Writer) {
        w.u64(*amount);
    }
    fn read_key(r: &mut Reader<'_>) -> Result<(u64, String), DecodeError> {
        Ok((r.u64()?, read_name_tail(r)?))
    }
    fn read_value(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
        r.u64()
    }
}

/// (period, name) → the name's usage in that period.
pub(crate) struct History;
impl Schema for History {
    type Key = (u64, String);
    type Value = NameUsage;
    const TAG: u8 = TAG_HISTORY;
    fn write_key((period, name): &(u64, String), w: &mut Writer) {
        w.u64(*period);
        w.bytes(name.as_bytes());
    }
    fn write_value(usage: &NameUsage, w: &mut Writer) {
        w.u64(usage.routed);
        w.u64(usage.settled);
        w.u64(usage.fuel);
        w.u64(usage.charged);
    }
    fn read_key(r: &mut Reader<'_>) -> Result<(u64, String), DecodeError> {
        Ok((r.u64()?, read_name_tail(r)?))
    }
    fn read_value(r: &mut Reader<'_>) -> Result<NameUsage, DecodeError> {
        Ok(NameUsage {
            routed: r.u64()?,
            settled: r.u64()?,
            fuel: r.u64()?,
            charged: r.u64()?,
        })
    }
}

impl State {
    fn globals_row(&self) -> (Vec<u8>, Vec<u8>) {
        let mut w = Writer::with_capacity(128);
        w.bytes(self.chain_id.as_bytes());
        let p = &self.params;
        for v in [
            p.tx_fee,
            p.router_stake_min,
            p.worker_stake_min,
            p.unbonding_ms,
            p.period_ms,
            self.time_ms,
            self.period,
            self.fee_pool,
            self.minted,
        ] {
            w.u64(v);
        }
        (vec![TAG_GLOBALS], w.0)
    }

    fn validator_row(&self, key: &PublicKey) -> (Vec<u8>, Vec<u8>) {
        let row_key = [&[TAG_VALIDATOR][..], key.as_bytes()].concat();
        (row_key, vec![u8::from(self.slashed.contains(key))])
    }

    /// Whether every change has been flushed into the tree.
    pub(crate) fn is_flushed(&self) -> bool {
        !self.globals_dirty
            && !self.validators_dirty
            && self.accounts.is_clean()
            && self.names.is_clean()
            && self.manifests.is_clean()
            && self.nodes.is_clean()
            && self.settled_batches.is_clean()
            && self.usage.is_clean()
            && self.spent.is_clean()
            && self.history.is_clean()
    }

    /// Re-encodes the changed rows, updates the tree with them and keeps
    /// them as this state's change set.
    pub(super) fn flush(&mut self) {
        let mut rows = Vec::new();
        if std::mem::take(&mut self.globals_dirty) {
            let (key, value) = self.globals_row();
            rows.push(RowChange {
                key,
                value: Some(value),
            });
        }
        if std::mem::take(&mut self.validators_dirty) {
            for key in &self.validators {
                let (key, value) = self.validator_row(key);
                rows.push(RowChange {
                    key,
                    value: Some(value),
                });
            }
        }
        self.accounts.take_changes(&mut rows);
        self.names.take_changes(&mut rows);
        self.manifests.take_changes(&mut rows);
        self.nodes.take_changes(&mut rows);
        self.settled_batches.take_changes(&mut rows);
        self.usage.take_changes(&mut rows);
        self.spent.take_changes(&mut rows);
        self.history.take_changes(&mut rows);
        let base_root = self.tree.root();
        self.tree.update(rows.iter().map(|row| {
            let value = row.value.as_deref().map(value_hash);
            (key_hash(&row.key), value)
        }));
        self.changes = Arc::new(ChangeSet { base_root, rows });
    }

    /// The rows the last flush changed, if nothing changed since: a store
    /// holding the state of `base_root` reaches this one by writing them.
    pub(crate) fn changes(&self) -> Option<&ChangeSet> {
        self.is_flushed().then_some(&*self.changes)
    }

    /// Every row, as stored (O(state): a store's first write, tests).
    pub fn rows(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![self.globals_row()];
        out.extend(self.validators.iter().map(|v| self.validator_row(v)));
        self.accounts.rows_into(&mut out);
        self.names.rows(&mut out);
        self.manifests.rows(&mut out);
        self.nodes.rows(&mut out);
        self.settled_batches.rows(&mut out);
        self.usage.rows(&mut out);
        self.spent.rows(&mut out);
        self.history.rows(&mut out);
        out
    }

    /// Commitment to the whole state: the root of the row tree. O(1) after
    /// a block's end; otherwise the pending changes are flushed into a
    /// copy first (the root depends only on the content).
    pub fn root(&self) -> [u8; 32] {
        if self.is_flushed() {
            return self.tree.root();
        }
        let mut copy = self.clone();
        copy.flush();
        copy.tree.root()
    }

    /// The root recomputed from every row, without the incremental tree
    /// (O(state)): tests check that it always equals [`State::root`].
    pub fn root_recomputed(&self) -> [u8; 32] {
        Tree::from_leaves(leaves(&self.rows())).root()
    }

    /// Proof of `account`'s row (or of its absence) under [`State::root`].
    pub fn prove_account(&self, account: &PublicKey) -> StateProof {
        let key = account_row_key(account);
        if self.is_flushed() {
            return self.tree.prove(&key_hash(&key));
        }
        let mut copy = self.clone();
        copy.flush();
        copy.tree.prove(&key_hash(&key))
    }

    /// Rebuilds a state from its rows (as [`State::rows`] gives them),
    /// checking each decodes, the globals row is there and supply is
    /// conserved. The tree is computed from scratch.
    pub fn from_rows<K, V>(rows: impl IntoIterator<Item = (K, V)>) -> Result<State, DecodeError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut state = State::empty(ChainId([0; 32]), Params::DEV);
        let mut globals = false;
        let mut hashed = Vec::new();
        for (key, value) in rows {
            let (key, value) = (key.as_ref(), value.as_ref());
            hashed.push((key_hash(key), value_hash(value)));
            let (&tag, rest) = key
                .split_first()
                .ok_or(DecodeError::Malformed("an empty row key"))?;
            match tag {
                TAG_GLOBALS if rest.is_empty() && !globals => {
                    state.load_globals(value)?;
                    globals = true;
                }
                TAG_VALIDATOR => state.load_validator(rest, value)?,
                TAG_ACCOUNT => state.accounts.load(rest, value)?,
                TAG_NAME => state.names.load(rest, value)?,
                TAG_MANIFEST => state.manifests.load(rest, value)?,
                TAG_NODE => state.nodes.load(rest, value)?,
                TAG_BATCH => state.settled_batches.load(rest, value)?,
                TAG_USAGE => state.usage.load(rest, value)?,
                TAG_SPENT => state.spent.load(rest, value)?,
                TAG_HISTORY => state.history.load(rest, value)?,
                _ => return Err(DecodeError::Malformed("an unknown row")),
            }
        }
        if !globals {
            return Err(DecodeError::Malformed("no globals row"));
        }
        let mut releases = imbl::OrdSet::new();
        state.accounts.for_each(|key, account| {
            for (_, at) in &account.unbonding {
                releases.insert((*at, *key));
            }
        });
        state.releases = releases;
        state.supply = state.total_supply();
        if state.supply != u128::from(state.minted) {
            return Err(DecodeError::Malformed(
                "stored state does not conserve supply",
            ));
        }
        state.tree = Tree::from_leaves(hashed);
        state.accounts.begin(state.time_ms);
        state.accounts.freeze(state.tree.root());
        Ok(state)
    }

    fn load_globals(&mut self, value: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader(value);
        self.chain_id = ChainId(r.array()?);
        self.params = Params {
            tx_fee: r.u64()?,
            router_stake_min: r.u64()?,
            worker_stake_min: r.u64()?,
            unbonding_ms: r.u64()?,
            period_ms: r.u64()?,
        };
        self.time_ms = r.u64()?;
        self.period = r.u64()?;
        self.fee_pool = r.u64()?;
        self.minted = r.u64()?;
        r.finish()
    }

    fn load_validator(&mut self, key: &[u8], value: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader(key);
        let validator = r.key()?;
        r.finish()?;
        let mut r = Reader(value);
        let slashed = r.bool()?;
        r.finish()?;
        if !self.validators.insert(validator) {
            return Err(DecodeError::Malformed("a row appears twice"));
        }
        if slashed {
            self.slashed.insert(validator);
        }
        Ok(())
    }
}

fn leaves(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Hash, Hash)> {
    rows.iter()
        .map(|(k, v)| (key_hash(k), value_hash(v)))
        .collect()
}

fn account_row_key(account: &PublicKey) -> Vec<u8> {
    [&[TAG_ACCOUNT][..], account.as_bytes()].concat()
}

fn account_row_value(account: &Account) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    Accounts::write_value(account, &mut w);
    w.0
}

/// Whether `proof` shows that `address` holds `account` (`None`: no
/// account) in the state committed to by `root` (a finalized block's
/// `state_root`). What a light client runs: no state needed.
pub fn verify_account(
    root: &[u8; 32],
    address: &PublicKey,
    account: Option<&Account>,
    proof: &StateProof,
) -> bool {
    let key = key_hash(&account_row_key(address));
    let value = account.map(|a| value_hash(&account_row_value(a)));
    proof.verify(root, &key, value.as_ref())
}
