//! Entries found by a part of their key: an expectation cache's entries
//! by their master (tuple and zone), so that a master's end takes its
//! expectations without a walk over every key; a conntrack cache's
//! entries outside zone 0 by their tuple, so that an expectation, which
//! the kernel reports without its master's zone, finds its master.
//!
//! Why: each conntrack DESTROY (and each peer's DEL of one) looked for
//! its master's expectations by decoding every cached expectation's key:
//! 100 000 flows expiring with 2 000 expectations cached took 17 s of the
//! daemon's one thread. With the index, a master without expectations
//! costs one lookup, and one with them a lookup per expectation.
//!
//! Owns: [`Groups`], a multiset of (group hash, key hash) pairs, one per
//! entry whose [`Stored::group`] is some, kept in step with the table by
//! every path that adds or removes an entry ([`Cache`]'s upsert, take,
//! remove, flush, expiry, resync sweep and [`Cache::take_group`]; a full
//! cache refuses, it never evicts). Hashes are the cache's own (SipHash,
//! random keys): a collision only makes a lookup check an entry more, as
//! each candidate is checked against its key's bytes and its group.
//!
//! Memory: 16 bytes and a control byte a pair, in a table at most 7/8
//! full (about 19 bytes an expectation or zoned conntrack, up to twice
//! that just after the table grew); nothing for entries without a group
//! (conntracks in zone 0).

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::{Cache, Stored};

/// (group hash, key hash) of each grouped entry.
#[derive(Debug, Clone, Default)]
pub(super) struct Groups {
    pairs: HashTable<(u64, u64)>,
}

impl Groups {
    /// Counts the entry whose key is `key` (its encoding, or the whole
    /// entry's) and hashes to `kh`, if it has a group.
    pub(super) fn add<V: Stored>(
        &mut self,
        h: &RandomState,
        key: &[u8],
        kh: u64,
    ) {
        if let Some(g) = V::group(key) {
            let gh = h.hash_one(&g);
            self.pairs.insert_unique(gh, (gh, kh), |p| p.0);
        }
    }

    /// Forgets one entry [`Groups::add`] counted (hashed only when it
    /// has a group: a conntrack cache's removals pay nothing).
    pub(super) fn remove<V: Stored>(&mut self, h: &RandomState, key: &[u8]) {
        if let Some(g) = V::group(key) {
            self.forget(h.hash_one(&g), h.hash_one(key));
        }
    }

    fn forget(&mut self, gh: u64, kh: u64) {
        let found = self.pairs.find_entry(gh, |p| *p == (gh, kh));
        debug_assert!(found.is_ok(), "an entry the group index missed");
        if let Ok(o) = found {
            o.remove();
        }
    }

    pub(super) fn clear(&mut self) {
        self.pairs = HashTable::new();
    }

    pub(super) fn bytes(&self) -> usize {
        self.pairs.allocation_size()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.pairs.len()
    }

    #[cfg(test)]
    pub(super) fn pairs(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<_> = self.pairs.iter().copied().collect();
        v.sort_unstable();
        v
    }
}

impl<V: Stored> Cache<V> {
    /// Removes every entry of group `g` (an expectation cache: the
    /// master's expectations) and returns their keys; each counts as a
    /// deletion. Costs a lookup, and one more an entry of the group.
    pub fn take_group(&mut self, g: &V::Group) -> Vec<V::Key> {
        let Some((gh, khs)) = self.key_hashes_of(g) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let Cache {
            table,
            slab,
            hasher,
            groups,
            stats,
            ..
        } = self;
        for kh in khs {
            // Those of `g` among the entries whose key hashes to `kh`
            // (another group's may share either hash).
            while let Ok(o) = table.find_entry(kh, |s| {
                hasher.hash_one(s.key(slab)) == kh
                    && V::group(s.key(slab)).as_ref() == Some(g)
            }) {
                let (s, _) = o.remove();
                if let Some((k, _)) = V::decode_key(s.encoded(slab)) {
                    taken.push(k);
                }
                slab.free(s.handle());
                groups.forget(gh, kh);
                stats.del_ok += 1;
            }
        }
        taken
    }

    /// The keys of group `g`'s entries (a tuple's zoned conntracks),
    /// left in place. Costs nothing while no entry has a group.
    pub fn group_keys(&self, g: &V::Group) -> Vec<V::Key> {
        let Some((_, khs)) = self.key_hashes_of(g) else {
            return Vec::new();
        };
        let (table, slab, hasher) = (&self.table, &self.slab, &self.hasher);
        khs.into_iter()
            .flat_map(|kh| {
                table.iter_hash(kh).filter_map(move |s| {
                    let key = s.key(slab);
                    let ours = hasher.hash_one(key) == kh
                        && V::group(key).as_ref() == Some(g);
                    ours.then(|| V::decode_key(key).map(|(k, _)| k)).flatten()
                })
            })
            .collect()
    }

    /// Group `g`'s hash and the distinct key hashes of its entries; None
    /// when it has none. No index (no expectation cached, no zoned
    /// conntrack: most routers) costs not even a hash.
    fn key_hashes_of(&self, g: &V::Group) -> Option<(u64, Vec<u64>)> {
        if self.groups.pairs.is_empty() {
            return None;
        }
        let gh = self.hasher.hash_one(g);
        let mut khs: Vec<u64> = self
            .groups
            .pairs
            .iter_hash(gh)
            .filter(|p| p.0 == gh)
            .map(|p| p.1)
            .collect();
        khs.sort_unstable();
        khs.dedup();
        (!khs.is_empty()).then_some((gh, khs))
    }

    /// Whether the group index holds exactly one pair for each grouped
    /// entry (what every path that changes the table must keep).
    #[cfg(test)]
    pub(super) fn groups_in_step(&self) -> bool {
        let mut want: Vec<(u64, u64)> = self
            .table
            .iter()
            .filter_map(|s| {
                let g = V::group(s.key(&self.slab))?;
                let kh = self.hasher.hash_one(s.key(&self.slab));
                Some((self.hasher.hash_one(&g), kh))
            })
            .collect();
        want.sort_unstable();
        want == self.groups.pairs()
    }
}
