//! One unproven session's challenges out: the nonces whose answers still
//! count (the last [`ASKS_KEPT`]), the schedule of repeats (soon, then
//! doubling up to [`CHALLENGE_EVERY`]; the first
//! [`CHALLENGE_TIMED_REPEATS`] also on the clock), and the datagrams it
//! sent meanwhile, held for its proof. The table of sessions and the
//! budgets are the gate's (`super`).

use std::collections::VecDeque;

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

/// The last challenges of one session whose answers still count (their
/// nonces); a forger must guess one of them.
const ASKS_KEPT: usize = 8;

/// One challenge sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask {
    pub(super) nonce: u64,
    pub(super) at: Instant,
    /// The number we expected next from the session when we asked.
    pub(super) expecting: Option<Seq>,
}

/// A challenge waiting for its answer, and what arrived meanwhile.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// The last [`ASKS_KEPT`] challenges, oldest first; never empty.
    pub(super) asks: VecDeque<Ask>,
    /// Challenges sent for it so far.
    asked_times: u32,
    /// (first sequence number, datagram), oldest first.
    pub(super) held: Vec<(Seq, Vec<u8>)>,
    /// The first number of the first datagram held, even once it gave
    /// way (see [`super::Proven::first_held`]).
    pub(super) first_held: Option<Seq>,
}

impl Pending {
    pub(super) fn new(ask: Ask) -> Self {
        Pending {
            asks: VecDeque::from([ask]),
            asked_times: 1,
            held: Vec::new(),
            first_held: None,
        }
    }

    /// When the last challenge went out.
    pub(super) fn asked(&self) -> Instant {
        self.asks.back().map_or(Instant::from_millis(0), |a| a.at)
    }

    /// Asks again.
    pub(super) fn ask(&mut self, ask: Ask) {
        if self.asks.len() >= ASKS_KEPT {
            self.asks.pop_front();
        }
        self.asks.push_back(ask);
        self.asked_times += 1;
    }

    /// When it may be asked again (see [`CHALLENGE_FIRST_REPEAT`]).
    pub(super) fn next_ask(&self) -> Instant {
        self.asked()
            + CHALLENGE_FIRST_REPEAT
                .saturating_mul(1 << self.asked_times.saturating_sub(1).min(16))
                .min(CHALLENGE_EVERY)
    }

    /// Whether the clock still repeats it (see
    /// [`CHALLENGE_TIMED_REPEATS`]).
    pub(super) fn timed(&self) -> bool {
        self.asked_times <= CHALLENGE_TIMED_REPEATS
    }
}

#[cfg(test)]
mod test {
    use std::time::Duration;

    use super::super::{Gate, Unasked};
    use super::*;

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
