//! Why a transaction is rejected. Each variant is a clear, stable reason;
//! a rejected transaction leaves the state untouched.

use bonus_ids::PublicKey;

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
    /// A field is out of range (empty batch, zero amount…).
    #[error("malformed transaction: {0}")]
    Malformed(&'static str),
}
