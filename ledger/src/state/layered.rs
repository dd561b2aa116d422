//! [`Layered`]: the account table, the one map that grows with the ledger
//! (a million rows and more), as a finalized base written in place plus a
//! small copy-on-write layer per state.
//!
//! Why not one persistent tree like the other tables: every block's state
//! is a copy of its parent's, so each write into a shared tree copies the
//! leaf and the branches above it. A block of 1 000 transfers from random
//! senders writes ~1 000 accounts; at a million accounts each is a path of
//! cold nodes, each branch copy raising the reference counts of its
//! children, and the apply phase cost 4–5× what it costs at 10 k accounts.
//!
//! Here:
//! - The **base** holds the rows as of the last finalized block the chain
//!   folded into it ([`Layered::fold`]), in a hash map written in place,
//!   plus, for each recent fold, the values it overwrote (its pre-images).
//! - Each state's **layer** holds what its own chain of unfinalized blocks
//!   changed since the base version it is **pinned** to: an `imbl` map of
//!   a few thousand rows that stays in cache.
//! - A state reads its layer first, then the base as of its pin: a row the
//!   base changed after the pin is read from that fold's pre-images. Pins
//!   are counted, and pre-images are dropped once no state is pinned before
//!   them, so every state stays readable for as long as it lives, whatever
//!   the chain finalizes meanwhile.
//!
//! Versions are block times (strictly increasing along a chain). The chain
//! folds each finalized state in order; a state descends from the base if
//! its lineage (the (time, root) of each of its sealed blocks since its
//! pin) holds the base's: the root commits to the whole state, so equal
//! roots are equal states. [`Layered::rebase`] moves a state's pin up to
//! the base when it descends from it, so that layers do not grow.

use super::rows::{RowChange, Schema};
use super::table::{Change, read_row, row_key, row_value};
use crate::codec::DecodeError;
use imbl::OrdMap;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};

/// A row's value and the version (block time) that wrote it.
type Stamped<V> = (u64, V);

/// What one fold overwrote: each row it wrote as it was before (`None`:
/// the row did not exist).
type PreImages<K, V> = HashMap<K, Option<Stamped<V>>>;

/// A state's view of the rows: the base as of its pin, under its layer.
pub(crate) struct Layered<S: Schema>
where
    S::Key: Hash,
{
    pin: Arc<Pin<S>>,
    /// Rows changed since the pin along this state's chain, with the
    /// version that last wrote each.
    layer: OrdMap<S::Key, Stamped<S::Value>>,
    /// The version this state's writes are stamped with (its block time).
    version: u64,
    /// (version, root) of each block sealed on this chain since the pin,
    /// the pin's own first.
    lineage: imbl::Vector<(u64, [u8; 32])>,
    /// Small: emptied by every flush (each block's end).
    dirty: BTreeMap<S::Key, Change<S::Value>>,
}

/// The finalized rows, shared by every state of one chain.
struct Base<S: Schema>
where
    S::Key: Hash,
{
    rows: RwLock<Rows<S>>,
    /// Live pins: version → how many.
    pins: Mutex<BTreeMap<u64, usize>>,
}

struct Rows<S: Schema>
where
    S::Key: Hash,
{
    latest: HashMap<S::Key, Stamped<S::Value>>,
    /// The version (and root) of the last folded state.
    version: u64,
    root: [u8; 32],
    /// The recent folds' pre-images, oldest first.
    undo: VecDeque<Fold<S>>,
}

/// What one fold overwrote.
struct Fold<S: Schema>
where
    S::Key: Hash,
{
    /// The version it folded.
    version: u64,
    before: PreImages<S::Key, S::Value>,
}

/// A state's hold on one base version: while it lives, the base keeps what
/// that version read.
struct Pin<S: Schema>
where
    S::Key: Hash,
{
    base: Arc<Base<S>>,
    version: u64,
}

impl<S: Schema> Pin<S>
where
    S::Key: Hash,
{
    /// Pins `version`. The caller holds the rows' lock, or the only
    /// reference to the base, so no fold can drop what the pin reads
    /// before it is counted.
    fn new(base: Arc<Base<S>>, version: u64) -> Arc<Pin<S>> {
        *lock(&base.pins).entry(version).or_default() += 1;
        Arc::new(Pin { base, version })
    }
}

impl<S: Schema> Drop for Pin<S>
where
    S::Key: Hash,
{
    fn drop(&mut self) {
        let mut pins = lock(&self.base.pins);
        if let Some(count) = pins.get_mut(&self.version) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.version);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps behind these locks are consistent between statements; a
    // panic elsewhere while one was held does not break them.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: Schema> Rows<S>
where
    S::Key: Hash,
{
    /// `key` as of `version` (pinned, so its pre-images are kept).
    fn at(&self, key: &S::Key, version: u64) -> Option<&S::Value> {
        let (stamp, value) = self.latest.get(key)?;
        if *stamp <= version {
            return Some(value);
        }
        // Changed after `version`: the first fold after it that wrote the
        // row kept what it was.
        let before = self
            .undo
            .iter()
            .filter(|fold| fold.version > version)
            .find_map(|fold| fold.before.get(key))
            .expect("the base dropped a pre-image a pinned state reads");
        before.as_ref().map(|(_, value)| value)
    }
}

impl<S: Schema> Layered<S>
where
    S::Key: Hash,
{
    pub(crate) fn new() -> Self {
        let base = Arc::new(Base {
            rows: RwLock::new(Rows {
                latest: HashMap::new(),
                version: 0,
                root: [0; 32],
                undo: VecDeque::new(),
            }),
            pins: Mutex::new(BTreeMap::new()),
        });
        Layered {
            pin: Pin::new(base, 0),
            layer: OrdMap::new(),
            version: 0,
            lineage: imbl::Vector::new(),
            dirty: BTreeMap::new(),
        }
    }

    fn rows(&self) -> std::sync::RwLockReadGuard<'_, Rows<S>> {
        // Folds assert before they write, so a poisoned lock's rows are
        // whole.
        self.pin.base.rows.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The value at `key` (a copy: the base may be read under its lock
    /// only).
    pub(crate) fn get(&self, key: &S::Key) -> Option<S::Value> {
        self.read(key, S::Value::clone)
    }

    /// What `read` takes from the value at `key`, without copying the
    /// value.
    pub(crate) fn read<R>(&self, key: &S::Key, read: impl FnOnce(&S::Value) -> R) -> Option<R> {
        if let Some((_, value)) = self.layer.get(key) {
            return Some(read(value));
        }
        self.rows().at(key, self.pin.version).map(read)
    }

    /// The value at `key` in this state's layer, copied up from the base
    /// first if need be, stamped as written by this state's block.
    fn layer_mut(&mut self, key: &S::Key) -> Option<&mut S::Value> {
        if !self.layer.contains_key(key) {
            let value = self.rows().at(key, self.pin.version).cloned()?;
            self.layer.insert(key.clone(), (self.version, value));
        }
        let (stamp, value) = self.layer.get_mut(key)?;
        *stamp = self.version;
        Some(value)
    }

    pub(crate) fn get_mut(&mut self, key: &S::Key) -> Option<&mut S::Value> {
        self.dirty.insert(key.clone(), Change::ReadBack);
        self.layer_mut(key)
    }

    /// Like [`super::table::Table::try_modify`]: the key is marked only
    /// when `change` returns `Ok` (and left as it was otherwise).
    pub(crate) fn try_modify<R, E>(
        &mut self,
        key: &S::Key,
        change: impl FnOnce(&mut S::Value) -> Result<R, E>,
    ) -> Option<Result<R, E>> {
        let value = self.layer_mut(key)?;
        let result = change(value);
        if result.is_ok() {
            let known = Change::Known(Some(value.clone()));
            self.dirty.insert(key.clone(), known);
        }
        Some(result)
    }

    pub(crate) fn modify_or_default<R>(
        &mut self,
        key: S::Key,
        change: impl FnOnce(&mut S::Value) -> R,
    ) -> R
    where
        S::Value: Default,
    {
        let value = self.or_insert_default(&key);
        let result = change(value);
        let known = Change::Known(Some(value.clone()));
        self.dirty.insert(key, known);
        result
    }

    fn or_insert_default(&mut self, key: &S::Key) -> &mut S::Value
    where
        S::Value: Default,
    {
        if self.layer_mut(key).is_none() {
            self.layer
                .insert(key.clone(), (self.version, S::Value::default()));
        }
        let (_, value) = self
            .layer
            .get_mut(key)
            .expect("the row was just put in the layer");
        value
    }

    pub(crate) fn or_default(&mut self, key: S::Key) -> &mut S::Value
    where
        S::Value: Default,
    {
        self.dirty.insert(key.clone(), Change::ReadBack);
        self.or_insert_default(&key)
    }

    /// Calls `visit` on every row, in no particular order (O(rows): tests,
    /// loading, a store's first write).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&S::Key, &S::Value)) {
        for (key, (_, value)) in self.layer.iter() {
            visit(key, value);
        }
        let rows = self.rows();
        for key in rows.latest.keys() {
            if self.layer.contains_key(key) {
                continue;
            }
            if let Some(value) = rows.at(key, self.pin.version) {
                visit(key, value);
            }
        }
    }

    /// Every row, in key order (O(rows log rows)).
    fn sorted(&self) -> BTreeMap<S::Key, S::Value> {
        let mut all = BTreeMap::new();
        self.for_each(|key, value| {
            all.insert(key.clone(), value.clone());
        });
        all
    }

    /// Whether nothing changed since the last flush.
    pub(crate) fn is_clean(&self) -> bool {
        self.dirty.is_empty()
    }

    /// The rows changed since the last flush; forgets the marks.
    pub(crate) fn take_changes(&mut self, out: &mut Vec<RowChange>) {
        for (key, change) in std::mem::take(&mut self.dirty) {
            let value = match change {
                Change::Known(value) => value,
                Change::ReadBack => self.get(&key),
            };
            out.push(RowChange {
                key: row_key::<S>(&key),
                value: value.as_ref().map(row_value::<S>),
            });
        }
    }

    /// Every row, in key order (O(rows log rows)).
    pub(crate) fn rows_into(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        out.extend(
            self.sorted()
                .iter()
                .map(|(k, v)| (row_key::<S>(k), row_value::<S>(v))),
        );
    }

    /// Loads one stored row (its key without the tag), unmarked, into the
    /// base of a state being built (nothing else shares it yet).
    pub(crate) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<(), DecodeError> {
        let (key, value) = read_row::<S>(key, value)?;
        // Stamped by `freeze`, which ends every load.
        let mut rows = self.exclusive_rows();
        if rows.latest.insert(key, (0, value)).is_some() {
            return Err(DecodeError::Malformed("a row appears twice"));
        }
        Ok(())
    }

    /// The base's rows, for a state that alone holds its base.
    fn exclusive_rows(&self) -> std::sync::RwLockWriteGuard<'_, Rows<S>> {
        assert!(
            self.alone(),
            "only a state being built writes its base directly"
        );
        self.pin
            .base
            .rows
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether no other state shares this one's base.
    fn alone(&self) -> bool {
        Arc::strong_count(&self.pin) == 1 && Arc::strong_count(&self.pin.base) == 1
    }

    /// Gives this state a base of its own if it shares one (O(rows)): a
    /// chain folds what it finalizes into its state's base, and another
    /// chain started from a copy of the same state must not see it.
    pub(crate) fn detach(&mut self) {
        if self.alone() {
            return;
        }
        let mut rows = HashMap::new();
        self.for_each(|key, value| {
            rows.insert(key.clone(), (0, value.clone()));
        });
        let mut alone = Layered::new();
        *alone.exclusive_rows() = Rows {
            latest: rows,
            version: 0,
            root: [0; 32],
            undo: VecDeque::new(),
        };
        alone.dirty = std::mem::take(&mut self.dirty);
        alone.version = self.version;
        let root = self.lineage.last().map_or([0; 32], |(_, root)| *root);
        alone.freeze(root);
        *self = alone;
    }

    /// Sets the version this state's writes are stamped with (at the start
    /// of each block: its time, which grows along every chain).
    pub(crate) fn begin(&mut self, version: u64) {
        self.version = version;
    }

    /// Records the root this state's block ended with: the lineage by which
    /// a later base knows whether this state descends from it.
    pub(crate) fn seal(&mut self, root: [u8; 32]) {
        if self.lineage.last().is_some_and(|(v, _)| *v == self.version) {
            self.lineage.pop_back();
        }
        self.lineage.push_back((self.version, root));
    }

    /// Makes this freshly built state its base's first version: every row
    /// into the base, at this state's version and `root`.
    pub(crate) fn freeze(&mut self, root: [u8; 32]) {
        let version = self.version;
        let layer = std::mem::take(&mut self.layer);
        {
            let mut rows = self.exclusive_rows();
            for (key, (_, value)) in layer {
                rows.latest.insert(key, (version, value));
            }
            for stamped in rows.latest.values_mut() {
                stamped.0 = version;
            }
            rows.version = version;
            rows.root = root;
        }
        self.pin = Pin::new(self.pin.base.clone(), version);
        self.lineage = imbl::Vector::unit((version, root));
    }

    /// Folds this state, finalized, into the base: the rows its chain
    /// wrote since the base's version, in place, keeping what they
    /// overwrote for the states pinned before. The chain folds each
    /// finalized block's state, in order; refolding the base's own version
    /// does nothing.
    pub(crate) fn fold(&self) {
        let Some(&(version, root)) = self.lineage.last() else {
            panic!("a state is folded after its block's end");
        };
        assert_eq!(
            version, self.version,
            "a state is folded after its block's end"
        );
        let base = &self.pin.base;
        let mut rows = base.rows.write().unwrap_or_else(|e| e.into_inner());
        if (version, root) == (rows.version, rows.root) {
            return;
        }
        assert!(
            version > rows.version && self.lineage.contains(&(rows.version, rows.root)),
            "a folded state must descend from the base"
        );
        let mut undo = HashMap::with_capacity(self.layer.len());
        for (key, (stamp, value)) in self.layer.iter() {
            if *stamp > rows.version {
                let before = rows.latest.insert(key.clone(), (*stamp, value.clone()));
                undo.insert(key.clone(), before);
            }
        }
        // Pins are only ever taken at a base version, so every live one is
        // at most the version before this fold, and reads only the
        // pre-images of folds after it.
        let oldest = lock(&base.pins).keys().next().copied().unwrap_or(version);
        while rows.undo.front().is_some_and(|fold| fold.version <= oldest) {
            rows.undo.pop_front();
        }
        if !undo.is_empty() {
            rows.undo.push_back(Fold {
                version,
                before: undo,
            });
        }
        rows.version = version;
        rows.root = root;
    }

    /// Moves this state's pin up to the base's version if it descends from
    /// it, dropping from its layer what the base now holds: a new block's
    /// state, copied from its parent's, starts with a layer of only the
    /// unfinalized blocks under it. A state on another fork keeps its pin
    /// (and stays readable).
    pub(crate) fn rebase(&mut self) {
        let moved = {
            let rows = self.rows();
            if rows.version <= self.pin.version {
                return;
            }
            let Some(at) = self
                .lineage
                .iter()
                .position(|sealed| *sealed == (rows.version, rows.root))
            else {
                return;
            };
            let layer: OrdMap<_, _> = self
                .layer
                .iter()
                .filter(|(_, (stamp, _))| *stamp > rows.version)
                .map(|(key, stamped)| (key.clone(), stamped.clone()))
                .collect();
            (layer, Pin::new(self.pin.base.clone(), rows.version), at)
        };
        let (layer, pin, at) = moved;
        self.layer = layer;
        self.pin = pin;
        self.lineage = self.lineage.skip(at);
    }

    /// Rows in this state's layer (tests: a layer stays small).
    #[cfg(test)]
    pub(crate) fn layer_len(&self) -> usize {
        self.layer.len()
    }

    /// Folds the base keeps pre-images of (tests: they are dropped).
    #[cfg(test)]
    pub(crate) fn undo_len(&self) -> usize {
        self.rows().undo.len()
    }
}

impl<S: Schema> Clone for Layered<S>
where
    S::Key: Hash,
{
    fn clone(&self) -> Self {
        Layered {
            pin: self.pin.clone(),
            layer: self.layer.clone(),
            version: self.version,
            lineage: self.lineage.clone(),
            dirty: self.dirty.clone(),
        }
    }
}

impl<S: Schema> PartialEq for Layered<S>
where
    S::Key: Hash,
{
    /// Content only (O(rows log rows)).
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}

impl<S: Schema> std::fmt::Debug for Layered<S>
where
    S::Key: Hash,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.sorted()).finish()
    }
}
