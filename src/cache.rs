//! Bounded caches: the internal cache (this node's entries) and the
//! external cache (the peer's), each for conntracks and expectations.
//!
//! Owns: the hard capacity (`HashLimit`): when full, a new entry is refused
//! and counted (`add_fail`, `no space left in cache`); existing entries are
//! never touched by a refused insert, and the cache never grows past the
//! bound. Every entry remembers when it was inserted (`[active since]`)
//! and last updated (timeout estimation at commit, ALARM expiry). Pure:
//! time is a parameter.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::time::Instant;

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

/// One cached entry.
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
pub struct Cache<K, V> {
    map: HashMap<K, Entry<V>>,
    limit: usize,
    pub stats: CacheStats,
}

impl<K: Eq + Hash + Clone, V> Cache<K, V> {
    /// A cache of at most `limit` entries. Memory is taken as entries
    /// arrive, never more than the bound allows.
    pub fn new(limit: usize) -> Self {
        Cache {
            map: HashMap::new(),
            limit,
            stats: CacheStats::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes the entries take at most (what `-s cache` reports).
    pub fn bytes(&self) -> usize {
        self.map.capacity()
            * (std::mem::size_of::<K>() + std::mem::size_of::<Entry<V>>() + 8)
    }

    pub fn get(&self, k: &K) -> Option<&Entry<V>> {
        self.map.get(k)
    }

    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    /// Inserts or replaces. `restart` resets the entry's `since` (a NEW
    /// from the peer, or a NEW event for a reused tuple).
    ///
    /// # Errors
    /// [`Full`] when the entry is new and the cache holds `limit` entries.
    pub fn upsert(
        &mut self,
        k: K,
        v: V,
        now: Instant,
        restart: bool,
    ) -> Result<Upsert, Full> {
        if let Some(e) = self.map.get_mut(&k) {
            e.value = v;
            e.updated = now;
            if restart {
                e.since = now;
            }
            self.stats.upd_ok += 1;
            return Ok(Upsert::Updated);
        }
        if self.map.len() >= self.limit {
            self.stats.add_fail += 1;
            self.stats.add_fail_enospc += 1;
            return Err(Full);
        }
        self.map.insert(
            k,
            Entry {
                value: v,
                since: now,
                updated: now,
            },
        );
        self.stats.add_ok += 1;
        Ok(Upsert::Created)
    }

    /// Removes an entry; counts a miss as `entry not found`.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        match self.map.remove(k) {
            Some(e) => {
                self.stats.del_ok += 1;
                Some(e.value)
            }
            None => {
                self.stats.del_fail += 1;
                self.stats.del_enoent += 1;
                None
            }
        }
    }

    /// Empties the cache (`-f`); counters stay.
    pub fn flush(&mut self) {
        self.map.clear();
        self.map.shrink_to_fit();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &Entry<V>)> {
        self.map.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    /// Removes the entries not updated for `lifetime` (ALARM's
    /// `CacheTimeout`); returns how many.
    pub fn expire(&mut self, now: Instant, lifetime: Duration) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| now.since(e.updated) <= lifetime);
        before - self.map.len()
    }

    /// Keeps only the entries `keep` accepts (purges); returns the removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|k, e| keep(k, &e.value));
        before - self.map.len()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn bounded_with_counters() {
        let t = Instant(0);
        let mut c: Cache<u32, u32> = Cache::new(3);
        for k in 0..5 {
            let r = c.upsert(k, k * 10, t, false);
            assert_eq!(r.is_ok(), k < 3);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(
            (c.stats.add_ok, c.stats.add_fail, c.stats.add_fail_enospc),
            (3, 2, 2)
        );
        // Updates of existing entries still work when full.
        assert_eq!(c.upsert(1, 99, Instant(5), false), Ok(Upsert::Updated));
        assert_eq!(c.get(&1).unwrap().value, 99);
        assert_eq!(c.get(&1).unwrap().since, t);
        assert_eq!(c.upsert(1, 98, Instant(7), true), Ok(Upsert::Updated));
        assert_eq!(c.get(&1).unwrap().since, Instant(7));
        // Refused inserts left the others intact.
        assert_eq!(c.get(&0).unwrap().value, 0);
        assert_eq!(c.remove(&0), Some(0));
        assert_eq!(c.remove(&0), None);
        assert_eq!((c.stats.del_ok, c.stats.del_enoent), (1, 1));
        assert!(c.upsert(7, 70, t, false).is_ok());
    }

    #[test]
    fn expiry_and_flush() {
        let mut c: Cache<u32, ()> = Cache::new(10);
        c.upsert(1, (), Instant(0), false).unwrap();
        c.upsert(2, (), Instant(5000), false).unwrap();
        assert_eq!(c.expire(Instant(8000), Duration::from_secs(5)), 1);
        assert!(c.contains(&2) && !c.contains(&1));
        c.flush();
        assert!(c.is_empty());
    }
}
