//! [`Table`]: one of the state's maps, copy-on-write (an `imbl` B-tree, so a
//! speculative state's clone is O(1)) and remembering which keys changed
//! since the last flush, so the root and the store touch only those rows.
//!
//! Every mutable access marks its key, whether or not the value ends up
//! different: a row rewritten with the same value changes nothing in the
//! root, while a missed mark would silently fork it.

use super::rows::{RowChange, Schema};
use crate::codec::{DecodeError, Reader, Writer};
use imbl::OrdMap;
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// A map of the state, with the keys changed since the last flush.
pub(crate) struct Table<S: Schema> {
    map: OrdMap<S::Key, S::Value>,
    /// Small: emptied by every flush (each block's end).
    dirty: BTreeMap<S::Key, Change<S::Value>>,
}

/// What the next flush writes for a key changed since the last one.
#[derive(Clone)]
pub(super) enum Change<V> {
    /// The value the last change left (`None`: removed). Kept so that the
    /// flush need not walk the tree again: at 1 M rows each walk is a few
    /// misses to memory, and a block of transfers changes 2 000 accounts.
    Known(Option<V>),
    /// A `&mut` was handed out, so the flush reads the value back.
    ReadBack,
}

impl<S: Schema> Clone for Table<S> {
    fn clone(&self) -> Self {
        Table {
            map: self.map.clone(),
            dirty: self.dirty.clone(),
        }
    }
}

impl<S: Schema> std::fmt::Debug for Table<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.map.iter()).finish()
    }
}

impl<S: Schema> PartialEq for Table<S> {
    /// Content only: which keys are marked is bookkeeping.
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<S: Schema> Table<S> {
    pub(crate) fn new() -> Self {
        Table {
            map: OrdMap::new(),
            dirty: BTreeMap::new(),
        }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&S::Value>
    where
        Q: Ord + ?Sized,
        S::Key: Borrow<Q>,
    {
        self.map.get(key)
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Ord + ?Sized,
        S::Key: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&S::Key, &S::Value)> {
        self.map.iter()
    }

    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut S::Value>
    where
        Q: Ord + ToOwned<Owned = S::Key> + ?Sized,
        S::Key: Borrow<Q>,
    {
        let value = self.map.get_mut(key)?;
        self.dirty.insert(key.to_owned(), Change::ReadBack);
        Some(value)
    }

    pub(crate) fn or_default(&mut self, key: S::Key) -> &mut S::Value
    where
        S::Value: Default,
    {
        self.dirty.insert(key.clone(), Change::ReadBack);
        self.map.entry(key).or_default()
    }

    pub(crate) fn or_insert(&mut self, key: S::Key, value: S::Value) -> &mut S::Value {
        self.dirty.insert(key.clone(), Change::ReadBack);
        self.map.entry(key).or_insert(value)
    }

    pub(crate) fn insert(&mut self, key: S::Key, value: S::Value) -> Option<S::Value> {
        self.dirty
            .insert(key.clone(), Change::Known(Some(value.clone())));
        self.map.insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: &S::Key) -> Option<S::Value> {
        let old = self.map.remove(key);
        if old.is_some() {
            self.dirty.insert(key.clone(), Change::Known(None));
        }
        old
    }

    /// Keeps the entries `keep` accepts (O(entries); for the pruned tables).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&S::Key, &S::Value) -> bool) {
        let gone: Vec<S::Key> = self
            .map
            .iter()
            .filter(|(k, v)| !keep(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.remove(&key);
        }
    }

    /// Removes the smallest keys while `expired` says so: O(removed), for
    /// a table keyed by period first.
    pub(crate) fn remove_first_while(&mut self, mut expired: impl FnMut(&S::Key) -> bool) {
        while let Some((key, _)) = self.map.get_min() {
            if !expired(key) {
                break;
            }
            let key = key.clone();
            self.remove(&key);
        }
    }

    /// Whether nothing changed since the last flush.
    pub(crate) fn is_clean(&self) -> bool {
        self.dirty.is_empty()
    }

    /// The rows changed since the last flush (a deleted one has no value);
    /// forgets the marks.
    pub(crate) fn take_changes(&mut self, out: &mut Vec<RowChange>) {
        for (key, change) in std::mem::take(&mut self.dirty) {
            let value = match change {
                Change::Known(value) => {
                    debug_assert_eq!(value.as_ref(), self.map.get(&key));
                    value.as_ref().map(row_value::<S>)
                }
                Change::ReadBack => self.map.get(&key).map(row_value::<S>),
            };
            out.push(RowChange {
                key: row_key::<S>(&key),
                value,
            });
        }
    }

    /// Every row (O(entries)).
    pub(crate) fn rows(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        out.extend(
            self.map
                .iter()
                .map(|(k, v)| (row_key::<S>(k), row_value::<S>(v))),
        );
    }

    /// Loads one stored row (its key without the tag), unmarked.
    pub(crate) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<(), DecodeError> {
        let (key, value) = read_row::<S>(key, value)?;
        if self.map.insert(key, value).is_some() {
            return Err(DecodeError::Malformed("a row appears twice"));
        }
        Ok(())
    }
}

/// A row's key: the table's tag, then the entry's key.
pub(super) fn row_key<S: Schema>(key: &S::Key) -> Vec<u8> {
    let mut w = Writer::with_capacity(48);
    w.u8(S::TAG);
    S::write_key(key, &mut w);
    w.0
}

/// A row's value: the entry's canonical encoding.
pub(super) fn row_value<S: Schema>(value: &S::Value) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    S::write_value(value, &mut w);
    w.0
}

/// A stored row's entry (its key without the tag), decoded whole.
pub(super) fn read_row<S: Schema>(
    key: &[u8],
    value: &[u8],
) -> Result<(S::Key, S::Value), DecodeError> {
    let mut r = Reader(key);
    let key = S::read_key(&mut r)?;
    r.finish()?;
    let mut r = Reader(value);
    let value = S::read_value(&mut r)?;
    r.finish()?;
    Ok((key, value))
}
