//! Bounded caches: the internal cache (this node's entries) and the
//! external cache (the peer's), each for conntracks and expectations.
//!
//! Owns: the hard capacity (`HashLimit`): when full, a new entry is refused
//! and counted (`add_fail`, `no space left in cache`); existing entries are
//! never touched by a refused insert, and the cache never grows past the
//! bound. Every entry remembers when it was inserted (`[active since]`)
//! and last updated (timeout estimation at commit, ALARM expiry). Pure:
//! time is a parameter.
//!
//! Memory: a slot ([`slot`], 16 bytes on every target) holds only where
//! the entry's compact encoding is ([`Stored`]; the wire's form, 23 bytes
//! for a routed UDP flow, 45 for a NATed TCP one, instead of the 288-byte
//! model value), the length of the key's encoding, two timestamps and a
//! resync's mark (what the kernel still holds, [`Cache::mark`]). The
//! encodings live in the cache's [`slab`] (fixed-size cells, no malloc
//! chunk per entry). The key is the encoding's prefix, so it is not
//! stored twice; lookups compare encoded keys, and the table hashes a
//! slot when it grows from those key bytes without decoding anything.
//! Reading an entry decodes it, which costs far less than the memory it
//! saves on a router.
//!
//! An expectation cache also finds its entries by master, and a conntrack
//! cache its zoned entries by tuple ([`groups`]).

mod groups;
mod read;
mod recency;
mod slab;
mod slot;
mod stored;

use std::hash::{BuildHasher, Hash, RandomState};
use std::time::Duration;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;

use self::groups::Groups;
pub use self::read::Copied;
pub use self::recency::ByRecency;
use self::slab::Slab;
use self::slot::{MAX_KEY_LEN, Slot};
use crate::time::Instant;

/// A value a [`Cache`] can hold in encoded form.
pub trait Stored: Sized {
    type Key: Copy + Eq;
    /// The largest encoded key.
    const MAX_KEY: usize;

    /// Appends the stored form, which must begin with the encoding of the
    /// value's key exactly as [`Stored::encode_key`] writes it (a
    /// prefix-free code, so "starts with" is key equality). Returns the
    /// length of that key encoding (the cache keeps it; finding it by
    /// decoding the key again cost more than the rest of an insert).
    fn encode(&self, out: &mut Vec<u8>) -> usize;
    fn encode_key(k: &Self::Key, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// The key and the length of its encoding at the start of `bytes`.
    fn decode_key(bytes: &[u8]) -> Option<(Self::Key, usize)>;

    /// What [`Cache::take_group`] takes together (an expectation's
    /// master and zone) and [`Cache::group_keys`] finds (a zoned
    /// conntrack's tuple). A part of the key, so an entry never changes
    /// group; `()` for values never grouped.
    type Group: Hash + Eq;
    /// The group of the entry whose key's encoding is `bytes` (exactly
    /// the key: no more). None, the default, for every entry: the cache
    /// keeps no group index.
    fn group(_bytes: &[u8]) -> Option<Self::Group> {
        None
    }
}

/// Counters in conntrackd's `-s` / `-s cache` layout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub add_ok: u64,
    pub add_fail: u64,
    /// Refused because the cache was full.
    pub add_fail_enospc: u64,
    pub upd_ok: u64,
    pub upd_fail: u64,
    pub upd_enoent: u64,
    pub del_ok: u64,
    pub del_fail: u64,
    pub del_enoent: u64,
}

/// One cached entry, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<V> {
    pub value: V,
    /// When it was inserted (reset by a NEW from the peer).
    pub since: Instant,
    pub updated: Instant,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
}

/// The cache is full: the entry was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A bounded map with conntrackd's counters.
#[derive(Debug, Clone)]
pub struct Cache<V: Stored> {
    table: HashTable<Slot>,
    /// The slots' encodings.
    slab: Slab,
    hasher: RandomState,
    limit: usize,
    /// Reused for encoding values on upsert.
    scratch: Vec<u8>,
    /// The entries by [`Stored::group`].
    groups: Groups,
    pub stats: CacheStats,
    _values: std::marker::PhantomData<V>,
}

/// The hash of a slot: of its key's encoding (read, not decoded: the
/// table rehashes every slot each time it grows).
fn slot_hash(hasher: &RandomState, slab: &Slab, s: &Slot) -> u64 {
    hasher.hash_one(s.key(slab))
}

impl<V: Stored> Cache<V> {
    /// A cache of at most `limit` entries. Memory is taken as entries
    /// arrive, never more than the bound allows.
    pub fn new(limit: usize) -> Self {
        Cache {
            table: HashTable::new(),
            slab: Slab::new(),
            hasher: RandomState::new(),
            limit,
            scratch: Vec::new(),
            groups: Groups::default(),
            stats: CacheStats::default(),
            _values: std::marker::PhantomData,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes the entries take: the slot table's allocation, the slab's
    /// blocks and the group index (what `-s cache` reports). The tables'
    /// own counts, not ones derived from their capacity: a removal that
    /// leaves a tombstone lowers the capacity, not the allocation.
    pub fn bytes(&self) -> usize {
        self.table.allocation_size()
            + self.slab.reserved_bytes()
            + self.groups.bytes()
    }

    fn key_bytes(k: &V::Key) -> Vec<u8> {
        let mut kb = Vec::with_capacity(V::MAX_KEY);
        V::encode_key(k, &mut kb);
        kb
    }

    fn find(&self, k: &V::Key) -> Option<&Slot> {
        let kb = Self::key_bytes(k);
        let h = self.hasher.hash_one(&kb[..]);
        self.table.find(h, |s| s.key(&self.slab) == &kb[..])
    }

    /// Marks or unmarks an entry (a resync's "the kernel still holds
    /// it"); false when it is not cached. Updates keep the mark; a new
    /// entry has none.
    pub fn mark(&mut self, k: &V::Key, on: bool) -> bool {
        let kb = Self::key_bytes(k);
        let h = self.hasher.hash_one(&kb[..]);
        let slab = &self.slab;
        match self.table.find_mut(h, |s| s.key(slab) == &kb[..]) {
            Some(s) => {
                s.set_mark(on);
                true
            }
            None => false,
        }
    }

    /// Clears every mark, in a pass over the slots (nothing decoded).
    pub fn clear_marks(&mut self) {
        for s in self.table.iter_mut() {
            s.set_mark(false);
        }
    }

    /// Removes the unmarked entries and clears the marks of the others;
    /// returns the keys removed. Only those are decoded: a resync that
    /// finds 200 000 entries in the kernel and nothing stale is one pass
    /// over the slots.
    pub fn remove_unmarked(&mut self) -> Vec<V::Key> {
        let mut removed = Vec::new();
        let before = self.table.len();
        let (slab, groups, hasher) =
            (&mut self.slab, &mut self.groups, &self.hasher);
        self.table.retain(|s| {
            if s.marked() {
                s.set_mark(false);
                return true;
            }
            if let Some((k, _)) = V::decode_key(s.encoded(slab)) {
                removed.push(k);
            }
            groups.remove::<V>(hasher, s.key(slab));
            slab.free(s.handle());
            false
        });
        self.stats.del_ok += (before - self.table.len()) as u64;
        removed
    }

    fn read(slab: &Slab, s: &Slot) -> Option<Entry<V>> {
        let value = V::decode(s.encoded(slab));
        debug_assert!(value.is_some(), "a cache slot does not decode");
        Some(Entry {
            value: value?,
            since: s.since(),
            updated: s.updated(),
        })
    }

    /// Inserts or replaces the entry with `v`'s key. `restart` resets the
    /// entry's `since` (a NEW from the peer, or a NEW event for a reused
    /// tuple) and counts the replacement as a deletion and a creation.
    ///
    /// # Errors
    /// [`Full`] when the entry is new and the cache holds `limit` entries.
    pub fn upsert(
        &mut self,
        v: &V,
        now: Instant,
        restart: bool,
    ) -> Result<Upsert, Full> {
        self.scratch.clear();
        let klen = v.encode(&mut self.scratch);
        self.store(klen, now, restart, |_, _| None)
    }

    /// [`Cache::upsert`] of `v` merged with the entry it replaces: when
    /// one is cached, `merge` gets it (decoded) and `v` to complete, and
    /// `v` is stored as it left it. One lookup, where a `get` before the
    /// upsert took two (the sender does this for every kernel event).
    /// `merge` must not change the key.
    ///
    /// # Errors
    /// [`Full`] when the entry is new and the cache holds `limit` entries.
    pub fn upsert_merged(
        &mut self,
        v: &mut V,
        now: Instant,
        restart: bool,
        merge: impl FnOnce(V, &mut V),
    ) -> Result<Upsert, Full> {
        self.scratch.clear();
        let klen = v.encode(&mut self.scratch);
        self.store(klen, now, restart, |old, out| {
            merge(V::decode(old)?, v);
            out.clear();
            Some(v.encode(out))
        })
    }

    /// Stores the encoding in `scratch` (its key `klen` bytes long).
    /// `remake` sees the cached entry's encoding first, when there is one,
    /// and may write a new encoding over `scratch` (returning its key's
    /// length, which must be the same; None: `scratch` is left as it was).
    fn store(
        &mut self,
        klen: usize,
        now: Instant,
        restart: bool,
        remake: impl FnOnce(&[u8], &mut Vec<u8>) -> Option<usize>,
    ) -> Result<Upsert, Full> {
        // Keys are far shorter (`Stored::MAX_KEY`): a longer one would be
        // a codec bug, refused rather than stored with a wrong length.
        let Some(kl) = u8::try_from(klen)
            .ok()
            .filter(|_| klen <= MAX_KEY_LEN && klen <= self.scratch.len())
        else {
            debug_assert!(false, "a {klen}-byte key");
            self.stats.add_fail += 1;
            return Err(Full);
        };
        let Cache {
            table,
            slab,
            hasher,
            scratch,
            groups,
            stats,
            limit,
            ..
        } = self;
        let h = hasher.hash_one(&scratch[..klen]);
        // Replaces a cached entry's encoding and times (one of the two
        // branches below runs it).
        let update = |s: &mut Slot,
                      slab: &mut Slab,
                      scratch: &mut Vec<u8>,
                      stats: &mut CacheStats| {
            // The entry found, the key's bytes in `scratch` are done
            // with: `remake` writes over them.
            if remake(s.encoded(slab), scratch).is_some_and(|k| k != klen) {
                debug_assert!(false, "a merge changed the key");
                stats.upd_fail += 1;
                return Err(Full);
            }
            if s.encoded(slab) != &scratch[..] {
                // Only when a class runs out of cell numbers (four
                // billion): the entry keeps its old state.
                let Some(moved) = slab.replace(s.handle(), scratch) else {
                    stats.upd_fail += 1;
                    return Err(Full);
                };
                s.replace(kl, moved);
            }
            s.set_updated(now);
            if restart {
                // conntrackd replaces on a NEW: `cache_del` of the old
                // object and `cache_add` of the new, counted as such in
                // `-s` (not as an update).
                s.set_since(now);
                stats.del_ok += 1;
                stats.add_ok += 1;
            } else {
                stats.upd_ok += 1;
            }
            Ok(Upsert::Updated)
        };
        if table.len() >= *limit {
            // Full: a lookup only. The entry API makes room for one more
            // slot before it looks, which doubled the table (4.5 MB more
            // at 229 376 entries) for an insert refused here, or for an
            // update, when HashLimit is what the table holds before it
            // grows.
            let found = {
                let (kb, slab) = (&scratch[..klen], &*slab);
                table.find_mut(h, |s| s.key(slab) == kb)
            };
            return match found {
                Some(s) => update(s, slab, scratch, stats),
                None => {
                    stats.add_fail += 1;
                    stats.add_fail_enospc += 1;
                    Err(Full)
                }
            };
        }
        let entry = {
            let (kb, slab) = (&scratch[..klen], &*slab);
            table.entry(
                h,
                |s| s.key(slab) == kb,
                |s| slot_hash(hasher, slab, s),
            )
        };
        match entry {
            TableEntry::Occupied(mut o) => {
                update(o.get_mut(), slab, scratch, stats)
            }
            TableEntry::Vacant(slot) => {
                let Some(handle) = slab.alloc(scratch) else {
                    stats.add_fail += 1;
                    stats.add_fail_enospc += 1;
                    return Err(Full);
                };
                slot.insert(Slot::holding(kl, handle, now));
                groups.add::<V>(hasher, &scratch[..klen], h);
                stats.add_ok += 1;
                Ok(Upsert::Created)
            }
        }
    }

    /// Removes an entry; counts a miss as `entry not found`.
    pub fn remove(&mut self, k: &V::Key) -> Option<V> {
        let found = self.take(k);
        if found.is_none() {
            self.stats.del_fail += 1;
            self.stats.del_enoent += 1;
        }
        found
    }

    /// Removes an entry if it is cached; a miss is no failure (a kernel
    /// DESTROY of a flow never cached, which conntrackd drops unseen).
    pub fn take(&mut self, k: &V::Key) -> Option<V> {
        let kb = Self::key_bytes(k);
        let h = self.hasher.hash_one(&kb[..]);
        let slab = &self.slab;
        let o = self.table.find_entry(h, |s| s.key(slab) == &kb[..]).ok()?;
        let (s, _) = o.remove();
        let value = Self::read(&self.slab, &s).map(|e| e.value);
        self.groups.remove::<V>(&self.hasher, &kb);
        self.slab.free(s.handle());
        self.stats.del_ok += 1;
        value
    }

    /// Empties the cache (`-f`) and gives its memory back. Each entry
    /// counts as a deletion, as conntrackd's flush deletes them one by
    /// one; the other counters stay.
    pub fn flush(&mut self) {
        self.stats.del_ok += self.table.len() as u64;
        self.table = HashTable::new();
        self.slab.clear();
        self.groups.clear();
        self.scratch = Vec::new();
    }

    /// Removes the entries not updated for `lifetime` (ALARM's
    /// `CacheTimeout`); returns how many. Each counts as a deletion, as
    /// conntrackd's expiry timer deletes.
    pub fn expire(&mut self, now: Instant, lifetime: Duration) -> usize {
        let before = self.table.len();
        let (slab, groups, hasher) =
            (&mut self.slab, &mut self.groups, &self.hasher);
        self.table.retain(|s| {
            let keep = now.since(s.updated()) <= lifetime;
            if !keep {
                groups.remove::<V>(hasher, s.key(slab));
                slab.free(s.handle());
            }
            keep
        });
        let expired = before - self.table.len();
        self.stats.del_ok += expired as u64;
        expired
    }
}

#[cfg(test)]
mod test;
#[cfg(test)]
mod test_groups;
