//! The transmit path every mode shares: the queue of keys waiting to be
//! sent (coalescing repeated changes to one entry), the queue of control
//! messages, the pending RESYNC request, the sequence counter, and the
//! filling of one datagram from them, each data message built from the
//! internal cache's current state ([`Source`]) at that moment.
//!
//! A bulk (`-B`, a resync's answer) is every key of the cache: its keys
//! wait in a queue of their own, the cache's list of them as it is, with
//! no index. Coalesced into the key queue, 100 000 of them took the list,
//! the queue and its index, each grown by doubling: 18.6 MB of peak RSS
//! (`tests/memory_release.rs`), against the list's 4.7. A key goes once
//! all the same, where it comes first: a bulk leaves out the keys queued
//! before it, and a key queued since goes with the bulk when the bulk
//! reaches it (its place in the key queue is then passed over).
//!
//! What a mode does with a sent message (FT-FW keeps it for resending) is
//! the caller's callback; this module never decides about reliability.
//!
//! One thing it does for acknowledgements: a datagram carrying new ACKs or
//! NACKs also carries, after them, those of the datagram before it (the
//! echo). Reports are coalesced, several to a datagram, so losing one
//! datagram loses them together, repeats made by the receiver included;
//! the echo puts them in a second datagram. Repeating an ACK or NACK is
//! harmless (one of what the sender no longer holds changes nothing),
//! except to a restarted sender, whose numbering starts elsewhere: the
//! echo is forgotten when the peer restarts (`forget_reports`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use super::{Key, Source, State, Stats};
use crate::time::Instant;
use crate::wire::{self, Msg, Seq, Writer};

/// Most control messages waiting to be sent (the oldest is dropped).
const CONTROL_QUEUE: usize = 256;
/// Most background (anti-entropy) messages waiting to be sent.
const BACKGROUND_QUEUE: usize = 1024;
/// Key-queue capacity kept when the queue drains (see
/// `Transmit::release_if_drained`); steady traffic stays below it.
pub(crate) const KEEP_CAPACITY: usize = 4096;

/// Which queue a key was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Keys,
    Bulk,
    /// The bulk, for a key also waiting in the key queue (queued since
    /// the bulk began), whose place there is then passed over.
    BulkTook,
}

/// A data message that went out, as a mode may want to send it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    Key(Key),
    Resync,
}

/// Everything waiting to be sent, and the numbering of what was.
pub(crate) struct Transmit {
    /// Keys waiting to be sent, in order…
    keys: VecDeque<Key>,
    /// …and for each, whether the peer must be told it is new.
    queued: HashMap<Key, bool>,
    /// A bulk's keys, sent after the first `ahead` of `keys` (queued
    /// before the bulk began) and before the rest.
    bulk: VecDeque<Key>,
    ahead: usize,
    capacity: usize,
    control: VecDeque<Msg>,
    background: VecDeque<Msg>,
    resync_pending: bool,
    next_seq: Seq,
    last_tx: Instant,
    /// The ACKs and NACKs of the last datagram that carried any.
    echo: Vec<Msg>,
    /// A control message or a resend was queued since the last datagram:
    /// the peer waits for it (see [`Transmit::is_urgent`]).
    urgent: bool,
}

impl Transmit {
    pub(crate) fn new(capacity: usize, first_seq: Seq, now: Instant) -> Self {
        Transmit {
            keys: VecDeque::new(),
            queued: HashMap::new(),
            bulk: VecDeque::new(),
            ahead: 0,
            capacity,
            control: VecDeque::new(),
            background: VecDeque::new(),
            resync_pending: false,
            next_seq: first_seq,
            last_tx: now,
            echo: Vec::new(),
            urgent: false,
        }
    }

    /// Keys waiting to be sent, a bulk's included.
    pub(crate) fn len(&self) -> usize {
        self.keys.len() + self.bulk.len()
    }

    /// True when something waits to be sent.
    pub(crate) fn is_pending(&self) -> bool {
        !self.keys.is_empty()
            || !self.bulk.is_empty()
            || !self.control.is_empty()
            || !self.background.is_empty()
            || self.resync_pending
    }

    /// True when what waits includes something the peer is waiting for:
    /// an ACK, NACK or ALIVE (a report, a probe, a handshake) or a resend.
    /// Those are not held back for more changes to fill the datagram: a
    /// loss is repaired in round trips, not coalescing periods.
    pub(crate) fn is_urgent(&self) -> bool {
        self.urgent && self.is_pending()
    }

    /// The sequence number the next data message gets.
    pub(crate) fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// When the last datagram went out.
    pub(crate) fn last_tx(&self) -> Instant {
        self.last_tx
    }

    /// Queues `key` (`new`: the peer must create it). False when the
    /// queue is full (counted).
    pub(crate) fn enqueue(
        &mut self,
        key: Key,
        new: bool,
        stats: &mut Stats,
    ) -> bool {
        // One lookup for both cases (a conntrack's key is copied, not
        // allocated).
        match self.queued.entry(key.clone()) {
            Entry::Occupied(mut o) => {
                // Coalesce: one message will carry the newest state.
                *o.get_mut() |= new;
                true
            }
            Entry::Vacant(_) if self.keys.len() >= self.capacity => {
                stats.tx_queue_full += 1;
                false
            }
            Entry::Vacant(v) => {
                v.insert(new);
                self.keys.push_back(key);
                true
            }
        }
    }

    /// Queues every key of the cache (`keys`, in the order to send them),
    /// after the keys already waiting, which it leaves out: a bulk. One
    /// under way is replaced (the new one holds all it had left to send).
    pub(crate) fn bulk(&mut self, mut keys: Vec<Key>) {
        if !self.queued.is_empty() {
            keys.retain(|k| !self.queued.contains_key(k));
        }
        self.ahead = self.keys.len();
        self.bulk = VecDeque::from(keys);
    }

    /// The next key to send and whether it is new: the keys queued before
    /// the bulk, the bulk's, then the rest. A key the bulk took along is
    /// passed over in the key queue (it has no flag in `queued`: every
    /// key waiting there has one). `None`: none waits.
    fn next_key(&mut self) -> Option<(Key, bool, Queue)> {
        loop {
            if self.ahead > 0 || self.bulk.is_empty() {
                let key = self.keys.pop_front()?;
                self.ahead = self.ahead.saturating_sub(1);
                if let Some(new) = self.queued.remove(&key) {
                    return Some((key, new, Queue::Keys));
                }
            } else {
                let key = self.bulk.pop_front()?;
                return Some(match self.queued.remove(&key) {
                    Some(new) => (key, new, Queue::BulkTook),
                    None => (key, false, Queue::Bulk),
                });
            }
        }
    }

    /// Puts back a key [`Transmit::next_key`] took, where it was.
    fn put_back(&mut self, key: Key, new: bool, from: Queue) {
        match from {
            Queue::Keys => {
                if !self.bulk.is_empty() {
                    self.ahead += 1;
                }
                self.queued.insert(key.clone(), new);
                self.keys.push_front(key);
            }
            Queue::BulkTook => {
                self.queued.insert(key.clone(), new);
                self.bulk.push_front(key);
            }
            Queue::Bulk => self.bulk.push_front(key),
        }
    }

    /// Queues a sent message again (resend on NACK or timeout).
    pub(crate) fn requeue(&mut self, sent: Sent, stats: &mut Stats) {
        stats.retransmitted += 1;
        self.urgent = true;
        match sent {
            Sent::Key(key) => {
                self.enqueue(key, false, stats);
            }
            Sent::Resync => self.resync_pending = true,
        }
    }

    /// Queues a control message; when full, the oldest gives way (a newer
    /// ACK or ALIVE says more than an old one). The same message twice in
    /// a row is queued once.
    pub(crate) fn control(&mut self, msg: Msg) {
        self.urgent = true;
        if self.control.back() == Some(&msg) {
            return;
        }
        if self.control.len() >= CONTROL_QUEUE {
            self.control.pop_front();
        }
        self.control.push_back(msg);
    }

    /// Queues a background message (anti-entropy digests and prunes):
    /// sent after control messages and before data, in a queue of its own
    /// so a large repair can neither push out ACKs nor grow without
    /// bound (the oldest gives way; the next period repairs again).
    /// True when one gave way (counted by the engine: a repair of more
    /// leaves than the queue holds loses Prunes).
    pub(crate) fn background(&mut self, msg: Msg) -> bool {
        let full = self.background.len() >= BACKGROUND_QUEUE;
        if full {
            self.background.pop_front();
        }
        self.background.push_back(msg);
        full
    }

    /// Queues a challenge or its response ahead of every other control
    /// message: the receiver must prove a session before it reads the
    /// ACKs and NACKs that follow in the same datagram.
    pub(crate) fn handshake(&mut self, msg: Msg) {
        self.urgent = true;
        if self.control.len() >= CONTROL_QUEUE {
            self.control.pop_back();
        }
        self.control.push_front(msg);
    }

    /// The peer restarted: the ACKs and NACKs waiting, and those echoed
    /// from the last datagram, are of its old session's numbers. To the
    /// new session they are reports of numbers it never sent (its
    /// numbering starts elsewhere): refused, counted in out_of_window and
    /// answered with a challenge. They go; the new session's reports
    /// start afresh. Reports name no session, so with more than one live
    /// peer another's waiting ones go too: its next report (each tick,
    /// each ALIVE answered) says the same.
    pub(crate) fn forget_reports(&mut self) {
        self.echo.clear();
        self.control
            .retain(|m| !matches!(m, Msg::Ack { .. } | Msg::Nack { .. }));
    }

    /// Rewrites every background message waiting (as a peer that reads
    /// less requires).
    pub(crate) fn map_background(&mut self, f: impl FnMut(Msg) -> Msg) {
        let waiting = std::mem::take(&mut self.background);
        self.background = waiting.into_iter().map(f).collect();
    }

    /// Asks the peer for its whole internal cache in the next datagram.
    pub(crate) fn request_resync(&mut self) {
        self.urgent = true;
        self.resync_pending = true;
    }

    /// Fills `w` (whose header says `first seq` = [`Transmit::next_seq`]):
    /// control messages first, then RESYNC, then keys until full. Each data
    /// message takes the next sequence number and is reported to `sent`,
    /// with whether it was a DEL (the key's entry is gone). At most
    /// `room` data messages are numbered (None: no bound); what is left
    /// waits in its queue.
    /// Returns the number of messages written.
    pub(crate) fn fill(
        &mut self,
        w: &mut Writer<'_>,
        src: &dyn Source,
        stats: &mut Stats,
        room: Option<usize>,
        mut sent: impl FnMut(Seq, Sent, bool, &mut Stats),
    ) -> u32 {
        let mut room = room.unwrap_or(usize::MAX);
        let mut reports = Vec::new();
        while let Some(m) = self.control.front() {
            if w.push(m).is_err() {
                break;
            }
            if matches!(m, Msg::Ack { .. } | Msg::Nack { .. }) {
                reports.push(m.clone());
            }
            self.control.pop_front();
        }
        if !reports.is_empty() {
            for m in &self.echo {
                if !covered(m, &reports) && w.push(m).is_err() {
                    break;
                }
            }
            self.echo = reports;
        }
        while let Some(m) = self.background.front() {
            match w.push(m) {
                Ok(()) => {}
                // Does not fit even an empty datagram (a dense digest on
                // a small sealed link): never sendable, and left at the
                // head it would block every later one for good.
                Err(_) if w.counts().0 == 0 => stats.too_big += 1,
                Err(_) => break,
            }
            self.background.pop_front();
        }
        if self.resync_pending && room > 0 && w.push(&Msg::Resync).is_ok() {
            self.resync_pending = false;
            room -= 1;
            sent(self.take_seq(), Sent::Resync, false, stats);
        }
        while room > 0
            && let Some((key, new, from)) = self.next_key()
        {
            let (pushed, gone) = match encoded(&key, new, src) {
                Some((kind, body)) => (w.push_encoded(kind, body), false),
                None => {
                    let m = build(&key, new, src);
                    let gone = matches!(m, Msg::CtDel(_) | Msg::ExpDel(_));
                    (w.push(&m), gone)
                }
            };
            match pushed {
                Ok(()) => {
                    room -= 1;
                    sent(self.take_seq(), Sent::Key(key), gone, stats);
                }
                Err(_) if w.counts().0 == 0 => {
                    // Does not fit even an empty datagram: never sendable.
                    stats.too_big += 1;
                }
                Err(_) => {
                    self.put_back(key, new, from);
                    break;
                }
            }
        }
        self.release_if_drained();
        w.counts().0
    }

    /// A burst (a bulk send, a resync) grows the key queue to its size,
    /// and neither container gives memory back on its own: once the
    /// queue is empty again, large ones are dropped, so a router's RSS
    /// after a burst of 100 000 is not the burst's (about 12 MB).
    fn release_if_drained(&mut self) {
        if self.keys.is_empty() && self.keys.capacity() > KEEP_CAPACITY {
            self.keys = VecDeque::new();
        }
        if self.queued.is_empty() && self.queued.capacity() > KEEP_CAPACITY {
            self.queued = HashMap::new();
        }
        if self.bulk.is_empty() && self.bulk.capacity() > KEEP_CAPACITY {
            self.bulk = VecDeque::new();
        }
    }

    /// The key queue's and its index's capacities.
    #[cfg(test)]
    pub(crate) fn capacities(&self) -> (usize, usize) {
        (self.keys.capacity(), self.queued.capacity())
    }

    /// Drops the waiting keys `which` names (the internal cache forgot
    /// them: sent now, each would read as gone and go as a DEL). Returns
    /// how many.
    pub(crate) fn forget_keys(
        &mut self,
        which: &dyn Fn(&Key) -> bool,
    ) -> usize {
        let ahead = self.keys.iter().take(self.ahead).filter(|k| which(k));
        self.ahead -= ahead.count();
        // A key in both queues counts once (the key queue's count).
        let mut dropped = 0;
        let queued = &mut self.queued;
        self.bulk.retain(|k| {
            let drop = which(k);
            dropped += usize::from(drop && !queued.contains_key(k));
            !drop
        });
        self.keys.retain(|k| {
            let drop = which(k);
            // Passed over already (the bulk took it): not counted.
            dropped += usize::from(drop && queued.remove(k).is_some());
            !drop
        });
        dropped
    }

    /// Every waiting key with its "new" flag, emptying the key queue (a
    /// protocol switch hands them to the other engine).
    pub(crate) fn drain_keys(&mut self) -> Vec<(Key, bool)> {
        let mut drained = Vec::with_capacity(self.len());
        while let Some((key, new, _)) = self.next_key() {
            drained.push((key, new));
        }
        drained
    }

    /// Records that a datagram went out at `now`.
    pub(crate) fn transmitted(&mut self, now: Instant) {
        self.last_tx = now;
        self.urgent = false;
    }

    fn take_seq(&mut self) -> Seq {
        let s = self.next_seq;
        self.next_seq = s.next();
        s
    }
}

/// Whether `reports` already say what `m` (an ACK or NACK) says: the same
/// message, or an ACK of a range that holds its range.
fn covered(m: &Msg, reports: &[Msg]) -> bool {
    reports.iter().any(|r| match (m, r) {
        (Msg::Ack { from, to }, Msg::Ack { from: f, to: t }) => {
            from.in_range(*f, *t) && to.in_range(*f, *t)
        }
        _ => r == m,
    })
}

/// The message carrying `key`'s current state, when the source holds it
/// encoded (the caches do): copied as it is, with no decoding.
fn encoded<'s>(
    key: &Key,
    new: bool,
    src: &'s dyn Source,
) -> Option<(wire::Encoded, &'s [u8])> {
    use wire::Encoded;
    let body = src.encoded(key)?;
    let kind = match (key, new) {
        (Key::Ct(_), true) => Encoded::CtNew,
        (Key::Ct(_), false) => Encoded::CtUpd,
        (Key::Exp(_), true) => Encoded::ExpNew,
        (Key::Exp(_), false) => Encoded::ExpUpd,
    };
    Some((kind, body))
}

/// The message carrying `key`'s current state.
fn build(key: &Key, new: bool, src: &dyn Source) -> Msg {
    match (key, src.current(key)) {
        (_, Some(State::Ct(ct))) => {
            let w = wire::to_wire_ct(&ct);
            if new { Msg::CtNew(w) } else { Msg::CtUpd(w) }
        }
        (_, Some(State::Exp(x))) => {
            let w = wire::to_wire_exp(&x);
            if new { Msg::ExpNew(w) } else { Msg::ExpUpd(w) }
        }
        (Key::Ct(k), None) => Msg::CtDel(*k),
        (Key::Exp(k), None) => Msg::ExpDel(**k),
    }
}

/// Drops from a key queue (`keys` in order, `queued` their "new" flags)
/// the keys `which` names; returns how many. Both protocols' transmit
/// queues have this shape.
pub(crate) fn drop_keys(
    keys: &mut VecDeque<Key>,
    queued: &mut HashMap<Key, bool>,
    which: &dyn Fn(&Key) -> bool,
) -> usize {
    let before = keys.len();
    keys.retain(|k| {
        let drop = which(k);
        if drop {
            queued.remove(k);
        }
        !drop
    });
    before - keys.len()
}
