//! FT-FW's resend queue ([`ResendQueue`], conntrackd's `rs_queue`,
//! bounded by `ResendQueueSize`): what was sent and awaits the peer's
//! ACK, in sequence order, as keys (a resend is built from the cache, so
//! it carries the newest state) and control messages. A key queued for
//! sending again leaves it ([`ResendQueue::forget`]); an ACK or NACK takes
//! a range; what the peer acknowledged past is found once it is old.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{Ctl, release_slack};
use crate::sync::{Key, ResendEntry, Stats};
use crate::time::Instant;
use crate::wire::Seq;

/// What a sent message was, as the resend queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    Key(Key),
    Ctl(Ctl),
}

#[derive(Debug, Clone)]
struct Entry {
    seq: Seq,
    at: Instant,
    what: Sent,
    /// The HELLO and HELLO_BACK bits it went with (`-s rsqueue` shows a
    /// control message's flags as sent, as conntrackd does).
    hello: u8,
    /// False once the key was queued again (it left this queue).
    live: bool,
    /// A key that went as a DEL (its entry gone): no bulk carries it.
    gone: bool,
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
            Sent::Ctl(c) => ResendEntry::Control(e.seq, c.flag() | e.hello),
        })
    }

    /// Keeps `what`, sent as `seq` at `now` with the HELLO bits `hello`;
    /// when full the oldest goes (counted: only a RESYNC can bring it
    /// back). `gone`: a key sent as a DEL.
    pub(crate) fn push(
        &mut self,
        seq: Seq,
        (what, gone): (Sent, bool),
        hello: u8,
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
            hello,
            live: true,
            gone,
        });
        self.live += 1;
    }

    /// `key` is queued for sending again: it no longer awaits an ACK.
    pub(crate) fn forget(&mut self, key: &Key) {
        if let Some(seq) = self.index.remove(key) {
            self.mark_stale(seq);
        }
    }

    /// The keys awaiting an ACK that `which` names no longer do (the
    /// internal cache forgot them: resent, each would go as a DEL).
    /// Returns how many.
    pub(crate) fn forget_keys(
        &mut self,
        which: &dyn Fn(&Key) -> bool,
    ) -> usize {
        let named: Vec<Key> =
            self.index.keys().filter(|k| which(k)).cloned().collect();
        for k in &named {
            self.forget(k);
        }
        named.len()
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

    /// Gives up the entries' states held (keys not sent as DELs: a bulk
    /// carries them again), for a peer that is not heard; returns how
    /// many.
    pub(crate) fn give_up_states(&mut self) -> usize {
        let mut given_up = 0;
        for e in self.q.iter_mut() {
            if let (true, false, Sent::Key(k)) = (e.live, e.gone, &e.what) {
                e.live = false;
                given_up += 1;
                if self.index.get(k) == Some(&e.seq) {
                    self.index.remove(k);
                }
            }
        }
        self.live -= given_up;
        self.q.retain(|e| e.live);
        release_slack(&mut self.q, &mut self.index);
        given_up
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
    pub(super) fn capacities(&self) -> (usize, usize) {
        (self.q.capacity(), self.index.capacity())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sync::ctd::queue::test::key;

    #[test]
    fn resend_queue_moves_keys_acks_ranges_and_is_bounded() {
        let mut st = Stats::default();
        let mut rs = ResendQueue::new(3);
        let t = Instant::from_millis(0);
        rs.push(Seq(10), (Sent::Key(key(1)), false), 0, t, &mut st);
        rs.push(Seq(11), (Sent::Ctl(Ctl::Alive), false), 0, t, &mut st);
        rs.push(Seq(12), (Sent::Key(key(2)), false), 0, t, &mut st);
        rs.forget(&key(2));
        assert_eq!(rs.len(), 2);
        rs.push(Seq(13), (Sent::Key(key(3)), false), 0, t, &mut st);
        rs.push(Seq(14), (Sent::Key(key(4)), false), 0, t, &mut st);
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
        rs.push(Seq(u32::MAX), (Sent::Key(key(5)), false), 0, t, &mut st);
        rs.push(Seq(0), (Sent::Key(key(6)), false), 0, t, &mut st);
        assert_eq!(rs.take_range(Seq(u32::MAX - 3), Seq(0)).len(), 2);
    }
}
