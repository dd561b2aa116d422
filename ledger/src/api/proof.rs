//! `GET /v1/ledger/accounts/<key>/proof`: an account's row (or its
//! absence) with its Merkle proof under the state root of the last
//! finalized block, so a client can check its balance without trusting
//! the validator that answered: it verifies the proof against the
//! `state_root` of the block at `height` (whose finalization certificate
//! it checks, `GET /v1/ledger/blocks/<height>`).

use super::{AccountView, Unbonding, hex, parse_hex32};
use crate::{Account, State, StateProof, verify_account};
use bonus_ids::PublicKey;
use serde::{Deserialize, Serialize};

/// An account and its proof under a finalized root.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountProofView {
    /// The finalized height the proof is for.
    pub height: u64,
    /// That block's state root (hex).
    pub state_root: String,
    /// Whether the account has a row (an unknown account is all zeros).
    pub exists: bool,
    /// The account as of `height` (`next_nonce` equals `nonce`).
    pub account: AccountView,
    /// The bucket's other leaves: (key hash, value hash), hex.
    pub bucket: Vec<(String, String)>,
    /// Per level, bottom first, the 15 sibling hashes (hex).
    pub siblings: Vec<Vec<String>>,
}

impl AccountProofView {
    /// Builds the view of `key` in `state`, the state after `height`.
    pub fn new(state: &State, height: u64, key: &PublicKey) -> AccountProofView {
        let proof = state.prove_account(key);
        AccountProofView {
            height,
            state_root: hex(&state.root()),
            exists: state.account(key).is_some(),
            account: super::account(state, key),
            bucket: proof.bucket.iter().map(|(k, v)| (hex(k), hex(v))).collect(),
            siblings: proof
                .siblings
                .iter()
                .map(|level| level.iter().map(|h| hex(h)).collect())
                .collect(),
        }
    }

    /// Whether the proof shows this account under `root` (a finalized
    /// block's state root the caller trusts). False on any malformed field.
    pub fn verify(&self, root: &[u8; 32]) -> bool {
        let Ok(key) = self.account.account.parse::<PublicKey>() else {
            return false;
        };
        let Some(proof) = self.proof() else {
            return false;
        };
        let account = Account {
            balance: self.account.balance,
            nonce: self.account.nonce,
            stake: self.account.stake,
            unbonding: self
                .account
                .unbonding
                .iter()
                .map(
                    |Unbonding {
                         amount,
                         release_at_ms,
                     }| (*amount, *release_at_ms),
                )
                .collect(),
            unpaid: self.account.unpaid,
        };
        let claimed = self.exists.then_some(&account);
        if !self.exists && account != Account::default() {
            return false;
        }
        verify_account(root, &key, claimed, &proof)
    }

    fn proof(&self) -> Option<StateProof> {
        let bucket = self
            .bucket
            .iter()
            .map(|(k, v)| Some((parse_hex32(k)?, parse_hex32(v)?)))
            .collect::<Option<Vec<_>>>()?;
        let siblings = self
            .siblings
            .iter()
            .map(|level| level.iter().map(|h| parse_hex32(h)).collect())
            .collect::<Option<Vec<Vec<_>>>>()?;
        Some(StateProof { bucket, siblings })
    }
}

#[cfg(test)]
mod tests {
    use super::AccountProofView;
    use crate::Params;
    use crate::sim::Harness;
    use bonus_ids::SecretKey;

    #[test]
    fn a_proof_answer_verifies_after_json_and_refuses_a_changed_balance() {
        let alice = SecretKey::from_seed([0xed; 32]);
        let h = Harness::new("proof", Params::DEV, &[(&alice, 500)]);
        let root = h.state.root();
        let view = AccountProofView::new(&h.state, h.height, &alice.public());
        let json = serde_json::to_string(&view).expect("serializes");
        let view: AccountProofView = serde_json::from_str(&json).expect("reads back");
        assert!(view.exists && view.verify(&root));
        let mut richer = view.clone();
        richer.account.balance += 1;
        assert!(!richer.verify(&root));
        let mut garbled = view;
        garbled.siblings[0][0] = "zz".into();
        assert!(!garbled.verify(&root));

        let stranger = SecretKey::from_seed([0xee; 32]).public();
        let absent = AccountProofView::new(&h.state, h.height, &stranger);
        assert!(!absent.exists && absent.verify(&root));
        let mut claimed = absent;
        claimed.exists = true;
        assert!(!claimed.verify(&root));
    }
}
