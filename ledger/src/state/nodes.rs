//! Routers and workers (staked, role and operator fixed at registration)
//! and the slashing of validators that equivocate.

use super::{NodeEntry, State};
use crate::TxError;
use crate::limits::NODE_STRING_BYTES_MAX;
use crate::params::BlockCtx;
use crate::tx::NodeRole;
use bonus_ids::PublicKey;

impl State {
    /// The least stake a node of `role` keeps bonded.
    pub fn stake_min(&self, role: NodeRole) -> u64 {
        match role {
            NodeRole::Router => self.params.router_stake_min,
            NodeRole::Worker => self.params.worker_stake_min,
        }
    }

    pub(super) fn register_node(
        &mut self,
        signer: PublicKey,
        node: NodeEntry,
        stake: u64,
    ) -> Result<(), TxError> {
        if node.endpoint.len() > NODE_STRING_BYTES_MAX || node.region.len() > NODE_STRING_BYTES_MAX
        {
            return Err(TxError::Malformed("endpoint or region too long"));
        }
        if self.validators.contains(&signer) {
            // A validator's stake secures consensus; a node's is separate.
            return Err(TxError::Malformed(
                "a validator key cannot register as a node",
            ));
        }
        if let Some(existing) = self.nodes.get(&signer)
            && (existing.role != node.role || existing.operator != node.operator)
        {
            return Err(TxError::NodeTermsFixed {
                node: signer,
                role: existing.role.as_str(),
            });
        }
        let minimum = self.stake_min(node.role);
        let staked = self.accounts.read(&signer, |a| a.stake).unwrap_or(0);
        let total = staked.saturating_add(stake);
        if total < minimum {
            return Err(TxError::StakeBelowMinimum {
                role: node.role.as_str(),
                minimum,
                stake: total,
            });
        }
        self.bond(signer, stake)?;
        self.nodes.insert(signer, node);
        Ok(())
    }

    pub(super) fn deregister(&mut self, signer: PublicKey, ctx: BlockCtx) -> Result<(), TxError> {
        if self.nodes.remove(&signer).is_none() {
            return Err(TxError::NotANode {
                signer,
                role: "node",
            });
        }
        let staked = self.accounts.read(&signer, |a| a.stake).unwrap_or(0);
        self.start_unbonding(signer, staked, ctx);
        Ok(())
    }

    /// Anyone may submit evidence; the offender's whole stake (bonded and
    /// unbonding) moves to the fee pool, so supply is conserved and the
    /// honest validators earn it; the offender earns nothing more.
    pub(super) fn slash(&mut self, evidence: &[u8]) -> Result<(), TxError> {
        let offender = crate::evidence::verify(evidence, &self.chain_id, &self.validators)
            .map_err(TxError::InvalidEvidence)?;
        if self.slashed.contains(&offender) {
            return Err(TxError::AlreadySlashed {
                validator: offender,
            });
        }
        self.slashed.insert(offender);
        self.validators_dirty = true;
        let taken = self.seize_stake(offender);
        self.add_to_fee_pool(taken);
        Ok(())
    }
}
