//! ed25519 identities for developers, nodes and validators.
//!
//! Text form, used everywhere (CLI, JSON, logs): `ed25519:` followed by the
//! 64 lowercase hex digits of the public key. Secret keys are never printed;
//! on disk they are 64 hex digits in a file of mode 0600.

use crate::KeyMemo;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Why a key or signature could not be read, written or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not `ed25519:` + 64 hex digits, or not a valid curve point.
    #[error("invalid public key {text:?}: expected `ed25519:` followed by 64 hex digits")]
    InvalidPublicKey {
        /// The rejected text.
        text: String,
    },
    /// A key file that does not hold 64 hex digits.
    #[error("key file {path} is malformed: expected 64 hex digits")]
    MalformedKeyFile {
        /// The file.
        path: String,
    },
    /// Not 128 hex digits.
    #[error("invalid signature {text:?}…: expected 128 hex digits")]
    InvalidSignatureText {
        /// The start of the rejected text.
        text: String,
    },
    /// The signature does not verify for this key and message.
    #[error("signature does not verify for {signer}")]
    BadSignature {
        /// The claimed signer.
        signer: PublicKey,
    },
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// An ed25519 public key: an account, a node or a validator.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

/// The order of the bytes, compared as four big-endian words: the ledger's
/// maps compare keys at every level of every lookup, and the derived order
/// on `[u8; 32]` is a call to `memcmp` each time.
impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn words(bytes: &[u8; 32]) -> [u64; 4] {
            std::array::from_fn(|i| {
                let mut word = [0; 8];
                word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
                u64::from_be_bytes(word)
            })
        }
        words(&self.0).cmp(&words(&other.0))
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

/// An ed25519 secret key. Never printed: its `Debug` shows the public key.
pub struct SecretKey(ed25519_dalek::SigningKey);

impl PublicKey {
    /// Wraps raw bytes; fails if they are not a valid curve point.
    ///
    /// The check is a point decompression (a field square root, several
    /// microseconds), and a validator decodes the same few keys in every
    /// transaction it sees, several times over (submission, gossip, block):
    /// answers are remembered in a bounded [`KeyMemo`].
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        /// Answers remembered, at most (33 bytes each, plus the map's).
        static VALID: KeyMemo<bool> = KeyMemo::new(1 << 16);
        let valid = VALID.get(bytes, || {
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok()
        });
        match valid {
            true => Ok(PublicKey(bytes)),
            false => Err(KeyError::InvalidPublicKey { text: hex(&bytes) }),
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether the key is a point of small order (or no point at all): a
    /// key anyone can sign for under rules that accept such keys (ZIP-215
    /// accepts `R` = identity, `s` = 0 for it), so it must never own money.
    pub fn is_weak(&self) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_or(true, |key| key.is_weak())
    }

    /// Checks `signature` over `message` (strict verification: no
    /// malleable signatures, no small-order keys).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let bad = || KeyError::BadSignature { signer: *self };
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| bad())?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature).map_err(|_| bad())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || KeyError::InvalidPublicKey {
            text: text.to_string(),
        };
        let digits = text.strip_prefix("ed25519:").unwrap_or(text);
        let bytes = unhex::<32>(digits).ok_or_else(invalid)?;
        PublicKey::from_bytes(bytes).map_err(|_| invalid())
    }
}

impl Signature {
    /// Wraps raw bytes (checked only when verified).
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

/// Hex, 128 digits: a signature carried in text (an HTTP header).
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl FromStr for Signature {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = unhex::<64>(text).ok_or_else(|| KeyError::InvalidSignatureText {
            text: text.chars().take(16).collect(),
        })?;
        Ok(Signature(bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex(&self.0))
    }
}

impl SecretKey {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS provides randomness");
        SecretKey::from_seed(seed)
    }

    /// The key with this 32-byte seed (deterministic: for tests and imports).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The 32-byte seed, to derive other identities from the same key (the
    /// node's libp2p peer id). Never print or log it.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.0.sign(message).to_bytes())
    }

    /// Reads a key file written by [`SecretKey::save`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let seed = unhex::<32>(text.trim()).ok_or_else(|| KeyError::MalformedKeyFile {
            path: path.display().to_string(),
        })?;
        Ok(SecretKey::from_seed(seed))
    }

    /// Writes the key to a new file of mode 0600; never overwrites.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(hex(self.0.as_bytes()).as_bytes())
            .map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public())
    }
}

/// Lower-case hex. Keys are printed on request paths (a router's
/// `x-bonus-worker` header), so one allocation, not one per byte.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (idx, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * idx..2 * idx + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_as_their_bytes() {
        let keys: Vec<[u8; 32]> = (0u8..=255)
            .map(|i| {
                let mut bytes = *blake3::hash(&[i]).as_bytes();
                // Pairs that differ only late, in every word.
                bytes[31 - usize::from(i % 32)] = i;
                if i % 3 == 0 {
                    bytes[..24].fill(0);
                }
                bytes
            })
            .collect();
        for a in &keys {
            for b in &keys {
                assert_eq!(PublicKey(*a).cmp(&PublicKey(*b)), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn sign_verify_and_text_round_trip() {
        let key = SecretKey::from_seed([7; 32]);
        let public = key.public();
        let signature = key.sign(b"message");
        public.verify(b"message", &signature).expect("verifies");
        assert!(public.verify(b"other", &signature).is_err());
        let mut forged = *signature.as_bytes();
        forged[0] ^= 1;
        assert!(
            public
                .verify(b"message", &Signature::from_bytes(forged))
                .is_err()
        );
        let text = public.to_string();
        assert!(text.starts_with("ed25519:") && text.len() == 8 + 64);
        assert_eq!(text.parse::<PublicKey>().expect("parses"), public);
        assert!("ed25519:zz".parse::<PublicKey>().is_err());
        assert!(
            !format!("{key:?}").contains(&hex(&[7; 32])),
            "secret printed"
        );
    }

    #[test]
    fn remembered_valid_keys_never_let_an_invalid_one_through() {
        let valid = *SecretKey::from_seed([9; 32]).public().as_bytes();
        // y = 2 is not the y of any curve point.
        let mut invalid = [0u8; 32];
        invalid[0] = 2;
        assert!(ed25519_dalek::VerifyingKey::from_bytes(&invalid).is_err());
        for _ in 0..3 {
            assert_eq!(
                PublicKey::from_bytes(valid).expect("valid").as_bytes(),
                &valid
            );
            assert!(
                PublicKey::from_bytes(invalid).is_err(),
                "refused every time"
            );
        }
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys/default.key");
        let key = SecretKey::generate();
        key.save(&path).expect("saves");
        assert_eq!(
            SecretKey::load(&path).expect("loads").public(),
            key.public()
        );
        assert!(key.save(&path).is_err(), "overwrote a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("bad.key"), "nope").expect("writes");
        assert!(matches!(
            SecretKey::load(&dir.path().join("bad.key")),
            Err(KeyError::MalformedKeyFile { .. })
        ));
    }
}
