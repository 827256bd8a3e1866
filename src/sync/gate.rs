//! The challenge gate: which session of each peer is proven live (it
//! echoed a fresh nonce of ours), the challenges still out (asked again
//! on the peer's datagrams and on the clock, each time with a new nonce),
//! and the datagrams an unproven session sent meanwhile, held until its
//! proof. Every table is bounded, and so is what it sends a second
//! ([`ASK_BURST`]): without a key any datagram can claim a new session.

use std::collections::{HashMap, VecDeque};

use super::budget::Budget;
use super::session::MAX_PEERS;
use crate::time::Instant;
use crate::wire::Seq;

/// While a session stays unproven, its next datagram asks again once
/// this long has passed since the last challenge, doubled after each
/// one up to [`CHALLENGE_EVERY`]. At a flat 200 ms, a challenge or answer
/// lost at the start of a burst on a lossy link dropped 200 ms of the
/// burst (held, then resent: a third of the bench's lossy runs resent
/// everything once). Each repeat has a nonce of its own and the last
/// [`ASKS_KEPT`] all count, so a repeat costs a small control message and
/// never voids a slow answer, and an answer dates its own challenge: a
/// round-trip sample (Karn's rule holds) before any data has flowed.
pub(crate) const CHALLENGE_FIRST_REPEAT: std::time::Duration =
    std::time::Duration::from_millis(5);
/// The longest wait between two challenges of one unproven session: a
/// forged "new session" is asked at most this often.
pub(crate) const CHALLENGE_EVERY: std::time::Duration =
    std::time::Duration::from_millis(200);
/// Repeats of an unanswered challenge sent on the clock, on the same
/// schedule, without waiting for the session's next datagram. Until the
/// handshake is done the peer's datagrams are held, and at startup the
/// next one may be its keepalive a second later: at 20 % loss each way a
/// lost challenge or answer stalled the handshake for a second or more
/// (in a simulation, 2.5 s; in the bench, a burst held for 0.98 s).
/// Ten repeats (5 ms apart, then doubling up to [`CHALLENGE_EVERY`]: 1.1 s
/// in all) leave one handshake in about 100 000 to the datagram-driven
/// repeats (a round fails 36 % of the time at 20 % loss each way); a
/// forged session gets at most this many more small control messages,
/// sent on our link, not to the forger.
pub(crate) const CHALLENGE_TIMED_REPEATS: u32 = 10;

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
/// The last challenges of one session whose answers still count (their
/// nonces); a forger must guess one of them.
const ASKS_KEPT: usize = 8;

/// Why a session was not asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unasked {
    /// It was asked too recently (see [`CHALLENGE_FIRST_REPEAT`]).
    TooSoon,
    /// The budget is spent ([`ASK_BURST`]): held back, counted.
    Held,
}

/// One challenge sent.
#[derive(Debug, Clone, Copy)]
struct Ask {
    nonce: u64,
    at: Instant,
    /// The number we expected next from the session when we asked.
    expecting: Option<Seq>,
}

/// A challenge waiting for its answer, and what arrived meanwhile.
#[derive(Debug, Clone)]
struct Pending {
    /// The last [`ASKS_KEPT`] challenges, oldest first; never empty.
    asks: VecDeque<Ask>,
    /// Challenges sent for it so far.
    asked_times: u32,
    /// (first sequence number, datagram), oldest first.
    held: Vec<(Seq, Vec<u8>)>,
    /// The first number of the first datagram held, even once it gave
    /// way (see [`Proven::first_held`]).
    first_held: Option<Seq>,
}

impl Pending {
    fn new(ask: Ask) -> Self {
        Pending {
            asks: VecDeque::from([ask]),
            asked_times: 1,
            held: Vec::new(),
            first_held: None,
        }
    }

    /// When the last challenge went out.
    fn asked(&self) -> Instant {
        self.asks.back().map_or(Instant::from_millis(0), |a| a.at)
    }

    /// Asks again.
    fn ask(&mut self, ask: Ask) {
        if self.asks.len() >= ASKS_KEPT {
            self.asks.pop_front();
        }
        self.asks.push_back(ask);
        self.asked_times += 1;
    }

    /// When it may be asked again (see [`CHALLENGE_FIRST_REPEAT`]).
    fn next_ask(&self) -> Instant {
        self.asked()
            + CHALLENGE_FIRST_REPEAT
                .saturating_mul(1 << self.asked_times.saturating_sub(1).min(16))
                .min(CHALLENGE_EVERY)
    }

    /// Whether the clock still repeats it (see
    /// [`CHALLENGE_TIMED_REPEATS`]).
    fn timed(&self) -> bool {
        self.asked_times <= CHALLENGE_TIMED_REPEATS
    }
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
    /// recently (see [`CHALLENGE_FIRST_REPEAT`]) or the budget is spent
    /// ([`ASK_BURST`]). Earlier nonces still count, so a slow answer does
    /// too. `expecting`: the number we expect next from it (see
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
        Some(Proven {
            before,
            held,
            first_held,
            round_trip,
            expecting,
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
    fn only_the_last_few_nonces_of_a_session_count() {
        let mut g = Gate::new(5);
        let t = |i: u64| Instant::from_millis(i * 1000);
        let nonces: Vec<u64> = (0..=ASKS_KEPT as u64)
            .map(|i| g.challenge(t(i), 1, 10, None).unwrap())
            .collect();
        let now = t(ASKS_KEPT as u64 + 1);
        assert!(g.answer(now, 1, 10, nonces[0]).is_none(), "forgotten");
        assert!(g.answer(now, 1, 10, nonces[1]).is_some());
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

    #[test]
    fn the_clock_repeats_an_unanswered_challenge_a_few_times() {
        let mut g = Gate::new(9);
        assert_eq!(g.repeat_at(), None, "nothing pending");
        let first = g.challenge(Instant::from_millis(0), 1, 10, None).unwrap();
        // No datagram of the session comes: the clock asks, on the
        // schedule a datagram-driven repeat keeps, with new nonces.
        let mut at = Vec::new();
        let mut nonces = vec![first];
        while let Some(due) = g.repeat_at() {
            let ms = due.since(Instant::from_millis(0)).as_millis() as u64;
            assert_eq!(
                g.repeats_due(due - Duration::from_micros(1), |_| None),
                vec![]
            );
            let n = g.repeats_due(due, |_| None);
            assert_eq!(n.len(), 1);
            assert!(!nonces.contains(&n[0]));
            nonces.extend(n);
            at.push(ms);
            assert!(at.len() <= CHALLENGE_TIMED_REPEATS as usize);
        }
        assert_eq!(at, [5, 15, 35, 75, 155, 315, 515, 715, 915, 1115]);
        // Then only a datagram of the session asks again.
        assert_eq!(
            g.challenge(Instant::from_millis(1314), 1, 10, None),
            Err(Unasked::TooSoon)
        );
        assert!(g.challenge(Instant::from_millis(1315), 1, 10, None).is_ok());
        // The answer to any recent one proves the session; the clock stops.
        let last = nonces.len() - 1;
        assert!(
            g.answer(Instant::from_millis(1316), 1, 10, nonces[last - 3])
                .is_some()
        );
        assert_eq!(g.repeat_at(), None);
    }

    #[test]
    fn an_unanswered_challenge_is_repeated_soon_then_less_often() {
        // A datagram of the unproven session every millisecond (a burst):
        // the challenges it may send, and when.
        let mut g = Gate::new(7);
        let asked: Vec<u64> = (0..1000u64)
            .filter(|&t| {
                g.challenge(Instant::from_millis(t), 1, 10, None).is_ok()
            })
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
}
