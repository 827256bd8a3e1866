//! The replication engines: FT-FW, NOTRACK and ALARM as one sans-IO state
//! machine.
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
//! FT-FW (conntrackd's reliable mode, reference §4.7), with two fixes:
//! - every data message has a sequence number; the receiver applies
//!   in-order and after-gap messages, drops older ones, NACKs gaps and
//!   ACKs what it got (every `ACKWindowSize` messages and each second);
//! - the sender keeps sent keys in a bounded resend queue until ACKed
//!   (`ResendQueueSize`, oldest dropped and counted when full), resends on
//!   NACK, and also resends what stays unacknowledged for
//!   [`RETRANSMIT_AFTER`] while the peer is alive, so a lost NACK or ACK
//!   cannot lose data (conntrackd loses it);
//! - receive tracking is per peer and a new session id means the peer
//!   restarted (HELLO): its tracking resets and our resend queue empties.
//!
//! NOTRACK: the same transmit path, no resend queue, ALIVE each second,
//! RESYNC answered with a bulk. ALARM: every entry is re-sent once per
//! `RefreshTime`, spread over the period; no control messages.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::config::Mode;
use crate::model::{Conntrack, Expect};
use crate::time::Instant;
use crate::wire::{
    self, Authenticator, CtKey, ExpKey, Header, Msg, Seq, Writer, flag,
};

/// Keep-alive / ACK period (conntrackd's ALIVE_INT).
pub const ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Unacknowledged messages are resent after this long.
pub const RETRANSMIT_AFTER: Duration = Duration::from_millis(2500);
/// A peer heard from within this time counts as alive.
pub const PEER_ALIVE: Duration = Duration::from_secs(3);
/// Most control messages waiting to be sent.
const CONTROL_QUEUE: usize = 256;
/// Most peers tracked at once (the least recently heard is forgotten).
const MAX_PEERS: usize = 8;

/// The identity of an entry in the queues.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Ct(CtKey),
    /// Boxed: expectation keys are large and rare.
    Exp(Box<ExpKey>),
}

/// The current state of an entry, as the internal cache has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ct(Conntrack),
    Exp(Expect),
}

/// The internal cache as the engine sees it.
pub trait Source {
    /// The entry's current state; None when it is gone (a DEL is sent).
    fn current(&self, key: &Key) -> Option<State>;
    /// Every key, conntracks first (masters reach the peer before their
    /// expectations), for bulk sends and resync answers.
    fn keys(&self) -> Vec<Key>;
}

/// A change for the external cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// Replace the entry (`new`) or create/merge it.
    Ct {
        ct: Conntrack,
        new: bool,
    },
    CtDel(CtKey),
    Exp {
        exp: Expect,
        new: bool,
    },
    ExpDel(ExpKey),
}

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
}

/// Counters for `-s`, `-s network`, `-s queue`, `-s rsqueue`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_sent: u64,
    pub datagrams_recv: u64,
    pub msgs_sent: u64,
    pub msgs_recv: u64,
    pub malformed: u64,
    pub bad_version: u64,
    pub bad_header: u64,
    pub auth_failed: u64,
    /// Sequence numbers that never arrived (gaps).
    pub lost: u64,
    /// Old or duplicate messages dropped.
    pub before: u64,
    pub retransmitted: u64,
    pub resend_queue_dropped: u64,
    pub tx_queue_full: u64,
    pub too_big: u64,
    pub peer_restarts: u64,
    pub resyncs_requested_by_peer: u64,
}

/// Receive-side state for one peer.
#[derive(Debug, Clone)]
struct Peer {
    session: u32,
    next: Option<Seq>,
    /// First sequence number of the run not yet acknowledged.
    ack_from: Option<Seq>,
    window: u32,
    heard: Instant,
}

/// What sits in the resend queue.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Key(Key),
    Resync,
}

/// The engine.
pub struct Engine {
    p: Params,
    auth: Option<Box<dyn Authenticator>>,
    next_seq: Seq,
    /// Keys waiting to be sent, in order, with "new" flags.
    tx: VecDeque<Key>,
    queued: HashMap<Key, bool>,
    resync_pending: bool,
    control: VecDeque<Msg>,
    /// FT-FW: sent and not yet acknowledged.
    rs: VecDeque<(Seq, Sent, Instant)>,
    peers: HashMap<u64, Peer>,
    /// Until a HELLO_BACK arrives every datagram says HELLO.
    say_hello: bool,
    say_hello_back: bool,
    last_tx: Instant,
    next_tick: Instant,
    /// ALARM: which slice of the keys the next tick refreshes.
    alarm_slot: u64,
    applies: VecDeque<Apply>,
    stats: Stats,
    version_warned: bool,
}

impl Engine {
    pub fn new(p: Params, now: Instant) -> Engine {
        Engine {
            // Start from the session id, as conntrackd starts from time().
            next_seq: Seq(p.session),
            p,
            auth: None,
            tx: VecDeque::new(),
            queued: HashMap::new(),
            resync_pending: false,
            control: VecDeque::new(),
            rs: VecDeque::new(),
            peers: HashMap::new(),
            say_hello: true,
            say_hello_back: false,
            last_tx: now,
            next_tick: now + ALIVE_INTERVAL,
            alarm_slot: 0,
            applies: VecDeque::new(),
            stats: Stats::default(),
            version_warned: false,
        }
    }

    /// Tags outgoing datagrams and rejects incoming ones without a valid
    /// tag.
    pub fn set_authenticator(&mut self, auth: Box<dyn Authenticator>) {
        self.auth = Some(auth);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn mode(&self) -> Mode {
        self.p.mode
    }

    /// Keys waiting to be sent, and sent keys awaiting an ACK.
    pub fn queue_lengths(&self) -> (usize, usize) {
        (self.tx.len(), self.rs.len())
    }

    /// The resend queue's sequence numbers (for `-s rsqueue`).
    pub fn resend_queue(&self) -> impl Iterator<Item = (Seq, bool)> + '_ {
        self.rs
            .iter()
            .map(|(s, sent, _)| (*s, matches!(sent, Sent::Resync)))
    }

    /// True when something waits to be sent.
    pub fn wants_transmit(&self) -> bool {
        !self.tx.is_empty() || !self.control.is_empty() || self.resync_pending
    }

    /// True when nothing waits to be sent or acknowledged.
    pub fn is_idle(&self) -> bool {
        self.tx.is_empty()
            && self.rs.is_empty()
            && self.control.is_empty()
            && !self.resync_pending
    }

    // ===== local side =====

    /// The internal cache changed `key` (`new`: it was just created).
    /// Returns false when the transmit queue is full (counted).
    pub fn local_change(&mut self, key: Key, new: bool) -> bool {
        if let Some(flag) = self.queued.get_mut(&key) {
            // Coalesce: one message will carry the newest state.
            *flag |= new;
            return true;
        }
        if self.tx.len() >= self.p.tx_queue_size {
            self.stats.tx_queue_full += 1;
            return false;
        }
        self.queued.insert(key.clone(), new);
        self.tx.push_back(key);
        true
    }

    /// `-B`, or the answer to a peer's RESYNC: everything in the internal
    /// cache, conntracks first.
    pub fn bulk(&mut self, src: &dyn Source) {
        for key in src.keys() {
            self.local_change(key, false);
        }
    }

    /// `-n`: ask the peer for its whole internal cache. Not in ALARM.
    pub fn request_resync(&mut self) -> bool {
        if self.p.mode == Mode::Alarm {
            return false;
        }
        self.resync_pending = true;
        true
    }

    /// Changes for the external cache, in arrival order.
    pub fn pop_apply(&mut self) -> Option<Apply> {
        self.applies.pop_front()
    }

    // ===== receive side =====

    /// Handles one datagram from `peer` (an id the daemon derives from the
    /// sender's address). A resync request is answered from `src`.
    pub fn recv(
        &mut self,
        now: Instant,
        peer: u64,
        datagram: &[u8],
        src: &dyn Source,
    ) -> Result<(), wire::Error> {
        let (header, body) = match wire::read(datagram, self.auth.as_deref()) {
            Ok(v) => v,
            Err(e) => {
                match e {
                    wire::Error::Version(v) => {
                        self.stats.bad_version += 1;
                        if !self.version_warned {
                            self.version_warned = true;
                            log::warn!(
                                "peer speaks wire version {v}, this build speaks {}; ignoring its datagrams",
                                wire::VERSION
                            );
                        }
                    }
                    wire::Error::Auth => self.stats.auth_failed += 1,
                    _ => self.stats.bad_header += 1,
                }
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        self.stats.datagrams_recv += 1;
        if header.flags & flag::HELLO_BACK != 0 {
            self.say_hello = false;
        }
        if header.flags & flag::HELLO != 0 {
            self.say_hello_back = true;
        }
        self.track_peer(now, peer, header);

        let mut seq = header.first_seq;
        for msg in wire::messages(body) {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    self.stats.malformed += 1;
                    return Err(e);
                }
            };
            self.stats.msgs_recv += 1;
            if msg.is_data() {
                let s = seq;
                seq = seq.next();
                if self.accept_data(peer, s) {
                    self.apply(msg, src);
                }
            } else if self.p.mode != Mode::Alarm {
                self.control_msg(now, peer, msg);
            }
        }
        Ok(())
    }

    fn track_peer(&mut self, now: Instant, id: u64, h: Header) {
        let known = self.peers.get(&id).map(|p| p.session);
        if known != Some(h.session) {
            if known.is_some() {
                // The peer restarted: it knows nothing of what we sent.
                self.stats.peer_restarts += 1;
                self.rs.clear();
            }
            if self.peers.len() >= MAX_PEERS
                && let Some(oldest) = self
                    .peers
                    .iter()
                    .min_by_key(|(_, p)| p.heard)
                    .map(|(k, _)| *k)
            {
                self.peers.remove(&oldest);
            }
            self.peers.insert(
                id,
                Peer {
                    session: h.session,
                    next: None,
                    ack_from: None,
                    window: self.p.ack_window,
                    heard: now,
                },
            );
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.heard = now;
        }
    }

    /// Sequence tracking of one data message; true to apply it.
    fn accept_data(&mut self, id: u64, s: Seq) -> bool {
        if self.p.mode == Mode::Alarm {
            // ALARM does no sequence tracking (as conntrackd): the next
            // refresh heals whatever a late or lost message got wrong.
            return true;
        }
        let ftfw = self.p.mode == Mode::FtFw;
        let ack_window = self.p.ack_window;
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        match p.next {
            Some(next) if s == next => {}
            Some(next) if s < next => {
                self.stats.before += 1;
                // NOTRACK applies late messages, as conntrackd does; FT-FW
                // drops them (they are resent with new numbers).
                return !ftfw;
            }
            Some(next) => {
                self.stats.lost += u64::from(s - next);
                if ftfw {
                    if let Some(from) = p.ack_from.take() {
                        push_bounded(
                            &mut self.control,
                            Msg::Ack {
                                from,
                                to: next.prev(),
                            },
                        );
                    }
                    push_bounded(
                        &mut self.control,
                        Msg::Nack {
                            from: next,
                            to: s.prev(),
                        },
                    );
                    p.window = ack_window;
                }
            }
            None => {}
        }
        p.next = Some(s.next());
        if ftfw {
            p.ack_from.get_or_insert(s);
            p.window = p.window.saturating_sub(1);
            if p.window == 0 {
                if let Some(from) = p.ack_from.take() {
                    push_bounded(&mut self.control, Msg::Ack { from, to: s });
                }
                p.window = ack_window;
            }
        }
        true
    }

    fn control_msg(&mut self, now: Instant, id: u64, msg: Msg) {
        match msg {
            Msg::Ack { from, to } if self.p.mode == Mode::FtFw => {
                self.rs.retain(|(s, _, _)| !s.in_range(from, to));
            }
            Msg::Nack { from, to } if self.p.mode == Mode::FtFw => {
                self.resend(|s, _| s.in_range(from, to));
            }
            Msg::Alive { next } => {
                // Tail loss: messages up to `next` were sent and not seen.
                let ftfw = self.p.mode == Mode::FtFw;
                if let Some(p) = self.peers.get_mut(&id)
                    && let Some(expected) = p.next
                    && expected < next
                {
                    self.stats.lost += u64::from(next - expected);
                    if ftfw {
                        if let Some(from) = p.ack_from.take() {
                            push_bounded(
                                &mut self.control,
                                Msg::Ack {
                                    from,
                                    to: expected.prev(),
                                },
                            );
                        }
                        push_bounded(
                            &mut self.control,
                            Msg::Nack {
                                from: expected,
                                to: next.prev(),
                            },
                        );
                    }
                    p.next = Some(next);
                }
                let _ = now;
            }
            _ => {
                self.stats.malformed += 1;
            }
        }
    }

    /// Moves matching resend-queue entries back to the transmit queue.
    fn resend(&mut self, mut pick: impl FnMut(Seq, Instant) -> bool) {
        let mut keep = VecDeque::with_capacity(self.rs.len());
        let mut again = Vec::new();
        for (s, sent, at) in self.rs.drain(..) {
            if pick(s, at) {
                again.push(sent);
            } else {
                keep.push_back((s, sent, at));
            }
        }
        self.rs = keep;
        for sent in again {
            self.stats.retransmitted += 1;
            match sent {
                Sent::Key(k) => {
                    self.local_change(k, false);
                }
                Sent::Resync => self.resync_pending = true,
            }
        }
    }

    fn apply(&mut self, msg: Msg, src: &dyn Source) {
        let a = match msg {
            Msg::CtNew(w) => Apply::Ct {
                ct: wire::from_wire_ct(w),
                new: true,
            },
            Msg::CtUpd(w) => Apply::Ct {
                ct: wire::from_wire_ct(w),
                new: false,
            },
            Msg::CtDel(k) => Apply::CtDel(k),
            Msg::ExpNew(w) => Apply::Exp {
                exp: wire::from_wire_exp(w),
                new: true,
            },
            Msg::ExpUpd(w) => Apply::Exp {
                exp: wire::from_wire_exp(w),
                new: false,
            },
            Msg::ExpDel(k) => Apply::ExpDel(k),
            Msg::Resync => {
                if self.p.mode != Mode::Alarm {
                    self.stats.resyncs_requested_by_peer += 1;
                    log::info!("resync requested by other node");
                    log::info!("sending bulk update");
                    self.bulk(src);
                }
                return;
            }
            Msg::Ack { .. } | Msg::Nack { .. } | Msg::Alive { .. } => return,
        };
        self.applies.push_back(a);
    }

    // ===== timers =====

    /// When [`Engine::handle_timeout`] must run next.
    pub fn poll_at(&self) -> Instant {
        self.next_tick
    }

    /// Runs the periodic work due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, src: &dyn Source) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + ALIVE_INTERVAL;
        match self.p.mode {
            Mode::Alarm => self.alarm_refresh(src),
            Mode::FtFw | Mode::NoTrack => {
                let mut acked = false;
                if self.p.mode == Mode::FtFw {
                    let window = self.p.ack_window;
                    for p in self.peers.values_mut() {
                        if let (Some(from), Some(next)) =
                            (p.ack_from.take(), p.next)
                        {
                            push_bounded(
                                &mut self.control,
                                Msg::Ack {
                                    from,
                                    to: next.prev(),
                                },
                            );
                            p.window = window;
                            acked = true;
                        }
                    }
                    let peer_alive = self
                        .peers
                        .values()
                        .any(|p| now.since(p.heard) < PEER_ALIVE);
                    if peer_alive {
                        self.resend(|_, at| now.since(at) >= RETRANSMIT_AFTER);
                    }
                }
                if !acked && now.since(self.last_tx) >= ALIVE_INTERVAL {
                    push_bounded(
                        &mut self.control,
                        Msg::Alive {
                            next: self.next_seq,
                        },
                    );
                }
            }
        }
    }

    /// ALARM: each tick re-sends the keys of one slice, so that every
    /// entry is refreshed once per `RefreshTime`.
    fn alarm_refresh(&mut self, src: &dyn Source) {
        let slots = self.p.refresh_time.as_secs().max(1);
        let slot = self.alarm_slot % slots;
        self.alarm_slot = self.alarm_slot.wrapping_add(1);
        for key in src.keys() {
            if spread(&key) % slots == slot {
                self.local_change(key, false);
            }
        }
    }

    // ===== transmit =====

    /// Builds the next datagram into `buf` (at most `max_datagram`
    /// bytes). None when there is nothing to send.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        src: &dyn Source,
        buf: &mut [u8],
    ) -> Option<usize> {
        if self.control.is_empty() && self.tx.is_empty() && !self.resync_pending
        {
            return None;
        }
        let limit = buf.len().min(self.p.max_datagram);
        let mut flags = 0;
        if self.p.mode == Mode::FtFw {
            if self.say_hello {
                flags |= flag::HELLO;
            }
            if self.say_hello_back {
                flags |= flag::HELLO_BACK;
                self.say_hello_back = false;
            }
        }
        let header = Header {
            flags,
            session: self.p.session,
            first_seq: self.next_seq,
        };
        let Ok(mut w) = Writer::new(&mut buf[..limit], header) else {
            return None;
        };
        while let Some(m) = self.control.front() {
            if w.push(m).is_err() {
                break;
            }
            self.control.pop_front();
        }
        if self.resync_pending && w.push(&Msg::Resync).is_ok() {
            self.resync_pending = false;
            self.sent(Sent::Resync, now);
        }
        while let Some(key) = self.tx.pop_front() {
            let new = self.queued.remove(&key).unwrap_or(false);
            let msg = build(&key, new, src);
            match w.push(&msg) {
                Ok(()) => self.sent(Sent::Key(key), now),
                Err(_) if w.counts().0 == 0 => {
                    // Does not fit even an empty datagram: never sendable.
                    self.stats.too_big += 1;
                }
                Err(_) => {
                    self.queued.insert(key.clone(), new);
                    self.tx.push_front(key);
                    break;
                }
            }
        }
        let (msgs, _) = w.counts();
        if msgs == 0 {
            return None;
        }
        self.stats.msgs_sent += u64::from(msgs);
        self.stats.datagrams_sent += 1;
        self.last_tx = now;
        Some(w.finish(self.auth.as_deref()))
    }

    /// Bookkeeping for one data message just put into a datagram.
    fn sent(&mut self, what: Sent, now: Instant) {
        let s = self.next_seq;
        self.next_seq = self.next_seq.next();
        if self.p.mode != Mode::FtFw {
            return;
        }
        if self.rs.len() >= self.p.resend_queue_size {
            self.rs.pop_front();
            self.stats.resend_queue_dropped += 1;
        }
        self.rs.push_back((s, what, now));
    }
}

// ===== helper functions =====

fn push_bounded(q: &mut VecDeque<Msg>, m: Msg) {
    if q.len() >= CONTROL_QUEUE {
        q.pop_front();
    }
    q.push_back(m);
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

/// A cheap, stable spread of keys over ALARM refresh slots.
fn spread(key: &Key) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Test and simulation helper: a `Source` over a plain map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MapSource {
    pub cts: HashMap<CtKey, Conntrack>,
    pub exps: HashMap<ExpKey, Expect>,
}

impl Source for MapSource {
    fn current(&self, key: &Key) -> Option<State> {
        match key {
            Key::Ct(k) => self.cts.get(k).cloned().map(State::Ct),
            Key::Exp(k) => self.exps.get(k).cloned().map(State::Exp),
        }
    }

    fn keys(&self) -> Vec<Key> {
        // Sorted, so that simulations are reproducible run to run (map
        // iteration order is random).
        let mut cts: Vec<&CtKey> = self.cts.keys().collect();
        cts.sort_by_cached_key(|k| format!("{k:?}"));
        let mut exps: Vec<&ExpKey> = self.exps.keys().collect();
        exps.sort_by_cached_key(|k| format!("{k:?}"));
        let mut v: Vec<Key> = cts.into_iter().map(|k| Key::Ct(*k)).collect();
        v.extend(exps.into_iter().map(|k| Key::Exp(Box::new(*k))));
        v
    }
}

impl MapSource {
    /// Applies one external-cache change (what a receiver does).
    pub fn apply(&mut self, a: Apply) {
        match a {
            Apply::Ct { ct, .. } => {
                self.cts.insert(wire::ct_key_of(&ct), ct);
            }
            Apply::CtDel(k) => {
                self.cts.remove(&k);
            }
            Apply::Exp { exp, .. } => {
                self.exps.insert(wire::exp_key_of(&exp), exp);
            }
            Apply::ExpDel(k) => {
                self.exps.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod test;
