//! The honest world every attacker meets: an owner with a deployed
//! function, a staked worker and a staked router (distinct operators), on
//! a ledger driven block by block by [`Harness`].

use bonus_ids::{ManifestId, SecretKey};
use bonus_ledger::sim::{Harness, test_deploy};
use bonus_ledger::{Aggregate, Attestation, NodeRole, Params, SettleBatch, TxBody, TxError};

pub const FUEL_MAX: u64 = bonus_ledger::sim::TEST_FUEL_MAX;
pub const PRICE: u64 = 1_000;
pub const PRICE_MAX: u64 = 2_000;
pub const BUDGET: u64 = 100_000;
pub const STAKE: u64 = Params::DEV.worker_stake_min;

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

/// The manifests the tests use, by number: (owner, name, version, price
/// maximum, budget per period). Any other number is a manifest nobody
/// deployed.
fn spec(m: u8) -> Option<(SecretKey, &'static str, u32, u64, u64)> {
    Some(match m {
        1 => (key(41), "hello", 1, PRICE_MAX, BUDGET),
        2 => (key(41), "free", 1, PRICE_MAX, 0),
        3 => (key(41), "hello", 2, PRICE_MAX, BUDGET),
        10 => (key(10), "poor", 1, PRICE_MAX, BUDGET),
        _ => return None,
    })
}

pub fn manifest(m: u8) -> ManifestId {
    match spec(m) {
        Some((owner, name, version, price_max, budget)) => {
            test_deploy(&owner, name, version, price_max, budget).0
        }
        None => ManifestId::from_bytes([m; 32]),
    }
}

/// The Deploy of manifest `m` (whoever signs the transaction).
pub fn deploy(m: u8) -> TxBody {
    let (owner, name, version, price_max, budget) = spec(m).expect("a known manifest");
    test_deploy(&owner, name, version, price_max, budget).1
}

pub struct World {
    pub h: Harness,
    pub owner: SecretKey,
    pub worker: SecretKey,
    pub router: SecretKey,
    /// Funded, but registered as nothing: the attacker's own account.
    pub attacker: SecretKey,
}

pub fn register(role: NodeRole, operator: &SecretKey, price: u64, stake: u64) -> TxBody {
    TxBody::RegisterNode {
        role,
        operator: operator.public(),
        endpoint: "127.0.0.1:4000".into(),
        region: "local".into(),
        price_per_million_fuel: price,
        stake,
    }
}

pub fn attest(period: u64, m: u8, worker: &SecretKey, invocations: u64) -> TxBody {
    TxBody::Attest(Attestation {
        period,
        counts: vec![(manifest(m), worker.public(), invocations)],
    })
}

pub fn batch(
    sequence: u64,
    period: u64,
    m: u8,
    payer: &SecretKey,
    invocations: u64,
    fuel: u64,
) -> TxBody {
    TxBody::Settle(SettleBatch {
        sequence,
        period,
        aggregates: vec![Aggregate {
            manifest_id: manifest(m),
            payer: payer.public(),
            invocations,
            fuel,
        }],
        receipts_root: [7; 32],
    })
}

impl World {
    pub fn new() -> World {
        Self::with_params(Params::DEV)
    }

    pub fn with_params(params: Params) -> World {
        let (owner, worker, router, attacker) = (key(41), key(42), key(43), key(66));
        let h = Harness::new(
            "attacks",
            params,
            &[
                (&owner, 10_000_000),
                (&worker, 100_000),
                (&router, 100_000),
                (&attacker, 1_000_000),
            ],
        );
        let mut world = World {
            h,
            owner,
            worker,
            router,
            attacker,
        };
        let (owner, worker, router) = (world.owner(), world.worker(), world.router());
        world.ok(&owner, deploy(1));
        world.ok(&worker, register(NodeRole::Worker, &worker, PRICE, STAKE));
        world.ok(&router, register(NodeRole::Router, &router, 0, STAKE));
        world
    }

    pub fn owner(&self) -> SecretKey {
        SecretKey::from_seed(self.owner.seed())
    }
    pub fn worker(&self) -> SecretKey {
        SecretKey::from_seed(self.worker.seed())
    }
    pub fn router(&self) -> SecretKey {
        SecretKey::from_seed(self.router.seed())
    }
    pub fn attacker(&self) -> SecretKey {
        SecretKey::from_seed(self.attacker.seed())
    }

    pub fn ok(&mut self, key: &SecretKey, body: TxBody) {
        let kind = body.kind();
        if let Err(error) = self.h.run(key, body) {
            panic!("honest {kind} refused: {error}");
        }
    }

    /// Runs an attacker's transaction and returns why it was refused; it
    /// must be refused, and the harness asserts it changed nothing.
    pub fn refused(&mut self, key: &SecretKey, body: TxBody) -> TxError {
        let kind = body.kind();
        match self.h.run(key, body) {
            Ok(()) => panic!("the attacker's {kind} was accepted"),
            Err(error) => error,
        }
    }

    pub fn balance(&self, key: &SecretKey) -> u64 {
        self.h.state.balance(&key.public())
    }

    pub fn assert_supply(&self) {
        assert_eq!(
            self.h.state.total_supply(),
            u128::from(self.h.state.minted())
        );
    }
}
