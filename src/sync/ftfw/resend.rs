//! FT-FW's resend queue: what we sent and the peer has not acknowledged,
//! in sending order, as `(Seq, what, when)`. It holds keys, never message
//! copies, so a resend carries the entry's newest state. Bounded by
//! `ResendQueueSize`: when full, the oldest entry is dropped and counted.

use std::collections::VecDeque;

use crate::sync::Stats;
use crate::sync::tx::{KEEP_CAPACITY, Sent};
use crate::time::Instant;
use crate::wire::Seq;

#[derive(Debug, Clone)]
pub(crate) struct ResendQueue {
    q: VecDeque<(Seq, Sent, Instant)>,
    capacity: usize,
}

impl ResendQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        ResendQueue {
            q: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// Sequence numbers, and whether each is a RESYNC request.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Seq, bool)> + '_ {
        self.q
            .iter()
            .map(|(s, sent, _)| (*s, matches!(sent, Sent::Resync)))
    }

    /// Keeps `what`, sent as `seq` at `now`, until acknowledged.
    pub(crate) fn push(
        &mut self,
        seq: Seq,
        what: Sent,
        now: Instant,
        stats: &mut Stats,
    ) {
        if self.q.len() >= self.capacity {
            self.q.pop_front();
            stats.resend_queue_dropped += 1;
        }
        self.q.push_back((seq, what, now));
    }

    /// The peer has everything from `from` to `to`.
    pub(crate) fn ack(&mut self, from: Seq, to: Seq) {
        self.q.retain(|(s, _, _)| !s.in_range(from, to));
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
    }

    /// Removes and returns, in sending order, what `pick` (given the
    /// number and the sending time) selects.
    pub(crate) fn take(
        &mut self,
        mut pick: impl FnMut(Seq, Instant) -> bool,
    ) -> Vec<Sent> {
        let mut taken = Vec::new();
        let mut keep = VecDeque::with_capacity(self.q.len());
        for (s, sent, at) in self.q.drain(..) {
            if pick(s, at) {
                taken.push(sent);
            } else {
                keep.push_back((s, sent, at));
            }
        }
        self.q = keep;
        taken
    }

    /// When `seq` went out, while it is held (the queue is in sending
    /// order, so in number order).
    pub(crate) fn sent_at(&self, seq: Seq) -> Option<Instant> {
        let i = self.q.partition_point(|(s, _, _)| *s < seq);
        match self.q.get(i) {
            Some((s, _, at)) if *s == seq => Some(*at),
            _ => None,
        }
    }

    /// The oldest number still held.
    pub(crate) fn oldest(&self) -> Option<Seq> {
        self.iter().next().map(|(s, _)| s)
    }

    pub(crate) fn clear(&mut self) {
        self.q.clear();
        self.release_slack();
    }
}
