//! The deterministic state machine. No clocks, no randomness: the same
//! transactions in the same blocks (heights and timestamps) give the same
//! state and root on every validator.
//!
//! Split by concern: [`accounts`] (balances, fees, stake and unbonding),
//! [`names`] (names, manifests, budgets), [`nodes`] (routers, workers,
//! slashing), [`settle`] (attestations, settlement, periods and validator
//! rewards), [`rows`] (the state as key/value rows: what the root commits
//! to and the store keeps), [`table`] (a copy-on-write map that remembers
//! its changed keys), [`layered`] (the accounts: a finalized base written
//! in place under a small copy-on-write layer per state) and [`tree`] (the
//! incremental Merkle tree over rows).
//!
//! Cost: cloning a state (a speculative copy per block) is O(1), and a
//! block's apply, root, store write and finalization cost what the block
//! touched, not the size of the state.
//!
//! Money moves only through the helpers in [`accounts`], which keep a
//! running total; after every transaction and every block that total must
//! equal what genesis minted (`assert!`, kept in release builds). A full
//! recount ([`State::total_supply`], O(accounts)) runs only in tests and
//! when a stored state is loaded.

mod accounts;
mod layered;
mod names;
mod nodes;
mod rows;
mod settle;
mod table;
mod tree;

pub(crate) use rows::RowChange;

pub use rows::verify_account;
pub use tree::StateProof;

use crate::TxError;
use crate::params::{BlockCtx, ChainId, Params};
use crate::tx::{NodeRole, SignedTx, TxBody};
use bonus_ids::{ManifestId, PublicKey};
use layered::Layered;
use rows::{Accounts, Batches, ChangeSet, History, Manifests, Names, Nodes, Spent, UsageLines};
use std::collections::BTreeSet;
use std::sync::Arc;
use table::Table;

/// Protocol fee on settled usage, in basis points of the cost (1 %).
pub const FEE_BASIS_POINTS: u128 = 100;

/// An account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable balance.
    pub balance: u64,
    /// Next nonce.
    pub nonce: u64,
    /// Bonded stake.
    pub stake: u64,
    /// (amount, block time in ms at which it returns to the balance).
    pub unbonding: Vec<(u64, u64)>,
    /// A settlement could not be charged to this account: routers answer
    /// 402 for its names until a transfer in or a `Fund` clears it.
    pub unpaid: bool,
}

/// A bound name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameEntry {
    /// Who may update it, and who pays for it.
    pub owner: PublicKey,
    /// Current manifest (the latest deploy).
    pub manifest_id: ManifestId,
    /// Traffic split between manifests (weights); empty means all current.
    pub traffic: Vec<(ManifestId, u32)>,
    /// Most the owner is charged per period for this name (fees included).
    pub spend_per_period_max: u64,
}

/// A deployed manifest: the terms its owner consented to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The name it was first deployed under; it belongs to that name.
    pub name: String,
    /// Fuel limit per invocation (settlement caps fuel by it).
    pub fuel_per_invocation_max: u64,
    /// Most the owner pays per million fuel.
    pub price_per_million_fuel_max: u64,
    /// The signed manifest as deployed (`SignedManifest::encode()`), so a
    /// worker or router that has never seen it can fetch it from any
    /// validator and verify it. Shared, because speculative states clone.
    pub signed: std::sync::Arc<[u8]>,
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// Worker or router; fixed at registration.
    pub role: NodeRole,
    /// The account that runs it and is paid; fixed at registration.
    pub operator: PublicKey,
    /// Where to reach it.
    pub endpoint: String,
    /// Region hint.
    pub region: String,
    /// Price per million fuel.
    pub price_per_million_fuel: u64,
}

/// Attested and settled invocations of one (period, manifest, worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Vouched for by routers.
    pub attested: u64,
    /// Claimed by the worker's settled batches (never above `attested`).
    pub settled: u64,
}

/// One name's usage in one period, summed over its manifests and workers:
/// what its owner reads back with `bonus usage`, kept for
/// [`USAGE_HISTORY_PERIODS`](crate::limits::USAGE_HISTORY_PERIODS) periods
/// after the settlement window has closed. Informational: no rule reads it,
/// so its sums saturate instead of refusing a transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameUsage {
    /// Invocations routers vouched for.
    pub routed: u64,
    /// Invocations workers settled.
    pub settled: u64,
    /// Fuel of the settled invocations.
    pub fuel: u64,
    /// What the owner paid for them (workers' earnings and the protocol
    /// fee), within the name's budget.
    pub charged: u64,
}

/// The ledger state. Cheap to clone (persistent maps): each speculative
/// block works on its own copy.
#[derive(Clone, Debug)]
pub struct State {
    chain_id: ChainId,
    params: Params,
    /// Timestamp of the last applied block (0 at genesis).
    time_ms: u64,
    /// The settlement period of `time_ms`.
    period: u64,
    /// The one table that grows with the ledger: a finalized base written
    /// in place under a small layer per state ([`layered`]).
    accounts: Layered<Accounts>,
    names: Table<Names>,
    manifests: Table<Manifests>,
    nodes: Table<Nodes>,
    /// (worker, sequence) → the batch's period; pruned with the window.
    settled_batches: Table<Batches>,
    /// (period, manifest, worker) → usage; pruned with the window.
    usage: Table<UsageLines>,
    /// (period, name) → charged to the owner; pruned with the window.
    spent: Table<Spent>,
    /// (period, name) → the name's usage; pruned after
    /// `USAGE_HISTORY_PERIODS`, oldest first.
    history: Table<History>,
    /// (release time, account) for every unbonding entry, so releasing
    /// touches only what is due (derived, not a row).
    releases: imbl::OrdSet<(u64, PublicKey)>,
    fee_pool: u64,
    minted: u64,
    /// Running total of balances, stakes, unbonding and the fee pool
    /// (derived, not a row); always equal to `minted`.
    supply: u128,
    /// The consensus validator set, fixed at genesis.
    validators: BTreeSet<PublicKey>,
    /// Validators punished for equivocation (each at most once); they earn
    /// no more rewards.
    slashed: BTreeSet<PublicKey>,
    /// The globals row (time, period, fee pool) changed since the flush.
    globals_dirty: bool,
    /// A validator row (slashed or not) changed since the flush.
    validators_dirty: bool,
    /// The row tree as of the last flush.
    tree: tree::Tree,
    /// The rows the last flush changed (shared by clones: read-only).
    changes: Arc<ChangeSet>,
}

impl PartialEq for State {
    /// Content only: the tree and the change bookkeeping follow from it.
    fn eq(&self, other: &Self) -> bool {
        self.chain_id == other.chain_id
            && self.params == other.params
            && self.time_ms == other.time_ms
            && self.period == other.period
            && self.accounts == other.accounts
            && self.names == other.names
            && self.manifests == other.manifests
            && self.nodes == other.nodes
            && self.settled_batches == other.settled_batches
            && self.usage == other.usage
            && self.spent == other.spent
            && self.history == other.history
            && self.releases == other.releases
            && self.fee_pool == other.fee_pool
            && self.minted == other.minted
            && self.supply == other.supply
            && self.validators == other.validators
            && self.slashed == other.slashed
    }
}

impl Eq for State {}

/// What a genesis mints.
#[derive(Clone, Debug, Default)]
pub struct GenesisSpec {
    /// Initial balances.
    pub balances: Vec<(PublicKey, u64)>,
    /// The validators and the stake each starts with bonded.
    pub validators: Vec<(PublicKey, u64)>,
}

impl State {
    /// The genesis state of network `chain_id`.
    pub fn genesis(
        chain_id: ChainId,
        params: Params,
        spec: &GenesisSpec,
    ) -> Result<State, TxError> {
        params.validate().map_err(TxError::Malformed)?;
        let mut state = State::empty(chain_id, params);
        state.globals_dirty = true;
        state.validators_dirty = true;
        let mint = |state: &mut State, amount: u64| -> Result<(), TxError> {
            // Every amount on the ledger fits in u64 because the total does.
            state.minted = state.minted.checked_add(amount).ok_or(TxError::Overflow)?;
            state.supply += u128::from(amount);
            Ok(())
        };
        for (account, amount) in &spec.balances {
            mint(&mut state, *amount)?;
            state.accounts.or_default(*account).balance += amount;
        }
        for (validator, stake) in &spec.validators {
            if !state.validators.insert(*validator) {
                return Err(TxError::Malformed("a validator appears twice"));
            }
            mint(&mut state, *stake)?;
            state.accounts.or_default(*validator).stake += stake;
        }
        state.check_supply();
        state.flush();
        state.accounts.freeze(state.tree.root());
        Ok(state)
    }

    /// A state with nothing in it (the base genesis and loading build on).
    fn empty(chain_id: ChainId, params: Params) -> State {
        State {
            chain_id,
            params,
            time_ms: 0,
            period: 0,
            accounts: Layered::new(),
            names: Table::new(),
            manifests: Table::new(),
            nodes: Table::new(),
            settled_batches: Table::new(),
            usage: Table::new(),
            spent: Table::new(),
            history: Table::new(),
            releases: imbl::OrdSet::new(),
            fee_pool: 0,
            minted: 0,
            supply: 0,
            validators: BTreeSet::new(),
            slashed: BTreeSet::new(),
            globals_dirty: false,
            validators_dirty: false,
            tree: tree::Tree::empty(),
            changes: Arc::default(),
        }
    }

    /// The network this state belongs to.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// The genesis parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Timestamp of the last applied block, ms (0 at genesis).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// The current settlement period.
    pub fn period(&self) -> u64 {
        self.period
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
    pub fn account(&self, key: &PublicKey) -> Option<Account> {
        self.accounts.get(key)
    }

    /// Spendable balance (0 for unknown accounts).
    pub fn balance(&self, key: &PublicKey) -> u64 {
        self.accounts.read(key, |a| a.balance).unwrap_or(0)
    }

    /// Next nonce of an account (0 for unknown accounts).
    pub fn nonce(&self, key: &PublicKey) -> u64 {
        self.accounts.read(key, |a| a.nonce).unwrap_or(0)
    }

    /// A bound name.
    pub fn name(&self, name: &str) -> Option<&NameEntry> {
        self.names.get(name)
    }

    /// A deployed manifest.
    pub fn manifest(&self, manifest_id: &ManifestId) -> Option<&ManifestEntry> {
        self.manifests.get(manifest_id)
    }

    /// A registered node.
    pub fn node(&self, key: &PublicKey) -> Option<&NodeEntry> {
        self.nodes.get(key)
    }

    /// Whether a batch id has settled (within the settlement window).
    pub fn is_settled(&self, worker: &PublicKey, sequence: u64) -> bool {
        self.settled_batches.contains_key(&(*worker, sequence))
    }

    /// Usage of every worker in one period, keyed (manifest, worker).
    pub fn period_usage(
        &self,
        period: u64,
    ) -> impl Iterator<Item = (&ManifestId, &PublicKey, &Usage)> {
        self.usage
            .iter()
            .filter(move |((p, _, _), _)| *p == period)
            .map(|((_, m, w), usage)| (m, w, usage))
    }

    /// Usage of a (period, manifest, worker), if any is recorded.
    pub fn usage(&self, period: u64, manifest_id: &ManifestId, worker: &PublicKey) -> Usage {
        self.usage
            .get(&(period, *manifest_id, *worker))
            .copied()
            .unwrap_or_default()
    }

    /// What each name was charged in a period (the settlement window only).
    pub fn period_spent(&self, period: u64) -> impl Iterator<Item = (&str, u64)> {
        self.spent
            .iter()
            .filter(move |((p, _), _)| *p == period)
            .map(|((_, name), amount)| (name.as_str(), *amount))
    }

    /// What the owner of `name` was charged for it in `period`.
    pub fn spent(&self, period: u64, name: &str) -> u64 {
        self.spent
            .get(&(period, name.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// `name`'s usage in `period`, if any was recorded in the last
    /// `USAGE_HISTORY_PERIODS` periods.
    pub fn name_usage(&self, period: u64, name: &str) -> Option<NameUsage> {
        self.history.get(&(period, name.to_string())).copied()
    }

    /// Whether routers should answer 402 for `name` now: its owner could
    /// not pay a settlement, or its budget for the current period is spent.
    pub fn is_unpaid(&self, name: &str) -> bool {
        let Some(entry) = self.names.get(name) else {
            return false;
        };
        let owner_unpaid = self.accounts.read(&entry.owner, |a| a.unpaid) == Some(true);
        owner_unpaid || self.spent(self.period, name) >= entry.spend_per_period_max
    }

    /// The protocol fee pool.
    pub fn fee_pool(&self) -> u64 {
        self.fee_pool
    }

    /// What genesis minted: the supply, forever.
    pub fn minted(&self) -> u64 {
        self.minted
    }

    /// Balances + stakes + unbonding + fee pool, recounted from scratch
    /// (O(accounts): tests and loading; the running total is checked on
    /// every transaction).
    pub fn total_supply(&self) -> u128 {
        let mut accounts: u128 = 0;
        self.accounts.for_each(|_, a| {
            accounts += u128::from(a.balance)
                + u128::from(a.stake)
                + a.unbonding
                    .iter()
                    .map(|(amount, _)| u128::from(*amount))
                    .sum::<u128>();
        });
        accounts + u128::from(self.fee_pool)
    }

    fn check_supply(&self) {
        assert_eq!(
            self.supply,
            u128::from(self.minted),
            "supply broken: money was created or destroyed"
        );
    }

    /// Applies one transaction in block `ctx`. On error nothing changes.
    pub fn apply(&mut self, tx: &SignedTx, ctx: BlockCtx) -> Result<(), TxError> {
        if !tx.verify(&self.chain_id) {
            return Err(TxError::BadSignature { signer: tx.signer });
        }
        self.apply_verified(tx, ctx)
    }

    /// [`State::apply`] for a transaction whose signature the caller has
    /// already checked with [`SignedTx::verify`] against this chain id (a
    /// validator verifies each transaction once, not on every re-execution).
    pub fn apply_verified(&mut self, tx: &SignedTx, ctx: BlockCtx) -> Result<(), TxError> {
        // The fee first: a transaction its signer cannot pay for does
        // nothing. Returned with the nonce if the body is refused (which
        // changed nothing), so a refused transaction leaves no trace.
        let fee = self.params.tx_fee;
        self.take_fee_and_nonce(tx.signer, tx.nonce, fee)?;
        if let Err(error) = self.apply_body(tx.signer, &tx.body, ctx) {
            self.return_fee_and_nonce(tx.signer, fee);
            return Err(error);
        }
        self.add_to_fee_pool(fee);
        self.check_supply();
        Ok(())
    }

    fn apply_body(
        &mut self,
        signer: PublicKey,
        body: &TxBody,
        ctx: BlockCtx,
    ) -> Result<(), TxError> {
        match body {
            TxBody::Transfer { to, amount } => self.transfer(signer, *to, *amount),
            TxBody::Deploy { manifest } => self.deploy(signer, manifest),
            TxBody::SetTraffic { name, splits } => self.set_traffic(signer, name, splits),
            TxBody::Fund {
                name,
                spend_per_period_max,
            } => self.fund(signer, name, *spend_per_period_max),
            TxBody::RegisterNode {
                role,
                operator,
                endpoint,
                region,
                price_per_million_fuel,
                stake,
            } => {
                let node = NodeEntry {
                    role: *role,
                    operator: *operator,
                    endpoint: endpoint.clone(),
                    region: region.clone(),
                    price_per_million_fuel: *price_per_million_fuel,
                };
                self.register_node(signer, node, *stake)
            }
            TxBody::Deregister => self.deregister(signer, ctx),
            TxBody::Settle(batch) => self.settle(signer, batch, ctx),
            TxBody::Attest(attestation) => self.attest(signer, attestation, ctx),
            TxBody::Stake { amount } => self.stake(signer, *amount),
            TxBody::Unstake { amount } => self.unstake(signer, *amount, ctx),
            TxBody::Slash { evidence } => self.slash(evidence),
        }
    }

    /// Start of a block, before its transactions: the block time moves
    /// forward, due unbonding returns to balances, and when a new period
    /// begins the fee pool is paid to validators and old usage is pruned.
    /// Refuses a timestamp that does not move forward.
    pub fn begin_block(&mut self, ctx: BlockCtx) -> Result<(), TxError> {
        if ctx.time_ms <= self.time_ms {
            return Err(TxError::BlockTimeNotIncreasing {
                parent_ms: self.time_ms,
                block_ms: ctx.time_ms,
            });
        }
        self.time_ms = ctx.time_ms;
        self.accounts.begin(ctx.time_ms);
        self.globals_dirty = true;
        self.release_unbonded(ctx.time_ms);
        let period = self.params.period_at(ctx.time_ms);
        if period > self.period {
            self.pay_validators();
            self.period = period;
            self.prune_before_window();
        }
        self.check_supply();
        Ok(())
    }

    /// End of a block: checks the running supply, then flushes the rows the
    /// block changed into the tree (after it [`State::root`] is O(1) and the
    /// store can write just those rows).
    pub fn end_block(&mut self) {
        self.check_supply();
        self.flush();
        self.accounts.seal(self.tree.root());
    }

    /// The state a block on this one starts from: a copy (O(1)) that
    /// carries only what the blocks since the last finalized one changed.
    pub fn child(&self) -> State {
        let mut child = self.clone();
        child.accounts.rebase();
        child
    }

    /// Marks this state finalized: what its blocks changed becomes the
    /// shared base every later state reads under its own changes (written
    /// in place, in O(what changed)). Call it for each finalized block's
    /// state, in order, after [`State::end_block`]; states that are still
    /// alive, on this fork or another, read as before.
    pub fn finalize(&self) {
        self.accounts.fold();
    }

    /// Gives this state a base of its own, if a copy of it shares its base
    /// (O(accounts)): what one chain finalizes must not reach a chain
    /// started from a copy of the same state.
    pub fn detach(&mut self) {
        self.accounts.detach();
    }
}

#[cfg(test)]
mod layered_tests;
#[cfg(test)]
mod tests;
