//! The state root: an incremental BLAKE3 Merkle tree over the state's rows.
//!
//! Layout (fixed, so a client can check a proof without knowing the size
//! of the state):
//! - each row (a key and a value, see `rows.rs`) is a leaf
//!   `(key hash, value hash)`; its bucket is the first two bytes of the key
//!   hash, so there are [`BUCKETS`] (65 536) buckets;
//! - a bucket's hash is BLAKE3 over its leaves in key-hash order;
//! - above the buckets, four levels of 16-way nodes (4 096, 256, 16, 1);
//!   the last is the root.
//!
//! Updating rows recomputes only their buckets and those buckets'
//! ancestors (4 nodes each), so a block costs what it touches, whatever
//! the size of the state. Every part is copy-on-write (shared until
//! written): cloning a tree for a speculative state is O(1).

use std::collections::BTreeSet;
use std::sync::Arc;

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

/// Buckets under the root (16⁴).
pub const BUCKETS: usize = 1 << 16;
const FANOUT: usize = 16;
/// Node levels above the buckets: 4 096, 256, 16 and 1 nodes.
const LEVELS: usize = 4;
const _: () = assert!(FANOUT.pow(LEVELS as u32) == BUCKETS);

const KEY_DOMAIN: &[u8] = b"bonus/state/key/v1";
const VALUE_DOMAIN: &[u8] = b"bonus/state/value/v1";
const BUCKET_DOMAIN: &[u8] = b"bonus/state/bucket/v1";
const NODE_DOMAIN: &[u8] = b"bonus/state/node/v1";

/// The hash a row key is filed under.
pub fn key_hash(row_key: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(KEY_DOMAIN);
    hasher.update(row_key);
    *hasher.finalize().as_bytes()
}

/// The hash of a row's value.
pub fn value_hash(row_value: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(VALUE_DOMAIN);
    hasher.update(row_value);
    *hasher.finalize().as_bytes()
}

fn bucket_of(key_hash: &Hash) -> usize {
    usize::from(u16::from_be_bytes([key_hash[0], key_hash[1]]))
}

fn hash_bucket(leaves: &[(Hash, Hash)]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(BUCKET_DOMAIN);
    // The same bytes as one `update` per key and value, fed in batches: at
    // 1 M rows a bucket holds ~15 leaves, and each small call into the
    // hasher costs more than copying its 32 bytes (bench/README.md).
    let mut batch = [0u8; FANOUT * 64];
    for leaves in leaves.chunks(FANOUT) {
        for (at, (key, value)) in batch.chunks_exact_mut(64).zip(leaves) {
            at[..32].copy_from_slice(key);
            at[32..].copy_from_slice(value);
        }
        hasher.update(&batch[..leaves.len() * 64]);
    }
    *hasher.finalize().as_bytes()
}

fn hash_node(children: &[Hash]) -> Hash {
    debug_assert_eq!(children.len(), FANOUT);
    let mut hasher = blake3::Hasher::new();
    hasher.update(NODE_DOMAIN);
    hasher.update(children.as_flattened());
    *hasher.finalize().as_bytes()
}

/// One bucket's leaves, sorted by key hash; shared until written.
type Bucket = Arc<Vec<(Hash, Hash)>>;

/// Groups of [`FANOUT`] neighbouring buckets (4 096).
const GROUPS: usize = BUCKETS / FANOUT;

/// Sixteen neighbouring buckets, the children of one node of the first
/// level: their hashes and their leaves, copied together the first time a
/// tree that shares them writes one of them.
#[derive(Clone)]
struct Group {
    hashes: [Hash; FANOUT],
    leaves: [Bucket; FANOUT],
}

/// The tree. Invariant: every bucket and node hash is the hash of what is
/// below it (kept by [`Tree::update`]; [`Tree::from_leaves`] recomputes
/// everything, which tests compare against).
#[derive(Clone)]
pub(crate) struct Tree {
    /// Every group, so finding and copying a bucket costs the same at
    /// 10 k rows as at 1 M (no search through a tree of every row). A
    /// block's first write copies the 4 096 pointers, then each group it
    /// writes: 16 shared counts to raise, where the 64-wide chunks of a
    /// persistent vector cost 64 (each a cache miss at 1 M rows, where
    /// every bucket is its own allocation).
    groups: Arc<Vec<Arc<Group>>>,
    /// Levels above the buckets, widest first (`upper[0][g]` is group g's
    /// node); `upper[LEVELS - 1][0]` is the root. Small (140 KB): copied
    /// once per block when first written.
    upper: Arc<[Vec<Hash>; LEVELS]>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("root", &self.root()).finish()
    }
}

impl Tree {
    /// The tree of no rows.
    pub(crate) fn empty() -> Tree {
        Tree::from_leaves(Vec::new())
    }

    /// Builds the whole tree from its leaves, distinct key hashes in any
    /// order (O(rows)).
    pub(crate) fn from_leaves(mut leaves: Vec<(Hash, Hash)>) -> Tree {
        leaves.sort_unstable();
        debug_assert!(leaves.windows(2).all(|w| w[0].0 != w[1].0));
        let mut grouped: Vec<Vec<(Hash, Hash)>> = vec![Vec::new(); BUCKETS];
        for leaf in leaves {
            grouped[bucket_of(&leaf.0)].push(leaf);
        }
        let empty: Bucket = Arc::new(Vec::new());
        let mut buckets = grouped.into_iter();
        let groups: Vec<Arc<Group>> = (0..GROUPS)
            .map(|_| {
                let leaves: [Bucket; FANOUT] =
                    std::array::from_fn(|_| match buckets.next().unwrap_or_default() {
                        leaves if leaves.is_empty() => empty.clone(),
                        leaves => Arc::new(leaves),
                    });
                let hashes = std::array::from_fn(|i| hash_bucket(&leaves[i]));
                Arc::new(Group { hashes, leaves })
            })
            .collect();
        let mut upper: [Vec<Hash>; LEVELS] = Default::default();
        upper[0] = groups.iter().map(|g| hash_node(&g.hashes)).collect();
        for level in 1..LEVELS {
            upper[level] = upper[level - 1].chunks(FANOUT).map(hash_node).collect();
            debug_assert_eq!(upper[level].len(), BUCKETS >> (4 * (level + 1)));
        }
        Tree {
            groups: Arc::new(groups),
            upper: Arc::new(upper),
        }
    }

    /// The root.
    pub(crate) fn root(&self) -> Hash {
        self.upper[LEVELS - 1][0]
    }

    /// Sets (Some) or deletes (None) the value hash of each key hash, then
    /// recomputes the touched buckets and their ancestors only.
    pub(crate) fn update(&mut self, changes: impl IntoIterator<Item = (Hash, Option<Hash>)>) {
        let mut by_bucket: std::collections::BTreeMap<usize, Vec<(Hash, Option<Hash>)>> =
            Default::default();
        for (key, value) in changes {
            by_bucket
                .entry(bucket_of(&key))
                .or_default()
                .push((key, value));
        }
        if by_bucket.is_empty() {
            return;
        }
        let groups = Arc::make_mut(&mut self.groups);
        for (&bucket, changes) in &by_bucket {
            let group = Arc::make_mut(&mut groups[bucket / FANOUT]);
            let slot = bucket % FANOUT;
            let mut leaves: Vec<(Hash, Hash)> = group.leaves[slot].as_ref().clone();
            for (key, value) in changes {
                let at = leaves.binary_search_by(|(k, _)| k.cmp(key));
                match (at, value) {
                    (Ok(i), Some(value)) => leaves[i].1 = *value,
                    (Err(i), Some(value)) => leaves.insert(i, (*key, *value)),
                    (Ok(i), None) => {
                        leaves.remove(i);
                    }
                    (Err(_), None) => {}
                }
            }
            group.hashes[slot] = hash_bucket(&leaves);
            group.leaves[slot] = Arc::new(leaves);
        }
        let upper = Arc::make_mut(&mut self.upper);
        let mut touched: BTreeSet<usize> = by_bucket.keys().map(|b| b / FANOUT).collect();
        for &group in &touched {
            upper[0][group] = hash_node(&groups[group].hashes);
        }
        for level in 1..LEVELS {
            let parents: BTreeSet<usize> = touched.iter().map(|i| i / FANOUT).collect();
            for &parent in &parents {
                let range = parent * FANOUT..(parent + 1) * FANOUT;
                upper[level][parent] = hash_node(&upper[level - 1][range]);
            }
            touched = parents;
        }
    }

    /// The proof that `key` has its current value (or no value) here.
    pub(crate) fn prove(&self, key: &Hash) -> StateProof {
        let bucket = bucket_of(key);
        let group = &self.groups[bucket / FANOUT];
        let others = group.leaves[bucket % FANOUT]
            .iter()
            .filter(|(k, _)| k != key)
            .copied()
            .collect();
        let mut siblings = Vec::with_capacity(LEVELS);
        let mut index = bucket;
        for level in 0..LEVELS {
            let first = index / FANOUT * FANOUT;
            let row: Vec<Hash> = (first..first + FANOUT)
                .filter(|i| *i != index)
                .map(|i| {
                    if level == 0 {
                        group.hashes[i % FANOUT]
                    } else {
                        self.upper[level - 1][i]
                    }
                })
                .collect();
            siblings.push(row);
            index /= FANOUT;
        }
        StateProof {
            bucket: others,
            siblings,
        }
    }
}

/// Proof that a row has a value (or none) under a root: the other leaves
/// of its bucket and, at each of the 4 levels above the buckets, the 15
/// siblings of the node on its path, in index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateProof {
    /// The bucket's other `(key hash, value hash)` leaves, in key order.
    pub bucket: Vec<(Hash, Hash)>,
    /// Per level, bottom first, the 15 siblings of the path's node.
    pub siblings: Vec<Vec<Hash>>,
}

impl StateProof {
    /// Whether `key` has `value` (a value hash; `None`: no row) under
    /// `root`. Refuses a proof whose leaves are out of order, outside the
    /// key's bucket or include the key itself.
    pub fn verify(&self, root: &Hash, key: &Hash, value: Option<&Hash>) -> bool {
        let bucket = bucket_of(key);
        if self.siblings.len() != LEVELS || self.siblings.iter().any(|s| s.len() != FANOUT - 1) {
            return false;
        }
        let in_order = self.bucket.windows(2).all(|w| w[0].0 < w[1].0);
        let in_bucket = self.bucket.iter().all(|(k, _)| bucket_of(k) == bucket);
        if !in_order || !in_bucket || self.bucket.iter().any(|(k, _)| k == key) {
            return false;
        }
        let mut leaves = self.bucket.clone();
        if let Some(value) = value {
            let at = leaves.partition_point(|(k, _)| k < key);
            leaves.insert(at, (*key, *value));
        }
        let mut hash = hash_bucket(&leaves);
        let mut index = bucket;
        for siblings in &self.siblings {
            let mut children = siblings.clone();
            children.insert(index % FANOUT, hash);
            hash = hash_node(&children);
            index /= FANOUT;
        }
        hash == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes hashed are the ones docs/PROTOCOL.md gives a client, however
    /// the hasher is fed: a bucket is its domain then each leaf's key and
    /// value, a node its domain then its 16 children.
    #[test]
    fn buckets_and_nodes_hash_the_documented_bytes() {
        for count in [0usize, 1, 15, 16, 17, 40] {
            let leaves: Vec<(Hash, Hash)> = (0..count)
                .map(|i| ([i as u8; 32], [(i as u8).wrapping_mul(7) ^ 0x5a; 32]))
                .collect();
            let mut bytes = BUCKET_DOMAIN.to_vec();
            for (key, value) in &leaves {
                bytes.extend_from_slice(key);
                bytes.extend_from_slice(value);
            }
            assert_eq!(
                hash_bucket(&leaves),
                *blake3::hash(&bytes).as_bytes(),
                "{count} leaves"
            );
        }
        let children: Vec<Hash> = (0..FANOUT as u8).map(|i| [i; 32]).collect();
        let mut bytes = NODE_DOMAIN.to_vec();
        children.iter().for_each(|c| bytes.extend_from_slice(c));
        assert_eq!(hash_node(&children), *blake3::hash(&bytes).as_bytes());
    }
}
