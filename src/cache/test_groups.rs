//! The group index ([`super::groups`]) against the table it indexes:
//! every path that adds or removes an entry keeps one pair per grouped
//! entry, and a group's entries are taken, only they, even when another
//! group's hash is the same.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use super::*;
use crate::model::{Expect, L4, Tuple};
use crate::wire::{CtKey, ExpKey, exp_key_of};

fn tuple(host: u8, port: u16) -> Tuple {
    Tuple {
        src: Ipv4Addr::new(10, 0, 0, host).into(),
        dst: Ipv4Addr::new(192, 168, 1, 2).into(),
        proto: 6,
        l4: L4::Ports {
            src: 40000,
            dst: port,
        },
    }
}

/// An expectation of master `host` (port 21) in `zone`, told apart by
/// `port`.
fn exp(host: u8, zone: u16, port: u16) -> Expect {
    Expect {
        timeout: Some(300),
        zone,
        ..Expect::new(tuple(host, 21), tuple(host, port), tuple(255, 0xffff))
    }
}

fn master(host: u8, zone: u16) -> CtKey {
    CtKey {
        orig: tuple(host, 21),
        zone,
    }
}

fn sorted(mut v: Vec<ExpKey>) -> Vec<ExpKey> {
    v.sort_by_key(|k| (k.zone, format!("{k:?}")));
    v
}

fn keys_of(xs: &[Expect]) -> Vec<ExpKey> {
    sorted(xs.iter().map(exp_key_of).collect())
}

#[track_caller]
fn in_step(c: &Cache<Expect>, what: &str) {
    assert!(c.groups_in_step(), "the index after {what}");
    assert_eq!(c.groups.len(), c.len(), "the index after {what}");
}

/// Each path is followed by the index check; a path that left a pair
/// behind (or added none) fails it, and the groups taken afterwards
/// are what the table holds.
#[test]
fn the_group_index_follows_every_path_that_adds_or_removes() {
    let t = |ms| Instant::from_millis(ms);
    let mut c: Cache<Expect> = Cache::new(6);
    // Master 1 in zone 0 (three), the same tuple in zone 1 (one),
    // master 2 (two): the cache is full.
    let a0 = [exp(1, 0, 50_000), exp(1, 0, 50_001), exp(1, 0, 50_002)];
    let a1 = exp(1, 1, 50_000);
    let b = [exp(2, 0, 50_000), exp(2, 0, 50_001)];
    for x in a0.iter().chain([&a1]).chain(&b) {
        assert_eq!(c.upsert(x, t(0), true), Ok(Upsert::Created));
    }
    in_step(&c, "inserts");
    // An update is the same entry: no second pair.
    let mut changed = a0[0].clone();
    changed.timeout = Some(100);
    assert_eq!(c.upsert(&changed, t(10), false), Ok(Upsert::Updated));
    let mut merged = a0[1].clone();
    assert_eq!(
        c.upsert_merged(&mut merged, t(10), false, |_, _| {}),
        Ok(Upsert::Updated)
    );
    in_step(&c, "updates");
    // A full cache refuses (it never evicts): no pair for the refused.
    assert_eq!(c.upsert(&exp(3, 0, 50_000), t(10), true), Err(Full));
    in_step(&c, "a refused insert");
    // take and remove, found and not.
    assert!(c.take(&exp_key_of(&b[1])).is_some());
    assert!(c.take(&exp_key_of(&b[1])).is_none());
    assert!(c.remove(&exp_key_of(&a0[2])).is_some());
    assert!(c.remove(&exp_key_of(&a0[2])).is_none());
    in_step(&c, "take and remove");
    // ALARM's expiry: b[0] and a1 were not updated since 0.
    assert_eq!(c.expire(t(4_005), Duration::from_millis(4_000)), 2);
    in_step(&c, "expiry");
    assert_eq!(c.take_group(&master(2, 0)), Vec::new());
    assert_eq!(c.take_group(&master(1, 1)), Vec::new());
    // A resync's sweep: a0[1] is still in the kernel, a0[0] is not.
    let a1b = exp(1, 1, 50_003);
    c.upsert(&a1b, t(5_000), true).unwrap();
    c.upsert(&b[1], t(5_000), true).unwrap();
    in_step(&c, "inserts after removals");
    assert!(c.mark(&exp_key_of(&a0[1]), true));
    assert!(c.mark(&exp_key_of(&a1b), true));
    let swept = c.remove_unmarked();
    assert_eq!(sorted(swept), keys_of(&[a0[0].clone(), b[1].clone()]));
    in_step(&c, "the sweep");
    // take_group takes its group only: the same tuple in zone 1 stays.
    assert_eq!(sorted(c.take_group(&master(1, 0))), keys_of(&a0[1..2]));
    in_step(&c, "take_group");
    assert_eq!(c.len(), 1);
    assert_eq!(c.stats.del_fail, 1, "remove's miss above, and no other");
    // A flush empties the index with the table: what comes after is
    // all it holds.
    c.upsert(&b[0], t(6_000), true).unwrap();
    c.flush();
    in_step(&c, "the flush");
    assert_eq!(c.groups.bytes(), 0);
    c.upsert(&b[1], t(7_000), true).unwrap();
    in_step(&c, "an insert after the flush");
    assert_eq!(c.take_group(&master(2, 0)), vec![exp_key_of(&b[1])]);
    assert!(c.is_empty());
    in_step(&c, "the last take_group");
}

/// A conntrack cache indexes only its entries outside zone 0, by tuple:
/// a table of zone-0 entries keeps no index and no memory for one, and
/// a tuple's zoned entries are found (several zones, zones past one
/// varint byte) and left in place.
#[test]
fn a_conntrack_cache_finds_its_zoned_entries_by_tuple() {
    use crate::model::Conntrack;
    let zoned = |host: u8, zone: u16| Conntrack {
        zone,
        ..Conntrack::new(tuple(host, 21))
    };
    let t0 = Instant::from_millis(0);
    let mut c: Cache<Conntrack> = Cache::new(100);
    for host in 1..=20 {
        c.upsert(&zoned(host, 0), t0, true).unwrap();
    }
    assert_eq!((c.groups.len(), c.groups.bytes()), (0, 0));
    assert_eq!(c.group_keys(&tuple(1, 21)), Vec::new());
    for (host, zone) in [(1, 7), (1, 300), (2, 0x100), (3, 0xffff)] {
        c.upsert(&zoned(host, zone), t0, true).unwrap();
    }
    assert!(c.groups_in_step());
    assert_eq!(c.groups.len(), 4);
    let zones = |c: &Cache<Conntrack>, host: u8| {
        let mut z: Vec<u16> = c
            .group_keys(&tuple(host, 21))
            .iter()
            .inspect(|k| assert_eq!(k.orig, tuple(host, 21)))
            .map(|k| k.zone)
            .collect();
        z.sort_unstable();
        z
    };
    assert_eq!(zones(&c, 1), [7, 300]);
    assert_eq!(zones(&c, 2), [0x100]);
    assert_eq!(zones(&c, 3), [0xffff]);
    assert_eq!(zones(&c, 4), [0u16; 0]);
    assert_eq!(c.len(), 24, "found, not taken");
    c.take(&CtKey {
        orig: tuple(1, 21),
        zone: 300,
    })
    .unwrap();
    assert!(c.groups_in_step());
    assert_eq!(zones(&c, 1), [7]);
    c.flush();
    assert_eq!(zones(&c, 2), [0u16; 0]);
    assert!(c.groups_in_step());
}

/// What the index adds to an expectation cache's memory: a 16-byte pair
/// and a control byte, in a table at most 7/8 full and, just after it
/// grew, about half that (counted in `-s cache`'s bytes).
#[test]
fn the_index_costs_a_pair_an_expectation() {
    let mut c: Cache<Expect> = Cache::new(10_000);
    let n = 1000u16;
    for i in 0..n {
        c.upsert(&exp((i % 50) as u8, 0, i), Instant::from_millis(0), true)
            .unwrap();
    }
    let per_bucket = std::mem::size_of::<(u64, u64)>() + 1;
    assert_eq!(per_bucket, 17);
    let bytes = c.groups.bytes();
    let n = usize::from(n);
    assert!(
        (n * per_bucket * 8 / 7..=2 * n * per_bucket * 8 / 7 + 64)
            .contains(&bytes),
        "{bytes} bytes for {n} expectations"
    );
    assert_eq!(
        c.bytes(),
        c.table.allocation_size() + c.slab.reserved_bytes() + bytes
    );
}

/// A key (one byte) whose group is its tens, all groups' hashes the
/// same: the index finds candidates by hash, the group decides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member(u8);

#[derive(Debug, PartialEq, Eq)]
struct Tens(u8);

impl Hash for Tens {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(0);
    }
}

impl Stored for Member {
    type Key = u8;
    const MAX_KEY: usize = 1;
    fn encode(&self, out: &mut Vec<u8>) -> usize {
        out.push(self.0);
        1
    }
    fn encode_key(k: &u8, out: &mut Vec<u8>) {
        out.push(*k);
    }
    fn decode(b: &[u8]) -> Option<Member> {
        Some(Member(*b.first()?))
    }
    fn decode_key(b: &[u8]) -> Option<(u8, usize)> {
        Some((*b.first()?, 1))
    }
    type Group = Tens;
    fn group(b: &[u8]) -> Option<Tens> {
        Some(Tens(b.first()? / 10))
    }
}

#[test]
fn groups_whose_hashes_collide_are_taken_apart() {
    let mut c: Cache<Member> = Cache::new(100);
    for k in (10..15).chain(20..25) {
        c.upsert(&Member(k), Instant::from_millis(0), true).unwrap();
    }
    let mut taken = c.take_group(&Tens(1));
    taken.sort_unstable();
    assert_eq!(taken, vec![10, 11, 12, 13, 14]);
    assert!(c.groups_in_step());
    let mut left: Vec<u8> = c.keys().collect();
    left.sort_unstable();
    assert_eq!(left, vec![20, 21, 22, 23, 24]);
    assert_eq!(c.take_group(&Tens(1)), Vec::<u8>::new());
    assert_eq!(c.take_group(&Tens(2)).len(), 5);
    assert!(c.is_empty() && c.groups_in_step());
    assert_eq!(c.stats.del_ok, 10);
}
