//! Forged datagrams on a link without a key, simulated: a live, proven
//! pair (A sends a change every 10 ms, B keeps the external cache), a
//! one-way delay of 1 ms, the node's transmit rule ([`TxTiming`]), and
//! forged datagrams handed to B from A's address (on multicast, to A as
//! well, from a third address). What each side sends is counted by kind
//! and set against the same run without the forger: the difference is
//! what the forgery cost. The live session's own messages (data, ALIVE,
//! ACK, NACK) must be the same in number, and B's external cache must lag
//! A's no longer than without the forger. Then the gate's budgets alone.

use std::collections::{BTreeMap, VecDeque};

use super::gate::{
    ANSWERS_BELIEVED_BURST, ASK_BURST, ASK_EVERY, CHALLENGE_TIMED_REPEATS, Gate,
};
use super::test::{ct, datagram_from, key, params};
use super::tx_timing::TxTiming;
use super::*;
use crate::wire::{Header, Writer};

const DELAY_US: u64 = 1000;
const STEP_US: u64 = 100;
/// A changes a flow every 10 ms until then; the run ends a second later.
const CHANGES_END_US: u64 = 6_000_000;
const END_US: u64 = 7_000_000;
/// The forger's stream: from 1 s, 100 datagrams a second for 5 s.
const FORGED_FROM_US: u64 = 1_000_000;
const FORGED_EVERY_US: u64 = 10_000;
const FORGED_COUNT: u32 = 500;

/// A's address as B knows it, and the forger's own on multicast.
const PEER: u64 = 1;
const FORGER: u64 = 2;

struct Side {
    e: Engine,
    internal: MapSource,
    external: MapSource,
    tx: TxTiming,
    /// Challenges in the datagrams it received.
    challenges_read: u64,
}

impl Side {
    fn new(session: u32, peer: u32) -> Side {
        let mut p = params(Mode::FtFw, session);
        p.ack_window = 300;
        let mut e = Engine::new(p, Instant::ZERO);
        e.trust(PEER, peer);
        Side {
            e,
            internal: MapSource::default(),
            external: MapSource::default(),
            tx: TxTiming::default(),
            challenges_read: 0,
        }
    }

    /// True when the external cache changed.
    fn receive(&mut self, now: Instant, from: u64, d: &[u8]) -> bool {
        let (_, body) = wire::read(d).unwrap();
        self.challenges_read += wire::messages(body)
            .filter(|m| matches!(m, Ok(Msg::Challenge { .. })))
            .count() as u64;
        self.e.recv(now, from, d, &self.internal).unwrap();
        self.tx.news(now);
        let mut changed = false;
        while let Some(a) = self.e.pop_apply() {
            self.external.apply(a);
            changed = true;
        }
        changed
    }

    /// The node's transmit step at `now`; what leaves is counted.
    fn transmit(&mut self, now: Instant, name: char, out: &mut Outcome) {
        let step = self.tx.step(now, self.e.tx_state());
        if step.paused {
            self.e.paused(now);
        }
        if !step.flush {
            return;
        }
        let mut buf = [0u8; 1472];
        while let Some(n) = self.e.poll_transmit(now, &self.internal, &mut buf)
        {
            let d = buf[..n].to_vec();
            let (_, body) = wire::read(&d).unwrap();
            for m in wire::messages(body) {
                *out.sent.entry((name, kind(&m.unwrap()))).or_default() += 1;
            }
            out.wire(name).push_back((now.micros() + DELAY_US, d));
        }
    }
}

fn kind(m: &Msg) -> &'static str {
    match m {
        Msg::Ack { .. } => "ack",
        Msg::Nack { .. } => "nack",
        Msg::Alive { .. } => "alive",
        Msg::Challenge { .. } => "challenge",
        Msg::Response { .. } => "response",
        m if m.is_data() => "data",
        _ => "anti-entropy",
    }
}

#[derive(Default)]
struct Outcome {
    /// Messages sent, by side ('A', 'B') and kind.
    sent: BTreeMap<(char, &'static str), u64>,
    /// Steps during which B's external cache differed from A's internal
    /// one (each change is 1 ms in flight).
    lagging: u64,
    to_a: VecDeque<(u64, Vec<u8>)>,
    to_b: VecDeque<(u64, Vec<u8>)>,
    /// Forged datagrams after which B had sent no more challenges.
    unasked: u64,
    /// B's counters at the end, and the challenges it read.
    b: Stats,
    b_challenges_read: u64,
}

impl Outcome {
    fn wire(&mut self, from: char) -> &mut VecDeque<(u64, Vec<u8>)> {
        if from == 'A' {
            &mut self.to_b
        } else {
            &mut self.to_a
        }
    }

    fn sent(&self, side: char, kind: &str) -> u64 {
        self.sent
            .iter()
            .filter(|((s, k), _)| *s == side && *k == kind)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// Runs the pair with `forged` (arrival time in µs, datagram) handed to
/// B, and to A too on `multicast`.
fn run(forged: &[(u64, Vec<u8>)], multicast: bool) -> Outcome {
    let mut a = Side::new(100, 200);
    let mut b = Side::new(200, 100);
    let mut out = Outcome::default();
    let mut forged: VecDeque<_> = forged.iter().cloned().collect();
    let mut port = 0u16;
    let mut now_us = 0;
    // Whether B's cache is A's (compared only when either changed).
    let mut same = true;
    while now_us < END_US {
        let now = Instant::from_micros(now_us);
        if now_us % 10_000 == 0 && now_us < CHANGES_END_US {
            port += 1;
            let c = ct(port % 300);
            if port % 7 == 0 {
                a.internal.cts.remove(&wire::ct_key_of(&c));
            } else {
                a.internal.cts.insert(wire::ct_key_of(&c), c.clone());
            }
            a.e.local_change(key(&c), true);
            a.tx.news(now);
            same = false;
        }
        while forged.front().is_some_and(|f| f.0 <= now_us) {
            let (_, d) = forged.pop_front().unwrap();
            let asked = b.e.stats().challenges_sent;
            same &= !b.receive(now, PEER, &d);
            out.unasked += u64::from(b.e.stats().challenges_sent == asked);
            if multicast {
                a.receive(now, FORGER, &d);
            }
        }
        while out.to_a.front().is_some_and(|(t, _)| *t <= now_us) {
            let d = out.to_a.pop_front().unwrap().1;
            a.receive(now, PEER, &d);
        }
        while out.to_b.front().is_some_and(|(t, _)| *t <= now_us) {
            let d = out.to_b.pop_front().unwrap().1;
            same &= !b.receive(now, PEER, &d);
        }
        for s in [&mut a, &mut b] {
            if s.e.poll_at() <= now {
                s.e.handle_timeout(now, &s.internal);
            }
        }
        a.transmit(now, 'A', &mut out);
        b.transmit(now, 'B', &mut out);
        same = same || b.external == a.internal;
        out.lagging += u64::from(!same);
        now_us += STEP_US;
    }
    assert_eq!(b.external, a.internal, "replication complete");
    out.b = b.e.stats().clone();
    out.b_challenges_read = b.challenges_read;
    out
}

/// The live session's own messages are as many as without the forger
/// (no data resent, no NACK lost, no ACK fewer), and B's cache lags A's
/// no longer. The ALIVE an answer to a challenge implies is ACKed: that
/// ACK may spare A a probe (ALIVEs fewer), or come on top of B's own
/// (ACKs more: with A's probes spaced on a clean link, one more in the
/// run with a forged datagram far ahead in A's session, 127 against 126).
fn untouched(run: &Outcome, base: &Outcome) {
    for (side, kind) in [('A', "data"), ('B', "nack")] {
        assert_eq!(
            run.sent(side, kind),
            base.sent(side, kind),
            "{side}'s {kind}"
        );
    }
    assert!(run.sent('B', "ack") >= base.sent('B', "ack"), "B's ack");
    assert!(run.sent('A', "alive") <= base.sent('A', "alive"));
    assert!(
        run.lagging <= base.lagging,
        "{} {}",
        run.lagging,
        base.lagging
    );
}

/// splitmix64, for nonces that look like real ones (a varint of a random
/// 64-bit value takes 10 bytes: about 130 challenges to a datagram).
fn nonces(seed: u64) -> impl Iterator<Item = u64> {
    let mut s = seed;
    std::iter::repeat_with(move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A forged datagram of a full 1472 bytes, every message a challenge.
fn challenges(session: u32, seed: u64) -> Vec<u8> {
    let mut buf = [0u8; 1472];
    let header = Header {
        flags: 0,
        session,
        first_seq: Seq(0),
    };
    let mut w = Writer::new(&mut buf, header).unwrap();
    for nonce in nonces(seed) {
        if w.push(&Msg::Challenge { nonce }).is_err() {
            break;
        }
    }
    let n = w.finish();
    buf[..n].to_vec()
}

/// The forger's stream: datagram `i` made by `make`.
fn stream(make: impl Fn(u32) -> Vec<u8>) -> Vec<(u64, Vec<u8>)> {
    (0..FORGED_COUNT)
        .map(|i| (FORGED_FROM_US + u64::from(i) * FORGED_EVERY_US, make(i)))
        .collect()
}

/// A forged datagram claiming `session`, numbered from `first`.
fn forged(session: u32, first: u32) -> Vec<u8> {
    datagram_from(session, first, &[Msg::CtDel(wire::ct_key_of(&ct(1)))])
}

/// What the forged traffic may cost in challenges (and answers): the
/// budget from the first forged datagram to the end of the run (the
/// clock repeats challenges for 1.1 s after the last).
fn asks_bound() -> u64 {
    let secs = Duration::from_micros(END_US - FORGED_FROM_US);
    let periods = secs.as_micros() / ASK_EVERY.as_micros();
    u64::from(ASK_BURST) + periods as u64
}

#[test]
fn forged_sessions_are_challenged_a_few_times_a_second() {
    let base = run(&[], false);
    // One forged datagram claiming a new session of A's: asked on the
    // handshake's schedule (CHALLENGE_TIMED_REPEATS), and A, which reads
    // every challenge on the link, answers each (a challenge does not say
    // which session it asks).
    let r = run(&[(FORGED_FROM_US, forged(555, 0))], false);
    let asked = 1 + u64::from(CHALLENGE_TIMED_REPEATS);
    assert_eq!(
        (r.sent('B', "challenge"), r.sent('A', "response")),
        (asked, asked)
    );
    untouched(&r, &base);
    // One numbered far ahead in A's own session: asked once, answered.
    let r = run(&[(FORGED_FROM_US, forged(100, 100 + (1 << 30)))], false);
    assert_eq!((r.sent('B', "challenge"), r.sent('A', "response")), (1, 1));
    untouched(&r, &base);
    // 100 a second for 5 s, each of a new session, or each far ahead in
    // A's: bounded by the time, not by what the forger sends.
    let new_sessions = stream(|i| forged(1000 + i, 0));
    let far_ahead = stream(|i| forged(100, 100 + (1 << 30) + i));
    for (what, forged) in [("new", &new_sessions), ("ahead", &far_ahead)] {
        let r = run(forged, false);
        let (asks, answers) =
            (r.sent('B', "challenge"), r.sent('A', "response"));
        assert!(asks <= asks_bound(), "{what}: {asks} challenges");
        assert!(answers <= asks, "{what}: {answers} answers");
        untouched(&r, &base);
    }
    // On multicast both read them (from the forger's address) and ask;
    // each answers the other's challenges, no more: an answer asks
    // nothing, so nothing loops.
    let r = run(&new_sessions, true);
    for (side, other) in [('A', 'B'), ('B', 'A')] {
        let asks = r.sent(side, "challenge");
        assert!(asks <= asks_bound(), "{side}: {asks} challenges");
        assert!(r.sent(other, "response") <= asks);
    }
    untouched(&r, &base);
}

#[test]
fn forged_challenges_are_answered_a_few_times_a_second() {
    let base = run(&[], false);
    let count = |d: &[u8]| {
        let (_, body) = wire::read(d).unwrap();
        wire::messages(body).count()
    };
    // One datagram of challenges (about 130), claiming a new session of
    // A's: B answers those its budget allows, and its own messages to A
    // go as before.
    let one = challenges(555, 1);
    assert!(count(&one) > 120, "{}", count(&one));
    let r = run(&[(FORGED_FROM_US, one)], false);
    let answers = r.sent('B', "response");
    assert!(answers <= u64::from(ASK_BURST), "{answers} answers");
    untouched(&r, &base);
    // 100 of them a second for 5 s, each of a new session: bounded by the
    // time, not by what the forger sends.
    let forged = stream(|i| challenges(1000 + i, u64::from(i)));
    let r = run(&forged, false);
    let answers = r.sent('B', "response");
    assert!(answers <= asks_bound(), "{answers} answers");
    untouched(&r, &base);
    // On multicast both read them, and each also answers the other's
    // challenges of the forged sessions (themselves within a budget).
    let r = run(&forged, true);
    for side in ['A', 'B'] {
        let answers = r.sent(side, "response");
        assert!(answers <= 2 * asks_bound(), "{side}: {answers} answers");
    }
    untouched(&r, &base);
}

#[test]
fn what_the_budgets_held_back_is_counted() {
    // 100 datagrams a second for 5 s, each of a new session and full of
    // challenges: B asks each session (a new one has no challenge out, so
    // each datagram is due one) and answers every challenge it reads,
    // within their budgets. What the budgets hold back is counted, for
    // -s to show: each forged datagram B did not challenge, each
    // challenge it read and did not answer.
    let forged = stream(|i| challenges(1000 + i, u64::from(i)));
    let r = run(&forged, false);
    let unanswered = r.b_challenges_read - r.sent('B', "response");
    eprintln!(
        "unasked {}, unanswered {unanswered} of {}",
        r.unasked, r.b_challenges_read
    );
    assert_eq!(
        (r.b.challenges_held, r.b.answers_held),
        (r.unasked, unanswered)
    );
    assert!(r.unasked > 0 && unanswered > 0, "the budgets held back");
    // Without the forger, nothing is held back.
    let base = run(&[], false);
    assert_eq!((base.b.challenges_held, base.b.answers_held), (0, 0));
}

// ===== the gate alone =====

#[test]
fn forged_sessions_are_asked_within_a_budget_the_live_one_keeps() {
    // A datagram of a new session every 10 ms for 5 s, the clock run
    // each millisecond; the live session (believed) leaves the window
    // at 3 s.
    let mut g = Gate::new(1);
    g.trust(1, 10);
    let mut asked = 0;
    let mut live = None;
    for i in 0..7000u32 {
        let now = Instant::from_millis(u64::from(i));
        if i % 10 == 0 && i < 5000 {
            asked += usize::from(g.challenge(now, 1, 1000 + i, None).is_ok());
        }
        if i == 3000 {
            live = g.challenge(now, 1, 10, None).ok();
            assert!(live.is_some(), "the live session is asked at once");
        }
        if i == 3001 {
            assert!(g.answer(now, 1, 10, live.unwrap()).is_some());
        }
        asked += g.repeats_due(now, |_| None).len();
        // Never due in the past: the clock is not spun.
        assert!(g.repeat_at().is_none_or(|at| at > now));
    }
    // The forged ones: 11 at once, then one each 100 ms for 7 s. The
    // live one was asked once, from its own budget.
    let forged = asked - 1;
    assert!(forged <= ASK_BURST as usize + 70, "{forged}");
    assert!(forged >= 70, "{forged}: the budget is used");
}

#[test]
fn forged_challenges_spend_their_own_answers_not_the_live_ones() {
    let mut g = Gate::new(2);
    g.trust(1, 10);
    let t = Instant::from_millis(1000);
    // A thousand challenges at once in datagrams of sessions not
    // believed: a burst is answered.
    let forged = (0..1000).filter(|i| g.may_answer(t, 1, 500 + i));
    assert_eq!(forged.count(), ASK_BURST as usize);
    // The live session's still are, from its own budget.
    let live = (0..1000).filter(|_| g.may_answer(t, 1, 10)).count();
    assert_eq!(live, ANSWERS_BELIEVED_BURST as usize);
    // Then one each period.
    let later = t + ASK_EVERY;
    assert!(g.may_answer(later, 1, 600) && !g.may_answer(later, 1, 601));
    assert!(g.may_answer(later, 1, 10) && g.may_answer(later, 1, 10));
    assert!(!g.may_answer(later, 1, 10));
}

#[test]
fn one_datagram_of_resyncs_costs_one_bulk() {
    // A RESYNC is a byte: 1 400 fit a datagram, and each walked the whole
    // cache (14 s of the loop with 50 000 entries). Each is still counted
    // and answered, by the one bulk.
    let src = super::test::Counted::with(50);
    let mut e = Engine::new(params(Mode::FtFw, 100), Instant::ZERO);
    e.trust(PEER, 9);
    let d = super::test::datagram(1000, &vec![Msg::Resync; 1400]);
    e.recv(Instant::ZERO, PEER, &d, &src).unwrap();
    assert_eq!(e.stats().resyncs_requested_by_peer, 1400);
    assert_eq!(src.walks.get(), 1);
    assert_eq!(e.queue_lengths().0, 50);
    // The next datagram's RESYNC is answered again.
    let d = super::test::datagram(2400, &[Msg::Resync]);
    e.recv(Instant::ZERO, PEER, &d, &src).unwrap();
    assert_eq!(src.walks.get(), 2);
}
