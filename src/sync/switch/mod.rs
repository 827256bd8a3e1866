//! The node's replication engine when the peer may be conntrackd: ctsyncd's
//! [`Engine`] and conntrackd's protocol ([`CtdEngine`]) behind the API the
//! node already used, and the rule that picks one (`PeerProtocol`).
//!
//! `auto` (the default) starts in ctsyncd's format, so nothing changes
//! between two ctsyncd nodes. Datagrams that are conntrackd's (sniffed by
//! [`ctd::is_conntrackd`], their first message decoding) for
//! [`SWITCH_AFTER`] while no ctsyncd datagram came for
//! [`super::PEER_ALIVE`] switch to conntrackd's protocol from then on
//! (meanwhile they are counted, not read: the RESYNC below makes up for
//! them). The wait lets a ctsyncd that replaced a conntrackd talk first:
//! its peer, still speaking conntrackd's protocol, hears it and answers
//! in ctsyncd's format. A ctsyncd session that proves itself (it answers
//! our challenge) switches back. What a switch does, so the migration
//! loses nothing:
//! - the keys waiting to be sent or acknowledged carry over to the new
//!   protocol, and the whole internal cache is queued after them (the
//!   peer understood nothing we said before);
//! - we ask the peer for its internal cache (RESYNC): a ctsyncd that
//!   replaces a backup learns the existing state (in ALARM, the peer's
//!   periodic refresh does that);
//! - the caller logs one notice line (see [`Received::switched`]).
//!
//! The same rule keeps a working ctsyncd pair together: a stray or forged
//! conntrackd datagram switches nothing while the ctsyncd peer talks.
//!
//! TCP (`stream`): conntrackd cannot skip a frame it does not understand
//! in its stream (its framing is lost for good, even across
//! reconnections), so in `auto` nothing in ctsyncd's format is written
//! to a stream before a ctsyncd datagram was read from the peer, or
//! [`STREAM_HOLD`] passed without any conntrackd datagram, or a
//! conntrackd datagram carrying ctsyncd's mark was read.
//!
//! The mark ([`ctd::MARK`]): in `auto`, our control messages in
//! conntrackd's protocol (ACK, NACK, RESYNC, ALIVE) carry it; conntrackd
//! skips it. A marked datagram says the peer is a ctsyncd that will
//! follow ours: while we speak ctsyncd's format it ends the stream hold
//! and switches nothing (as a live ctsyncd peer); while we speak
//! conntrackd's it lets the ctsyncd engine send. Its challenge, answered,
//! switches each side back as above, so two ctsyncd nodes that met in
//! conntrackd's protocol (over TCP, where neither writes ours first)
//! return to ctsyncd's format within a few seconds. Until a side has
//! switched, the other's conntrackd messages are still read, and what
//! either had not got acknowledged carries over. In ALARM no control
//! message is sent, so no mark: such a pair stays on conntrackd's
//! protocol over TCP (correct, only less compact).
//!
//! With a key (`AuthenticationKeyFile`) conntrackd's datagrams go to the
//! keyed ctsyncd engine, which refuses and counts them as unsealed: they
//! never switch anything. `ctsyncd` pins ctsyncd's format (conntrackd's
//! datagrams are refused as before); `conntrackd` speaks conntrackd's
//! protocol from the start (a NOTRACK or ALARM peer that never sends
//! cannot be detected) and refuses ctsyncd's datagrams.
//!
//! While conntrackd's protocol is spoken, the ctsyncd engine keeps
//! reading ctsyncd datagrams, and what it has to say (its challenge, its
//! answers) is sent only while such datagrams arrive, so a conntrackd
//! peer never sees our format.
//!
//! The receive side, where the rule is applied, is `recv`.

mod recv;

pub use recv::Received;

use std::time::Duration;

use super::ctd::{self as engine, CtdEngine, Refused};
use super::{Apply, Engine, Key, Params, Source, Stats};
use crate::config::PeerProtocol;
use crate::model::Mode;
use crate::time::Instant;
use crate::wire::seal::Sealer;
use crate::wire::{Msg, ctd};

/// While ctsyncd datagrams arrived this recently, the ctsyncd engine may
/// send while conntrackd's protocol is spoken, and conntrackd's
/// datagrams switch nothing.
const CTSYNCD_HEARD: Duration = super::PEER_ALIVE;
/// conntrackd's datagrams switch once they kept coming this long.
pub const SWITCH_AFTER: Duration = Duration::from_secs(2);
/// On a stream, ctsyncd's format waits at most this long for the peer to
/// show which protocol it speaks.
pub const STREAM_HOLD: Duration = Duration::from_secs(5);

/// The protocol spoken on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Ctsyncd,
    /// conntrackd 1.4's (reference §4).
    Conntrackd,
}

impl Protocol {
    /// As `-s link` and the switch's log line name it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Ctsyncd => "ctsyncd",
            Protocol::Conntrackd => "conntrackd 1.4",
        }
    }
}

/// Both engines and the one that speaks.
pub struct Switch {
    setting: PeerProtocol,
    mode: Mode,
    keyed: bool,
    ct: Engine,
    ctd: Option<CtdEngine>,
    ctd_params: engine::Params,
    /// What conntrackd engines that were replaced had counted.
    ctd_past: Stats,
    ctd_refused_past: Refused,
    /// A ctsyncd datagram was read while conntrackd's protocol is spoken.
    ctsyncd_heard: Option<Instant>,
    /// When a ctsyncd datagram was last read while ctsyncd's format is
    /// spoken: while that peer lives, conntrackd's datagrams switch
    /// nothing.
    ctsyncd_alive: Option<Instant>,
    /// Since when conntrackd's datagrams keep coming (not yet switched).
    ctd_since: Option<Instant>,
    /// A stream link whose peer's protocol is not known yet: nothing in
    /// ctsyncd's format is sent (see the module header); until this time.
    stream_hold: Option<Instant>,
}

impl Switch {
    /// `opts` are conntrackd's encoding options (NAT byte order, whether
    /// timeouts are sent).
    /// `stream`: the links are TCP.
    pub fn new(
        p: Params,
        opts: ctd::Options,
        setting: PeerProtocol,
        stream: bool,
        now: Instant,
    ) -> Switch {
        let ctd_params = engine::Params {
            mode: p.mode,
            // conntrackd starts from time(); any number does.
            first_seq: p.session,
            max_datagram: p.max_datagram,
            resend_queue_size: p.resend_queue_size,
            ack_window: p.ack_window,
            tx_queue_size: p.tx_queue_size,
            refresh_time: p.refresh_time,
            opts,
        };
        let ctd = (setting == PeerProtocol::Conntrackd)
            .then(|| CtdEngine::new(ctd_params, now));
        Switch {
            setting,
            mode: p.mode,
            keyed: false,
            ct: Engine::new(p, now),
            ctd,
            ctd_params,
            ctd_past: Stats::default(),
            ctd_refused_past: Refused::default(),
            ctsyncd_heard: None,
            ctsyncd_alive: None,
            ctd_since: None,
            stream_hold: (stream && setting == PeerProtocol::Auto)
                .then(|| now + STREAM_HOLD),
        }
    }

    /// Seals ctsyncd's datagrams; conntrackd's are refused from then on.
    pub fn set_sealer(&mut self, sealer: Sealer) {
        self.keyed = true;
        // conntrackd's datagrams are refused: nothing to wait for.
        self.stream_hold = None;
        self.ct.set_sealer(sealer);
    }

    /// Datagrams of at most `n` bytes from now on (the sending link
    /// changed), in either protocol.
    pub fn set_max_datagram(&mut self, n: usize) {
        self.ct.set_max_datagram(n);
        self.ctd_params.max_datagram = n;
        if let Some(c) = self.ctd.as_mut() {
            c.set_max_datagram(n);
        }
    }

    /// The protocol spoken now.
    pub fn protocol(&self) -> Protocol {
        if self.ctd.is_some() {
            Protocol::Conntrackd
        } else {
            Protocol::Ctsyncd
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The round trip measured by our own protocol's engine (None while
    /// the peer speaks conntrackd's, which measures none).
    pub fn round_trip(&self) -> Option<super::RoundTrip> {
        match &self.ctd {
            Some(_) => None,
            None => self.ct.round_trip(),
        }
    }

    /// Both protocols' counters, summed.
    pub fn stats(&self) -> Stats {
        let mut s = self.ct.stats().clone();
        s.add(&self.ctd_past);
        if let Some(c) = &self.ctd {
            s.add(c.stats());
        }
        s
    }

    /// Every conntrackd message refused so far, by why.
    pub fn ctd_refused(&self) -> Refused {
        let mut r = self.ctd_refused_past;
        if let Some(c) = &self.ctd {
            r.add(c.refused());
        }
        r
    }

    pub fn queue_lengths(&self) -> (usize, usize) {
        match &self.ctd {
            Some(c) => c.queue_lengths(),
            None => self.ct.queue_lengths(),
        }
    }

    pub fn resend_queue(
        &self,
    ) -> Box<dyn Iterator<Item = super::ResendEntry> + '_> {
        match &self.ctd {
            Some(c) => Box::new(c.resend_queue()),
            None => Box::new(self.ct.resend_queue()),
        }
    }

    pub fn wants_transmit(&self) -> bool {
        match &self.ctd {
            // The ctsyncd engine's count only while a ctsyncd peer talks
            // (forgotten by the timer `CTSYNCD_HEARD` after it stopped).
            Some(c) => {
                c.wants_transmit()
                    || (self.ctsyncd_heard.is_some()
                        && self.ct.wants_transmit())
            }
            None => self.stream_hold.is_none() && self.ct.wants_transmit(),
        }
    }

    /// What `tx_timing` needs to know of what waits; urgency is the
    /// ctsyncd engine's while it is the one that sends (conntrackd's
    /// protocol keeps its own timing).
    pub(crate) fn tx_state(&self) -> super::tx_timing::TxState {
        let ct_sends = match &self.ctd {
            Some(_) => self.ctsyncd_heard.is_some(),
            None => self.stream_hold.is_none(),
        };
        let ct = self.ct.tx_state();
        super::tx_timing::TxState {
            pending: self.wants_transmit(),
            keys: self.queue_lengths().0,
            urgent: ct_sends && ct.urgent,
            idle: self.is_idle(),
            unacked: ct_sends && ct.unacked,
        }
    }

    pub fn paused(&mut self, now: Instant) {
        self.ct.paused(now);
    }

    pub fn is_idle(&self) -> bool {
        match &self.ctd {
            Some(c) => c.is_idle(),
            None => self.ct.is_idle(),
        }
    }

    // ===== local side =====

    pub fn local_change(&mut self, key: Key, new: bool) -> bool {
        match &mut self.ctd {
            Some(c) => c.local_change(key, new),
            None => self.ct.local_change(key, new),
        }
    }

    /// The internal cache forgot the keys `which` names (`-f`): both
    /// engines forget their changes (see `Engine::forget_states`).
    pub fn forget_states(&mut self, which: &dyn Fn(&Key) -> bool) -> usize {
        let ctd = self.ctd.as_mut().map_or(0, |c| c.forget_states(which));
        ctd + self.ct.forget_states(which)
    }

    pub fn bulk(&mut self, src: &dyn Source) {
        match &mut self.ctd {
            Some(c) => c.bulk(src),
            None => self.ct.bulk(src),
        }
    }

    /// Whether either engine owes a bulk of the kernel's table (see
    /// [`Source::in_kernel`]): true once, then the caller dumps it and
    /// says so ([`Switch::kernel_bulk_done`]).
    pub fn take_kernel_bulk(&mut self) -> bool {
        let ct = self.ct.take_kernel_bulk();
        let ctd = self.ctd.as_mut().is_some_and(|c| c.take_kernel_bulk());
        ct || ctd
    }

    /// The kernel's table owed is queued: a resync answer waits for it.
    pub fn kernel_bulk_done(&mut self) {
        self.ct.kernel_bulk_done();
    }

    pub fn request_resync(&mut self) -> bool {
        match &mut self.ctd {
            Some(c) => c.request_resync(),
            None => self.ct.request_resync(),
        }
    }

    /// Whether a resync we asked for is not complete yet (`-s ready`).
    /// conntrackd's protocol cannot say when its answer is complete:
    /// while it is spoken, nothing is awaited.
    pub fn awaiting_resync(&self) -> bool {
        self.ctd.is_none() && self.ct.awaiting_resync()
    }

    /// Stops waiting for the resync (the node took over: `-c`).
    pub fn stop_awaiting(&mut self) {
        self.ct.stop_awaiting();
    }

    pub fn pop_apply(&mut self) -> Option<Apply> {
        if let Some(a) = self.ct.pop_apply() {
            return Some(a);
        }
        self.ctd.as_mut().and_then(|c| c.pop_apply())
    }

    /// Anti-entropy is ctsyncd's: nothing comes from conntrackd.
    pub fn pop_digest(&mut self) -> Option<Msg> {
        self.ct.pop_digest()
    }

    /// Sends an anti-entropy message; dropped while conntrackd's protocol
    /// is spoken (it has no such message).
    pub fn send_digest(&mut self, msg: Msg) {
        if self.ctd.is_none() {
            self.ct.send_digest(msg);
        }
    }

    // ===== timers =====

    pub fn poll_at(&self) -> Instant {
        match &self.ctd {
            Some(c) => c.poll_at().min(self.ct.poll_at()),
            None => self.ct.poll_at(),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, src: &dyn Source) {
        if self
            .ctsyncd_heard
            .is_some_and(|t| now.since(t) >= CTSYNCD_HEARD)
        {
            self.ctsyncd_heard = None;
        }
        // A stream whose peer said nothing in conntrackd's format for the
        // whole hold: ctsyncd's format may go.
        if self.stream_hold.is_some_and(|t| now >= t) {
            if self.ctd_since.is_some() {
                self.stream_hold = Some(now + STREAM_HOLD);
            } else {
                self.stream_hold = None;
            }
        }
        self.ct.handle_timeout(now, src);
        if let Some(c) = self.ctd.as_mut() {
            c.handle_timeout(now, src);
        }
    }

    // ===== transmit =====

    /// The next datagram: conntrackd's while it is spoken (and ctsyncd's
    /// answers to a ctsyncd peer that talks to us meanwhile).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        src: &dyn Source,
        buf: &mut [u8],
    ) -> Option<usize> {
        let talks = self.ctsyncd_heard.is_some();
        let Some(c) = self.ctd.as_mut() else {
            if self.stream_hold.is_some() {
                return None;
            }
            return self.ct.poll_transmit(now, src, buf);
        };
        if talks && let Some(n) = self.ct.poll_transmit(now, src, buf) {
            return Some(n);
        }
        c.poll_transmit(now, src, buf)
    }
}
