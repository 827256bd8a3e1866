//! FT-FW's resend queue: what we sent and the peer has not acknowledged,
//! in sending order, as `(Seq, what, when)`. It holds keys, never message
//! copies, so a resend carries the entry's newest state. An entry is held
//! once, under the number it was last sent as (conntrackd's rs_queue holds
//! each object once): an older send of it gives its place up, as a resend
//! of it would carry the same state. Bounded by `ResendQueueSize`
//! entries: while a peer is heard no more goes out than it holds (FT-FW's
//! `room`); else, when full, the oldest is dropped and counted. For a
//! peer not heard lately, FT-FW gives the states up past a few thousand
//! ([`ResendQueue::give_up_present`]): a bulk update carries them.

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::sync::tx::{KEEP_CAPACITY, Sent};
use crate::sync::{Key, Stats};
use crate::time::Instant;
use crate::wire::Seq;

/// Places given up (a later send of their key holds it) that are left in
/// the queue, beyond the entries held, before it is compacted.
const GIVEN_UP_SLACK: usize = 1024;

/// One send: its number, what (None: a later send of its key holds it),
/// when, its key's hash (computed once, at the send), and whether it was
/// a DEL (in the padding: the place is 72 bytes either way).
#[derive(Debug, Clone)]
struct Place {
    seq: Seq,
    sent: Option<Sent>,
    at: Instant,
    hash: u64,
    gone: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ResendQueue {
    /// In sending order.
    q: VecDeque<Place>,
    /// (hash, number) of each held key's last send, by the key's keyed
    /// SipHash (8 bytes an entry, not a key's 48: a collision only leaves
    /// two places held, as every send took one before). The table hashes
    /// by that value itself: it is already keyed and random.
    latest: HashTable<(u64, Seq)>,
    hasher: RandomState,
    /// Entries held (the places whose `sent` is Some).
    held: usize,
    capacity: usize,
}

impl ResendQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        ResendQueue {
            q: VecDeque::new(),
            latest: HashTable::new(),
            hasher: RandomState::new(),
            held: 0,
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.held
    }

    /// `ResendQueueSize`.
    pub(crate) fn bound(&self) -> usize {
        self.capacity
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// Sequence numbers, and whether each is a RESYNC request.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Seq, bool)> + '_ {
        self.q.iter().filter_map(|p| {
            p.sent
                .as_ref()
                .map(|sent| (p.seq, matches!(sent, Sent::Resync)))
        })
    }

    /// Keeps `what`, sent as `seq` at `now` (`gone`: as a DEL), until
    /// acknowledged.
    pub(crate) fn push(
        &mut self,
        seq: Seq,
        what: Sent,
        gone: bool,
        now: Instant,
        stats: &mut Stats,
    ) {
        let mut hash = 0;
        if let Sent::Key(k) = &what {
            hash = self.hasher.hash_one(k);
            let slot = self.latest.entry(hash, |e| e.0 == hash, |e| e.0);
            match slot {
                hashbrown::hash_table::Entry::Occupied(mut o) => {
                    let old = std::mem::replace(&mut o.get_mut().1, seq);
                    self.give_up(old, k);
                }
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert((hash, seq));
                }
            }
        }
        while self.held >= self.capacity {
            match self.q.pop_front() {
                Some(p) if p.sent.is_some() => {
                    self.forget(&p);
                    stats.resend_queue_dropped += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        self.q.push_back(Place {
            seq,
            sent: Some(what),
            at: now,
            hash,
            gone,
        });
        self.held += 1;
    }

    /// `key`, held as `seq`, was sent again: its place is given up.
    fn give_up(&mut self, seq: Seq, key: &Key) {
        let i = self.q.partition_point(|p| p.seq < seq);
        if let Some(p) = self.q.get_mut(i)
            && p.seq == seq
            && matches!(&p.sent, Some(Sent::Key(k)) if k == key)
        {
            p.sent = None;
            self.held -= 1;
        }
        if self.q.len() - self.held > self.held.max(GIVEN_UP_SLACK) {
            self.q.retain(|p| p.sent.is_some());
        }
    }

    /// A held place left the queue.
    fn forget(&mut self, p: &Place) {
        self.held -= 1;
        if matches!(p.sent, Some(Sent::Key(_))) {
            forget_key(&mut self.latest, p.hash, p.seq);
        }
    }

    /// The peer has everything from `from` to `to`. The queue is in
    /// number order, so those are one run of it, found by two searches:
    /// a scan of the whole queue for each ACK cost a bulk of 100 000
    /// held entries a pass over all of them per ACK.
    pub(crate) fn ack(&mut self, from: Seq, to: Seq) {
        let i = self.q.partition_point(|p| p.seq < from);
        let j = self.q.partition_point(|p| p.seq <= to).max(i);
        for p in self.q.drain(i..j) {
            if let Some(sent) = &p.sent {
                self.held -= 1;
                if let Sent::Key(_) = sent {
                    forget_key(&mut self.latest, p.hash, p.seq);
                }
            }
        }
        self.release_slack();
    }

    /// After a burst is acknowledged, most of its room goes back (a
    /// resend queue of 131 072 is 8 MB that a VecDeque never returns on
    /// its own); room for twice what is left stays.
    fn release_slack(&mut self) {
        let cap = self.q.capacity();
        if cap > KEEP_CAPACITY && self.q.len() < cap / 4 {
            self.q.shrink_to((2 * self.q.len()).max(KEEP_CAPACITY));
        }
        let cap = self.latest.capacity();
        if cap > KEEP_CAPACITY && self.latest.len() < cap / 4 {
            self.latest
                .shrink_to((2 * self.latest.len()).max(KEEP_CAPACITY), |e| e.0);
        }
    }

    /// Removes and returns, in sending order, what `pick` (given the
    /// number and the sending time) selects; expectations after the rest:
    /// a master sent again after its expectation goes again first, as a
    /// bulk sends them (its older place, given up, no longer leads).
    pub(crate) fn take(
        &mut self,
        mut pick: impl FnMut(Seq, Instant) -> bool,
    ) -> Vec<Sent> {
        let mut taken = Vec::new();
        let mut keep = VecDeque::with_capacity(self.held);
        for mut p in std::mem::take(&mut self.q) {
            if p.sent.is_none() {
                continue;
            }
            if pick(p.seq, p.at) {
                self.forget(&p);
                taken.extend(p.sent.take());
            } else {
                keep.push_back(p);
            }
        }
        self.q = keep;
        taken.sort_by_key(|s| matches!(s, Sent::Key(Key::Exp(_))));
        taken
    }

    /// When `seq` went out, while it is held or its place given up to a
    /// later send is kept (the queue is in sending order, so in number
    /// order).
    pub(crate) fn sent_at(&self, seq: Seq) -> Option<Instant> {
        let i = self.q.partition_point(|p| p.seq < seq);
        match self.q.get(i) {
            Some(p) if p.seq == seq => Some(p.at),
            _ => None,
        }
    }

    /// Whether a send numbered within `from..=to` still holds its entry.
    /// Acknowledged numbers do not, nor places given up to a later send
    /// of their key: whether such a place is still in the queue depends
    /// on when it was last compacted, and a NACK of it resends nothing.
    ///
    /// The queue is in number order: a search for `from`, then a walk
    /// that stops at the first held place or past `to`. It passes only
    /// given-up places, of which the queue keeps at most
    /// max(held, [`GIVEN_UP_SLACK`]) (`give_up` compacts beyond that):
    /// never more than the [`ResendQueue::take`] that follows a NACK.
    pub(crate) fn keeps_any(&self, from: Seq, to: Seq) -> bool {
        let i = self.q.partition_point(|p| p.seq < from);
        self.q
            .range(i..)
            .take_while(|p| p.seq <= to)
            .any(|p| p.sent.is_some())
    }

    /// The oldest number still held.
    pub(crate) fn oldest(&self) -> Option<Seq> {
        self.iter().next().map(|(s, _)| s)
    }

    /// Gives up every entry held whose send carried its state (a bulk
    /// update will carry it again), keeping DELs and RESYNC requests
    /// (no bulk carries those). Returns how many were given up.
    pub(crate) fn give_up_present(&mut self) -> usize {
        self.give_up_states(&|_| true)
    }

    /// Gives up the entries held whose send carried the state of a key
    /// `which` names (the internal cache forgot them: `-f`), keeping DELs
    /// and RESYNC requests. Returns how many were given up.
    pub(crate) fn give_up_states(
        &mut self,
        which: &dyn Fn(&Key) -> bool,
    ) -> usize {
        let before = self.held;
        let latest = &mut self.latest;
        self.q.retain(|p| match &p.sent {
            Some(Sent::Key(k)) if !p.gone && which(k) => {
                forget_key(latest, p.hash, p.seq);
                false
            }
            Some(_) => true,
            None => false,
        });
        self.held = self.q.len();
        self.release_slack();
        before - self.held
    }
}

/// The entry of `hash` left the queue: forgotten, unless a later send of
/// a key of the same hash holds the index.
fn forget_key(latest: &mut HashTable<(u64, Seq)>, hash: u64, seq: Seq) {
    if let Ok(o) = latest.find_entry(hash, |e| e.0 == hash && e.1 == seq) {
        o.remove();
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sync::Key;

    /// States go (a bulk carries them again); DELs and RESYNC stay, and
    /// a key given up and sent again is held anew.
    #[test]
    fn giving_up_the_present_keeps_deletions_and_resyncs() {
        let (t, mut st) = (Instant::from_millis(0), Stats::default());
        let mut q = ResendQueue::new(100);
        q.push(Seq(1), k(1), false, t, &mut st);
        q.push(Seq(2), k(2), true, t, &mut st);
        q.push(Seq(3), Sent::Resync, false, t, &mut st);
        q.push(Seq(4), k(3), false, t, &mut st);
        q.push(Seq(5), k(1), false, t, &mut st);
        assert_eq!(q.len(), 4);
        assert_eq!(q.give_up_present(), 2);
        let held: Vec<_> = q.iter().collect();
        assert_eq!(held, vec![(Seq(2), false), (Seq(3), true)]);
        q.push(Seq(6), k(1), false, t, &mut st);
        assert_eq!(q.len(), 3);
        assert_eq!(q.take(|_, _| true).len(), 3);
    }

    fn k(n: u8) -> Sent {
        let c = crate::sync::test::ct(u16::from(n));
        Sent::Key(Key::Ct(crate::wire::ct_key_of(&c)))
    }

    #[test]
    fn a_key_sent_again_holds_one_place_and_evicts_no_other() {
        // Three entries sent, then the third changed twice more (each
        // change sent, none acknowledged), in a queue of three: as in
        // conntrackd's rs_queue, an entry is held once, under its last
        // number, and no other gives way.
        let t = Instant::from_millis(0);
        let mut st = Stats::default();
        let mut q = ResendQueue::new(3);
        for (seq, n) in [(1, 1), (2, 2), (3, 3), (4, 3), (5, 3)] {
            q.push(Seq(seq), k(n), false, t, &mut st);
        }
        assert_eq!(st.resend_queue_dropped, 0);
        assert_eq!(q.len(), 3);
        let held: Vec<Seq> = q.iter().map(|(s, _)| s).collect();
        assert_eq!(held, [Seq(1), Seq(2), Seq(5)]);
        assert_eq!(q.oldest(), Some(Seq(1)));
        // A NACK of the older sends of the third resends nothing: its
        // last send carries its newest state.
        assert!(q.take(|s, _| s.in_range(Seq(3), Seq(4))).is_empty());
        // A fourth entry makes the oldest give way, counted.
        q.push(Seq(6), k(4), false, t, &mut st);
        assert_eq!(st.resend_queue_dropped, 1);
        assert_eq!(q.take(|_, _| true), [k(2), k(3), k(4)]);
        assert_eq!(q.len(), 0);
        // Acknowledged, a key is forgotten: sent again, it is new.
        q.push(Seq(7), k(1), false, t, &mut st);
        q.ack(Seq(7), Seq(7));
        q.push(Seq(8), k(1), false, t, &mut st);
        assert_eq!(q.take(|_, _| true), [k(1)]);
    }

    #[test]
    fn only_a_held_place_is_kept() {
        // 1 and 2 sent, 1 again as 3 (its place 1 given up), 4 acked.
        let t = Instant::from_millis(0);
        let mut st = Stats::default();
        let mut q = ResendQueue::new(10);
        for (seq, n) in [(1, 1), (2, 2), (3, 1), (4, 3)] {
            q.push(Seq(seq), k(n), false, t, &mut st);
        }
        q.ack(Seq(4), Seq(4));
        let keeps = |f, to| q.keeps_any(Seq(f), Seq(to));
        assert!(!keeps(1, 1), "given up");
        assert!(keeps(1, 2) && keeps(2, 3) && keeps(3, 4));
        assert!(!keeps(4, 4), "acknowledged");
        assert!(!keeps(0, 0) && !keeps(5, 9), "never held");
    }

    #[test]
    fn a_resend_puts_conntracks_before_expectations() {
        // A master, its expectation, the master again: all three lost.
        // The master's last send is newer than the expectation's, yet it
        // goes again first (an expectation injected before its master
        // fails: DisableExternalCache).
        let t = Instant::from_millis(0);
        let mut st = Stats::default();
        let c = crate::sync::test::ct(1);
        let exp = Sent::Key(Key::Exp(Box::new(crate::wire::ExpKey {
            master: c.orig,
            tuple: c.orig,
            mask: c.orig,
            zone: 0,
        })));
        let mut q = ResendQueue::new(10);
        q.push(Seq(1), k(1), false, t, &mut st);
        q.push(Seq(2), exp.clone(), false, t, &mut st);
        q.push(Seq(3), k(1), false, t, &mut st);
        assert_eq!(q.take(|s, _| s.in_range(Seq(1), Seq(3))), [k(1), exp]);
    }

    /// An ACK releases exactly its range, across the wrap of the
    /// numbers too, found by search in the ordered queue.
    #[test]
    fn an_ack_releases_its_range_and_nothing_else() {
        let t = Instant::from_millis(0);
        let mut st = Stats::default();
        let mut q = ResendQueue::new(100);
        let first = u32::MAX - 4;
        for i in 0..10u32 {
            q.push(Seq(first.wrapping_add(i)), k(i as u8), false, t, &mut st);
        }
        let held = |q: &ResendQueue| -> Vec<u32> {
            q.iter().map(|(s, _)| s.0).collect()
        };
        // The middle, across the wrap: MAX - 1 ..= 1.
        q.ack(Seq(u32::MAX - 1), Seq(1));
        assert_eq!(held(&q), [first, first + 1, first + 2, 2, 3, 4]);
        assert_eq!(q.len(), 6);
        // A range reaching before the oldest and past the newest held.
        q.ack(Seq(first - 10), Seq(first + 1));
        q.ack(Seq(4), Seq(40));
        assert_eq!(held(&q), [first + 2, 2, 3]);
        // Numbers never held, an empty range: nothing.
        q.ack(Seq(100), Seq(200));
        assert_eq!(q.len(), 3);
        // Acknowledged keys are forgotten: sent again, each is held anew.
        q.push(Seq(5), k(0), false, t, &mut st);
        assert_eq!(q.len(), 4);
        assert_eq!(q.take(|_, _| true).len(), 4);
    }

    #[test]
    fn superseded_sends_do_not_grow_the_queue() {
        // One entry sent 100 000 times (fifty times the slots allowed),
        // never acknowledged. (A million took 195 s of the MIPS tests
        // under qemu-user.)
        let t = Instant::from_millis(0);
        let mut st = Stats::default();
        let mut q = ResendQueue::new(131_072);
        for seq in 0..100_000 {
            q.push(Seq(seq), k(1), false, t, &mut st);
        }
        assert_eq!(q.len(), 1);
        assert!(q.q.len() <= 2048, "{} slots", q.q.len());
        assert_eq!(q.sent_at(Seq(99_999)), Some(t));
    }
}
