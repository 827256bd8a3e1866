//! Two simulated nodes, S (internal cache) and R (external cache), run
//! rounds of the protocol; R must end equal to S.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::model::{Conntrack, Expect, L4, Tuple};
use crate::wire::{
    self, HEADER_LEN, Header, KeyHashes, Seq, Sums, TAG_LEN, Writer, ct_key_of,
    exp_key_of, to_wire_ct, to_wire_exp,
};

/// A table as a cache holds it: key bytes → (entry bytes, updated).
type Map = BTreeMap<Vec<u8>, (Vec<u8>, Instant)>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Mem {
    pub(super) t: [Map; 2],
}

impl Tables for Mem {
    fn each(&self, table: Table, f: &mut dyn FnMut(RawEntry<'_>)) {
        for (k, (b, at)) in &self.t[table.index()] {
            f(RawEntry {
                bytes: b,
                key_len: k.len(),
                updated: *at,
            });
        }
    }
}

/// Same entries (times aside).
fn same(a: &Mem, b: &Mem) -> bool {
    (0..2).all(|i| {
        a.t[i].len() == b.t[i].len()
            && a.t[i]
                .iter()
                .zip(&b.t[i])
                .all(|(x, y)| x.0 == y.0 && x.1.0 == y.1.0)
    })
}

fn tuple(i: u32, proto: u8) -> Tuple {
    Tuple {
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 16))),
        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        proto,
        l4: L4::Ports {
            src: (i & 0xffff) as u16,
            dst: 80,
        },
    }
}

pub(super) fn ct(i: u32, status: u32) -> Conntrack {
    let mut c = Conntrack::new(tuple(i, 6));
    c.status = status;
    c.timeout = Some(431_999);
    c
}

pub(super) fn exp(i: u32, flags: u32) -> Expect {
    let mut x = Expect::new(tuple(i, 6), tuple(i, 17), tuple(0, 17));
    x.flags = flags;
    x.timeout = Some(300);
    x
}

pub(super) fn put_ct(m: &mut Mem, c: &Conntrack, at: Instant) {
    let k = postcard::to_allocvec(&ct_key_of(c)).unwrap();
    let b = postcard::to_allocvec(&to_wire_ct(c)).unwrap();
    assert!(b.starts_with(&k));
    m.t[0].insert(k, (b, at));
}

pub(super) fn put_exp(m: &mut Mem, x: &Expect, at: Instant) {
    let k = postcard::to_allocvec(&exp_key_of(x)).unwrap();
    let b = postcard::to_allocvec(&to_wire_exp(x)).unwrap();
    assert!(b.starts_with(&k));
    m.t[1].insert(k, (b, at));
}

pub(super) fn key_bytes(k: &Key) -> (usize, Vec<u8>) {
    match k {
        Key::Ct(k) => (0, postcard::to_allocvec(k).unwrap()),
        Key::Exp(k) => (1, postcard::to_allocvec(&**k).unwrap()),
    }
}

fn size(m: &Msg) -> usize {
    postcard::to_allocvec(m).unwrap().len()
}

/// What one round cost and did.
#[derive(Debug, Default)]
struct Round {
    bytes: usize,
    msgs: usize,
    resent: usize,
    pruned: usize,
}

/// One period: S's DigestTops to R, R's DigestSubs to S, S's repair
/// after its batch delay (resent keys read from S's internal cache at
/// "transmit time" and applied to R, then its Prunes to R), and R's
/// Prunes after its batch delay.
fn round(
    now: Instant,
    s: &mut AntiEntropy,
    r: &mut AntiEntropy,
    internal: &Mem,
    external: &mut Mem,
) -> Round {
    let none = Mem::default();
    let mut out = Round::default();
    let apply_prunes = |keys: &[Key], external: &mut Mem, out: &mut Round| {
        for k in keys {
            out.pruned += 1;
            let (t, kb) = key_bytes(k);
            assert!(external.t[t].remove(&kb).is_some());
        }
    };
    let tops = s.on_timer(now, internal, &none).send;
    for top in &tops {
        out.bytes += size(top);
        out.msgs += 1;
        let rr = r.on_msg(now, top, &none, external);
        assert!(rr.resend_keys.is_empty() && rr.prune.is_empty());
        for sub in &rr.send {
            out.bytes += size(sub);
            out.msgs += 1;
            let sr =
                s.on_msg(now + Duration::from_millis(1), sub, internal, &none);
            assert_eq!(sr, Reaction::default(), "repaired in one pass later");
        }
    }
    let t1 = now + Duration::from_millis(1) + BATCH_DELAY;
    if out.msgs > tops.len() {
        assert_eq!(s.poll_at(), t1);
    }
    let rep = s.on_timer(t1, internal, &none);
    assert!(rep.prune.is_empty());
    for k in &rep.resend_keys {
        out.resent += 1;
        let (t, kb) = key_bytes(k);
        match internal.t[t].get(&kb) {
            Some((b, _)) => {
                external.t[t].insert(kb, (b.clone(), t1));
            }
            None => {
                external.t[t].remove(&kb);
            }
        }
    }
    for p in &rep.send {
        assert!(matches!(p, Msg::PruneFor { .. }));
        out.bytes += size(p);
        out.msgs += 1;
        // Applied in one pass later, or now when the pending set is full.
        let pr = r.on_msg(t1, p, &none, external);
        apply_prunes(&pr.prune, external, &mut out);
    }
    // R's own DigestTops (about its empty internal cache) are not part
    // of this direction.
    let t2 = t1 + BATCH_DELAY;
    assert!(r.poll_at() <= t2);
    let pr = r.on_timer(t2, &none, external);
    apply_prunes(&pr.prune, external, &mut out);
    out
}

pub(super) fn pair(cfg: Config) -> (AntiEntropy, AntiEntropy) {
    (
        AntiEntropy::new(cfg, Instant::from_millis(0)),
        AntiEntropy::new(cfg, Instant::from_millis(0)),
    )
}

pub(super) fn period(n: u64) -> Instant {
    Instant::from_millis(0) + DEFAULT_PERIOD * n as u32
}

#[test]
fn hashes_are_pinned() {
    // Every node and build must agree: a change here is a wire change.
    assert_eq!(key_hash(b""), key_hash(b""));
    assert_ne!(key_hash(b"abc"), entry_hash(b"abc"));
    assert_eq!(
        (key_hash(b"abc"), entry_hash(b"abc")),
        (PINNED_KEY_ABC, PINNED_ENTRY_ABC)
    );
    let sums = crate::wire::Sums(std::array::from_fn(|i| i as u64 * 7));
    assert_eq!(ask_id(&sums), PINNED_ASK);
    let (b, s) = position(b"abc");
    assert!(b < 64 && s < 64);
    let (lo, hi) = leaf_range(b, s);
    assert!((lo..=hi).contains(&key_hash(b"abc")));
}

const PINNED_KEY_ABC: u64 = 4_903_105_127_962_403_056;
const PINNED_ENTRY_ABC: u64 = 17_731_451_751_580_526_042;
const PINNED_ASK: u64 = 708_399_522_828_454_055;

#[test]
fn positions_spread_evenly() {
    let mut per_bucket = [0u32; 64];
    for i in 0..64_000u32 {
        let k = postcard::to_allocvec(&ct_key_of(&ct(i, 0))).unwrap();
        per_bucket[usize::from(position(&k).0)] += 1;
    }
    // 1000 expected per bucket.
    assert!(
        per_bucket.iter().all(|n| (800..1200).contains(n)),
        "{per_bucket:?}"
    );
}

#[test]
fn agreeing_tables_cost_one_digest_top_per_table() {
    let (mut s, mut r) = pair(Config::default());
    let mut internal = Mem::default();
    for i in 0..1000 {
        put_ct(&mut internal, &ct(i, 0x18e), Instant::from_millis(0));
    }
    put_exp(&mut internal, &exp(1, 0), Instant::from_millis(0));
    let mut external = internal.clone();
    assert!(
        s.on_timer(Instant::from_millis(1), &internal, &Mem::default())
            .send
            .is_empty(),
        "before the period"
    );
    let out = round(period(1), &mut s, &mut r, &internal, &mut external);
    assert_eq!(out.msgs, 2);
    assert_eq!((out.resent, out.pruned), (0, 0));
    assert!(same(&internal, &external));
    assert_eq!(s.poll_at(), period(2));
    assert_eq!(r.counters().buckets_compared, 128);
    assert_eq!(r.counters().buckets_differing, 0);
}

#[test]
fn one_round_repairs_missing_stale_and_changed() {
    let (mut s, mut r) = pair(Config::default());
    let mut internal = Mem::default();
    for i in 0..5000 {
        put_ct(&mut internal, &ct(i, 0x18e), Instant::from_millis(0));
    }
    for i in 0..50 {
        put_exp(&mut internal, &exp(i, 0), Instant::from_millis(0));
    }
    let mut external = internal.clone();
    // Missing on R, stale on R, a different value on R; in both tables.
    external.t[0]
        .remove(&postcard::to_allocvec(&ct_key_of(&ct(7, 0))).unwrap());
    put_ct(&mut external, &ct(900_000, 0x18e), Instant::from_millis(0));
    put_ct(&mut external, &ct(42, 0x0e), Instant::from_millis(0));
    external.t[1]
        .remove(&postcard::to_allocvec(&exp_key_of(&exp(3, 0))).unwrap());
    put_exp(&mut external, &exp(77, 0), Instant::from_millis(0));
    put_exp(&mut external, &exp(5, 1), Instant::from_millis(0));
    assert!(!same(&internal, &external));
    let out = round(period(1), &mut s, &mut r, &internal, &mut external);
    assert!(same(&internal, &external), "{out:?}");
    assert_eq!(out.pruned, 2);
    let (sc, rc) = (s.counters(), r.counters());
    assert!(sc.leaves_repaired >= 6 - 1 && sc.leaves_repaired <= 6);
    assert_eq!(sc.entries_resent as usize, out.resent);
    assert_eq!(rc.entries_pruned, 2);
    assert_eq!(rc.cut_short + sc.cut_short, 0);
    // The next round is quiet.
    let out = round(period(2), &mut s, &mut r, &internal, &mut external);
    assert_eq!((out.msgs, out.resent, out.pruned), (2, 0, 0));
}

/// A deterministic generator (no RNG crate needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
}

pub(super) fn big(n: u32) -> Mem {
    let mut m = Mem::default();
    for i in 0..n {
        put_ct(&mut m, &ct(i, 0x18e), Instant::from_millis(0));
    }
    m
}

/// Rounds until R equals S: 100 000 entries, 50 random differences.
fn converge(cfg: Config) -> u64 {
    let (mut s, mut r) = pair(cfg);
    let internal = big(100_000);
    let mut external = internal.clone();
    let mut rng = Lcg(14);
    for d in 0..50 {
        let i = rng.next() % 100_000;
        match d % 3 {
            0 => {
                external.t[0].remove(
                    &postcard::to_allocvec(&ct_key_of(&ct(i, 0))).unwrap(),
                );
            }
            1 => put_ct(
                &mut external,
                &ct(200_000 + i, 0x18e),
                Instant::from_millis(0),
            ),
            _ => put_ct(&mut external, &ct(i, 0x08), Instant::from_millis(0)),
        }
    }
    let mut rounds = 0;
    let mut bytes = 0;
    while !same(&internal, &external) {
        rounds += 1;
        assert!(rounds <= 10, "not converged after 10 rounds");
        bytes +=
            round(period(rounds), &mut s, &mut r, &internal, &mut external)
                .bytes;
    }
    eprintln!(
        "100 000 entries, 50 differences, {cfg:?}: equal after {rounds} rounds, {bytes} digest bytes; {:?} {:?}",
        s.counters(),
        r.counters()
    );
    rounds
}

#[test]
fn hundred_thousand_entries_with_fifty_differences_converge() {
    // Unbounded (the default): one round.
    assert_eq!(converge(Config::default()), 1);
    // K = 8 buckets a round: 50 differences touch at most 50 buckets.
    let tight = Config {
        max_buckets: 8,
        max_leaves: 64,
        ..Config::default()
    };
    assert!(converge(tight) <= 7);
    // L = 8 leaves a period: at most 50 leaves differ.
    let tighter = Config {
        max_buckets: 8,
        max_leaves: 8,
        ..Config::default()
    };
    assert!(converge(tighter) <= 8);
}

fn datagram_bytes(msgs: &[Msg]) -> usize {
    // One datagram per message: the worst case for the header share.
    msgs.iter().map(|m| HEADER_LEN + size(m)).sum()
}

#[test]
fn digest_at_rest_for_100k_entries_is_under_one_percent() {
    let internal = big(100_000);
    let mut s = AntiEntropy::new(Config::default(), Instant::from_millis(0));
    let tops = s.on_timer(period(1), &internal, &Mem::default()).send;
    let per_period = datagram_bytes(&tops);
    let initial = 100_000 * 27;
    eprintln!(
        "digest at rest, 100 000 entries: {per_period} bytes per period \
         ({} per minute at the default {} s period), {:.3} % of {initial} bytes",
        per_period * 60 / DEFAULT_PERIOD.as_secs() as usize,
        DEFAULT_PERIOD.as_secs(),
        per_period as f64 * 100.0 / initial as f64
    );
    assert!(per_period * 100 < initial);
    // A full table: 64 fixed sums; the empty expectation table: a mask.
    assert!(size(&tops[0]) <= 1 + 1 + wire::SUMS_MAX_LEN);
    assert!(size(&tops[1]) <= 12);
}

#[test]
fn worst_case_messages_fit_one_datagram() {
    let full = Sums([u64::MAX; 64]);
    let msgs = [
        Msg::DigestTop {
            table: Table::Exp,
            sums: full,
        },
        Msg::DigestSub {
            table: Table::Exp,
            bucket: 255,
            sums: full,
        },
        Msg::PruneFor {
            ask: u64::MAX,
            table: Table::Exp,
            bucket: 255,
            sub: 255,
            lo: u64::MAX,
            hi: u64::MAX,
            keep: KeyHashes(vec![u64::MAX; wire::KEEP_MAX]),
        },
    ];
    for m in &msgs {
        let mut buf = [0u8; 1472];
        let h = Header {
            flags: 0,
            session: u32::MAX,
            first_seq: Seq(u32::MAX),
        };
        let mut w = Writer::new(&mut buf, h).unwrap();
        w.push(m).unwrap();
        let n = w.finish();
        assert!(n + TAG_LEN <= 1472, "{m:?}: {n}");
        let kind = format!("{m:?}");
        let kind = kind.split_whitespace().next().unwrap_or("");
        eprintln!("worst case {kind}: {} bytes + {HEADER_LEN} header", size(m));
        assert!(!m.is_data());
        let (_, body) = wire::read(&buf[..n]).unwrap();
        let back: Vec<Msg> = wire::messages(body).map(Result::unwrap).collect();
        assert_eq!(&back, std::slice::from_ref(m));
    }
}

#[test]
fn malformed_digest_payloads_are_refused() {
    // Mask says one sum, none follows; a zero marked present; a hash
    // list that is not a multiple of 8 bytes.
    let top = |payload: &[u8]| {
        let mut b = postcard::to_allocvec(&Msg::DigestTop {
            table: Table::Ct,
            sums: Sums([0; 64]),
        })
        .unwrap();
        b.truncate(b.len() - 9);
        b.push(payload.len() as u8);
        b.extend_from_slice(payload);
        postcard::from_bytes::<Msg>(&b)
    };
    assert!(top(&[0; 8]).is_ok());
    assert!(top(&[1, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(top(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(top(&[1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]).is_ok());
    assert!(top(&[0; 7]).is_err());
    // Random bytes never panic the decoder.
    let mut rng = Lcg(7);
    for n in 0..2000 {
        let len = (rng.next() % 600) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(first) = b.first_mut() {
            *first = 10 + (n % 3) as u8; // the digest variants
        }
        let _ = postcard::from_bytes::<Msg>(&b);
    }
}

#[test]
fn forged_digest_messages_are_harmless() {
    let cfg = Config {
        max_leaves: 64,
        ..Config::default()
    };
    let (mut s, mut r) = pair(cfg);
    let internal = big(20_000);
    let mut external = internal.clone();
    let none = Mem::default();
    let now = Instant::from_millis(5);
    // An unsolicited Prune deletes nothing.
    let prune = |bucket, sub, lo, hi| Msg::Prune {
        table: Table::Ct,
        bucket,
        sub,
        lo,
        hi,
        keep: KeyHashes(vec![]),
    };
    let pr = r.on_msg(now, &prune(3, 4, 0, u64::MAX), &none, &external);
    assert!(pr.prune.is_empty());
    // Out-of-range buckets are ignored.
    let pr = r.on_msg(now, &prune(64, 0, 0, u64::MAX), &none, &external);
    assert!(pr.prune.is_empty());
    let sub = |bucket, v| Msg::DigestSub {
        table: Table::Ct,
        bucket,
        sums: Sums([v; 64]),
    };
    assert_eq!(
        s.on_msg(now, &sub(200, 1), &internal, &none),
        Reaction::default()
    );
    // A garbage DigestSub costs at most L leaves per period, however
    // many arrive.
    for b in 0..64 {
        let r = s.on_msg(now, &sub(b, 0x5555), &internal, &none);
        assert_eq!(r, Reaction::default());
    }
    let rep = s.on_timer(now + BATCH_DELAY, &internal, &none);
    let resent = rep.resend_keys.len();
    assert_eq!(rep.send.len(), cfg.max_leaves, "a Prune per leaf");
    assert_eq!(s.counters().leaves_repaired, cfg.max_leaves as u64);
    assert!(resent < 20_000 / 64 * 2, "{resent}");
    assert!(s.counters().cut_short > 0);
    // A solicited Prune with an all-covering range and an empty keep
    // list deletes exactly that leaf's entries, nothing else.
    let top = Msg::DigestTop {
        table: Table::Ct,
        sums: Sums([1; 64]),
    };
    let asked = r.on_msg(now, &top, &none, &external);
    let Some(Msg::DigestSubFor { bucket, .. }) = asked.send.first() else {
        panic!("{asked:?}");
    };
    let later = now + Duration::from_millis(10);
    let pr = r.on_msg(later, &prune(*bucket, 9, 0, u64::MAX), &none, &external);
    assert!(pr.prune.is_empty());
    assert_eq!(r.poll_at(), later + BATCH_DELAY);
    let pr = r.on_timer(later + BATCH_DELAY, &none, &external);
    assert!(pr.send.is_empty(), "not yet the period");
    let in_leaf = internal.t[0]
        .keys()
        .filter(|k| position(k) == (*bucket, 9))
        .count();
    assert_eq!(pr.prune.len(), in_leaf);
    for k in &pr.prune {
        let (t, kb) = key_bytes(k);
        assert_eq!(position(&kb), (*bucket, 9));
        external.t[t].remove(&kb);
    }
    assert_eq!(external.t[0].len(), 20_000 - in_leaf);
    // The DigestTop flood is answered at most once per half period.
    assert!(r.on_msg(later, &top, &none, &external).send.is_empty());
    assert!(r.counters().ignored >= 3);
}

#[test]
fn a_prune_spares_entries_written_after_it_was_asked_for() {
    // S creates an entry after answering; its data message overtakes the
    // Prune: R must keep it.
    let (mut s, mut r) = pair(Config::default());
    let mut internal = big(1000);
    let mut external = internal.clone();
    let none = Mem::default();
    put_ct(&mut external, &ct(5000, 1), Instant::from_millis(0)); // stale
    let now = period(1);
    let tops = s.on_timer(now, &internal, &none).send;
    let subs = r.on_msg(now, &tops[0], &none, &external).send;
    assert_eq!(subs.len(), 1);
    assert_eq!(
        s.on_msg(now, &subs[0], &internal, &none),
        Reaction::default()
    );
    let answered = now + BATCH_DELAY;
    let rep = s.on_timer(answered, &internal, &none);
    assert!(!rep.send.is_empty());
    // Now a new flow in the same leaf as the stale one, on both sides.
    let stale = postcard::to_allocvec(&ct_key_of(&ct(5000, 0))).unwrap();
    let leaf = position(&stale);
    let fresh = (6000..).map(|i| ct(i, 0x18e)).find(|c| {
        position(&postcard::to_allocvec(&ct_key_of(c)).unwrap()) == leaf
    });
    let fresh = fresh.unwrap();
    put_ct(&mut internal, &fresh, answered);
    put_ct(&mut external, &fresh, answered + Duration::from_millis(1));
    for p in &rep.send {
        r.on_msg(answered + Duration::from_millis(2), p, &none, &external);
    }
    let pruned = r
        .on_timer(now + Duration::from_secs(1), &none, &external)
        .prune;
    assert_eq!(pruned.len(), 1);
    assert_eq!(key_bytes(&pruned[0]).1, stale);
}

#[test]
fn a_long_leaf_spans_several_prunes_each_complete_for_its_range() {
    let mut keep: Vec<u64> =
        (0..400u64).map(|i| leaf_range(5, 6).0 + i * 1000).collect();
    keep.sort_unstable();
    let parts = prune_parts(5, 6, &keep, wire::KEEP_MAX);
    assert_eq!(parts.len(), 3);
    let (lo, hi) = leaf_range(5, 6);
    assert_eq!(parts[0].0, lo);
    assert_eq!(parts[2].1, hi);
    for w in parts.windows(2) {
        assert_eq!(w[0].1 + 1, w[1].0);
    }
    // Every kept hash survives the part covering it; a stranger does not.
    for kh in &keep {
        assert!(
            parts
                .iter()
                .all(|(l, h, k)| !condemned(*kh, 5, 6, *l, *h, k))
        );
    }
    let stranger = keep[200] + 1;
    assert_eq!(
        parts
            .iter()
            .filter(|(l, h, k)| condemned(stranger, 5, 6, *l, *h, k))
            .count(),
        1
    );
    // Outside the leaf nothing is condemned, whatever the range.
    assert!(!condemned(leaf_range(5, 7).0, 5, 6, 0, u64::MAX, &[]));
}

#[test]
fn a_restart_during_a_storm_is_repaired_in_one_period() {
    // The kill -9 case: 6 % of the flows never reached R, and
    // 2 % that R holds were deleted meanwhile.
    let (mut s, mut r) = pair(Config::default());
    let internal = big(100_000);
    let mut external = internal.clone();
    for i in (0..100_000).step_by(16) {
        external.t[0]
            .remove(&postcard::to_allocvec(&ct_key_of(&ct(i, 0))).unwrap());
    }
    for i in 0..2000 {
        put_ct(
            &mut external,
            &ct(300_000 + i, 0x18e),
            Instant::from_millis(0),
        );
    }
    let out = round(period(1), &mut s, &mut r, &internal, &mut external);
    assert!(same(&internal, &external));
    assert_eq!(out.pruned, 2000);
    eprintln!(
        "storm restart at 100 000 entries: {} digest bytes, {} keys resent",
        out.bytes, out.resent
    );
}
