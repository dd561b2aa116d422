//! Genesis parameters (the network's economics, fixed for its lifetime)
//! and the block context every state transition sees.

use serde::{Deserialize, Serialize};

/// A network's id: BLAKE3 of its genesis (see
/// [`crate::genesis::Genesis::chain_id`]). Every transaction signature and
/// every consensus vote covers it, so nothing signed for one network
/// verifies on another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(pub [u8; 32]);

impl ChainId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The economics a network is started with. Part of the state (and so of
/// its root); never changed by a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Flat fee every transaction pays into the fee pool. At least 1, so
    /// an account with nothing cannot write to the ledger.
    pub tx_fee: u64,
    /// Least stake a router must keep bonded while registered.
    pub router_stake_min: u64,
    /// Least stake a worker must keep bonded while registered.
    pub worker_stake_min: u64,
    /// How long unstaked funds stay slashable before they return to the
    /// balance, in milliseconds of block time.
    pub unbonding_ms: u64,
    /// Length of a settlement period, in milliseconds of block time. Usage
    /// is attested, settled and budgeted per period, and the fee pool is
    /// paid to validators at each period's end.
    pub period_ms: u64,
}

impl Params {
    /// A local development network: small stakes, short periods, unbonding
    /// in minutes.
    pub const DEV: Params = Params {
        tx_fee: 1,
        router_stake_min: 1_000,
        worker_stake_min: 1_000,
        unbonding_ms: 5 * 60 * 1_000,
        period_ms: 10_000,
    };

    /// Checks the relations a usable network needs.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.tx_fee == 0 {
            return Err("tx_fee must be at least 1 (a free transaction is free spam)");
        }
        if self.router_stake_min == 0 || self.worker_stake_min == 0 {
            return Err("router_stake_min and worker_stake_min must be at least 1");
        }
        if self.period_ms == 0 {
            return Err("period_ms must be at least 1");
        }
        Ok(())
    }

    /// The settlement period a block time falls in.
    pub fn period_at(&self, time_ms: u64) -> u64 {
        time_ms / self.period_ms
    }
}

/// Where a transaction is applied: the block's height and timestamp
/// (milliseconds since the Unix epoch, set by its proposer, strictly
/// increasing along the chain and checked by every verifier against its
/// own clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCtx {
    /// The block's height.
    pub height: u64,
    /// The block's timestamp, ms.
    pub time_ms: u64,
}
