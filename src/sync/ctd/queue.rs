//! The two queues of the conntrackd-protocol engine: what waits to be
//! sent ([`TxQueue`]: control messages first, then keys, repeated changes
//! to one key coalescing) and what was sent and awaits the peer's ACK in
//! FT-FW ([`ResendQueue`], conntrackd's `rs_queue`, bounded by
//! `ResendQueueSize`).
//!
//! Both hold keys, never message copies: a key is built into a message
//! from the internal cache at transmit time, so a resend carries the
//! newest state. A key is in at most one of the two queues (conntrackd's
//! single queue node per object): queuing a key that awaits an ACK takes
//! it out of the resend queue.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::sync::tx::KEEP_CAPACITY;
use crate::sync::{Key, ResendEntry, Stats};
use crate::time::Instant;
use crate::wire::Seq;
use crate::wire::ctd::flag;

/// Most control messages waiting to be sent (the oldest gives way). A
/// NACK that gives way is never sent, so conntrackd never resends its gap:
/// the bound is far above what a burst causes (one ACK and one NACK per
/// lost datagram; consecutive ACKs join) and costs 12 bytes an entry.
const CONTROL_QUEUE: usize = 1 << 16;

/// A control message of conntrackd's protocol (type `NET_T_CTL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    Ack {
        from: Seq,
        to: Seq,
    },
    Nack {
        from: Seq,
        to: Seq,
    },
    /// A NACK of the numbers after the last one heard (`tail`). Not kept
    /// for resending: resent late, it would name what arrived since and
    /// waits for its ACK, and have it all sent again (each resend of data
    /// starting another series). A lost one is followed by the next of
    /// its series.
    Query {
        from: Seq,
        to: Seq,
    },
    Resync,
    Alive,
}

impl Ctl {
    /// An ACK or NACK: it names the peer's numbers.
    fn is_report(self) -> bool {
        matches!(self, Ctl::Ack { .. } | Ctl::Nack { .. } | Ctl::Query { .. })
    }

    /// The header flag of its kind (`NET_F_*`).
    pub(crate) fn flag(self) -> u8 {
        match self {
            Ctl::Ack { .. } => flag::ACK,
            Ctl::Nack { .. } | Ctl::Query { .. } => flag::NACK,
            Ctl::Resync => flag::RESYNC,
            Ctl::Alive => flag::ALIVE,
        }
    }
}

/// What a sent message was, as the resend queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    Key(Key),
    Ctl(Ctl),
}

/// The next thing to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    Ctl(Ctl),
    /// A key, and whether the peer must be told it is new.
    Key(Key, bool),
}

/// Everything waiting to be sent.
#[derive(Debug, Default)]
pub(crate) struct TxQueue {
    control: VecDeque<Ctl>,
    keys: VecDeque<Key>,
    /// The keys waiting, and for each whether it is new to the peer.
    queued: HashMap<Key, bool>,
    capacity: usize,
}

impl TxQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        TxQueue {
            capacity,
            ..Default::default()
        }
    }

    pub(crate) fn has_control(&self) -> bool {
        !self.control.is_empty()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.control.is_empty() && self.keys.is_empty()
    }

    /// Keys waiting.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Queues `key`; false when the queue is full (counted).
    pub(crate) fn key(
        &mut self,
        key: Key,
        new: bool,
        stats: &mut Stats,
    ) -> bool {
        if let Some(n) = self.queued.get_mut(&key) {
            *n |= new;
            return true;
        }
        if self.keys.len() >= self.capacity {
            stats.tx_queue_full += 1;
            return false;
        }
        self.queued.insert(key.clone(), new);
        self.keys.push_back(key);
        true
    }

    /// Queues a control message. An ACK that continues the ACK queued
    /// last joins it (a burst received at once is acknowledged in one
    /// message, not one per window, and no ACK gives way to the bound).
    pub(crate) fn control(&mut self, c: Ctl) {
        if let Ctl::Ack { from, to: new_to } = c
            && let Some(Ctl::Ack { to, .. }) = self.control.back_mut()
            && from == to.next()
        {
            *to = new_to;
            return;
        }
        if self.control.len() >= CONTROL_QUEUE {
            self.control.pop_front();
        }
        self.control.push_back(c);
    }

    /// Drops the ACKs and NACKs waiting (the peer restarted: they name
    /// its old numbers).
    pub(crate) fn drop_reports(&mut self) {
        self.control.retain(|c| !c.is_report());
    }

    /// What [`TxQueue::pop`] would return.
    pub(crate) fn peek(&self) -> Option<Next> {
        if let Some(c) = self.control.front() {
            return Some(Next::Ctl(*c));
        }
        let k = self.keys.front()?;
        Some(Next::Key(
            k.clone(),
            self.queued.get(k).copied().unwrap_or(false),
        ))
    }

    pub(crate) fn pop(&mut self) {
        if self.control.pop_front().is_some() {
            return;
        }
        if let Some(k) = self.keys.pop_front() {
            self.queued.remove(&k);
        }
        if self.keys.is_empty() {
            // A burst's room goes back once it is sent (see
            // `tx::KEEP_CAPACITY`).
            release_slack(&mut self.keys, &mut self.queued);
        }
    }

    #[cfg(test)]
    fn capacities(&self) -> (usize, usize) {
        (self.keys.capacity(), self.queued.capacity())
    }

    /// Every waiting key, emptying the key queue (a protocol switch
    /// carries them over).
    pub(crate) fn drain_keys(&mut self) -> Vec<(Key, bool)> {
        self.keys
            .drain(..)
            .map(|k| {
                let new = self.queued.remove(&k).unwrap_or(false);
                (k, new)
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    seq: Seq,
    at: Instant,
    what: Sent,
    /// False once the key was queued again (it left this queue).
    live: bool,
}

/// Sent messages awaiting an ACK, in sending (= sequence) order.
#[derive(Debug, Default)]
pub(crate) struct ResendQueue {
    q: VecDeque<Entry>,
    /// Where each key awaiting an ACK is.
    index: HashMap<Key, Seq>,
    live: usize,
    capacity: usize,
}

impl ResendQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        ResendQueue {
            capacity: capacity.max(1),
            ..Default::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The entries, oldest first; control messages with their header flag.
    pub(crate) fn iter(&self) -> impl Iterator<Item = ResendEntry> + '_ {
        self.q.iter().filter(|e| e.live).map(|e| match e.what {
            Sent::Key(_) => ResendEntry::Object(e.seq),
            Sent::Ctl(c) => ResendEntry::Control(e.seq, c.flag()),
        })
    }

    /// Keeps `what`, sent as `seq` at `now`; when full the oldest goes
    /// (counted: only a RESYNC can bring it back).
    pub(crate) fn push(
        &mut self,
        seq: Seq,
        what: Sent,
        now: Instant,
        stats: &mut Stats,
    ) {
        if self.live >= self.capacity {
            while let Some(e) = self.q.pop_front() {
                if e.live {
                    self.unindex(&e);
                    self.live -= 1;
                    stats.resend_queue_dropped += 1;
                    break;
                }
            }
        }
        if let Sent::Key(k) = &what
            && let Some(old) = self.index.insert(k.clone(), seq)
        {
            self.mark_stale(old);
        }
        self.q.push_back(Entry {
            seq,
            at: now,
            what,
            live: true,
        });
        self.live += 1;
    }

    /// `key` is queued for sending again: it no longer awaits an ACK.
    pub(crate) fn forget(&mut self, key: &Key) {
        if let Some(seq) = self.index.remove(key) {
            self.mark_stale(seq);
        }
    }

    fn mark_stale(&mut self, seq: Seq) {
        let i = self.q.partition_point(|e| e.seq < seq);
        if let Some(e) = self.q.get_mut(i)
            && e.seq == seq
            && e.live
        {
            e.live = false;
            self.live -= 1;
        }
        // Stale entries are dropped as they reach the front, or all at
        // once when they outnumber the live ones.
        while self.q.front().is_some_and(|e| !e.live) {
            self.q.pop_front();
        }
        if self.q.len() > 2 * self.live + 1024 {
            self.q.retain(|e| e.live);
        }
    }

    fn unindex(&mut self, e: &Entry) {
        if let Sent::Key(k) = &e.what
            && self.index.get(k) == Some(&e.seq)
        {
            self.index.remove(k);
        }
    }

    /// Removes and returns the live entries numbered `from..=to`.
    pub(crate) fn take_range(&mut self, from: Seq, to: Seq) -> Vec<Sent> {
        let i = self.q.partition_point(|e| e.seq < from);
        let j = self.q.partition_point(|e| e.seq <= to).max(i);
        let taken: Vec<Entry> = self.q.drain(i..j).collect();
        let mut out = Vec::new();
        for e in taken {
            if e.live {
                self.unindex(&e);
                self.live -= 1;
                out.push(e.what);
            }
        }
        release_slack(&mut self.q, &mut self.index);
        out
    }

    /// Removes and returns the keys numbered up to `upto`; control
    /// messages stay.
    pub(crate) fn take_keys_upto(&mut self, upto: Seq) -> Vec<Key> {
        let j = self.q.partition_point(|e| e.seq <= upto);
        let mut out = Vec::new();
        for e in self.q.range_mut(..j) {
            if let (true, Sent::Key(k)) = (e.live, &e.what) {
                e.live = false;
                out.push(k.clone());
            }
        }
        for k in &out {
            self.index.remove(k);
        }
        self.live -= out.len();
        self.q.retain(|e| e.live);
        release_slack(&mut self.q, &mut self.index);
        out
    }

    /// When the oldest entry numbered before `upto` (which the peer
    /// acknowledged past) was sent, if one is held.
    pub(crate) fn passed_over_since(&self, upto: Seq) -> Option<Instant> {
        let e = self.q.iter().find(|e| e.live)?;
        (e.seq < upto).then_some(e.at)
    }

    /// Entries numbered before `upto` (which the peer acknowledged past)
    /// and sent at least `age` before `now`: the peer skipped them (their
    /// NACK was lost, or they arrived late and were dropped).
    pub(crate) fn take_passed_over(
        &mut self,
        upto: Seq,
        now: Instant,
        age: Duration,
    ) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(e) = self.q.front() {
            if !e.live {
                self.q.pop_front();
                continue;
            }
            if e.seq >= upto || now.since(e.at) < age {
                break;
            }
            if let Some(e) = self.q.pop_front() {
                self.unindex(&e);
                self.live -= 1;
                out.push(e.what);
            }
        }
        release_slack(&mut self.q, &mut self.index);
        out
    }

    /// Drops the ACKs and NACKs kept for resending (the peer restarted:
    /// they name its old numbers).
    pub(crate) fn drop_reports(&mut self) {
        let mut dropped = 0;
        for e in self.q.iter_mut() {
            if e.live && matches!(e.what, Sent::Ctl(c) if c.is_report()) {
                e.live = false;
                dropped += 1;
            }
        }
        self.live -= dropped;
        self.q.retain(|e| e.live);
        release_slack(&mut self.q, &mut self.index);
    }

    /// Empties the queue, returning what was live.
    pub(crate) fn clear(&mut self) -> Vec<Sent> {
        self.index.clear();
        self.live = 0;
        let out = self
            .q
            .drain(..)
            .filter(|e| e.live)
            .map(|e| e.what)
            .collect();
        release_slack(&mut self.q, &mut self.index);
        out
    }

    #[cfg(test)]
    fn capacities(&self) -> (usize, usize) {
        (self.q.capacity(), self.index.capacity())
    }
}

/// Gives back most of a queue's and its index's room once they hold far
/// less than it (a burst of 100 000 keys is several MB that a VecDeque and
/// a HashMap never return on their own): all of it when they are empty,
/// else all but room for twice what is left, or [`KEEP_CAPACITY`].
fn release_slack<T, K: std::hash::Hash + Eq, V>(
    q: &mut VecDeque<T>,
    index: &mut HashMap<K, V>,
) {
    if q.capacity() > KEEP_CAPACITY && q.len() < q.capacity() / 4 {
        if q.is_empty() {
            *q = VecDeque::new();
        } else {
            q.shrink_to((2 * q.len()).max(KEEP_CAPACITY));
        }
    }
    if index.capacity() > KEEP_CAPACITY && index.len() < index.capacity() / 4 {
        if index.is_empty() {
            *index = HashMap::new();
        } else {
            index.shrink_to((2 * index.len()).max(KEEP_CAPACITY));
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::{L4, Tuple};
    use crate::wire::CtKey;

    fn key(n: u16) -> Key {
        let t = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 6,
            l4: L4::Ports { src: n, dst: 80 },
        };
        Key::Ct(CtKey { orig: t, zone: 0 })
    }

    #[test]
    fn resend_queue_moves_keys_acks_ranges_and_is_bounded() {
        let mut st = Stats::default();
        let mut rs = ResendQueue::new(3);
        let t = Instant::from_millis(0);
        rs.push(Seq(10), Sent::Key(key(1)), t, &mut st);
        rs.push(Seq(11), Sent::Ctl(Ctl::Alive), t, &mut st);
        rs.push(Seq(12), Sent::Key(key(2)), t, &mut st);
        rs.forget(&key(2));
        assert_eq!(rs.len(), 2);
        rs.push(Seq(13), Sent::Key(key(3)), t, &mut st);
        rs.push(Seq(14), Sent::Key(key(4)), t, &mut st);
        assert_eq!(st.resend_queue_dropped, 1, "seq 10 gave way");
        assert_eq!(
            rs.iter().collect::<Vec<_>>(),
            vec![
                ResendEntry::Control(Seq(11), 0x10),
                ResendEntry::Object(Seq(13)),
                ResendEntry::Object(Seq(14))
            ]
        );
        assert_eq!(rs.take_range(Seq(12), Seq(13)), vec![Sent::Key(key(3))]);
        assert_eq!(
            rs.take_passed_over(
                Seq(14),
                Instant::from_millis(0),
                Duration::ZERO
            )
            .len(),
            1
        );
        assert_eq!(rs.clear(), vec![Sent::Key(key(4))]);
        assert_eq!(rs.len(), 0);
        // Across the wrap.
        rs.push(Seq(u32::MAX), Sent::Key(key(5)), t, &mut st);
        rs.push(Seq(0), Sent::Key(key(6)), t, &mut st);
        assert_eq!(rs.take_range(Seq(u32::MAX - 3), Seq(0)).len(), 2);
    }

    #[test]
    fn acks_that_continue_each_other_join() {
        let mut q = TxQueue::new(10);
        let ack = |f, t| Ctl::Ack {
            from: Seq(f),
            to: Seq(t),
        };
        q.control(ack(1, 20));
        q.control(ack(21, 40));
        q.control(Ctl::Nack {
            from: Seq(41),
            to: Seq(45),
        });
        q.control(ack(46, 50));
        q.control(ack(52, 60));
        let mut sent = Vec::new();
        while let Some(Next::Ctl(c)) = q.peek() {
            sent.push(c);
            q.pop();
        }
        assert_eq!(
            sent,
            [
                ack(1, 40),
                Ctl::Nack {
                    from: Seq(41),
                    to: Seq(45)
                },
                ack(46, 50),
                ack(52, 60)
            ]
        );
    }

    #[test]
    fn a_sent_and_acknowledged_burst_gives_its_room_back() {
        let mut stats = Stats::default();
        let burst = 10_000u16;
        let mut tx = TxQueue::new(20_000);
        for n in 0..burst {
            tx.key(key(n), true, &mut stats);
        }
        assert!(tx.capacities().0 >= usize::from(burst));
        let mut rq = ResendQueue::new(20_000);
        let mut seq = Seq(1);
        while let Some(Next::Key(k, _)) = tx.peek() {
            tx.pop();
            rq.push(seq, Sent::Key(k), Instant::from_millis(0), &mut stats);
            seq = seq.next();
        }
        let (keys, queued) = tx.capacities();
        assert!(
            keys <= KEEP_CAPACITY && queued <= KEEP_CAPACITY,
            "{keys} {queued}"
        );
        assert!(rq.capacities().0 >= usize::from(burst), "all await an ACK");
        assert_eq!(rq.take_range(Seq(1), seq).len(), usize::from(burst));
        let (q, index) = rq.capacities();
        assert!(q <= KEEP_CAPACITY && index <= KEEP_CAPACITY, "{q} {index}");
    }
}
