//! conntrackd 1.4's sync protocol (reference §4.2–4.9) as a sans-IO
//! engine with the same contracts as [`crate::sync::Engine`]: queues hold
//! [`Key`]s, messages are built from the [`Source`] at transmit time (a
//! resend carries the newest state; a gone key is sent as a DEL built from
//! the key), received data becomes [`Apply`]. The bytes are
//! [`crate::wire::ctd`]'s.
//!
//! As a conntrackd peer sees it: one u32 counter numbers every message we
//! send, data and control, and a resend takes a new number; several
//! messages share a datagram up to the link's size; ALIVE (or the ACK of
//! an open run) after one second without sending. FT-FW adds the resend
//! queue (`ResendQueueSize`), an ACK every `ACKWindowSize` messages, NACK
//! on a gap, the peer's NACK moving entries back to transmit and its ACK
//! releasing them, the HELLO/HELLO_BACK handshake and RESYNC. NOTRACK
//! counts numbers only; ALARM re-sends every entry once per
//! `RefreshTime` and sends no control message.
//!
//! Where conntrackd can lose data, this side does not (every message is
//! still one conntrackd accepts):
//! - conntrackd takes any message that says HELLO as in sequence, so what
//!   is lost before the handshake ends is never NACKed and even falls
//!   inside its ACKs. We send no data until our HELLO is answered (an
//!   ALIVE says it at once; after [`HELLO_PATIENCE`] data goes anyway),
//!   and we check the numbers of a peer's HELLO messages after the first
//!   one of its handshake (a gap among them is NACKed as any other);
//! - a peer's HELLO does not empty our resend queue (conntrackd drops it,
//!   and with it what the restarted peer never got): what the peer never
//!   acknowledges is sent again by the next rule;
//! - an entry the peer's ACKs went past without acknowledging it (its
//!   NACK was lost, it arrived late and was dropped, or the peer
//!   restarted) is sent again [`PASSED_OVER`] after it was sent;
//! - a peer that restarts (a new HELLO) gets our whole internal cache
//!   (conntrackd sends nothing until the restarted node asks);
//! - a lost tail is asked about a few milliseconds after the last data
//!   ([`tail`]), not found at the sender's next message a second later:
//!   a tail of the peer's by a NACK of the numbers after the last one
//!   heard (which names nothing when nothing was lost), a tail of ours
//!   by an ALIVE, whose number shows the peer the gap before it. Both are
//!   messages conntrackd reads anyway;
//! - a RESYNC we ask for on our own (a protocol switch) waits for the
//!   handshake, so our HELLOs cannot empty the peer's resend queue in the
//!   middle of its answer.
//!
//! Not closed: a HELLO numbered before the peer's last one, while its
//! handshake is open, is taken as a restart, as conntrackd takes it (its
//! restarts number from the clock, so a restart and a late message of
//! the same start cannot be told apart by number). A link that reorders
//! or duplicates datagrams during a handshake can so apply a late message
//! over a newer one (a DELETE over a NEW: the entry is missing until it
//! changes again) and count a restart each time, with our whole cache
//! sent for each (found by a fuzzer pairing two engines over a
//! reordering link; a dedicated sync link does not reorder).
//!
//! An ACK or NACK no conntrackd sends (corrupt or forged: one reaching a
//! number we never sent or back before our first one, an ACK spanning
//! more than conntrackd acknowledges) is refused and counted in
//! `out_of_window`, as ctsyncd's own FT-FW engine counts it, and changes
//! nothing; conntrackd acts on it.
//!
//! Once [`CtdEngine::announce`]d, our control messages carry ctsyncd's mark (see
//! [`crate::wire::ctd::MARK`]; conntrackd skips it).
//!
//! Layout: `queue` (transmit and resend queues), `rx` (the peer's
//! numbering and the ACK window), `tail` (when to ask for a lost tail),
//! `tx` (filling a datagram), this file (the state, reading, timers).

mod queue;
mod rx;
mod tail;
#[cfg(test)]
mod test;
#[cfg(test)]
mod test_reports;
#[cfg(test)]
mod test_tail;
#[cfg(test)]
mod test_unreadable;
mod tx;

use std::collections::VecDeque;
use std::time::Duration;

use super::{ALIVE_INTERVAL, Apply, Key, Source, Stats};
use crate::model::Mode;
use crate::time::Instant;
use crate::wire::ctd::{self, Body, Message, Options};
use crate::wire::{Seq, ct_key_of, exp_key_of};
use queue::{Ctl, ResendQueue, Sent, TxQueue};
use rx::{Class, Rx, WINDOW};
use tail::TailTimer;

/// An entry the peer's ACKs went past is sent again this long after it
/// was sent. A conntrackd NACKs a gap before it acknowledges past it
/// (reference §4.7), so such an entry lost its NACK, or the ACK that
/// covered it. A lost ACK is recovered within a few round trips (it is a
/// numbered message, kept for resending: we NACK the gap it leaves in the
/// peer's numbers), hence the wait. It was 2.5 s until session 29: over a
/// link losing 20 % each way, two or three lost NACKs a burst, each a
/// second or more after the ALIVE that rounds the check up, made a
/// conntrackd backup 2 to 8 s late.
pub const PASSED_OVER: Duration = Duration::from_millis(100);
/// A RESYNC we ask for on our own goes out at the latest this long after
/// the request, handshake or not.
const RESYNC_WAIT: Duration = Duration::from_secs(2);
/// Data waits for the answer to our HELLO at most this long (a peer that
/// never answers still gets it).
pub const HELLO_PATIENCE: Duration = Duration::from_secs(3);

/// The engine's settings.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub mode: Mode,
    /// Our first sequence number (conntrackd starts from `time()`).
    pub first_seq: u32,
    pub max_datagram: usize,
    pub resend_queue_size: usize,
    pub ack_window: u32,
    pub tx_queue_size: usize,
    pub refresh_time: Duration,
    pub opts: Options,
}

/// conntrackd messages refused, by why (`-s link`, `--json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// Shorter than its header says, or than a header.
    pub truncated: u64,
    /// A length of 0, or past the datagram.
    pub bad_size: u64,
    /// Another protocol version.
    pub version: u64,
    /// A message type conntrackd does not define.
    pub bad_type: u64,
    /// Flags that make no message (e.g. a control message without its
    /// kind, an ACK ending before it starts).
    pub bad_header: u64,
    /// An attribute that does not decode.
    pub malformed: u64,
    /// Datagrams read before the switch to conntrackd's protocol (its
    /// first two seconds, or while a ctsyncd peer talks on the link).
    pub before_switch: u64,
}

impl Refused {
    pub fn total(&self) -> u64 {
        self.truncated
            + self.bad_size
            + self.version
            + self.bad_type
            + self.bad_header
            + self.malformed
            + self.before_switch
    }

    pub(crate) fn count(&mut self, e: ctd::Error) {
        match e {
            ctd::Error::Truncated => self.truncated += 1,
            ctd::Error::BadSize | ctd::Error::TooBig => self.bad_size += 1,
            ctd::Error::Version(_) => self.version += 1,
            ctd::Error::BadType(_) => self.bad_type += 1,
            ctd::Error::BadHeader => self.bad_header += 1,
            ctd::Error::Malformed => self.malformed += 1,
        }
    }

    pub fn add(&mut self, o: &Refused) {
        self.truncated += o.truncated;
        self.bad_size += o.bad_size;
        self.version += o.version;
        self.bad_type += o.bad_type;
        self.bad_header += o.bad_header;
        self.malformed += o.malformed;
        self.before_switch += o.before_switch;
    }
}

/// Our side of the HELLO handshake (conntrackd's `hello_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hello {
    /// Every message says HELLO until one says HELLO_BACK.
    Say,
    Done,
}

/// One node's replication state in conntrackd's protocol.
pub struct CtdEngine {
    p: Params,
    next_seq: Seq,
    /// How many numbers we used (from `first_seq` to `next_seq`, which
    /// wraps).
    numbered: u64,
    tx: TxQueue,
    rs: ResendQueue,
    rx: Rx,
    hello: Hello,
    /// When we first said HELLO.
    hello_since: Option<Instant>,
    /// Data went out before the handshake ended (the patience ran out).
    impatient: bool,
    /// An ALIVE went out to say HELLO for waiting data.
    hello_probed: bool,
    say_hello_back: bool,
    /// The peer's last message said HELLO (its handshake is open).
    peer_hello: bool,
    /// A RESYNC of ours waits for the handshake, since this time.
    resync_wanted: Option<Instant>,
    /// The highest number the peer acknowledged.
    acked_upto: Option<Seq>,
    /// When to ask the peer for a tail we may have lost, and when to
    /// show it one it may have lost (`tail`).
    query: TailTimer,
    probe: TailTimer,
    /// The number of the last data message we sent.
    last_data_seq: Option<Seq>,
    last_tx: Instant,
    /// ALARM: the next refresh slice, and which.
    refresh_at: Instant,
    slot: u64,
    applies: VecDeque<Apply>,
    stats: Stats,
    refused: Refused,
    /// Our control messages carry ctsyncd's mark
    /// ([`crate::wire::ctd::MARK`]): a ctsyncd peer learns what we are.
    announce: bool,
}

impl CtdEngine {
    pub fn new(p: Params, now: Instant) -> CtdEngine {
        CtdEngine {
            next_seq: Seq(p.first_seq),
            numbered: 0,
            tx: TxQueue::new(p.tx_queue_size),
            rs: ResendQueue::new(p.resend_queue_size),
            rx: Rx::new(p.ack_window),
            hello: Hello::Say,
            hello_since: None,
            impatient: false,
            hello_probed: false,
            say_hello_back: false,
            peer_hello: false,
            resync_wanted: None,
            acked_upto: None,
            query: TailTimer::default(),
            probe: TailTimer::default(),
            last_data_seq: None,
            last_tx: now,
            refresh_at: now + ALIVE_INTERVAL,
            slot: 0,
            applies: VecDeque::new(),
            stats: Stats::default(),
            refused: Refused::default(),
            announce: false,
            p,
        }
    }

    /// Marks our control messages from now on (see the module header).
    pub fn announce(&mut self) {
        self.announce = true;
    }

    /// Datagrams of at most `n` bytes from now on (the link changed).
    pub fn set_max_datagram(&mut self, n: usize) {
        self.p.max_datagram = n;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Every conntrackd message refused so far, by why.
    pub fn refused(&self) -> &Refused {
        &self.refused
    }

    pub fn mode(&self) -> Mode {
        self.p.mode
    }

    /// Keys waiting to be sent, and sent entries awaiting an ACK.
    pub fn queue_lengths(&self) -> (usize, usize) {
        (self.tx.len(), self.rs.len())
    }

    /// The resend queue's entries, oldest first.
    pub fn resend_queue(
        &self,
    ) -> impl Iterator<Item = crate::sync::ResendEntry> + '_ {
        self.rs.iter()
    }

    pub fn wants_transmit(&self) -> bool {
        self.tx.has_control() || (!self.tx.is_empty() && !self.data_waits())
    }

    /// FT-FW: data waits for the answer to our HELLO.
    fn data_waits(&self) -> bool {
        self.ftfw() && self.hello == Hello::Say && !self.impatient
    }

    /// True when nothing waits to be sent or acknowledged.
    pub fn is_idle(&self) -> bool {
        self.tx.is_empty() && self.rs.len() == 0
    }

    fn ftfw(&self) -> bool {
        self.p.mode == Mode::FtFw
    }

    // ===== local side =====

    /// The internal cache changed `key`. False when the queue is full.
    pub fn local_change(&mut self, key: Key, new: bool) -> bool {
        if self.data_waits() && !self.hello_probed {
            // Say HELLO now rather than at the next quiet second.
            self.hello_probed = true;
            self.tx.control(Ctl::Alive);
        }
        self.rs.forget(&key);
        self.tx.key(key, new, &mut self.stats)
    }

    /// Everything in the internal cache, conntracks first.
    pub fn bulk(&mut self, src: &dyn Source) {
        for key in src.keys() {
            self.local_change(key, false);
        }
    }

    /// `-n`, StartupResync, a protocol switch: asks the peer for its
    /// internal cache (not in ALARM). In FT-FW before our HELLO is
    /// answered, the request waits for the answer (see the module
    /// header), at most [`RESYNC_WAIT`] after our last datagram.
    pub fn request_resync(&mut self) -> bool {
        if self.p.mode == Mode::Alarm {
            return false;
        }
        if self.ftfw() && self.hello == Hello::Say {
            self.resync_wanted.get_or_insert(self.last_tx);
        } else {
            self.tx.control(Ctl::Resync);
        }
        true
    }

    /// Keys waiting or awaiting an ACK, emptying both queues (a protocol
    /// switch hands them to the other engine).
    pub fn drain_keys(&mut self) -> Vec<(Key, bool)> {
        let mut v = self.tx.drain_keys();
        for s in self.rs.clear() {
            if let Sent::Key(k) = s {
                v.push((k, false));
            }
        }
        v
    }

    pub fn pop_apply(&mut self) -> Option<Apply> {
        self.applies.pop_front()
    }

    // ===== receive side =====

    /// One datagram (or a run of stream messages). Returns how many
    /// messages were read and what was refused in it.
    pub fn recv(
        &mut self,
        now: Instant,
        datagram: &[u8],
        src: &dyn Source,
    ) -> (u64, Refused) {
        let mut read = 0;
        let mut refused = Refused::default();
        self.stats.datagrams_recv += 1;
        let mut messages = ctd::messages(datagram, self.p.opts);
        while let Some(m) = messages.next() {
            match m {
                Ok(msg) => {
                    read += 1;
                    self.stats.msgs_recv += 1;
                    self.message(now, msg, src);
                }
                Err(e) => {
                    refused.count(e);
                    self.stats.malformed += 1;
                    match e {
                        ctd::Error::Version(_) => self.stats.bad_version += 1,
                        _ => self.stats.bad_header += 1,
                    }
                    // Its number still counts, as in conntrackd (which
                    // tracks it before decoding): untracked, it was a gap
                    // NACKed after every later message, and the peer
                    // resent the same refused payload under a new number
                    // for as long as the flow lived (conntrackd 1.4.2's
                    // IPv4 NAT attributes on IPv6 flows did that). An
                    // ALIVE in its place moves the tracking and applies
                    // nothing.
                    if let Some(u) = messages.unreadable() {
                        let alive = Message {
                            seq: u.seq,
                            hello: u.hello,
                            hello_back: u.hello_back,
                            body: Body::Alive,
                        };
                        self.message(now, alive, src);
                    }
                }
            }
        }
        self.refused.add(&refused);
        (read, refused)
    }

    fn message(&mut self, now: Instant, msg: Message, src: &dyn Source) {
        match self.p.mode {
            Mode::FtFw => self.ftfw_message(now, msg, src),
            Mode::NoTrack => {
                let seq = Seq(msg.seq);
                match self.rx.classify(seq) {
                    Class::InSync => {}
                    Class::After { from, to } => {
                        self.stats.lost += u64::from(to - from) + 1;
                    }
                    // Applied all the same (conntrackd does).
                    Class::Before => self.stats.before += 1,
                    Class::OutOfWindow => {
                        self.stats.out_of_window += 1;
                        return;
                    }
                }
                self.rx.update(seq);
                match msg.body {
                    Body::Ack { .. } | Body::Nack { .. } => {
                        self.refused.bad_header += 1;
                        self.stats.bad_header += 1;
                        self.stats.malformed += 1;
                    }
                    b => self.digest(now, b, src),
                }
            }
            Mode::Alarm => {
                // conntrackd's ALARM reads data only: any flag is
                // ignored.
                if msg.body.is_data() && !msg.hello && !msg.hello_back {
                    self.digest(now, msg.body, src);
                }
            }
        }
    }

    fn ftfw_message(&mut self, now: Instant, msg: Message, src: &dyn Source) {
        let seq = Seq(msg.seq);
        if msg.hello_back && self.hello == Hello::Say {
            self.hello = Hello::Done;
            if self.resync_wanted.take().is_some() {
                self.tx.control(Ctl::Resync);
            }
        }
        let class = if msg.hello {
            self.say_hello_back = true;
            // The first HELLO of a handshake (or one whose number makes
            // no sense after the last) restarts the tracking; the ones
            // after it are numbered on from it.
            let normal = self.rx.classify(seq);
            if self.peer_hello
                && matches!(normal, Class::InSync | Class::After { .. })
            {
                normal
            } else {
                if self.rx.last().is_some() {
                    // A restarted peer knows nothing: conntrackd waits
                    // for its RESYNC; we send our cache at once.
                    self.stats.peer_restarts += 1;
                    self.bulk(src);
                }
                self.rx.hello(seq);
                Class::InSync
            }
        } else {
            self.rx.classify(seq)
        };
        self.peer_hello = msg.hello;
        let starts_series = msg.body.is_data();
        match class {
            Class::Before => {
                self.stats.before += 1;
                return;
            }
            Class::OutOfWindow => {
                self.stats.out_of_window += 1;
                return;
            }
            Class::After { from, to } => {
                self.stats.lost += u64::from(to - from) + 1;
                self.query.loss(now);
                self.digest(now, msg.body, src);
                for c in self.rx.gap(from, to, seq) {
                    self.tx.control(c);
                }
            }
            Class::InSync => {
                self.digest(now, msg.body, src);
                if let Some(ack) = self.rx.in_sync(seq) {
                    self.tx.control(ack);
                }
            }
        }
        if starts_series {
            self.query.data(now);
        }
        self.rx.update(seq);
    }

    /// What one accepted message does.
    fn digest(&mut self, now: Instant, body: Body, src: &dyn Source) {
        match body {
            Body::CtNew(ct) => {
                self.applies.push_back(Apply::Ct { ct, new: true })
            }
            Body::CtUpd(ct) => {
                self.applies.push_back(Apply::Ct { ct, new: false })
            }
            Body::CtDel(ct) => {
                self.applies.push_back(Apply::CtDel(ct_key_of(&ct)))
            }
            Body::ExpNew(exp) => {
                self.applies.push_back(Apply::Exp { exp, new: true })
            }
            Body::ExpUpd(exp) => {
                self.applies.push_back(Apply::Exp { exp, new: false })
            }
            Body::ExpDel(exp) => {
                self.applies.push_back(Apply::ExpDel(exp_key_of(&exp)))
            }
            Body::Resync => {
                self.stats.resyncs_requested_by_peer += 1;
                log::info!("resync requested by other node");
                log::info!("sending bulk update");
                self.bulk(src);
            }
            Body::Alive => {}
            Body::Ack { from, to } | Body::Nack { from, to }
                if !self.ftfw() || Seq(to) < Seq(from) =>
            {
                self.refused.bad_header += 1;
                self.stats.bad_header += 1;
                self.stats.malformed += 1;
            }
            // An ACK of numbers we never sent is corrupt or forged: read,
            // it released what the peer never got. A NACK that reaches
            // past them is a ctsyncd's tail query (`tail`) when it starts
            // among them, or right after, and spans at most [`WINDOW`]:
            // what we sent in its range is sent again, as conntrackd does.
            // Any other is corrupt or forged (a conntrackd's NACK ends
            // before a number it got from us).
            Body::Ack { to, .. } if Seq(to) >= self.next_seq => {
                self.stats.out_of_window += 1;
            }
            Body::Nack { from, to }
                if Seq(to) >= self.next_seq
                    && (Seq(from) > self.next_seq
                        || Seq(to) - Seq(from) > WINDOW) =>
            {
                self.stats.out_of_window += 1;
            }
            Body::Ack { from, to } if self.ack_too_wide(Seq(from), Seq(to)) => {
                self.stats.out_of_window += 1;
            }
            // A conntrackd NACKs a gap after a number it got from us, so
            // never from before our first: read, one far back resent
            // everything held. It NACKs any gap, however wide (reference
            // §4.7: exp_seq to the number before the message received).
            Body::Nack { from, .. } if self.before_our_numbers(Seq(from)) => {
                self.stats.out_of_window += 1;
            }
            Body::Ack { from, to } => {
                let (from, to) = (Seq(from), Seq(to));
                self.rs.take_range(from, to);
                if self.acked_upto.is_none_or(|u| to > u) {
                    self.acked_upto = Some(to);
                }
            }
            Body::Nack { from, to } => {
                let mut resent = false;
                for s in self.rs.take_range(Seq(from), Seq(to)) {
                    resent = true;
                    self.requeue(s);
                }
                if resent {
                    self.probe.loss(now);
                }
            }
        }
    }

    /// Whether `s` lies before our first number, where a peer's report
    /// starts only in the case [`CtdEngine::ack_too_wide`] keeps
    /// (undecidable once half the number space went by: then never).
    fn before_our_numbers(&self, s: Seq) -> bool {
        self.numbered < 1 << 31 && s < Seq(self.p.first_seq)
    }

    /// Whether an ACK of `from..=to` spans more than a conntrackd
    /// acknowledges: a run of at most its `ACKWindowSize` messages
    /// (reference §4.7; 300 by default, and any up to 2^18 + 1 keeps
    /// `to - from` within [`WINDOW`]), never before our first number
    /// but for the run it opened before our HELLO: it keeps that run
    /// when the HELLO is numbered after its start (§4.7), so its first
    /// ACK to us may start in our previous life (we restarted). A
    /// corrupt or forged `from` far back released everything held up to
    /// `to`, what the peer NACKed with it.
    fn ack_too_wide(&self, from: Seq, to: Seq) -> bool {
        let before_us = self.before_our_numbers(from);
        if before_us
            && self.acked_upto.is_none()
            && !self.before_our_numbers(to)
        {
            return false;
        }
        before_us || to - from > WINDOW
    }

    fn requeue(&mut self, s: Sent) {
        self.stats.retransmitted += 1;
        match s {
            Sent::Key(k) => {
                self.tx.key(k, false, &mut self.stats);
            }
            Sent::Ctl(c) => self.tx.control(c),
        }
    }

    // ===== timers =====

    pub fn poll_at(&self) -> Instant {
        match self.p.mode {
            Mode::Alarm => self.refresh_at,
            Mode::FtFw => [
                self.query.due(),
                self.probe.due(),
                self.acked_upto
                    .and_then(|u| self.rs.passed_over_since(u))
                    .map(|at| at + PASSED_OVER),
            ]
            .into_iter()
            .flatten()
            .fold(self.last_tx + ALIVE_INTERVAL, Instant::min),
            Mode::NoTrack => self.last_tx + ALIVE_INTERVAL,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, src: &dyn Source) {
        if self.p.mode == Mode::Alarm {
            if now >= self.refresh_at {
                self.refresh_at = now + ALIVE_INTERVAL;
                self.refresh(src);
            }
            return;
        }
        if self.ftfw() {
            if self.hello == Hello::Say
                && self
                    .hello_since
                    .is_some_and(|t| now.since(t) >= HELLO_PATIENCE)
            {
                self.impatient = true;
            }
            if self
                .resync_wanted
                .is_some_and(|t| now.since(t) >= RESYNC_WAIT)
            {
                self.resync_wanted = None;
                self.tx.control(Ctl::Resync);
            }
            if let Some(upto) = self.acked_upto {
                for s in self.rs.take_passed_over(upto, now, PASSED_OVER) {
                    self.requeue(s);
                }
            }
            self.ask_for_tail(now);
            self.probe_tail(now);
        }
        if now >= self.last_tx + ALIVE_INTERVAL {
            // One ALIVE (or ACK) per quiet second, whether or not it
            // could be sent at once.
            self.last_tx = now;
            let ack = if self.ftfw() {
                self.rx.idle_ack()
            } else {
                None
            };
            self.tx.control(ack.unwrap_or(Ctl::Alive));
        }
    }

    /// FT-FW: the tail query, when due (`tail`): a NACK of the numbers
    /// after the last one heard. Not while our handshake is open: every
    /// message then says HELLO, and a conntrackd empties its resend queue
    /// at each (reference §4.7).
    fn ask_for_tail(&mut self, now: Instant) {
        let Some(last) = self.rx.last().filter(|_| self.hello == Hello::Done)
        else {
            // Asked for nothing (a due query must not stay due).
            self.query.reset();
            return;
        };
        if self.query.poll(now) {
            // With the ACK of the open run, as conntrackd NACKs a gap: a
            // query is a transmission, and puts off the quiet second's.
            if let Some(ack) = self.rx.idle_ack() {
                self.tx.control(ack);
            }
            self.queue_tail_query(last);
        }
    }

    /// A NACK of the peer's numbers after `last` (the tail query): never
    /// kept for resending, counted in `tail_queries`.
    fn queue_tail_query(&mut self, last: Seq) {
        self.stats.tail_queries += 1;
        self.tx.control(Ctl::Query {
            from: last.next(),
            to: last + WINDOW,
        });
    }

    /// FT-FW: the tail probe, when due (`tail`): an ALIVE while data we
    /// sent awaits the peer's ACK, with a query of the peer's numbers. Not
    /// while our handshake is open (every message then says HELLO, and
    /// empties a conntrackd's resend queue).
    fn probe_tail(&mut self, now: Instant) {
        let unacked = self
            .last_data_seq
            .is_some_and(|d| self.acked_upto.is_none_or(|u| u < d));
        if !unacked || self.hello != Hello::Done {
            self.probe.reset();
            return;
        }
        if self.probe.poll(now) {
            self.stats.probes_sent += 1;
            self.tx.control(Ctl::Alive);
            // And the peer's own tail: a NACK of ours it sent last and
            // lost leaves its gap unrepaired until its next message, a
            // second later. Asked for, it is sent again.
            if let Some(last) = self.rx.last() {
                self.queue_tail_query(last);
            }
        }
    }

    /// ALARM: one slice of the keys per second, each key once per
    /// `RefreshTime`.
    fn refresh(&mut self, src: &dyn Source) {
        let slots = self.p.refresh_time.as_secs().max(1);
        let slot = self.slot % slots;
        self.slot = self.slot.wrapping_add(1);
        for key in src.keys() {
            if spread(&key) % slots == slot {
                self.tx.key(key, false, &mut self.stats);
            }
        }
    }
}

/// A cheap, stable spread of keys over refresh slots.
fn spread(key: &Key) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}
