//! The tail query (`tail`) between two conntrackd-protocol engines: the
//! sender answers a query as conntrackd does (what it sent in the range
//! goes again), so a receiver that lost the end of a burst has it within
//! milliseconds instead of at the sender's next quiet second.

use super::test::{Link, Side, ct, keys_waiting, pair, run_in_steps};
use super::*;
use crate::wire::ctd::{self, Body};

/// Everything `from` sends now, delivered to `to` but for the datagrams
/// `lose` picks (by index). Returns how many were sent.
fn deliver(
    from: &mut Side,
    to: &mut Side,
    now: Instant,
    lose: impl Fn(usize, usize) -> bool,
) -> usize {
    let mut buf = [0u8; 1472];
    let mut sent = Vec::new();
    while let Some(n) = from.e.poll_transmit(now, &from.internal, &mut buf) {
        sent.push(buf[..n].to_vec());
    }
    for (i, d) in sent.iter().enumerate() {
        if !lose(i, sent.len()) {
            to.e.recv(now, d, &to.internal);
            while let Some(a) = to.e.pop_apply() {
                to.external.apply(a);
            }
        }
    }
    sent.len()
}

#[test]
fn the_lost_end_of_a_burst_is_asked_for_within_milliseconds() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    a.e.p.max_datagram = 200;
    for i in 0..30 {
        a.add(ct(i));
    }
    // The burst's last datagram is lost; nothing follows it.
    let n = deliver(&mut a, &mut b, t, |i, n| i == n - 1);
    assert!(n >= 3, "{n} datagrams");
    let got = b.external.cts.len();
    assert!(got < 30);
    let mut link = Link::perfect();
    let soon = t + Duration::from_millis(20);
    run_in_steps(&mut a, &mut b, &mut link, &mut t, soon, 1);
    assert_eq!(b.external.cts.len(), 30, "had {got} before the query");
    let resent = a.e.stats().retransmitted;
    assert_eq!(resent as usize, 30 - got);
    assert_eq!(a.e.stats().out_of_window, 0);
    // The query carried the ACK of the run before it, and the resend's
    // was acknowledged by the next query: nothing waits.
    assert_eq!(keys_waiting(&a), 0);
    // The resend was data after a gap (the lost numbers): the link is
    // lossy now, and the resend is asked about a series long. Then
    // nothing more: no data came.
    let later = t + Duration::from_secs(3);
    run_in_steps(&mut a, &mut b, &mut link, &mut t, later, 1);
    assert_eq!(b.e.stats().tail_queries, 1 + tail::SERIES.len() as u64);
    assert_eq!(a.e.stats().retransmitted, resent, "they named nothing");
}

/// A query is not kept for resending: resent late (the peer NACKing its
/// number), it would name what arrived since and waits for its ACK, and
/// have it all sent again, each resend starting another series.
#[test]
fn a_query_is_not_kept_for_resending() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    a.add(ct(1));
    deliver(&mut a, &mut b, t, |_, _| false);
    let nacks = |s: &Side| {
        s.e.resend_queue()
            .filter(|e| {
                matches!(e, crate::sync::ResendEntry::Control(_, f) if *f == ctd::flag::NACK)
            })
            .count()
    };
    let kept = nacks(&b);
    t = t + tail::SERIES[0];
    b.e.handle_timeout(t, &b.internal);
    assert_eq!(b.e.stats().tail_queries, 1);
    let mut buf = [0u8; 1472];
    let n = b.e.poll_transmit(t, &b.internal, &mut buf).unwrap();
    let sent: Vec<_> = ctd::messages(&buf[..n], Options::default())
        .map(|m| m.unwrap().body)
        .collect();
    assert!(
        sent.iter().any(|m| matches!(m, Body::Nack { .. })),
        "{sent:?}"
    );
    assert_eq!(nacks(&b), kept);
}

/// When the last of 200 flows, created 2 a millisecond, are all in place
/// at the receiver (ms after the last), over a link losing `loss` ‰ each
/// way; `None` after 5 s.
fn tail_lag(loss: u64, seed: u64) -> Option<u64> {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    let mut link = Link::lossy(loss, seed);
    for i in 0..200 {
        a.add(ct(i));
        if i % 2 == 1 {
            let next = t + Duration::from_millis(1);
            run_in_steps(&mut a, &mut b, &mut link, &mut t, next, 1);
        }
    }
    let last = t;
    while t.since(last) < Duration::from_secs(5) {
        if b.external.cts.len() == 200 {
            return Some(t.since(last).as_millis() as u64);
        }
        let next = t + Duration::from_millis(1);
        run_in_steps(&mut a, &mut b, &mut link, &mut t, next, 1);
    }
    None
}

#[test]
fn a_link_losing_a_fifth_each_way_has_its_tails_in_milliseconds() {
    let mut lags: Vec<u64> = (0..40)
        .map(|seed| tail_lag(200, seed).expect("every flow arrives"))
        .collect();
    lags.sort_unstable();
    eprintln!("lag after the last flow (ms), 40 seeds at 20 % loss: {lags:?}");
    // conntrackd's rhythm (the sender's next quiet second) is 1 s or
    // more: once the query's series ran out, no sooner.
    let slow = lags.iter().filter(|&&l| l >= 900).count();
    assert!(
        slow <= 2,
        "{slow} of 40 waited for a quiet second: {lags:?}"
    );
    assert!(lags[20] <= 10, "median {} ms: {lags:?}", lags[20]);
}

#[test]
fn an_idle_link_is_not_asked_and_a_clean_trickle_seldom() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    let mut link = Link::perfect();
    let idle = t + Duration::from_secs(10);
    run_in_steps(&mut a, &mut b, &mut link, &mut t, idle, 1);
    assert_eq!(a.e.stats().tail_queries + b.e.stats().tail_queries, 0);
    // A flow every 20 ms for two seconds, each alone in its datagram.
    for i in 0..100 {
        a.add(ct(i));
        let next = t + Duration::from_millis(20);
        run_in_steps(&mut a, &mut b, &mut link, &mut t, next, 1);
    }
    let asked = b.e.stats().tail_queries;
    assert!((1..=9).contains(&asked), "{asked} queries in 2 s");
    let probed = a.e.stats().probes_sent;
    assert!((1..=9).contains(&probed), "{probed} probes in 2 s");
    assert_eq!(a.e.stats().tail_queries, probed, "each with a query");
    let resent = a.e.stats().retransmitted + b.e.stats().retransmitted;
    assert_eq!(resent, 0, "the queries named nothing");
    assert_eq!(b.external.cts.len(), 100);
}

/// A gap whose NACK is lost costs milliseconds: the sender's probe asks
/// for the peer's tail too (the lost NACK goes again), and the receiver's
/// tail query shows the sender the gap in its numbers. What both miss
/// goes again [`PASSED_OVER`] after it was sent once an ACK passed over it
/// (2.5 s until session 29).
#[test]
fn a_lost_nack_costs_milliseconds() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    // A heard B's numbers: its probe carries a query.
    assert!(a.e.rx.last().is_some());
    a.e.p.max_datagram = 200;
    for i in 0..30 {
        a.add(ct(i));
    }
    let n = deliver(&mut a, &mut b, t, |i, _| i == 1);
    assert!(n >= 4, "{n} datagrams");
    let got = b.external.cts.len();
    assert!(got < 30);
    // B's ACK and NACK of the gap are lost.
    assert!(deliver(&mut b, &mut a, t, |_, _| true) > 0);
    let mut link = Link::perfect();
    let soon = t + Duration::from_millis(20);
    run_in_steps(&mut a, &mut b, &mut link, &mut t, soon, 1);
    assert_eq!(b.external.cts.len(), 30);
    assert_eq!(a.e.stats().retransmitted as usize, 30 - got);
    assert!(a.e.stats().tail_queries >= 1, "A's probe asked too");
}

#[test]
fn what_an_ack_passed_over_goes_again_a_tenth_of_a_second_after_it_was_sent() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    a.e.p.max_datagram = 200;
    for i in 0..30 {
        a.add(ct(i));
    }
    deliver(&mut a, &mut b, t, |i, _| i == 1);
    let sent = t;
    // An ACK from past the gap, as a conntrackd sends it once its NACK
    // was lost and its next window is full.
    let held = a.e.queue_lengths().1;
    let next = a.e.next_seq;
    let ack = crate::wire::ctd::Message {
        seq: b.e.next_seq.0,
        hello: false,
        hello_back: false,
        body: Body::Ack {
            from: next.0.wrapping_sub(2),
            to: next.0.wrapping_sub(1),
        },
    };
    let mut buf = [0u8; 64];
    let len = ctd::encode(&ack, Options::default(), &mut buf).unwrap();
    t = t + Duration::from_millis(1);
    a.e.recv(t, &buf[..len], &a.internal);
    // (Control messages of the handshake, long passed over, go now.)
    a.e.handle_timeout(t, &a.internal);
    let passed = keys_waiting(&a);
    assert!(
        passed < held && passed > 0,
        "{held} held, {passed} passed over"
    );
    let before = a.e.stats().retransmitted;
    t = sent + PASSED_OVER - Duration::from_millis(1);
    a.e.handle_timeout(t, &a.internal);
    assert_eq!(a.e.stats().retransmitted, before);
    assert!(a.e.poll_at() <= sent + PASSED_OVER, "woken for it");
    t = sent + PASSED_OVER;
    a.e.handle_timeout(t, &a.internal);
    assert_eq!((a.e.stats().retransmitted - before) as usize, passed);
    assert_eq!(keys_waiting(&a), 0);
}
