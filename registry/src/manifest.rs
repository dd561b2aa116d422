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
use bonus_ids::{ArtifactId, ManifestId, PublicKey, SecretKey, Signature};
use bytes::{Buf as _, BufMut};
use commonware_codec::Buf;
use commonware_codec::{ReadExt, Write};

/// Domain separation for manifest signatures.
pub const MANIFEST_DOMAIN: &[u8] = b"bonus/manifest/v2";

/// Encoding format version, the first byte of every encoded manifest.
const FORMAT_V2: u8 = 2;
/// The format before the budget, refused with [`Error::ManifestFormatRetired`].
const FORMAT_V1: u8 = 1;

/// Bounds on decoded manifests, so a hostile one cannot make us allocate.
pub const NAME_BYTES_MAX: usize = 63;
/// Most environment variables, outbound hosts or routes in a manifest.
pub const LIST_ITEMS_MAX: usize = 64;
/// Longest key, value, host pattern or route.
pub const STRING_BYTES_MAX: usize = 4096;

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
        let mut buf = Vec::with_capacity(256);
        FORMAT_V2.write(&mut buf);
        write_str(&mut buf, &self.name);
        self.artifact_id.as_bytes().write(&mut buf);
        self.artifact_bytes.write(&mut buf);
        self.limits.fuel_max.write(&mut buf);
        self.limits.memory_bytes_max.write(&mut buf);
        self.limits.deadline_ms.write(&mut buf);
        self.budget.price_per_million_fuel_max.write(&mut buf);
        self.budget.spend_per_period_max.write(&mut buf);
        write_len(&mut buf, self.env.len());
        for (key, value) in &self.env {
            write_str(&mut buf, key);
            write_str(&mut buf, value);
        }
        write_strs(&mut buf, &self.allowed_outbound_hosts);
        write_strs(&mut buf, &self.routes);
        self.version.write(&mut buf);
        self.parent.map(|p| *p.as_bytes()).write(&mut buf);
        self.owner.as_bytes().write(&mut buf);
        buf
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
        if lists.iter().any(|&len| len > LIST_ITEMS_MAX) {
            return Err(invalid(format!(
                "at most {LIST_ITEMS_MAX} env vars, hosts or routes"
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

fn write_len(buf: &mut Vec<u8>, len: usize) {
    commonware_codec::varint::UInt(len as u32).write(buf);
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    write_len(buf, s.len());
    buf.put_slice(s.as_bytes());
}

fn write_strs(buf: &mut Vec<u8>, items: &[String]) {
    write_len(buf, items.len());
    for item in items {
        write_str(buf, item);
    }
}

fn read_len(buf: &mut impl Buf, max: usize) -> Result<usize, commonware_codec::Error> {
    let len = commonware_codec::varint::UInt::<u32>::read(buf)?.0 as usize;
    if len > max {
        return Err(commonware_codec::Error::Invalid("length", "too long"));
    }
    Ok(len)
}

fn read_str(buf: &mut impl Buf, max: usize) -> Result<String, commonware_codec::Error> {
    let len = read_len(buf, max)?;
    if buf.remaining() < len {
        return Err(commonware_codec::Error::EndOfBuffer);
    }
    let mut bytes = vec![0u8; len];
    buf.copy_to_slice(&mut bytes);
    String::from_utf8(bytes).map_err(|_| commonware_codec::Error::Invalid("string", "not UTF-8"))
}

fn read_strs(buf: &mut impl Buf) -> Result<Vec<String>, commonware_codec::Error> {
    let count = read_len(buf, LIST_ITEMS_MAX)?;
    (0..count)
        .map(|_| read_str(buf, STRING_BYTES_MAX))
        .collect()
}

fn decode_manifest(body: &[u8]) -> Result<Manifest, commonware_codec::Error> {
    let buf = &mut bytes::Bytes::copy_from_slice(body);
    if u8::read(buf)? != FORMAT_V2 {
        return Err(commonware_codec::Error::Invalid(
            "manifest",
            "unknown format version",
        ));
    }
    let name = read_str(buf, NAME_BYTES_MAX)?;
    let artifact_id = ArtifactId::from_bytes(<[u8; 32]>::read(buf)?);
    let artifact_bytes = u64::read(buf)?;
    let limits = ManifestLimits {
        fuel_max: u64::read(buf)?,
        memory_bytes_max: u64::read(buf)?,
        deadline_ms: u32::read(buf)?,
    };
    let budget = ManifestBudget {
        price_per_million_fuel_max: u64::read(buf)?,
        spend_per_period_max: u64::read(buf)?,
    };
    let env_len = read_len(buf, LIST_ITEMS_MAX)?;
    let env = (0..env_len)
        .map(|_| {
            Ok((
                read_str(buf, STRING_BYTES_MAX)?,
                read_str(buf, STRING_BYTES_MAX)?,
            ))
        })
        .collect::<Result<_, commonware_codec::Error>>()?;
    let allowed_outbound_hosts = read_strs(buf)?;
    let routes = read_strs(buf)?;
    let version = u32::read(buf)?;
    let parent = Option::<[u8; 32]>::read(buf)?.map(ManifestId::from_bytes);
    let owner = PublicKey::from_bytes(<[u8; 32]>::read(buf)?)
        .map_err(|_| commonware_codec::Error::Invalid("owner", "not a valid ed25519 key"))?;
    if buf.has_remaining() {
        return Err(commonware_codec::Error::ExtraData(buf.remaining()));
    }
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
