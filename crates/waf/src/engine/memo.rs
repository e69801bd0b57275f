//! Answers that depend on a short value alone, kept across transactions.
//!
//! Real traffic repeats most of what it sends: a few hundred user agents make up nearly all
//! requests, and `Accept`, `Host` or a cookie's name come back on every request of a client.
//! The prescan of such a value through a scope's automata, libinjection's verdict on it, or
//! whether it holds a phrase of a long `@pmFromFile` list is the same each time; a [`Memo`]
//! keeps it, so a repeated value costs a hash and a compare instead of a walk through a large
//! automaton.
//!
//! A memo is bounded and never in the way:
//! - it keeps values up to a length, and so many of them ([`Limits`]), in two generations:
//!   when the young one fills, the old one is dropped and the young one ages, so values in use
//!   stay and a flood of new values only costs their own work;
//! - a value is kept the second time it comes (a small Bloom filter, cleared now and then,
//!   remembers the first), so values that never repeat cost a hash, not an allocation and an
//!   insertion;
//! - keys are whole values, compared in full and hashed with a per-process random seed
//!   (foldhash's quality hasher: a few times faster than SipHash on values this short, and
//!   still unknown to a client), so a crafted value can neither take another value's answer
//!   nor aim at another's bucket;
//! - a transaction that finds the memo locked by another thread does the work itself rather
//!   than wait;
//! - threads take different shards of it (up to [`SHARDS`], each a memo of its own), so that
//!   the gateway's workers, which share a rule set, do not write the same lock and tables in
//!   turn: with two threads on one rule set and one shard, every lookup moved the lock's cache
//!   line between the cores (9 % of the engine's time for that line alone).
//!
//! A memo belongs to the compiled rule set: a new rule set starts with empty ones. Most keep
//! short values ([`Limits::SHORT`]); a scope's memo of whole collections keeps fewer, longer
//! ones ([`Limits::WHOLE`]).

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use foldhash::quality::RandomState;
use hashbrown::HashTable;
use smallvec::SmallVec;

/// The longest value kept: user agents and ordinary header values fit; bodies, long query
/// strings and other values unlikely to repeat are not worth the memory.
pub(crate) const LONGEST: usize = 512;

/// The most values a memo's shard keeps (both generations together). With [`LONGEST`] this
/// bounds a shard near 300 KiB.
pub(crate) const ENTRIES: usize = 512;

/// The bits of the filter of first sightings (1 KiB). Each sighting sets two; the filter is
/// cleared after `SEEN_BITS / 8` sightings, before false "seen before"s pass a few percent.
const SEEN_BITS: usize = 8192;

/// The most shards a memo has: one per core, up to this many (threads beyond share them).
pub(crate) const SHARDS: usize = 8;

/// What a memo keeps: values of up to `longest` bytes, at most `entries` of them in each
/// shard. A shard holds at most `longest * entries` bytes of values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub longest: usize,
    pub entries: usize,
}

impl Limits {
    /// Header values, names, short parameters: [`LONGEST`] and [`ENTRIES`].
    pub(crate) const SHORT: Limits = Limits { longest: LONGEST, entries: ENTRIES };

    /// The whole contents of a collection (a JSON document's argument names): up to 4 KiB,
    /// 64 of them (256 KiB a shard).
    pub(crate) const WHOLE: Limits = Limits { longest: 4096, entries: 64 };
}

/// Answers by value (see the module documentation).
pub(crate) struct Memo<V> {
    hasher: RandomState,
    longest: usize,
    shards: Box<[Shard<V>]>,
}

/// A shard, alone on its cache lines: two shards side by side would share one, and the cores
/// writing them would pass it back and forth all the same.
#[repr(align(128))]
struct Shard<V>(Mutex<State<V>>);

/// A value's hash, the value and its answer. Short values sit in the entry itself, so that
/// a lookup reads one place in memory, not a table and then a key elsewhere (in a gateway
/// busy with sockets, each a cache miss).
type Entry<V> = (u64, SmallVec<[u8; KEPT_INLINE]>, V);

/// The longest value kept inside its entry: most header values, names and short parameters.
const KEPT_INLINE: usize = 32;

struct State<V> {
    /// The most entries each generation holds: half the memo's.
    half: usize,
    young: HashTable<Entry<V>>,
    old: HashTable<Entry<V>>,
    /// Values seen once: a Bloom filter over their hashes, and how many it holds.
    seen: Box<[u64]>,
    sightings: usize,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo::with_limits(Limits::SHORT)
    }
}

impl<V> Memo<V> {
    /// An empty memo that keeps what `limits` allow.
    pub(crate) fn with_limits(limits: Limits) -> Self {
        let count = shard_count();
        let shard = || {
            let seen = vec![0; SEEN_BITS / 64].into_boxed_slice();
            let half = limits.entries / 2;
            Shard(Mutex::new(State { half, young: HashTable::new(), old: HashTable::new(), seen, sightings: 0 }))
        };
        Memo { hasher: RandomState::default(), longest: limits.longest, shards: (0..count).map(|_| shard()).collect() }
    }

    /// Whether a value is short enough to be kept.
    pub(crate) fn keeps(&self, value_len: usize) -> bool {
        value_len <= self.longest
    }

    /// How many values the calling thread's shard keeps.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.state().lock().map_or(0, |s| s.young.len() + s.old.len())
    }

    /// The calling thread's shard: threads are numbered as they first use a memo, and every
    /// memo has as many shards, so a thread's shard is worked out once (a division per lookup
    /// was a tenth of the prescan's own time).
    fn state(&self) -> &Mutex<State<V>> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local!(static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % shard_count());
        &self.shards[SHARD.with(|s| *s)].0
    }
}

/// How many shards each memo has: one per core, up to [`SHARDS`].
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(SHARDS))
}

impl<V> fmt::Debug for Memo<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state().try_lock() {
            Ok(s) => write!(f, "Memo({} values)", s.young.len() + s.old.len()),
            Err(_) => f.write_str("Memo(busy)"),
        }
    }
}

impl<V: Clone> Memo<V> {
    /// The answer for `value`: remembered, or computed by `work` (and remembered when the
    /// value is short enough, comes for the second time and the memo is free).
    pub(crate) fn get_or(&self, value: &[u8], work: impl FnOnce() -> V) -> V {
        if !self.keeps(value.len()) {
            return work();
        }
        let hash = self.hasher.hash_one(value);
        let keep = match self.state().try_lock() {
            Ok(mut s) => match s.get(hash, value) {
                Some(v) => return v.clone(),
                None => s.first_sighting(hash),
            },
            Err(_) => false,
        };
        let v = work();
        if keep {
            if let Ok(mut s) = self.state().try_lock() {
                s.insert(hash, value, v.clone());
            }
        }
        v
    }
}

impl<V> Memo<V> {
    /// The answer for each of `items` (by `key`), given to `answer` in no particular order:
    /// those remembered read under one lock, without copying; the others computed by
    /// `work` once the lock is released, and remembered as [`Memo::get_or`] does.
    pub(crate) fn get_each<T>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> &[u8],
        mut answer: impl FnMut(&V),
        mut work: impl FnMut(&T) -> V,
    ) {
        if items.is_empty() {
            return;
        }
        // By item: the value's hash and whether to keep its answer.
        let mut missed: SmallVec<[(usize, u64, bool); 8]> = SmallVec::new();
        match self.state().try_lock() {
            Ok(mut s) => {
                for (i, item) in items.iter().enumerate() {
                    let value = key(item);
                    if !self.keeps(value.len()) {
                        missed.push((i, 0, false));
                        continue;
                    }
                    let hash = self.hasher.hash_one(value);
                    match s.get(hash, value) {
                        Some(v) => answer(v),
                        None => {
                            let keep = s.first_sighting(hash);
                            missed.push((i, hash, keep));
                        }
                    }
                }
            }
            Err(_) => missed.extend((0..items.len()).map(|i| (i, 0, false))),
        }
        let mut kept: SmallVec<[(usize, u64, V); 4]> = SmallVec::new();
        for (i, hash, keep) in missed {
            let v = work(&items[i]);
            answer(&v);
            if keep {
                kept.push((i, hash, v));
            }
        }
        if kept.is_empty() {
            return;
        }
        if let Ok(mut s) = self.state().try_lock() {
            for (i, hash, v) in kept {
                s.insert(hash, key(&items[i]), v);
            }
        }
    }
}

/// Whether an entry is the one of `value` (with its `hash`): the hashes first, then the bytes.
fn holds<V>(hash: u64, value: &[u8]) -> impl Fn(&Entry<V>) -> bool + '_ {
    move |e| e.0 == hash && *e.1 == *value
}

impl<V> State<V> {
    /// The answer for `value`, found by its `hash`. Values in use are in the young
    /// generation: that lookup is all a lookup does, the rest is out of its way.
    #[inline]
    fn get(&mut self, hash: u64, value: &[u8]) -> Option<&V> {
        match self.young.find_bucket_index(hash, holds(hash, value)) {
            Some(at) => self.young.get_bucket(at).map(|e| &e.2),
            None => self.get_old(hash, value),
        }
    }

    /// [`State::get`] for a value not in the young generation. One still in use moves to it,
    /// so it outlives the next ageing (when the young one has room: each generation holds at
    /// most half the entries).
    #[cold]
    fn get_old(&mut self, hash: u64, value: &[u8]) -> Option<&V> {
        let found = self.old.find_entry(hash, holds(hash, value)).ok()?;
        if self.young.len() >= self.half {
            return Some(&found.into_mut().2);
        }
        let (e, _) = found.remove();
        Some(&self.young.insert_unique(hash, e, |e| e.0).into_mut().2)
    }

    /// Whether `hash` was seen before (and should be kept now); remembers it otherwise.
    fn first_sighting(&mut self, hash: u64) -> bool {
        let bits = [hash as usize % SEEN_BITS, (hash >> 32) as usize % SEEN_BITS];
        if bits.iter().all(|&b| self.seen[b / 64] & (1 << (b % 64)) != 0) {
            return true;
        }
        if self.sightings == SEEN_BITS / 8 {
            self.seen.fill(0);
            self.sightings = 0;
        }
        bits.iter().for_each(|&b| self.seen[b / 64] |= 1 << (b % 64));
        self.sightings += 1;
        false
    }

    fn insert(&mut self, hash: u64, value: &[u8], v: V) {
        // Another thread may have kept it while this one worked it out.
        if self.young.find(hash, holds(hash, value)).is_some() {
            return;
        }
        if self.young.len() >= self.half {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert_unique(hash, (hash, SmallVec::from_slice(value), v), |e| e.0);
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
        // Kept the second time it comes, answered from the memo after that.
        assert_eq!(memo.get_or(b"Mozilla/5.0", || work(1)), 1);
        assert_eq!(memo.get_or(b"Mozilla/5.0", || work(2)), 2);
        assert_eq!(memo.get_or(b"Mozilla/5.0", || work(3)), 2);
        assert_eq!(memo.get_or(b"curl/8.5.0", || work(4)), 4);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn many_values_are_answered_at_once_each_worked_out_once() {
        let memo = Memo::default();
        let long = vec![b'a'; LONGEST + 1];
        let items: [&[u8]; 4] = [b"Mozilla/5.0", b"curl/8.5.0", &long, b"Mozilla/5.0"];
        let calls = Cell::new(0);
        let round = |base: usize| {
            let mut answers = Vec::new();
            let work = |v: &&[u8]| {
                calls.set(calls.get() + 1);
                base + v.len()
            };
            memo.get_each(&items, |v| v, |a| answers.push(*a), work);
            answers.sort();
            answers
        };
        // The first round works out all four, and keeps the user agent it saw twice; the
        // second keeps curl's too (seen twice now); the third answers both from the memo and
        // works out the long value, as every round does.
        assert_eq!(round(0), [10, 11, 11, LONGEST + 1]);
        assert_eq!(calls.get(), 4);
        assert_eq!(round(100), [11, 11, 110, 100 + LONGEST + 1]);
        assert_eq!(calls.get(), 6);
        assert_eq!(round(200), [11, 11, 110, 200 + LONGEST + 1]);
        assert_eq!(calls.get(), 7);
    }

    #[test]
    fn values_that_never_repeat_are_seldom_kept() {
        let memo = Memo::default();
        let n = 4 * ENTRIES;
        for i in 0..n {
            memo.get_or(i.to_string().as_bytes(), || 0);
        }
        // Only the filter's false positives: a few percent.
        let s = memo.state().lock().unwrap();
        assert!(s.young.len() + s.old.len() < n / 20, "{} of {n} kept", s.young.len() + s.old.len());
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
        memo.get_or(b"kept", || 1);
        for i in 0..10 * ENTRIES {
            // Each new value comes twice, so that it is kept.
            memo.get_or(i.to_string().as_bytes(), || 0);
            memo.get_or(i.to_string().as_bytes(), || 0);
            // The value in use is asked for now and then, as real traffic does.
            if i % (ENTRIES / 4) == 0 {
                assert_eq!(memo.get_or(b"kept", || 2), 1, "forgotten after {i} new values");
            }
        }
        let s = memo.state().lock().unwrap();
        assert!(s.young.len() <= ENTRIES / 2 && s.old.len() <= ENTRIES / 2);
    }

    #[test]
    fn a_memo_of_whole_collections_keeps_fewer_longer_values() {
        let memo = Memo::with_limits(Limits::WHOLE);
        let long = vec![b'a'; 1024];
        memo.get_or(&long, || 1);
        assert_eq!(memo.get_or(&long, || 2), 2);
        assert_eq!(memo.get_or(&long, || 3), 2, "a 1 KiB value is kept");
        let too_long = vec![b'a'; Limits::WHOLE.longest + 1];
        memo.get_or(&too_long, || 1);
        memo.get_or(&too_long, || 2);
        assert_eq!(memo.get_or(&too_long, || 3), 3, "a value past the limit is not");
        for i in 0..4 * Limits::WHOLE.entries {
            let value = format!("{i:01024}");
            memo.get_or(value.as_bytes(), || 0);
            memo.get_or(value.as_bytes(), || 0);
        }
        assert!(memo.kept() <= Limits::WHOLE.entries, "{} kept", memo.kept());
    }

    #[test]
    fn a_busy_memo_does_the_work_without_waiting() {
        let memo = Memo::default();
        memo.get_or(b"x", || 1);
        memo.get_or(b"x", || 1);
        let _held = memo.state().lock().unwrap();
        assert_eq!(memo.get_or(b"x", || 2), 2);
    }
}
