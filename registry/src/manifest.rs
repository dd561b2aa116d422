//! Manifests: what a developer signs about a function.
//!
//! A manifest names the function and pins its artifact (id and size), its
//! limits, the owner's budget (the consent the ledger needs before it
//! charges the owner), environment, allowed outbound hosts, routes and its
//! place in the version history. Its id is the BLAKE3 of its canonical
//! encoding (the project's one codec, `commonware-codec`); the developer
//! signs `MANIFEST_DOMAIN ‖ id`. Decoding rejects anything that does not
//! re-encode to the same bytes, so one manifest has exactly one id.
//!
//! Format 2 added the budget; format 1 manifests are refused, never read
//! with a guessed budget: their owners consented to no price.

use crate::{Error, Result};
use bonus_ids::codec::{DecodeError, Reader, Writer};
use bonus_ids::{ArtifactId, ManifestId, PublicKey, SecretKey, Signature};

/// Domain separation for manifest signatures.
pub const MANIFEST_DOMAIN: &[u8] = b"bonus/manifest/v2";

/// Encoding format version, the first byte of every encoded manifest.
const FORMAT_V2: u8 = 2;
/// The format before the budget, refused with [`Error::ManifestFormatRetired`].
const FORMAT_V1: u8 = 1;

/// Bounds on decoded manifests, so a hostile one cannot make us allocate.
pub const NAME_BYTES_MAX: usize = 63;
/// Most environment variables, outbound hosts or routes in a manifest.
pub const MANIFEST_LIST_ITEMS_MAX: usize = 64;
/// Longest key, value, host pattern or route.
pub const MANIFEST_STRING_BYTES_MAX: usize = 4096;

/// Per-invocation limits a function asks for (nodes cap them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Fuel budget per request.
    pub fuel_max: u64,
    /// Linear memory per request, bytes.
    pub memory_bytes_max: u64,
    /// Wall-clock deadline per request, milliseconds.
    pub deadline_ms: u32,
}

/// What the owner consents to be charged for a function: the ledger charges
/// nothing beyond it. Part of the signed manifest, so a budget cannot change
/// without a new signature (and a new manifest id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestBudget {
    /// The most the owner pays per million fuel: a worker whose registered
    /// price is above it may not charge for this manifest.
    pub price_per_million_fuel_max: u64,
    /// The most the owner is charged per settlement period for this
    /// function; 0 means it is never charged.
    pub spend_per_period_max: u64,
}

impl ManifestBudget {
    /// A budget for development and local networks, what `bonus deploy`
    /// signs unless told otherwise: up to 1 000 per million fuel and
    /// 1 000 000 000 per settlement period. Chosen explicitly; there is no
    /// `Default`, so no manifest consents to a budget by accident.
    pub const DEV: ManifestBudget = ManifestBudget {
        price_per_million_fuel_max: 1_000,
        spend_per_period_max: 1_000_000_000,
    };
}

/// What a developer says about one version of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The function's name: a DNS label (`[a-z0-9-]`, 1–63, no leading or
    /// trailing `-`), served at `<name>.<router host>`.
    pub name: String,
    /// The component.
    pub artifact_id: ArtifactId,
    /// Its size in bytes.
    pub artifact_bytes: u64,
    /// Limits per request.
    pub limits: ManifestLimits,
    /// What the owner consents to be charged.
    pub budget: ManifestBudget,
    /// Environment variables, sorted by key, keys unique.
    pub env: Vec<(String, String)>,
    /// Outbound HTTP allow-list (`scheme://host[:port]` patterns).
    pub allowed_outbound_hosts: Vec<String>,
    /// Path prefixes served; empty means every path.
    pub routes: Vec<String>,
    /// 1 for a first deploy, parent's + 1 after.
    pub version: u32,
    /// The manifest this one replaces.
    pub parent: Option<ManifestId>,
    /// Who signs it: the developer's account.
    pub owner: PublicKey,
}

/// A manifest with its owner's signature. Constructed only by signing or
/// by [`SignedManifest::decode`], both of which check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedManifest {
    manifest: Manifest,
    id: ManifestId,
    signature: Signature,
}

impl Manifest {
    /// The canonical encoding: what is hashed.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.u8(FORMAT_V2);
        w.str(&self.name);
        w.bytes(self.artifact_id.as_bytes());
        w.u64(self.artifact_bytes);
        w.u64(self.limits.fuel_max);
        w.u64(self.limits.memory_bytes_max);
        w.u32(self.limits.deadline_ms);
        w.u64(self.budget.price_per_million_fuel_max);
        w.u64(self.budget.spend_per_period_max);
        w.len(self.env.len());
        for (key, value) in &self.env {
            w.str(key);
            w.str(value);
        }
        write_strs(&mut w, &self.allowed_outbound_hosts);
        write_strs(&mut w, &self.routes);
        w.u32(self.version);
        match &self.parent {
            Some(parent) => {
                w.u8(1);
                w.bytes(parent.as_bytes());
            }
            None => w.u8(0),
        }
        w.bytes(self.owner.as_bytes());
        w.0
    }

    /// The id: BLAKE3 of the canonical encoding.
    pub fn id(&self) -> ManifestId {
        ManifestId::of(&self.encode())
    }

    /// Checks the rules a decoded or newly built manifest must follow.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Error::ManifestInvalid { reason };
        if !is_dns_label(&self.name) {
            return Err(invalid(format!(
                "name {:?} must be 1-63 of [a-z0-9-], not starting or ending with '-'",
                self.name
            )));
        }
        if self.version == 0 || (self.version == 1) != self.parent.is_none() {
            return Err(invalid(
                "version 1 has no parent; later versions have one".into(),
            ));
        }
        if !self.env.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err(invalid("env keys must be sorted and unique".into()));
        }
        if self
            .env
            .iter()
            .any(|(key, _)| key.is_empty() || key.contains('='))
        {
            return Err(invalid(
                "env keys must be non-empty and contain no '='".into(),
            ));
        }
        let lists = [
            self.env.len(),
            self.allowed_outbound_hosts.len(),
            self.routes.len(),
        ];
        if lists.iter().any(|&len| len > MANIFEST_LIST_ITEMS_MAX) {
            return Err(invalid(format!(
                "at most {MANIFEST_LIST_ITEMS_MAX} env vars, hosts or routes"
            )));
        }
        if self.routes.iter().any(|route| !route.starts_with('/')) {
            return Err(invalid("routes must start with '/'".into()));
        }
        Ok(())
    }

    /// Validates and signs. `key` must be the owner's.
    pub fn sign(self, key: &SecretKey) -> Result<SignedManifest> {
        self.validate()?;
        if key.public() != self.owner {
            return Err(Error::ManifestInvalid {
                reason: format!(
                    "signing key {} is not the owner {}",
                    key.public(),
                    self.owner
                ),
            });
        }
        let id = self.id();
        let signature = key.sign(&signing_message(&id));
        Ok(SignedManifest {
            manifest: self,
            id,
            signature,
        })
    }
}

impl SignedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Its id.
    pub fn id(&self) -> ManifestId {
        self.id
    }

    /// The owner's signature over `MANIFEST_DOMAIN ‖ id`.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Wire form: the canonical manifest encoding followed by the signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = self.manifest.encode();
        buf.extend_from_slice(self.signature.as_bytes());
        buf
    }

    /// Decodes and fully checks a signed manifest: canonical encoding,
    /// field rules and the owner's signature.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let malformed = |reason: String| Error::ManifestMalformed { reason };
        if bytes.len() < 64 {
            return Err(malformed("shorter than a signature".into()));
        }
        let (body, signature) = bytes.split_at(bytes.len() - 64);
        if body.first() == Some(&FORMAT_V1) {
            return Err(Error::ManifestFormatRetired { format: FORMAT_V1 });
        }
        let manifest = decode_manifest(body).map_err(|e| malformed(e.to_string()))?;
        if manifest.encode() != body {
            return Err(malformed("not in canonical encoding".into()));
        }
        manifest.validate()?;
        let id = ManifestId::of(body);
        let signature = Signature::from_bytes(signature.try_into().expect("split at 64"));
        manifest
            .owner
            .verify(&signing_message(&id), &signature)
            .map_err(|_| Error::ManifestSignatureInvalid { manifest_id: id })?;
        Ok(SignedManifest {
            manifest,
            id,
            signature,
        })
    }
}

fn signing_message(id: &ManifestId) -> Vec<u8> {
    [MANIFEST_DOMAIN, id.as_bytes()].concat()
}

fn is_dns_label(name: &str) -> bool {
    (1..=NAME_BYTES_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn write_strs(w: &mut Writer, items: &[String]) {
    w.len(items.len());
    for item in items {
        w.str(item);
    }
}

fn read_strs(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    // Each string is at least its one-byte length.
    let count = r.count(MANIFEST_LIST_ITEMS_MAX, 1)?;
    (0..count)
        .map(|_| r.str(MANIFEST_STRING_BYTES_MAX))
        .collect()
}

fn decode_manifest(body: &[u8]) -> Result<Manifest, DecodeError> {
    let r = &mut Reader(body);
    if r.u8()? != FORMAT_V2 {
        return Err(DecodeError::Malformed("unknown manifest format version"));
    }
    let name = r.str(NAME_BYTES_MAX)?;
    let artifact_id = ArtifactId::from_bytes(r.array()?);
    let artifact_bytes = r.u64()?;
    let limits = ManifestLimits {
        fuel_max: r.u64()?,
        memory_bytes_max: r.u64()?,
        deadline_ms: r.u32()?,
    };
    let budget = ManifestBudget {
        price_per_million_fuel_max: r.u64()?,
        spend_per_period_max: r.u64()?,
    };
    let env_len = r.count(MANIFEST_LIST_ITEMS_MAX, 2)?;
    let env = (0..env_len)
        .map(|_| {
            Ok((
                r.str(MANIFEST_STRING_BYTES_MAX)?,
                r.str(MANIFEST_STRING_BYTES_MAX)?,
            ))
        })
        .collect::<Result<_, DecodeError>>()?;
    let allowed_outbound_hosts = read_strs(r)?;
    let routes = read_strs(r)?;
    let version = r.u32()?;
    let parent = if r.bool()? { Some(r.manifest()?) } else { None };
    let owner = r.key()?;
    r.finish()?;
    Ok(Manifest {
        name,
        artifact_id,
        artifact_bytes,
        limits,
        budget,
        env,
        allowed_outbound_hosts,
        routes,
        version,
        parent,
        owner,
    })
}
