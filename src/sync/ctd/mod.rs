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
//! - for the same reason, data that went saying HELLO (the patience ran
//!   out) is sent again once our HELLO is answered, and an ACK before the
//!   answer releases nothing: a conntrackd's ACKs span what it lost of
//!   it (a migration's first contact lost thousands of flows so);
//! - a peer's HELLO does not empty our resend queue (conntrackd drops it,
//!   and with it what the restarted peer never got): what the peer never
//!   acknowledges is sent again by the next rule;
//! - an entry the peer's ACKs went past without acknowledging it (its
//!   NACK was lost, it arrived late and was dropped, or the peer
//!   restarted) is sent again [`PASSED_OVER`] after it was sent;
//! - a peer that restarts (a new HELLO) gets our whole internal cache
//!   (conntrackd sends nothing until the restarted node asks), and our
//!   ACKs and NACKs of its last life are dropped, not sent or resent:
//!   its new numbers start from its clock and may fall inside them;
//! - a lost tail is asked about a few milliseconds after the last data
//!   ([`tail`]), not found at the sender's next message a second later:
//!   a tail of the peer's by a NACK of the numbers after the last one
//!   heard (which names nothing when nothing was lost), a tail of ours
//!   by an ALIVE, whose number shows the peer the gap before it. Both are
//!   messages conntrackd reads anyway;
//! - a RESYNC we ask for on our own (a protocol switch) waits for the
//!   handshake, so our HELLOs cannot empty the peer's resend queue in the
//!   middle of its answer.
//! - while the peer is not heard (for
//!   [`PEER_ALIVE`](crate::sync::PEER_ALIVE)), the resend queue keeps at
//!   most `SILENT_HOLD` entries' states, as ctsyncd's own FT-FW does:
//!   past them, it gives those up, keeps no more, and the peer gets a
//!   bulk update when heard again (DELs are still kept). The takeover
//!   script's `-B` to a dead conntrackd once held a key for every entry,
//!   about 19 MB at 100 000, where conntrackd holds links in its cache's
//!   objects.
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
//! Not closed either: a RESYNC of ours that went saying HELLO (the
//! answer more than `RESYNC_WAIT`, 10 s, late) and was lost can fall
//! inside a conntrackd's ACK like the data above, and is then not sent
//! again: the peer's existing entries come only as they change. Sending
//! it again at the answer would cost a second bulk of the peer's table
//! whenever the first arrived, and nothing tells the two apart (a busy
//! peer's updates look like its bulk). `-n` asks again.
//!
//! A datagram that asks for our whole cache several times (RESYNCs, or
//! HELLOs each taken as a restart) gets one bulk, once it is read: a
//! bulk walks the whole internal cache, and conntrackd's protocol has no
//! authentication (a forged datagram of 91 RESYNCs cost 1.7 s of the
//! loop with 50 000 entries).
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
//! numbering and the ACK window), `receive` (reading and digesting a
//! datagram), `refused` (its counts of what was refused), `tail` (when to
//! ask for a lost tail), `timers` (what the clock does), `tx` (filling a
//! datagram), this file (the state and the local side).

mod queue;
mod receive;
mod refused;
mod rx;
mod tail;
#[cfg(test)]
mod test;
#[cfg(test)]
mod test_bulk;
#[cfg(test)]
mod test_hello;
#[cfg(test)]
mod test_reports;
#[cfg(test)]
mod test_restart;
#[cfg(test)]
mod test_tail;
#[cfg(test)]
mod test_unreadable;
mod timers;
mod tx;

use std::collections::VecDeque;
use std::time::Duration;

use super::{ALIVE_INTERVAL, Apply, Key, Source, Stats};
use crate::model::Mode;
use crate::time::Instant;
use crate::wire::Seq;
use crate::wire::ctd::Options;
use queue::{Ctl, ResendQueue, Sent, TxQueue};
use rx::Rx;
use tail::TailTimer;

pub use refused::Refused;

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
/// our last datagram, handshake or not (a peer that never answers still
/// gets it). Sent saying HELLO, a RESYNC that is lost can fall inside a
/// conntrackd's ACK and is never sent again (see the module header). The
/// answer comes with conntrackd's next message, a second after its last:
/// at 20 % loss each way, 2 s (as until session 30) was passed after two
/// or three lost rounds, 10 s takes about ten.
const RESYNC_WAIT: Duration = Duration::from_secs(10);
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
    /// The number of the last data message we sent. Until our HELLO is
    /// answered (our handshake happens once), all of it went saying HELLO.
    last_data_seq: Option<Seq>,
    last_tx: Instant,
    /// ALARM: the next refresh slice, and which.
    refresh_at: Instant,
    slot: u64,
    applies: VecDeque<Apply>,
    stats: Stats,
    refused: Refused,
    /// What the datagram being read refused so far (returned by `recv`).
    in_datagram: Refused,
    /// Our control messages carry ctsyncd's mark
    /// ([`crate::wire::ctd::MARK`]): a ctsyncd peer learns what we are.
    announce: bool,
    /// The datagram being read asked for our whole cache (a RESYNC, a
    /// restart): sent once it is read, once however often it asked (a
    /// bulk walks the whole cache; a forged datagram of 91 RESYNCs cost
    /// 91 walks).
    bulk_owed: bool,
    /// A bulk of a state only a kernel dump reads is owed to the node
    /// (see [`Source::in_kernel`]).
    kernel_bulk: bool,
    /// The datagram being read carried a RESYNC (logged once).
    resync_heard: bool,
    /// When the peer last sent a message we could read.
    heard_at: Option<Instant>,
    /// States sent while the peer was not heard were given up (see
    /// `SILENT_HOLD`): the peer gets a bulk update when heard again.
    silent_bulk_owed: bool,
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
            bulk_owed: false,
            kernel_bulk: false,
            resync_heard: false,
            heard_at: None,
            silent_bulk_owed: false,
            last_tx: now,
            refresh_at: now + ALIVE_INTERVAL,
            slot: 0,
            applies: VecDeque::new(),
            stats: Stats::default(),
            refused: Refused::default(),
            in_datagram: Refused::default(),
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
        self.hello_now();
        self.rs.forget(&key);
        self.tx.key(key, new, &mut self.stats)
    }

    /// Everything in the internal cache, conntracks first.
    pub fn bulk(&mut self, src: &dyn Source) {
        if src.in_kernel() {
            // The staged keys are not the state: the node dumps it.
            self.kernel_bulk = true;
            return;
        }
        let keys = src.keys();
        if self.rs.len() > 0 {
            // Each goes again with its newest state: none awaits an ACK
            // (as when queued one by one).
            for key in &keys {
                self.rs.forget(key);
            }
        }
        if !keys.is_empty() {
            self.hello_now();
        }
        self.tx.bulk(keys);
    }

    /// Data waits for the answer to our HELLO: says it now rather than at
    /// the next quiet second (once).
    fn hello_now(&mut self) {
        if self.data_waits() && !self.hello_probed {
            self.hello_probed = true;
            self.tx.control(Ctl::Alive);
        }
    }

    /// Whether a bulk of the kernel's table is owed: true once.
    pub fn take_kernel_bulk(&mut self) -> bool {
        std::mem::take(&mut self.kernel_bulk)
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

    /// The internal cache forgot the keys `which` names (`-f`): see
    /// `Engine::forget_states`. Returns how many.
    pub fn forget_states(&mut self, which: &dyn Fn(&Key) -> bool) -> usize {
        self.tx.forget_keys(which) + self.rs.forget_keys(which)
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
}
