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
//! it out of the resend queue. The keys waiting are a [`KeyQueue`], as
//! ctsyncd's protocol queues them: a bulk's in a list of their own.

mod resend;

use std::collections::{HashMap, VecDeque};

pub(crate) use self::resend::{ResendQueue, Sent};
use crate::sync::key_queue::{KEEP_CAPACITY, KeyQueue, Place};
use crate::sync::{Key, Stats};
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
    pub(super) fn is_report(self) -> bool {
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

/// The next thing to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    Ctl(Ctl),
    /// A key, whether the peer must be told it is new, and where it
    /// waited (to be put back there).
    Key(Key, bool, Place),
}

/// Everything waiting to be sent.
#[derive(Debug, Default)]
pub(crate) struct TxQueue {
    control: VecDeque<Ctl>,
    keys: KeyQueue,
}

impl TxQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        TxQueue {
            control: VecDeque::new(),
            keys: KeyQueue::new(capacity),
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
        self.keys.enqueue(key, new, stats)
    }

    /// Queues every key of the cache as a bulk (see [`KeyQueue::bulk`]).
    pub(crate) fn bulk(&mut self, keys: Vec<Key>) {
        self.keys.bulk(keys);
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

    /// The next thing to send: control messages first, then keys.
    pub(crate) fn take(&mut self) -> Option<Next> {
        if let Some(c) = self.control.pop_front() {
            return Some(Next::Ctl(c));
        }
        let (key, new, from) = self.keys.take()?;
        Some(Next::Key(key, new, from))
    }

    /// Puts back what [`TxQueue::take`] took, where it was.
    pub(crate) fn put_back(&mut self, next: Next) {
        match next {
            Next::Ctl(c) => self.control.push_front(c),
            Next::Key(key, new, from) => self.keys.put_back(key, new, from),
        }
    }

    /// Gives a burst's room back once it is sent (see
    /// [`KeyQueue::release_if_drained`]).
    pub(crate) fn release_if_drained(&mut self) {
        self.keys.release_if_drained();
    }

    #[cfg(test)]
    fn capacities(&self) -> (usize, usize) {
        self.keys.capacities()
    }

    /// Drops the waiting keys `which` names (the internal cache forgot
    /// them). Returns how many.
    pub(crate) fn forget_keys(
        &mut self,
        which: &dyn Fn(&Key) -> bool,
    ) -> usize {
        self.keys.forget(which)
    }

    /// Every waiting key, emptying the key queue (a protocol switch
    /// carries them over).
    pub(crate) fn drain_keys(&mut self) -> Vec<(Key, bool)> {
        self.keys.drain()
    }
}

/// Gives back most of a queue's and its index's room once they hold far
/// less than it (a burst of 100 000 keys is several MB that a VecDeque and
/// a HashMap never return on their own): all of it when they are empty,
/// else all but room for twice what is left, or [`KEEP_CAPACITY`].
pub(super) fn release_slack<T, K: std::hash::Hash + Eq, V>(
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
    use crate::time::Instant;
    use crate::wire::CtKey;

    pub(super) fn key(n: u16) -> Key {
        let t = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 6,
            l4: L4::Ports { src: n, dst: 80 },
        };
        Key::Ct(CtKey { orig: t, zone: 0 })
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
        while let Some(Next::Ctl(c)) = q.take() {
            sent.push(c);
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
        while let Some(Next::Key(k, ..)) = tx.take() {
            tx.release_if_drained();
            let t = Instant::from_millis(0);
            rq.push(seq, (Sent::Key(k), false), 0, t, &mut stats);
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
