//! Content ids (artifacts, manifests) and request ids.

use std::fmt;
use std::str::FromStr;

/// Defines a 32-byte BLAKE3 id type with hex text forms.
macro_rules! blake3_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The id of these bytes.
            pub fn of(bytes: &[u8]) -> Self {
                $name(*blake3::hash(bytes).as_bytes())
            }

            /// Wraps a digest computed elsewhere (for example while streaming).
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                $name(bytes)
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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, ":{}"), self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = InvalidArtifactId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let hex = s.strip_prefix(concat!($prefix, ":")).unwrap_or(s);
                blake3::Hash::from_hex(hex)
                    .map(|hash| $name(*hash.as_bytes()))
                    .map_err(|_| InvalidArtifactId(s.to_string()))
            }
        }
    };
}

blake3_id!(
    /// BLAKE3 of a component's bytes: equal to `b3sum` of the `.wasm` file.
    ArtifactId,
    "blake3"
);

blake3_id!(
    /// BLAKE3 of a manifest's canonical encoding (what its developer signs).
    ManifestId,
    "manifest"
);

/// An id that is not 64 hex digits (optionally after its `prefix:`).
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid id {0:?}: expected 64 hex digits, optionally prefixed by `blake3:` or `manifest:`"
)]
pub struct InvalidArtifactId(String);

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

    /// Its 32 lower-case hex digits, as [`Display`](fmt::Display) prints
    /// them, without allocating (it goes into a header on every response).
    pub fn hex_digits(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, digit) in out.iter_mut().enumerate() {
            let nibble = (self.0 >> (4 * (31 - i))) & 0xf;
            *digit = DIGITS[nibble as usize];
        }
        out
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.hex_digits();
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
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
    fn a_request_id_prints_as_32_hex_digits() {
        for id in [
            0,
            1,
            0xdead_beef,
            u128::MAX,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        ] {
            let id = RequestId::from_u128(id);
            assert_eq!(id.to_string(), format!("{:032x}", id.as_u128()));
        }
    }

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
