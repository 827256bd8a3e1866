//! A keyed node's own datagrams sent back to it (reflected by anyone on
//! the link, from the peer's address or another): they open with the
//! node's key and their counters are new to any window the node keeps
//! (it never receives what it sends), yet they are nobody's: a session
//! proven by them would be the node's own, answering its own challenges.
//! And a peer's datagrams sent from another address than the peer's
//! (on multicast or TCP any is accepted): the session they prove there is
//! the one already believed, tracked once, wherever its datagrams come
//! from.

use super::test_sealed::{
    Side, backup, ct, deliver_from, primary_with_flows, run, send,
};
use super::*;

/// What `p` sends now, kept from the link (the attacker's capture).
fn intercepted(p: &mut Side, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 1472];
    let mut out = Vec::new();
    while let Some(len) = p.e.poll_transmit(now, &p.cache, &mut buf) {
        out.push(buf[..len].to_vec());
    }
    out
}

#[test]
fn a_node_never_proves_its_own_reflected_session() {
    for peer in [1, 2] {
        let t = Instant::from_millis(0);
        let mut p = primary_with_flows(Mode::FtFw, &[7], t);
        let mut b = backup(Mode::FtFw, 2, &[7], t);
        let (_, now) = run(&mut p, &mut b, t, 20);
        assert_eq!(b.cache.cts.len(), 20);
        // A new flow p sends, intercepted: it waits for its ACK.
        let c = ct(900);
        p.cache.cts.insert(wire::ct_key_of(&c), c.clone());
        p.e.local_change(Key::Ct(wire::ct_key_of(&c)), true);
        let s = p.e.stats().clone();
        // Reflected three times over: p's datagram, then what p sends
        // about it (a challenge of "its" session), then what p sends
        // about that (its own answer).
        let mut reflected = 0;
        let mut d = intercepted(&mut p, now);
        let unacked = p.e.queue_lengths().1;
        assert!(unacked > 0);
        for _ in 0..3 {
            for x in &d {
                deliver_from(&mut p, peer, x, now);
                reflected += 1;
            }
            d = intercepted(&mut p, now);
        }
        let after = p.e.stats();
        assert_eq!(after.peer_restarts, s.peer_restarts, "peer {peer}");
        assert_eq!(
            after.challenges_answered, s.challenges_answered,
            "peer {peer}: proven by its own answer"
        );
        assert_eq!(p.e.queue_lengths().1, unacked, "peer {peer}: queue");
        assert_eq!(after.replayed - s.replayed, reflected, "peer {peer}");
        // The pair still syncs: the flow reaches b.
        let (_, _) = run(&mut p, &mut b, now + Duration::from_millis(10), 5);
        assert!(b.cache.cts.contains_key(&wire::ct_key_of(&c)));
    }
}

#[test]
fn a_delayed_datagram_redirected_from_another_address_is_still_late() {
    // On multicast (or TCP) any source address is accepted. A fresh
    // datagram of p's and p's answer to the challenge it draws, both
    // redirected to come from address 2, prove p's session there too.
    let t = Instant::from_millis(0);
    let mut p = primary_with_flows(Mode::FtFw, &[7], t);
    let mut b = backup(Mode::FtFw, 2, &[7], t);
    let (_, mut now) = run(&mut p, &mut b, t, 20);
    assert_eq!(b.cache.cts.len(), 20);
    let m = ct(800);
    p.cache.cts.insert(wire::ct_key_of(&m), m.clone());
    p.e.local_change(Key::Ct(wire::ct_key_of(&m)), true);
    let answered = b.e.stats().challenges_answered;
    for d in intercepted(&mut p, now) {
        deliver_from(&mut b, 2, &d, now);
    }
    send(&mut b, &mut p, now);
    for d in intercepted(&mut p, now) {
        deliver_from(&mut b, 2, &d, now);
    }
    assert_eq!(b.e.stats().challenges_answered, answered + 1);
    (_, now) = run(&mut p, &mut b, now, 5);
    assert!(b.cache.cts.contains_key(&wire::ct_key_of(&m)));
    // p creates K; the attacker keeps that datagram. K reaches b all the
    // same (resent on b's NACK), then p deletes it, and b follows.
    let k = ct(900);
    let key = wire::ct_key_of(&k);
    p.cache.cts.insert(key, k.clone());
    p.e.local_change(Key::Ct(key), true);
    let kept = intercepted(&mut p, now);
    (_, now) = run(&mut p, &mut b, now + Duration::from_millis(10), 5);
    assert!(b.cache.cts.contains_key(&key), "resent");
    p.cache.cts.remove(&key);
    p.e.local_change(Key::Ct(key), false);
    (_, now) = run(&mut p, &mut b, now, 5);
    assert!(!b.cache.cts.contains_key(&key), "deleted on b");
    // The kept datagram, delivered late from address 2: older than what
    // b has of p's session, it must not bring K back.
    for d in &kept {
        deliver_from(&mut b, 2, d, now);
    }
    assert!(
        !b.cache.cts.contains_key(&key),
        "a delayed datagram re-created a deleted flow"
    );
}
