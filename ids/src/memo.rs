//! [`KeyMemo`]: remembered answers of a pure function of a key's bytes.

use std::collections::HashMap;
use std::sync::Mutex;

/// Answers of a pure function of 32 key bytes (is this key valid, its
/// decoded point), kept up to a bound. Decoding a key costs a point
/// decompression, and a node sees the same few keys in every transaction,
/// several times over (submission, gossip, block). The function is pure,
/// so a remembered answer is the answer; a flood of fresh keys only
/// empties the memo, it never grows past its bound.
pub struct KeyMemo<V> {
    answers: Mutex<Option<HashMap<[u8; 32], V>>>,
    max: usize,
}

impl<V: Clone> KeyMemo<V> {
    /// An empty memo of at most `max` answers (a `static` may hold it).
    pub const fn new(max: usize) -> Self {
        KeyMemo {
            answers: Mutex::new(None),
            max,
        }
    }

    /// The answer for `key`: remembered, or computed by `answer` (outside
    /// the lock) and remembered.
    pub fn get(&self, key: [u8; 32], answer: impl FnOnce() -> V) -> V {
        if let Some(known) = self.lock().as_ref().and_then(|m| m.get(&key)) {
            return known.clone();
        }
        let value = answer();
        let mut answers = self.lock();
        let answers = answers.get_or_insert_with(HashMap::new);
        if answers.len() >= self.max {
            answers.clear();
        }
        answers.insert(key, value.clone());
        value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<[u8; 32], V>>> {
        // A panic elsewhere cannot leave a wrong answer behind: each entry
        // is inserted whole.
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::KeyMemo;
    use std::cell::Cell;

    #[test]
    fn an_answer_is_computed_once_and_the_memo_never_outgrows_its_bound() {
        let memo = KeyMemo::new(4);
        let calls = Cell::new(0);
        let answer = |key: [u8; 32]| {
            memo.get(key, || {
                calls.set(calls.get() + 1);
                key[0].is_multiple_of(2)
            })
        };
        assert!(answer([2; 32]));
        assert!(answer([2; 32]));
        assert_eq!(calls.get(), 1, "the second answer is remembered");
        for k in 0..100u8 {
            assert_eq!(answer([k; 32]), k.is_multiple_of(2));
        }
        let held = memo.lock().as_ref().map_or(0, |m| m.len());
        assert!(held <= 4, "{held} answers held, bound 4");
    }
}
