//! Compiled-code cache on disk, keyed by (artifact id, engine compatibility).
//!
//! An entry is `MAGIC ‖ blake3(payload) ‖ payload`, where the payload is
//! wasmtime's serialized component. The digest is checked before the payload
//! reaches `Component::deserialize`, so a truncated, bit-flipped or foreign
//! file is rebuilt, never loaded. Entries are written to a temp file, fsynced
//! and renamed: a crash leaves either the old entry or the new one.

use crate::{ArtifactId, Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BONUSCW1";
const HEADER_LEN: usize = MAGIC.len() + blake3::OUT_LEN;

/// A directory of compiled components for one engine configuration.
#[derive(Clone, Debug)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    /// Hex digest of the engine's compatibility hash: a different wasmtime
    /// version or configuration never sees another's entries.
    engine_key: String,
}

/// Why an entry was not used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    Absent,
    Corrupt,
}

impl CodeCache {
    pub(crate) fn open(dir: &Path, engine: &wasmtime::Engine) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Cache {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut hasher = HashWriter(blake3::Hasher::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_key = hasher.0.finalize().to_hex()[..16].to_string();
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    pub(crate) fn path(&self, artifact_id: &ArtifactId) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            artifact_id.to_hex(),
            self.engine_key
        ))
    }

    /// The verified serialized component, or why there is none.
    pub(crate) fn read(&self, artifact_id: &ArtifactId) -> Result<Vec<u8>, Miss> {
        let path = self.path(artifact_id);
        let mut bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable cache entry");
                return Err(Miss::Corrupt);
            }
        };
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(Miss::Corrupt);
        }
        let digest = &bytes[MAGIC.len()..HEADER_LEN];
        if blake3::hash(&bytes[HEADER_LEN..]).as_bytes() != digest {
            return Err(Miss::Corrupt);
        }
        bytes.drain(..HEADER_LEN);
        Ok(bytes)
    }

    pub(crate) fn write(&self, artifact_id: &ArtifactId, payload: &[u8]) -> Result<()> {
        let path = self.path(artifact_id);
        let io_error = |source| Error::Cache {
            path: path.clone(),
            source,
        };
        let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(io_error)?;
        file.write_all(MAGIC).map_err(io_error)?;
        file.write_all(blake3::hash(payload).as_bytes())
            .map_err(io_error)?;
        file.write_all(payload).map_err(io_error)?;
        file.as_file().sync_all().map_err(io_error)?;
        file.persist(&path).map_err(|e| io_error(e.error))?;
        Ok(())
    }
}

impl CodeCache {
    fn over_budget_path(&self, artifact_id: &ArtifactId) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.over-budget",
            artifact_id.to_hex(),
            self.engine_key
        ))
    }

    /// The CPU budget (seconds) a compile of this artifact was stopped at,
    /// by this or an earlier process on this cache; `None` if none was.
    pub(crate) fn over_budget(&self, artifact_id: &ArtifactId) -> Option<u64> {
        let text = std::fs::read_to_string(self.over_budget_path(artifact_id)).ok()?;
        text.trim().parse().ok()
    }

    /// Records that a compile of this artifact was stopped at `cpu_seconds`,
    /// so that a restarted node does not spend that budget on it again.
    /// Best effort: without the record, the next process tries once more.
    pub(crate) fn mark_over_budget(&self, artifact_id: &ArtifactId, cpu_seconds: u64) {
        let path = self.over_budget_path(artifact_id);
        if let Err(e) = std::fs::write(&path, format!("{cpu_seconds}\n")) {
            tracing::warn!(path = %path.display(), error = %e, "cannot record a compile past its budget");
        }
    }
}

/// Feeds `std::hash::Hash` output into BLAKE3, whose output, unlike
/// `DefaultHasher`'s, is stable across Rust releases.
struct HashWriter(blake3::Hasher);

impl std::hash::Hasher for HashWriter {
    fn finish(&self) -> u64 {
        let digest = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
