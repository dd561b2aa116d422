//! Identifiers: the artifact a request runs and the request itself.

use std::fmt;
use std::str::FromStr;

/// BLAKE3 of a component's bytes: equal to `b3sum` of the `.wasm` file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactId([u8; 32]);

impl ArtifactId {
    /// The id of these bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ArtifactId(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps a digest computed elsewhere (for example while streaming).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ArtifactId(bytes)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, as `b3sum` prints it.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.to_hex())
    }
}

impl fmt::Debug for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactId({})", self.to_hex())
    }
}

/// An artifact id that is not 64 hex digits (optionally after `blake3:`).
#[derive(Debug, thiserror::Error)]
#[error("invalid artifact id {0:?}: expected 64 hex digits, optionally prefixed by `blake3:`")]
pub struct InvalidArtifactId(String);

impl FromStr for ArtifactId {
    type Err = InvalidArtifactId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("blake3:").unwrap_or(s);
        blake3::Hash::from_hex(hex)
            .map(|hash| ArtifactId(*hash.as_bytes()))
            .map_err(|_| InvalidArtifactId(s.to_string()))
    }
}

/// Names one invocation in logs, headers and (later) usage receipts.
///
/// Unique per node: a random 64-bit node prefix and a 64-bit counter.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u128);

impl RequestId {
    /// Wraps a raw id.
    pub fn from_u128(id: u128) -> Self {
        RequestId(id)
    }

    /// The raw id.
    pub fn as_u128(&self) -> u128 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_id_round_trips_and_matches_b3sum() {
        // b3sum of the empty input.
        let empty = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        let id = ArtifactId::of(b"");
        assert_eq!(id.to_hex(), empty);
        assert_eq!(id.to_string().parse::<ArtifactId>().expect("parses"), id);
        assert_eq!(empty.parse::<ArtifactId>().expect("parses"), id);
        assert!("blake3:xyz".parse::<ArtifactId>().is_err());
    }
}
