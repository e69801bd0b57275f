//! Answers that depend on a short value alone, kept across transactions.
//!
//! Real traffic repeats most of what it sends: a few hundred user agents make up nearly all
//! requests, and `Accept`, `Host` or a cookie's name come back on every request of a client.
//! The prescan of such a value through a scope's automata, or libinjection's verdict on it,
//! is the same each time; a [`Memo`] keeps it, so a repeated value costs a hash and a compare
//! instead of a walk through a large automaton.
//!
//! A memo is bounded and never in the way:
//! - it keeps values of up to [`LONGEST`] bytes, at most [`ENTRIES`] of them, in two
//!   generations: when the young one fills, the old one is dropped and the young one ages, so
//!   values in use stay and a flood of new values only costs their own work;
//! - keys are whole values, compared in full and hashed with a per-process random key
//!   (SipHash), so a crafted value can neither take another value's answer nor pile up with
//!   others in one bucket;
//! - a transaction that finds the memo locked by another thread does the work itself rather
//!   than wait.
//!
//! A memo belongs to the compiled rule set: a new rule set starts with empty ones.

use std::collections::HashMap;
use std::fmt;
use std::hash::RandomState;
use std::sync::Mutex;

/// The longest value kept: user agents and ordinary header values fit; bodies, long query
/// strings and other values unlikely to repeat are not worth the memory.
pub(crate) const LONGEST: usize = 512;

/// The most values a memo keeps (both generations together). With [`LONGEST`] this bounds a
/// memo near 300 KiB.
pub(crate) const ENTRIES: usize = 512;

/// Answers by value (see the module documentation).
pub(crate) struct Memo<V> {
    generations: Mutex<Generations<V>>,
}

struct Generations<V> {
    young: HashMap<Box<[u8]>, V, RandomState>,
    old: HashMap<Box<[u8]>, V, RandomState>,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        let state = RandomState::new();
        let generations = Generations { young: HashMap::with_hasher(state.clone()), old: HashMap::with_hasher(state) };
        Memo { generations: Mutex::new(generations) }
    }
}

impl<V> fmt::Debug for Memo<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.generations.try_lock() {
            Ok(g) => write!(f, "Memo({} values)", g.young.len() + g.old.len()),
            Err(_) => f.write_str("Memo(busy)"),
        }
    }
}

impl<V: Clone> Memo<V> {
    /// The answer for `value`: remembered, or computed by `work` (and remembered when the
    /// value is short enough and the memo free).
    pub(crate) fn get_or(&self, value: &[u8], work: impl FnOnce() -> V) -> V {
        if value.len() > LONGEST {
            return work();
        }
        if let Some(v) = self.get(value) {
            return v;
        }
        let v = work();
        if let Ok(mut g) = self.generations.try_lock() {
            g.insert(value, v.clone());
        }
        v
    }

    fn get(&self, value: &[u8]) -> Option<V> {
        let mut g = self.generations.try_lock().ok()?;
        if let Some(v) = g.young.get(value) {
            return Some(v.clone());
        }
        // A value still in use moves to the young generation, so it outlives the next ageing.
        let (k, v) = g.old.remove_entry(value)?;
        g.young.insert(k, v.clone());
        Some(v)
    }
}

impl<V> Generations<V> {
    fn insert(&mut self, value: &[u8], v: V) {
        if self.young.len() >= ENTRIES / 2 {
            self.old = std::mem::replace(&mut self.young, HashMap::with_hasher(self.old.hasher().clone()));
        }
        self.young.insert(value.into(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_repeated_value_is_worked_out_once() {
        let memo = Memo::default();
        let calls = Cell::new(0);
        let work = |n| {
            calls.set(calls.get() + 1);
            n
        };
        assert_eq!(memo.get_or(b"Mozilla/5.0", || work(1)), 1);
        assert_eq!(memo.get_or(b"Mozilla/5.0", || work(2)), 1);
        assert_eq!(memo.get_or(b"curl/8.5.0", || work(3)), 3);
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn long_values_are_not_kept() {
        let memo = Memo::default();
        let long = vec![b'a'; LONGEST + 1];
        assert_eq!(memo.get_or(&long, || 1), 1);
        assert_eq!(memo.get_or(&long, || 2), 2);
    }

    #[test]
    fn values_in_use_survive_a_flood_of_new_ones() {
        let memo = Memo::default();
        memo.get_or(b"kept", || 1);
        for i in 0..10 * ENTRIES {
            memo.get_or(i.to_string().as_bytes(), || 0);
            // The value in use is asked for now and then, as real traffic does.
            if i % (ENTRIES / 4) == 0 {
                assert_eq!(memo.get_or(b"kept", || 2), 1, "forgotten after {i} new values");
            }
        }
        let g = memo.generations.lock().unwrap();
        assert!(g.young.len() + g.old.len() <= ENTRIES);
    }

    #[test]
    fn a_busy_memo_does_the_work_without_waiting() {
        let memo = Memo::default();
        memo.get_or(b"x", || 1);
        let _held = memo.generations.lock().unwrap();
        assert_eq!(memo.get_or(b"x", || 2), 2);
    }
}
