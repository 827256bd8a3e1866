//! FT-FW's tail recovery, with explicit times: a lost tail, a lost NACK
//! and a lost ACK each cost a probe and its answer, not the
//! retransmission timer; a gone peer sees a bounded number of probes; a
//! lost challenge at first contact costs milliseconds of a burst.

use super::test::{
    control_out, ct, datagram, datagram_from, del, engines, key, params, pump,
};
use super::*;

pub(super) fn ack(from: u32, to: u32) -> Msg {
    Msg::Ack {
        from: Seq(from),
        to: Seq(to),
    }
}

pub(super) fn nack(from: u32, to: u32) -> Msg {
    Msg::Nack {
        from: Seq(from),
        to: Seq(to),
    }
}

/// Runs A's timers at `now` if due; true when it did.
pub(super) fn wake(e: &mut Engine, src: &MapSource, now: Instant) -> bool {
    let due = e.poll_at() <= now;
    if due {
        e.handle_timeout(now, src);
    }
    due
}

#[test]
fn every_alive_is_answered_with_what_the_receiver_knows() {
    let mut b = Engine::new(params(Mode::FtFw, 1), Instant::from_millis(0));
    b.trust(1, 9);
    let src = MapSource::default();
    let t = Instant::from_millis(0);
    let alive = |n| datagram(n, &[Msg::Alive { next: Seq(n) }]);
    b.recv(t, 1, &datagram(10, &[del(1), del(2)]), &src)
        .unwrap();
    // The open run (short of the window of 4) is ACKed at once.
    b.recv(t, 1, &alive(12), &src).unwrap();
    assert_eq!(control_out(&mut b), [ack(10, 11)]);
    // Nothing new: the last report is repeated (it may have been lost).
    b.recv(t, 1, &alive(12), &src).unwrap();
    assert_eq!(control_out(&mut b), [ack(10, 11)]);
    // A lost tail: the run before it ACKed again, the tail NACKed;
    // asked again, both again (they may have been lost).
    b.recv(t, 1, &alive(15), &src).unwrap();
    assert_eq!(control_out(&mut b), [ack(10, 11), nack(12, 14)]);
    b.recv(t, 1, &alive(15), &src).unwrap();
    assert_eq!(control_out(&mut b), [ack(10, 11), nack(12, 14)]);
    // Once something newer arrived the old report is not repeated, only
    // echoed once from the datagram before (as every report is).
    b.recv(t, 1, &datagram(15, &[del(1)]), &src).unwrap();
    b.recv(t, 1, &alive(16), &src).unwrap();
    assert_eq!(
        control_out(&mut b),
        [ack(15, 15), ack(10, 11), nack(12, 14)]
    );
    // An ACK covers the whole run since the gap: a lost one is repaired
    // by the next (which is why the last one is not echoed).
    b.recv(t, 1, &datagram(16, &[del(2)]), &src).unwrap();
    b.recv(t, 1, &alive(17), &src).unwrap();
    assert_eq!(control_out(&mut b), [ack(15, 16)]);
}

/// A with `n` new conntracks queued for B, one message per datagram:
/// both engines, and A's cache.
fn one_per_datagram(n: u16) -> (Engine, Engine, MapSource) {
    let (mut a, b) = engines(Mode::FtFw, 100, 200, Instant::from_millis(0));
    let mut small = params(Mode::FtFw, 100);
    small.max_datagram = 44;
    a.p = small;
    let mut a_src = MapSource::default();
    for p in 1..=n {
        let c = ct(p);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    }
    (a, b, a_src)
}

/// A sends three messages, one per datagram, to B; `lose` picks the
/// datagrams that never arrive. Returns the engines and caches.
pub(super) fn three(
    lose: impl FnMut(usize) -> bool,
) -> (Engine, MapSource, Engine, MapSource) {
    let t = Instant::from_millis(0);
    let (mut a, mut b, a_src) = one_per_datagram(3);
    let mut b_ext = MapSource::default();
    let mut lose = lose;
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |i| !lose(i));
    (a, a_src, b, b_ext)
}

/// Runs both engines' timers and the link, millisecond by millisecond,
/// until B has all of A's entries; `drop_b_to_a(n)` loses B's n-th
/// datagram. Returns when B had them all.
fn run_until_whole(
    a: &mut Engine,
    a_src: &MapSource,
    b: &mut Engine,
    b_ext: &mut MapSource,
    mut drop_b_to_a: impl FnMut(usize) -> bool,
) -> Instant {
    let mut sink = MapSource::default();
    let mut sent_by_b = 0;
    for ms in 1..5000 {
        let now = Instant::from_millis(ms);
        wake(a, a_src, now);
        wake(b, b_ext, now);
        pump(a, a_src, b, b_ext, now, |_| true);
        let mut n = sent_by_b;
        sent_by_b += pump(b, b_ext, a, &mut sink, now, |_| {
            n += 1;
            !drop_b_to_a(n - 1)
        });
        if b_ext.cts == a_src.cts {
            return now;
        }
    }
    panic!("B never got everything: {:?}", a.stats());
}

#[test]
fn a_lost_tail_is_probed_for_within_milliseconds() {
    let (mut a, a_src, mut b, mut b_ext) = three(|i| i == 2);
    assert_eq!(b_ext.cts.len(), 2);
    assert_eq!(a.round_trip(), None, "nothing measured yet");
    let whole = run_until_whole(&mut a, &a_src, &mut b, &mut b_ext, |_| false);
    assert!(whole <= Instant::from_millis(10), "whole at {whole:?}");
    assert_eq!(a.stats().probes_sent, 1);
    assert_eq!(a.stats().retransmitted, 1);
    // The answered probe measured the round trip, which `-s` shows.
    let r = a.round_trip().expect("measured by the probe's answer");
    assert!(r.smoothed <= Duration::from_millis(2), "{r:?}");
    assert!(r.timeout > r.smoothed, "{r:?}");
}

#[test]
fn a_lost_nack_and_ack_cost_one_more_probe() {
    // Datagram 1 lost: B NACKs it when 2 arrives; that NACK (with its
    // ACK) is lost too.
    let (mut a, a_src, mut b, mut b_ext) = three(|i| i == 1);
    let whole = run_until_whole(&mut a, &a_src, &mut b, &mut b_ext, |n| n == 0);
    assert!(whole <= Instant::from_millis(10), "whole at {whole:?}");
    // The probe's answer repeats the NACK with the ACK: the whole report
    // read, the NACK resends the lost message and nothing else is left
    // for the answered probe to resend.
    let st = a.stats();
    assert_eq!((st.probes_sent, st.retransmitted), (1, 1), "{st:?}");
    assert_eq!(st.tail_resent, 0, "{st:?}");
    // Afterwards nothing stays unacknowledged.
    for ms in 11..100 {
        let now = Instant::from_millis(ms);
        wake(&mut a, &a_src, now);
        wake(&mut b, &b_ext, now);
        let mut sink = MapSource::default();
        pump(&mut a, &a_src, &mut b, &mut b_ext, now, |_| true);
        pump(&mut b, &b_ext, &mut a, &mut sink, now, |_| true);
    }
    assert_eq!(a.queue_lengths(), (0, 0));
}

#[test]
fn a_gone_peer_sees_a_bounded_number_of_probes() {
    let (mut a, a_src, _b, _b_ext) = three(|_| true);
    let mut datagrams = 0;
    let mut buf = [0u8; 1472];
    for ms in 1..60_000 {
        let now = Instant::from_millis(ms);
        if wake(&mut a, &a_src, now) {
            while a.poll_transmit(now, &a_src, &mut buf).is_some() {
                datagrams += 1;
            }
        }
    }
    let s = a.stats();
    assert!(s.probes_sent <= 10, "{s:?}");
    assert!(s.probes_sent >= 5, "it did probe: {s:?}");
    // A minute: the probes, the last-resort resends while the peer
    // counted as alive, and one ALIVE a second.
    assert!(datagrams <= 10 + 3 + 60, "{datagrams} datagrams");
}

#[test]
fn a_lost_nack_is_repeated_with_the_next_gap_report() {
    // Five messages, one per datagram; the second and fourth are lost.
    let t = Instant::from_millis(0);
    let (mut a, mut b, a_src) = one_per_datagram(5);
    let mut buf = [0u8; 1472];
    let mut from_a = Vec::new();
    while let Some(n) = a.poll_transmit(t, &a_src, &mut buf) {
        from_a.push(buf[..n].to_vec());
    }
    assert_eq!(from_a.len(), 5);
    // B reports each gap as the message after it arrives, one datagram
    // per report.
    let mut b_ext = MapSource::default();
    let mut from_b = Vec::new();
    for (i, d) in from_a.iter().enumerate() {
        if i == 1 || i == 3 {
            continue;
        }
        b.recv(t, 1, d, &b_ext).unwrap();
        while let Some(ap) = b.pop_apply() {
            b_ext.apply(ap);
        }
        while let Some(n) = b.poll_transmit(t, &b_ext, &mut buf) {
            from_b.push(buf[..n].to_vec());
        }
    }
    assert_eq!(from_b.len(), 2, "two gap reports");
    // The first report (NACK of the second message) is lost; the second
    // repeats it: both gaps are resent at once, with no probe.
    let sink = MapSource::default();
    a.recv(t, 1, &from_b[1], &sink).unwrap();
    assert_eq!(a.stats().retransmitted, 2, "{:?}", a.stats());
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    assert_eq!(b_ext.cts, a_src.cts);
    assert_eq!(a.stats().probes_sent, 0);
}

#[test]
fn reports_lost_together_come_again_in_the_next_datagram() {
    // Nine messages, one per datagram; the 2nd, 4th, 6th and 8th are lost.
    let t = Instant::from_millis(0);
    let (mut a, mut b) = engines(Mode::FtFw, 100, 200, t);
    let mut small = params(Mode::FtFw, 100);
    small.max_datagram = 44;
    a.p = small;
    let mut a_src = MapSource::default();
    for p in 1..=9 {
        let c = ct(p);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    }
    let mut buf = [0u8; 1472];
    let mut from_a = Vec::new();
    while let Some(n) = a.poll_transmit(t, &a_src, &mut buf) {
        from_a.push(buf[..n].to_vec());
    }
    let mut b_ext = MapSource::default();
    let mut from_b = Vec::new();
    // B sends once after the first seven (three gap reports coalesced in
    // one datagram, which is lost), once after the rest (a fourth).
    for batch in [0..7, 7..9] {
        for i in batch {
            if i % 2 == 1 {
                continue;
            }
            b.recv(t, 1, &from_a[i], &b_ext).unwrap();
            while let Some(ap) = b.pop_apply() {
                b_ext.apply(ap);
            }
        }
        while let Some(n) = b.poll_transmit(t, &b_ext, &mut buf) {
            from_b.push(buf[..n].to_vec());
        }
    }
    assert_eq!(from_b.len(), 2);
    // The receiver repeats only the two reports before the fourth; the
    // first comes again as the lost datagram's echo.
    let sink = MapSource::default();
    a.recv(t, 1, &from_b[1], &sink).unwrap();
    assert_eq!(a.stats().retransmitted, 4, "{:?}", a.stats());
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    assert_eq!(b_ext.cts, a_src.cts);
}

#[test]
fn a_lost_challenge_holds_a_burst_back_for_milliseconds_only() {
    // First contact in the middle of a burst (one new entry a
    // millisecond from A), and B's challenge is lost: B asks again on a
    // later datagram of A's, a few milliseconds on, not 200 ms on (the
    // burst's datagrams until the proof are dropped, and all resent).
    let t = Instant::from_millis(0);
    let mut a = Engine::new(params(Mode::FtFw, 100), t);
    let mut b = Engine::new(params(Mode::FtFw, 200), t);
    let (mut a_src, mut a_sink) = (MapSource::default(), MapSource::default());
    let mut b_ext = MapSource::default();
    let mut sent_by_b = 0;
    let mut proven_at = None;
    for ms in 1..=300u64 {
        let now = Instant::from_millis(ms);
        if ms <= 100 {
            let c = ct(ms as u16);
            a_src.cts.insert(wire::ct_key_of(&c), c.clone());
            a.local_change(key(&c), true);
        }
        wake(&mut a, &a_src, now);
        wake(&mut b, &b_ext, now);
        pump(&mut a, &a_src, &mut b, &mut b_ext, now, |_| true);
        let mut n = sent_by_b;
        sent_by_b += pump(&mut b, &b_ext, &mut a, &mut a_sink, now, |_| {
            n += 1;
            n > 1
        });
        if proven_at.is_none() && b.stats().challenges_answered > 0 {
            proven_at = Some(ms);
        }
    }
    let s = b.stats();
    assert!(s.challenges_sent >= 2, "the first one was lost: {s:?}");
    assert!(proven_at.is_some_and(|ms| ms <= 10), "{proven_at:?}");
    assert!(s.unconfirmed <= 10, "{s:?}");
    assert_eq!(b_ext.cts, a_src.cts, "and nothing is lost");
}

/// A, which sent six messages one per datagram that B got but never
/// acknowledged (its ACKs lost), has probed; its numbers, oldest first.
fn probed_six() -> (Engine, MapSource, Vec<Seq>, Instant) {
    let t = Instant::from_millis(0);
    let (mut a, _, a_src) = one_per_datagram(6);
    let mut buf = [0u8; 1472];
    while a.poll_transmit(t, &a_src, &mut buf).is_some() {}
    let seqs: Vec<Seq> = a
        .resend_queue()
        .map(|e| match e {
            ResendEntry::Object(s) => s,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs.len(), 6);
    let mut now = t;
    while a.stats().probes_sent == 0 {
        now = now + Duration::from_millis(1);
        assert!(now < Instant::from_millis(100), "never probed");
        wake(&mut a, &a_src, now);
    }
    let next = seqs[5].next();
    assert_eq!(control_out(&mut a), [Msg::Alive { next }]);
    (a, a_src, seqs, now)
}

#[test]
fn a_report_answers_the_probe_as_a_whole() {
    // B's answer lists its newest run first (up to the probe), then an
    // older one, in one datagram: together they acknowledge everything.
    let (mut a, a_src, s, now) = probed_six();
    let range = |from: Seq, to: Seq| Msg::Ack { from, to };
    let report = datagram_from(200, 1, &[range(s[3], s[5]), range(s[0], s[2])]);
    a.recv(now, 1, &report, &a_src).unwrap();
    assert_eq!(a.stats().tail_resent, 0, "{:?}", a.stats());
    assert_eq!(a.queue_lengths(), (0, 0), "nothing to resend or wait for");

    // With a range missing from the report, only that one goes again.
    let (mut a, a_src, s, now) = probed_six();
    let gap = Msg::Nack {
        from: s[1],
        to: s[1],
    };
    let report = datagram_from(
        200,
        1,
        &[range(s[3], s[5]), range(s[2], s[2]), gap, range(s[0], s[0])],
    );
    a.recv(now, 1, &report, &a_src).unwrap();
    let st = a.stats();
    assert_eq!((st.retransmitted, st.tail_resent), (1, 0), "{st:?}");
    assert_eq!(a.queue_lengths(), (1, 0));
}
