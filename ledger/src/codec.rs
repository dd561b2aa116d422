//! The ledger's one codec for everything signed, hashed or stored:
//! `commonware-codec` primitives (big-endian fixed-width integers, LEB128
//! `u32` lengths). Transactions, blocks and the state all encode through
//! [`Writer`] and decode through [`Reader`], which never allocates more
//! than its input can fill.

use bonus_ids::{ManifestId, PublicKey};
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

/// Canonical writer.
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn with_capacity(bytes: usize) -> Writer {
        Writer(Vec::with_capacity(bytes))
    }
    pub(crate) fn u8(&mut self, v: u8) {
        v.write(&mut self.0);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        v.write(&mut self.0);
    }
    pub(crate) fn u64(&mut self, v: u64) {
        v.write(&mut self.0);
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    pub(crate) fn len(&mut self, len: usize) {
        let len = u32::try_from(len).expect("lengths are bounded far below u32::MAX");
        commonware_codec::varint::UInt(len).write(&mut self.0);
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    pub(crate) fn blob(&mut self, v: &[u8]) {
        self.len(v.len());
        self.0.extend_from_slice(v);
    }
}

/// Strict reader over a byte slice.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
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
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("boolean is neither 0 nor 1")),
        }
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
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
    pub(crate) fn len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let len = self.varint()?;
        if len > max || len > self.0.len() {
            return Err(DecodeError::TooLarge);
        }
        Ok(len)
    }
    /// An item count: at most `max`, and each item at least `item_bytes`
    /// long, so a hostile count cannot make us allocate beyond the input.
    pub(crate) fn count(&mut self, max: usize, item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > max || n.saturating_mul(item_bytes) > self.0.len() {
            return Err(DecodeError::TooLarge);
        }
        Ok(n)
    }
    pub(crate) fn str(&mut self, max: usize) -> Result<String, DecodeError> {
        let len = self.len(max)?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Malformed("invalid UTF-8"))
    }
    pub(crate) fn blob(&mut self, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.len(max)?;
        Ok(self.take(len)?.to_vec())
    }
    pub(crate) fn key(&mut self) -> Result<PublicKey, DecodeError> {
        PublicKey::from_bytes(self.array()?)
            .map_err(|_| DecodeError::Malformed("invalid public key"))
    }
    pub(crate) fn manifest(&mut self) -> Result<ManifestId, DecodeError> {
        Ok(ManifestId::from_bytes(self.array()?))
    }
}
