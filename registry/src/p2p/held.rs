//! Blobs a node can serve from memory: complete ones (with their bao
//! outboard, computed once) and partial ones being fetched, which serve
//! the segments they have verified.

use super::BLOCK_SIZE;
use super::limits::{SEGMENT_BYTES, SEGMENT_CHUNKS, SEGMENTS_MAX, SERVE_CACHE_ENTRIES_MAX};
use super::wire::n_segments;
use crate::Store;
use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::io::sync::{DecodeResponseIter, OutboardMut};
use bao_tree::io::{BaoContentItem, Parent};
use bao_tree::{BaoTree, ChunkNum, ChunkRanges};
use bonus_ids::ArtifactId;
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
}

struct HeldState {
    data: Vec<u8>,
    /// Parents saved as segments verify: those of every held segment and
    /// of its path to the root, enough to encode it for a peer.
    outboard: PreOrderMemOutboard,
    /// Bit `i` set: segment `i` is verified.
    have: Vec<u8>,
    n_have: u32,
}

/// A segment that verified against the root, ready to be absorbed: its
/// chunk groups as the decoder produced them (not copied into one buffer
/// first: `absorb` copies them once, into the blob).
pub(crate) struct VerifiedSegment {
    segment: u32,
    /// Offset in the segment, and data.
    leaves: Vec<(usize, bytes::Bytes)>,
    parents: Vec<Parent>,
}

impl Held {
    /// Nothing held yet of a blob of `bytes`.
    pub(crate) fn empty(artifact_id: ArtifactId, bytes: u64) -> Result<Held, String> {
        let n_segments = checked_segments(bytes)?;
        let tree = BaoTree::new(bytes, BLOCK_SIZE);
        let outboard_bytes = usize::try_from(tree.outboard_size()).map_err(|e| e.to_string())?;
        let data_bytes = usize::try_from(bytes).map_err(|e| e.to_string())?;
        Ok(Held {
            artifact_id,
            tree,
            n_segments,
            state: RwLock::new(HeldState {
                data: vec![0; data_bytes],
                outboard: PreOrderMemOutboard {
                    root: root_of(&artifact_id),
                    tree,
                    data: vec![0; outboard_bytes],
                },
                have: vec![0; n_segments.div_ceil(8) as usize],
                n_have: 0,
            }),
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
                data,
                outboard,
                have,
                n_have: n_segments,
            }),
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
        self.encode_into(segment, &mut encoded).then_some(encoded)
    }

    /// Replaces `encoded` with the bao encoding of a held segment (reusing
    /// its allocation: a stream serves many); false if not held.
    pub(crate) fn encode_into(&self, segment: u32, encoded: &mut Vec<u8>) -> bool {
        encoded.clear();
        let state = self.read();
        if !bit(&state.have, segment) {
            return false;
        }
        encoded.reserve(SEGMENT_BYTES as usize + 8192);
        // Held data was verified (against the root, as it arrived or as it
        // was loaded): no need to hash it again to send it.
        match bao_tree::io::sync::encode_ranges(
            &state.data[..],
            &state.outboard,
            &segment_ranges(segment),
            &mut *encoded,
        ) {
            Ok(()) => true,
            Err(e) => {
                debug_assert!(false, "a held segment must encode: {e}");
                tracing::error!(artifact_id = %self.artifact_id, segment, error = %e, "cannot encode a held segment");
                encoded.clear();
                false
            }
        }
    }

    /// Checks a segment's bao encoding against the root: every chunk and
    /// parent, and nothing more than the segment. Pure: takes no lock.
    pub(crate) fn verify(&self, segment: u32, encoded: &[u8]) -> Result<VerifiedSegment, String> {
        if segment >= self.n_segments {
            return Err(format!("segment {segment} is past the end"));
        }
        let start = u64::from(segment) * SEGMENT_BYTES;
        let len = (self.bytes() - start).min(SEGMENT_BYTES) as usize;
        let mut leaves = Vec::with_capacity(len.div_ceil(BLOCK_SIZE.bytes()));
        let mut parents = Vec::new();
        let mut filled = 0usize;
        let ranges = segment_ranges(segment);
        let mut reader = encoded;
        let items =
            DecodeResponseIter::new(root_of(&self.artifact_id), self.tree, &mut reader, &ranges);
        for item in items {
            match item.map_err(|e| format!("segment {segment} failed verification: {e}"))? {
                BaoContentItem::Parent(parent) => parents.push(parent),
                BaoContentItem::Leaf(leaf) => {
                    let at = leaf
                        .offset
                        .checked_sub(start)
                        .and_then(|at| usize::try_from(at).ok())
                        .filter(|at| at + leaf.data.len() <= len)
                        .ok_or_else(|| format!("segment {segment}: data outside the segment"))?;
                    filled += leaf.data.len();
                    leaves.push((at, leaf.data));
                }
            }
        }
        if filled != len || !reader.is_empty() {
            return Err(format!("segment {segment}: wrong length"));
        }
        Ok(VerifiedSegment {
            segment,
            leaves,
            parents,
        })
    }

    /// Keeps a verified segment; returns whether it was new.
    pub(crate) fn absorb(&self, verified: VerifiedSegment) -> bool {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if bit(&state.have, verified.segment) {
            return false;
        }
        let start = (u64::from(verified.segment) * SEGMENT_BYTES) as usize;
        for (at, leaf) in &verified.leaves {
            state.data[start + at..start + at + leaf.len()].copy_from_slice(leaf);
        }
        for parent in &verified.parents {
            // In-memory outboard: saving cannot fail.
            let _ = state.outboard.save(parent.node, &parent.pair);
        }
        let byte = &mut state.have[(verified.segment / 8) as usize];
        *byte |= 1 << (verified.segment % 8);
        state.n_have += 1;
        true
    }

    /// Stores a complete blob (already verified segment by segment).
    pub(crate) fn write_to(&self, store: &Store) -> crate::Result<()> {
        debug_assert!(self.is_complete());
        let mut writer = store.writer_verified(self.artifact_id, self.bytes())?;
        writer.write(&self.read().data)?;
        writer.commit()?;
        Ok(())
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

fn segment_ranges(segment: u32) -> ChunkRanges {
    let start = u64::from(segment) * SEGMENT_CHUNKS;
    ChunkRanges::from(ChunkNum(start)..ChunkNum(start + SEGMENT_CHUNKS))
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

    /// The partial blob a fetch fills (shared by concurrent fetches of it).
    pub(crate) fn start_fetch(
        &self,
        artifact_id: ArtifactId,
        bytes: u64,
    ) -> Result<Arc<Held>, String> {
        let mut inner = self.lock();
        if let Some(held) = inner.fetching.get(&artifact_id)
            && held.bytes() == bytes
        {
            return Ok(held.clone());
        }
        let held = Arc::new(Held::empty(artifact_id, bytes)?);
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
