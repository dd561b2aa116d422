//! Why a transaction is rejected. Each variant is a clear, stable reason;
//! a rejected transaction leaves the state untouched.

use bonus_ids::{ManifestId, PublicKey};

/// A transaction the state machine refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The signature does not verify for the signer.
    #[error("bad signature from {signer}")]
    BadSignature {
        /// Claimed signer.
        signer: PublicKey,
    },
    /// The nonce is not the account's next one (a replay or a gap).
    #[error("wrong nonce for {signer}: expected {expected}, got {got}")]
    WrongNonce {
        /// Signer.
        signer: PublicKey,
        /// The account's next nonce.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// Not enough balance (or stake) for the operation.
    #[error("insufficient funds in {account}: has {available}, needs {needed}")]
    InsufficientFunds {
        /// The account.
        account: PublicKey,
        /// What it has.
        available: u64,
        /// What it needs.
        needed: u64,
    },
    /// An amount computation would overflow.
    #[error("amount overflow")]
    Overflow,
    /// The name belongs to another account.
    #[error("name {name:?} belongs to {owner}")]
    NotNameOwner {
        /// The name.
        name: String,
        /// Its owner.
        owner: PublicKey,
    },
    /// The name is not bound.
    #[error("unknown name {name:?}")]
    UnknownName {
        /// The name.
        name: String,
    },
    /// A traffic split names a manifest the name was never deployed with,
    /// or its weights are empty or zero.
    #[error("invalid traffic split for {name:?}: {reason}")]
    InvalidTraffic {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The signer is not a registered node of the needed role.
    #[error("{signer} is not a registered {role}")]
    NotANode {
        /// Signer.
        signer: PublicKey,
        /// Needed role.
        role: &'static str,
    },
    /// This batch id settled before.
    #[error("batch ({worker}, {sequence}) already settled")]
    BatchAlreadySettled {
        /// Worker.
        worker: PublicKey,
        /// Its sequence number.
        sequence: u64,
    },
    /// A batch claims more invocations than routers attested.
    #[error(
        "batch claims {claimed} invocations of a manifest in period {period}, routers attested {attested_left} not yet settled"
    )]
    ExceedsAttestation {
        /// The period.
        period: u64,
        /// Invocations claimed.
        claimed: u64,
        /// Attested and not yet settled.
        attested_left: u64,
    },
    /// A batch's fuel exceeds invocations × the manifest's per-invocation limit.
    #[error(
        "batch claims {fuel} fuel for {invocations} invocations, above the manifest limit of {fuel_per_invocation_max} each"
    )]
    FuelOverLimit {
        /// Fuel claimed.
        fuel: u64,
        /// Invocations.
        invocations: u64,
        /// The manifest's limit.
        fuel_per_invocation_max: u64,
    },
    /// A batch settles usage of a manifest no name was deployed with.
    #[error("unknown manifest in batch")]
    UnknownManifest,
    /// Slashing evidence that does not prove an equivocation by a validator.
    #[error("invalid slashing evidence: {0}")]
    InvalidEvidence(&'static str),
    /// The validator was slashed before.
    #[error("validator {validator} was already slashed")]
    AlreadySlashed {
        /// The validator.
        validator: PublicKey,
    },
    /// The signer's balance does not cover the transaction fee.
    #[error("{signer} cannot pay the transaction fee of {fee}; fund the account first")]
    CannotPayFee {
        /// Signer.
        signer: PublicKey,
        /// The fee.
        fee: u64,
    },
    /// A block's timestamp does not move forward from its parent's.
    #[error("block time {block_ms} ms is not after its parent's {parent_ms} ms")]
    BlockTimeNotIncreasing {
        /// The parent's time.
        parent_ms: u64,
        /// The block's time.
        block_ms: u64,
    },
    /// The manifest id was first deployed under another name.
    #[error("manifest {manifest_id} belongs to the name {name:?}")]
    ManifestClaimed {
        /// The manifest.
        manifest_id: ManifestId,
        /// The name it belongs to.
        name: String,
    },
    /// The manifest in a Deploy does not decode or verify.
    #[error("invalid manifest: {reason}")]
    InvalidManifest {
        /// Why.
        reason: String,
    },
    /// A Deploy of a manifest signed by another owner.
    #[error("manifest {manifest_id} belongs to {owner}; only its owner may deploy it")]
    NotManifestOwner {
        /// The manifest.
        manifest_id: ManifestId,
        /// Its owner.
        owner: PublicKey,
    },
    /// A registered node tried to change its role or operator.
    #[error("{node} is registered as a {role} with another operator or role; deregister first")]
    NodeTermsFixed {
        /// The node.
        node: PublicKey,
        /// Its registered role.
        role: &'static str,
    },
    /// A node's stake would be below the genesis minimum for its role.
    #[error("a {role} must keep at least {minimum} staked (would have {stake})")]
    StakeBelowMinimum {
        /// The role.
        role: &'static str,
        /// The genesis minimum.
        minimum: u64,
        /// What it would have.
        stake: u64,
    },
    /// A router vouched for itself or for a worker of its own operator.
    #[error("router {router} may not attest for worker {worker} (same key or operator)")]
    SelfAttestation {
        /// The router.
        router: PublicKey,
        /// The worker.
        worker: PublicKey,
    },
    /// An attestation or batch refers to a period outside the window.
    #[error("period {period} is outside the settlement window (current period {current})")]
    PeriodOutsideWindow {
        /// The period named.
        period: u64,
        /// The current period.
        current: u64,
    },
    /// The worker's price is above what the manifest's owner consented to.
    #[error("worker price {price} per million fuel is above the manifest's maximum {price_max}")]
    PriceAboveConsent {
        /// The worker's registered price.
        price: u64,
        /// The manifest's maximum.
        price_max: u64,
    },
    /// A field is out of range (empty batch, zero amount…).
    #[error("malformed transaction: {0}")]
    Malformed(&'static str),
}
