//! The canonical encoding of the whole state: what [`State::root`] hashes
//! and what the chain store persists. Derived indexes (the release queue,
//! the running supply) are rebuilt on decode, and a decoded state must
//! conserve supply like a live one.

use super::{Account, ManifestEntry, NameEntry, NodeEntry, State, Usage};
use crate::codec::{DecodeError, Reader, Writer};
use crate::limits::{NAME_BYTES_MAX, STRING_BYTES_MAX, TX_BYTES_MAX};
use crate::params::{ChainId, Params};
use crate::tx::read_role;
use std::collections::{BTreeMap, BTreeSet};

/// No limit on counts in our own state beyond the bytes present.
const ANY: usize = usize::MAX;

impl State {
    /// Commitment to the whole state: BLAKE3 of its canonical encoding.
    pub fn root(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// The canonical encoding of the whole state.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4096);
        w.bytes(self.chain_id.as_bytes());
        let p = &self.params;
        for v in [
            p.tx_fee,
            p.router_stake_min,
            p.worker_stake_min,
            p.unbonding_ms,
            p.period_ms,
        ] {
            w.u64(v);
        }
        w.u64(self.time_ms);
        w.u64(self.period);
        w.len(self.accounts.len());
        for (key, a) in &self.accounts {
            w.bytes(key.as_bytes());
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
        w.len(self.names.len());
        for (name, entry) in &self.names {
            w.str(name);
            w.bytes(entry.owner.as_bytes());
            w.bytes(entry.manifest_id.as_bytes());
            w.u64(entry.spend_per_period_max);
            w.len(entry.traffic.len());
            for (m, weight) in &entry.traffic {
                w.bytes(m.as_bytes());
                w.u32(*weight);
            }
        }
        w.len(self.manifests.len());
        for (m, entry) in &self.manifests {
            w.bytes(m.as_bytes());
            w.str(&entry.name);
            w.u64(entry.fuel_per_invocation_max);
            w.u64(entry.price_per_million_fuel_max);
            w.blob(&entry.signed);
        }
        w.len(self.nodes.len());
        for (key, node) in &self.nodes {
            w.bytes(key.as_bytes());
            w.u8(node.role as u8);
            w.bytes(node.operator.as_bytes());
            w.str(&node.endpoint);
            w.str(&node.region);
            w.u64(node.price_per_million_fuel);
        }
        w.len(self.settled_batches.len());
        for ((worker, sequence), period) in &self.settled_batches {
            w.bytes(worker.as_bytes());
            w.u64(*sequence);
            w.u64(*period);
        }
        w.len(self.usage.len());
        for ((period, m, worker), usage) in &self.usage {
            w.u64(*period);
            w.bytes(m.as_bytes());
            w.bytes(worker.as_bytes());
            w.u64(usage.attested);
            w.u64(usage.settled);
        }
        w.len(self.spent.len());
        for ((period, name), amount) in &self.spent {
            w.u64(*period);
            w.str(name);
            w.u64(*amount);
        }
        w.u64(self.fee_pool);
        w.u64(self.minted);
        for set in [&self.validators, &self.slashed] {
            w.len(set.len());
            for key in set {
                w.bytes(key.as_bytes());
            }
        }
        w.0
    }

    /// Decodes [`State::encode`]'s output (from our own disk; still checked).
    pub fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
        let mut r = Reader(bytes);
        let chain_id = ChainId(r.array()?);
        let params = Params {
            tx_fee: r.u64()?,
            router_stake_min: r.u64()?,
            worker_stake_min: r.u64()?,
            unbonding_ms: r.u64()?,
            period_ms: r.u64()?,
        };
        let time_ms = r.u64()?;
        let period = r.u64()?;
        let mut accounts = BTreeMap::new();
        let mut releases = BTreeSet::new();
        for _ in 0..r.count(ANY, 57)? {
            let key = r.key()?;
            let mut account = Account {
                balance: r.u64()?,
                nonce: r.u64()?,
                stake: r.u64()?,
                unpaid: r.bool()?,
                unbonding: Vec::new(),
            };
            for _ in 0..r.count(ANY, 16)? {
                let entry = (r.u64()?, r.u64()?);
                releases.insert((entry.1, key));
                account.unbonding.push(entry);
            }
            accounts.insert(key, account);
        }
        let mut names = BTreeMap::new();
        for _ in 0..r.count(ANY, 74)? {
            let name = r.str(NAME_BYTES_MAX)?;
            let owner = r.key()?;
            let manifest_id = r.manifest()?;
            let spend_per_period_max = r.u64()?;
            let mut traffic = Vec::new();
            for _ in 0..r.count(ANY, 36)? {
                traffic.push((r.manifest()?, r.u32()?));
            }
            names.insert(
                name,
                NameEntry {
                    owner,
                    manifest_id,
                    traffic,
                    spend_per_period_max,
                },
            );
        }
        let mut manifests = BTreeMap::new();
        for _ in 0..r.count(ANY, 50)? {
            let m = r.manifest()?;
            let entry = ManifestEntry {
                name: r.str(NAME_BYTES_MAX)?,
                fuel_per_invocation_max: r.u64()?,
                price_per_million_fuel_max: r.u64()?,
                signed: r.blob(TX_BYTES_MAX)?.into(),
            };
            manifests.insert(m, entry);
        }
        let mut nodes = BTreeMap::new();
        for _ in 0..r.count(ANY, 75)? {
            let key = r.key()?;
            let node = NodeEntry {
                role: read_role(&mut r)?,
                operator: r.key()?,
                endpoint: r.str(STRING_BYTES_MAX)?,
                region: r.str(STRING_BYTES_MAX)?,
                price_per_million_fuel: r.u64()?,
            };
            nodes.insert(key, node);
        }
        let mut settled_batches = BTreeMap::new();
        for _ in 0..r.count(ANY, 48)? {
            settled_batches.insert((r.key()?, r.u64()?), r.u64()?);
        }
        let mut usage = BTreeMap::new();
        for _ in 0..r.count(ANY, 88)? {
            let key = (r.u64()?, r.manifest()?, r.key()?);
            let value = Usage {
                attested: r.u64()?,
                settled: r.u64()?,
            };
            usage.insert(key, value);
        }
        let mut spent = BTreeMap::new();
        for _ in 0..r.count(ANY, 17)? {
            spent.insert((r.u64()?, r.str(NAME_BYTES_MAX)?), r.u64()?);
        }
        let fee_pool = r.u64()?;
        let minted = r.u64()?;
        let mut sets = [BTreeSet::new(), BTreeSet::new()];
        for set in &mut sets {
            for _ in 0..r.count(ANY, 32)? {
                set.insert(r.key()?);
            }
        }
        r.finish()?;
        let [validators, slashed] = sets;
        let mut state = State {
            chain_id,
            params,
            time_ms,
            period,
            accounts,
            names,
            manifests,
            nodes,
            settled_batches,
            usage,
            spent,
            releases,
            fee_pool,
            minted,
            supply: 0,
            validators,
            slashed,
        };
        state.supply = state.total_supply();
        if state.supply != u128::from(state.minted) {
            return Err(DecodeError::Malformed(
                "stored state does not conserve supply",
            ));
        }
        Ok(state)
    }
}
