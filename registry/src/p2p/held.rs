//! Blobs a node can serve from memory: complete ones (with their bao
//! outboard, computed once) and partial ones being fetched, which serve
//! the segments they have verified.

use super::BLOCK_SIZE;
use super::limits::{SEGMENT_BYTES, SEGMENT_CHUNKS, SEGMENTS_MAX, SERVE_CACHE_ENTRIES_MAX};
use super::wire::n_segments;
use crate::Store;
use crate::store::VerifiedFile;
use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::iter::{BaoChunk, ResponseIterRef};
use bao_tree::{BaoTree, ChunkNum, ChunkRanges};
use bonus_ids::ArtifactId;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

/// One blob in memory, whole or in part. Shared by the fetch filling it
/// and the streams serving it; lives until the fetch ends (partial) or it
/// falls out of the serve cache (complete).
pub(crate) struct Held {
    artifact_id: ArtifactId,
    tree: BaoTree,
    n_segments: u32,
    state: RwLock<HeldState>,
    /// The store's temp file a fetched blob is written into, segment by
    /// segment as each verifies, until the fetch commits it. Locked around
    /// each segment's write and the setting of its have bit, so a commit
    /// (which waits for every bit) never races a write.
    file: Mutex<Option<VerifiedFile>>,
}

struct HeldState {
    content: Content,
    /// Bit `i` set: segment `i` is verified.
    have: Vec<u8>,
    n_have: u32,
}

enum Content {
    /// A blob loaded whole from the store, and its outboard, from which any
    /// segment is encoded.
    Whole {
        data: Vec<u8>,
        outboard: PreOrderMemOutboard,
    },
    /// A blob being fetched: each verified segment's encoding exactly as it
    /// arrived. That is the encoding a peer asking for the segment is sent
    /// (bao's is canonical), so a fetcher neither copies the data out of
    /// the frames nor encodes it again to pass it on; only the store write
    /// copies it.
    Segments(Vec<Option<Bytes>>),
}

/// A segment whose encoding verified against the root, ready to be kept.
pub(crate) struct VerifiedSegment {
    segment: u32,
    encoded: Bytes,
    /// Where each chunk group lies: its offset in the blob, and its range
    /// in `encoded`.
    leaves: Vec<(u64, std::ops::Range<usize>)>,
}

/// A held segment's encoding, as a peer is sent it.
pub(crate) enum Encoded {
    /// Kept as it arrived: shared, not copied.
    Kept(Bytes),
    /// Encoded into the caller's buffer, from a whole blob and its outboard.
    InBuffer,
}

/// One step of a segment's encoding: a parent's pair of child hashes, or
/// a chunk group of data, each a slice of the encoding.
enum Part<'a> {
    Parent {
        pair: &'a [u8; 64],
        is_root: bool,
        left: bool,
        right: bool,
    },
    Leaf {
        start_chunk: ChunkNum,
        /// Where `data` starts in the encoding.
        at: usize,
        data: &'a [u8],
        is_root: bool,
    },
}

impl Held {
    /// Nothing held yet of a blob of `bytes`; verified segments are also
    /// written into `file`, if given, for [`Held::commit`].
    pub(crate) fn empty(
        artifact_id: ArtifactId,
        bytes: u64,
        file: Option<VerifiedFile>,
    ) -> Result<Held, String> {
        let n_segments = checked_segments(bytes)?;
        Ok(Held {
            artifact_id,
            tree: BaoTree::new(bytes, BLOCK_SIZE),
            n_segments,
            state: RwLock::new(HeldState {
                content: Content::Segments(vec![None; n_segments as usize]),
                have: vec![0; n_segments.div_ceil(8) as usize],
                n_have: 0,
            }),
            file: Mutex::new(file),
        })
    }

    /// A whole blob, whose bao tree is computed here and must have the
    /// artifact id as its root.
    pub(crate) fn complete(artifact_id: ArtifactId, data: Vec<u8>) -> crate::Result<Held> {
        let n_segments =
            checked_segments(data.len() as u64).map_err(|_| crate::Error::ArtifactTooLarge {
                bytes_max: u64::from(SEGMENTS_MAX) * SEGMENT_BYTES,
            })?;
        let outboard = PreOrderMemOutboard::create(&data, BLOCK_SIZE);
        if outboard.root != root_of(&artifact_id) {
            return Err(crate::Error::ArtifactMismatch {
                expected: artifact_id,
                actual: ArtifactId::from_bytes(*outboard.root.as_bytes()),
            });
        }
        let have = full_bitmap(u64::from(n_segments));
        Ok(Held {
            artifact_id,
            tree: outboard.tree,
            n_segments,
            state: RwLock::new(HeldState {
                content: Content::Whole { data, outboard },
                have,
                n_have: n_segments,
            }),
            file: Mutex::new(None),
        })
    }

    pub(crate) fn artifact_id(&self) -> ArtifactId {
        self.artifact_id
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.tree.size()
    }

    pub(crate) fn n_segments(&self) -> u32 {
        self.n_segments
    }

    /// The have-bitmap.
    pub(crate) fn have(&self) -> Vec<u8> {
        self.read().have.clone()
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.read().n_have == self.n_segments
    }

    /// The bao encoding of a held segment; `None` if not held.
    #[cfg(test)]
    pub(crate) fn encode(&self, segment: u32) -> Option<Vec<u8>> {
        let mut encoded = Vec::new();
        match self.encoded(segment, &mut encoded)? {
            Encoded::Kept(kept) => Some(kept.to_vec()),
            Encoded::InBuffer => Some(encoded),
        }
    }

    /// The bao encoding of a held segment, kept or encoded into `buffer`
    /// (reusing its allocation: a stream serves many); `None` if not held.
    pub(crate) fn encoded(&self, segment: u32, buffer: &mut Vec<u8>) -> Option<Encoded> {
        buffer.clear();
        let state = self.read();
        if !bit(&state.have, segment) {
            return None;
        }
        let (data, outboard) = match &state.content {
            Content::Segments(kept) => {
                return kept.get(segment as usize)?.clone().map(Encoded::Kept);
            }
            Content::Whole { data, outboard } => (data, outboard),
        };
        buffer.reserve(SEGMENT_BYTES as usize + 8192);
        // Held data was verified (against the root, as it was loaded): no
        // need to hash it again to send it.
        match bao_tree::io::sync::encode_ranges(
            &data[..],
            outboard,
            &self.segment_ranges(segment),
            &mut *buffer,
        ) {
            Ok(()) => Some(Encoded::InBuffer),
            Err(e) => {
                debug_assert!(false, "a held segment must encode: {e}");
                tracing::error!(artifact_id = %self.artifact_id, segment, error = %e, "cannot encode a held segment");
                buffer.clear();
                None
            }
        }
    }

    /// Checks a segment's bao encoding against the root, in place: every
    /// parent and chunk group, and nothing more than the segment. Pure:
    /// takes no lock.
    pub(crate) fn verify(&self, segment: u32, encoded: Bytes) -> Result<VerifiedSegment, String> {
        use blake3::hazmat::{
            ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
        };
        if segment >= self.n_segments {
            return Err(format!("segment {segment} is past the end"));
        }
        let failed = || format!("segment {segment} failed verification");
        let mut expected: Vec<blake3::Hash> = vec![root_of(&self.artifact_id)];
        let mut leaves = Vec::new();
        self.walk(segment, &encoded, |part| {
            let want = expected.pop().ok_or_else(failed)?;
            match part {
                Part::Parent {
                    pair,
                    is_root,
                    left,
                    right,
                } => {
                    let (l, r) = pair.split_at(32);
                    let l: ChainingValue = l.try_into().map_err(|_| failed())?;
                    let r: ChainingValue = r.try_into().map_err(|_| failed())?;
                    let actual = if is_root {
                        merge_subtrees_root(&l, &r, Mode::Hash)
                    } else {
                        blake3::Hash::from(merge_subtrees_non_root(&l, &r, Mode::Hash))
                    };
                    if actual != want {
                        return Err(format!("{}: a parent does not match", failed()));
                    }
                    if right {
                        expected.push(blake3::Hash::from(r));
                    }
                    if left {
                        expected.push(blake3::Hash::from(l));
                    }
                }
                Part::Leaf {
                    start_chunk,
                    at,
                    data,
                    is_root,
                } => {
                    leaves.push((start_chunk.to_bytes(), at..at + data.len()));
                    let actual = if is_root {
                        blake3::hash(data)
                    } else {
                        let mut hasher = blake3::Hasher::new();
                        hasher.set_input_offset(start_chunk.0 * 1024);
                        hasher.update(data);
                        blake3::Hash::from(hasher.finalize_non_root())
                    };
                    if actual != want {
                        return Err(format!("{}: data does not match", failed()));
                    }
                }
            }
            Ok(())
        })?;
        Ok(VerifiedSegment {
            segment,
            encoded,
            leaves,
        })
    }

    /// Keeps a verified segment, and writes its data into the store's temp
    /// file if there is one; returns whether it was new.
    pub(crate) fn absorb(&self, verified: VerifiedSegment) -> crate::Result<bool> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if bit(&self.read().have, verified.segment) {
            return Ok(false);
        }
        if let Some(file) = file.as_ref() {
            for (offset, range) in &verified.leaves {
                file.write_at(*offset, &verified.encoded[range.clone()])?;
            }
            let len = verified.leaves.iter().map(|(_, range)| range.len() as u64);
            let start = u64::from(verified.segment) * SEGMENT_BYTES;
            file.start_writeback(start, len.sum());
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let Content::Segments(kept) = &mut state.content else {
            return Ok(false);
        };
        let Some(slot) = kept.get_mut(verified.segment as usize) else {
            return Ok(false);
        };
        *slot = Some(verified.encoded);
        let byte = &mut state.have[(verified.segment / 8) as usize];
        *byte |= 1 << (verified.segment % 8);
        state.n_have += 1;
        Ok(true)
    }

    /// Commits the fetched blob's temp file into the store (every segment
    /// was written into it as it verified). A second fetch of the same
    /// blob finds it committed already.
    pub(crate) fn commit(&self, store: &Store) -> crate::Result<()> {
        debug_assert!(self.is_complete());
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner()).take();
        match file {
            Some(file) => store.commit_verified(file),
            None if store.blob_info(&self.artifact_id)?.is_some() => Ok(()),
            None => Err(crate::Error::FetchNotStored {
                artifact_id: self.artifact_id,
            }),
        }
    }

    /// Walks a segment's encoding in bao's pre-order, handing each parent
    /// pair and chunk group to `visit` as a slice of it; fails if the
    /// encoding is shorter or longer than the segment's.
    fn walk<'a>(
        &self,
        segment: u32,
        encoded: &'a [u8],
        mut visit: impl FnMut(Part<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        let short = || format!("segment {segment}: the encoding ends early");
        let ranges = self.segment_ranges(segment);
        let mut rest = encoded;
        for chunk in ResponseIterRef::new(self.tree, &ranges) {
            match chunk {
                BaoChunk::Parent {
                    is_root,
                    left,
                    right,
                    ..
                } => {
                    let (pair, after) = rest.split_first_chunk::<64>().ok_or_else(short)?;
                    rest = after;
                    visit(Part::Parent {
                        pair,
                        is_root,
                        left,
                        right,
                    })?;
                }
                BaoChunk::Leaf {
                    start_chunk,
                    size,
                    is_root,
                    ..
                } => {
                    if rest.len() < size {
                        return Err(short());
                    }
                    let at = encoded.len() - rest.len();
                    let (data, after) = rest.split_at(size);
                    rest = after;
                    visit(Part::Leaf {
                        start_chunk,
                        at,
                        data,
                        is_root,
                    })?;
                }
            }
        }
        if !rest.is_empty() {
            return Err(format!("segment {segment}: wrong length"));
        }
        Ok(())
    }

    /// The chunks of a segment, as bao's encoder and decoder normalize
    /// them: the last segment's range is open-ended.
    fn segment_ranges(&self, segment: u32) -> ChunkRanges {
        let start = u64::from(segment) * SEGMENT_CHUNKS;
        if segment + 1 >= self.n_segments {
            ChunkRanges::from(ChunkNum(start)..)
        } else {
            ChunkRanges::from(ChunkNum(start)..ChunkNum(start + SEGMENT_CHUNKS))
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HeldState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether bit `i` of a have-bitmap is set (out of range: no).
pub(crate) fn bit(bitmap: &[u8], i: u32) -> bool {
    bitmap
        .get((i / 8) as usize)
        .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
}

/// The have-bitmap of a complete blob of `n_segments`.
pub(crate) fn full_bitmap(n_segments: u64) -> Vec<u8> {
    let mut bitmap = vec![0xffu8; n_segments.div_ceil(8) as usize];
    if !n_segments.is_multiple_of(8)
        && let Some(last) = bitmap.last_mut()
    {
        *last = (1u8 << (n_segments % 8)) - 1;
    }
    bitmap
}

fn checked_segments(bytes: u64) -> Result<u32, String> {
    u32::try_from(n_segments(bytes))
        .ok()
        .filter(|n| *n <= SEGMENTS_MAX)
        .ok_or_else(|| format!("{bytes} bytes is more than {SEGMENTS_MAX} segments"))
}

fn root_of(artifact_id: &ArtifactId) -> blake3::Hash {
    blake3::Hash::from_bytes(*artifact_id.as_bytes())
}

/// The blobs a node serves from memory: those being fetched, and the
/// most recently used complete ones. One per [`P2p`](super::P2p).
#[derive(Default)]
pub(crate) struct HeldSet {
    inner: Mutex<HeldSetInner>,
    /// Serializes loads from the store, so one blob is hashed once.
    loading: Mutex<()>,
}

#[derive(Default)]
struct HeldSetInner {
    fetching: HashMap<ArtifactId, Arc<Held>>,
    cache: VecDeque<Arc<Held>>,
}

impl HeldSet {
    /// The blob, if in memory.
    pub(crate) fn get(&self, artifact_id: &ArtifactId) -> Option<Arc<Held>> {
        let mut inner = self.lock();
        if let Some(held) = inner.fetching.get(artifact_id) {
            return Some(held.clone());
        }
        let idx = inner
            .cache
            .iter()
            .position(|h| h.artifact_id == *artifact_id)?;
        let held = inner.cache.remove(idx)?;
        inner.cache.push_back(held.clone());
        Some(held)
    }

    /// The partial blob a fetch fills (shared by concurrent fetches of it:
    /// then `file` is not needed and is dropped, which deletes it).
    pub(crate) fn start_fetch(
        &self,
        artifact_id: ArtifactId,
        bytes: u64,
        file: VerifiedFile,
    ) -> Result<Arc<Held>, String> {
        let mut inner = self.lock();
        if let Some(held) = inner.fetching.get(&artifact_id)
            && held.bytes() == bytes
        {
            return Ok(held.clone());
        }
        let held = Arc::new(Held::empty(artifact_id, bytes, Some(file))?);
        inner.fetching.insert(artifact_id, held.clone());
        Ok(held)
    }

    /// A fetch ended: a complete blob moves to the cache, a partial one is
    /// dropped.
    pub(crate) fn end_fetch(&self, held: &Arc<Held>) {
        let mut inner = self.lock();
        if inner
            .fetching
            .get(&held.artifact_id)
            .is_some_and(|h| Arc::ptr_eq(h, held))
        {
            inner.fetching.remove(&held.artifact_id);
        }
        if held.is_complete() {
            inner.insert(held.clone());
        }
    }

    /// Whether the cache has room without evicting anything.
    pub(crate) fn has_room(&self) -> bool {
        self.lock().cache.len() < SERVE_CACHE_ENTRIES_MAX
    }

    /// The blob from memory, or loaded from the store (reading and hashing
    /// it: blocking). `None` if the store does not hold it.
    pub(crate) fn load(
        &self,
        store: &Store,
        artifact_id: &ArtifactId,
    ) -> crate::Result<Option<Arc<Held>>> {
        if let Some(held) = self.get(artifact_id) {
            return Ok(Some(held));
        }
        let _loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = self.get(artifact_id) {
            return Ok(Some(held));
        }
        if store.blob_info(artifact_id)?.is_none() {
            return Ok(None);
        }
        let data = store.read_blob_unverified(artifact_id)?;
        let held = Arc::new(Held::complete(*artifact_id, data)?);
        self.lock().insert(held.clone());
        Ok(Some(held))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HeldSetInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HeldSetInner {
    fn insert(&mut self, held: Arc<Held>) {
        self.cache.retain(|h| h.artifact_id != held.artifact_id);
        if self.cache.len() >= SERVE_CACHE_ENTRIES_MAX {
            self.cache.pop_front();
        }
        self.cache.push_back(held);
    }
}
