//! The buffer a macro string is expanded into (`setvar` names and values, operands, `msg`).
//!
//! Most expansions are short and made of a few parts (`tx.header_name_920450_` and a header's
//! name, once per request header), so the buffer starts on the stack and an append is a bounds
//! check and a copy. `SmallVec::extend_from_slice` inserts at the end instead: it reserves,
//! moves the (empty) tail and copies, two calls to `memmove` per part, which made the appends
//! cost more than the rest of a `setvar`.

use std::ops::{Deref, DerefMut};

/// The bytes kept on the stack before the buffer moves to the heap.
const INLINE: usize = 128;

/// Bytes appended part by part: on the stack up to [`INLINE`] bytes, on the heap past that.
pub(super) struct Expansion {
    len: usize,
    inline: [u8; INLINE],
    /// Everything, once the bytes outgrew `inline`.
    heap: Option<Vec<u8>>,
}

impl Expansion {
    pub(super) fn new() -> Self {
        Expansion { len: 0, inline: [0; INLINE], heap: None }
    }

    /// Appends `part`.
    #[inline]
    pub(super) fn push(&mut self, part: &[u8]) {
        let end = self.len + part.len();
        match (&mut self.heap, self.inline.get_mut(self.len..end)) {
            (None, Some(room)) => {
                room.copy_from_slice(part);
                self.len = end;
            }
            _ => self.spill(part),
        }
    }

    #[cold]
    fn spill(&mut self, part: &[u8]) {
        let heap = self.heap.get_or_insert_with(|| {
            let mut heap = Vec::with_capacity((self.len + part.len()).max(2 * INLINE));
            heap.extend_from_slice(&self.inline[..self.len]);
            heap
        });
        heap.extend_from_slice(part);
    }

    pub(super) fn into_vec(self) -> Vec<u8> {
        match self.heap {
            Some(heap) => heap,
            None => self.inline[..self.len].to_vec(),
        }
    }
}

impl Deref for Expansion {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap,
            None => &self.inline[..self.len],
        }
    }
}

impl DerefMut for Expansion {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.heap {
            Some(heap) => heap,
            None => &mut self.inline[..self.len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_append_in_order_across_the_move_to_the_heap() {
        let mut e = Expansion::new();
        let mut expected = Vec::new();
        for i in 0..60u8 {
            let part = vec![b'a' + i % 26; usize::from(i % 7)];
            e.push(&part);
            expected.extend_from_slice(&part);
            assert_eq!(&e[..], &expected[..], "after part {i}");
        }
        assert!(expected.len() > INLINE, "the test must pass the inline room");
        e.make_ascii_uppercase();
        assert_eq!(e.into_vec(), expected.to_ascii_uppercase());

        let mut short = Expansion::new();
        short.push(b"tx.");
        short.push(b"");
        short.push(b"anomaly");
        assert_eq!(short.into_vec(), b"tx.anomaly");
    }
}
