//! Proof that a validator equivocated, in the consensus engine's own
//! encoding, verifiable by every validator from the genesis validator set.
//!
//! Evidence bytes: a tag (0 conflicting notarizes, 1 conflicting
//! finalizes, 2 nullify and finalize in one view) followed by the
//! commonware-codec encoding of the simplex evidence. Both signatures are
//! checked against the validator set under the ledger's consensus
//! namespace, which includes the chain id, so a forged proof, or one
//! replayed from another network, fails.

use crate::chain::{Digest, namespace};
use crate::params::ChainId;
use bonus_ids::PublicKey;
use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_consensus::simplex::{
    scheme::ed25519::Scheme,
    types::{
        Activity, Attributable as _, ConflictingFinalize, ConflictingNotarize, NullifyFinalize,
    },
};
use commonware_parallel::Sequential;
use commonware_utils::ordered::Quorum as _;
use std::collections::BTreeSet;

/// Encodes the evidence in a consensus activity, if it is evidence.
pub fn from_activity(activity: &Activity<Scheme, Digest>) -> Option<Vec<u8>> {
    let (tag, body) = match activity {
        Activity::ConflictingNotarize(e) => (0u8, e.encode()),
        Activity::ConflictingFinalize(e) => (1, e.encode()),
        Activity::NullifyFinalize(e) => (2, e.encode()),
        _ => return None,
    };
    let mut out = vec![tag];
    out.extend_from_slice(&body);
    Some(out)
}

/// The validator set as consensus orders it.
fn participants(
    validators: &BTreeSet<PublicKey>,
) -> Result<commonware_utils::ordered::Set<commonware_cryptography::ed25519::PublicKey>, &'static str>
{
    let keys: Vec<_> = validators
        .iter()
        .map(crate::chain::consensus_public)
        .collect();
    commonware_utils::ordered::Set::try_from(keys).map_err(|_| "duplicate validators")
}

/// Verifies evidence against the validator set; the offender if valid.
pub fn verify(
    evidence: &[u8],
    chain: &ChainId,
    validators: &BTreeSet<PublicKey>,
) -> Result<PublicKey, &'static str> {
    let (tag, body) = evidence.split_first().ok_or("empty evidence")?;
    let participants = participants(validators)?;
    let verifier = Scheme::verifier(&namespace(chain), participants.clone());
    // Signature verification is deterministic; the rng only seeds batch
    // verification's random coefficients.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let (valid, signer) = match tag {
        0 => {
            let e = ConflictingNotarize::<Scheme, Digest>::decode(body.to_vec())
                .map_err(|_| "malformed conflicting notarizes")?;
            (e.verify(&mut rng, &verifier, &Sequential), e.signer())
        }
        1 => {
            let e = ConflictingFinalize::<Scheme, Digest>::decode(body.to_vec())
                .map_err(|_| "malformed conflicting finalizes")?;
            (e.verify(&mut rng, &verifier, &Sequential), e.signer())
        }
        2 => {
            let e = NullifyFinalize::<Scheme, Digest>::decode(body.to_vec())
                .map_err(|_| "malformed nullify/finalize")?;
            (e.verify(&mut rng, &verifier, &Sequential), e.signer())
        }
        _ => return Err("unknown evidence kind"),
    };
    if !valid {
        return Err("signatures do not verify");
    }
    let key = participants
        .key(signer)
        .ok_or("signer is not a validator")?;
    PublicKey::from_bytes(
        key.as_ref()
            .try_into()
            .map_err(|_| "validator key is not 32 bytes")?,
    )
    .map_err(|_| "validator key is invalid")
}

/// Checks a stored finalization certificate: it decodes, it finalizes the
/// block whose digest is `block_digest`, and a quorum of the validator set
/// signed it under network `chain`'s namespace. A client holding the
/// genesis can so check a block (and the state root in it) on its own.
pub fn verify_finalization(
    certificate: &[u8],
    block_digest: &Digest,
    chain: &ChainId,
    validators: &BTreeSet<PublicKey>,
) -> Result<(), &'static str> {
    use commonware_codec::Decode as _;
    use commonware_consensus::simplex::types::Finalization;
    use commonware_cryptography::certificate::Verifier as _;
    let participants = participants(validators)?;
    let cfg = Scheme::certificate_codec_config_unbounded();
    let finalization = Finalization::<Scheme, Digest>::decode_cfg(certificate.to_vec(), &cfg)
        .map_err(|_| "malformed finalization certificate")?;
    if finalization.proposal.payload != *block_digest {
        return Err("the certificate finalizes another block");
    }
    let verifier = Scheme::verifier(&namespace(chain), participants);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    if !finalization.verify(&mut rng, &verifier, &Sequential) {
        return Err("the certificate's signatures do not verify");
    }
    Ok(())
}
