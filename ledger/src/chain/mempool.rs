//! One validator's waiting transactions. Bounded three ways, so nobody can
//! jam it cheaply: a signer's nonces must lie in a window after its
//! finalized nonce, a signer must be able to pay the fee of everything it
//! has waiting, and the whole pool has a cap. Blocks are built fairly:
//! signers take turns, one transaction each per round, starting from a
//! point that rotates with the height, so no key order wins.

use super::SubmitError;
use crate::State;
use crate::limits::{MEMPOOL_MAX, MEMPOOL_NONCE_WINDOW, MEMPOOL_TTL_BLOCKS};
use crate::tx::SignedTx;
use bonus_ids::PublicKey;
use std::collections::{BTreeMap, HashMap};

struct Entry {
    tx: SignedTx,
    id: [u8; 32],
    /// Applied height when it arrived (for the TTL).
    arrived: u64,
}

/// Waiting transactions by signer, then nonce, with an id index.
#[derive(Default)]
pub(crate) struct Mempool {
    by_signer: BTreeMap<PublicKey, BTreeMap<u64, Entry>>,
    ids: HashMap<[u8; 32], (PublicKey, u64)>,
}

impl Mempool {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn contains(&self, id: &[u8; 32]) -> bool {
        self.ids.contains_key(id)
    }

    /// Whether `tx` would be admitted against the finalized `state`: the
    /// cheap checks, made before its signature is verified, so junk from
    /// unfunded keys costs no signature verification.
    pub(crate) fn check(&self, tx: &SignedTx, state: &State) -> Result<(), SubmitError> {
        let signer = tx.signer;
        let next = state.nonce(&signer);
        if tx.nonce < next {
            return Err(SubmitError::StaleNonce {
                signer,
                got: tx.nonce,
                next,
            });
        }
        if tx.nonce >= next + MEMPOOL_NONCE_WINDOW {
            return Err(SubmitError::NonceTooFar {
                signer,
                got: tx.nonce,
                next,
            });
        }
        let pending = self.by_signer.get(&signer);
        let replaces = pending.is_some_and(|p| p.contains_key(&tx.nonce));
        let waiting = pending.map_or(0, |p| p.len()) as u64 + u64::from(!replaces);
        let needed = u128::from(state.params().tx_fee) * u128::from(waiting);
        let balance = state.balance(&signer);
        if u128::from(balance) < needed {
            return Err(SubmitError::CannotPayFees {
                signer,
                balance,
                needed,
            });
        }
        if !replaces && self.len() >= MEMPOOL_MAX {
            return Err(SubmitError::Full);
        }
        Ok(())
    }

    /// Admits a transaction whose signature was checked, against the
    /// finalized `state` at `height`.
    pub(crate) fn admit(
        &mut self,
        tx: SignedTx,
        id: [u8; 32],
        state: &State,
        height: u64,
    ) -> Result<(), SubmitError> {
        self.check(&tx, state)?;
        let (signer, nonce) = (tx.signer, tx.nonce);
        let entry = Entry {
            tx,
            id,
            arrived: height,
        };
        if let Some(old) = self
            .by_signer
            .entry(signer)
            .or_default()
            .insert(nonce, entry)
        {
            self.ids.remove(&old.id);
        }
        self.ids.insert(id, (signer, nonce));
        Ok(())
    }

    /// The nonce after `signer`'s gapless run starting at `from`.
    pub(crate) fn next_nonce(&self, signer: &PublicKey, from: u64) -> u64 {
        let mut nonce = from;
        if let Some(pending) = self.by_signer.get(signer) {
            while pending.contains_key(&nonce) {
                nonce += 1;
            }
        }
        nonce
    }

    /// Up to `limit` candidates for a block on `state`: each signer's
    /// gapless run from its nonce in `state`, interleaved one per signer
    /// per round, signers in key order rotated by `rotation`.
    pub(crate) fn candidates(&self, state: &State, rotation: u64, limit: usize) -> Vec<SignedTx> {
        let signers: Vec<(&PublicKey, &BTreeMap<u64, Entry>)> = self.by_signer.iter().collect();
        if signers.is_empty() {
            return Vec::new();
        }
        let start = (rotation % signers.len() as u64) as usize;
        let order: Vec<_> = signers[start..].iter().chain(&signers[..start]).collect();
        let mut runs: Vec<(u64, &BTreeMap<u64, Entry>)> = order
            .iter()
            .map(|(signer, pending)| (state.nonce(signer), *pending))
            .collect();
        let mut out = Vec::new();
        while out.len() < limit {
            let mut progressed = false;
            for (nonce, pending) in runs.iter_mut() {
                if out.len() >= limit {
                    break;
                }
                if let Some(entry) = pending.get(nonce) {
                    out.push(entry.tx.clone());
                    *nonce += 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        out
    }

    pub(crate) fn remove(&mut self, signer: &PublicKey, nonce: u64) {
        if let Some(pending) = self.by_signer.get_mut(signer) {
            if let Some(entry) = pending.remove(&nonce) {
                self.ids.remove(&entry.id);
            }
            if pending.is_empty() {
                self.by_signer.remove(signer);
            }
        }
    }

    /// After a finalized block: drops `signers`' transactions that can no
    /// longer apply (a used nonce), that the signer can no longer pay the
    /// fee for, or that waited longer than the TTL behind a gap.
    pub(crate) fn prune<'a>(
        &mut self,
        state: &State,
        height: u64,
        signers: impl IntoIterator<Item = &'a PublicKey>,
    ) {
        for signer in signers {
            let Some(pending) = self.by_signer.get_mut(signer) else {
                continue;
            };
            prune_signer(&mut self.ids, state, height, signer, pending);
            if pending.is_empty() {
                self.by_signer.remove(signer);
            }
        }
    }

    /// [`Mempool::prune`] for every signer (a periodic sweep).
    pub(crate) fn prune_all(&mut self, state: &State, height: u64) {
        let ids = &mut self.ids;
        self.by_signer.retain(|signer, pending| {
            prune_signer(ids, state, height, signer, pending);
            !pending.is_empty()
        });
    }
}

fn prune_signer(
    ids: &mut HashMap<[u8; 32], (PublicKey, u64)>,
    state: &State,
    height: u64,
    signer: &PublicKey,
    pending: &mut BTreeMap<u64, Entry>,
) {
    let next = state.nonce(signer);
    let fee = u128::from(state.params().tx_fee).max(1);
    let affordable = u128::from(state.balance(signer)) / fee;
    let mut kept = 0u128;
    pending.retain(|nonce, entry| {
        let keep =
            *nonce >= next && kept < affordable && entry.arrived + MEMPOOL_TTL_BLOCKS > height;
        if keep {
            kept += 1;
        } else {
            ids.remove(&entry.id);
        }
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Harness;
    use crate::{Params, TxBody};
    use bonus_ids::SecretKey;

    const FEE: u64 = 100;

    fn harness(alice: &SecretKey, balance: u64) -> Harness {
        let params = Params {
            tx_fee: FEE,
            ..Params::DEV
        };
        Harness::new("mempool", params, &[(alice, balance)])
    }

    fn transfer(h: &Harness, from: &SecretKey, nonce: u64, amount: u64) -> SignedTx {
        let to = SecretKey::from_seed([9; 32]).public();
        SignedTx::sign(from, &h.chain_id(), nonce, TxBody::Transfer { to, amount })
    }

    fn admit(pool: &mut Mempool, h: &Harness, tx: &SignedTx) {
        pool.admit(tx.clone(), tx.id(), &h.state, h.height)
            .expect("admitted");
    }

    #[test]
    fn a_signer_who_spends_its_balance_loses_what_it_can_no_longer_pay_for() {
        let alice = SecretKey::from_seed([1; 32]);
        let mut h = harness(&alice, 10 * FEE);
        let mut pool = Mempool::default();
        // Nonce 0 sends all but two fees' worth away; 1..=3 wait behind it.
        let spend = transfer(&h, &alice, 0, 10 * FEE - FEE - 2 * FEE);
        let waiting: Vec<SignedTx> = (1..=3).map(|n| transfer(&h, &alice, n, 0)).collect();
        admit(&mut pool, &h, &spend);
        for tx in &waiting {
            admit(&mut pool, &h, tx);
        }
        assert_eq!(pool.len(), 4);

        h.apply(&spend).expect("the spend applies");
        assert_eq!(h.state.balance(&alice.public()), 2 * FEE);
        pool.prune(&h.state, h.height, [&alice.public()]);
        assert!(!pool.contains(&spend.id()), "its nonce is used");
        assert!(pool.contains(&waiting[0].id()) && pool.contains(&waiting[1].id()));
        assert!(!pool.contains(&waiting[2].id()), "no fee left for it");
        assert_eq!(pool.len(), 2);
        // Nor can it come back: the admission check counts what waits.
        assert!(matches!(
            pool.check(&waiting[2], &h.state),
            Err(SubmitError::CannotPayFees { .. })
        ));
    }

    #[test]
    fn a_transaction_stuck_behind_a_gap_expires_after_the_ttl() {
        let alice = SecretKey::from_seed([1; 32]);
        let h = harness(&alice, 10 * FEE);
        let mut pool = Mempool::default();
        // Nonce 0 never comes: 1 can never apply.
        let stuck = transfer(&h, &alice, 1, 1);
        admit(&mut pool, &h, &stuck);
        assert!(pool.candidates(&h.state, 0, 100).is_empty(), "behind a gap");
        let arrived = h.height;
        pool.prune(
            &h.state,
            arrived + MEMPOOL_TTL_BLOCKS - 1,
            [&alice.public()],
        );
        assert!(pool.contains(&stuck.id()), "within the TTL");
        // The periodic sweep reaches signers no block named.
        pool.prune_all(&h.state, arrived + MEMPOOL_TTL_BLOCKS);
        assert!(!pool.contains(&stuck.id()), "expired");
        assert_eq!(pool.len(), 0);
        assert!(pool.by_signer.is_empty(), "no empty signer left behind");
    }
}
