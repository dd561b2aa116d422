//! Transactions: what accounts ask the ledger to do, signed ed25519 with a
//! per-account nonce and bound to one network. Encoded canonically with
//! the ledger's codec ([`crate::codec`]); the signature covers
//! `union_unique(TX_DOMAIN, chain id ‖ blake3(encoding of signer, nonce and
//! body))`, so a transaction signed for one network never verifies on
//! another.
//!
//! Signatures are checked under the ZIP-215 rules (cofactored, every
//! encoding of a point accepted), not dalek's `verify_strict`: under
//! ZIP-215 a batch equation accepts exactly what one-by-one verification
//! accepts, so every validator reaches the same verdict however it groups
//! signatures. With `verify_strict`'s cofactorless rule no batch can
//! promise that: a signer can put a small-order component into `R`, which
//! the random weights of a batch cancel one time in eight.

use crate::codec::{DecodeError, Reader, Writer};
use crate::limits::{
    EVIDENCE_BYTES_MAX, LIST_ITEMS_MAX, NAME_BYTES_MAX, NODE_STRING_BYTES_MAX, TX_BYTES_MAX,
};
use crate::params::ChainId;
use bonus_ids::{KeyMemo, ManifestId, PublicKey, SecretKey, Signature};
use commonware_codec::DecodeExt;
use commonware_cryptography::{BatchEntry, BatchVerifier, Verifier, ed25519};
use commonware_parallel::Sequential;
use commonware_utils::union_unique;

/// Domain separation for transaction signatures.
pub const TX_DOMAIN: &[u8] = b"bonus/tx/v3";

/// What a node does for the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeRole {
    /// Runs functions and settles usage.
    Worker,
    /// Forwards requests and attests counts.
    Router,
}

impl NodeRole {
    /// `worker` or `router`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Worker => "worker",
            NodeRole::Router => "router",
        }
    }
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
    /// Bind a name (the first deploy claims it) or update it to a
    /// manifest. Carries the whole signed manifest (its registry wire
    /// form), so the ledger checks that the signer is the manifest's owner
    /// and takes the name, fuel limit, price maximum and budget from what
    /// the owner signed: nobody can deploy someone else's manifest.
    Deploy {
        /// `SignedManifest::encode()` bytes.
        manifest: Vec<u8>,
    },
    /// Split a name's traffic between its manifests by weight.
    SetTraffic {
        /// The name.
        name: String,
        /// (manifest, weight).
        splits: Vec<(ManifestId, u32)>,
    },
    /// Register the signer as a node, or update its endpoint, region,
    /// price and stake (never its role or operator).
    RegisterNode {
        /// Worker or router.
        role: NodeRole,
        /// The account that runs it and is paid its earnings.
        operator: PublicKey,
        /// Where to reach it.
        endpoint: String,
        /// Region hint.
        region: String,
        /// Price per million fuel.
        price_per_million_fuel: u64,
        /// Stake moved from the signer's balance (added to what is bonded).
        stake: u64,
    },
    /// Stop being a node: its whole stake starts unbonding.
    Deregister,
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
    /// Set a name's budget per period and clear its owner's unpaid mark.
    Fund {
        /// The name.
        name: String,
        /// Most the owner is charged per period for the name (0: never).
        spend_per_period_max: u64,
    },
}

impl TxBody {
    /// A short stable name of the kind (API output, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            TxBody::Transfer { .. } => "transfer",
            TxBody::Deploy { .. } => "deploy",
            TxBody::SetTraffic { .. } => "set_traffic",
            TxBody::RegisterNode { .. } => "register_node",
            TxBody::Deregister => "deregister",
            TxBody::Settle(_) => "settle",
            TxBody::Attest(_) => "attest",
            TxBody::Stake { .. } => "stake",
            TxBody::Unstake { .. } => "unstake",
            TxBody::Slash { .. } => "slash",
            TxBody::Fund { .. } => "fund",
        }
    }
}

/// A signed transaction. Signature validity is checked by the mempool and
/// by the state machine (which must see every byte anyway).
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
    /// Signs `body` as `key` with `nonce`, for the network `chain`.
    pub fn sign(key: &SecretKey, chain: &ChainId, nonce: u64, body: TxBody) -> SignedTx {
        let signer = key.public();
        let message = union_unique(TX_DOMAIN, &signing_payload(chain, &signer, nonce, &body));
        let signature = key.sign(&message);
        SignedTx {
            signer,
            nonce,
            body,
            signature,
        }
    }

    /// The bytes the signature covers on network `chain`.
    pub fn message(&self, chain: &ChainId) -> Vec<u8> {
        union_unique(TX_DOMAIN, &self.payload(chain))
    }

    /// What is signed under [`TX_DOMAIN`].
    fn payload(&self, chain: &ChainId) -> Vec<u8> {
        signing_payload(chain, &self.signer, self.nonce, &self.body)
    }

    /// Whether the signature verifies for network `chain` (ZIP-215).
    pub fn verify(&self, chain: &ChainId) -> bool {
        let Some(key) = zip215_key(&self.signer) else {
            return false;
        };
        let signature = zip215_signature(&self.signature);
        key.verify(TX_DOMAIN, &self.payload(chain), &signature)
    }

    /// Which of `txs` carry a valid signature for network `chain`: always
    /// what [`SignedTx::verify`] says of each, at a fraction of the cost
    /// when they all do. One batch equation checks every signature; only
    /// if it fails is each checked on its own, to find the bad ones.
    pub fn verify_all(txs: &[&SignedTx], chain: &ChainId) -> Vec<bool> {
        let entries = batch_entries(txs, chain);
        let mut verdicts = vec![false; txs.len()];
        let holds = batch_holds(&entries);
        for (index, key, signature, payload) in &entries {
            verdicts[*index] = holds || key.verify(TX_DOMAIN, payload, signature);
        }
        verdicts
    }

    /// The first of `txs` whose signature does not verify for `chain`, if
    /// any: [`SignedTx::verify_all`] for a caller that refuses the whole
    /// set at the first bad one (a block), so a bad batch costs one
    /// equation and the singles up to that one, not every single.
    pub fn first_invalid(txs: &[&SignedTx], chain: &ChainId) -> Option<usize> {
        let entries = batch_entries(txs, chain);
        if entries.len() == txs.len() && batch_holds(&entries) {
            return None;
        }
        let mut entries = entries.iter().peekable();
        for index in 0..txs.len() {
            match entries.next_if(|(at, ..)| *at == index) {
                Some((_, key, signature, payload)) if key.verify(TX_DOMAIN, payload, signature) => {
                }
                _ => return Some(index),
            }
        }
        None
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

    /// Decodes the canonical encoding; anything else (including a valid
    /// transaction followed by more bytes) is an error. The signature is
    /// not checked here.
    pub fn decode(bytes: &[u8]) -> Result<SignedTx, DecodeError> {
        if bytes.len() > TX_BYTES_MAX {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader(bytes);
        let tx = read_tx(&mut r)?;
        r.finish()?;
        // Lengths are varints: re-encoding proves the input was canonical.
        if tx.encode() != bytes {
            return Err(DecodeError::Malformed("non-canonical encoding"));
        }
        Ok(tx)
    }
}

/// One signature of a batch: its index among the transactions, the key,
/// the signature and the signed payload.
type BatchItem = (usize, ed25519::PublicKey, ed25519::Signature, Vec<u8>);

/// The batch items of `txs`, leaving out those whose key verifies nothing
/// (their verdict is false whatever the batch says).
fn batch_entries(txs: &[&SignedTx], chain: &ChainId) -> Vec<BatchItem> {
    txs.iter()
        .enumerate()
        .filter_map(|(index, tx)| {
            let key = zip215_key(&tx.signer)?;
            Some((
                index,
                key,
                zip215_signature(&tx.signature),
                tx.payload(chain),
            ))
        })
        .collect()
}

/// Whether every item verifies, by one batch equation (a single item by
/// itself). False for no items.
fn batch_holds(entries: &[BatchItem]) -> bool {
    match entries {
        [] => false,
        [(_, key, signature, payload)] => key.verify(TX_DOMAIN, payload, signature),
        // The weights must be unknown to whoever signed the batch.
        _ => ed25519::PublicKey::verify_batch(
            &mut rand::rng(),
            entries,
            |_, (_, key, signature, payload)| BatchEntry {
                namespace: TX_DOMAIN,
                message: payload,
                public_key: key,
                signature,
            },
            &Sequential,
        ),
    }
}

fn signing_payload(chain: &ChainId, signer: &PublicKey, nonce: u64, body: &TxBody) -> Vec<u8> {
    let digest = blake3::hash(&encode_unsigned(signer, nonce, body));
    [&chain.as_bytes()[..], &digest.as_bytes()[..]].concat()
}

/// The signer as a ZIP-215 verification key; `None` if its bytes are no
/// curve point or a point of small order: such a key verifies nothing
/// (ZIP-215 would accept a signature anyone can make for it, and
/// `verify_strict`, the rule before, refused it).
///
/// Decoding costs two point decompressions (one for the small-order
/// check), a sizeable share of a batched verification, and the same
/// signers come back block after block: answers are kept in a bounded
/// [`KeyMemo`].
fn zip215_key(signer: &PublicKey) -> Option<ed25519::PublicKey> {
    /// Decoded keys kept, at most (about 100 bytes each).
    static KEYS: KeyMemo<Option<ed25519::PublicKey>> = KeyMemo::new(1 << 16);
    let bytes = *signer.as_bytes();
    KEYS.get(bytes, || match signer.is_weak() {
        true => None,
        false => ed25519::PublicKey::decode(bytes.to_vec()).ok(),
    })
}

fn zip215_signature(signature: &Signature) -> ed25519::Signature {
    // 64 bytes always decode: the scalar is checked when verifying.
    ed25519::Signature::decode(signature.as_bytes().to_vec())
        .expect("a 64-byte array decodes as a signature")
}

fn encode_unsigned(signer: &PublicKey, nonce: u64, body: &TxBody) -> Vec<u8> {
    let mut w = Writer::with_capacity(128);
    w.bytes(signer.as_bytes());
    w.u64(nonce);
    match body {
        TxBody::Transfer { to, amount } => {
            w.u8(0);
            w.bytes(to.as_bytes());
            w.u64(*amount);
        }
        TxBody::Deploy { manifest } => {
            w.u8(1);
            w.blob(manifest);
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
            operator,
            endpoint,
            region,
            price_per_million_fuel,
            stake,
        } => {
            w.u8(3);
            w.u8(*role as u8);
            w.bytes(operator.as_bytes());
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
            w.blob(evidence);
        }
        TxBody::Deregister => w.u8(9),
        TxBody::Fund {
            name,
            spend_per_period_max,
        } => {
            w.u8(10);
            w.str(name);
            w.u64(*spend_per_period_max);
        }
    }
    w.0
}

pub(crate) fn read_role(r: &mut Reader<'_>) -> Result<NodeRole, DecodeError> {
    match r.u8()? {
        0 => Ok(NodeRole::Worker),
        1 => Ok(NodeRole::Router),
        _ => Err(DecodeError::Malformed("unknown node role")),
    }
}

fn read_tx(r: &mut Reader<'_>) -> Result<SignedTx, DecodeError> {
    let signer = r.key()?;
    let nonce = r.u64()?;
    let body = match r.u8()? {
        0 => TxBody::Transfer {
            to: r.key()?,
            amount: r.u64()?,
        },
        1 => TxBody::Deploy {
            manifest: r.blob(TX_BYTES_MAX)?,
        },
        2 => {
            let name = r.str(NAME_BYTES_MAX)?;
            let n = r.count(LIST_ITEMS_MAX, 36)?;
            let mut splits = Vec::with_capacity(n);
            for _ in 0..n {
                splits.push((r.manifest()?, r.u32()?));
            }
            TxBody::SetTraffic { name, splits }
        }
        3 => TxBody::RegisterNode {
            role: read_role(r)?,
            operator: r.key()?,
            endpoint: r.str(NODE_STRING_BYTES_MAX)?,
            region: r.str(NODE_STRING_BYTES_MAX)?,
            price_per_million_fuel: r.u64()?,
            stake: r.u64()?,
        },
        4 => {
            let sequence = r.u64()?;
            let period = r.u64()?;
            let n = r.count(LIST_ITEMS_MAX, 80)?;
            let mut aggregates = Vec::with_capacity(n);
            for _ in 0..n {
                aggregates.push(Aggregate {
                    manifest_id: r.manifest()?,
                    payer: r.key()?,
                    invocations: r.u64()?,
                    fuel: r.u64()?,
                });
            }
            TxBody::Settle(SettleBatch {
                sequence,
                period,
                aggregates,
                receipts_root: r.array()?,
            })
        }
        5 => {
            let period = r.u64()?;
            let n = r.count(LIST_ITEMS_MAX, 72)?;
            let mut counts = Vec::with_capacity(n);
            for _ in 0..n {
                counts.push((r.manifest()?, r.key()?, r.u64()?));
            }
            TxBody::Attest(Attestation { period, counts })
        }
        6 => TxBody::Stake { amount: r.u64()? },
        7 => TxBody::Unstake { amount: r.u64()? },
        8 => TxBody::Slash {
            evidence: r.blob(EVIDENCE_BYTES_MAX)?,
        },
        9 => TxBody::Deregister,
        10 => TxBody::Fund {
            name: r.str(NAME_BYTES_MAX)?,
            spend_per_period_max: r.u64()?,
        },
        _ => return Err(DecodeError::Malformed("unknown transaction kind")),
    };
    let signature = Signature::from_bytes(r.array()?);
    Ok(SignedTx {
        signer,
        nonce,
        body,
        signature,
    })
}

/// Appends one encoded transaction to a message of several (a gossip
/// batch, the body of `POST /v1/ledger/txs/batch`): its length as 4
/// big-endian bytes, then the bytes.
pub fn push_frame(out: &mut Vec<u8>, tx: &[u8]) {
    out.extend_from_slice(&(tx.len() as u32).to_be_bytes());
    out.extend_from_slice(tx);
}

/// The encoded transactions of a message built by [`push_frame`], at most
/// `items_max` of them; a truncated frame, a frame above
/// [`TX_BYTES_MAX`] or one item too many refuses the whole message.
pub fn split_frames(mut bytes: &[u8], items_max: usize) -> Result<Vec<&[u8]>, DecodeError> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        if frames.len() == items_max {
            return Err(DecodeError::TooLarge);
        }
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or(DecodeError::Truncated)?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > TX_BYTES_MAX {
            return Err(DecodeError::TooLarge);
        }
        if rest.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (tx, rest) = rest.split_at(len);
        frames.push(tx);
        bytes = rest;
    }
    Ok(frames)
}
