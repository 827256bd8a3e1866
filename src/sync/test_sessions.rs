//! Which session and which numbers a receiver believes: a session only
//! once it answered its challenge (a forged one changes nothing), a
//! peer's restart resetting the tracking and resending what the resend
//! queue held under new numbers, a
//! number far ahead refused while the stream goes on, and replication
//! resuming after an outage left more or fewer messages unacknowledged
//! than the receive window.

use super::test::{
    ct, datagram_from, del, engines, heard_pair, key, params, pump,
};
use super::*;

/// Pumps both ways until both engines are quiet (bounded).
fn converge(
    a: &mut Engine,
    a_src: &MapSource,
    a_ext: &mut MapSource,
    b: &mut Engine,
    b_src: &MapSource,
    b_ext: &mut MapSource,
    now: Instant,
) {
    for _ in 0..8 {
        let n = pump(a, a_src, b, b_ext, now, |_| true)
            + pump(b, b_src, a, a_ext, now, |_| true);
        if n == 0 {
            return;
        }
    }
    panic!("still talking after 8 rounds");
}

#[test]
fn a_session_is_believed_only_after_its_challenge() {
    let t = Instant::from_millis(0);
    let mut a = Engine::new(params(Mode::FtFw, 100), t);
    let mut b = Engine::new(params(Mode::FtFw, 200), t);
    let (mut a_src, mut a_ext) = (MapSource::default(), MapSource::default());
    let (b_src, mut b_ext) = (MapSource::default(), MapSource::default());
    let c = ct(1);
    a_src.cts.insert(wire::ct_key_of(&c), c.clone());
    a.local_change(key(&c), true);
    // First contact: A's data waits until A answered B's challenge, then
    // B asks for it again (NACK) and applies it.
    let mut buf = [0u8; 1472];
    let n = a.poll_transmit(t, &a_src, &mut buf).unwrap();
    b.recv(t, 1, &buf[..n], &b_src).unwrap();
    assert!(b.pop_apply().is_none(), "not applied before the proof");
    assert_eq!(b.stats().unconfirmed, 1);
    converge(&mut a, &a_src, &mut a_ext, &mut b, &b_src, &mut b_ext, t);
    assert_eq!(b_ext.cts.get(&wire::ct_key_of(&c)), Some(&c));
    assert_eq!(b.stats().peer_restarts, 0, "first contact is not a restart");
    assert_eq!(
        (a.stats().challenges_answered, b.stats().challenges_answered),
        (1, 1)
    );
    // One forged datagram claiming a new session of A changes nothing.
    b.recv(t, 1, &datagram_from(555, 0, &[del(1)]), &b_src)
        .unwrap();
    assert!(b.pop_apply().is_none());
    assert_eq!(b.stats().peer_restarts, 0);
    converge(&mut a, &a_src, &mut a_ext, &mut b, &b_src, &mut b_ext, t);
    assert_eq!(b_ext.cts.len(), 1, "the forged delete was never applied");
}

#[test]
fn peer_restart_resets_tracking_and_resends_the_resend_queue() {
    let t = Instant::from_millis(0);
    let mut a = Engine::new(params(Mode::FtFw, 100), t);
    let mut b = Engine::new(params(Mode::FtFw, 200), t);
    let (mut a_src, mut a_ext) = (MapSource::default(), MapSource::default());
    let (b_src, mut b_ext) = (MapSource::default(), MapSource::default());
    // They meet (each asks the other for its state) and prove themselves.
    a.request_resync();
    b.request_resync();
    converge(&mut a, &a_src, &mut a_ext, &mut b, &b_src, &mut b_ext, t);
    assert_eq!(a.stats().challenges_answered, 1);
    let c = ct(1);
    a_src.cts.insert(wire::ct_key_of(&c), c.clone());
    a.local_change(key(&c), true);
    let mut buf = [0u8; 1472];
    a.poll_transmit(t, &a_src, &mut buf).unwrap();
    // This flow waits for B's ACK (its RESYNC request was ACKed when B
    // read the ALIVE that a proof implies: every ALIVE is answered).
    assert_eq!(a.queue_lengths().1, 1, "unacknowledged");
    let held = |a: &Engine| -> Vec<Seq> {
        let q = a.mode.get().resend_queue().unwrap();
        q.iter().map(|(s, _)| s).collect()
    };
    let old = held(&a);
    // B restarts (a new session): A believes it once it answered.
    let mut b2 = Engine::new(params(Mode::FtFw, 300), t);
    b2.request_resync();
    let mut b2_ext = MapSource::default();
    converge(&mut a, &a_src, &mut a_ext, &mut b2, &b_src, &mut b2_ext, t);
    assert_eq!(a.stats().peer_restarts, 1);
    // The flow went again, under a new number (the old one is void),
    // and waits for the new session's ACK.
    assert_eq!(b2_ext.cts.get(&wire::ct_key_of(&c)), Some(&c));
    let new = held(&a);
    assert!(new.len() == 1 && new != old, "{old:?} then {new:?}");
    b2.handle_timeout(t + ALIVE_INTERVAL, &b2_ext);
    converge(&mut a, &a_src, &mut a_ext, &mut b2, &b_src, &mut b2_ext, t);
    assert_eq!(a.queue_lengths().1, 0, "acknowledged");
    // The new peer's resync request, held until its proof, was answered
    // (pump answers from the receiver's external map, so count it).
    assert_eq!(a.stats().resyncs_requested_by_peer, 2);
}

#[test]
fn a_far_ahead_number_is_refused_and_the_stream_goes_on() {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = engines(Mode::FtFw, 100, 200, t);
    let (mut a_src, mut a_ext) = (MapSource::default(), MapSource::default());
    let (b_src, mut b_ext) = (MapSource::default(), MapSource::default());
    let c1 = ct(1);
    a_src.cts.insert(wire::ct_key_of(&c1), c1.clone());
    a.local_change(key(&c1), true);
    converge(&mut a, &a_src, &mut a_ext, &mut b, &b_src, &mut b_ext, t);
    // A datagram of A's session numbered 2^31 ahead.
    let forged = datagram_from(100, 100 + (1 << 31), &[del(1)]);
    b.recv(t, 1, &forged, &b_src).unwrap();
    assert!(b.pop_apply().is_none());
    assert_eq!(b.stats().out_of_window, 1);
    assert!(b.stats().lost < 10, "no 2^31 'lost messages'");
    // New flows keep replicating.
    let c2 = ct(2);
    a_src.cts.insert(wire::ct_key_of(&c2), c2.clone());
    a.local_change(key(&c2), true);
    converge(&mut a, &a_src, &mut a_ext, &mut b, &b_src, &mut b_ext, t);
    assert_eq!(b_ext, a_src);
}

/// Two-way exchange at `now` (ticks, then both directions).
fn round(
    a: &mut Engine,
    a_src: &MapSource,
    b: &mut Engine,
    b_ext: &mut MapSource,
    now: Instant,
) {
    a.handle_timeout(now, a_src);
    b.handle_timeout(now, b_ext);
    pump(a, a_src, b, b_ext, now, |_| true);
    let mut none = MapSource::default();
    pump(b, b_ext, a, &mut none, now, |_| true);
}

#[test]
fn more_unacked_than_the_window_still_resyncs() {
    unacked_after_outage(270_000);
}

#[test]
fn fewer_unacked_than_the_window_resync() {
    unacked_after_outage(200_000);
}

fn unacked_after_outage(lost: u32) {
    // ResendQueueSize 300 000 (any value is accepted) and a large table:
    // more than rx::WINDOW (262 144) messages go unacknowledged while the
    // link is down.
    let t = Instant::from_millis(0);
    let (mut a, mut b) = heard_pair(300_000, 1_000_000, t);
    let mut a_src = MapSource::default();
    let mut b_ext = MapSource::default();
    let c1 = ct(1);
    a_src.cts.insert(wire::ct_key_of(&c1), c1.clone());
    a.local_change(key(&c1), true);
    round(&mut a, &a_src, &mut b, &mut b_ext, t);
    assert_eq!(b_ext.cts.len(), 1);
    // The link is down: 270 000 deletions are lost.
    for i in 0..lost {
        let mut c = ct(9);
        c.orig.src =
            std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        a.local_change(Key::Ct(wire::ct_key_of(&c)), false);
    }
    let mut none = MapSource::default();
    pump(&mut a, &a_src, &mut b, &mut none, t, |_| false);
    // The link is back, and a new flow comes.
    let c2 = ct(2);
    a_src.cts.insert(wire::ct_key_of(&c2), c2.clone());
    a.local_change(key(&c2), true);
    let mut now = t;
    for _ in 0..600 {
        now = now + Duration::from_millis(50);
        round(&mut a, &a_src, &mut b, &mut b_ext, now);
    }
    let s = b.stats();
    assert!(
        b_ext.cts.contains_key(&wire::ct_key_of(&c2)),
        "30 s later nothing new arrived: out_of_window={} challenges_sent={} answered={}",
        s.out_of_window,
        s.challenges_sent,
        s.challenges_answered
    );
}

/// Ticks, then both directions (A answering from its own cache, as the
/// node's engine does).
fn talk(
    a: &mut Engine,
    a_src: &MapSource,
    b: &mut Engine,
    b_src: &MapSource,
    b_ext: &mut MapSource,
    now: Instant,
) {
    a.handle_timeout(now, a_src);
    b.handle_timeout(now, b_ext);
    let mut a_view = a_src.clone();
    pump(a, a_src, b, b_ext, now, |_| true);
    pump(b, b_src, a, &mut a_view, now, |_| true);
}

/// A sends while B is silent (longer than `PEER_ALIVE`): `n` new flows
/// and 3 deletions, with the link down. Then the link is back and both
/// talk (A answering from its own cache, as the node does). A's resend
/// queue after the silence, and A's stats once B holds what A holds.
fn silence(n: u16) -> (usize, Stats) {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = heard_pair(20_000, 20_000, t);
    let (mut a_src, b_src) = (MapSource::default(), MapSource::default());
    let mut b_ext = MapSource::default();
    for port in 1..=10 {
        let c = ct(port);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    }
    // Replicated and acknowledged (B acknowledges the last few on its
    // tick).
    let mut now = t;
    for _ in 0..40 {
        talk(&mut a, &a_src, &mut b, &b_src, &mut b_ext, now);
        if a.queue_lengths().1 == 0 {
            break;
        }
        now = now + Duration::from_millis(50);
    }
    assert_eq!((&b_ext, a.queue_lengths().1), (&a_src, 0));
    let quiet = now + PEER_ALIVE + Duration::from_secs(1);
    for port in 1..=3 {
        let c = ct(port);
        a_src.cts.remove(&wire::ct_key_of(&c));
        a.local_change(key(&c), false);
    }
    for port in 100..100 + n {
        let c = ct(port);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    }
    let mut nowhere = MapSource::default();
    pump(&mut a, &a_src, &mut b, &mut nowhere, quiet, |_| false);
    let held = a.queue_lengths().1;
    now = quiet;
    for _ in 0..100 {
        now = now + Duration::from_millis(50);
        talk(&mut a, &a_src, &mut b, &b_src, &mut b_ext, now);
        if b_ext == a_src {
            return (held, a.stats().clone());
        }
    }
    panic!(
        "B never caught up: {} of {}",
        b_ext.cts.len(),
        a_src.cts.len()
    );
}

/// Past `SILENT_HOLD` states, a silent peer costs the resend queue only
/// its DELs, and gets the whole cache when heard again.
#[test]
fn a_silent_peer_gets_a_bulk_instead_of_a_queue() {
    let n = 5_000;
    assert!(usize::from(n) > ftfw::SILENT_HOLD);
    let (held, st) = silence(n);
    assert_eq!(held, 3, "only the DELs are kept");
    assert_eq!(st.given_up_silent, u64::from(n));
    assert_eq!(st.bulks_on_return, 1);
}

/// Below it, the queue keeps everything and the NACK repairs the gap.
#[test]
fn a_short_silence_is_repaired_from_the_queue() {
    let (held, st) = silence(1_000);
    assert_eq!(held, 1_003);
    assert_eq!((st.given_up_silent, st.bulks_on_return), (0, 0));
}
