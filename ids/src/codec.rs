//! The one codec for everything Bonus signs, hashes or stores:
//! `commonware-codec` primitives (big-endian fixed-width integers, LEB128
//! `u32` lengths, a 0/1 byte before an optional value). Manifests,
//! transactions, blocks and the ledger's state all encode through
//! [`Writer`] and decode through [`Reader`], which is strict (one encoding
//! per value) and never allocates more than its input can fill.

use crate::{ManifestId, PublicKey};
use commonware_codec::Write as _;

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended early.
    #[error("truncated input")]
    Truncated,
    /// Bytes remained after the value.
    #[error("trailing bytes after the value")]
    Trailing,
    /// Larger than allowed, or a length beyond what remains.
    #[error("value too large")]
    TooLarge,
    /// An unknown tag, a non-canonical varint, invalid UTF-8 or an invalid key.
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// Canonical writer; the encoding is the inner vector.
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// An empty writer with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Writer {
        Writer(Vec::with_capacity(bytes))
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        v.write(&mut self.0);
    }
    /// Big-endian, 4 bytes.
    pub fn u32(&mut self, v: u32) {
        v.write(&mut self.0);
    }
    /// Big-endian, 8 bytes.
    pub fn u64(&mut self, v: u64) {
        v.write(&mut self.0);
    }
    /// Raw bytes, no length (fixed-size fields).
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// A length or count: LEB128 `u32`.
    pub fn len(&mut self, len: usize) {
        let len = u32::try_from(len).expect("lengths are bounded far below u32::MAX");
        commonware_codec::varint::UInt(len).write(&mut self.0);
    }
    /// A length, then UTF-8 bytes.
    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    /// A length, then the bytes.
    pub fn blob(&mut self, v: &[u8]) {
        self.len(v.len());
        self.0.extend_from_slice(v);
    }
}

/// Strict reader over a byte slice; the inner slice is what remains.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// Succeeds only if nothing is left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    /// `N` raw bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// A 0 or 1 byte; anything else is malformed.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("boolean is neither 0 nor 1")),
        }
    }
    /// Big-endian, 4 bytes.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// Big-endian, 8 bytes.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn varint(&mut self) -> Result<usize, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| DecodeError::TooLarge);
            }
        }
        Err(DecodeError::Malformed("varint too long"))
    }
    /// A byte length: at most `max` and at most what remains.
    pub fn len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let len = self.varint()?;
        if len > max || len > self.0.len() {
            return Err(DecodeError::TooLarge);
        }
        Ok(len)
    }
    /// An item count: at most `max`, and each item at least `item_bytes`
    /// long, so a hostile count cannot make us allocate beyond the input.
    pub fn count(&mut self, max: usize, item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > max || n.saturating_mul(item_bytes) > self.0.len() {
            return Err(DecodeError::TooLarge);
        }
        Ok(n)
    }
    /// A length of at most `max` bytes, then valid UTF-8.
    pub fn str(&mut self, max: usize) -> Result<String, DecodeError> {
        let len = self.len(max)?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Malformed("invalid UTF-8"))
    }
    /// A length of at most `max`, then the bytes.
    pub fn blob(&mut self, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.len(max)?;
        Ok(self.take(len)?.to_vec())
    }
    /// A valid ed25519 public key.
    pub fn key(&mut self) -> Result<PublicKey, DecodeError> {
        PublicKey::from_bytes(self.array()?)
            .map_err(|_| DecodeError::Malformed("invalid public key"))
    }
    /// A manifest id.
    pub fn manifest(&mut self) -> Result<ManifestId, DecodeError> {
        Ok(ManifestId::from_bytes(self.array()?))
    }
}
