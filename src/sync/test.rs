//! Deterministic engine tests with explicit times.

use super::*;
use crate::model::{Conntrack, L4, Tuple};

pub(super) fn params(mode: Mode, session: u32) -> Params {
    Params {
        mode,
        session,
        max_datagram: 1472,
        resend_queue_size: 1000,
        ack_window: 4,
        tx_queue_size: 10_000,
        refresh_time: Duration::from_secs(5),
        seed: u64::from(session),
    }
}

/// Two engines that already proved their sessions to each other (each
/// knows the other as peer 1, as [`pump`] delivers).
pub(super) fn engines(
    mode: Mode,
    a: u32,
    b: u32,
    t: Instant,
) -> (Engine, Engine) {
    let (mut ea, mut eb) = (
        Engine::new(params(mode, a), t),
        Engine::new(params(mode, b), t),
    );
    ea.trust(1, b);
    eb.trust(1, a);
    (ea, eb)
}

pub(super) fn ct(port: u16) -> Conntrack {
    let mut c = Conntrack::new(Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: 17,
        l4: L4::Ports { src: port, dst: 53 },
    });
    c.timeout = Some(30);
    // As the kernel reports it: the reply tuple is always known.
    c.reply = Some(c.orig.inverse());
    c
}

pub(super) fn key(c: &Conntrack) -> Key {
    Key::Ct(wire::ct_key_of(c))
}

/// A new conntrack `ct(port)` in `src`, the cache `e` sends from, and
/// queued on `e` as the kernel's NEW would queue it.
pub(super) fn new_ct(e: &mut Engine, src: &mut MapSource, port: u16) {
    let c = ct(port);
    src.cts.insert(wire::ct_key_of(&c), c.clone());
    e.local_change(key(&c), true);
}

/// Everything A sends right now, delivered to B (optionally filtered).
pub(super) fn pump(
    a: &mut Engine,
    a_src: &MapSource,
    b: &mut Engine,
    b_src: &mut MapSource,
    now: Instant,
    mut deliver: impl FnMut(usize) -> bool,
) -> usize {
    let mut buf = [0u8; 1472];
    let mut n = 0;
    while let Some(len) = a.poll_transmit(now, a_src, &mut buf) {
        if deliver(n) {
            if std::env::var("PUMP_TRACE").is_ok() {
                let (h, body) = wire::read(&buf[..len]).unwrap();
                let m: Vec<_> = wire::messages(body).collect();
                eprintln!("{} -> {}: {h:?} {m:?}", a.p.session, b.p.session);
            }
            b.recv(now, 1, &buf[..len], &*b_src).unwrap();
            while let Some(ap) = b.pop_apply() {
                b_src.apply(ap);
            }
        }
        n += 1;
    }
    n
}

#[test]
fn a_report_and_a_resend_are_urgent_a_change_is_not() {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = engines(Mode::FtFw, 100, 200, t);
    let mut a_src = MapSource::default();
    let mut b_ext = MapSource::default();
    // Three datagrams, one message each: the second is lost.
    for p in 1..=3 {
        let c = ct(p);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
        assert!(a.wants_transmit() && !a.is_urgent(), "a change may wait");
        assert_eq!(pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| p != 2), 1);
        assert!(!a.is_urgent(), "sent");
        if p == 1 {
            assert!(!b.is_urgent(), "nothing to report yet");
        }
    }
    // B found the gap: its NACK must not wait for more.
    assert!(b.is_urgent(), "a NACK is urgent");
    let mut none = MapSource::default();
    assert!(pump(&mut b, &b_ext, &mut a, &mut none, t, |_| true) > 0);
    assert!(!b.is_urgent());
    // A resends the lost one: urgent too.
    assert!(a.is_urgent(), "a resend is urgent");
    assert_eq!(pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true), 1);
    assert!(!a.is_urgent() && !a.wants_transmit());
    assert_eq!(b_ext.cts.len(), 3);
}

#[test]
fn changes_coalesce_and_reach_the_peer() {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = engines(Mode::FtFw, 100, 200, t);
    let mut a_src = MapSource::default();
    let mut b_ext = MapSource::default();
    let mut c = ct(1);
    a_src.cts.insert(wire::ct_key_of(&c), c.clone());
    assert!(a.local_change(key(&c), true));
    c.mark = 9;
    a_src.cts.insert(wire::ct_key_of(&c), c.clone());
    assert!(a.local_change(key(&c), false));
    assert_eq!(a.queue_lengths(), (1, 0), "two changes, one queued key");
    assert_eq!(pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true), 1);
    assert_eq!(b_ext.cts.get(&wire::ct_key_of(&c)), Some(&c));
    assert_eq!(a.queue_lengths(), (0, 1), "awaiting ACK");
    // The first datagram says HELLO; B answers HELLO_BACK with its ACK.
    a.handle_timeout(Instant::from_millis(1000), &a_src);
    b.handle_timeout(Instant::from_millis(1000), &b_ext);
    let mut empty = MapSource::default();
    pump(
        &mut b,
        &b_ext,
        &mut a,
        &mut empty,
        Instant::from_millis(1000),
        |_| true,
    );
    assert_eq!(a.queue_lengths(), (0, 0), "ACKed");
    assert_eq!(a.handshake.hello, session::Hello::Answered);
    // Deleting sends a DEL built from the absence of the entry.
    a_src.cts.clear();
    a.local_change(key(&c), false);
    pump(
        &mut a,
        &a_src,
        &mut b,
        &mut b_ext,
        Instant::from_millis(1100),
        |_| true,
    );
    assert!(b_ext.cts.is_empty());
}

#[test]
fn gap_is_nacked_and_resent_with_the_current_state() {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = engines(Mode::FtFw, 100, 200, t);
    let mut a_src = MapSource::default();
    let mut b_ext = MapSource::default();
    let mut small = params(Mode::FtFw, 100);
    small.max_datagram = 44; // one message per datagram
    a.p = small;
    for p in 1..=3 {
        let c = ct(p);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    }
    // Datagram 1 (port 2) is lost.
    assert_eq!(pump(&mut a, &a_src, &mut b, &mut b_ext, t, |i| i != 1), 3);
    assert_eq!(b_ext.cts.len(), 2);
    assert_eq!(b.stats().lost, 1);
    // B's NACK makes A resend port 2, with whatever state it has now.
    let mut c2 = ct(2);
    c2.mark = 77;
    a_src.cts.insert(wire::ct_key_of(&c2), c2.clone());
    let mut sink = MapSource::default();
    pump(&mut b, &b_ext, &mut a, &mut sink, t, |_| true);
    assert_eq!(a.stats().retransmitted, 1);
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    assert_eq!(b_ext.cts.get(&wire::ct_key_of(&c2)), Some(&c2));
}

#[test]
fn queues_are_bounded_and_count_drops() {
    let t = Instant::from_millis(0);
    let mut p = params(Mode::FtFw, 1);
    p.tx_queue_size = 3;
    p.resend_queue_size = 2;
    let mut a = Engine::new(p, t);
    let mut src = MapSource::default();
    for port in 1..=5 {
        let c = ct(port);
        src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    }
    assert_eq!(a.queue_lengths(), (3, 0));
    assert_eq!(a.stats().tx_queue_full, 2);
    let mut buf = [0u8; 1472];
    while a.poll_transmit(t, &src, &mut buf).is_some() {}
    assert_eq!(a.queue_lengths(), (0, 2));
    assert_eq!(a.stats().resend_queue_dropped, 1);
}

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
fn peer_restart_resets_tracking_and_empties_the_resend_queue() {
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
    // B restarts (a new session): A believes it once it answered.
    let mut b2 = Engine::new(params(Mode::FtFw, 300), t);
    b2.request_resync();
    let mut b2_ext = MapSource::default();
    converge(&mut a, &a_src, &mut a_ext, &mut b2, &b_src, &mut b2_ext, t);
    assert_eq!(a.stats().peer_restarts, 1);
    assert_eq!(a.queue_lengths().1, 0, "the old resend queue is void");
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

#[test]
fn resync_request_is_answered_with_a_bulk() {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = engines(Mode::NoTrack, 1, 2, t);
    a.trust(2, 2);
    let mut a_src = MapSource::default();
    for p in 1..=50 {
        let c = ct(p);
        a_src.cts.insert(wire::ct_key_of(&c), c);
    }
    let mut b_ext = MapSource::default();
    assert!(b.request_resync());
    let mut sink = MapSource::default();
    // B's RESYNC reaches A, which queues all 50 entries.
    let mut buf = [0u8; 1472];
    let n = b.poll_transmit(t, &sink, &mut buf).unwrap();
    a.recv(t, 2, &buf[..n], &a_src).unwrap();
    assert_eq!(a.queue_lengths().0, 50);
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    assert_eq!(b_ext, a_src);
    sink.cts.clear();
    // ALARM has no resync request.
    let mut alarm = Engine::new(params(Mode::Alarm, 3), t);
    assert!(!alarm.request_resync());
}

#[test]
fn wrong_version_and_garbage_are_counted() {
    let t = Instant::from_millis(0);
    let mut a = Engine::new(params(Mode::FtFw, 1), t);
    let src = MapSource::default();
    let mut d = vec![b'c', b'T', 9, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
    assert_eq!(a.recv(t, 1, &d, &src), Err(wire::Error::Version(9)));
    assert_eq!(a.recv(t, 1, &d, &src), Err(wire::Error::Version(9)));
    assert_eq!(a.stats().bad_version, 2);
    d[2] = wire::VERSION;
    d[13] = 1;
    d.push(0xff);
    assert_eq!(a.recv(t, 1, &d, &src), Err(wire::Error::Malformed));
    assert_eq!(a.recv(t, 1, b"xx", &src), Err(wire::Error::Truncated));
    assert_eq!(a.stats().malformed, 4);
}

#[test]
fn sequence_numbers_wrap_without_loss() {
    // A starts two below the wrap, so its datagrams number MAX-1, MAX, 0, 1.
    let t = Instant::from_millis(0);
    let mut p = params(Mode::FtFw, u32::MAX - 1);
    p.max_datagram = 44; // one message per datagram
    let mut a = Engine::new(p, t);
    let mut b = Engine::new(params(Mode::FtFw, 200), t);
    a.trust(1, 200);
    b.trust(1, u32::MAX - 1);
    let mut a_src = MapSource::default();
    let mut b_ext = MapSource::default();
    for port in 1..=4 {
        let c = ct(port);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    }
    // The message numbered 0 is lost.
    assert_eq!(pump(&mut a, &a_src, &mut b, &mut b_ext, t, |i| i != 2), 4);
    assert_eq!((b.stats().lost, b.stats().before), (1, 0));
    assert_eq!(
        a.resend_queue().map(ResendEntry::seq).collect::<Vec<_>>(),
        [Seq(u32::MAX - 1), Seq(u32::MAX), Seq(0), Seq(1)]
    );
    let mut sink = MapSource::default();
    pump(&mut b, &b_ext, &mut a, &mut sink, t, |_| true);
    assert_eq!(a.stats().retransmitted, 1, "only the gap is resent");
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    assert_eq!(b_ext, a_src);
}

/// A datagram from session 9 whose first data message is `first`.
pub(super) fn datagram(first: u32, msgs: &[Msg]) -> Vec<u8> {
    datagram_from(9, first, msgs)
}

/// A datagram from `session` whose first data message is `first`.
pub(super) fn datagram_from(session: u32, first: u32, msgs: &[Msg]) -> Vec<u8> {
    let mut buf = [0u8; 1472];
    let header = Header {
        flags: 0,
        session,
        first_seq: Seq(first),
    };
    let mut w = Writer::new(&mut buf, header).unwrap();
    for m in msgs {
        w.push(m).unwrap();
    }
    let n = w.finish();
    buf[..n].to_vec()
}

/// The control messages `e` sends now.
pub(super) fn control_out(e: &mut Engine) -> Vec<Msg> {
    let mut buf = [0u8; 1472];
    let mut out = Vec::new();
    while let Some(n) = e.poll_transmit(
        Instant::from_millis(0),
        &MapSource::default(),
        &mut buf,
    ) {
        let (_, body) = wire::read(&buf[..n]).unwrap();
        out.extend(wire::messages(body).map(Result::unwrap));
    }
    out
}

pub(super) fn del(port: u16) -> Msg {
    Msg::CtDel(wire::ct_key_of(&ct(port)))
}

#[test]
fn late_messages_are_applied_in_notrack_and_dropped_in_ftfw() {
    for (mode, applied) in [(Mode::NoTrack, 3), (Mode::FtFw, 2)] {
        let mut b = Engine::new(params(mode, 1), Instant::from_millis(0));
        b.trust(1, 9);
        let src = MapSource::default();
        b.recv(
            Instant::from_millis(0),
            1,
            &datagram(10, &[del(1), del(2)]),
            &src,
        )
        .unwrap();
        b.recv(Instant::from_millis(0), 1, &datagram(10, &[del(1)]), &src)
            .unwrap();
        assert_eq!(b.stats().before, 1, "{mode:?}");
        assert_eq!(std::iter::from_fn(|| b.pop_apply()).count(), applied);
    }
}

#[test]
fn ftfw_acks_a_run_and_nacks_the_gap_whoever_finds_it() {
    // Window 4. Two messages, then an ALIVE that reveals 12..=14 missing.
    let mut b = Engine::new(params(Mode::FtFw, 1), Instant::from_millis(0));
    b.trust(1, 9);
    let src = MapSource::default();
    let t = Instant::from_millis(0);
    b.recv(t, 1, &datagram(10, &[del(1), del(2)]), &src)
        .unwrap();
    b.recv(t, 1, &datagram(12, &[Msg::Alive { next: Seq(15) }]), &src)
        .unwrap();
    let ack = |from, to| Msg::Ack {
        from: Seq(from),
        to: Seq(to),
    };
    let nack = |from, to| Msg::Nack {
        from: Seq(from),
        to: Seq(to),
    };
    assert_eq!(control_out(&mut b), [ack(10, 11), nack(12, 14)]);
    assert_eq!(b.stats().lost, 3);
    // The ACK restarted the window: the next one comes after four more
    // messages, not after the two the old window had left (fixed: the
    // ALIVE path used to leave the window as it was).
    b.recv(t, 1, &datagram(15, &[del(1), del(2)]), &src)
        .unwrap();
    assert_eq!(control_out(&mut b), []);
    // (Each datagram with new reports echoes the previous one's.)
    b.recv(t, 1, &datagram(17, &[del(1), del(2)]), &src)
        .unwrap();
    assert_eq!(
        control_out(&mut b),
        [ack(15, 18), ack(10, 11), nack(12, 14)]
    );
    // A data message after a gap: the same rule (the run before the gap
    // is ACKed again with the NACK: that ACK may have been lost), and the
    // earlier reports are repeated after it (the window ACK is the new
    // report's own; the first gap report is repeated whole).
    b.recv(t, 1, &datagram(21, &[del(1)]), &src).unwrap();
    assert_eq!(
        control_out(&mut b),
        [ack(15, 18), nack(19, 20), ack(10, 11), nack(12, 14)]
    );
    b.recv(t, 1, &datagram(22, &[del(1), del(2), del(3)]), &src)
        .unwrap();
    assert_eq!(
        control_out(&mut b),
        [
            ack(21, 24),
            ack(15, 18),
            nack(19, 20),
            ack(10, 11),
            nack(12, 14)
        ]
    );
}

#[test]
fn a_drained_burst_gives_its_queues_memory_back() {
    let t = Instant::from_millis(0);
    let mut p = params(Mode::FtFw, 100);
    p.resend_queue_size = 20_000;
    p.tx_queue_size = 20_000;
    let mut a = Engine::new(p, t);
    let mut b = Engine::new(params(Mode::FtFw, 200), t);
    a.trust(1, 200);
    b.trust(1, 100);
    let (mut a_src, mut b_ext) = (MapSource::default(), MapSource::default());
    let burst = 10_000u16;
    for port in 1..=burst {
        let c = ct(port);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    }
    let keep = tx::KEEP_CAPACITY;
    assert!(
        a.tx.capacities().0 >= usize::from(burst),
        "the burst is queued"
    );
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    assert_eq!(b_ext.cts.len(), usize::from(burst));
    let resend = |e: &Engine| {
        e.mode.get().resend_queue().map(|q| (q.len(), q.capacity()))
    };
    assert!(
        resend(&a).unwrap().1 >= usize::from(burst),
        "all await an ACK"
    );
    let (tx_keys, tx_index) = a.tx.capacities();
    assert!(
        tx_keys <= keep && tx_index <= keep,
        "tx queue released: {tx_keys} {tx_index}"
    );
    // B's ACKs empty A's resend queue, and its room goes back.
    pump(&mut b, &b_ext, &mut a, &mut a_src, t, |_| true);
    let (len, cap) = resend(&a).unwrap();
    assert_eq!(len, 0);
    assert!(cap <= keep, "resend queue released: {cap}");
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
    let mut pa = params(Mode::FtFw, 100);
    pa.resend_queue_size = 300_000;
    pa.tx_queue_size = 1_000_000;
    let mut a = Engine::new(pa, t);
    let mut b = Engine::new(params(Mode::FtFw, 200), t);
    a.trust(1, 200);
    b.trust(1, 100);
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

#[test]
fn a_prune_too_big_for_the_link_goes_in_parts_and_blocks_nothing() {
    // IPv6 link with MTU 1280: max_datagram 1232; a Prune of KEEP_MAX
    // hashes (about 1300 bytes) does not fit one datagram, and left at
    // the head of the background queue it blocked the DigestSubs.
    let t = Instant::from_millis(0);
    let mut p = params(Mode::FtFw, 100);
    p.max_datagram = 1232;
    let mut a = Engine::new(p, t);
    a.trust(1, 200);
    let src = MapSource::default();
    a.send_digest(Msg::Prune {
        table: wire::Table::Ct,
        bucket: 1,
        sub: 2,
        lo: 0,
        hi: u64::MAX,
        keep: wire::KeyHashes(vec![u64::MAX / 3; wire::KEEP_MAX]),
    });
    for b in 0..3u8 {
        a.send_digest(Msg::DigestSub {
            table: wire::Table::Ct,
            bucket: b,
            sums: wire::Sums([1; wire::FANOUT]),
        });
    }
    let mut buf = [0u8; 1472];
    let mut sent = 0;
    while a.poll_transmit(t, &src, &mut buf).is_some() {
        sent += 1;
    }
    assert!(
        sent > 0 && !a.wants_transmit(),
        "sent {sent} datagrams; the DigestSubs wait behind the Prune forever (wants_transmit={}, too_big={})",
        a.wants_transmit(),
        a.stats().too_big
    );
}

/// Every message in the datagrams `a` sends now (each at most `limit`
/// bytes).
fn sent_messages(a: &mut Engine, limit: usize) -> Vec<Msg> {
    let src = MapSource::default();
    let mut buf = [0u8; 1472];
    let mut out = Vec::new();
    while let Some(n) = a.poll_transmit(Instant::ZERO, &src, &mut buf) {
        assert!(n <= limit, "{n} bytes");
        let (_, body) = wire::read(&buf[..n]).unwrap();
        out.extend(wire::messages(body).map(Result::unwrap));
    }
    out
}

#[test]
fn at_576_bytes_the_digests_and_prunes_fit_and_are_sent() {
    // The smallest datagram a link is given (channel::max_datagram).
    let mut p = params(Mode::FtFw, 100);
    p.max_datagram = 576;
    let mut a = Engine::new(p, Instant::ZERO);
    a.trust(1, 200);
    // Dense sums (every bucket non-zero): their largest encoding.
    let sums = wire::Sums(std::array::from_fn(|i| i as u64 + 1));
    let top = Msg::DigestTop {
        table: wire::Table::Ct,
        sums,
    };
    let sub = Msg::DigestSub {
        table: wire::Table::Exp,
        bucket: 63,
        sums,
    };
    // A full Prune as anti-entropy builds it (for 1472 bytes).
    let keep: Vec<u64> = (0..wire::KEEP_MAX as u64).map(|i| i << 40).collect();
    a.send_digest(top.clone());
    a.send_digest(sub.clone());
    a.send_digest(Msg::Prune {
        table: wire::Table::Ct,
        bucket: 0,
        sub: 0,
        lo: 0,
        hi: u64::MAX,
        keep: wire::KeyHashes(keep.clone()),
    });
    let msgs = sent_messages(&mut a, 576);
    assert_eq!(a.stats().too_big, 0);
    assert!(!a.wants_transmit());
    assert_eq!(msgs[..2], [top, sub]);
    // The Prune in parts that cover its range in order, and keep it all.
    let mut next = 0u64;
    let mut kept: Vec<u64> = Vec::new();
    for m in &msgs[2..] {
        let Msg::Prune { lo, hi, keep, .. } = m else {
            panic!("{m:?}");
        };
        assert_eq!(*lo, next);
        kept.extend(&keep.0);
        next = hi.wrapping_add(1);
    }
    assert_eq!(next, 0, "up to u64::MAX");
    assert!(msgs.len() > 3, "in parts");
    assert_eq!(kept, keep);
}

/// A repair of more leaves than the background queue holds (1024: one
/// anti-entropy flush builds a Prune per differing leaf, up to 4096) drops
/// the oldest: counted, so `-s --json` shows it (it was silent).
#[test]
fn prunes_beyond_the_background_queue_are_dropped_and_counted() {
    let mut a = Engine::new(params(Mode::FtFw, 100), Instant::ZERO);
    a.trust(1, 200);
    for bucket in 0..1100u32 {
        a.send_digest(Msg::Prune {
            table: wire::Table::Ct,
            bucket: (bucket % 64) as u8,
            sub: (bucket / 64) as u8,
            lo: 0,
            hi: u64::MAX,
            keep: wire::KeyHashes(vec![u64::from(bucket)]),
        });
    }
    assert_eq!(a.stats().background_dropped, 1100 - 1024);
}
