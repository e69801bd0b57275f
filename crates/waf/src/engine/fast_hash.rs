//! The hashers of the engine's hash maps: [`FastHash`] for keys the rule set chooses,
//! [`SeededHash`] for keys a request makes.

/// The hasher of maps keyed by what a request sends (values, names built from them): seeded
/// per process, so that a client cannot choose keys that collide. With [`FastHash`], whose
/// collisions anyone can compute, a 1 MiB form body of values built to share one hash made
/// each insertion into the transformation cache compare every key before it: 1.16 s of
/// evaluation instead of 0.24 (`benches/size.rs`, `form-colliding-args`).
pub(crate) type SeededHash = foldhash::quality::RandomState;

/// A fast, unseeded, non-cryptographic hasher (FxHash's multiply-rotate) for maps whose keys
/// the rule set chooses (the `TX` names its rules write, transformation chains), where a
/// request can only look keys up.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hasher};

    use super::*;

    /// Values of one length that share their `FastHash`: the first word picks the value, the
    /// second undoes it.
    fn colliding(n: u64) -> Vec<Vec<u8>> {
        let step = |h: u64, w: u64| {
            let mut hasher = FxHasher(h);
            hasher.write(&w.to_le_bytes());
            hasher.finish()
        };
        let length = step(0, 24);
        (1..=n)
            .map(|i| {
                let first = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let second = step(length, 0).rotate_left(5) ^ step(length, first).rotate_left(5);
                [&first.to_le_bytes()[..], &second.to_le_bytes(), b"same end"].concat()
            })
            .collect()
    }

    /// Anyone can make keys collide under `FastHash`; under `SeededHash` the same keys spread.
    #[test]
    fn keys_built_to_collide_spread_under_the_seeded_hash() {
        let values = colliding(1000);
        let distinct = |hashes: std::collections::HashSet<u64>| hashes.len();
        assert_eq!(distinct(values.iter().map(|v| FastHash.hash_one(v)).collect()), 1);
        let seeded = SeededHash::default();
        assert_eq!(distinct(values.iter().map(|v| seeded.hash_one(v)).collect()), values.len());
    }
}
