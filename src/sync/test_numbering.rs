//! Reading numbered datagrams: a wrong version and garbage counted,
//! numbers that wrap losing nothing, late messages applied by NOTRACK and
//! dropped by FT-FW, and FT-FW's ACK of a run and NACK of the gap, and
//! the reports repeated after them.

use super::test::{control_out, ct, datagram, del, key, params, pump};
use super::*;

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
