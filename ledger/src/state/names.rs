//! Names, the manifests deployed under them, traffic splits and budgets.
//! A name belongs to its first deployer; only a manifest's owner can deploy
//! it (the Deploy carries the signed manifest), under the name and with the
//! terms (fuel limit, price maximum, budget) the owner signed.

use super::{ManifestEntry, NameEntry, State};
use crate::TxError;
use crate::limits::LIST_ITEMS_MAX;
use bonus_ids::{ManifestId, PublicKey};
use std::collections::BTreeSet;

impl State {
    fn owned_name(&self, signer: PublicKey, name: &str) -> Result<&NameEntry, TxError> {
        let entry = self.names.get(name).ok_or_else(|| TxError::UnknownName {
            name: name.to_string(),
        })?;
        if entry.owner != signer {
            return Err(TxError::NotNameOwner {
                name: name.to_string(),
                owner: entry.owner,
            });
        }
        Ok(entry)
    }

    pub(super) fn deploy(
        &mut self,
        signer: PublicKey,
        manifest_bytes: &[u8],
    ) -> Result<(), TxError> {
        let signed = bonus_registry::SignedManifest::decode(manifest_bytes).map_err(|error| {
            TxError::InvalidManifest {
                reason: error.to_string(),
            }
        })?;
        let (manifest_id, manifest) = (signed.id(), signed.manifest());
        if manifest.owner != signer {
            return Err(TxError::NotManifestOwner {
                manifest_id,
                owner: manifest.owner,
            });
        }
        // The name is a DNS label: `SignedManifest::decode` checked it.
        let name = manifest.name.as_str();
        if manifest.limits.fuel_max == 0 {
            return Err(TxError::Malformed("zero fuel limit"));
        }
        let terms = ManifestEntry {
            name: name.to_string(),
            fuel_per_invocation_max: manifest.limits.fuel_max,
            price_per_million_fuel_max: manifest.budget.price_per_million_fuel_max,
            signed: manifest_bytes.into(),
        };
        let spend_per_period_max = manifest.budget.spend_per_period_max;
        if self.names.contains_key(name) {
            self.owned_name(signer, name)?;
        }
        if let Some(existing) = self.manifests.get(&manifest_id)
            && (existing.name != name
                || existing.fuel_per_invocation_max != terms.fuel_per_invocation_max
                || existing.price_per_million_fuel_max != terms.price_per_million_fuel_max)
        {
            // Unreachable with honest hashing (the id commits to the name
            // and terms); kept so the table can never be overwritten.
            return Err(TxError::ManifestClaimed {
                manifest_id,
                name: existing.name.clone(),
            });
        }
        self.manifests.or_insert(manifest_id, terms);
        let entry = self.names.or_insert(
            name.to_string(),
            NameEntry {
                owner: signer,
                manifest_id,
                traffic: Vec::new(),
                spend_per_period_max,
            },
        );
        entry.manifest_id = manifest_id;
        entry.traffic.clear();
        entry.spend_per_period_max = spend_per_period_max;
        Ok(())
    }

    pub(super) fn fund(
        &mut self,
        signer: PublicKey,
        name: &str,
        spend_per_period_max: u64,
    ) -> Result<(), TxError> {
        self.owned_name(signer, name)?;
        if let Some(entry) = self.names.get_mut(name) {
            entry.spend_per_period_max = spend_per_period_max;
        }
        self.accounts.or_default(signer).unpaid = false;
        Ok(())
    }

    pub(super) fn set_traffic(
        &mut self,
        signer: PublicKey,
        name: &str,
        splits: &[(ManifestId, u32)],
    ) -> Result<(), TxError> {
        self.owned_name(signer, name)?;
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
        let deployed_here = |m: &ManifestId| self.manifests.get(m).is_some_and(|e| e.name == name);
        if !splits.iter().all(|(m, _)| deployed_here(m)) {
            return Err(invalid("a manifest was never deployed under this name"));
        }
        let distinct: BTreeSet<_> = splits.iter().map(|(m, _)| m).collect();
        if distinct.len() != splits.len() {
            return Err(invalid("a manifest appears twice"));
        }
        if let Some(entry) = self.names.get_mut(name) {
            entry.traffic = splits.to_vec();
        }
        Ok(())
    }
}
