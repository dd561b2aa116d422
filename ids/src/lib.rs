//! Name artifacts, manifests, accounts and nodes, and sign for them.
//!
//! The one small crate every other crate may depend on: content ids
//! ([`ArtifactId`], [`ManifestId`]), request ids ([`RequestId`]) and ed25519
//! identities ([`PublicKey`], [`SecretKey`], [`Signature`]) with their one
//! readable text form, and the one binary [`codec`] that manifests and the
//! ledger encode with. Nothing here does I/O but [`SecretKey`]'s key files.
#![deny(missing_docs)]

mod artifact;
pub mod codec;
mod keys;
mod memo;

pub use artifact::{ArtifactId, InvalidArtifactId, ManifestId, RequestId};
pub use keys::{KeyError, PublicKey, SecretKey, Signature};
pub use memo::KeyMemo;
