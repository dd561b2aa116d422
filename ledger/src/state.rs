//! The deterministic state machine. No clocks, no randomness: the same
//! transactions at the same heights give the same state and root on every
//! validator.

use crate::TxError;
use crate::tx::{Attestation, NodeRole, SettleBatch, SignedTx, TxBody, Writer};
use bonus_ids::{ManifestId, PublicKey};
use std::collections::{BTreeMap, BTreeSet};

/// Blocks a stake stays bonded after `Unstake`.
pub const UNBONDING_BLOCKS: u64 = 100;

/// Protocol fee, in basis points of the settled cost (1 %).
pub const FEE_BASIS_POINTS: u128 = 100;

const NAME_BYTES_MAX: usize = 63;
const STRING_BYTES_MAX: usize = 256;
const LIST_ITEMS_MAX: usize = 1024;

/// An account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable balance.
    pub balance: u64,
    /// Next nonce.
    pub nonce: u64,
    /// Bonded stake.
    pub stake: u64,
    /// (amount, height at which it returns to the balance).
    pub unbonding: Vec<(u64, u64)>,
}

/// A bound name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameEntry {
    /// Who may update it.
    pub owner: PublicKey,
    /// Current manifest (the latest deploy).
    pub manifest_id: ManifestId,
    /// Traffic split between manifests (weights); empty means all current.
    pub traffic: Vec<(ManifestId, u32)>,
    /// Its owner could not pay a settlement: routers answer 402.
    pub unpaid: bool,
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// Worker or router.
    pub role: NodeRole,
    /// Where to reach it.
    pub endpoint: String,
    /// Region hint.
    pub region: String,
    /// Price per million fuel.
    pub price_per_million_fuel: u64,
}

/// The ledger state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    accounts: BTreeMap<PublicKey, Account>,
    names: BTreeMap<String, NameEntry>,
    /// Every manifest ever deployed: (name, fuel limit per invocation).
    manifests: BTreeMap<ManifestId, (String, u64)>,
    nodes: BTreeMap<PublicKey, NodeEntry>,
    settled_batches: BTreeSet<(PublicKey, u64)>,
    /// (period, manifest, worker) → (attested, settled) invocations.
    usage: BTreeMap<(u64, ManifestId, PublicKey), (u64, u64)>,
    fee_pool: u64,
    minted: u64,
    /// The consensus validator set, fixed at genesis.
    validators: BTreeSet<PublicKey>,
    /// Validators punished for equivocation (each at most once).
    slashed: BTreeSet<PublicKey>,
}

impl State {
    /// Genesis: initial balances (a dev faucet on local networks).
    pub fn genesis(balances: &[(PublicKey, u64)]) -> Result<State, TxError> {
        let mut state = State::default();
        for (account, amount) in balances {
            let entry = state.accounts.entry(*account).or_default();
            entry.balance = entry
                .balance
                .checked_add(*amount)
                .ok_or(TxError::Overflow)?;
            state.minted = state.minted.checked_add(*amount).ok_or(TxError::Overflow)?;
        }
        Ok(state)
    }

    /// Sets the consensus validator set (genesis only).
    pub fn with_validators(mut self, validators: impl IntoIterator<Item = PublicKey>) -> State {
        self.validators = validators.into_iter().collect();
        self
    }

    /// The consensus validator set.
    pub fn validators(&self) -> &BTreeSet<PublicKey> {
        &self.validators
    }

    /// Whether a validator was slashed.
    pub fn is_slashed(&self, validator: &PublicKey) -> bool {
        self.slashed.contains(validator)
    }

    /// Every bound name, in order.
    pub fn names(&self) -> impl Iterator<Item = (&String, &NameEntry)> {
        self.names.iter()
    }

    /// Every registered node, in order.
    pub fn nodes(&self) -> impl Iterator<Item = (&PublicKey, &NodeEntry)> {
        self.nodes.iter()
    }

    /// An account, if it exists.
    pub fn account(&self, key: &PublicKey) -> Option<&Account> {
        self.accounts.get(key)
    }

    /// Spendable balance (0 for unknown accounts).
    pub fn balance(&self, key: &PublicKey) -> u64 {
        self.accounts.get(key).map_or(0, |a| a.balance)
    }

    /// A bound name.
    pub fn name(&self, name: &str) -> Option<&NameEntry> {
        self.names.get(name)
    }

    /// A registered node.
    pub fn node(&self, key: &PublicKey) -> Option<&NodeEntry> {
        self.nodes.get(key)
    }

    /// Whether a batch id has settled.
    pub fn is_settled(&self, worker: &PublicKey, sequence: u64) -> bool {
        self.settled_batches.contains(&(*worker, sequence))
    }

    /// The protocol fee pool.
    pub fn fee_pool(&self) -> u64 {
        self.fee_pool
    }

    /// Balances + stakes + unbonding + fee pool: always what genesis minted.
    pub fn total_supply(&self) -> u128 {
        let accounts: u128 = self
            .accounts
            .values()
            .map(|a| {
                u128::from(a.balance)
                    + u128::from(a.stake)
                    + a.unbonding
                        .iter()
                        .map(|(amount, _)| u128::from(*amount))
                        .sum::<u128>()
            })
            .sum();
        accounts + u128::from(self.fee_pool)
    }

    /// Applies one transaction at `height`. On error nothing changes.
    pub fn apply(&mut self, tx: &SignedTx, height: u64) -> Result<(), TxError> {
        if !tx.verify() {
            return Err(TxError::BadSignature { signer: tx.signer });
        }
        self.apply_verified(tx, height)
    }

    /// [`State::apply`] for a transaction whose signature the caller has
    /// already checked with [`SignedTx::verify`] (a validator verifies each
    /// transaction once, when it first sees it, not on every re-execution).
    pub fn apply_verified(&mut self, tx: &SignedTx, height: u64) -> Result<(), TxError> {
        // O(accounts): every transaction in tests and debug builds, every
        // block (`end_block`) in release builds.
        debug_assert_eq!(
            self.total_supply(),
            u128::from(self.minted),
            "supply broken before a transaction"
        );
        let expected = self.accounts.get(&tx.signer).map_or(0, |a| a.nonce);
        if tx.nonce != expected {
            return Err(TxError::WrongNonce {
                signer: tx.signer,
                expected,
                got: tx.nonce,
            });
        }
        let signer = tx.signer;
        match &tx.body {
            TxBody::Transfer { to, amount } => self.transfer(signer, *to, *amount)?,
            TxBody::Deploy {
                name,
                manifest_id,
                fuel_per_invocation_max,
            } => self.deploy(signer, name, *manifest_id, *fuel_per_invocation_max)?,
            TxBody::SetTraffic { name, splits } => self.set_traffic(signer, name, splits)?,
            TxBody::RegisterNode {
                role,
                endpoint,
                region,
                price_per_million_fuel,
                stake,
            } => {
                let node = NodeEntry {
                    role: *role,
                    endpoint: endpoint.clone(),
                    region: region.clone(),
                    price_per_million_fuel: *price_per_million_fuel,
                };
                self.register_node(signer, node, *stake)?
            }
            TxBody::Settle(batch) => self.settle(signer, batch)?,
            TxBody::Attest(attestation) => self.attest(signer, attestation)?,
            TxBody::Stake { amount } => self.stake(signer, *amount)?,
            TxBody::Unstake { amount } => self.unstake(signer, *amount, height)?,
            TxBody::Slash { evidence } => self.slash(evidence)?,
        }
        // Only a successful transaction consumes its nonce.
        self.accounts.entry(signer).or_default().nonce += 1;
        debug_assert_eq!(
            self.total_supply(),
            u128::from(self.minted),
            "supply broken by a transaction"
        );
        Ok(())
    }

    /// End of block: unbonded stake returns to balances.
    pub fn end_block(&mut self, height: u64) {
        for account in self.accounts.values_mut() {
            if account.unbonding.is_empty() {
                continue;
            }
            let (released, kept): (Vec<_>, Vec<_>) =
                account.unbonding.iter().partition(|(_, at)| *at <= height);
            let released: u64 = released.iter().map(|(amount, _)| amount).sum();
            account.balance += released;
            account.unbonding = kept;
        }
        assert_eq!(
            self.total_supply(),
            u128::from(self.minted),
            "supply broken at end of block"
        );
    }

    fn debit_check(&self, account: PublicKey, amount: u64) -> Result<(), TxError> {
        let available = self.balance(&account);
        if available < amount {
            return Err(TxError::InsufficientFunds {
                account,
                available,
                needed: amount,
            });
        }
        Ok(())
    }

    fn transfer(&mut self, from: PublicKey, to: PublicKey, amount: u64) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::Malformed("transfer of zero"));
        }
        self.debit_check(from, amount)?;
        if from != to {
            self.balance(&to)
                .checked_add(amount)
                .ok_or(TxError::Overflow)?;
        }
        self.accounts.entry(from).or_default().balance -= amount;
        self.accounts.entry(to).or_default().balance += amount;
        Ok(())
    }

    fn deploy(
        &mut self,
        signer: PublicKey,
        name: &str,
        manifest_id: ManifestId,
        fuel_max: u64,
    ) -> Result<(), TxError> {
        let valid_name = (1..=NAME_BYTES_MAX).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid_name {
            return Err(TxError::Malformed("name must be a DNS label of [a-z0-9-]"));
        }
        if fuel_max == 0 {
            return Err(TxError::Malformed("zero fuel limit"));
        }
        if let Some(entry) = self.names.get(name)
            && entry.owner != signer
        {
            return Err(TxError::NotNameOwner {
                name: name.to_string(),
                owner: entry.owner,
            });
        }
        self.manifests
            .insert(manifest_id, (name.to_string(), fuel_max));
        let entry = self.names.entry(name.to_string()).or_insert(NameEntry {
            owner: signer,
            manifest_id,
            traffic: Vec::new(),
            unpaid: false,
        });
        entry.manifest_id = manifest_id;
        entry.traffic.clear();
        Ok(())
    }

    fn set_traffic(
        &mut self,
        signer: PublicKey,
        name: &str,
        splits: &[(ManifestId, u32)],
    ) -> Result<(), TxError> {
        let entry = self.names.get(name).ok_or_else(|| TxError::UnknownName {
            name: name.to_string(),
        })?;
        if entry.owner != signer {
            return Err(TxError::NotNameOwner {
                name: name.to_string(),
                owner: entry.owner,
            });
        }
        let invalid = |reason| TxError::InvalidTraffic {
            name: name.to_string(),
            reason,
        };
        if splits.is_empty() || splits.len() > LIST_ITEMS_MAX {
            return Err(invalid("no splits"));
        }
        if splits.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() == 0 {
            return Err(invalid("weights sum to zero"));
        }
        let deployed_here = |m: &ManifestId| self.manifests.get(m).is_some_and(|(n, _)| n == name);
        if !splits.iter().all(|(m, _)| deployed_here(m)) {
            return Err(invalid("a manifest was never deployed under this name"));
        }
        let distinct: BTreeSet<_> = splits.iter().map(|(m, _)| m).collect();
        if distinct.len() != splits.len() {
            return Err(invalid("a manifest appears twice"));
        }
        self.names.get_mut(name).expect("checked above").traffic = splits.to_vec();
        Ok(())
    }

    fn register_node(
        &mut self,
        signer: PublicKey,
        node: NodeEntry,
        stake: u64,
    ) -> Result<(), TxError> {
        if node.endpoint.len() > STRING_BYTES_MAX || node.region.len() > STRING_BYTES_MAX {
            return Err(TxError::Malformed("endpoint or region too long"));
        }
        self.debit_check(signer, stake)?;
        let account = self.accounts.entry(signer).or_default();
        account.stake.checked_add(stake).ok_or(TxError::Overflow)?;
        account.balance -= stake;
        account.stake += stake;
        self.nodes.insert(signer, node);
        Ok(())
    }

    fn stake(&mut self, signer: PublicKey, amount: u64) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::Malformed("stake of zero"));
        }
        self.debit_check(signer, amount)?;
        let account = self.accounts.entry(signer).or_default();
        account.stake.checked_add(amount).ok_or(TxError::Overflow)?;
        account.balance -= amount;
        account.stake += amount;
        Ok(())
    }

    fn unstake(&mut self, signer: PublicKey, amount: u64, height: u64) -> Result<(), TxError> {
        let account = self.accounts.entry(signer).or_default();
        if amount == 0 || account.stake < amount {
            return Err(TxError::InsufficientFunds {
                account: signer,
                available: account.stake,
                needed: amount,
            });
        }
        account.stake -= amount;
        account
            .unbonding
            .push((amount, height.saturating_add(UNBONDING_BLOCKS)));
        Ok(())
    }

    fn attest(&mut self, router: PublicKey, attestation: &Attestation) -> Result<(), TxError> {
        if self.nodes.get(&router).map(|n| n.role) != Some(NodeRole::Router) {
            return Err(TxError::NotANode {
                signer: router,
                role: "router",
            });
        }
        if attestation.counts.is_empty() || attestation.counts.len() > LIST_ITEMS_MAX {
            return Err(TxError::Malformed("attestation without counts"));
        }
        // Check every addition first, so a failure changes nothing.
        let mut added: BTreeMap<(u64, ManifestId, PublicKey), u64> = BTreeMap::new();
        for (manifest_id, worker, invocations) in &attestation.counts {
            let key = (attestation.period, *manifest_id, *worker);
            let current =
                self.usage.get(&key).map_or(0, |u| u.0) + added.get(&key).copied().unwrap_or(0);
            current.checked_add(*invocations).ok_or(TxError::Overflow)?;
            *added.entry(key).or_default() += invocations;
        }
        for (key, invocations) in added {
            self.usage.entry(key).or_default().0 += invocations;
        }
        Ok(())
    }

    fn settle(&mut self, worker: PublicKey, batch: &SettleBatch) -> Result<(), TxError> {
        let node = self
            .nodes
            .get(&worker)
            .filter(|n| n.role == NodeRole::Worker);
        let Some(node) = node else {
            return Err(TxError::NotANode {
                signer: worker,
                role: "worker",
            });
        };
        let price = u128::from(node.price_per_million_fuel);
        if self.settled_batches.contains(&(worker, batch.sequence)) {
            return Err(TxError::BatchAlreadySettled {
                worker,
                sequence: batch.sequence,
            });
        }
        if batch.aggregates.is_empty() || batch.aggregates.len() > LIST_ITEMS_MAX {
            return Err(TxError::Malformed("batch without aggregates"));
        }
        // Validate the whole batch before moving anything.
        let mut claimed: BTreeMap<ManifestId, u64> = BTreeMap::new();
        let mut charges = Vec::with_capacity(batch.aggregates.len());
        for aggregate in &batch.aggregates {
            let (name, fuel_max) = self
                .manifests
                .get(&aggregate.manifest_id)
                .ok_or(TxError::UnknownManifest)?;
            let owner = self
                .names
                .get(name)
                .map(|n| n.owner)
                .ok_or(TxError::UnknownManifest)?;
            if owner != aggregate.payer {
                return Err(TxError::Malformed("payer is not the function's owner"));
            }
            let fuel_limit = u128::from(aggregate.invocations) * u128::from(*fuel_max);
            if u128::from(aggregate.fuel) > fuel_limit {
                return Err(TxError::FuelOverLimit {
                    fuel: aggregate.fuel,
                    invocations: aggregate.invocations,
                    fuel_per_invocation_max: *fuel_max,
                });
            }
            let total = claimed.entry(aggregate.manifest_id).or_default();
            *total = total
                .checked_add(aggregate.invocations)
                .ok_or(TxError::Overflow)?;
            let (attested, settled) = self
                .usage
                .get(&(batch.period, aggregate.manifest_id, worker))
                .copied()
                .unwrap_or((0, 0));
            let attested_left = attested - settled;
            if *total > attested_left {
                return Err(TxError::ExceedsAttestation {
                    period: batch.period,
                    claimed: *total,
                    attested_left,
                });
            }
            let cost = u128::from(aggregate.fuel) * price / 1_000_000;
            let fee = cost * FEE_BASIS_POINTS / 10_000;
            let cost = u64::try_from(cost).map_err(|_| TxError::Overflow)?;
            let fee = u64::try_from(fee).map_err(|_| TxError::Overflow)?;
            charges.push((aggregate, name.clone(), cost, fee));
        }
        // Apply: each payer pays what it can; one that cannot is marked
        // unpaid and that line is refused (the worker is not credited).
        for (aggregate, name, cost, fee) in charges {
            let key = (batch.period, aggregate.manifest_id, worker);
            self.usage.entry(key).or_default().1 += aggregate.invocations;
            let due = cost.checked_add(fee).ok_or(TxError::Overflow)?;
            if self.balance(&aggregate.payer) < due {
                if let Some(entry) = self.names.get_mut(&name) {
                    entry.unpaid = true;
                }
                continue;
            }
            self.accounts.entry(aggregate.payer).or_default().balance -= due;
            let credited = self.accounts.entry(worker).or_default();
            credited.balance = credited.balance.saturating_add(cost);
            self.fee_pool = self.fee_pool.saturating_add(fee);
        }
        self.settled_batches.insert((worker, batch.sequence));
        Ok(())
    }

    /// Anyone may submit evidence; the offender's whole stake (bonded and
    /// unbonding) moves to the fee pool, so supply is conserved.
    fn slash(&mut self, evidence: &[u8]) -> Result<(), TxError> {
        let offender = crate::evidence::verify(evidence, &self.validators)
            .map_err(TxError::InvalidEvidence)?;
        if !self.slashed.insert(offender) {
            return Err(TxError::AlreadySlashed {
                validator: offender,
            });
        }
        if let Some(account) = self.accounts.get_mut(&offender) {
            let unbonding: u64 = account.unbonding.drain(..).map(|(amount, _)| amount).sum();
            let taken = account.stake + unbonding;
            account.stake = 0;
            self.fee_pool += taken;
        }
        Ok(())
    }

    /// Commitment to the whole state: BLAKE3 of its canonical encoding.
    pub fn root(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// The canonical encoding of the whole state (what [`State::root`]
    /// hashes, and what the validator persists after every block).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(4096));
        w.len(self.accounts.len());
        for (key, a) in &self.accounts {
            w.bytes(key.as_bytes());
            w.u64(a.balance);
            w.u64(a.nonce);
            w.u64(a.stake);
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
            w.u8(u8::from(entry.unpaid));
            w.len(entry.traffic.len());
            for (m, weight) in &entry.traffic {
                w.bytes(m.as_bytes());
                w.u32(*weight);
            }
        }
        w.len(self.manifests.len());
        for (m, (name, fuel)) in &self.manifests {
            w.bytes(m.as_bytes());
            w.str(name);
            w.u64(*fuel);
        }
        w.len(self.nodes.len());
        for (key, node) in &self.nodes {
            w.bytes(key.as_bytes());
            w.u8(node.role as u8);
            w.str(&node.endpoint);
            w.str(&node.region);
            w.u64(node.price_per_million_fuel);
        }
        w.len(self.settled_batches.len());
        for (worker, sequence) in &self.settled_batches {
            w.bytes(worker.as_bytes());
            w.u64(*sequence);
        }
        w.len(self.usage.len());
        for ((period, m, worker), (attested, settled)) in &self.usage {
            w.u64(*period);
            w.bytes(m.as_bytes());
            w.bytes(worker.as_bytes());
            w.u64(*attested);
            w.u64(*settled);
        }
        w.u64(self.fee_pool);
        w.u64(self.minted);
        w.len(self.validators.len());
        for key in &self.validators {
            w.bytes(key.as_bytes());
        }
        w.len(self.slashed.len());
        for key in &self.slashed {
            w.bytes(key.as_bytes());
        }
        w.0
    }

    /// Decodes [`State::encode`]'s output (from our own disk; still checked).
    pub fn decode(bytes: &[u8]) -> Result<State, crate::tx::DecodeError> {
        use crate::tx::DecodeError;
        let mut r = crate::tx::Reader(bytes);
        let mut state = State::default();
        for _ in 0..r.count(56)? {
            let key = r.key()?;
            let balance = r.u64()?;
            let nonce = r.u64()?;
            let stake = r.u64()?;
            let mut unbonding = Vec::new();
            for _ in 0..r.count(16)? {
                unbonding.push((r.u64()?, r.u64()?));
            }
            state.accounts.insert(
                key,
                Account {
                    balance,
                    nonce,
                    stake,
                    unbonding,
                },
            );
        }
        for _ in 0..r.count(66)? {
            let name = r.str()?;
            let owner = r.key()?;
            let manifest_id = r.manifest()?;
            let unpaid = r.u8()? != 0;
            let mut traffic = Vec::new();
            for _ in 0..r.count(36)? {
                traffic.push((r.manifest()?, r.u32()?));
            }
            state.names.insert(
                name,
                NameEntry {
                    owner,
                    manifest_id,
                    unpaid,
                    traffic,
                },
            );
        }
        for _ in 0..r.count(41)? {
            let m = r.manifest()?;
            let name = r.str()?;
            state.manifests.insert(m, (name, r.u64()?));
        }
        for _ in 0..r.count(43)? {
            let key = r.key()?;
            let role = match r.u8()? {
                0 => NodeRole::Worker,
                1 => NodeRole::Router,
                _ => return Err(DecodeError::Malformed("unknown node role")),
            };
            let endpoint = r.str()?;
            let region = r.str()?;
            let price_per_million_fuel = r.u64()?;
            state.nodes.insert(
                key,
                NodeEntry {
                    role,
                    endpoint,
                    region,
                    price_per_million_fuel,
                },
            );
        }
        for _ in 0..r.count(40)? {
            state.settled_batches.insert((r.key()?, r.u64()?));
        }
        for _ in 0..r.count(88)? {
            let key = (r.u64()?, r.manifest()?, r.key()?);
            state.usage.insert(key, (r.u64()?, r.u64()?));
        }
        state.fee_pool = r.u64()?;
        state.minted = r.u64()?;
        for _ in 0..r.count(32)? {
            state.validators.insert(r.key()?);
        }
        for _ in 0..r.count(32)? {
            state.slashed.insert(r.key()?);
        }
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing);
        }
        Ok(state)
    }
}
