//! Two nodes' anti-entropy (`sync::digest::AntiEntropy`) exchanging
//! digest messages over a link the input drives: each node's caches hold
//! entries the input chooses (the same, missing or different on the
//! peer), honest messages are delivered through the real wire encoder and
//! decoder, in order or not, or dropped; forged ones reach either node,
//! as raw bodies through the wire decoder (what a forged datagram
//! carries) or built near the real digests (so the fuzzer reaches the
//! asked buckets and the pending Prunes); timers run when due and at
//! times the input chooses; entries change under the exchange. Then the
//! link heals.
//!
//! Checked against a model of the documented behaviour (`sync/digest`):
//! a DigestTop is answered at most once per table per half period (a
//! second at most), with at most K DigestSubs, exactly for the buckets
//! that differ; a DigestSub repairs at most L leaves per period and
//! answers nothing at once; a
//! Prune is accepted only for a bucket asked within a period (a PruneFor
//! only for asks named by the id it names, its own unique name or the
//! hash of its sums, among the last few of its bucket, and it spares what
//! was written since the earliest of those within a period; each node's
//! asks go named, or plain as to an older peer, as the input says), and
//! the
//! entries a pass prunes are exactly those its accepted Prunes condemn;
//! a sender's repair resends exactly the keys of its repaired leaves and
//! its Prunes cover each leaf once per ask, keeping exactly what it
//! holds, naming each of the last few distinct DigestSubs that noted a
//! leaf of its bucket; every
//! message sent decodes as sent; counters only grow; after `on_timer`
//! nothing is due in the past. After the heal, the caches must agree
//! within a period per differing leaf, and a round over equal caches
//! must repair nothing.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ctsyncd::cache::Stored;
use ctsyncd::model::{Conntrack, Expect, L4, Tuple};
use ctsyncd::sync::Key;
use ctsyncd::sync::digest::{
    ASKS_KEPT, AntiEntropy, BATCH_DELAY, Config, Counters, LEAVES,
    PENDING_MAX_HASHES, RawEntry, Reaction, Table, Tables, ask_id, condemned,
    digest, key_hash, leaf_of, leaf_range,
};
use ctsyncd::time::Instant;
use ctsyncd::wire::{self, FANOUT, Header, KEEP_MAX, KeyHashes, Msg, Seq};

const MAX_OPS: usize = 300;
/// Entries per node and table at most (a node holds few, so that leaves
/// differ one at a time and the heal's bound stays small).
const MAX_ENTRIES: usize = 48;
/// The datagram the link carries (messages must fit and decode).
const DATAGRAM: usize = 1472;

/// Reads the input a byte at a time (zeros once it runs out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A table as a cache holds it: key bytes → (stored bytes, updated).
type Map = BTreeMap<Vec<u8>, (Vec<u8>, Instant)>;

/// One side's caches (a map, not a `Cache`, so that passes go in the
/// same order every run; the bytes are the cache's own encoding).
#[derive(Default, Clone, PartialEq, Eq)]
struct Mem {
    t: [Map; 2],
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

impl Mem {
    /// Same entries, times aside.
    fn same(&self, other: &Mem) -> bool {
        (0..2).all(|i| {
            self.t[i].len() == other.t[i].len()
                && self.t[i]
                    .iter()
                    .zip(&other.t[i])
                    .all(|(x, y)| x.0 == y.0 && x.1.0 == y.1.0)
        })
    }
}

fn tuple(id: u16, proto: u8) -> Tuple {
    Tuple {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, (id >> 8) as u8, id as u8)),
        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        proto,
        l4: L4::Ports { src: id, dst: 80 },
    }
}

/// Entry `id` of `table` in its variant `value`: (key bytes, stored
/// bytes), as the cache stores it.
fn entry(table: Table, id: u16, value: u8) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    let klen = match table {
        Table::Ct => {
            let mut c = Conntrack::new(tuple(id, 6));
            c.status = u32::from(value);
            c.timeout = Some(120);
            c.encode(&mut out)
        }
        Table::Exp => {
            let mut x = Expect::new(tuple(id, 6), tuple(id, 17), tuple(0, 17));
            x.flags = u32::from(value);
            x.timeout = Some(300);
            x.encode(&mut out)
        }
    };
    (out[..klen].to_vec(), out)
}

/// The keys as (table, bytes), each at most once (`what` happened to
/// none twice).
fn distinct<'a>(
    name: &str,
    keys: impl IntoIterator<Item = &'a Key>,
    what: &str,
) -> BTreeSet<(usize, Vec<u8>)> {
    let mut set = BTreeSet::new();
    for k in keys {
        let (table, kb) = key_bytes(k);
        assert!(set.insert((table.index(), kb)), "{name}: {what} twice");
    }
    set
}

fn key_bytes(k: &Key) -> (Table, Vec<u8>) {
    let mut out = Vec::new();
    match k {
        Key::Ct(k) => {
            Conntrack::encode_key(k, &mut out);
            (Table::Ct, out)
        }
        Key::Exp(k) => {
            Expect::encode_key(k, &mut out);
            (Table::Exp, out)
        }
    }
}

/// A Prune the receiver accepted, as the model keeps it.
struct Accepted {
    table: Table,
    bucket: u8,
    sub: u8,
    lo: u64,
    hi: u64,
    /// Sorted.
    keep: Vec<u64>,
    asked: Instant,
}

/// A DigestSub sent: its name, its sums' hash and when.
type Ask = (u64, u64, Instant);
/// One node: its anti-entropy, its caches, and the model of what the
/// documentation says it does.
struct Node {
    name: &'static str,
    ae: AntiEntropy,
    cfg: Config,
    internal: Mem,
    external: Mem,
    counters: Counters,
    /// Model: when the next round starts.
    next: Instant,
    /// Model, receiver: the DigestSubs sent, per table and bucket: their
    /// names, sums' hashes and times, newest first, at most ASKS_KEPT.
    asked: BTreeMap<(usize, u8), VecDeque<Ask>>,
    /// Model, receiver: every name its asks went by (each is unique).
    names: BTreeSet<u64>,
    /// Model, sender: per table and bucket, the ids of the DigestSubs
    /// that noted a leaf since the last repair pass: distinct, the last
    /// ASKS_KEPT.
    noted_asks: BTreeMap<(usize, u8), Vec<u64>>,
    /// Model, receiver: the last DigestTop answered, per table.
    answered: [Option<Instant>; 2],
    /// Model, receiver: the Prunes accepted since the last pass.
    accepted: Vec<Accepted>,
    accepted_since: Option<Instant>,
    accepted_hashes: usize,
    /// Model, sender: leaves noted since the last repair pass.
    noted: u64,
    noted_since: Option<Instant>,
    /// Model, sender: leaves noted this period.
    noted_in_period: u64,
}

impl Node {
    fn new(name: &'static str, cfg: Config, now: Instant) -> Node {
        Node {
            name,
            ae: AntiEntropy::new(cfg, now),
            cfg,
            internal: Mem::default(),
            external: Mem::default(),
            counters: Counters::default(),
            next: now + cfg.period,
            asked: BTreeMap::new(),
            names: BTreeSet::new(),
            noted_asks: BTreeMap::new(),
            answered: [None; 2],
            accepted: Vec::new(),
            accepted_since: None,
            accepted_hashes: 0,
            noted: 0,
            noted_since: None,
            noted_in_period: 0,
        }
    }

    fn min_gap(&self) -> Duration {
        self.cfg.period.min(Duration::from_secs(2)) / 2
    }

    /// The counters after a call: none went down. Returns them and the
    /// previous ones.
    fn counters_grew(&mut self) -> (Counters, Counters) {
        let (old, new) = (self.counters, *self.ae.counters());
        let pairs = [
            (old.rounds, new.rounds),
            (old.buckets_compared, new.buckets_compared),
            (old.buckets_differing, new.buckets_differing),
            (old.leaves_repaired, new.leaves_repaired),
            (old.entries_resent, new.entries_resent),
            (old.entries_pruned, new.entries_pruned),
            (old.cut_short, new.cut_short),
            (old.ignored, new.ignored),
        ];
        for (i, (o, n)) in pairs.iter().enumerate() {
            assert!(
                n >= o,
                "{}: counter {i} went down: {old:?} -> {new:?}",
                self.name
            );
        }
        self.counters = new;
        (old, new)
    }

    /// A message from the peer; returns what the node sends back.
    fn on_msg(&mut self, now: Instant, msg: &Msg) -> Vec<Msg> {
        let r = self.ae.on_msg(now, msg, &self.internal, &self.external);
        let (old, new) = self.counters_grew();
        match msg {
            Msg::DigestTop { table, sums } => {
                self.check_top(now, *table, sums, &r, old, new)
            }
            Msg::DigestSub {
                table,
                bucket,
                sums,
            }
            | Msg::DigestSubFor {
                table,
                bucket,
                sums,
                ..
            } => {
                // Repaired in one pass later (BATCH_DELAY), never at once.
                assert_eq!(
                    r,
                    Reaction::default(),
                    "{}: DigestSub answered",
                    self.name
                );
                let leaves = new.leaves_repaired - old.leaves_repaired;
                if usize::from(*bucket) >= FANOUT {
                    assert_eq!(new.ignored, old.ignored + 1);
                    assert_eq!(leaves, 0);
                } else {
                    assert_eq!(new.ignored, old.ignored);
                }
                // L, leaves per period (Config::max_leaves).
                self.noted_in_period += leaves;
                assert!(
                    self.noted_in_period <= self.cfg.max_leaves as u64,
                    "{}: {} leaves in a period, L = {}",
                    self.name,
                    self.noted_in_period,
                    self.cfg.max_leaves
                );
                assert!(leaves <= FANOUT as u64);
                if leaves > 0 {
                    self.noted += leaves;
                    self.noted_since.get_or_insert(now);
                    let ids = self
                        .noted_asks
                        .entry((table.index(), *bucket))
                        .or_default();
                    // Named by the ask's own name, or its sums' hash.
                    let id = match msg {
                        Msg::DigestSubFor { ask, .. } => *ask,
                        _ => ask_id(sums),
                    };
                    if !ids.contains(&id) {
                        ids.push(id);
                        if ids.len() > ASKS_KEPT {
                            ids.remove(0);
                        }
                    }
                }
            }
            Msg::Prune {
                table,
                bucket,
                sub,
                lo,
                hi,
                keep,
            }
            | Msg::PruneFor {
                table,
                bucket,
                sub,
                lo,
                hi,
                keep,
                ..
            } => {
                assert!(r.send.is_empty() && r.resend_keys.is_empty());
                let within = |at: &Instant| now.since(*at) <= self.cfg.period;
                let asks = self.asked.get(&(table.index(), *bucket));
                let at = match msg {
                    // The latest ask with the id it names decides; what
                    // was written since its run began is spared.
                    Msg::PruneFor { ask, .. } => asks.and_then(|a| {
                        a.iter()
                            .filter(|(id, sums_id, at)| {
                                (id == ask || sums_id == ask) && within(at)
                            })
                            .map(|(.., at)| *at)
                            .min()
                    }),
                    // The latest ask of its bucket.
                    _ => asks
                        .and_then(|a| a.front())
                        .map(|(.., at)| *at)
                        .filter(within),
                };
                let accept = usize::from(*sub) < FANOUT && at.is_some();
                match at {
                    Some(asked) if accept => {
                        assert_eq!(
                            new.ignored, old.ignored,
                            "{}: asked Prune ignored",
                            self.name
                        );
                        let mut k = keep.0.clone();
                        k.sort_unstable();
                        self.accepted_hashes += k.len() + 1;
                        self.accepted.push(Accepted {
                            table: *table,
                            bucket: *bucket,
                            sub: *sub,
                            lo: *lo,
                            hi: *hi,
                            keep: k,
                            asked,
                        });
                        self.accepted_since.get_or_insert(now);
                        // Bounded memory: a full set is applied at once.
                        if self.accepted_hashes >= PENDING_MAX_HASHES {
                            assert_eq!(new.cut_short, old.cut_short + 1);
                            self.check_prune_pass(&r.prune);
                        } else {
                            assert!(
                                r.prune.is_empty(),
                                "{}: pruned before the pass",
                                self.name
                            );
                        }
                    }
                    _ => {
                        assert_eq!(
                            new.ignored,
                            old.ignored + 1,
                            "{}: unasked Prune not ignored",
                            self.name
                        );
                        assert!(
                            r.prune.is_empty(),
                            "{}: unasked Prune pruned",
                            self.name
                        );
                    }
                }
                self.apply_prunes(&r.prune);
            }
            _ => {
                assert_eq!(
                    r,
                    Reaction::default(),
                    "{}: not a digest message",
                    self.name
                );
                assert_eq!(old, new);
            }
        }
        r.send
    }

    fn check_top(
        &mut self,
        now: Instant,
        table: Table,
        theirs: &wire::Sums,
        r: &Reaction,
        old: Counters,
        new: Counters,
    ) {
        assert!(r.resend_keys.is_empty() && r.prune.is_empty());
        let t = table.index();
        let throttled =
            self.answered[t].is_some_and(|at| now.since(at) < self.min_gap());
        if throttled {
            assert_eq!(
                *r,
                Reaction::default(),
                "{}: DigestTop flood answered",
                self.name
            );
            assert_eq!(new.ignored, old.ignored + 1);
            return;
        }
        self.answered[t] = Some(now);
        let ours = digest(&self.external, table);
        let top = ours.top();
        let differ: BTreeSet<u8> = (0..FANOUT as u8)
            .filter(|b| top.0[usize::from(*b)] != theirs.0[usize::from(*b)])
            .collect();
        let k = self.cfg.max_buckets;
        // K, buckets narrowed per DigestTop (Config::max_buckets).
        assert_eq!(
            r.send.len(),
            differ.len().min(k),
            "{}: DigestSubs",
            self.name
        );
        assert_eq!(new.buckets_compared, old.buckets_compared + FANOUT as u64);
        assert_eq!(
            new.buckets_differing - old.buckets_differing,
            r.send.len() as u64
        );
        assert_eq!(new.cut_short - old.cut_short, u64::from(differ.len() > k));
        let mut seen = BTreeSet::new();
        for m in &r.send {
            let Msg::DigestSubFor {
                ask,
                table: st,
                bucket,
                sums,
            } = m
            else {
                panic!("{}: a DigestTop answered with {m:?}", self.name);
            };
            assert_eq!(*st, table);
            assert!(
                differ.contains(bucket),
                "{}: DigestSub for an equal bucket",
                self.name
            );
            assert!(seen.insert(*bucket), "{}: bucket asked twice", self.name);
            assert_eq!(*sums, ours.subs(*bucket));
            assert!(
                self.names.insert(*ask),
                "{}: an ask named as an earlier one",
                self.name
            );
            let asks = self.asked.entry((t, *bucket)).or_default();
            asks.push_front((*ask, ask_id(sums), now));
            asks.truncate(ASKS_KEPT);
        }
    }

    /// The victims of a pass over the external cache are exactly the
    /// entries the accepted Prunes condemn: in a pruned leaf, covered by
    /// one of its parts, kept by none of those, not written since asked.
    fn check_prune_pass(&mut self, victims: &[Key]) {
        let accepted = std::mem::take(&mut self.accepted);
        self.accepted_since = None;
        self.accepted_hashes = 0;
        let mut expected = BTreeSet::new();
        for table in Table::ALL {
            for (k, (_, updated)) in &self.external.t[table.index()] {
                let kh = key_hash(k);
                let mut covered = false;
                let mut spared = false;
                for p in accepted.iter().filter(|p| p.table == table) {
                    if !condemned(kh, p.bucket, p.sub, p.lo, p.hi, &[]) {
                        continue;
                    }
                    covered = true;
                    spared |=
                        p.keep.binary_search(&kh).is_ok() || *updated > p.asked;
                }
                if covered && !spared {
                    expected.insert((table.index(), k.clone()));
                }
            }
        }
        let got = distinct(self.name, victims, "pruned");
        assert_eq!(
            got, expected,
            "{}: the pass pruned other entries",
            self.name
        );
    }

    fn apply_prunes(&mut self, victims: &[Key]) {
        for v in victims {
            let (table, kb) = key_bytes(v);
            assert!(self.external.t[table.index()].remove(&kb).is_some());
        }
    }

    /// The timer at `now`; returns what the node sends, and the keys it
    /// resends (the peer applies them).
    fn on_timer(&mut self, now: Instant) -> (Vec<Msg>, Vec<Key>) {
        let r = self.ae.on_timer(now, &self.internal, &self.external);
        let (old, new) = self.counters_grew();
        assert!(
            self.ae.poll_at() > now,
            "{}: due in the past after on_timer",
            self.name
        );
        // Receiver: the pending Prunes' pass.
        if self.accepted_since.is_some_and(|t| now >= t + BATCH_DELAY) {
            self.check_prune_pass(&r.prune);
        } else {
            assert!(
                r.prune.is_empty(),
                "{}: pruned before the batch delay",
                self.name
            );
        }
        assert_eq!(
            new.entries_pruned - old.entries_pruned,
            r.prune.len() as u64
        );
        self.apply_prunes(&r.prune);
        // Sender: the repair pass.
        let prunes: Vec<&Msg> = r
            .send
            .iter()
            .filter(|m| !matches!(m, Msg::DigestTop { .. }))
            .collect();
        if self.noted_since.is_some_and(|t| now >= t + BATCH_DELAY) {
            self.check_repair(&prunes, &r.resend_keys);
            self.noted = 0;
            self.noted_since = None;
            self.noted_asks.clear();
        } else {
            assert!(
                prunes.is_empty() && r.resend_keys.is_empty(),
                "{}: repaired early",
                self.name
            );
        }
        assert_eq!(
            new.entries_resent - old.entries_resent,
            r.resend_keys.len() as u64
        );
        // The round.
        let tops: Vec<&Msg> = r
            .send
            .iter()
            .filter(|m| matches!(m, Msg::DigestTop { .. }))
            .collect();
        if now >= self.next {
            self.next = now + self.cfg.period;
            self.noted_in_period = 0;
            assert_eq!(new.rounds, old.rounds + 1);
            assert_eq!(tops.len(), 2);
            for (m, table) in tops.iter().zip(Table::ALL) {
                let Msg::DigestTop { table: t, sums } = m else {
                    unreachable!()
                };
                assert_eq!(*t, table);
                assert_eq!(*sums, digest(&self.internal, table).top());
            }
        } else {
            assert!(
                tops.is_empty(),
                "{}: DigestTop before the period",
                self.name
            );
            assert_eq!(new.rounds, old.rounds);
        }
        (r.send, r.resend_keys)
    }

    /// A repair pass: per leaf and ask, Prunes covering the leaf once and
    /// keeping exactly the key hashes held, for each ask noted in its
    /// bucket; the keys resent are exactly the entries of those leaves.
    fn check_repair(&self, prunes: &[&Msg], resent: &[Key]) {
        type Part<'a> = (u64, u64, &'a [u64]);
        let mut parts: BTreeMap<(usize, u8, u8, u64), Vec<Part>> =
            BTreeMap::new();
        for m in prunes {
            let Msg::PruneFor {
                ask,
                table,
                bucket,
                sub,
                lo,
                hi,
                keep,
            } = m
            else {
                panic!("{}: a repair sent {m:?}", self.name);
            };
            let noted = self.noted_asks.get(&(table.index(), *bucket));
            assert!(
                noted.is_some_and(|ids| ids.contains(ask)),
                "{}: a Prune names an ask that noted nothing in its bucket",
                self.name
            );
            assert!(
                keep.0.len() <= KEEP_MAX,
                "{}: Prune over KEEP_MAX",
                self.name
            );
            parts
                .entry((table.index(), *bucket, *sub, *ask))
                .or_default()
                .push((*lo, *hi, &keep.0));
        }
        // Each leaf repaired is named by every ask noted in its bucket.
        let mut leaves: BTreeMap<(usize, u8, u8), BTreeSet<u64>> =
            BTreeMap::new();
        for (t, bucket, sub, ask) in parts.keys() {
            leaves.entry((*t, *bucket, *sub)).or_default().insert(*ask);
        }
        for ((t, bucket, _), asks) in &leaves {
            let noted: BTreeSet<u64> =
                self.noted_asks[&(*t, *bucket)].iter().copied().collect();
            assert_eq!(
                *asks, noted,
                "{}: a leaf's Prunes skip an ask",
                self.name
            );
        }
        assert!(
            !parts.is_empty(),
            "{}: leaves noted, none repaired",
            self.name
        );
        // Leaves noted twice are repaired once.
        assert!(
            leaves.len() as u64 <= self.noted,
            "{}: more leaves than noted",
            self.name
        );
        let mut expected_keys = BTreeSet::new();
        for ((t, bucket, sub, _), mut ps) in parts {
            ps.sort_by_key(|p| p.0);
            let (leaf_lo, leaf_hi) = leaf_range(bucket, sub);
            assert_eq!(ps[0].0, leaf_lo);
            assert_eq!(ps[ps.len() - 1].1, leaf_hi);
            for w in ps.windows(2) {
                assert_eq!(
                    w[0].1.wrapping_add(1),
                    w[1].0,
                    "{}: parts gap or overlap",
                    self.name
                );
            }
            let mut kept = BTreeSet::new();
            for (lo, hi, keep) in &ps {
                for h in keep.iter() {
                    assert!(
                        (lo..=hi).contains(&h),
                        "{}: kept outside its part",
                        self.name
                    );
                    kept.insert(*h);
                }
            }
            let held: BTreeSet<u64> = self.internal.t[t]
                .keys()
                .map(|k| key_hash(k))
                .filter(|h| leaf_of(*h) == (bucket, sub))
                .collect();
            assert_eq!(
                kept, held,
                "{}: a Prune keeps other than held",
                self.name
            );
            for k in self.internal.t[t].keys() {
                if leaf_of(key_hash(k)) == (bucket, sub) {
                    expected_keys.insert((t, k.clone()));
                }
            }
        }
        let got = distinct(self.name, resent, "resent");
        assert_eq!(
            got, expected_keys,
            "{}: resent other keys than the leaves'",
            self.name
        );
    }
}

/// A message through the wire as the link carries it: it must fit a
/// datagram and decode as it was sent.
fn through_wire(m: &Msg) -> Msg {
    let mut buf = [0u8; DATAGRAM];
    let header = Header {
        flags: 0,
        session: 1,
        first_seq: Seq(0),
    };
    let mut w = wire::Writer::new(&mut buf, header).expect("a datagram");
    w.push(m).expect("a digest message fits a datagram");
    let n = w.finish();
    let (_, body) = wire::read(&buf[..n]).expect("our own framing");
    let mut msgs = wire::messages(body);
    let got = msgs.next().expect("one message").expect("decodes");
    assert!(msgs.next().is_none());
    assert_eq!(&got, m, "a digest message changed on the wire");
    got
}

struct World {
    now: Instant,
    nodes: [Node; 2],
    /// Honest messages in flight, by receiving node.
    links: [VecDeque<Msg>; 2],
    /// Per sending node: its asks go plain, as its engine sends them to
    /// a peer that does not read `DigestSubFor`.
    plain_asks: [bool; 2],
}

impl World {
    fn timer(&mut self, i: usize) {
        let now = self.now;
        let (send, resent) = self.nodes[i].on_timer(now);
        self.sent(i, send);
        self.resend(i, &resent);
    }

    fn sent(&mut self, from: usize, msgs: Vec<Msg>) {
        for m in msgs {
            let m = match m {
                Msg::DigestSubFor {
                    table,
                    bucket,
                    sums,
                    ..
                } if self.plain_asks[from] => Msg::DigestSub {
                    table,
                    bucket,
                    sums,
                },
                m => m,
            };
            self.links[1 - from].push_back(through_wire(&m));
        }
    }

    /// The node's reliable path: a resent key carries its current state,
    /// or its deletion, to the peer's external cache (at once here).
    fn resend(&mut self, from: usize, keys: &[Key]) {
        let now = self.now;
        for k in keys {
            let (table, kb) = key_bytes(k);
            let t = table.index();
            match self.nodes[from].internal.t[t].get(&kb).cloned() {
                Some((bytes, _)) => {
                    self.nodes[1 - from].external.t[t].insert(kb, (bytes, now));
                }
                None => {
                    self.nodes[1 - from].external.t[t].remove(&kb);
                }
            }
        }
    }

    fn deliver(&mut self, to: usize, m: &Msg) {
        let now = self.now;
        let back = self.nodes[to].on_msg(now, m);
        self.sent(to, back);
    }

    /// Every message in flight, and those they bring, delivered in order.
    fn deliver_all(&mut self) {
        while let Some(to) = (0..2).find(|i| !self.links[*i].is_empty()) {
            let m = self.links[to].pop_front().expect("not empty");
            self.deliver(to, &m);
        }
    }

    fn due(&mut self) {
        for i in 0..2 {
            if self.nodes[i].ae.poll_at() <= self.now {
                self.timer(i);
            }
        }
    }

    /// Leaves whose sums differ between a node's internal cache and its
    /// peer's external one, both ways.
    fn differing_leaves(&self) -> usize {
        let mut n = 0;
        for i in 0..2 {
            for table in Table::ALL {
                let a = digest(&self.nodes[i].internal, table);
                let b = digest(&self.nodes[1 - i].external, table);
                for bucket in 0..FANOUT as u8 {
                    let (x, y) = (a.subs(bucket), b.subs(bucket));
                    n += x.0.iter().zip(&y.0).filter(|(p, q)| p != q).count();
                }
            }
        }
        n
    }
}

/// A forged message built near the receiver's real digests, so that it
/// reaches the compared, asked and pending paths.
fn forge_near(input: &mut Input, to: &Node, peer: &Node) -> Msg {
    let kind = input.byte();
    let table = if kind & 1 == 0 { Table::Ct } else { Table::Exp };
    let t = table.index();
    let tweak = |input: &mut Input, mut sums: wire::Sums| {
        let at = usize::from(input.byte()) % FANOUT;
        sums.0[at] ^= u64::from(input.byte());
        sums
    };
    match (kind >> 1) % 3 {
        0 => Msg::DigestTop {
            table,
            sums: tweak(input, digest(&peer.internal, table).top()),
        },
        1 => {
            let bucket = input.byte() % (FANOUT as u8 + 2);
            let sums = tweak(input, digest(&to.internal, table).subs(bucket));
            if kind & 0x80 == 0 {
                Msg::DigestSub {
                    table,
                    bucket,
                    sums,
                }
            } else {
                Msg::DigestSubFor {
                    ask: input.u64(),
                    table,
                    bucket,
                    sums,
                }
            }
        }
        _ => {
            // A leaf of one of its entries (or any), so that it is pruned.
            let pick = usize::from(input.byte());
            let keys: Vec<&Vec<u8>> = to.external.t[t].keys().collect();
            let (bucket, sub) = match keys.get(pick) {
                Some(k) => leaf_of(key_hash(k)),
                None => (
                    input.byte() % (FANOUT as u8 + 1),
                    input.byte() % (FANOUT as u8 + 1),
                ),
            };
            let (lo, hi) = match input.byte() % 4 {
                0 | 1 => leaf_range(bucket, sub),
                2 => (0, u64::MAX),
                _ => (input.u64(), input.u64()),
            };
            let mask = input.byte();
            let mut keep: Vec<u64> = keys
                .iter()
                .map(|k| key_hash(k))
                .filter(|h| leaf_of(*h) == (bucket, sub))
                .enumerate()
                .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
                .map(|(_, h)| h)
                .collect();
            if mask & 0x80 != 0 {
                keep.push(input.u64());
            }
            let keep = KeyHashes(keep);
            let how = input.byte();
            if how.is_multiple_of(3) {
                return Msg::Prune {
                    table,
                    bucket,
                    sub,
                    lo,
                    hi,
                    keep,
                };
            }
            // One of the asks it remembers, or none of them.
            let asks = to.asked.get(&(t, bucket));
            let known =
                asks.and_then(|a| a.get(usize::from(how / 3) % ASKS_KEPT));
            let ask =
                match known {
                    Some((id, sums_id, _)) if how % 3 == 1 => {
                        if how & 0x80 == 0 { *id } else { *sums_id }
                    }
                    _ => input.u64(),
                };
            Msg::PruneFor {
                ask,
                table,
                bucket,
                sub,
                lo,
                hi,
                keep,
            }
        }
    }
}

fn config(b: u8) -> Config {
    let period = Duration::from_secs(u64::from(b % 4) * 10 + 1);
    let small = b & 0x10 != 0;
    Config {
        period,
        max_buckets: if small {
            usize::from(b >> 5) % 4 + 1
        } else {
            FANOUT
        },
        max_leaves: if small {
            usize::from(b >> 5) + 1
        } else {
            LEAVES
        },
        // Bits 0x04 and 0x08: each node's asks go plain (`run`).
        seed: 0,
    }
}

/// The nodes' caches: entries on one node's internal side and on the
/// other's external side, equal, missing on one side or different.
fn fill(input: &mut Input, nodes: &mut [Node; 2]) {
    let n = usize::from(input.byte()) % (2 * MAX_ENTRIES);
    let t0 = Instant::from_millis(0);
    for _ in 0..n {
        let id = u16::from_le_bytes([input.byte(), input.byte()]);
        let f = input.byte();
        let table = if f & 1 == 0 { Table::Ct } else { Table::Exp };
        let s = usize::from((f >> 1) & 1);
        let (k, v) = entry(table, id, f >> 4);
        let t = table.index();
        if nodes[s].internal.t[t].len() >= MAX_ENTRIES {
            continue;
        }
        match (f >> 2) & 3 {
            0 => {
                nodes[s].internal.t[t].insert(k.clone(), (v.clone(), t0));
                nodes[1 - s].external.t[t].insert(k, (v, t0));
            }
            1 => {
                nodes[s].internal.t[t].insert(k, (v, t0));
            }
            2 => {
                nodes[1 - s].external.t[t].insert(k, (v, t0));
            }
            _ => {
                let (_, other) = entry(table, id, (f >> 4) ^ 1);
                nodes[s].internal.t[t].insert(k.clone(), (v, t0));
                nodes[1 - s].external.t[t].insert(k, (other, t0));
            }
        }
    }
}

fn run(data: &[u8]) {
    let mut input = Input(data);
    let b = input.byte();
    let cfg = config(b);
    let t0 = Instant::from_millis(0);
    // Each node's asks are named from its own session.
    let life = |session: u64| Config {
        seed: session << 32,
        ..cfg
    };
    let mut nodes = [Node::new("A", life(1), t0), Node::new("B", life(2), t0)];
    fill(&mut input, &mut nodes);
    let mut w = World {
        now: t0,
        nodes,
        links: [VecDeque::new(), VecDeque::new()],
        plain_asks: [b & 0x04 != 0, b & 0x08 != 0],
    };
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        let side = usize::from(op >> 7);
        match op & 7 {
            // Time passes (a few ms to a period and more); due timers run.
            0 => {
                let b = u64::from(input.byte());
                let step = if b < 128 { b * 5 } else { (b - 127) * 400 };
                w.now = w.now + Duration::from_millis(step);
                w.due();
            }
            // An honest message is delivered; or (bit 3) all in flight
            // either way and what they bring, so that rounds complete
            // between forged messages.
            1 if op & 0x08 != 0 => w.deliver_all(),
            1 => {
                if let Some(m) = w.links[side].pop_front() {
                    w.deliver(side, &m);
                }
            }
            // Or one that overtook those before it (UDP reorders).
            2 => {
                let at = usize::from(input.byte());
                let n = w.links[side].len();
                if let Some(m) = w.links[side].remove(at % n.max(1)) {
                    w.deliver(side, &m);
                }
            }
            // Or lost (control messages are unreliable).
            3 => {
                w.links[side].pop_front();
            }
            // A forged body through the wire decoder.
            4 => {
                let n = usize::from(input.byte());
                let body = input.bytes(n).to_vec();
                for m in wire::messages(&body).map_while(Result::ok) {
                    w.deliver(side, &m);
                }
            }
            // A forged message near the real digests.
            5 => {
                let m =
                    forge_near(&mut input, &w.nodes[side], &w.nodes[1 - side]);
                let m = through_wire(&m);
                w.deliver(side, &m);
            }
            // The timer at a time the input chooses (due or not).
            6 => w.timer(side),
            // An entry changes under the exchange (a local event, or one
            // lost on the way to the peer).
            _ => {
                let id = u16::from(input.byte() & 31);
                let f = input.byte();
                let table = if f & 1 == 0 { Table::Ct } else { Table::Exp };
                let t = table.index();
                let now = w.now;
                let (k, v) = entry(table, id, f >> 4);
                let node = &mut w.nodes[side];
                let cache = if f & 2 == 0 {
                    &mut node.internal
                } else {
                    &mut node.external
                };
                if f & 4 == 0 {
                    cache.t[t].remove(&k);
                } else if cache.t[t].len() < MAX_ENTRIES {
                    cache.t[t].insert(k, (v, now));
                }
            }
        }
    }
    heal(&mut w);
}

/// The link heals, nothing is forged or changed: every message is
/// delivered at once. Each period repairs at least one differing leaf
/// each way, so the caches agree within a period per differing leaf (and
/// a few for what the forged phase left behind: a throttled DigestTop, a
/// spent L, pending Prunes). From then on, with nothing pending, rounds
/// over equal caches must ask for, resend and prune nothing.
fn heal(w: &mut World) {
    for l in &mut w.links {
        l.clear();
    }
    let periods = w.differing_leaves() + 3;
    let end = w.now + w.nodes[0].cfg.period * (periods as u32 + 1);
    let settled = |w: &World| {
        (0..2).all(|i| {
            w.nodes[i].internal.same(&w.nodes[1 - i].external)
                && w.nodes[i].accepted.is_empty()
                && w.nodes[i].noted == 0
        })
    };
    while !settled(w) {
        assert!(
            w.now < end,
            "no agreement after the heal: {} leaves differ",
            w.differing_leaves()
        );
        heal_step(w);
    }
    let before = [w.nodes[0].counters, w.nodes[1].counters];
    let quiet_until = w.now + w.nodes[0].cfg.period * 2;
    while w.now < quiet_until {
        heal_step(w);
    }
    for (n, c) in w.nodes.iter().zip(before) {
        let now = n.counters;
        assert!(now.rounds > c.rounds);
        assert_eq!(
            (now.buckets_differing, now.leaves_repaired),
            (c.buckets_differing, c.leaves_repaired),
            "{}: equal caches, a repair asked",
            n.name
        );
        assert_eq!(
            (now.entries_resent, now.entries_pruned),
            (c.entries_resent, c.entries_pruned),
            "{}: equal caches, entries repaired",
            n.name
        );
    }
}

/// The next due timer, and every message that follows, delivered.
fn heal_step(w: &mut World) {
    let due = w.nodes[0].ae.poll_at().min(w.nodes[1].ae.poll_at());
    w.now = due.max(w.now);
    w.due();
    w.deliver_all();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));
