//! Cranelift's code for single functions, shared by every component a node
//! compiles.
//!
//! Every JavaScript function carries the same StarlingMonkey engine: their
//! core modules have byte-identical code sections (9 MB) and differ only in
//! the data that holds each script's pre-initialized heap. Wasmtime caches
//! whole components ([`crate::cache`]), so a new JS function would pay the
//! full optimizing compile of the engine again. Cranelift's incremental
//! cache instead keys each function's machine code by the SHA-256 of its
//! Cranelift IR and the target's flags, so a component whose functions were
//! compiled before (in any component) reuses their code and compiles only
//! what is new.
//!
//! A key is a collision-resistant digest of everything that shapes the
//! code, so one tenant's functions cannot stand in for another's; a value
//! carries Cranelift's version marker and is recompiled (and replaced) if
//! it does not match.
//!
//! On disk the cache is an append-only log of records
//! `key_len u16 ‖ value_len u32 ‖ key ‖ value ‖ blake3(key ‖ value)[..16]`.
//! Memory holds only an index (key → where its value is); a value is read
//! and its digest checked at each lookup, so a damaged log costs compile
//! time, never wrong code. On open the log is indexed up to the first
//! record that runs past its end (a crash mid-append) and cut there.
//! Several processes may share a cache directory (`bonus serve`s, a node's
//! restarts): records are appended whole, in batches, under an exclusive
//! `flock`, and the log is indexed and cut under it too.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Bytes of cached code a log may hold; past this, new functions are
/// compiled but not cached. StarlingMonkey's code takes 45 MiB.
pub(crate) const FUNCTION_CACHE_BYTES_MAX: u64 = 512 << 20;

const HEADER_LEN: usize = 2 + 4;
const DIGEST_LEN: usize = 16;
/// Records are written in batches of about this many bytes (and at the end
/// of each compile), so at most this much code waits in memory.
const BATCH_BYTES: usize = 1 << 20;

/// The per-function code cache (a [`wasmtime::CacheStore`]).
pub(crate) struct FunctionCache {
    state: RwLock<Entries>,
    /// The log and a handle to read values from it; `None` in memory only.
    log: Option<(Mutex<Log>, File)>,
    /// Lookups answered and not answered, since this process opened it.
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Box<[u8]>, Value>,
    /// Bytes of values indexed or held (against the cap).
    bytes: u64,
}

/// Where a function's code is.
#[derive(Clone)]
enum Value {
    /// In memory: not yet written, or a cache without a log.
    Held(Arc<[u8]>),
    /// In the log: the value's offset and length; the digest follows it.
    Logged { offset: u64, len: u32 },
}

impl Value {
    fn len(&self) -> u64 {
        match self {
            Value::Held(bytes) => bytes.len() as u64,
            Value::Logged { len, .. } => u64::from(*len),
        }
    }
}

struct Log {
    path: PathBuf,
    file: File,
    /// Whole records not yet written, and for each its key and where its
    /// value starts within them.
    pending: Vec<u8>,
    pending_keys: Vec<(Box<[u8]>, u64, u32)>,
    /// Set after a failed write: the log stops growing (values stay in
    /// memory), rather than interleave a torn record with new ones.
    broken: bool,
}

impl Log {
    /// Appends the pending records in one write under the log's lock, so
    /// another process's records never land inside one of ours, and points
    /// the index at them.
    fn write_pending(&mut self, state: &RwLock<Entries>) {
        if self.broken || self.pending.is_empty() {
            return;
        }
        let written = self.file.lock().and_then(|()| {
            let written = self
                .file
                .metadata()
                .and_then(|meta| self.file.write_all(&self.pending).map(|()| meta.len()));
            let unlocked = self.file.unlock();
            written.and_then(|base| unlocked.map(|()| base))
        });
        match written {
            Ok(base) => {
                let mut entries = state.write().unwrap_or_else(|e| e.into_inner());
                for (key, at, len) in self.pending_keys.drain(..) {
                    let offset = base + at;
                    entries.map.insert(key, Value::Logged { offset, len });
                }
                self.pending.clear();
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot append to the function cache log; it stops growing");
                // The values stay held in memory.
                self.broken = true;
                self.pending = Vec::new();
                self.pending_keys = Vec::new();
            }
        }
    }
}

impl std::fmt::Debug for FunctionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.state.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("FunctionCache")
            .field("functions", &entries.map.len())
            .field("bytes", &entries.bytes)
            .finish()
    }
}

impl FunctionCache {
    /// A cache that lives as long as the process.
    pub(crate) fn in_memory() -> Self {
        FunctionCache {
            state: RwLock::default(),
            log: None,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cache kept in `dir/functions.log`: its records are indexed, a
    /// torn tail is cut off, and new code is appended.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("functions.log");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut entries = Entries::default();
        file.lock()?;
        let indexed = index(&file, &mut entries).and_then(|good| {
            if file.metadata()?.len() > good {
                tracing::warn!(path = %path.display(), kept = good, "function cache log cut after its last whole record");
                file.set_len(good)?;
            }
            Ok(())
        });
        file.unlock()?;
        indexed?;
        let reader = File::open(&path)?;
        Ok(FunctionCache {
            state: RwLock::new(entries),
            log: Some((
                Mutex::new(Log {
                    path,
                    file,
                    pending: Vec::new(),
                    pending_keys: Vec::new(),
                    broken: false,
                }),
                reader,
            )),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Functions cached now (for stats and tests).
    pub(crate) fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    /// Cranelift's lookups so far: (answered, not answered).
    pub(crate) fn lookups(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Writes what was appended since the last flush (after a compile); a
    /// crash before it loses only cache entries.
    pub(crate) fn flush(&self) {
        if let Some((log, _)) = &self.log {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_pending(&self.state);
        }
    }

    /// The value at `offset` in the log, if its record's digest matches.
    fn read_logged(&self, key: &[u8], offset: u64, len: u32) -> Option<Vec<u8>> {
        let (_, reader) = self.log.as_ref()?;
        let mut bytes = vec![0; len as usize + DIGEST_LEN];
        reader.read_exact_at(&mut bytes, offset).ok()?;
        let digest = bytes.split_off(len as usize);
        let mut hasher = blake3::Hasher::new();
        hasher.update(key).update(&bytes);
        (hasher.finalize().as_bytes()[..DIGEST_LEN] == digest[..]).then_some(bytes)
    }
}

/// Indexes the log's records, up to the first that runs past its end or
/// the cap; returns the length they span.
fn index(file: &File, entries: &mut Entries) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.rewind()?;
    let mut at = 0u64;
    let end = file.metadata()?.len();
    let mut header = [0u8; HEADER_LEN];
    loop {
        if at + HEADER_LEN as u64 > end || reader.read_exact(&mut header).is_err() {
            break;
        }
        let key_len = u16::from_le_bytes([header[0], header[1]]);
        let len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]);
        let offset = at + HEADER_LEN as u64 + u64::from(key_len);
        let record_end = offset + u64::from(len) + DIGEST_LEN as u64;
        if record_end > end || entries.bytes + u64::from(len) > FUNCTION_CACHE_BYTES_MAX {
            break;
        }
        let mut key = vec![0; usize::from(key_len)];
        reader.read_exact(&mut key)?;
        reader.seek_relative(i64::from(len) + DIGEST_LEN as i64)?;
        entries.put(key.into(), Value::Logged { offset, len });
        at = record_end;
    }
    Ok(at)
}

impl Entries {
    /// Inserts or replaces (a replaced value was stale: Cranelift refused it).
    fn put(&mut self, key: Box<[u8]>, value: Value) {
        self.bytes += value.len();
        if let Some(old) = self.map.insert(key, value) {
            self.bytes -= old.len();
        }
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let value = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .get(key)
            .cloned();
        let found = match value {
            Some(Value::Held(bytes)) => Some(bytes.to_vec()),
            Some(Value::Logged { offset, len }) => self.read_logged(key, offset, len),
            None => None,
        };
        let counter = match found {
            Some(_) => &self.hits,
            None => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found.map(Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let (Ok(key_len), Ok(value_len)) = (u16::try_from(key.len()), u32::try_from(value.len()))
        else {
            return false;
        };
        let mut digest = blake3::Hasher::new();
        digest.update(key).update(&value);
        let held: Arc<[u8]> = value.into();
        {
            let mut entries = self.state.write().unwrap_or_else(|e| e.into_inner());
            if entries.bytes + held.len() as u64 > FUNCTION_CACHE_BYTES_MAX {
                return false;
            }
            entries.put(key.into(), Value::Held(held.clone()));
        }
        let Some((log, _)) = &self.log else {
            return true;
        };
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        if log.broken {
            return true;
        }
        log.pending.extend_from_slice(&key_len.to_le_bytes());
        log.pending.extend_from_slice(&value_len.to_le_bytes());
        log.pending.extend_from_slice(key);
        let at = log.pending.len() as u64;
        log.pending.extend_from_slice(&held);
        log.pending
            .extend_from_slice(&digest.finalize().as_bytes()[..DIGEST_LEN]);
        log.pending_keys.push((key.into(), at, value_len));
        if log.pending.len() >= BATCH_BYTES {
            log.write_pending(&self.state);
        }
        true
    }
}

impl Drop for FunctionCache {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn reopened_log_serves_what_was_inserted_and_later_values_win() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = FunctionCache::open(dir.path()).expect("open");
        assert!(cache.insert(b"k1", b"one".to_vec()));
        assert!(cache.insert(b"k2", b"two".to_vec()));
        cache.flush();
        assert_eq!(
            cache.get(b"k1").as_deref(),
            Some(&b"one"[..]),
            "read back from the log"
        );
        assert!(cache.insert(b"k1", b"uno".to_vec()));
        assert_eq!(
            cache.get(b"k1").as_deref(),
            Some(&b"uno"[..]),
            "held until written"
        );
        drop(cache);
        let cache = FunctionCache::open(dir.path()).expect("reopen");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(b"k1").as_deref(), Some(&b"uno"[..]));
        assert_eq!(cache.get(b"k2").as_deref(), Some(&b"two"[..]));
        assert_eq!(cache.get(b"k3"), None);
        assert_eq!(cache.lookups(), (2, 1));
    }

    #[test]
    fn two_writers_on_one_directory_keep_every_record_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = FunctionCache::open(dir.path()).expect("open");
        let second = FunctionCache::open(dir.path()).expect("open again");
        for n in 0..2_000u32 {
            let (writer, value) = match n % 2 {
                0 => (&first, vec![1; 700]),
                _ => (&second, vec![2; 900]),
            };
            writer.insert(&n.to_le_bytes(), value);
        }
        // Batches of each writer landed between the other's: each writer's
        // index still points at its own records.
        assert_eq!(
            first.get(&10u32.to_le_bytes()).as_deref(),
            Some(&[1; 700][..])
        );
        assert_eq!(
            second.get(&11u32.to_le_bytes()).as_deref(),
            Some(&[2; 900][..])
        );
        drop((first, second));
        let reopened = FunctionCache::open(dir.path()).expect("reopen");
        assert_eq!(reopened.len(), 2_000, "no record lost or torn");
        assert_eq!(
            reopened.get(&7u32.to_le_bytes()).as_deref(),
            Some(&[2; 900][..])
        );
        assert_eq!(
            reopened.get(&1_998u32.to_le_bytes()).as_deref(),
            Some(&[1; 700][..])
        );
    }

    #[test]
    fn a_flipped_value_is_never_served_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = FunctionCache::open(dir.path()).expect("open");
        cache.insert(b"good", b"code".to_vec());
        cache.insert(b"flipped", b"code".to_vec());
        drop(cache);
        let path = dir.path().join("functions.log");
        let mut bytes = std::fs::read(&path).expect("read log");
        let last_value_byte = bytes.len() - DIGEST_LEN - 1;
        bytes[last_value_byte] ^= 1;
        // A torn record after it: a header whose value runs past the end.
        bytes.extend_from_slice(&[5, 0, 9, 0, 0, 0, b'x']);
        std::fs::write(&path, &bytes).expect("write log");

        let cache = FunctionCache::open(dir.path()).expect("reopen");
        assert_eq!(cache.get(b"good").as_deref(), Some(&b"code"[..]));
        assert_eq!(
            cache.get(b"flipped"),
            None,
            "a corrupt value is never served"
        );
        assert_eq!(
            std::fs::metadata(&path).expect("log").len(),
            bytes.len() as u64 - 7,
            "the torn tail is cut"
        );
        cache.insert(b"after", b"more".to_vec());
        drop(cache);
        let cache = FunctionCache::open(dir.path()).expect("reopen again");
        assert_eq!(cache.get(b"after").as_deref(), Some(&b"more"[..]));
        assert_eq!(cache.get(b"good").as_deref(), Some(&b"code"[..]));
    }
}
