//! What a receiver tells a peer that restarted: nothing about the
//! numbers of the session before the restart. A report of the old
//! session's numbers reaches the new one as a report of numbers it never
//! sent (its numbering starts elsewhere): refused, counted in
//! out_of_window, and its sender challenged again. And what a sender
//! does for a peer that restarted: what it held unacknowledged (for that
//! peer or another on the link) goes again, under new numbers.

use super::test::{ct, datagram_from, engines, new_ct, params, pump};
use super::test_tail::wake;
use super::*;

/// A's session before its restart, and so its first number.
const OLD: u32 = 1000;
/// A's session after it (its numbers start before the old ones).
const NEW: u32 = 100;

/// Whether `m` is a report that reaches one of `old`'s numbers.
fn about(m: &Msg, old: std::ops::RangeInclusive<u32>) -> bool {
    match *m {
        Msg::Ack { from, to } | Msg::Nack { from, to } => {
            from.0 <= *old.end() && to.0 >= *old.start()
        }
        _ => false,
    }
}

/// Everything `from` sends right now, delivered to `to`; its messages
/// are added to `said`.
fn pump_said(
    from: &mut Engine,
    from_src: &MapSource,
    to: &mut Engine,
    to_src: &mut MapSource,
    now: Instant,
    said: &mut Vec<Msg>,
) -> usize {
    let mut buf = [0u8; 1472];
    let mut n = 0;
    while let Some(len) = from.poll_transmit(now, from_src, &mut buf) {
        let (_, body) = wire::read(&buf[..len]).unwrap();
        said.extend(wire::messages(body).map(Result::unwrap));
        to.recv(now, 1, &buf[..len], &*to_src).unwrap();
        while let Some(ap) = to.pop_apply() {
            to_src.apply(ap);
        }
        n += 1;
    }
    n
}

/// A (session [`OLD`]) sent three entries, numbered OLD..=OLD + 2, and
/// B acknowledged them: B's last datagram carried that ACK. A's cache,
/// B and B's external cache.
fn acknowledged() -> (MapSource, Engine, MapSource) {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = engines(Mode::FtFw, OLD, 200, t);
    let mut a_src = MapSource::default();
    let mut b_ext = MapSource::default();
    for p in 1..=3 {
        new_ct(&mut a, &mut a_src, p);
    }
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    let tick = t + ALIVE_INTERVAL;
    b.handle_timeout(tick, &b_ext);
    let mut said = Vec::new();
    let mut sink = MapSource::default();
    pump_said(&mut b, &b_ext, &mut a, &mut sink, tick, &mut said);
    assert_eq!(
        said,
        [Msg::Ack {
            from: Seq(OLD),
            to: Seq(OLD + 2)
        }]
    );
    assert_eq!(a.queue_lengths(), (0, 0), "acknowledged");
    (a_src, b, b_ext)
}

/// A restarted as session [`NEW`] with one more entry: runs A and B from
/// `start` until B has A's whole cache and both are quiet, for up to
/// three seconds. What B said to the new A, and whether they got there.
fn restart_and_replicate(
    a2: &mut Engine,
    a_src: &mut MapSource,
    b: &mut Engine,
    b_ext: &mut MapSource,
    start: Instant,
) -> (Vec<Msg>, bool) {
    let mut said = Vec::new();
    let mut sink = MapSource::default();
    for ms in 0..3000 {
        let now = start + Duration::from_millis(ms);
        wake(a2, a_src, now);
        wake(b, b_ext, now);
        pump(a2, a_src, b, b_ext, now, |_| true);
        pump_said(b, b_ext, a2, &mut sink, now, &mut said);
        if b_ext.cts == a_src.cts && a2.is_idle() && !b.wants_transmit() {
            return (said, true);
        }
    }
    (said, false)
}

/// A's new session, with a fourth entry queued, at `t`.
fn restarted(a_src: &mut MapSource, t: Instant) -> Engine {
    let mut a2 = Engine::new(params(Mode::FtFw, NEW), t);
    new_ct(&mut a2, a_src, 4);
    a2.bulk(a_src);
    a2
}

#[test]
fn a_restarted_peer_hears_no_report_of_its_old_numbers() {
    // B's last datagram acknowledged OLD..=OLD + 2. A restarts: its new
    // numbers start at NEW, before the old ones. B's first reports of the
    // new numbers carried that ACK again (the echo of its last
    // datagram's reports): to the new A, an ACK reaching numbers it
    // never sent.
    let (mut a_src, mut b, mut b_ext) = acknowledged();
    let t = Instant::from_millis(2000);
    let mut a2 = restarted(&mut a_src, t);
    let (said, whole) =
        restart_and_replicate(&mut a2, &mut a_src, &mut b, &mut b_ext, t);
    assert_eq!(b.stats().peer_restarts, 1);
    let old: Vec<_> = said.iter().filter(|m| about(m, OLD..=OLD + 2)).collect();
    let refused = a2.stats().out_of_window;
    assert_eq!((old, refused, whole), (vec![], 0, true), "{:?}", a2.stats());
}

#[test]
fn a_report_waiting_when_the_peer_restarts_is_not_sent() {
    // A restarted; B challenged its new session. Then the old session's
    // last datagram arrives late (OLD + 3..=OLD + 6: an ACK waits, the
    // window of four full) and, before B sends again, the new session's
    // answer: the waiting ACK is of numbers the new A never sent.
    let (mut a_src, mut b, mut b_ext) = acknowledged();
    let late: Vec<_> = (5..=8).map(ct).collect();
    for c in &late {
        // Still in the kernel's table after the restart.
        a_src.cts.insert(wire::ct_key_of(c), c.clone());
    }
    let t = Instant::from_millis(2000);
    let mut a2 = restarted(&mut a_src, t);
    let mut buf = [0u8; 1472];
    let n = a2.poll_transmit(t, &a_src, &mut buf).unwrap();
    b.recv(t, 1, &buf[..n], &b_ext).unwrap();
    assert_eq!(b.stats().challenges_sent, 1);
    let n = b.poll_transmit(t, &b_ext, &mut buf).unwrap();
    a2.recv(t, 1, &buf[..n], &a_src).unwrap();
    let late: Vec<_> = late
        .iter()
        .map(|c| Msg::CtNew(wire::to_wire_ct(c)))
        .collect();
    b.recv(t, 1, &datagram_from(OLD, OLD + 3, &late), &b_ext)
        .unwrap();
    while let Some(ap) = b.pop_apply() {
        b_ext.apply(ap);
    }
    assert!(b.is_urgent(), "B's ACK of the late datagram waits");
    // A's answer (and its challenge of B) reach B before B sends again.
    let n = a2.poll_transmit(t, &a_src, &mut buf).unwrap();
    b.recv(t, 1, &buf[..n], &b_ext).unwrap();
    assert_eq!(b.stats().peer_restarts, 1);
    let (said, whole) =
        restart_and_replicate(&mut a2, &mut a_src, &mut b, &mut b_ext, t);
    let old: Vec<_> = said.iter().filter(|m| about(m, OLD..=OLD + 6)).collect();
    let refused = a2.stats().out_of_window;
    assert_eq!((old, refused, whole), (vec![], 0, true), "{:?}", a2.stats());
}

/// A sent three new entries to B at `t`, B acknowledged them and died:
/// A, the cache it sends from, and what B had written (its kernel's
/// table, which outlives it).
fn three_acknowledged_then_the_peer_died(
    t: Instant,
) -> (Engine, MapSource, MapSource) {
    let (mut a, mut b) = engines(Mode::FtFw, OLD, 200, t);
    super::test::hears(&mut a, &b, t);
    let mut a_src = MapSource::default();
    let mut b_ext = MapSource::default();
    for p in 1..=3 {
        new_ct(&mut a, &mut a_src, p);
    }
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    b.handle_timeout(t + ALIVE_INTERVAL, &b_ext);
    let mut sink = MapSource::default();
    pump(&mut b, &b_ext, &mut a, &mut sink, t, |_| true);
    assert_eq!(a.queue_lengths(), (0, 0), "acknowledged");
    (a, a_src, b_ext)
}

#[test]
fn what_was_sent_while_the_peer_was_down_reaches_its_restart() {
    // B acknowledged A's three entries, then died. A deleted one and
    // created a fourth: written into the dead TCP connection, lost. B
    // restarts (a new session) with the kernel's table it wrote (no
    // external cache) and no StartupResync: only A's resend queue still
    // knows what B lacks.
    let t = Instant::from_millis(0);
    let (mut a, mut a_src, mut b_ext) =
        three_acknowledged_then_the_peer_died(t);
    let t1 = t + Duration::from_millis(100);
    a_src.cts.remove(&wire::ct_key_of(&ct(2)));
    a.local_change(super::test::key(&ct(2)), false);
    new_ct(&mut a, &mut a_src, 4);
    let mut buf = [0u8; 1472];
    while a.poll_transmit(t1, &a_src, &mut buf).is_some() {}
    assert_eq!(a.queue_lengths(), (0, 2), "unacknowledged");
    let t2 = t + Duration::from_millis(200);
    let mut b2 = Engine::new(params(Mode::FtFw, 300), t2);
    let (_, whole) =
        restart_and_replicate(&mut a, &mut a_src, &mut b2, &mut b_ext, t2);
    assert_eq!(a.stats().peer_restarts, 1);
    let ports = |m: &MapSource| {
        let mut p: Vec<u16> = m
            .cts
            .values()
            .map(|c| match c.orig.l4 {
                crate::model::L4::Ports { src, .. } => src,
                _ => 0,
            })
            .collect();
        p.sort_unstable();
        p
    };
    assert_eq!((ports(&b_ext), whole), (vec![1, 3, 4], true));
}

/// What `from` sends now, delivered to each of `to` (an engine, the
/// external cache it writes, and the peer id `from` has there) for
/// which `deliver` holds: a multicast link.
fn multicast(
    from: (&mut Engine, &MapSource),
    to: &mut [(&mut Engine, &mut MapSource, u64)],
    now: Instant,
    deliver: impl Fn(usize) -> bool,
) {
    let mut buf = [0u8; 1472];
    while let Some(len) = from.0.poll_transmit(now, from.1, &mut buf) {
        for (i, (e, ext, peer)) in to.iter_mut().enumerate() {
            if deliver(i) {
                e.recv(now, *peer, &buf[..len], &**ext).unwrap();
                while let Some(ap) = e.pop_apply() {
                    ext.apply(ap);
                }
            }
        }
    }
}

#[test]
fn one_peers_restart_leaves_another_what_it_lacks() {
    // A multicast link: A (100) sends to B (200, peer 2 at A) and C (300,
    // peer 3). A datagram of A's reached C, not B. Before B heard of the
    // gap, C restarted (301) and proved its new session: what A held for
    // B as well was void, and B's NACK found nothing.
    let t = Instant::from_millis(0);
    let mut a = Engine::new(params(Mode::FtFw, 100), t);
    let mut b = Engine::new(params(Mode::FtFw, 200), t);
    let mut c = Engine::new(params(Mode::FtFw, 300), t);
    a.trust(2, 200);
    a.trust(3, 300);
    b.trust(1, 100);
    c.trust(1, 100);
    let (mut a_src, mut a_ext) = (MapSource::default(), MapSource::default());
    let (mut b_ext, mut c_ext) = (MapSource::default(), MapSource::default());
    new_ct(&mut a, &mut a_src, 1);
    multicast(
        (&mut a, &a_src),
        &mut [(&mut b, &mut b_ext, 1), (&mut c, &mut c_ext, 1)],
        t,
        |_| true,
    );
    new_ct(&mut a, &mut a_src, 2);
    multicast(
        (&mut a, &a_src),
        &mut [(&mut b, &mut b_ext, 1), (&mut c, &mut c_ext, 1)],
        t,
        |i| i == 1,
    );
    assert_eq!((b_ext.cts.len(), c_ext.cts.len()), (1, 2));
    drop(c);
    let mut c2 = Engine::new(params(Mode::FtFw, 301), t);
    let mut c2_src = MapSource::default();
    new_ct(&mut c2, &mut c2_src, 9);
    for ms in 0..3000 {
        let now = t + Duration::from_millis(ms);
        wake(&mut a, &a_src, now);
        wake(&mut b, &b_ext, now);
        wake(&mut c2, &c2_src, now);
        multicast(
            (&mut a, &a_src),
            &mut [(&mut b, &mut b_ext, 1), (&mut c2, &mut c_ext, 1)],
            now,
            |_| true,
        );
        multicast(
            (&mut b, &b_ext),
            &mut [(&mut a, &mut a_ext, 2)],
            now,
            |_| true,
        );
        multicast(
            (&mut c2, &c2_src),
            &mut [(&mut a, &mut a_ext, 3)],
            now,
            |_| true,
        );
        if b_ext.cts == a_src.cts && a.is_idle() {
            break;
        }
    }
    assert_eq!(a.stats().peer_restarts, 1);
    assert_eq!(b_ext.cts.len(), 2, "B lacks what only C got");
}

#[test]
fn what_was_given_up_while_the_peer_was_down_reaches_its_restart() {
    // B acknowledged three entries and died. Not heard for longer than
    // PEER_ALIVE, A gave up the states past its silent hold (half its
    // queue of 1 000) and owed B a bulk. B restarts with the kernel's
    // table it wrote and asks no resync: the bulk is still owed.
    let t = Instant::from_millis(0);
    let (mut a, mut a_src, mut b_ext) =
        three_acknowledged_then_the_peer_died(t);
    let t1 = t + PEER_ALIVE + Duration::from_millis(1);
    for p in 10..610 {
        new_ct(&mut a, &mut a_src, p);
    }
    let mut buf = [0u8; 1472];
    while a.poll_transmit(t1, &a_src, &mut buf).is_some() {}
    assert!(a.stats().given_up_silent > 0, "{:?}", a.stats());
    let t2 = t1 + Duration::from_millis(100);
    let mut b2 = Engine::new(params(Mode::FtFw, 300), t2);
    // A answers from its own cache (a bulk walks it).
    for ms in 0..3000 {
        let now = t2 + Duration::from_millis(ms);
        wake(&mut a, &a_src, now);
        wake(&mut b2, &b_ext, now);
        let to_b = &mut [(&mut b2, &mut b_ext, 1)];
        multicast((&mut a, &a_src), to_b, now, |_| true);
        let to_a = &mut [(&mut a, &mut a_src, 1)];
        multicast((&mut b2, &b_ext), to_a, now, |_| true);
        if b_ext.cts == a_src.cts && a.is_idle() {
            break;
        }
    }
    assert_eq!(a.stats().peer_restarts, 1);
    assert_eq!((b_ext.cts.len(), a_src.cts.len()), (603, 603));
}
