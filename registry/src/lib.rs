//! Store and spread signed, content-addressed function artifacts.
//!
//! # Core Concepts
//!
//! - An artifact is a component's bytes, named by their BLAKE3 hash
//!   ([`ArtifactId`](bonus_ids::ArtifactId), equal to `b3sum` of the file).
//! - A [`Manifest`] says what a developer deploys: name, artifact, limits,
//!   budget ([`ManifestBudget`]: the most the owner consents to be charged),
//!   env, outbound hosts, routes, version. [`SignedManifest`] is one that
//!   verified: canonical encoding, rules, the owner's ed25519 signature.
//! - The [`Store`] keeps blobs as files named by hash (written to a temp
//!   file, fsynced, renamed) with a redb index of blobs, manifests and
//!   local name bindings ([`NameBinder`], which the ledger will replace).
//!
//! The registry never executes code, and never decides who owns a name
//! globally: the ledger does.
#![deny(missing_docs)]

mod error;
pub mod manifest;
#[cfg(feature = "p2p")]
pub mod p2p;
mod store;
#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use manifest::{Manifest, ManifestBudget, ManifestLimits, SignedManifest};
pub use store::{
    ARTIFACT_BYTES_MAX, BlobInfo, BlobWriter, GcReport, NameBinder, Store, StoreConfig, owner_of,
};
