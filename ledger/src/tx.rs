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
    /// Punish a validator that signed two conflicting consensus messages.
    /// `evidence` is the consensus engine's own encoding of the conflicting
    /// pair (see [`crate::evidence`]); every validator verifies it.
    Slash {
        /// Encoded evidence.
        evidence: Vec<u8>,
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
        TxBody::Slash { evidence } => {
            w.u8(8);
            w.len(evidence.len());
            w.bytes(evidence);
        }
    }
    w.0
}

/// Largest encoded transaction accepted from the network.
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// Why bytes are not a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended early.
    #[error("truncated transaction")]
    Truncated,
    /// Bytes remained after the transaction.
    #[error("trailing bytes after transaction")]
    Trailing,
    /// Larger than [`MAX_TX_BYTES`], or a length beyond what remains.
    #[error("transaction too large")]
    TooLarge,
    /// An unknown tag, a non-canonical varint, invalid UTF-8 or an invalid key.
    #[error("malformed transaction: {0}")]
    Malformed(&'static str),
}

impl SignedTx {
    /// Decodes the canonical encoding; anything else (including a valid
    /// transaction followed by more bytes) is an error. The signature is
    /// not checked here: the state machine does that.
    pub fn decode(bytes: &[u8]) -> Result<SignedTx, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader(bytes);
        let tx = r.tx()?;
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing);
        }
        // Lengths are varints: re-encoding proves the input was canonical.
        if tx.encode() != bytes {
            return Err(DecodeError::Malformed("non-canonical encoding"));
        }
        Ok(tx)
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                let len = usize::try_from(value).map_err(|_| DecodeError::TooLarge)?;
                if len > self.0.len() {
                    return Err(DecodeError::TooLarge);
                }
                return Ok(len);
            }
        }
        Err(DecodeError::Malformed("varint too long"))
    }
    pub(crate) fn str(&mut self) -> Result<String, DecodeError> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Malformed("invalid UTF-8"))
    }
    pub(crate) fn key(&mut self) -> Result<PublicKey, DecodeError> {
        PublicKey::from_bytes(self.array()?)
            .map_err(|_| DecodeError::Malformed("invalid public key"))
    }
    pub(crate) fn manifest(&mut self) -> Result<ManifestId, DecodeError> {
        Ok(ManifestId::from_bytes(self.array()?))
    }
    pub(crate) fn count(&mut self, item_bytes: usize) -> Result<usize, DecodeError> {
        // A count is bounded by the bytes left, so a hostile length cannot
        // make us allocate more than the input.
        let n = self.len_unchecked()?;
        if n.saturating_mul(item_bytes) > self.0.len() {
            return Err(DecodeError::TooLarge);
        }
        Ok(n)
    }
    fn len_unchecked(&mut self) -> Result<usize, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| DecodeError::TooLarge);
            }
        }
        Err(DecodeError::Malformed("varint too long"))
    }
    fn tx(&mut self) -> Result<SignedTx, DecodeError> {
        let signer = self.key()?;
        let nonce = self.u64()?;
        let body = match self.u8()? {
            0 => TxBody::Transfer {
                to: self.key()?,
                amount: self.u64()?,
            },
            1 => TxBody::Deploy {
                name: self.str()?,
                manifest_id: self.manifest()?,
                fuel_per_invocation_max: self.u64()?,
            },
            2 => {
                let name = self.str()?;
                let n = self.count(36)?;
                let mut splits = Vec::with_capacity(n);
                for _ in 0..n {
                    splits.push((self.manifest()?, self.u32()?));
                }
                TxBody::SetTraffic { name, splits }
            }
            3 => TxBody::RegisterNode {
                role: match self.u8()? {
                    0 => NodeRole::Worker,
                    1 => NodeRole::Router,
                    _ => return Err(DecodeError::Malformed("unknown node role")),
                },
                endpoint: self.str()?,
                region: self.str()?,
                price_per_million_fuel: self.u64()?,
                stake: self.u64()?,
            },
            4 => {
                let sequence = self.u64()?;
                let period = self.u64()?;
                let n = self.count(80)?;
                let mut aggregates = Vec::with_capacity(n);
                for _ in 0..n {
                    aggregates.push(Aggregate {
                        manifest_id: self.manifest()?,
                        payer: self.key()?,
                        invocations: self.u64()?,
                        fuel: self.u64()?,
                    });
                }
                TxBody::Settle(SettleBatch {
                    sequence,
                    period,
                    aggregates,
                    receipts_root: self.array()?,
                })
            }
            5 => {
                let period = self.u64()?;
                let n = self.count(72)?;
                let mut counts = Vec::with_capacity(n);
                for _ in 0..n {
                    counts.push((self.manifest()?, self.key()?, self.u64()?));
                }
                TxBody::Attest(Attestation { period, counts })
            }
            6 => TxBody::Stake {
                amount: self.u64()?,
            },
            7 => TxBody::Unstake {
                amount: self.u64()?,
            },
            8 => {
                let len = self.len()?;
                TxBody::Slash {
                    evidence: self.take(len)?.to_vec(),
                }
            }
            _ => return Err(DecodeError::Malformed("unknown transaction kind")),
        };
        let signature = Signature::from_bytes(self.array()?);
        Ok(SignedTx {
            signer,
            nonce,
            body,
            signature,
        })
    }
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
