//! Who we talk to: the gate that believes a peer's session only once it
//! answered our challenge, the HELLO flags of our own session, and the
//! table of peers by session id, which notices when a proven session
//! replaces another (a restart).
//!
//! Each datagram names its sender's session (random per daemon start). A
//! session we have not seen from that peer before means it restarted (or
//! is new): whatever we tracked for it is void. The table is bounded: the
//! peer heard least recently makes room for a new one.

use std::collections::HashMap;

use crate::time::Instant;
use crate::wire::{Seq, flag};

/// Most peers tracked at once (the least recently heard is forgotten).
const MAX_PEERS: usize = 8;

/// Our side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hello {
    /// We (re)started: every datagram says HELLO until a HELLO_BACK.
    Sent,
    /// The peer answered; we stop saying HELLO.
    Answered,
}

/// The peer's side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloBack {
    /// Nothing to answer.
    NotOwed,
    /// The peer said HELLO: our next datagram answers HELLO_BACK.
    Owed,
}

/// Both sides of the HELLO handshake (conntrackd's `hello_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handshake {
    pub(crate) hello: Hello,
    pub(crate) back: HelloBack,
}

impl Handshake {
    pub(crate) fn new() -> Self {
        Handshake {
            hello: Hello::Sent,
            back: HelloBack::NotOwed,
        }
    }

    /// A datagram with header `flags` arrived.
    pub(crate) fn received(&mut self, flags: u8) {
        if flags & flag::HELLO_BACK != 0 {
            self.hello = Hello::Answered;
        }
        if flags & flag::HELLO != 0 {
            self.back = HelloBack::Owed;
        }
    }

    /// The flags of the next datagram; it pays an owed HELLO_BACK.
    pub(crate) fn flags_to_send(&mut self) -> u8 {
        let mut flags = 0;
        if self.hello == Hello::Sent {
            flags |= flag::HELLO;
        }
        if self.back == HelloBack::Owed {
            flags |= flag::HELLO_BACK;
            self.back = HelloBack::NotOwed;
        }
        flags
    }
}

/// While a session stays unproven, its next datagram asks again once
/// this long has passed since the last challenge, doubled after each
/// one up to [`CHALLENGE_EVERY`]. The nonce stays the same, so a repeat
/// costs a small control message and never voids a slow answer; at a
/// flat 200 ms, a challenge or answer lost at the start of a burst on a
/// lossy link dropped 200 ms of the burst (held, then resent: a third of
/// the bench's lossy runs resent everything once).
pub(crate) const CHALLENGE_FIRST_REPEAT: std::time::Duration =
    std::time::Duration::from_millis(5);
/// The longest wait between two challenges of one unproven session: a
/// forged "new session" is asked at most this often.
pub(crate) const CHALLENGE_EVERY: std::time::Duration =
    std::time::Duration::from_millis(200);

/// Datagrams of an unproven session kept until it is proven (and then
/// replayed), per session.
const HELD_DATAGRAMS: usize = 16;

/// A challenge waiting for its answer, and what arrived meanwhile.
#[derive(Debug, Clone)]
struct Pending {
    nonce: u64,
    asked: Instant,
    /// Challenges sent for it so far.
    asked_times: u32,
    /// (first sequence number, datagram), oldest first.
    held: Vec<(Seq, Vec<u8>)>,
}

/// What an answered challenge gives back.
#[derive(Debug)]
pub(crate) struct Proven {
    /// The session believed before (None: a peer new to us).
    pub(crate) before: Option<u32>,
    /// The session's datagrams that arrived before the proof, oldest
    /// first, with their first sequence numbers.
    pub(crate) held: Vec<(Seq, Vec<u8>)>,
}

/// Which session of each peer is proven live, and the challenges out.
///
/// A datagram names its sender's session, but one datagram proves
/// nothing: it may be corrupt, forged or replayed. A session is believed
/// only once it echoed a fresh nonce of ours ([`crate::wire::Msg::Challenge`]
/// → [`crate::wire::Msg::Response`]); until then its datagrams are held
/// (a few, replayed once it is proven: the first words of a restarted
/// peer, its resync request, are not lost) and the session believed
/// before stays. Every table is bounded.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    confirmed: HashMap<u64, u32>,
    pending: HashMap<(u64, u32), Pending>,
    /// splitmix64 state, seeded with a random value per daemon start.
    rng: u64,
}

impl Gate {
    pub(crate) fn new(seed: u64) -> Self {
        Gate {
            confirmed: HashMap::new(),
            pending: HashMap::new(),
            rng: seed,
        }
    }

    fn nonce(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Believes `session` of `peer` without asking (tests that are about
    /// something else than the challenge).
    #[cfg(test)]
    pub(crate) fn trust(&mut self, peer: u64, session: u32) {
        self.confirmed.insert(peer, session);
    }

    /// Whether `session` is the one proven for `peer`.
    pub(crate) fn is_confirmed(&self, peer: u64, session: u32) -> bool {
        self.confirmed.get(&peer) == Some(&session)
    }

    /// The nonce to ask `peer`'s `session` for, unless it was asked too
    /// recently (see [`CHALLENGE_FIRST_REPEAT`]). The nonce stays the
    /// same until it is answered, so a slow answer still counts.
    pub(crate) fn challenge(
        &mut self,
        now: Instant,
        peer: u64,
        session: u32,
    ) -> Option<u64> {
        let id = (peer, session);
        if let Some(p) = self.pending.get_mut(&id) {
            let wait = CHALLENGE_FIRST_REPEAT
                .saturating_mul(1 << p.asked_times.saturating_sub(1).min(16))
                .min(CHALLENGE_EVERY);
            if now.since(p.asked) < wait {
                return None;
            }
            p.asked = now;
            p.asked_times += 1;
            return Some(p.nonce);
        }
        if self.pending.len() >= MAX_PEERS {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.asked)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.pending.remove(&k);
            }
        }
        let nonce = self.nonce();
        self.pending.insert(
            id,
            Pending {
                nonce,
                asked: now,
                asked_times: 1,
                held: Vec::new(),
            },
        );
        Some(nonce)
    }

    /// Keeps a datagram of an unproven (and challenged) session until its
    /// proof; the oldest gives way.
    pub(crate) fn hold(
        &mut self,
        peer: u64,
        session: u32,
        first: Seq,
        datagram: &[u8],
    ) {
        if let Some(p) = self.pending.get_mut(&(peer, session)) {
            if p.held.len() >= HELD_DATAGRAMS {
                p.held.remove(0);
            }
            p.held.push((first, datagram.to_vec()));
        }
    }

    /// `peer`'s `session` echoed `nonce`. When that answers our challenge,
    /// the session is proven.
    pub(crate) fn answer(
        &mut self,
        peer: u64,
        session: u32,
        nonce: u64,
    ) -> Option<Proven> {
        let id = (peer, session);
        if self.pending.get(&id)?.nonce != nonce {
            return None;
        }
        let held = self.pending.remove(&id)?.held;
        if self.confirmed.len() >= MAX_PEERS
            && !self.confirmed.contains_key(&peer)
            && let Some(k) = self.confirmed.keys().next().copied()
        {
            self.confirmed.remove(&k);
        }
        let before = self.confirmed.insert(peer, session);
        Some(Proven { before, held })
    }
}

/// How a datagram's session relates to what we know of its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contact {
    /// The session we know.
    Known,
    /// A peer we did not know (or had forgotten).
    First,
    /// A known peer with a new session: it restarted.
    Restarted,
}

/// One peer: its session, when we last heard it, and the mode's receive
/// state `R` for it.
#[derive(Debug, Clone)]
pub(crate) struct Peer<R> {
    session: u32,
    heard: Instant,
    pub(crate) rx: R,
}

/// The peers by id (the daemon derives the id from the sender address).
#[derive(Debug, Clone)]
pub(crate) struct Peers<R> {
    map: HashMap<u64, Peer<R>>,
}

impl<R> Peers<R> {
    pub(crate) fn new() -> Self {
        Peers {
            map: HashMap::new(),
        }
    }

    /// Records a datagram from peer `id` with `session` at `now`. A new
    /// session starts from `fresh()` receive state.
    pub(crate) fn heard(
        &mut self,
        now: Instant,
        id: u64,
        session: u32,
        fresh: impl FnOnce() -> R,
    ) -> Contact {
        let contact = match self.map.get(&id) {
            Some(p) if p.session == session => Contact::Known,
            Some(_) => Contact::Restarted,
            None => Contact::First,
        };
        if contact != Contact::Known {
            if self.map.len() >= MAX_PEERS
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, p)| p.heard)
                    .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
            let rx = fresh();
            self.map.insert(
                id,
                Peer {
                    session,
                    heard: now,
                    rx,
                },
            );
        }
        if let Some(p) = self.map.get_mut(&id) {
            p.heard = now;
        }
        contact
    }

    /// The receive state of peer `id`, to read.
    pub(crate) fn rx(&self, id: u64) -> Option<&R> {
        self.map.get(&id).map(|p| &p.rx)
    }

    /// The receive state of peer `id`.
    pub(crate) fn rx_mut(&mut self, id: u64) -> Option<&mut R> {
        self.map.get_mut(&id).map(|p| &mut p.rx)
    }

    /// Every peer's receive state.
    pub(crate) fn rx_all(&mut self) -> impl Iterator<Item = &mut R> {
        self.map.values_mut().map(|p| &mut p.rx)
    }

    /// True when some peer was heard less than `within` before `now`.
    pub(crate) fn any_heard(
        &self,
        now: Instant,
        within: std::time::Duration,
    ) -> bool {
        self.map.values().any(|p| now.since(p.heard) < within)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn hello_is_said_until_answered_and_answered_once() {
        let mut a = Handshake::new();
        assert_eq!(a.flags_to_send(), flag::HELLO);
        a.received(flag::HELLO);
        assert_eq!(a.flags_to_send(), flag::HELLO | flag::HELLO_BACK);
        assert_eq!(a.flags_to_send(), flag::HELLO, "answered once");
        a.received(flag::HELLO_BACK);
        assert_eq!(a.hello, Hello::Answered);
        assert_eq!(a.flags_to_send(), 0);
    }

    #[test]
    fn a_session_is_believed_only_once_it_echoed_our_nonce() {
        let mut g = Gate::new(42);
        assert!(!g.is_confirmed(1, 10));
        let n = g.challenge(Instant::from_millis(0), 1, 10).unwrap();
        assert_eq!(
            g.challenge(Instant::from_millis(4), 1, 10),
            None,
            "rate-limited"
        );
        // A wrong nonce, or the right one from another session: nothing.
        assert!(g.answer(1, 10, n ^ 1).is_none());
        assert!(g.answer(1, 11, n).is_none());
        g.hold(1, 10, Seq(5), b"first words");
        let p = g.answer(1, 10, n).unwrap();
        assert_eq!(
            (p.before, p.held),
            (None, vec![(Seq(5), b"first words".to_vec())])
        );
        assert!(g.is_confirmed(1, 10));
        assert!(g.answer(1, 10, n).is_none(), "a nonce answers once");
        // A restart: the old session stays believed until the new one
        // answers; a retry asks for the same nonce.
        let n2 = g.challenge(Instant::from_millis(300), 1, 11).unwrap();
        assert_ne!(n2, n);
        assert_eq!(g.challenge(Instant::from_millis(600), 1, 11), Some(n2));
        assert!(g.is_confirmed(1, 10) && !g.is_confirmed(1, 11));
        assert_eq!(g.answer(1, 11, n2).unwrap().before, Some(10));
        assert!(g.is_confirmed(1, 11) && !g.is_confirmed(1, 10));
        // Bounded: many forged peers never grow the tables.
        for id in 100..200 {
            let n = g.challenge(Instant::from_millis(400), id, 7).unwrap();
            g.answer(id, 7, n);
        }
        assert!(g.pending.len() <= MAX_PEERS && g.confirmed.len() <= MAX_PEERS);
    }

    #[test]
    fn an_unanswered_challenge_is_repeated_soon_then_less_often() {
        // A datagram of the unproven session every millisecond (a burst):
        // the challenges it may send, and when.
        let mut g = Gate::new(7);
        let asked: Vec<u64> = (0..1000u64)
            .filter(|&t| g.challenge(Instant::from_millis(t), 1, 10).is_some())
            .collect();
        // 5 ms after the first, then 10, 20, 40, 80, 160, then every 200.
        assert_eq!(
            &asked[..8],
            &[0, 5, 15, 35, 75, 155, 315, 515],
            "{asked:?}"
        );
        assert!(asked.windows(2).skip(6).all(|w| w[1] - w[0] == 200));
        // A forged session that never answers: a handful a second.
        assert_eq!(asked.len(), 10);
    }

    #[test]
    fn a_new_session_is_a_restart_and_the_table_is_bounded() {
        let mut peers: Peers<u32> = Peers::new();
        assert_eq!(
            peers.heard(Instant::from_millis(0), 1, 10, || 0),
            Contact::First
        );
        *peers.rx_mut(1).unwrap() = 5;
        assert_eq!(
            peers.heard(Instant::from_millis(1), 1, 10, || 0),
            Contact::Known
        );
        assert_eq!(peers.rx_mut(1), Some(&mut 5));
        assert_eq!(
            peers.heard(Instant::from_millis(2), 1, 11, || 0),
            Contact::Restarted
        );
        assert_eq!(peers.rx_mut(1), Some(&mut 0), "tracking starts over");
        for id in 2..=MAX_PEERS as u64 + 1 {
            peers.heard(Instant::from_millis(10 + id), id, 1, || 0);
        }
        assert_eq!(peers.map.len(), MAX_PEERS);
        assert!(peers.rx_mut(1).is_none(), "least recently heard is gone");
    }
}
