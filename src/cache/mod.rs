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
//! Memory: a slot holds only the entry's compact encoding ([`Stored`]; the
//! wire's form, about 30 bytes for a TCP flow instead of the 288-byte
//! model value) and two timestamps, one of which also holds the length
//! of the key's encoding. The key is the encoding's prefix, so it is not
//! stored twice; lookups compare encoded keys, and the table hashes a
//! slot when it grows from those key bytes without decoding anything.
//! Reading an entry decodes it, which costs far less than the memory it
//! saves on a router.

mod stored;

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;

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

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
}

/// The cache is full: the entry was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// One entry as held: its encoding and its times.
#[derive(Debug, Clone)]
struct Slot {
    /// The entry's encoding (key first).
    bytes: Box<[u8]>,
    /// When it was inserted (the low [`SINCE_BITS`] bits: milliseconds,
    /// two million years' worth) and the length of its key's encoding
    /// (the top byte), packed: a byte of its own would cost 8 bytes a
    /// slot in padding, or a larger allocation for the encoding.
    since_and_key_len: u64,
    updated: Instant,
}

const SINCE_BITS: u32 = 56;
const SINCE_MASK: u64 = (1 << SINCE_BITS) - 1;
/// The longest key encoding a slot can give the length of.
const MAX_KEY_LEN: usize = u8::MAX as usize;

fn pack(since: Instant, key_len: u8) -> u64 {
    (u64::from(key_len) << SINCE_BITS) | (since.0 & SINCE_MASK)
}

impl Slot {
    fn holding(key_len: u8, enc: &[u8], now: Instant) -> Slot {
        Slot {
            bytes: enc.into(),
            since_and_key_len: pack(now, key_len),
            updated: now,
        }
    }

    /// The entry's encoding (key first).
    fn encoded(&self) -> &[u8] {
        &self.bytes
    }

    fn key_len(&self) -> usize {
        (self.since_and_key_len >> SINCE_BITS) as usize
    }

    fn since(&self) -> Instant {
        Instant(self.since_and_key_len & SINCE_MASK)
    }

    fn set_since(&mut self, since: Instant) {
        self.since_and_key_len =
            (self.since_and_key_len & !SINCE_MASK) | (since.0 & SINCE_MASK);
    }

    /// A new encoding (whose key is the same).
    fn replace(&mut self, key_len: u8, enc: &[u8]) {
        self.bytes = enc.into();
        self.since_and_key_len = pack(self.since(), key_len);
    }

    /// The key's encoding.
    fn key(&self) -> &[u8] {
        self.bytes.get(..self.key_len()).unwrap_or_default()
    }
}

/// A bounded map with conntrackd's counters.
#[derive(Debug, Clone)]
pub struct Cache<V: Stored> {
    table: HashTable<Slot>,
    hasher: RandomState,
    limit: usize,
    /// Encoded bytes held by the slots (for `-s cache`).
    heap: usize,
    /// Reused for encoding values on upsert.
    scratch: Vec<u8>,
    pub stats: CacheStats,
    _values: std::marker::PhantomData<V>,
}

/// The hash of a slot: of its key's encoding (read, not decoded: the
/// table rehashes every slot each time it grows).
fn slot_hash(hasher: &RandomState, s: &Slot) -> u64 {
    hasher.hash_one(s.key())
}

impl<V: Stored> Cache<V> {
    /// A cache of at most `limit` entries. Memory is taken as entries
    /// arrive, never more than the bound allows.
    pub fn new(limit: usize) -> Self {
        Cache {
            table: HashTable::new(),
            hasher: RandomState::new(),
            limit,
            heap: 0,
            scratch: Vec::new(),
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

    /// Bytes the entries take: the slot table and the encodings (what
    /// `-s cache` reports).
    pub fn bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<Slot>() + 1) + self.heap
    }

    fn key_bytes(k: &V::Key) -> Vec<u8> {
        let mut kb = Vec::with_capacity(V::MAX_KEY);
        V::encode_key(k, &mut kb);
        kb
    }

    fn find(&self, k: &V::Key) -> Option<&Slot> {
        let kb = Self::key_bytes(k);
        let h = self.hasher.hash_one(&kb[..]);
        self.table.find(h, |s| s.key() == &kb[..])
    }

    fn read(s: &Slot) -> Option<Entry<V>> {
        let value = V::decode(s.encoded());
        debug_assert!(value.is_some(), "a cache slot does not decode");
        Some(Entry {
            value: value?,
            since: s.since(),
            updated: s.updated,
        })
    }

    pub fn get(&self, k: &V::Key) -> Option<Entry<V>> {
        self.find(k).and_then(Self::read)
    }

    /// The entry's encoding as stored (key first), without decoding it.
    pub fn get_encoded(&self, k: &V::Key) -> Option<&[u8]> {
        self.find(k).map(Slot::encoded)
    }

    pub fn contains(&self, k: &V::Key) -> bool {
        self.find(k).is_some()
    }

    /// Inserts or replaces the entry with `v`'s key. `restart` resets the
    /// entry's `since` (a NEW from the peer, or a NEW event for a reused
    /// tuple).
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
        let enc = &self.scratch[..];
        // Keys are far shorter (`Stored::MAX_KEY`): a longer one would be
        // a codec bug, refused rather than stored with a wrong length.
        let Some(kl) = u8::try_from(klen)
            .ok()
            .filter(|_| klen <= MAX_KEY_LEN && klen <= enc.len())
        else {
            debug_assert!(false, "a {klen}-byte key");
            self.stats.add_fail += 1;
            return Err(Full);
        };
        let kb = &enc[..klen];
        let hasher = &self.hasher;
        let h = hasher.hash_one(kb);
        let full = self.table.len() >= self.limit;
        match self
            .table
            .entry(h, |s| s.key() == kb, |s| slot_hash(hasher, s))
        {
            TableEntry::Occupied(mut o) => {
                let s = o.get_mut();
                if s.encoded() != enc {
                    self.heap = self.heap - s.bytes.len() + enc.len();
                    s.replace(kl, enc);
                }
                s.updated = now;
                if restart {
                    s.set_since(now);
                }
                self.stats.upd_ok += 1;
                Ok(Upsert::Updated)
            }
            TableEntry::Vacant(slot) => {
                if full {
                    self.stats.add_fail += 1;
                    self.stats.add_fail_enospc += 1;
                    return Err(Full);
                }
                slot.insert(Slot::holding(kl, enc, now));
                self.heap += enc.len();
                self.stats.add_ok += 1;
                Ok(Upsert::Created)
            }
        }
    }

    /// Removes an entry; counts a miss as `entry not found`.
    pub fn remove(&mut self, k: &V::Key) -> Option<V> {
        let kb = Self::key_bytes(k);
        let h = self.hasher.hash_one(&kb[..]);
        match self.table.find_entry(h, |s| s.key() == &kb[..]) {
            Ok(o) => {
                let (s, _) = o.remove();
                self.heap -= s.bytes.len();
                self.stats.del_ok += 1;
                Self::read(&s).map(|e| e.value)
            }
            Err(_) => {
                self.stats.del_fail += 1;
                self.stats.del_enoent += 1;
                None
            }
        }
    }

    /// Empties the cache (`-f`) and gives its memory back; counters stay.
    pub fn flush(&mut self) {
        self.table = HashTable::new();
        self.heap = 0;
        self.scratch = Vec::new();
    }

    /// Every entry, decoded.
    pub fn iter(&self) -> impl Iterator<Item = Entry<V>> + '_ {
        self.table.iter().filter_map(Self::read)
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
                && heap.peek().is_some_and(|Reverse(p)| *p >= (s.updated, i))
            {
                continue;
            }
            heap.push(Reverse((s.updated, i)));
            if heap.len() > n {
                heap.pop();
            }
        }
        let mut wanted: Vec<usize> =
            heap.into_iter().map(|Reverse((_, i))| i).collect();
        wanted.sort_unstable();
        let mut out: Vec<Entry<V>> = Vec::with_capacity(wanted.len());
        let mut next = wanted.iter().peekable();
        for (i, s) in self.table.iter().enumerate() {
            if next.peek() == Some(&&i) {
                next.next();
                out.extend(Self::read(s));
            }
        }
        out.sort_by_key(|e| Reverse(e.updated));
        out
    }

    /// Every entry, copied in its stored form.
    pub fn copy_out(&self) -> Vec<Copied> {
        self.table
            .iter()
            .map(|s| Copied {
                bytes: s.bytes.clone(),
                since: s.since(),
                updated: s.updated,
            })
            .collect()
    }

    /// Every key, decoded.
    pub fn keys(&self) -> impl Iterator<Item = V::Key> + '_ {
        self.table
            .iter()
            .filter_map(|s| V::decode_key(s.encoded()).map(|(k, _)| k))
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
            .map(|s| (s.encoded(), s.key_len(), s.updated))
    }

    /// Removes the entries not updated for `lifetime` (ALARM's
    /// `CacheTimeout`); returns how many.
    pub fn expire(&mut self, now: Instant, lifetime: Duration) -> usize {
        let before = self.table.len();
        let mut freed = 0;
        self.table.retain(|s| {
            let keep = now.since(s.updated) <= lifetime;
            if !keep {
                freed += s.bytes.len();
            }
            keep
        });
        self.heap -= freed;
        before - self.table.len()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A key (one varint-free byte) and a payload of any length.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Item(u8, Vec<u8>);

    impl Stored for Item {
        type Key = u8;
        const MAX_KEY: usize = 1;
        fn encode(&self, out: &mut Vec<u8>) -> usize {
            out.push(self.0);
            out.extend_from_slice(&self.1);
            1
        }
        fn encode_key(k: &u8, out: &mut Vec<u8>) {
            out.push(*k);
        }
        fn decode(b: &[u8]) -> Option<Item> {
            Some(Item(*b.first()?, b[1..].to_vec()))
        }
        fn decode_key(b: &[u8]) -> Option<(u8, usize)> {
            KEY_DECODES.with(|n| n.set(n.get() + 1));
            Some((*b.first()?, 1))
        }
    }

    thread_local! {
        static KEY_DECODES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn item(k: u8, payload: &[u8]) -> Item {
        Item(k, payload.to_vec())
    }

    #[test]
    fn bounded_with_counters() {
        let t = Instant(0);
        let mut c: Cache<Item> = Cache::new(3);
        for k in 0..5 {
            let r = c.upsert(&item(k, &[k * 10]), t, false);
            assert_eq!(r.is_ok(), k < 3);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(
            (c.stats.add_ok, c.stats.add_fail, c.stats.add_fail_enospc),
            (3, 2, 2)
        );
        // Updates of existing entries still work when full.
        assert_eq!(
            c.upsert(&item(1, &[99]), Instant(5), false),
            Ok(Upsert::Updated)
        );
        assert_eq!(c.get(&1).unwrap().value, item(1, &[99]));
        assert_eq!(c.get(&1).unwrap().since, t);
        assert_eq!(c.get(&1).unwrap().updated, Instant(5));
        assert_eq!(
            c.upsert(&item(1, &[98]), Instant(7), true),
            Ok(Upsert::Updated)
        );
        assert_eq!(c.get(&1).unwrap().since, Instant(7));
        // Refused inserts left the others intact.
        assert_eq!(c.get(&0).unwrap().value, item(0, &[0]));
        assert_eq!(c.get(&3), None);
        assert_eq!(c.remove(&0), Some(item(0, &[0])));
        assert_eq!(c.remove(&0), None);
        assert_eq!((c.stats.del_ok, c.stats.del_enoent), (1, 1));
        assert!(c.upsert(&item(7, &[70]), t, false).is_ok());
        let mut keys: Vec<u8> = c.keys().collect();
        keys.sort_unstable();
        assert_eq!(keys, vec![1, 2, 7]);
        let mut raw: Vec<(Vec<u8>, usize)> =
            c.raw_entries().map(|(b, n, _)| (b.to_vec(), n)).collect();
        raw.sort();
        assert_eq!(
            raw,
            vec![(vec![1, 98], 1), (vec![2, 20], 1), (vec![7, 70], 1)]
        );
    }

    #[test]
    fn the_most_recent_are_picked_without_the_rest() {
        let mut c: Cache<Item> = Cache::new(1000);
        // Updated at 7 * k mod 101 ms: no order in the table.
        for k in 0..100u8 {
            let at = Instant(u64::from(k) * 7 % 101);
            c.upsert(&item(k, &[k]), at, false).unwrap();
        }
        let recent = c.most_recent(5);
        let times: Vec<u64> = recent.iter().map(|e| e.updated.0).collect();
        assert_eq!(times, vec![100, 99, 98, 97, 96]);
        for e in &recent {
            assert_eq!(u64::from(e.value.0) * 7 % 101, e.updated.0);
        }
        assert_eq!(c.most_recent(1000).len(), 100);
        assert!(c.most_recent(0).is_empty());
    }

    #[test]
    fn heap_accounting_follows_every_change() {
        let t = Instant(0);
        let mut c: Cache<Item> = Cache::new(100);
        // The key's length rides in a timestamp's top byte: a slot is an
        // encoding's pointer and length and two timestamps (32 bytes on a
        // 64-bit router, 24 on a 32-bit one).
        let words = 2 * std::mem::size_of::<usize>();
        assert_eq!(std::mem::size_of::<Slot>(), words + 16);
        let table = |c: &Cache<Item>| {
            c.table.capacity() * (std::mem::size_of::<Slot>() + 1)
        };
        c.upsert(&item(1, &[0; 10]), t, false).unwrap();
        c.upsert(&item(2, &[0; 20]), t, false).unwrap();
        assert_eq!(c.bytes() - table(&c), 11 + 21);
        // A longer and a shorter value for the same key.
        c.upsert(&item(1, &[0; 40]), t, false).unwrap();
        assert_eq!(c.bytes() - table(&c), 41 + 21);
        c.upsert(&item(1, &[0; 3]), t, false).unwrap();
        assert_eq!(c.bytes() - table(&c), 4 + 21);
        assert_eq!(c.get(&1).unwrap().value, item(1, &[0; 3]));
        c.remove(&2);
        assert_eq!(c.bytes() - table(&c), 4);
        c.upsert(&item(3, &[]), Instant(10_000), false).unwrap();
        assert_eq!(c.expire(Instant(10_000), Duration::from_secs(5)), 1);
        assert_eq!(c.bytes() - table(&c), 1);
        c.flush();
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn many_entries_survive_growth() {
        // Resizing rehashes slots from their stored key bytes.
        KEY_DECODES.with(|n| n.set(0));
        let mut c: Cache<Item> = Cache::new(10_000);
        for k in 0..=255u8 {
            c.upsert(&item(k, &[k, k]), Instant(u64::from(k)), false)
                .unwrap();
        }
        assert_eq!(c.len(), 256);
        // Neither an upsert (the encoding gives its key's length) nor
        // growing the table (several times on the way to 256) decoded a
        // key.
        assert_eq!(KEY_DECODES.with(|n| n.get()), 0);
        for k in 0..=255u8 {
            let e = c.get(&k).unwrap();
            assert_eq!(e.value, item(k, &[k, k]));
            assert_eq!(e.since, Instant(u64::from(k)));
        }
    }

    #[test]
    fn expiry_and_flush() {
        let mut c: Cache<Item> = Cache::new(10);
        c.upsert(&item(1, &[]), Instant(0), false).unwrap();
        c.upsert(&item(2, &[]), Instant(5000), false).unwrap();
        assert_eq!(c.expire(Instant(8000), Duration::from_secs(5)), 1);
        assert!(c.contains(&2) && !c.contains(&1));
        c.flush();
        assert!(c.is_empty());
    }
}
