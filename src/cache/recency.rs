//! A cache's entries as they were at one moment, most recently updated
//! first, in their stored form: what a large commit walks a batch at a
//! time while the cache goes on changing (the loop decodes only the batch
//! it plans; a copy costs the compact encoding, about 45 bytes an entry,
//! not the 288-byte decoded value).
//!
//! Positions are fixed once taken, so a batch's planner can tell whether
//! an entry (a RELATED flow's master) came in an earlier batch or is yet
//! to come: [`ByRecency::position`] finds it by key.

use std::cmp::Reverse;
use std::hash::{BuildHasher, RandomState};
use std::marker::PhantomData;

use hashbrown::HashTable;

use super::{Cache, Stored};
use crate::time::Instant;

/// Where one entry lies in the copy.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: u32,
    key_len: u16,
    updated: Instant,
}

/// The entries, most recent first (see the module's header).
#[derive(Debug)]
pub struct ByRecency<V> {
    bytes: Vec<u8>,
    spans: Vec<Span>,
    /// The first position no batch has taken.
    next: usize,
    /// Positions by the hash of their key's encoding, built on the first
    /// lookup (a commit without RELATED flows never needs it).
    index: Option<(RandomState, HashTable<usize>)>,
    _values: PhantomData<fn() -> V>,
}

impl<V: Stored> Cache<V> {
    /// Every entry as it is now, most recently updated first (equally
    /// recent ones in no set order).
    pub fn by_recency(&self) -> ByRecency<V> {
        // Copied in the slab's memory order (each read in no useful order
        // was a cache miss: 30 ms for 100 000 on the bench machine), then
        // the small spans are sorted by recency.
        let mut order: Vec<(u64, &super::Slot)> = self
            .table
            .iter()
            .map(|s| (s.handle().memory_order(), s))
            .collect();
        order.sort_unstable_by_key(|&(at, _)| at);
        let total = order.iter().map(|(_, s)| s.handle().len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(order.len());
        for (_, s) in order {
            let encoded = s.encoded(&self.slab);
            spans.push(Span {
                start: bytes.len(),
                // Both bounded by the slot's fields (9 bits, 64 bytes).
                len: u32::try_from(encoded.len()).unwrap_or(u32::MAX),
                key_len: u16::try_from(s.key_len()).unwrap_or(u16::MAX),
                updated: s.updated(),
            });
            bytes.extend_from_slice(encoded);
        }
        spans.sort_unstable_by_key(|s| Reverse(s.updated));
        ByRecency {
            bytes,
            spans,
            next: 0,
            index: None,
            _values: PhantomData,
        }
    }
}

impl<V: Stored> ByRecency<V> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Entries no batch has taken yet.
    pub fn remaining(&self) -> usize {
        self.spans.len() - self.next
    }

    /// Positions below this one have been taken.
    pub fn taken(&self) -> usize {
        self.next
    }

    /// The next entry not taken yet: its position, the entry and when it
    /// was last updated.
    pub fn next_entry(&mut self) -> Option<(usize, V, Instant)> {
        while self.next < self.spans.len() {
            let pos = self.next;
            self.next += 1;
            // A copy of a cache's slots always decodes; were one not to,
            // it is passed over rather than ending the walk.
            if let Some((value, updated)) = self.get(pos) {
                return Some((pos, value, updated));
            }
        }
        None
    }

    fn encoded(&self, pos: usize) -> &[u8] {
        let s = self.spans[pos];
        &self.bytes[s.start..s.start + s.len as usize]
    }

    fn key_bytes(&self, pos: usize) -> &[u8] {
        let key_len = usize::from(self.spans[pos].key_len);
        &self.encoded(pos)[..key_len]
    }

    /// The entry at `pos` and when it was last updated (None past the
    /// end).
    pub fn get(&self, pos: usize) -> Option<(V, Instant)> {
        let span = self.spans.get(pos)?;
        Some((V::decode(self.encoded(pos))?, span.updated))
    }

    /// Where the entry with this key lies (None: it was not cached when
    /// the copy was taken).
    pub fn position(&mut self, key: &V::Key) -> Option<usize> {
        let kb = Cache::<V>::key_bytes(key);
        if self.index.is_none() {
            let hasher = RandomState::new();
            let mut table = HashTable::with_capacity(self.spans.len());
            for pos in 0..self.spans.len() {
                let h = hasher.hash_one(self.key_bytes(pos));
                table.insert_unique(h, pos, |&p| {
                    hasher.hash_one(self.key_bytes(p))
                });
            }
            self.index = Some((hasher, table));
        }
        let (hasher, table) = self.index.as_ref()?;
        let h = hasher.hash_one(&kb[..]);
        table.find(h, |&p| self.key_bytes(p) == &kb[..]).copied()
    }
}
