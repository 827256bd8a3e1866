//! The challenge gate: which session of each peer is proven live (it
//! echoed a fresh nonce of ours), the challenges still out (asked again
//! on the peer's datagrams and on the clock, each time with a new nonce),
//! and the datagrams an unproven session sent meanwhile, held until its
//! proof. Every table is bounded, and so is what it sends a second
//! ([`ASK_BURST`]): without a key any datagram can claim a new session.

mod pending;

use std::collections::HashMap;

pub(crate) use self::pending::CHALLENGE_TIMED_REPEATS;
use self::pending::{Ask, Pending};
use super::budget::Budget;
use super::session::MAX_PEERS;
use crate::time::Instant;
use crate::wire::Seq;

/// Challenges sent at once: one session's first and all its timed
/// repeats, every one lost; then one per [`ASK_EVERY`]. Each session is
/// asked on its own schedule, but without a key every datagram may claim
/// a session of its own, each asked on that schedule: without a budget,
/// 100 forged datagrams a second cost 430 challenges a second (and as
/// many answers from the live peer, which reads every challenge on the
/// link), more the more the forger sends. Within a budget they cost at
/// most ten a second. Two budgets: one for the sessions believed (asked
/// again when their numbers left the window), one for the others (new or
/// restarted, and forged), so forged new sessions do not hold up the live
/// session's re-anchoring. A session the budget cannot ask is not held
/// either: its next datagram asks again.
pub(crate) const ASK_BURST: u32 = 1 + CHALLENGE_TIMED_REPEATS;
/// See [`ASK_BURST`]: a handshake needs its repeats within 1.1 s, and the
/// budget gives two handshakes' worth in that time (three peers meeting).
pub(crate) const ASK_EVERY: std::time::Duration =
    std::time::Duration::from_millis(100);

/// Answers to challenges come out of budgets too: a challenge does not
/// say which session it asks, so every one read is answered, and a
/// datagram of challenges (about 130 to 1472 bytes) had about 130
/// answers, as many more as the forger sent. Challenges in datagrams of a
/// session not believed (a restarted peer asking, or a forger) share the
/// budget a peer asks such sessions with ([`ASK_BURST`]); those of a
/// believed session (the live peer) get twice that, as the peer asks from
/// both its budgets (and reads the same forged datagrams on multicast).
pub(crate) const ANSWERS_BELIEVED_BURST: u32 = 2 * ASK_BURST;
const ANSWERS_BELIEVED_EVERY: std::time::Duration =
    std::time::Duration::from_millis(50);

/// Datagrams of an unproven session kept until it is proven (and then
/// replayed), per session.
const HELD_DATAGRAMS: usize = 16;

/// Why a session was not asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unasked {
    /// It was asked too recently (see
    /// [`pending::CHALLENGE_FIRST_REPEAT`]).
    TooSoon,
    /// The budget is spent ([`ASK_BURST`]): held back, counted.
    Held,
}

/// What an answered challenge gives back.
#[derive(Debug)]
pub(crate) struct Proven {
    /// The session believed before (None: a peer new to us).
    pub(crate) before: Option<u32>,
    /// The session's datagrams that arrived before the proof, oldest
    /// first, with their first sequence numbers.
    pub(crate) held: Vec<(Seq, Vec<u8>)>,
    /// The first number of the first datagram held, kept or not: the
    /// numbers of those that gave way to newer ones were received, and
    /// tracking from there counts them as lost (NOTRACK resends nothing).
    pub(crate) first_held: Option<Seq>,
    /// The answered challenge's round trip.
    pub(crate) round_trip: std::time::Duration,
    /// The number we expected next from the session when we sent the
    /// answered challenge: what we had from it then.
    pub(crate) expecting: Option<Seq>,
    /// The peer the session was believed for until now, when another:
    /// a session is one sender's, believed at one address (see
    /// [`Gate::answer`]).
    pub(crate) moved_from: Option<u64>,
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
    /// The challenges we may send ([`ASK_BURST`]): to sessions not
    /// believed, and to believed ones.
    asks: [Budget; 2],
    /// The challenges we may answer ([`ANSWERS_BELIEVED_BURST`]): of
    /// sessions not believed, and of believed ones.
    answers: [Budget; 2],
    /// splitmix64 state, seeded with a random value per daemon start.
    rng: u64,
}

impl Gate {
    pub(crate) fn new(seed: u64) -> Self {
        let asks = || Budget::new(ASK_BURST, ASK_EVERY);
        Gate {
            confirmed: HashMap::new(),
            pending: HashMap::new(),
            asks: [asks(), asks()],
            answers: [
                asks(),
                Budget::new(ANSWERS_BELIEVED_BURST, ANSWERS_BELIEVED_EVERY),
            ],
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

    /// Whether `session` is the one proven for some peer.
    pub(crate) fn believes(&self, session: u32) -> bool {
        self.confirmed.values().any(|s| *s == session)
    }

    /// The budget of challenges to `peer`'s `session` (see
    /// [`ASK_BURST`]).
    fn asks_of(&mut self, peer: u64, session: u32) -> &mut Budget {
        let believed = self.is_confirmed(peer, session);
        &mut self.asks[usize::from(believed)]
    }

    /// Whether a challenge that came from `peer`'s `session` at `now`
    /// may be answered (see [`ANSWERS_BELIEVED_BURST`]).
    pub(crate) fn may_answer(
        &mut self,
        now: Instant,
        peer: u64,
        session: u32,
    ) -> bool {
        let believed = self.is_confirmed(peer, session);
        self.answers[usize::from(believed)].spend(now)
    }

    /// The nonce to ask `peer`'s `session` for, unless it was asked too
    /// recently (see [`pending::CHALLENGE_FIRST_REPEAT`]) or the budget is
    /// spent ([`ASK_BURST`]). Earlier nonces still count, so a slow answer
    /// does too. `expecting`: the number we expect next from it (see
    /// [`Proven::expecting`]).
    pub(crate) fn challenge(
        &mut self,
        now: Instant,
        peer: u64,
        session: u32,
        expecting: Option<Seq>,
    ) -> Result<u64, Unasked> {
        let id = (peer, session);
        let ask = |nonce| Ask {
            nonce,
            at: now,
            expecting,
        };
        if let Some(p) = self.pending.get(&id) {
            if now < p.next_ask() {
                return Err(Unasked::TooSoon);
            }
            if !self.asks_of(peer, session).spend(now) {
                return Err(Unasked::Held);
            }
            let nonce = self.nonce();
            if let Some(p) = self.pending.get_mut(&id) {
                p.ask(ask(nonce));
            }
            return Ok(nonce);
        }
        if !self.asks_of(peer, session).spend(now) {
            return Err(Unasked::Held);
        }
        if self.pending.len() >= MAX_PEERS {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.asked())
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.pending.remove(&k);
            }
        }
        let nonce = self.nonce();
        self.pending.insert(id, Pending::new(ask(nonce)));
        Ok(nonce)
    }

    /// When the clock repeats a challenge next (see
    /// [`CHALLENGE_TIMED_REPEATS`]), its budget permitting.
    pub(crate) fn repeat_at(&self) -> Option<Instant> {
        self.pending
            .iter()
            .filter(|(_, p)| p.timed())
            .map(|(&(peer, session), p)| {
                let believed = self.is_confirmed(peer, session);
                p.next_ask()
                    .max(self.asks[usize::from(believed)].ready_at())
            })
            .min()
    }

    /// The nonces of the challenges the clock repeats at `now` (those
    /// due longest first, while the budget lasts); `expecting` gives the
    /// number we expect next from a peer.
    pub(crate) fn repeats_due(
        &mut self,
        now: Instant,
        expecting: impl Fn(u64) -> Option<Seq>,
    ) -> Vec<u64> {
        let mut due: Vec<(Instant, (u64, u32))> = self
            .pending
            .iter()
            .filter(|(_, p)| p.timed() && now >= p.next_ask())
            .map(|(id, p)| (p.next_ask(), *id))
            .collect();
        due.sort_unstable();
        let mut nonces = Vec::with_capacity(due.len());
        for (_, id) in due {
            if !self.asks_of(id.0, id.1).spend(now) {
                continue;
            }
            let nonce = self.nonce();
            if let Some(p) = self.pending.get_mut(&id) {
                p.ask(Ask {
                    nonce,
                    at: now,
                    expecting: expecting(id.0),
                });
                nonces.push(nonce);
            }
        }
        nonces
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
            p.first_held.get_or_insert(first);
            p.held.push((first, datagram.to_vec()));
        }
    }

    /// `peer`'s `session` echoed `nonce` at `now`. When that answers our
    /// challenge, the session is proven.
    pub(crate) fn answer(
        &mut self,
        now: Instant,
        peer: u64,
        session: u32,
        nonce: u64,
    ) -> Option<Proven> {
        let id = (peer, session);
        let asks = &self.pending.get(&id)?.asks;
        let i = asks.iter().position(|a| a.nonce == nonce)?;
        // A session believed already is asked again because its numbers
        // left our window: its answer's numbers re-anchor our tracking,
        // so only the answer to the last ask counts. An earlier one may
        // come late (delayed, duplicated) with numbers older than data
        // that arrived since, and moved back to them, the tracking took
        // an overtaken message, stale, over a newer one.
        if self.is_confirmed(peer, session) && i + 1 != asks.len() {
            return None;
        }
        let Ask { at, expecting, .. } = asks[i];
        let Pending {
            held, first_held, ..
        } = self.pending.remove(&id)?;
        let round_trip = now.since(at);
        if self.confirmed.len() >= MAX_PEERS
            && !self.confirmed.contains_key(&peer)
            && let Some(k) = self.confirmed.keys().next().copied()
        {
            self.confirmed.remove(&k);
        }
        let before = self.confirmed.insert(peer, session);
        // A session proven at a second address (the sender's link
        // changed, or someone on a multicast or TCP link sent its
        // datagrams from another address) is believed there only, and
        // its tracking moves with it (the engine's). Believed at both, it
        // was tracked twice: a datagram held back and sent from the
        // other address was not late there, and was applied over the
        // newer state the first address had brought (a deleted flow
        // created again, on a sealed link).
        let moved_from = self
            .confirmed
            .iter()
            .find(|&(&p, &s)| s == session && p != peer)
            .map(|(&p, _)| p);
        if let Some(p) = moved_from {
            self.confirmed.remove(&p);
        }
        Some(Proven {
            before,
            held,
            first_held,
            round_trip,
            expecting,
            moved_from,
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_session_is_believed_only_once_it_echoed_our_nonce() {
        let t = Instant::from_millis;
        let mut g = Gate::new(42);
        assert!(!g.is_confirmed(1, 10));
        let n = g.challenge(t(0), 1, 10, None).unwrap();
        assert_eq!(
            g.challenge(t(4), 1, 10, None),
            Err(Unasked::TooSoon),
            "rate-limited"
        );
        // A wrong nonce, or the right one from another session: nothing.
        assert!(g.answer(t(1), 1, 10, n ^ 1).is_none());
        assert!(g.answer(t(1), 1, 11, n).is_none());
        g.hold(1, 10, Seq(5), b"first words");
        let p = g.answer(t(2), 1, 10, n).unwrap();
        assert_eq!(
            (p.before, p.held, p.round_trip),
            (None, vec![(Seq(5), b"first words".to_vec())], ms(2))
        );
        assert!(g.is_confirmed(1, 10));
        assert!(g.answer(t(3), 1, 10, n).is_none(), "a nonce answers once");
        // A restart: the old session stays believed until the new one
        // answers. A retry asks with a new nonce; the old one still counts,
        // and its answer dates from its own challenge.
        let n2 = g.challenge(t(300), 1, 11, None).unwrap();
        assert_ne!(n2, n);
        let n3 = g.challenge(t(600), 1, 11, None).unwrap();
        assert_ne!(n3, n2);
        assert!(g.is_confirmed(1, 10) && !g.is_confirmed(1, 11));
        let p = g.answer(t(601), 1, 11, n2).unwrap();
        assert_eq!((p.before, p.round_trip), (Some(10), ms(301)));
        assert!(g.is_confirmed(1, 11) && !g.is_confirmed(1, 10));
        assert!(g.answer(t(602), 1, 11, n3).is_none(), "proven once");
        // Bounded: many forged peers never grow the tables (asked one
        // each 100 ms, within the budget).
        for id in 100..200 {
            let n = g.challenge(t(id * 100), id, 7, None).unwrap();
            g.answer(t(id * 100 + 1), id, 7, n);
        }
        assert!(g.pending.len() <= MAX_PEERS && g.confirmed.len() <= MAX_PEERS);
    }

    #[test]
    fn a_session_believed_already_counts_only_its_last_asks_answer() {
        // It answers with numbers that re-anchor our tracking: an answer
        // to an earlier ask may be older than data that came since.
        let t = Instant::from_millis;
        let mut g = Gate::new(3);
        g.trust(1, 10);
        let first = g.challenge(t(0), 1, 10, Some(Seq(7))).unwrap();
        let last = g.challenge(t(5), 1, 10, Some(Seq(9))).unwrap();
        assert!(g.answer(t(6), 1, 10, first).is_none(), "late");
        let p = g.answer(t(7), 1, 10, last).unwrap();
        assert_eq!((p.round_trip, p.expecting), (ms(2), Some(Seq(9))));
        // A new session (a restart) is believed on any of them.
        let first = g.challenge(t(10), 1, 11, None).unwrap();
        g.challenge(t(15), 1, 11, None).unwrap();
        assert_eq!(g.answer(t(16), 1, 11, first).unwrap().before, Some(10));
    }
}
