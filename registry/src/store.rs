//! The local blob store: artifacts as files named by their hash, and a redb
//! index of blobs, manifests and (until the ledger binds names) names.
//!
//! A blob is streamed into `tmp/`, hashed and size-checked as it arrives
//! (or, fetched from peers, written there segment by segment as each
//! verifies against the id), fsynced, then renamed into `blobs/` and only
//! then indexed. A crash at any
//! point leaves either nothing or a complete, verified blob: `open` deletes
//! leftovers in `tmp/` and reconciles `blobs/` with the index.

use crate::manifest::SignedManifest;
use crate::{Error, Result};
use bonus_ids::{ArtifactId, ManifestId, PublicKey};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::io::Write;
use std::path::{Path, PathBuf};

const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");
const MANIFESTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("manifests");
const NAMES: TableDefinition<&str, &[u8; 32]> = TableDefinition::new("names");

/// Default largest artifact accepted.
pub const ARTIFACT_BYTES_MAX: u64 = 50 << 20;

/// Store policy.
#[derive(Clone, Copy, Debug)]
pub struct StoreConfig {
    /// Largest artifact accepted, enforced while streaming.
    pub artifact_bytes_max: u64,
    /// Garbage collection keeps unpinned blobs under this many bytes.
    pub unpinned_bytes_budget: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            artifact_bytes_max: ARTIFACT_BYTES_MAX,
            unpinned_bytes_budget: 1 << 30,
        }
    }
}

/// What the index knows of a stored blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// The artifact.
    pub artifact_id: ArtifactId,
    /// Its size.
    pub bytes: u64,
    /// Pinned blobs are never garbage-collected.
    pub pinned: bool,
    /// When it was last written or read, on the store's use clock (a
    /// counter: larger is more recent, never equal for two uses), so LRU
    /// order is exact however close together the uses are.
    pub last_use: u64,
}

impl BlobInfo {
    fn encode(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[..8].copy_from_slice(&self.bytes.to_be_bytes());
        out[8] = u8::from(self.pinned);
        out[9..].copy_from_slice(&self.last_use.to_be_bytes());
        out
    }

    fn decode(artifact_id: ArtifactId, bytes: &[u8]) -> Result<Self> {
        let fixed: [u8; 17] = bytes
            .try_into()
            .map_err(|_| Error::Index(format!("blob entry for {artifact_id} is corrupt")))?;
        Ok(BlobInfo {
            artifact_id,
            bytes: u64::from_be_bytes(fixed[..8].try_into().expect("8 bytes")),
            pinned: fixed[8] != 0,
            last_use: u64::from_be_bytes(fixed[9..].try_into().expect("8 bytes")),
        })
    }
}

/// A node's artifact and manifest store. One per node directory.
pub struct Store {
    dir: PathBuf,
    db: Database,
    config: StoreConfig,
    /// The use clock: the next value of [`BlobInfo::last_use`].
    uses: std::sync::atomic::AtomicU64,
}

/// What garbage collection removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
}

impl Store {
    /// Opens (or creates) the store in `dir`, discarding partial writes and
    /// reconciling blob files with the index.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store> {
        for sub in ["blobs", "tmp"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
        }
        let db = Database::create(dir.join("index.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(BLOBS)?;
        txn.open_table(MANIFESTS)?;
        txn.open_table(NAMES)?;
        txn.commit()?;
        let store = Store {
            dir: dir.to_path_buf(),
            db,
            config,
            uses: std::sync::atomic::AtomicU64::new(0),
        };
        // The clock resumes after the latest use on record.
        let latest = store.blobs()?.iter().map(|b| b.last_use).max().unwrap_or(0);
        store
            .uses
            .store(latest + 1, std::sync::atomic::Ordering::Relaxed);
        store.discard_partial_writes()?;
        store.reconcile()?;
        Ok(store)
    }

    /// The store's policy.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Where a blob's file is (whether or not it exists).
    pub fn blob_path(&self, artifact_id: &ArtifactId) -> PathBuf {
        self.dir.join("blobs").join(artifact_id.to_hex())
    }

    /// What the index knows of a blob.
    pub fn blob_info(&self, artifact_id: &ArtifactId) -> Result<Option<BlobInfo>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        let entry = table.get(artifact_id.as_bytes())?;
        entry
            .map(|value| BlobInfo::decode(*artifact_id, value.value()))
            .transpose()
    }

    /// Every blob, in id order.
    pub fn blobs(&self) -> Result<Vec<BlobInfo>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push(BlobInfo::decode(
                ArtifactId::from_bytes(*key.value()),
                value.value(),
            )?);
        }
        Ok(out)
    }

    /// Starts streaming a blob in. `expected` is the id it must hash to,
    /// when known; `declared_bytes` its length, when known (checked early).
    pub fn writer(
        &self,
        expected: Option<ArtifactId>,
        declared_bytes: Option<u64>,
    ) -> Result<BlobWriter<'_>> {
        if let Some(declared) = declared_bytes
            && declared > self.config.artifact_bytes_max
        {
            return Err(Error::ArtifactTooLarge {
                bytes_max: self.config.artifact_bytes_max,
            });
        }
        Ok(BlobWriter {
            store: self,
            file: self.temp_file()?,
            hasher: blake3::Hasher::new(),
            bytes: 0,
            expected,
            declared_bytes,
        })
    }

    /// A temp file for a blob of `bytes` whose pieces the caller verifies
    /// against `artifact_id` itself and writes at their offsets, in any
    /// order and from any thread (the P2P fetch writes each segment as it
    /// verifies, so the store write overlaps the transfer).
    #[cfg(feature = "p2p")]
    pub(crate) fn verified_file(
        &self,
        artifact_id: ArtifactId,
        bytes: u64,
    ) -> Result<VerifiedFile> {
        if bytes > self.config.artifact_bytes_max {
            return Err(Error::ArtifactTooLarge {
                bytes_max: self.config.artifact_bytes_max,
            });
        }
        Ok(VerifiedFile {
            file: self.temp_file()?,
            artifact_id,
            bytes,
            written: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Commits a [`VerifiedFile`] once every byte is written.
    #[cfg(feature = "p2p")]
    pub(crate) fn commit_verified(&self, file: VerifiedFile) -> Result<()> {
        let written = file.written.into_inner();
        if written != file.bytes {
            return Err(Error::Truncated {
                received: written,
                expected: file.bytes,
            });
        }
        self.persist(file.file, file.artifact_id, file.bytes)
    }

    /// A fresh file in `tmp/`, deleted unless persisted.
    fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let tmp = self.dir.join("tmp");
        tempfile::NamedTempFile::new_in(&tmp).map_err(|source| Error::Io { path: tmp, source })
    }

    /// Fsyncs a temp file holding a verified blob, moves it into place and
    /// indexes it.
    fn persist(
        &self,
        file: tempfile::NamedTempFile,
        artifact_id: ArtifactId,
        bytes: u64,
    ) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        file.as_file().sync_all().map_err(io(file.path()))?;
        let target = self.blob_path(&artifact_id);
        file.persist(&target).map_err(|e| Error::Io {
            path: target.clone(),
            source: e.error,
        })?;
        let blobs_dir = self.dir.join("blobs");
        std::fs::File::open(&blobs_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(&blobs_dir))?;
        self.index_blob(BlobInfo {
            artifact_id,
            bytes,
            pinned: false,
            last_use: self.tick(),
        })?;
        Ok(())
    }

    /// Reads a blob for a caller that verifies it itself (the P2P layer
    /// computes its bao tree, whose root must be the id).
    #[cfg(feature = "p2p")]
    pub(crate) fn read_blob_unverified(&self, artifact_id: &ArtifactId) -> Result<Vec<u8>> {
        let path = self.blob_path(artifact_id);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path, source })?;
        self.touch(artifact_id)?;
        Ok(bytes)
    }

    /// Stores a whole blob from memory.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<ArtifactId> {
        let mut writer = self.writer(None, Some(bytes.len() as u64))?;
        writer.write(bytes)?;
        writer.commit()
    }

    /// Reads a blob, verifying it against its id.
    pub fn read_blob(&self, artifact_id: &ArtifactId) -> Result<Vec<u8>> {
        if self.blob_info(artifact_id)?.is_none() {
            return Err(Error::ArtifactUnknown {
                artifact_id: *artifact_id,
            });
        }
        let path = self.blob_path(artifact_id);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path, source })?;
        let actual = ArtifactId::of(&bytes);
        if actual != *artifact_id {
            return Err(Error::ArtifactMismatch {
                expected: *artifact_id,
                actual,
            });
        }
        self.touch(artifact_id)?;
        Ok(bytes)
    }

    /// Stores a verified manifest; its artifact must be stored, with the
    /// size the manifest declares, and is pinned. Returns whether it is new.
    pub fn put_manifest(&self, signed: &SignedManifest) -> Result<bool> {
        let manifest = signed.manifest();
        let info = self
            .blob_info(&manifest.artifact_id)?
            .ok_or(Error::ArtifactUnknown {
                artifact_id: manifest.artifact_id,
            })?;
        if info.bytes != manifest.artifact_bytes {
            return Err(Error::ArtifactSizeMismatch {
                artifact_id: manifest.artifact_id,
                declared: manifest.artifact_bytes,
                actual: info.bytes,
            });
        }
        let txn = self.db.begin_write()?;
        let is_new = {
            let mut manifests = txn.open_table(MANIFESTS)?;
            let is_new = manifests.get(signed.id().as_bytes())?.is_none();
            if is_new {
                manifests.insert(signed.id().as_bytes(), signed.encode().as_slice())?;
            }
            let mut blobs = txn.open_table(BLOBS)?;
            let pinned = BlobInfo {
                pinned: true,
                ..info
            };
            blobs.insert(manifest.artifact_id.as_bytes(), pinned.encode().as_slice())?;
            is_new
        };
        txn.commit()?;
        Ok(is_new)
    }

    /// A stored manifest, re-verified as it is read.
    pub fn manifest(&self, manifest_id: &ManifestId) -> Result<Option<SignedManifest>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MANIFESTS)?;
        let entry = table.get(manifest_id.as_bytes())?;
        entry
            .map(|value| SignedManifest::decode(value.value()))
            .transpose()
    }

    /// Every stored manifest.
    pub fn manifests(&self) -> Result<Vec<SignedManifest>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MANIFESTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            out.push(SignedManifest::decode(value.value())?);
        }
        Ok(out)
    }

    /// Pins or unpins a blob.
    pub fn set_pinned(&self, artifact_id: &ArtifactId, pinned: bool) -> Result<()> {
        self.update_blob(artifact_id, |info| info.pinned = pinned)
    }

    /// Deletes least-recently-used unpinned blobs until the unpinned total
    /// is within budget.
    pub fn gc(&self) -> Result<GcReport> {
        let mut unpinned: Vec<BlobInfo> = self.blobs()?.into_iter().filter(|b| !b.pinned).collect();
        let mut total: u64 = unpinned.iter().map(|b| b.bytes).sum();
        unpinned.sort_by_key(|b| b.last_use);
        let mut report = GcReport::default();
        for blob in unpinned {
            if total <= self.config.unpinned_bytes_budget {
                break;
            }
            self.remove_blob(&blob.artifact_id)?;
            total -= blob.bytes;
            report.blobs_removed += 1;
            report.bytes_freed += blob.bytes;
        }
        Ok(report)
    }

    fn remove_blob(&self, artifact_id: &ArtifactId) -> Result<()> {
        // Unindex first: a crash between the two leaves an orphan file,
        // which `reconcile` re-verifies, never an index entry without a file.
        let txn = self.db.begin_write()?;
        txn.open_table(BLOBS)?.remove(artifact_id.as_bytes())?;
        txn.commit()?;
        let path = self.blob_path(artifact_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    fn touch(&self, artifact_id: &ArtifactId) -> Result<()> {
        self.update_blob(artifact_id, |info| info.last_use = self.tick())
    }

    fn update_blob(
        &self,
        artifact_id: &ArtifactId,
        change: impl FnOnce(&mut BlobInfo),
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BLOBS)?;
            let current = table
                .get(artifact_id.as_bytes())?
                .map(|v| BlobInfo::decode(*artifact_id, v.value()))
                .transpose()?;
            let Some(mut info) = current else {
                return Err(Error::ArtifactUnknown {
                    artifact_id: *artifact_id,
                });
            };
            change(&mut info);
            table.insert(artifact_id.as_bytes(), info.encode().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn index_blob(&self, info: BlobInfo) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let is_new = {
            let mut table = txn.open_table(BLOBS)?;
            let existing = table
                .get(info.artifact_id.as_bytes())?
                .map(|v| BlobInfo::decode(info.artifact_id, v.value()))
                .transpose()?;
            let merged = BlobInfo {
                pinned: existing.is_some_and(|e| e.pinned),
                ..info
            };
            table.insert(info.artifact_id.as_bytes(), merged.encode().as_slice())?;
            existing.is_none()
        };
        txn.commit()?;
        Ok(is_new)
    }

    fn discard_partial_writes(&self) -> Result<()> {
        let tmp = self.dir.join("tmp");
        let entries = std::fs::read_dir(&tmp).map_err(|source| Error::Io { path: tmp, source })?;
        for entry in entries.flatten() {
            tracing::info!(path = %entry.path().display(), "discarding a partial write");
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }

    /// Index entries without files are dropped; files without index entries
    /// are verified and indexed (a crash after rename) or deleted.
    fn reconcile(&self) -> Result<()> {
        for blob in self.blobs()? {
            if !self.blob_path(&blob.artifact_id).is_file() {
                tracing::warn!(artifact_id = %blob.artifact_id, "indexed blob missing; unindexing");
                let txn = self.db.begin_write()?;
                txn.open_table(BLOBS)?.remove(blob.artifact_id.as_bytes())?;
                txn.commit()?;
            }
        }
        let blobs_dir = self.dir.join("blobs");
        let entries = std::fs::read_dir(&blobs_dir).map_err(|source| Error::Io {
            path: blobs_dir,
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let named: Option<ArtifactId> = entry.file_name().to_str().and_then(|n| n.parse().ok());
            let Some(named) = named else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if self.blob_info(&named)?.is_some() {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            if ArtifactId::of(&bytes) == named {
                self.index_blob(BlobInfo {
                    artifact_id: named,
                    bytes: bytes.len() as u64,
                    pinned: false,
                    last_use: self.tick(),
                })?;
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

/// A blob being streamed in. Dropping it without [`BlobWriter::commit`]
/// deletes the partial file.
pub struct BlobWriter<'a> {
    store: &'a Store,
    file: tempfile::NamedTempFile,
    hasher: blake3::Hasher,
    bytes: u64,
    expected: Option<ArtifactId>,
    declared_bytes: Option<u64>,
}

impl BlobWriter<'_> {
    /// Appends a chunk; fails as soon as the size limit is passed.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let bytes = self.bytes + chunk.len() as u64;
        let bytes_max = self.store.config.artifact_bytes_max;
        if bytes > bytes_max || self.declared_bytes.is_some_and(|d| bytes > d) {
            return Err(Error::ArtifactTooLarge {
                bytes_max: self.declared_bytes.unwrap_or(bytes_max).min(bytes_max),
            });
        }
        self.file.write_all(chunk).map_err(|source| Error::Io {
            path: self.file.path().to_path_buf(),
            source,
        })?;
        self.hasher.update(chunk);
        self.bytes = bytes;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Verifies, fsyncs, moves the blob into place and indexes it.
    pub fn commit(self) -> Result<ArtifactId> {
        if let Some(declared) = self.declared_bytes
            && self.bytes != declared
        {
            return Err(Error::Truncated {
                received: self.bytes,
                expected: declared,
            });
        }
        let actual = ArtifactId::from_bytes(*self.hasher.finalize().as_bytes());
        if let Some(expected) = self.expected
            && expected != actual
        {
            return Err(Error::ArtifactMismatch { expected, actual });
        }
        self.store.persist(self.file, actual, self.bytes)?;
        Ok(actual)
    }
}

/// A blob's temp file written at offsets by a caller that verified each
/// piece ([`Store::verified_file`]); committed by
/// [`Store::commit_verified`], dropped (and deleted) otherwise.
#[cfg(feature = "p2p")]
pub(crate) struct VerifiedFile {
    file: tempfile::NamedTempFile,
    artifact_id: ArtifactId,
    bytes: u64,
    written: std::sync::atomic::AtomicU64,
}

#[cfg(feature = "p2p")]
impl VerifiedFile {
    /// Writes verified bytes at `offset`. The caller writes each byte once
    /// (a commit checks the count), never past the blob's end.
    pub(crate) fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let end = offset.checked_add(data.len() as u64);
        if end.is_none_or(|end| end > self.bytes) {
            return Err(Error::ArtifactTooLarge {
                bytes_max: self.bytes,
            });
        }
        self.file
            .as_file()
            .write_all_at(data, offset)
            .map_err(|source| Error::Io {
                path: self.file.path().to_path_buf(),
                source,
            })?;
        self.written
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Asks the kernel to start writing `len` bytes at `offset` to disk
    /// now, without waiting, so that the commit's fsync finds most of the
    /// blob written already instead of all of it dirty. Only a hint: a
    /// failure changes nothing the fsync does not check.
    pub(crate) fn start_writeback(&self, offset: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
                return;
            };
            // SAFETY: a plain syscall on a file descriptor this value owns
            // (open until it is dropped); it reads no memory of ours.
            unsafe {
                libc::sync_file_range(
                    self.file.as_file().as_raw_fd(),
                    offset,
                    len,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }
}

/// Binds names to manifests. The node's local implementation is
/// first-come-first-served per owner; the ledger will replace it.
pub trait NameBinder {
    /// Binds (or rebinds) `name` to `manifest`. Only the name's owner may
    /// rebind it; the first bind claims it.
    fn bind(&self, manifest: &SignedManifest) -> Result<()>;
    /// The manifest a name points at.
    fn resolve(&self, name: &str) -> Result<Option<ManifestId>>;
}

impl NameBinder for Store {
    fn bind(&self, signed: &SignedManifest) -> Result<()> {
        let name = signed.manifest().name.as_str();
        let owner = signed.manifest().owner;
        if let Some(current) = self.resolve(name)?
            && let Some(current) = self.manifest(&current)?
            && current.manifest().owner != owner
        {
            return Err(Error::NameTaken {
                name: name.to_string(),
                owner: current.manifest().owner,
            });
        }
        let txn = self.db.begin_write()?;
        txn.open_table(NAMES)?
            .insert(name, signed.id().as_bytes())?;
        txn.commit()?;
        Ok(())
    }

    fn resolve(&self, name: &str) -> Result<Option<ManifestId>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NAMES)?;
        let entry = table.get(name)?;
        Ok(entry.map(|v| ManifestId::from_bytes(*v.value())))
    }
}

/// Names and the owners they belong to, for listings.
pub fn owner_of(store: &Store, name: &str) -> Result<Option<PublicKey>> {
    match store.resolve(name)? {
        Some(id) => Ok(store.manifest(&id)?.map(|m| m.manifest().owner)),
        None => Ok(None),
    }
}

impl Store {
    /// The next reading of the use clock.
    fn tick(&self) -> u64 {
        self.uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}
