//! What a corrupt or forged report (an ACK or NACK of our numbers) does
//! to an FT-FW sender on an unkeyed link. One that no receiver sends is
//! refused and counted, and moves nothing: not the resend queue, not the
//! tail probe (its answer, its resends), not the round trip. Replication
//! then completes as if it never came.

use super::test::datagram_from;
use super::test_tail::{three, wake};
use super::*;

/// B's session (`test::engines`).
const B: u32 = 200;

/// What a report may change at the sender, and the counters a refused
/// one goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    malformed: u64,
    bad_header: u64,
    out_of_window: u64,
    retransmitted: u64,
    tail_resent: u64,
    round_trip: Option<RoundTrip>,
    /// The numbers awaiting acknowledgement, oldest first.
    held: Vec<Seq>,
}

fn seen(a: &Engine) -> Seen {
    let s = a.stats();
    Seen {
        malformed: s.malformed,
        bad_header: s.bad_header,
        out_of_window: s.out_of_window,
        retransmitted: s.retransmitted,
        tail_resent: s.tail_resent,
        round_trip: a.round_trip(),
        held: a.resend_queue().map(ResendEntry::seq).collect(),
    }
}

/// A sent three messages, one per datagram, and B got the first two: A
/// has probed for its tail (the probe waits in A's transmit queue) and
/// measured nothing yet. The engines, the caches and the time.
fn tail_probed() -> (Engine, MapSource, Engine, MapSource, Instant) {
    let (mut a, a_src, b, b_ext) = three(|i| i == 2);
    let mut now = Instant::from_millis(0);
    while a.stats().probes_sent == 0 {
        now = now + Duration::from_millis(1);
        assert!(now < Instant::from_millis(100), "never probed");
        wake(&mut a, &a_src, now);
    }
    assert_eq!(a.round_trip(), None);
    (a, a_src, b, b_ext, now)
}

/// `report` reaches A in a datagram of its own, from B's session.
fn forge(a: &mut Engine, now: Instant, report: Msg) {
    let d = datagram_from(B, 0, &[report]);
    a.recv(now, 1, &d, &MapSource::default()).unwrap();
}

/// Runs both engines and the link from `start`, millisecond by
/// millisecond, for up to five seconds; when B's external cache holds
/// what A's cache does.
fn converged(
    a: &mut Engine,
    a_src: &MapSource,
    b: &mut Engine,
    b_ext: &mut MapSource,
    start: Instant,
) -> Option<Instant> {
    let mut sink = MapSource::default();
    for ms in 1..5000 {
        let now = start + Duration::from_millis(ms);
        wake(a, a_src, now);
        wake(b, b_ext, now);
        test::pump(a, a_src, b, b_ext, now, |_| true);
        test::pump(b, b_ext, a, &mut sink, now, |_| true);
        if b_ext.cts == a_src.cts {
            return Some(now);
        }
    }
    None
}

#[test]
fn a_nack_past_our_next_number_is_refused_and_counted() {
    // A's numbers are 100..=102 (test::engines' session 100); 103 is
    // its next. Each NACK reaches a number A never sent: read as a
    // report up to there, it answered A's probe (the peer claimed to
    // have seen its tail), took a round-trip sample and had A resend
    // everything it held.
    let next = 103;
    let cases = [(next, next), (101, next), (next + 1000, next + 1000)];
    for (from, to) in cases {
        let (mut a, a_src, mut b, mut b_ext, now) = tail_probed();
        let before = seen(&a);
        let report = Msg::Nack {
            from: Seq(from),
            to: Seq(to),
        };
        forge(&mut a, now, report);
        let expected = Seen {
            out_of_window: 1,
            ..before.clone()
        };
        assert_eq!(seen(&a), expected, "NACK {from}..={to}");
        let whole = converged(&mut a, &a_src, &mut b, &mut b_ext, now);
        assert!(whole.is_some(), "NACK {from}..={to}: {:?}", a.stats());
        assert_eq!(b_ext.cts, a_src.cts);
    }
}

#[test]
fn a_report_ending_before_it_starts_is_refused_as_malformed() {
    // A holds 100..=102 and has probed (its next is 103). An ACK
    // 103..=102 releases nothing (its range is empty), but reaching 102
    // it answered the probe: a round-trip sample and everything held
    // resent. A NACK 102..=100 resends nothing, but the number after it
    // (101) is held: a round-trip sample from the message, and the link
    // counted as lossy. conntrackd 1.4.7 refuses both as a malformed
    // header.
    let cases = [
        Msg::Ack {
            from: Seq(103),
            to: Seq(102),
        },
        Msg::Nack {
            from: Seq(102),
            to: Seq(100),
        },
    ];
    for report in cases {
        let (mut a, a_src, mut b, mut b_ext, now) = tail_probed();
        let before = seen(&a);
        forge(&mut a, now, report.clone());
        let expected = Seen {
            malformed: 1,
            bad_header: 1,
            ..before.clone()
        };
        assert_eq!(seen(&a), expected, "{report:?}");
        let whole = converged(&mut a, &a_src, &mut b, &mut b_ext, now);
        assert!(whole.is_some(), "{report:?}: {:?}", a.stats());
        assert_eq!(b_ext.cts, a_src.cts);
    }
}

#[test]
fn a_report_spanning_more_than_the_window_is_refused() {
    // A holds 100..=102; B got 100 and 102, and its report (ACK 100,
    // NACK 101) is on its way. A receiver's ranges never span more than
    // the window (rx::WINDOW: its gaps and runs are bounded by it). A
    // corrupt or forged `from` far back: an ACK released everything
    // held, 101 with it, which B's NACK then found gone (never resent);
    // a NACK resent everything held.
    let far = |to: u32, span: u32| Seq(to.wrapping_sub(span));
    let refused = [
        Msg::Ack {
            from: far(102, (1 << 31) - 1),
            to: Seq(102),
        },
        Msg::Nack {
            from: far(102, (1 << 31) - 1),
            to: Seq(102),
        },
        Msg::Ack {
            from: far(102, rx::WINDOW + 1),
            to: Seq(102),
        },
    ];
    let run = |report: &Msg| {
        let (mut a, a_src, mut b, mut b_ext) = three(|i| i == 1);
        let t = Instant::from_millis(0);
        let before = seen(&a);
        forge(&mut a, t, report.clone());
        let after = seen(&a);
        let whole = converged(&mut a, &a_src, &mut b, &mut b_ext, t);
        (before, after, whole.is_some() && b_ext.cts == a_src.cts)
    };
    let got: Vec<_> = refused.iter().map(|r| (r, run(r))).collect();
    for (report, (before, after, whole)) in got {
        let expected = Seen {
            out_of_window: 1,
            ..before.clone()
        };
        assert_eq!((after, whole), (expected, true), "{report:?}");
    }
    // The widest range a receiver sends is taken: it releases 100.
    let widest = Msg::Ack {
        from: far(100, rx::WINDOW),
        to: Seq(100),
    };
    let (before, after, whole) = run(&widest);
    let expected = Seen {
        held: vec![Seq(101), Seq(102)],
        ..before
    };
    assert_eq!((after, whole), (expected, true));
}

/// A sent 100..=102; B got 100 and 102, NACKed 101, got it again as
/// 103 and acknowledged everything: the round trip is measured (the
/// NACK's newest gap ends at 101). The engines, the caches and the time.
fn settled() -> (Engine, MapSource, Engine, MapSource, Instant) {
    let (mut a, a_src, mut b, mut b_ext) = three(|i| i == 1);
    let t = Instant::from_millis(0);
    let whole = converged(&mut a, &a_src, &mut b, &mut b_ext, t);
    let mut now = whole.expect("converged");
    let mut sink = MapSource::default();
    while a.queue_lengths() != (0, 0) {
        now = now + Duration::from_millis(1);
        assert!(now < t + Duration::from_secs(5), "{:?}", a.stats());
        wake(&mut a, &a_src, now);
        wake(&mut b, &b_ext, now);
        test::pump(&mut a, &a_src, &mut b, &mut b_ext, now, |_| true);
        test::pump(&mut b, &b_ext, &mut a, &mut sink, now, |_| true);
    }
    assert!(a.round_trip().is_some(), "measured");
    (a, a_src, b, b_ext, now)
}

#[test]
fn a_nack_of_numbers_already_acknowledged_measures_nothing() {
    let (mut a, mut a_src, mut b, mut b_ext, mut now) = settled();
    let t = Instant::from_millis(0);
    let mut sink = MapSource::default();
    // Three more go out, one per datagram (104..=106); B gets two and
    // its tick acknowledges them.
    for p in 4..=6 {
        let c = test::ct(p);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(test::key(&c), true);
    }
    let mut sent = Vec::new();
    let mut buf = [0u8; 1472];
    while let Some(n) = a.poll_transmit(now, &a_src, &mut buf) {
        sent.push(buf[..n].to_vec());
    }
    assert_eq!(sent.len(), 3);
    for d in &sent[..2] {
        b.recv(now, 1, d, &b_ext).unwrap();
        while let Some(ap) = b.pop_apply() {
            b_ext.apply(ap);
        }
    }
    while a.resend_queue().count() != 1 {
        now = now + Duration::from_millis(1);
        assert!(now < t + Duration::from_secs(10), "never acknowledged");
        wake(&mut b, &b_ext, now);
        test::pump(&mut b, &b_ext, &mut a, &mut sink, now, |_| true);
    }
    let before = seen(&a);
    assert_eq!(before.held, [Seq(106)]);
    // Half a second later, a NACK of 104..=105, acknowledged (no
    // receiver NACKs what it acknowledged; a repeat of a NACK comes
    // after a newer one): forged. It resends nothing, and it is no
    // round trip: the number after it, 106, went out long before.
    let later = now + Duration::from_millis(500);
    let report = Msg::Nack {
        from: Seq(104),
        to: Seq(105),
    };
    forge(&mut a, later, report);
    assert_eq!(seen(&a), before);
    b.recv(later, 1, &sent[2], &b_ext).unwrap();
    while let Some(ap) = b.pop_apply() {
        b_ext.apply(ap);
    }
    let whole = converged(&mut a, &a_src, &mut b, &mut b_ext, later);
    assert!(whole.is_some(), "{:?}", a.stats());
    assert_eq!(b_ext.cts, a_src.cts);
}

#[test]
fn a_nack_of_numbers_sent_again_measures_nothing() {
    // Two more go out, one per datagram (104, 105), then the first of
    // them changes and goes again as 106: 104's place is given up (106
    // holds its entry). B gets all three; its ACK is still to come.
    let (mut a, mut a_src, mut b, mut b_ext, now) = settled();
    let mut buf = [0u8; 1472];
    let mut send = |a: &mut Engine, a_src: &MapSource| {
        while let Some(n) = a.poll_transmit(now, a_src, &mut buf) {
            b.recv(now, 1, &buf[..n], &b_ext).unwrap();
            while let Some(ap) = b.pop_apply() {
                b_ext.apply(ap);
            }
        }
    };
    for p in 4..=5 {
        let c = test::ct(p);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(test::key(&c), true);
    }
    send(&mut a, &a_src);
    let mut c = test::ct(4);
    c.mark = 4;
    a_src.cts.insert(wire::ct_key_of(&c), c.clone());
    a.local_change(test::key(&c), false);
    send(&mut a, &a_src);
    let before = seen(&a);
    assert_eq!(before.held, [Seq(105), Seq(106)]);
    // Half a second later, a NACK of 104: B got it (no receiver NACKs
    // it), and A holds nothing under it (a NACK of it resends nothing).
    // It is no round trip: the number after it, 105, went out long
    // before.
    let later = now + Duration::from_millis(500);
    let report = Msg::Nack {
        from: Seq(104),
        to: Seq(104),
    };
    forge(&mut a, later, report);
    assert_eq!(seen(&a), before);
    let whole = converged(&mut a, &a_src, &mut b, &mut b_ext, later);
    assert!(whole.is_some(), "{:?}", a.stats());
    assert_eq!(b_ext.cts, a_src.cts);
}
