//! Settlement: routers vouch for invocations, workers claim them, owners
//! pay within the price and budget they consented to, and the fee pool is
//! paid to validators by stake at each period's end.
//!
//! The rules, in the order they are checked:
//! - a period is `block time / period_ms`; attestations and batches may
//!   refer only to the current period or the `SETTLEMENT_WINDOW_PERIODS - 1`
//!   before it, and older usage is pruned;
//! - a router never vouches for itself, for a worker it shares an operator
//!   with, or for a manifest or worker that does not exist;
//! - a worker claims at most what routers vouched for, at most the
//!   manifest's fuel limit per invocation, and only at a price no higher
//!   than the manifest's maximum;
//! - an owner is charged at most `spend_per_period_max` per (name, period)
//!   (a line beyond it is paid only up to the budget) and never beyond its
//!   balance (a line it cannot pay is not credited and marks it unpaid).

use super::{FEE_BASIS_POINTS, State, Usage};
use crate::TxError;
use crate::limits::{
    INVOCATIONS_PER_ATTESTATION_MAX, LIST_ITEMS_MAX, SETTLEMENT_WINDOW_PERIODS,
    USAGE_HISTORY_PERIODS,
};
use crate::params::BlockCtx;
use crate::tx::{Aggregate, Attestation, NodeRole, SettleBatch};
use bonus_ids::{ManifestId, PublicKey};
use std::collections::BTreeMap;

/// One validated line of a batch, ready to charge.
struct Charge<'a> {
    aggregate: &'a Aggregate,
    name: String,
    cost: u64,
    fee: u64,
}

impl State {
    fn check_period(&self, period: u64, ctx: BlockCtx) -> Result<(), TxError> {
        let current = self.params.period_at(ctx.time_ms);
        if period > current || period + SETTLEMENT_WINDOW_PERIODS <= current {
            return Err(TxError::PeriodOutsideWindow { period, current });
        }
        Ok(())
    }

    fn node_of_role(&self, key: PublicKey, role: NodeRole) -> Result<&super::NodeEntry, TxError> {
        self.nodes
            .get(&key)
            .filter(|n| n.role == role)
            .ok_or(TxError::NotANode {
                signer: key,
                role: role.as_str(),
            })
    }

    pub(super) fn attest(
        &mut self,
        router: PublicKey,
        attestation: &Attestation,
        ctx: BlockCtx,
    ) -> Result<(), TxError> {
        let router_operator = self.node_of_role(router, NodeRole::Router)?.operator;
        if attestation.counts.is_empty() || attestation.counts.len() > LIST_ITEMS_MAX {
            return Err(TxError::Malformed("attestation without counts"));
        }
        self.check_period(attestation.period, ctx)?;
        // Check every line first, so a failure changes nothing.
        let mut added: BTreeMap<(u64, ManifestId, PublicKey), u64> = BTreeMap::new();
        for (manifest_id, worker, invocations) in &attestation.counts {
            if !(1..=INVOCATIONS_PER_ATTESTATION_MAX).contains(invocations) {
                return Err(TxError::Malformed(
                    "an attestation line vouches for 0 or too many invocations",
                ));
            }
            if !self.manifests.contains_key(manifest_id) {
                return Err(TxError::UnknownManifest);
            }
            let worker_operator = self.node_of_role(*worker, NodeRole::Worker)?.operator;
            let router_side = [router, router_operator];
            if router_side.contains(worker) || router_side.contains(&worker_operator) {
                return Err(TxError::SelfAttestation {
                    router,
                    worker: *worker,
                });
            }
            let key = (attestation.period, *manifest_id, *worker);
            let current = self.usage.get(&key).map_or(0, |u| u.attested);
            let sum = added.entry(key).or_default();
            *sum = sum.checked_add(*invocations).ok_or(TxError::Overflow)?;
            current.checked_add(*sum).ok_or(TxError::Overflow)?;
        }
        for (key, invocations) in added {
            self.usage.or_default(key).attested += invocations;
            let (period, manifest_id, _) = key;
            let name = self.manifests.get(&manifest_id).map(|m| m.name.clone());
            if let Some(name) = name {
                let history = self.history.or_default((period, name));
                history.routed = history.routed.saturating_add(invocations);
            }
        }
        Ok(())
    }

    pub(super) fn settle(
        &mut self,
        worker: PublicKey,
        batch: &SettleBatch,
        ctx: BlockCtx,
    ) -> Result<(), TxError> {
        let node = self.node_of_role(worker, NodeRole::Worker)?;
        let (price, operator) = (node.price_per_million_fuel, node.operator);
        if self.settled_batches.contains_key(&(worker, batch.sequence)) {
            return Err(TxError::BatchAlreadySettled {
                worker,
                sequence: batch.sequence,
            });
        }
        if batch.aggregates.is_empty() || batch.aggregates.len() > LIST_ITEMS_MAX {
            return Err(TxError::Malformed("batch without aggregates"));
        }
        self.check_period(batch.period, ctx)?;
        let charges = self.validate_batch(worker, price, batch)?;
        for charge in charges {
            self.charge(worker, operator, batch.period, charge);
        }
        self.settled_batches
            .insert((worker, batch.sequence), batch.period);
        Ok(())
    }

    /// Checks every line of a batch before anything moves.
    fn validate_batch<'a>(
        &self,
        worker: PublicKey,
        price: u64,
        batch: &'a SettleBatch,
    ) -> Result<Vec<Charge<'a>>, TxError> {
        let mut claimed: BTreeMap<ManifestId, u64> = BTreeMap::new();
        let mut charges = Vec::with_capacity(batch.aggregates.len());
        for aggregate in &batch.aggregates {
            let manifest = self
                .manifests
                .get(&aggregate.manifest_id)
                .ok_or(TxError::UnknownManifest)?;
            let owner = self.names.get(&manifest.name).map(|n| n.owner);
            if owner != Some(aggregate.payer) {
                return Err(TxError::Malformed("payer is not the function's owner"));
            }
            if price > manifest.price_per_million_fuel_max {
                return Err(TxError::PriceAboveConsent {
                    price,
                    price_max: manifest.price_per_million_fuel_max,
                });
            }
            let fuel_limit =
                u128::from(aggregate.invocations) * u128::from(manifest.fuel_per_invocation_max);
            if u128::from(aggregate.fuel) > fuel_limit {
                return Err(TxError::FuelOverLimit {
                    fuel: aggregate.fuel,
                    invocations: aggregate.invocations,
                    fuel_per_invocation_max: manifest.fuel_per_invocation_max,
                });
            }
            let total = claimed.entry(aggregate.manifest_id).or_default();
            *total = total
                .checked_add(aggregate.invocations)
                .ok_or(TxError::Overflow)?;
            let usage = self
                .usage
                .get(&(batch.period, aggregate.manifest_id, worker))
                .copied()
                .unwrap_or_default();
            let attested_left = usage.attested - usage.settled;
            if *total > attested_left {
                return Err(TxError::ExceedsAttestation {
                    period: batch.period,
                    claimed: *total,
                    attested_left,
                });
            }
            let cost = u128::from(aggregate.fuel) * u128::from(price) / 1_000_000;
            let fee = cost * FEE_BASIS_POINTS / 10_000;
            let cost = u64::try_from(cost).map_err(|_| TxError::Overflow)?;
            let fee = u64::try_from(fee).map_err(|_| TxError::Overflow)?;
            cost.checked_add(fee).ok_or(TxError::Overflow)?;
            charges.push(Charge {
                aggregate,
                name: manifest.name.clone(),
                cost,
                fee,
            });
        }
        Ok(charges)
    }

    /// Charges one validated line: the usage counts as settled either way
    /// (a worker is not paid twice for it). The owner pays at most what is
    /// left of the name's budget for the period (the worker and the fee
    /// pool share a partial payment pro rata), and only from its balance:
    /// a line it cannot pay is not credited and marks the owner unpaid.
    fn charge(&mut self, worker: PublicKey, operator: PublicKey, period: u64, charge: Charge<'_>) {
        let Charge {
            aggregate,
            name,
            cost,
            fee,
        } = charge;
        let usage: &mut Usage = self
            .usage
            .or_default((period, aggregate.manifest_id, worker));
        usage.settled += aggregate.invocations;
        let history = self.history.or_default((period, name.clone()));
        history.settled = history.settled.saturating_add(aggregate.invocations);
        history.fuel = history.fuel.saturating_add(aggregate.fuel);
        let due = cost + fee;
        let spent_key = (period, name);
        let spent = self.spent.get(&spent_key).copied().unwrap_or(0);
        let budget = self
            .names
            .get(&spent_key.1)
            .map_or(0, |n| n.spend_per_period_max);
        let pay = due.min(budget.saturating_sub(spent));
        if pay == 0 {
            return; // Nothing due, or the budget is spent: nobody is paid.
        }
        if self.debit(aggregate.payer, pay).is_err() {
            self.accounts.or_default(aggregate.payer).unpaid = true;
            return;
        }
        let fee_part = u64::try_from(u128::from(pay) * u128::from(fee) / u128::from(due))
            .expect("a part of a u64 fits in u64");
        self.credit(operator, pay - fee_part);
        self.add_to_fee_pool(fee_part);
        let history = self.history.or_default((period, spent_key.1.clone()));
        history.charged = history.charged.saturating_add(pay);
        *self.spent.or_default(spent_key) += pay;
    }

    /// End of a period: the fee pool goes to the validators that were
    /// never slashed, in proportion to their bonded stake; the remainder of
    /// the division stays in the pool.
    pub(super) fn pay_validators(&mut self) {
        let stakes: Vec<(PublicKey, u64)> = self
            .validators
            .iter()
            .filter(|v| !self.slashed.contains(*v))
            .map(|v| (*v, self.accounts.read(v, |a| a.stake).unwrap_or(0)))
            .filter(|(_, stake)| *stake > 0)
            .collect();
        let total: u128 = stakes.iter().map(|(_, s)| u128::from(*s)).sum();
        if total == 0 || self.fee_pool == 0 {
            return;
        }
        let pool = u128::from(self.fee_pool);
        for (validator, stake) in stakes {
            let share = u64::try_from(pool * u128::from(stake) / total)
                .expect("a share of the pool fits in u64");
            self.fee_pool -= share;
            self.globals_dirty = true;
            self.supply -= u128::from(share);
            self.credit(validator, share);
        }
    }

    /// Drops usage, budgets and batch ids of periods that can no longer
    /// settle, and names' usage older than the history kept for their
    /// owners, so the state does not grow with time.
    pub(super) fn prune_before_window(&mut self) {
        let oldest = (self.period + 1).saturating_sub(SETTLEMENT_WINDOW_PERIODS);
        self.usage.retain(|(period, _, _), _| *period >= oldest);
        self.spent.retain(|(period, _), _| *period >= oldest);
        self.settled_batches.retain(|_, period| *period >= oldest);
        let kept_from = (self.period + 1).saturating_sub(USAGE_HISTORY_PERIODS);
        self.history
            .remove_first_while(|(period, _)| *period < kept_from);
    }
}
