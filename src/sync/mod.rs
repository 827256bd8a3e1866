//! The replication engines: FT-FW, NOTRACK and ALARM behind one sans-IO
//! [`Engine`].
//!
//! The engine never touches a socket or a clock. The daemon feeds it:
//! local changes ([`Engine::local_change`]), received datagrams
//! ([`Engine::recv`]) and the time; it asks for datagrams to send
//! ([`Engine::poll_transmit`]), for changes to apply to the external cache
//! ([`Engine::pop_apply`]) and for the next deadline ([`Engine::poll_at`]).
//!
//! Queues hold *keys*, never message copies: a message is built from the
//! internal cache's current state at transmit time ([`Source`]), so
//! repeated changes to one entry coalesce, and a retransmission always
//! carries the newest state (it can never roll the peer back).
//!
//! One datagram cannot break the stream: a session is believed only once
//! it answered a challenge (`gate::Gate`; until then its datagrams are
//! held, then replayed), so a corrupt or forged "new session" changes
//! nothing, and sequence numbers further than `rx::WINDOW` from the
//! expected one are refused and counted, never adopted; the sender is
//! challenged again and its answer re-anchors the tracking.
//!
//! With a key ([`Engine::set_sealer`]) every datagram is sealed, and one
//! is read only once it opened and its counter passed its sender's
//! anti-replay window (`sealing`); everything else is refused, counted
//! and reported at most once a minute. The challenge and its response
//! then travel sealed: the answer proves the key and liveness at once.
//!
//! Layout (conntrackd's `sync_mode` split, without its globals):
//! - `mod.rs`: the engine: the timer, the local side, and what every
//!   mode shares;
//! - `send`: building datagrams, anti-entropy's messages out;
//! - `recv`: reading datagrams, the handshake, refusals;
//! - `tx`: the transmit path (key and control queues, datagram filling);
//! - `gate`: the challenge gate (which sessions are proven, the
//!   challenges out, their budgets: `budget`); `session`: the HELLO flags
//!   and the peer table (restarts);
//! - `sealing`: keys, anti-replay windows, the refusal report;
//! - `ready`: whether a resync is complete (the asker waits, the
//!   answerer says so once its bulk is delivered);
//! - `rx`: per-peer sequence tracking (gaps, late messages);
//! - `mode`: the `SyncMode` contract and the dispatch;
//! - `ftfw` (with its receive window, resend queue and tail probe),
//!   `notrack`, `alarm`: the three modes;
//! - `source`: [`Key`], [`State`], [`Source`], [`Apply`], [`MapSource`];
//! - [`digest`]: anti-entropy (digests, narrowing, repair), a pure state
//!   machine beside the engine, fed by the node.

mod alarm;
mod budget;
pub mod ctd;
pub mod digest;
mod ftfw;
mod gate;
mod key_queue;
mod mode;
mod notrack;
mod ready;
mod recv;
mod rx;
mod sealing;
mod send;
mod session;
mod source;
mod stats;
mod switch;
mod tx;
pub mod tx_timing;

pub use crate::wire::Seq;
pub use ctd::Refused as CtdRefused;
pub use source::{Apply, Key, MapSource, Source, State};
pub use stats::Stats;
pub use switch::{Protocol, Received, Switch};

/// One entry of a resend queue, as `-s rsqueue` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendEntry {
    /// A cache object awaiting its ACK.
    Object(Seq),
    /// A control message, with the header flags conntrackd prints for it:
    /// its kind's (`NET_F_*`: ACK 8, NACK 4, RESYNC 2) and the HELLO bits
    /// it went with (HELLO 0x20, HELLO_BACK 0x40; conntrackd's handshake
    /// ACK shows as 104).
    Control(Seq, u8),
}

impl ResendEntry {
    pub fn seq(self) -> Seq {
        match self {
            ResendEntry::Object(s) | ResendEntry::Control(s, _) => s,
        }
    }
}

use std::collections::VecDeque;
use std::time::Duration;

use crate::model::Mode;
use crate::time::Instant;
use crate::wire::seal::{Origin, Sealer};
use crate::wire::{self, Msg};
use gate::Gate;
use mode::{Cx, ModeState};
use sealing::{Refused, Sealing};
use session::Handshake;
use tx::Transmit;

/// Keep-alive / ACK period (conntrackd's ALIVE_INT).
pub const ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Unacknowledged messages are resent after this long: FT-FW's last
/// resort (its tail probe finds a lost tail, NACK or ACK within a few
/// round trips).
pub const RETRANSMIT_AFTER: Duration = Duration::from_millis(2500);
/// Most anti-entropy messages waiting for the node (a round sends at most
/// 64 DigestSubs and a few hundred Prunes per table).
const DIGESTS_WAITING: usize = 1024;
/// A peer heard from within this time counts as alive.
pub const PEER_ALIVE: Duration = Duration::from_secs(3);

/// Engine settings (from `Sync { … }`).
#[derive(Debug, Clone)]
pub struct Params {
    pub mode: Mode,
    /// Random per daemon start.
    pub session: u32,
    /// Largest datagram (link MTU minus IP and UDP headers).
    pub max_datagram: usize,
    pub resend_queue_size: usize,
    pub ack_window: u32,
    /// Hard bound of the transmit queue (distinct keys waiting).
    pub tx_queue_size: usize,
    pub refresh_time: Duration,
    /// Random per daemon start: seeds the challenge nonces.
    pub seed: u64,
}

/// FT-FW's measured round trip to its peer (smoothed, RFC 6298's
/// estimator) and the retransmission timeout its unanswered probes wait,
/// for `-s`: a lossy link's repairs take a few of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTrip {
    pub smoothed: Duration,
    pub timeout: Duration,
}

/// A [`Msg::Response`]'s fields.
struct Answer {
    echo: u64,
    from: Seq,
    next: Seq,
}

/// One node's replication state: what every mode shares, plus the mode.
pub struct Engine {
    p: Params,
    sealing: Option<Sealing>,
    /// Where the sealed datagram being read stands in its sender's
    /// numbering.
    opened: Option<Origin>,
    /// What the mode adds: sequence tracking, resend queue, refresh slots.
    mode: ModeState,
    tx: Transmit,
    handshake: Handshake,
    gate: Gate,
    /// Replaying datagrams held until their session's proof.
    replaying: bool,
    next_tick: Instant,
    applies: VecDeque<Apply>,
    /// Anti-entropy messages for the node.
    digests: VecDeque<Msg>,
    /// Our RESYNC, until the peer says its answer is complete.
    awaiting: Option<ready::Awaiting>,
    /// A peer's RESYNC, until we said our answer is complete.
    answering: Option<ready::Answering>,
    /// The datagram being read already had its RESYNC answered: a bulk
    /// walks the whole cache, and one datagram gets one (1 400 RESYNCs
    /// of a byte each cost 14 s of the loop with 50 000 entries).
    answered_in_datagram: bool,
    /// A bulk of a state only a kernel dump reads ([`Source::in_kernel`])
    /// is owed: the node has yet to take it ([`Engine::take_kernel_bulk`]),
    /// and has yet to say it queued it ([`Engine::kernel_bulk_done`]).
    /// Meanwhile no answer to a RESYNC is said complete.
    kernel_bulk: (bool, bool),
    stats: Stats,
    version_warned: bool,
    /// What each peer's last proven datagram said it reads (its header's
    /// capability flags: [`wire::flag::PRUNE_FOR`],
    /// [`wire::flag::DIGEST_SUB_FOR`]).
    capable: session::Capable,
}

impl Engine {
    pub fn new(p: Params, now: Instant) -> Engine {
        Engine {
            gate: Gate::new(p.seed),
            replaying: false,
            mode: ModeState::new(&p),
            // Start from the session id, as conntrackd starts from time().
            tx: Transmit::new(p.tx_queue_size, Seq(p.session), now),
            p,
            sealing: None,
            opened: None,
            handshake: Handshake::new(),
            next_tick: now + ALIVE_INTERVAL,
            applies: VecDeque::new(),
            digests: VecDeque::new(),
            awaiting: None,
            answering: None,
            answered_in_datagram: false,
            kernel_bulk: (false, false),
            stats: Stats::default(),
            version_warned: false,
            capable: session::Capable::default(),
        }
    }

    /// Seals every outgoing datagram, and reads only incoming ones that
    /// open with one of the sealer's keys, once each.
    pub fn set_sealer(&mut self, sealer: Sealer) {
        self.sealing = Some(Sealing::new(sealer));
    }

    /// Datagrams of at most `n` bytes from now on (the link changed).
    pub fn set_max_datagram(&mut self, n: usize) {
        self.p.max_datagram = n;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn mode(&self) -> Mode {
        self.p.mode
    }

    /// See [`RoundTrip`].
    pub fn round_trip(&self) -> Option<RoundTrip> {
        self.mode.get().round_trip()
    }

    /// Keys waiting to be sent, and sent keys awaiting an ACK.
    pub fn queue_lengths(&self) -> (usize, usize) {
        (self.tx.len(), self.resend_len())
    }

    /// The resend queue's sequence numbers, and whether each is a RESYNC
    /// request (for `-s rsqueue`).
    pub fn resend_queue(&self) -> impl Iterator<Item = ResendEntry> + '_ {
        // The only control message this engine keeps is a RESYNC request.
        self.mode
            .get()
            .resend_queue()
            .into_iter()
            .flat_map(|q| q.iter())
            .map(|(seq, resync)| {
                if resync {
                    ResendEntry::Control(seq, wire::ctd::flag::RESYNC)
                } else {
                    ResendEntry::Object(seq)
                }
            })
    }

    /// True when something waits to be sent.
    pub fn wants_transmit(&self) -> bool {
        self.tx.is_pending()
    }

    /// True when what waits must not be held back for more changes (a
    /// report, a probe, a resend: see `tx`).
    pub fn is_urgent(&self) -> bool {
        self.tx.is_urgent()
    }

    /// What [`tx_timing`] needs to know of what waits.
    pub(crate) fn tx_state(&self) -> tx_timing::TxState {
        tx_timing::TxState {
            pending: self.wants_transmit(),
            keys: self.queue_lengths().0,
            urgent: self.is_urgent(),
            idle: self.is_idle(),
            unacked: self.resend_len() > 0,
        }
    }

    /// The node's inputs paused at `now` ([`mode::SyncMode::paused`]).
    pub fn paused(&mut self, now: Instant) {
        self.mode.get_mut().paused(now);
    }

    /// True when nothing waits to be sent or acknowledged.
    pub fn is_idle(&self) -> bool {
        !self.tx.is_pending() && self.resend_len() == 0
    }

    fn resend_len(&self) -> usize {
        self.mode.get().resend_queue().map_or(0, |q| q.len())
    }

    fn cx(&mut self, now: Instant) -> (&mut dyn mode::SyncMode, Cx<'_>) {
        (
            self.mode.get_mut(),
            Cx {
                now,
                stats: &mut self.stats,
                tx: &mut self.tx,
            },
        )
    }

    // ===== local side =====

    /// The internal cache changed `key` (`new`: it was just created).
    /// Returns false when the transmit queue is full (counted).
    pub fn local_change(&mut self, key: Key, new: bool) -> bool {
        self.tx.enqueue(key, new, &mut self.stats)
    }

    /// `-B`, or the answer to a peer's RESYNC: everything in the internal
    /// cache, conntracks first.
    pub fn bulk(&mut self, src: &dyn Source) {
        if src.in_kernel() {
            // The staged keys are not the state: the node dumps it.
            self.kernel_bulk = (true, true);
            return;
        }
        self.tx.bulk(src.keys());
        // The source is the state again: this bulk is the whole of it,
        // and a kernel bulk still owed (its dump failed) holds no answer
        // back any longer.
        self.kernel_bulk.1 = false;
        // An answer under way now also waits for this bulk's end.
        let queued = self.tx.len();
        if let Some(a) = self.answering.as_mut() {
            a.restart(queued);
        }
    }

    /// Whether a bulk of the kernel's table is owed (see
    /// [`Source::in_kernel`]): true once, then it is the caller's.
    pub fn take_kernel_bulk(&mut self) -> bool {
        std::mem::take(&mut self.kernel_bulk.0)
    }

    /// The dump a [`Engine::take_kernel_bulk`] owed has queued its
    /// entries: an answer under way waits for their end.
    pub fn kernel_bulk_done(&mut self) {
        if !std::mem::take(&mut self.kernel_bulk.1) {
            return;
        }
        let queued = self.tx.len();
        if let Some(a) = self.answering.as_mut() {
            a.restart(queued);
        }
    }

    /// `-n`: ask the peer for its whole internal cache, and wait for its
    /// word that all of it was delivered (`ready`). Not in ALARM.
    pub fn request_resync(&mut self) -> bool {
        if !self.mode.get().answers_resync() {
            return false;
        }
        self.tx.request_resync();
        self.awaiting.get_or_insert_default();
        true
    }

    /// Whether a resync we asked for is not complete yet (`-s ready`).
    pub fn awaiting_resync(&self) -> bool {
        self.awaiting.is_some()
    }

    /// Stops waiting for the resync (the node took over: `-c`).
    pub fn stop_awaiting(&mut self) {
        self.awaiting = None;
    }

    /// Sends [`Msg::Synced`] when the bulk answering a peer's RESYNC is
    /// delivered, and its repeats on ticks (`ready`).
    fn tell_synced(&mut self, tick: bool) {
        if self.kernel_bulk.1 {
            // The bulk is still to come from the kernel's table.
            return;
        }
        let Some(a) = self.answering.as_mut() else {
            return;
        };
        a.resends(self.stats.retransmitted, self.tx.len());
        let oldest = self.mode.get().resend_queue().and_then(|q| q.oldest());
        for m in a.tell(self.tx.next_seq(), oldest, tick) {
            self.stats.synced_sent += 1;
            self.tx.control(m);
        }
        if a.done() {
            self.answering = None;
        }
    }

    /// The internal cache forgot the keys `which` names (`-f`): their
    /// changes waiting to be sent or acknowledged go too. Sent or resent
    /// later, each would read as gone and go as a DEL of a flow that
    /// lives on in the kernel (conntrackd's flush takes its objects out
    /// of the queues likewise). DELs already sent stay. Returns how many.
    pub fn forget_states(&mut self, which: &dyn Fn(&Key) -> bool) -> usize {
        self.tx.forget_keys(which) + self.mode.get_mut().give_up_states(which)
    }

    /// Keys waiting to be sent or acknowledged, emptying both queues: a
    /// protocol switch hands them to the other engine.
    pub fn drain_keys(&mut self) -> Vec<(Key, bool)> {
        let mut v = self.tx.drain_keys();
        for s in self.mode.get_mut().drain_resend() {
            if let tx::Sent::Key(k) = s {
                v.push((k, false));
            }
        }
        v
    }

    /// Changes for the external cache, in arrival order.
    pub fn pop_apply(&mut self) -> Option<Apply> {
        self.applies.pop_front()
    }

    /// Anti-entropy messages from a proven peer, in arrival order (see
    /// [`digest::AntiEntropy::on_msg`]).
    pub fn pop_digest(&mut self) -> Option<Msg> {
        self.digests.pop_front()
    }

    // ===== timers =====

    /// When [`Engine::handle_timeout`] must run next.
    pub fn poll_at(&self) -> Instant {
        [self.mode.get().wake_at(), self.gate.repeat_at()]
            .into_iter()
            .flatten()
            .fold(self.next_tick, Instant::min)
    }

    /// Runs the periodic work due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, src: &dyn Source) {
        if self.mode.get().wake_at().is_some_and(|t| t <= now) {
            let (mode, mut cx) = self.cx(now);
            mode.wake(now, &mut cx);
        }
        let mode = self.mode.get();
        for nonce in self.gate.repeats_due(now, |peer| mode.expects(peer)) {
            self.stats.challenges_sent += 1;
            self.tx.handshake(Msg::Challenge { nonce });
        }
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + ALIVE_INTERVAL;
        if let Some(r) = self.sealing.as_mut().and_then(|s| s.report.due(now)) {
            report_refused(r);
        }
        let (mode, mut cx) = self.cx(now);
        mode.tick(now, src, &mut cx);
        self.tell_synced(true);
    }
}

/// Logs refused datagrams (at most once a minute: see `sealing`).
fn report_refused(r: Refused) {
    log::warn!(
        "refused sync datagrams: {} failed authentication (wrong key or altered), {} replayed, {} not sealed (a key is set: plain ctsyncd and conntrackd datagrams are refused)",
        r.auth_failed,
        r.replayed,
        r.unsealed
    );
}

#[cfg(test)]
mod test;
#[cfg(test)]
mod test_bulk;
#[cfg(test)]
mod test_digests;
#[cfg(test)]
mod test_forged;
#[cfg(test)]
mod test_handshake;
#[cfg(test)]
mod test_lossy;
#[cfg(test)]
mod test_numbering;
#[cfg(test)]
mod test_ready;
#[cfg(test)]
mod test_recv;
#[cfg(test)]
mod test_reflected;
#[cfg(test)]
mod test_replication;
#[cfg(test)]
mod test_reports;
#[cfg(test)]
mod test_restart;
#[cfg(test)]
mod test_sealed;
#[cfg(test)]
mod test_sessions;
#[cfg(test)]
mod test_switch;
#[cfg(test)]
mod test_tail;
#[cfg(test)]
mod test_trickle;
