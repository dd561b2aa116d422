//! Per-invocation randomness from a seed, so an invocation can be re-executed
//! exactly (audits compare fuel) while staying unpredictable to anyone who
//! does not know the seed.

use rand::TryRng;
use std::convert::Infallible;

/// BLAKE3 in extendable-output mode, keyed by the invocation's seed: a
/// cryptographically strong stream, reproducible from the seed.
pub(crate) struct SeededRng(blake3::OutputReader);

impl SeededRng {
    pub(crate) fn new(seed: &[u8; 32], stream: &str) -> Self {
        let mut hasher = blake3::Hasher::new_keyed(seed);
        hasher.update(stream.as_bytes());
        SeededRng(hasher.finalize_xof())
    }
}

impl TryRng for SeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.0.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dest);
        Ok(())
    }
}
