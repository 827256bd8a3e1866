//! The transmit path every mode shares: the queue of keys waiting to be
//! sent (coalescing repeated changes to one entry), the queue of control
//! messages, the pending RESYNC request, the sequence counter, and the
//! filling of one datagram from them, each data message built from the
//! internal cache's current state ([`Source`]) at that moment.
//!
//! The keys wait in a [`KeyQueue`], a bulk's (`-B`, a resync's answer)
//! in a list of their own.
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

use std::collections::VecDeque;

pub(crate) use super::key_queue::KEEP_CAPACITY;
use super::key_queue::KeyQueue;
use super::{Key, Source, State, Stats};
use crate::time::Instant;
use crate::wire::{self, Msg, Seq, Writer};

/// Most control messages waiting to be sent (the oldest is dropped).
const CONTROL_QUEUE: usize = 256;
/// Most background (anti-entropy) messages waiting to be sent.
const BACKGROUND_QUEUE: usize = 1024;
/// A data message that went out, as a mode may want to send it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    Key(Key),
    Resync,
}

/// Everything waiting to be sent, and the numbering of what was.
pub(crate) struct Transmit {
    /// Keys waiting to be sent.
    keys: KeyQueue,
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
            keys: KeyQueue::new(capacity),
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
        self.keys.len()
    }

    /// True when something waits to be sent.
    pub(crate) fn is_pending(&self) -> bool {
        !self.keys.is_empty()
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
        self.keys.enqueue(key, new, stats)
    }

    /// Queues every key of the cache (`keys`, in the order to send them)
    /// as a bulk (see [`KeyQueue::bulk`]).
    pub(crate) fn bulk(&mut self, keys: Vec<Key>) {
        self.keys.bulk(keys);
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
            && let Some((key, new, from)) = self.keys.take()
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
                    self.keys.put_back(key, new, from);
                    break;
                }
            }
        }
        self.keys.release_if_drained();
        w.counts().0
    }

    /// The key queue's and its index's capacities.
    #[cfg(test)]
    pub(crate) fn capacities(&self) -> (usize, usize) {
        self.keys.capacities()
    }

    /// Drops the waiting keys `which` names (the internal cache forgot
    /// them: sent now, each would read as gone and go as a DEL). Returns
    /// how many.
    pub(crate) fn forget_keys(
        &mut self,
        which: &dyn Fn(&Key) -> bool,
    ) -> usize {
        self.keys.forget(which)
    }

    /// Every waiting key with its "new" flag, emptying the key queue (a
    /// protocol switch hands them to the other engine).
    pub(crate) fn drain_keys(&mut self) -> Vec<(Key, bool)> {
        self.keys.drain()
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
