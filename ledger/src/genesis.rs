//! The genesis file: the network's economics ([`Params`]), the validator
//! set (keys, p2p addresses and bonded stakes) and the initial balances (a
//! funded dev account on local networks). Its hash is the chain id: every
//! transaction and consensus signature covers it, so two networks never
//! accept each other's messages.

use crate::State;
use crate::params::{ChainId, Params};
use crate::state::GenesisSpec;
use bonus_ids::PublicKey;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// Domain separation for the chain id.
const CHAIN_ID_DOMAIN: &[u8] = b"bonus/chain/v1";

/// One validator in the genesis file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenesisValidator {
    /// Its consensus (and node) key, `ed25519:<hex>`.
    pub key: String,
    /// Where its consensus p2p listens.
    pub p2p: SocketAddr,
    /// Where its query API listens (for clients; not used by consensus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<SocketAddr>,
    /// Stake bonded at genesis: earns fees, and is what slashing takes.
    pub stake: u64,
}

/// An initial balance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenesisBalance {
    /// The account, `ed25519:<hex>`.
    pub account: String,
    /// Its balance.
    pub amount: u64,
}

/// The genesis file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Genesis {
    /// A name for the network (informational, but part of the chain id).
    pub chain: String,
    /// The network's economics.
    pub params: Params,
    /// The validator set.
    pub validators: Vec<GenesisValidator>,
    /// Initial balances.
    pub balances: Vec<GenesisBalance>,
}

/// Why a genesis file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// Unreadable.
    #[error("cannot read genesis file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not the expected JSON.
    #[error("genesis file {path} is not valid: {reason}")]
    Invalid {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

impl Genesis {
    /// Reads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let invalid = |reason: String| GenesisError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        let genesis: Genesis = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        genesis.state().map_err(invalid)?;
        Ok(genesis)
    }

    /// The chain id: BLAKE3 over the canonical JSON of the whole genesis
    /// (field order fixed by this struct, so whitespace in the file does
    /// not matter, and any change of content makes another network).
    pub fn chain_id(&self) -> ChainId {
        let json = serde_json::to_vec(self).expect("a genesis serializes");
        let mut hasher = blake3::Hasher::new();
        hasher.update(CHAIN_ID_DOMAIN);
        hasher.update(&json);
        ChainId(*hasher.finalize().as_bytes())
    }

    /// The validators' keys, in file order; distinct and at least one.
    pub fn validator_keys(&self) -> Result<Vec<PublicKey>, String> {
        let keys: Vec<PublicKey> = self
            .validators
            .iter()
            .map(|v| {
                v.key
                    .parse()
                    .map_err(|e| format!("validator key {:?}: {e}", v.key))
            })
            .collect::<Result<_, _>>()?;
        let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
        if keys.is_empty() || distinct.len() != keys.len() {
            return Err("validators must be non-empty and distinct".into());
        }
        Ok(keys)
    }

    /// The genesis state.
    pub fn state(&self) -> Result<State, String> {
        let balances = self
            .balances
            .iter()
            .map(|b| {
                let key = b
                    .account
                    .parse()
                    .map_err(|e| format!("account {:?}: {e}", b.account))?;
                Ok((key, b.amount))
            })
            .collect::<Result<_, String>>()?;
        let validators = self
            .validator_keys()?
            .into_iter()
            .zip(self.validators.iter().map(|v| v.stake))
            .collect();
        let spec = GenesisSpec {
            balances,
            validators,
        };
        State::genesis(self.chain_id(), self.params, &spec).map_err(|e| e.to_string())
    }
}
