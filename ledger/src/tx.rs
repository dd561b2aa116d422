//! Transactions: what accounts ask the ledger to do, signed ed25519 with a
//! per-account nonce. Encoded canonically with `commonware-codec`
//! (big-endian integers, varint lengths); the signature covers
//! `TX_DOMAIN ‖ blake3(encoding of signer, nonce and body)`.

use bonus_ids::{ManifestId, PublicKey, SecretKey, Signature};
use commonware_codec::Write as _;

/// Domain separation for transaction signatures.
pub const TX_DOMAIN: &[u8] = b"bonus/tx/v1";

/// What a node does for the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeRole {
    /// Runs functions and settles usage.
    Worker,
    /// Forwards requests and attests counts.
    Router,
}

/// One (manifest, payer) line of a settlement batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    /// The function version that ran.
    pub manifest_id: ManifestId,
    /// Who pays: the owner of the name the manifest is deployed under.
    pub payer: PublicKey,
    /// Invocations in the period.
    pub invocations: u64,
    /// Fuel they consumed.
    pub fuel: u64,
}

/// A worker's usage for one period. Its id is `(worker, sequence)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleBatch {
    /// The worker's batch counter.
    pub sequence: u64,
    /// Settlement period the usage belongs to.
    pub period: u64,
    /// Aggregates per (manifest, payer).
    pub aggregates: Vec<Aggregate>,
    /// Merkle root of the receipts, kept by the worker for audits.
    pub receipts_root: [u8; 32],
}

/// A router's forwarded counts for one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// Settlement period.
    pub period: u64,
    /// (manifest, worker, invocations forwarded).
    pub counts: Vec<(ManifestId, PublicKey, u64)>,
}

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxBody {
    /// Move funds.
    Transfer {
        /// Recipient.
        to: PublicKey,
        /// Amount.
        amount: u64,
    },
    /// Bind (first deploy claims) or update a name to a manifest.
    Deploy {
        /// The name.
        name: String,
        /// The signed manifest's id.
        manifest_id: ManifestId,
        /// The manifest's fuel limit per invocation (settlement caps fuel by it).
        fuel_per_invocation_max: u64,
    },
    /// Split a name's traffic between its manifests by weight.
    SetTraffic {
        /// The name.
        name: String,
        /// (manifest, weight).
        splits: Vec<(ManifestId, u32)>,
    },
    /// Register (or update) the signer as a node.
    RegisterNode {
        /// Worker or router.
        role: NodeRole,
        /// Where to reach it.
        endpoint: String,
        /// Region hint.
        region: String,
        /// Price per million fuel.
        price_per_million_fuel: u64,
        /// Stake moved from the balance.
        stake: u64,
    },
    /// A worker's settlement batch.
    Settle(SettleBatch),
    /// A router's attestation.
    Attest(Attestation),
    /// Move balance to stake.
    Stake {
        /// Amount.
        amount: u64,
    },
    /// Start unbonding stake.
    Unstake {
        /// Amount.
        amount: u64,
    },
}

/// A signed transaction. Signature validity is checked by the state
/// machine, which must see every byte anyway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    /// Who signs and pays.
    pub signer: PublicKey,
    /// The signer's next nonce.
    pub nonce: u64,
    /// What to do.
    pub body: TxBody,
    /// Signature over the digest.
    pub signature: Signature,
}

impl SignedTx {
    /// Signs `body` as `key` with `nonce`.
    pub fn sign(key: &SecretKey, nonce: u64, body: TxBody) -> SignedTx {
        let signer = key.public();
        let signature = key.sign(&signing_message(&signer, nonce, &body));
        SignedTx {
            signer,
            nonce,
            body,
            signature,
        }
    }

    /// Whether the signature verifies.
    pub fn verify(&self) -> bool {
        self.signer
            .verify(
                &signing_message(&self.signer, self.nonce, &self.body),
                &self.signature,
            )
            .is_ok()
    }

    /// The canonical encoding (signer, nonce, body, signature).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = encode_unsigned(&self.signer, self.nonce, &self.body);
        out.extend_from_slice(self.signature.as_bytes());
        out
    }

    /// The transaction id: BLAKE3 of its encoding.
    pub fn id(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }
}

fn signing_message(signer: &PublicKey, nonce: u64, body: &TxBody) -> Vec<u8> {
    let digest = blake3::hash(&encode_unsigned(signer, nonce, body));
    [TX_DOMAIN, digest.as_bytes()].concat()
}

fn encode_unsigned(signer: &PublicKey, nonce: u64, body: &TxBody) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(128));
    w.bytes(signer.as_bytes());
    w.u64(nonce);
    match body {
        TxBody::Transfer { to, amount } => {
            w.u8(0);
            w.bytes(to.as_bytes());
            w.u64(*amount);
        }
        TxBody::Deploy {
            name,
            manifest_id,
            fuel_per_invocation_max,
        } => {
            w.u8(1);
            w.str(name);
            w.bytes(manifest_id.as_bytes());
            w.u64(*fuel_per_invocation_max);
        }
        TxBody::SetTraffic { name, splits } => {
            w.u8(2);
            w.str(name);
            w.len(splits.len());
            for (manifest_id, weight) in splits {
                w.bytes(manifest_id.as_bytes());
                w.u32(*weight);
            }
        }
        TxBody::RegisterNode {
            role,
            endpoint,
            region,
            price_per_million_fuel,
            stake,
        } => {
            w.u8(3);
            w.u8(*role as u8);
            w.str(endpoint);
            w.str(region);
            w.u64(*price_per_million_fuel);
            w.u64(*stake);
        }
        TxBody::Settle(batch) => {
            w.u8(4);
            w.u64(batch.sequence);
            w.u64(batch.period);
            w.len(batch.aggregates.len());
            for a in &batch.aggregates {
                w.bytes(a.manifest_id.as_bytes());
                w.bytes(a.payer.as_bytes());
                w.u64(a.invocations);
                w.u64(a.fuel);
            }
            w.bytes(&batch.receipts_root);
        }
        TxBody::Attest(attestation) => {
            w.u8(5);
            w.u64(attestation.period);
            w.len(attestation.counts.len());
            for (manifest_id, worker, invocations) in &attestation.counts {
                w.bytes(manifest_id.as_bytes());
                w.bytes(worker.as_bytes());
                w.u64(*invocations);
            }
        }
        TxBody::Stake { amount } => {
            w.u8(6);
            w.u64(*amount);
        }
        TxBody::Unstake { amount } => {
            w.u8(7);
            w.u64(*amount);
        }
    }
    w.0
}

/// Canonical writer over `commonware-codec`, the project's one codec:
/// big-endian fixed integers, varint (LEB128) `u32` lengths.
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        v.write(&mut self.0);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        v.write(&mut self.0);
    }
    pub(crate) fn u64(&mut self, v: u64) {
        v.write(&mut self.0);
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    pub(crate) fn len(&mut self, len: usize) {
        let len = u32::try_from(len).expect("lengths are bounded far below u32::MAX");
        commonware_codec::varint::UInt(len).write(&mut self.0);
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
}
