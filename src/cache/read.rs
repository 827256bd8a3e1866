//! Reading a [`Cache`]: lookups by key and the passes over every entry
//! (decoded, the most recent only, copied in their stored form, keys
//! only, or the raw bytes anti-entropy hashes). None of them changes the
//! cache or its counters.

use super::slot::Slot;
use super::{Cache, Entry, Stored};
use crate::time::Instant;

/// An entry copied out in its stored form, for a dump that is rendered
/// a part at a time while the cache goes on changing (a copy costs the
/// compact encoding, about 40 bytes, not the decoded value).
#[derive(Debug, Clone)]
pub struct Copied {
    bytes: Box<[u8]>,
    since: Instant,
    updated: Instant,
}

impl Copied {
    /// The entry, decoded (None if the bytes do not decode, which a cache
    /// never stores).
    pub fn decode<V: Stored>(&self) -> Option<Entry<V>> {
        Some(Entry {
            value: V::decode(&self.bytes)?,
            since: self.since,
            updated: self.updated,
        })
    }
}

impl<V: Stored> Cache<V> {
    pub fn get(&self, k: &V::Key) -> Option<Entry<V>> {
        self.find(k).and_then(|s| Self::read(&self.slab, s))
    }

    /// The entry's encoding as stored (key first), without decoding it.
    pub fn get_encoded(&self, k: &V::Key) -> Option<&[u8]> {
        self.find(k).map(|s| s.encoded(&self.slab))
    }

    pub fn contains(&self, k: &V::Key) -> bool {
        self.find(k).is_some()
    }

    /// Every entry, decoded.
    pub fn iter(&self) -> impl Iterator<Item = Entry<V>> + '_ {
        self.table.iter().filter_map(|s| Self::read(&self.slab, s))
    }

    /// The `n` most recently updated entries, most recent first. Only
    /// those are decoded: a commit's first stage is picked from 100 000
    /// entries in a pass over their timestamps.
    pub fn most_recent(&self, n: usize) -> Vec<Entry<V>> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        if n == 0 {
            return Vec::new();
        }
        // The n latest (updated, position) pairs, the oldest on top.
        let mut heap = BinaryHeap::with_capacity(n + 1);
        for (i, s) in self.table.iter().enumerate() {
            if heap.len() == n
                && heap.peek().is_some_and(|Reverse(p)| *p >= (s.updated(), i))
            {
                continue;
            }
            heap.push(Reverse((s.updated(), i)));
            if heap.len() > n {
                heap.pop();
            }
        }
        let mut wanted: Vec<usize> =
            heap.into_iter().map(|Reverse((_, i))| i).collect();
        wanted.sort_unstable();
        let mut slots: Vec<&Slot> = Vec::with_capacity(wanted.len());
        let mut next = wanted.iter().peekable();
        for (i, s) in self.table.iter().enumerate() {
            if next.peek() == Some(&&i) {
                next.next();
                slots.push(s);
            }
        }
        // The slots are ordered, not the decoded entries (288 bytes each,
        // moved again at every step of a sort).
        slots.sort_by_key(|s| Reverse(s.updated()));
        slots
            .into_iter()
            .filter_map(|s| Self::read(&self.slab, s))
            .collect()
    }

    /// Every entry, copied in its stored form.
    pub fn copy_out(&self) -> Vec<Copied> {
        self.table
            .iter()
            .map(|s| Copied {
                bytes: s.encoded(&self.slab).into(),
                since: s.since(),
                updated: s.updated(),
            })
            .collect()
    }

    /// Every key, decoded.
    pub fn keys(&self) -> impl Iterator<Item = V::Key> + '_ {
        self.table.iter().filter_map(|s| {
            V::decode_key(s.encoded(&self.slab)).map(|(k, _)| k)
        })
    }

    /// Every entry as stored, without decoding: its bytes (the wire
    /// encoding, key first), the length of the key's encoding at their
    /// start, and when it was last updated. For anti-entropy digests,
    /// which hash the bytes both nodes hold when they agree.
    pub fn raw_entries(
        &self,
    ) -> impl Iterator<Item = (&[u8], usize, Instant)> + '_ {
        self.table
            .iter()
            .map(|s| (s.encoded(&self.slab), s.key_len(), s.updated()))
    }
}
