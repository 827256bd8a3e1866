//! The tail probe's schedule: first probes (quiet period, clean-link
//! spacing, bursts, pauses), repeats and their backing off, answers,
//! chases, and the round trips NACKs measure.

use super::rtt::{QUIET_DEFAULT, QUIET_MIN};
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn probes_back_off_and_stop_without_an_answer() {
    let mut p = TailProbe::default();
    assert_eq!(p.due(false), None, "nothing unacknowledged");
    p.data_sent(Seq(1), Instant::from_millis(100));
    let mut at = p.due(true).unwrap();
    assert_eq!(
        at,
        Instant::from_millis(105),
        "a quiet period after the data"
    );
    let mut gaps = Vec::new();
    while let Some(next) = p.due(true) {
        gaps.push(next.since(at).as_millis() as u64);
        at = next;
        p.probed(Seq(7), at);
        assert!(gaps.len() <= MAX_PROBES as usize);
    }
    assert_eq!(gaps.len(), MAX_PROBES as usize);
    assert_eq!(&gaps[..5], &[0, 50, 100, 200, 400]);
    assert!(gaps.iter().all(|g| *g <= 1000), "capped: {gaps:?}");
    // An answer (even late) starts over, and measures nothing: the
    // probe went out more than once.
    assert_eq!(p.answered(Seq(6), at + ms(3)), Some(Seq(7)));
    assert_eq!(p.rtt().smoothed(), None);
    assert!(p.due(true).is_some());
}

#[test]
fn a_restart_of_probing_keeps_the_outstanding_probe() {
    let t = Instant::from_millis;
    let mut p = TailProbe::default();
    // An answered probe, then more data and its probe, unanswered.
    p.data_sent(Seq(1), t(0));
    p.probed(Seq(2), t(5));
    assert_eq!(p.answered(Seq(1), t(6)), Some(Seq(2)));
    p.data_sent(Seq(2), t(10));
    p.probed(Seq(3), t(15));
    // A challenge restarts probing: the next probe is the repeat, one
    // timeout after the last, not a first probe held to the spacing.
    p.reset_backoff();
    assert_eq!(p.due(true), Some(t(15) + p.rtt().rto()));
    // And the outstanding probe's answer is still taken.
    assert_eq!(p.answered(Seq(2), t(16)), Some(Seq(3)));
    // Probing that had stopped starts again, with one probe out.
    for n in 0..MAX_PROBES + FAST_PROBES {
        p.probed(Seq(4), t(20 + u64::from(n)));
    }
    assert_eq!(p.due(true), None, "stopped");
    p.reset_backoff();
    assert!(p.due(true).is_some(), "started again");
}

#[test]
fn a_peer_heard_lately_is_probed_at_the_timeout_before_any_backoff() {
    let mut p = TailProbe::default();
    p.heard(Instant::from_millis(90));
    p.data_sent(Seq(1), Instant::from_millis(100));
    let mut at = p.due(true).unwrap();
    let mut gaps = Vec::new();
    while let Some(next) = p.due(true) {
        gaps.push(next.since(at).as_millis() as u64);
        at = next;
        p.probed(Seq(7), at);
        assert!(gaps.len() <= (FAST_PROBES + MAX_PROBES) as usize);
    }
    // The first probe, then FAST_PROBES more repeats one (default)
    // timeout apart than a silent peer gets, then its doubling. Once
    // the peer has been silent for PEER_ALIVE it is gone: the silent
    // peer's bound applies.
    let fast = FAST_PROBES as usize;
    assert!(gaps[1..=fast + 1].iter().all(|g| *g == 50), "{gaps:?}");
    assert_eq!(&gaps[fast + 2..fast + 5], &[100, 200, 400]);
    assert!(gaps.len() > MAX_PROBES as usize, "{gaps:?}");
    assert!(gaps.len() <= fast + MAX_PROBES as usize, "{gaps:?}");
    // Heard 3 s or more before: a gone peer, backed off from the start
    // (the first wait after the first probe is one timeout).
    let mut p = TailProbe::default();
    p.heard(Instant::from_millis(0));
    p.data_sent(Seq(1), Instant::from_millis(3000));
    p.probed(Seq(7), Instant::from_millis(3005));
    p.probed(Seq(7), Instant::from_millis(3055));
    assert_eq!(p.due(true), Some(Instant::from_millis(3155)), "doubled");
}

#[test]
fn a_nack_measures_the_round_trip_unless_it_may_answer_an_alive() {
    let mut p = TailProbe::default();
    // A NACK of 10..=11 provoked by 12, sent at 100, back at 104.
    p.nacked(
        Seq(12),
        Instant::from_millis(100),
        Instant::from_millis(104),
    );
    assert_eq!(p.rtt().smoothed(), Some(ms(4)));
    // An ALIVE announced 20: a NACK ending at 19 may answer it, sent
    // before 20 went out, and measures nothing.
    p.announced(Seq(20));
    p.nacked(
        Seq(20),
        Instant::from_millis(200),
        Instant::from_millis(201),
    );
    assert_eq!(p.rtt().smoothed(), Some(ms(4)));
    // Not newer than a NACK before it: maybe a repeat, sent later.
    p.nacked(
        Seq(18),
        Instant::from_millis(150),
        Instant::from_millis(210),
    );
    assert_eq!(p.rtt().smoothed(), Some(ms(4)));
    p.nacked(
        Seq(26),
        Instant::from_millis(298),
        Instant::from_millis(310),
    );
    assert_eq!(p.rtt().smoothed(), Some(ms(5)), "(7 × 4 + 12) / 8");
    p.probed(Seq(30), Instant::from_millis(300));
    p.nacked(
        Seq(30),
        Instant::from_millis(301),
        Instant::from_millis(302),
    );
    assert_eq!(p.rtt().smoothed(), Some(ms(5)), "the probe's number");
}

#[test]
fn a_probe_chases_what_its_answer_made_us_resend() {
    let t = Instant::from_millis;
    let mut p = TailProbe::default();
    p.data_sent(Seq(9), t(0));
    p.probed(Seq(10), t(5));
    // Sent after the probe, before its answer.
    p.data_sent(Seq(10), t(8));
    assert_eq!(p.answered(Seq(9), t(9)), Some(Seq(10)));
    // The resend starts at number 11.
    p.chase(Seq(11), t(9));
    // Until the resent data is out, the quiet rule (4 ms measured)
    // after the last data.
    assert_eq!(p.due(true), Some(t(8 + 4)));
    // Out at the answer's instant: the probe follows at once.
    p.data_sent(Seq(11), t(9));
    assert_eq!(p.due(true), Some(t(9)));
    // The probe ends the chase.
    p.probed(Seq(12), t(9));
    assert_eq!(p.answered(Seq(11), t(13)), Some(Seq(12)));
    p.data_sent(Seq(12), t(16));
    assert_eq!(p.due(true), Some(t(20)), "quiet again");
}

#[test]
fn after_a_pause_only_a_lossy_link_is_probed_at_once() {
    let us = Instant::from_micros;
    let mut p = TailProbe::default();
    // A clean link: the quiet rule, pause or not (the default before
    // any round trip is measured).
    p.data_sent(Seq(1), us(1_000));
    p.paused(us(1_200));
    assert_eq!(p.due(true), Some(us(1_000) + QUIET_DEFAULT));
    // A NACK (a loss, and a 200 µs round trip).
    p.nacked(Seq(5), us(2_000), us(2_200));
    p.data_sent(Seq(9), us(3_000));
    assert_eq!(
        p.due(true),
        Some(us(3_000) + QUIET_MIN),
        "no pause since the data: the quiet rule (200 µs raised to its floor)"
    );
    p.paused(us(3_200));
    assert_eq!(p.due(true), Some(us(3_200)), "at the pause");
    // Data after the pause: a burst goes on.
    p.data_sent(Seq(10), us(4_000));
    assert_eq!(p.due(true), Some(us(4_000) + QUIET_MIN));
    // No loss for LOSSY_FOR: clean again.
    let later = us(2_200) + LOSSY_FOR;
    p.data_sent(Seq(11), later);
    p.paused(later);
    assert_eq!(p.due(true), Some(later + QUIET_MIN));
    // Once probed, an unanswered probe waits for its timeout as ever.
    p.nacked(Seq(20), later, later + Duration::from_micros(200));
    p.data_sent(Seq(21), later + ms(1));
    p.paused(later + ms(1));
    p.probed(Seq(22), later + ms(1));
    assert_eq!(p.due(true), Some(later + ms(1) + p.rtt().rto()));
}

#[test]
fn an_answer_must_reach_the_probe_and_measures_the_round_trip() {
    let mut p = TailProbe::default();
    p.data_sent(Seq(1), Instant::from_millis(0));
    assert_eq!(
        p.answered(Seq(9), Instant::from_millis(1)),
        None,
        "no probe out"
    );
    p.probed(Seq(10), Instant::from_millis(5));
    assert_eq!(
        p.answered(Seq(8), Instant::from_millis(7)),
        None,
        "short of it"
    );
    assert_eq!(p.answered(Seq(9), Instant::from_millis(12)), Some(Seq(10)));
    assert_eq!(p.rtt().smoothed(), Some(ms(7)));
    assert_eq!(
        p.answered(Seq(9), Instant::from_millis(13)),
        None,
        "answered once"
    );
    // The next probe waits for the quiet period after it, and on a
    // clean link for the spacing since this one.
    assert_eq!(
        p.due(true),
        Some(Instant::from_millis(5) + CLEAN_PROBE_SPACING)
    );
    // After a loss, the quiet period alone.
    p.nacked(Seq(5), Instant::from_millis(12), Instant::from_millis(14));
    let quiet = p.rtt().quiet();
    assert_eq!(p.due(true), Some(Instant::from_millis(5) + quiet));
}

#[test]
fn a_burst_on_a_clean_link_is_probed_at_the_quiet_period() {
    let t = Instant::from_millis;
    let mut p = TailProbe::default();
    p.data_sent(Seq(9), t(0));
    p.probed(Seq(10), t(5));
    assert_eq!(p.answered(Seq(9), t(7)), Some(Seq(10)));
    let quiet = p.rtt().quiet();
    // A trickle after the probe: its next one waits for the spacing.
    for (i, n) in (10..10 + BURST_MESSAGES - 1).enumerate() {
        p.data_sent(Seq(n), t(8 + i as u64));
    }
    let last = t(8 + u64::from(BURST_MESSAGES) - 2);
    assert_eq!(p.due(true), Some(t(5) + CLEAN_PROBE_SPACING));
    // One message more makes it a burst: the quiet period after it.
    p.data_sent(Seq(10 + BURST_MESSAGES - 1), last);
    assert_eq!(p.due(true), Some(last + quiet));
}

#[test]
fn a_nack_half_the_number_space_later_still_counts() {
    let mut p = TailProbe::default();
    let t = Instant::from_millis;
    p.nacked(Seq(100), t(0), t(4));
    assert_eq!(p.rtt().smoothed(), Some(ms(4)));
    // A clean link: the next NACK comes 2^31 + 5 numbers later (the
    // number after its gap went out, as every number does).
    p.data_sent(Seq(100 + (1 << 31) + 5), t(1000));
    p.nacked(Seq(100 + (1 << 31) + 5), t(1000), t(1020));
    assert_eq!(p.lost_at, Some(t(1020)), "the new loss is not recorded");
}
