use super::*;

/// A key (one varint-free byte) and a payload of any length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item(u8, Vec<u8>);

impl Stored for Item {
    type Key = u8;
    type Group = ();
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
    let t = Instant::from_millis(0);
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
        c.upsert(&item(1, &[99]), Instant::from_millis(5), false),
        Ok(Upsert::Updated)
    );
    assert_eq!(c.get(&1).unwrap().value, item(1, &[99]));
    assert_eq!(c.get(&1).unwrap().since, t);
    assert_eq!(c.get(&1).unwrap().updated, Instant::from_millis(5));
    assert_eq!(
        c.upsert(&item(1, &[98]), Instant::from_millis(7), true),
        Ok(Upsert::Updated)
    );
    assert_eq!(c.get(&1).unwrap().since, Instant::from_millis(7));
    // Refused inserts left the others intact.
    assert_eq!(c.get(&0).unwrap().value, item(0, &[0]));
    assert_eq!(c.get(&3), None);
    assert_eq!(c.remove(&0), Some(item(0, &[0])));
    assert_eq!(c.remove(&0), None);
    // One removal, and the NEW that replaced key 1 (conntrackd deletes
    // and inserts).
    assert_eq!((c.stats.del_ok, c.stats.del_enoent), (2, 1));
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
        let at = Instant::from_millis(u64::from(k) * 7 % 101);
        c.upsert(&item(k, &[k]), at, false).unwrap();
    }
    let recent = c.most_recent(5);
    let times: Vec<u64> = recent.iter().map(|e| e.updated.millis()).collect();
    assert_eq!(times, vec![100, 99, 98, 97, 96]);
    for e in &recent {
        assert_eq!(u64::from(e.value.0) * 7 % 101, e.updated.millis());
    }
    assert_eq!(c.most_recent(1000).len(), 100);
    assert!(c.most_recent(0).is_empty());
}

#[test]
fn heap_accounting_follows_every_change() {
    let t = Instant::from_millis(0);
    let mut c: Cache<Item> = Cache::new(100);
    // The encoding is in the slab, and a slot packs its cell and length,
    // the key's length and two timestamps: 16 bytes on a 64-bit router
    // and on a 32-bit one (MIPS, ARMv7: cross-ci).
    assert_eq!(std::mem::size_of::<Slot>(), 16);
    // Memory is taken as entries arrive: none for an empty cache.
    let empty = c.bytes();
    assert_eq!(empty, 0);
    c.upsert(&item(1, &[0; 10]), t, false).unwrap();
    c.upsert(&item(2, &[0; 20]), t, false).unwrap();
    assert_eq!(c.slab.live_bytes(), 11 + 21);
    // A longer and a shorter value for the same key (other classes).
    c.upsert(&item(1, &[0; 40]), t, false).unwrap();
    assert_eq!(c.slab.live_bytes(), 41 + 21);
    c.upsert(&item(1, &[0; 3]), t, false).unwrap();
    assert_eq!(c.slab.live_bytes(), 4 + 21);
    assert_eq!(c.get(&1).unwrap().value, item(1, &[0; 3]));
    assert_eq!(c.get(&2).unwrap().value, item(2, &[0; 20]));
    c.remove(&2);
    assert_eq!(c.slab.live_bytes(), 4);
    c.upsert(&item(3, &[]), Instant::from_millis(10_000), false)
        .unwrap();
    assert_eq!(
        c.expire(Instant::from_millis(10_000), Duration::from_secs(5)),
        1
    );
    assert_eq!(c.slab.live_bytes(), 1);
    assert!(c.bytes() > empty);
    // Flushing gives the table and every block back.
    c.flush();
    assert_eq!(c.slab.live_bytes(), 0);
    assert_eq!(c.bytes(), empty);
}

#[test]
fn the_table_is_counted_by_its_allocation_which_removals_keep() {
    let mut c: Cache<Item> = Cache::new(1000);
    let table = |c: &Cache<Item>| c.bytes() - c.slab.reserved_bytes();
    assert_eq!(table(&c), 0);
    for k in 0..=255u8 {
        c.upsert(&item(k, &[]), Instant::from_millis(0), false)
            .unwrap();
    }
    // 256 slots: 512 buckets (hashbrown fills at most 7/8 of a power of
    // two), each a slot and a control byte.
    let full = table(&c);
    let per_bucket = std::mem::size_of::<Slot>() + 1;
    assert!(
        (512 * per_bucket..1024 * per_bucket).contains(&full),
        "{full}"
    );
    // Removals leave the allocation (and may leave tombstones, which
    // lower the table's capacity: bytes must not follow it).
    for k in 0..=200u8 {
        assert!(c.remove(&k).is_some());
    }
    assert_eq!(table(&c), full);
}

#[test]
fn many_entries_survive_growth() {
    // Resizing rehashes slots from their stored key bytes.
    KEY_DECODES.with(|n| n.set(0));
    let mut c: Cache<Item> = Cache::new(10_000);
    for k in 0..=255u8 {
        c.upsert(&item(k, &[k, k]), Instant::from_millis(u64::from(k)), false)
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
        assert_eq!(e.since, Instant::from_millis(u64::from(k)));
    }
}

#[test]
fn expiry_and_flush() {
    let mut c: Cache<Item> = Cache::new(10);
    c.upsert(&item(1, &[]), Instant::from_millis(0), false)
        .unwrap();
    c.upsert(&item(2, &[]), Instant::from_millis(5000), false)
        .unwrap();
    assert_eq!(
        c.expire(Instant::from_millis(8000), Duration::from_secs(5)),
        1
    );
    assert!(c.contains(&2) && !c.contains(&1));
    // An expired entry is a deletion in -s, as conntrackd's timer counts
    // it (ALARM's external cache: created 2, destroyed 1, active 1).
    assert_eq!((c.stats.add_ok, c.stats.del_ok, c.len()), (2, 1, 1));
    // So is every flushed one (-f, -t): conntrackd's flush deletes each.
    c.flush();
    assert!(c.is_empty());
    assert_eq!(c.stats.del_ok, 2);
}

/// A resync's sweep: the unmarked entries go (only their keys are
/// decoded, and their memory is given back: the odd ones are the only
/// entries of their size class), the marked stay with their marks
/// cleared; an update keeps a mark and a new entry has none.
#[test]
fn the_sweep_removes_the_unmarked_and_clears_the_marks() {
    let mut c: Cache<Item> = Cache::new(100);
    for k in 0..50 {
        let len = if k % 2 == 1 { 40 } else { 20 };
        c.upsert(&item(k, &vec![k; len]), Instant::from_millis(0), false)
            .unwrap();
    }
    for k in (0..50).step_by(2) {
        assert!(c.mark(&k, true));
    }
    assert!(!c.mark(&200, true), "not cached");
    // Unmarked again (a DESTROY our own injection caused).
    assert!(c.mark(&48, false));
    // An update keeps the mark.
    c.upsert(&item(2, &[9; 300]), Instant::from_millis(1), false)
        .unwrap();
    let bytes = c.bytes();
    let dels = c.stats.del_ok;
    KEY_DECODES.with(|n| n.set(0));
    let mut removed = c.remove_unmarked();
    removed.sort_unstable();
    let odd: Vec<u8> = (1..50).step_by(2).chain([48]).collect();
    let mut want = odd.clone();
    want.sort_unstable();
    assert_eq!(removed, want);
    assert_eq!(
        KEY_DECODES.with(|n| n.get()),
        want.len(),
        "only those decoded"
    );
    assert_eq!(c.stats.del_ok - dels, want.len() as u64);
    assert_eq!(c.len(), 24);
    assert!(c.bytes() < bytes, "{} then {}", bytes, c.bytes());
    assert_eq!(c.get(&2).unwrap().value, item(2, &[9; 300]));
    // The marks went with the sweep: the next one takes everything.
    assert_eq!(c.remove_unmarked().len(), 24);
    // clear_marks alone removes nothing.
    c.upsert(&item(1, &[]), Instant::from_millis(2), false)
        .unwrap();
    assert!(c.mark(&1, true));
    c.clear_marks();
    assert_eq!(c.len(), 1);
    assert_eq!(c.remove_unmarked(), vec![1]);
}

/// A copy by recency lists every entry most recent first, as it was when
/// taken: later changes to the cache do not reach it, and it finds an
/// entry's position by key (none for one that came after).
#[test]
fn a_copy_by_recency_is_ordered_and_keeps_what_was_there() {
    let mut c: Cache<Item> = Cache::new(100);
    // Updated at scattered times; key k at (k * 7) % 50 ms.
    for k in 0..50u8 {
        let at = Instant::from_millis(u64::from(k) * 7 % 50);
        c.upsert(&item(k, &[k; 3]), at, true).unwrap();
    }
    let mut copy = c.by_recency();
    c.upsert(&item(3, &[99]), Instant::from_millis(1000), false)
        .unwrap();
    c.remove(&4);
    c.upsert(&item(77, &[1]), Instant::from_millis(1001), true)
        .unwrap();
    assert_eq!((copy.len(), copy.remaining()), (50, 50));
    let mut walked = Vec::new();
    while let Some((pos, value, updated)) = copy.next_entry() {
        assert_eq!(pos, walked.len());
        assert_eq!(copy.taken(), pos + 1);
        assert_eq!(value, item(value.0, &[value.0; 3]), "as it was");
        walked.push((updated, value.0));
    }
    assert_eq!(copy.remaining(), 0);
    let mut want: Vec<(Instant, u8)> = (0..50u8)
        .map(|k| (Instant::from_millis(u64::from(k) * 7 % 50), k))
        .collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(walked, want, "most recent first, 3 and 4 as they were");
    for (pos, (_, k)) in walked.iter().enumerate() {
        assert_eq!(copy.position(k), Some(pos));
        assert_eq!(copy.get(pos).map(|(v, _)| v.0), Some(*k));
    }
    assert_eq!(copy.position(&77), None, "came after the copy");
    assert!(copy.get(50).is_none());
}

#[test]
fn an_upsert_merged_completes_the_value_from_the_cached_one() {
    let (t0, t1) = (Instant::from_millis(0), Instant::from_millis(5));
    let mut c: Cache<Item> = Cache::new(2);
    // A new entry: nothing to merge with.
    let mut v = item(1, b"ab");
    let r = c.upsert_merged(&mut v, t0, true, |_, _| panic!("nothing cached"));
    assert_eq!(r, Ok(Upsert::Created));
    // An update that lacks the payload keeps the cached one's (what the
    // sender does with the fields a kernel event leaves out).
    let mut v = item(1, b"");
    let r = c.upsert_merged(&mut v, t1, false, |old, new| {
        assert_eq!(old, item(1, b"ab"));
        if new.1.is_empty() {
            new.1 = old.1;
        }
    });
    assert_eq!(r, Ok(Upsert::Updated));
    assert_eq!(v, item(1, b"ab"), "the value as stored");
    let e = c.get(&1).unwrap();
    assert_eq!((e.value, e.since, e.updated), (item(1, b"ab"), t0, t1));
    // A merge that makes it longer is stored whole.
    let mut v = item(1, b"c");
    c.upsert_merged(&mut v, t1, false, |old, new| new.1.extend(old.1))
        .unwrap();
    assert_eq!(c.get(&1).unwrap().value, item(1, b"cab"));
    // Full: a new key is refused, counted, and nothing merged.
    c.upsert(&item(2, b"x"), t0, true).unwrap();
    let mut v = item(3, b"y");
    let r = c.upsert_merged(&mut v, t1, true, |_, _| panic!("not cached"));
    assert_eq!(r, Err(Full));
    assert_eq!((c.len(), c.stats.add_fail_enospc), (2, 1));
    assert_eq!(c.stats.upd_ok, 2);
}

/// A NEW for a cached key (`restart`) replaces the entry, and conntrackd
/// counts that as it does it: a deletion and a creation (its external
/// cache's NEW and its internal cache's NEW event `cache_del` the old
/// object and `cache_add` a new one), not an update; the entry's count
/// stays.
#[test]
fn a_new_that_replaces_counts_a_deletion_and_a_creation() {
    let (t0, t1) = (Instant::from_millis(0), Instant::from_millis(5));
    let mut c: Cache<Item> = Cache::new(1);
    c.upsert(&item(1, b"a"), t0, true).unwrap();
    // Full, yet the replacing NEW is stored (conntrackd frees first).
    assert_eq!(c.upsert(&item(1, b"b"), t1, true), Ok(Upsert::Updated));
    assert_eq!(c.get(&1).unwrap().value, item(1, b"b"));
    let st = c.stats;
    assert_eq!((st.add_ok, st.del_ok, st.upd_ok), (2, 1, 0));
    // An UPDATE is an update.
    c.upsert(&item(1, b"c"), t1, false).unwrap();
    let st = c.stats;
    assert_eq!((st.add_ok, st.del_ok, st.upd_ok), (2, 1, 1));
    assert_eq!(st.add_ok - st.del_ok, c.len() as u64);
}

/// A four-byte key alone: caches of more than 256 entries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wide(u32);

impl Stored for Wide {
    type Key = u32;
    type Group = ();
    const MAX_KEY: usize = 4;
    fn encode(&self, out: &mut Vec<u8>) -> usize {
        out.extend_from_slice(&self.0.to_le_bytes());
        4
    }
    fn encode_key(k: &u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&k.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Option<Wide> {
        Some(Wide(u32::from_le_bytes(*b.first_chunk::<4>()?)))
    }
    fn decode_key(b: &[u8]) -> Option<(u32, usize)> {
        Some((u32::from_le_bytes(*b.first_chunk::<4>()?), 4))
    }
}

#[test]
fn a_refused_insert_does_not_grow_the_table() {
    // A HashLimit equal to what the table holds before it grows (7/8 of
    // its buckets, or 7 of 8): the cache is full exactly when its table
    // is. hashbrown makes room for one more slot before it looks a key
    // up, so a refused insert doubled the table for an entry that never
    // came, and so did an update at the bound.
    for limit in [7u32, 14_336, 229_376] {
        let t = Instant::from_millis(0);
        let mut c: Cache<Wide> = Cache::new(limit as usize);
        for k in 0..limit {
            assert_eq!(c.upsert(&Wide(k), t, false), Ok(Upsert::Created));
        }
        let table = c.table.allocation_size();
        assert_eq!(c.upsert(&Wide(limit), t, false), Err(Full));
        assert_eq!(
            (c.stats.add_fail, c.stats.add_fail_enospc, c.len()),
            (1, 1, limit as usize)
        );
        assert_eq!(c.table.allocation_size(), table, "limit {limit}: refused");
        assert_eq!(c.upsert(&Wide(3), t, true), Ok(Upsert::Updated));
        assert_eq!(c.table.allocation_size(), table, "limit {limit}: update");
        assert!(c.contains(&3) && !c.contains(&limit));
    }
}
