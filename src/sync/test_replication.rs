//! Changes replicated between two proven engines: repeated changes
//! coalesce and reach the peer (a deletion too), a change may wait but a
//! report or a resend may not, a gap is NACKed and resent with the
//! current state, the queues are bounded (the resend queue by holding
//! back what would not fit) and count their drops and give a drained
//! burst's memory back, and a resync request is answered with a bulk.

use super::test::{
    ct, datagram_from, engines, heard_pair, hears, key, params, pump,
};
use super::*;

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
    // A peer heard: the queue holds for it (a silent one would cost it
    // no more than half its bound).
    let b = Engine::new(params(Mode::FtFw, 9), t);
    a.trust(1, 9);
    hears(&mut a, &b, t);
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
    // No more goes out unacknowledged than the resend queue holds: the
    // third waits for an ACK instead of pushing the first out.
    assert_eq!(a.queue_lengths(), (1, 2));
    assert_eq!(a.stats().resend_queue_dropped, 0);
    let ack = Msg::Ack {
        from: Seq(1),
        to: Seq(2),
    };
    a.recv(t, 1, &datagram_from(9, 1, &[ack]), &src).unwrap();
    while a.poll_transmit(t, &src, &mut buf).is_some() {}
    assert_eq!(a.queue_lengths(), (0, 1));
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
fn a_drained_burst_gives_its_queues_memory_back() {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = heard_pair(20_000, 20_000, t);
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
