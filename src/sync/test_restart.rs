//! What a receiver tells a peer that restarted: nothing about the
//! numbers of the session before the restart. A report of the old
//! session's numbers reaches the new one as a report of numbers it never
//! sent (its numbering starts elsewhere): refused, counted in
//! out_of_window, and its sender challenged again.

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
