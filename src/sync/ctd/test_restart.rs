//! A conntrackd peer that restarts, and a datagram that asks for our
//! whole cache many times over. A restarted conntrackd numbers from its
//! clock, far from or inside its last life's numbers: in NOTRACK its first
//! message (its StartupResync RESYNC) is still applied, and in FT-FW none
//! of our ACKs of its last life reaches its new one. A bulk walks the
//! whole cache: one datagram gets one, however often it asks.

use super::test_reports::{ctl, params};
use super::*;
use crate::sync::test::Counted;
use crate::sync::{MapSource, ResendEntry};
use crate::wire::ctd::flag::{ACK, ALIVE, HELLO, HELLO_BACK, RESYNC};
use crate::wire::ctd::{self, Body, Message};

/// A conntrackd ALIVE (`nethdr` only).
fn alive(seq: u32, flags: u8) -> Vec<u8> {
    let mut m = vec![0x1a, ALIVE | flags];
    m.extend_from_slice(&8u16.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m
}

fn sent(e: &mut CtdEngine, now: Instant, src: &dyn Source) -> Vec<Message> {
    let (mut out, mut buf) = (Vec::new(), [0u8; 1472]);
    while let Some(n) = e.poll_transmit(now, src, &mut buf) {
        out.extend(
            ctd::messages(&buf[..n], Options::default()).map(|m| m.unwrap()),
        );
    }
    out
}

#[test]
fn a_restarted_notrack_peers_resync_is_answered() {
    let src = Counted::with(3);
    let t = Instant::from_millis(0);
    let mut e = CtdEngine::new(
        Params {
            mode: Mode::NoTrack,
            ..params()
        },
        t,
    );
    e.recv(t, &alive(1_000_000, 0), &src);
    e.recv(t, &alive(1_000_001, 0), &src);
    // Restarted: numbered from its clock, far below its last life.
    let new = 600_000;
    e.recv(t, &ctl(new, RESYNC, 0, 0), &src);
    e.recv(t, &alive(new + 1, 0), &src);
    assert_eq!(e.stats().resyncs_requested_by_peer, 1);
    assert_eq!(e.stats().out_of_window, 1);
    let data = sent(&mut e, t, &src)
        .into_iter()
        .filter(|m| m.body.is_data())
        .count();
    assert_eq!(data, 3);
    // The tracking followed the second message: the next is in sync.
    e.recv(t, &alive(new + 2, 0), &src);
    assert_eq!((e.stats().lost, e.stats().out_of_window), (0, 1));
}

#[test]
fn no_ack_of_a_restarted_peers_last_life_reaches_its_new_one() {
    let src = MapSource::default();
    let mut t = Instant::from_millis(0);
    let mut e = CtdEngine::new(params(), t);
    let _ = sent(&mut e, t, &src);
    // The peer's handshake and a run of five, acknowledged after the
    // quiet second: ACK 500..=505 awaits the peer's ACK.
    e.recv(t, &alive(500, HELLO | HELLO_BACK), &src);
    for s in 501..=505 {
        e.recv(t, &alive(s, 0), &src);
    }
    t = t + Duration::from_secs(1);
    e.handle_timeout(t, &src);
    let out = sent(&mut e, t, &src);
    assert!(
        out.iter()
            .any(|m| m.body == Body::Ack { from: 500, to: 505 })
    );
    // It restarts numbering from 503 (its clock); it acknowledges all
    // we sent since, and its 505 is lost.
    let b = 503;
    e.recv(t, &alive(b, HELLO), &src);
    t = t + Duration::from_secs(1);
    e.handle_timeout(t, &src);
    let out = sent(&mut e, t, &src);
    let ours = out.iter().map(|m| m.seq).max().unwrap();
    e.recv(t, &ctl(b + 1, ACK | HELLO, ours, ours), &src);
    for _ in 0..4 {
        t = t + Duration::from_millis(200);
        e.handle_timeout(t, &src);
        for m in sent(&mut e, t, &src) {
            if let Body::Ack { from, to } = m.body {
                assert!(
                    !(from..=to).contains(&(b + 2)),
                    "an ACK names the new life's {}, never received: {m:?}",
                    b + 2
                );
            }
        }
    }
}

#[test]
fn one_datagram_gets_one_bulk_however_often_it_asks() {
    let src = Counted::with(3);
    let mut t = Instant::from_millis(0);
    let mut e = CtdEngine::new(params(), t);
    // Our HELLO (the quiet second's ALIVE), answered.
    t = t + Duration::from_secs(1);
    e.handle_timeout(t, &src);
    assert!(!sent(&mut e, t, &src).is_empty());
    e.recv(t, &alive(500, HELLO | HELLO_BACK), &src);
    // 91 RESYNCs in one datagram (16 bytes each: what fits 1472).
    let mut d = Vec::new();
    for i in 0..91 {
        d.extend(ctl(501 + i, RESYNC, 0, 0));
    }
    e.recv(t, &d, &src);
    assert_eq!(e.stats().resyncs_requested_by_peer, 91);
    assert_eq!(src.walks.get(), 1);
    // A datagram of HELLOs alternating with plain messages: each HELLO
    // after a plain one is a restart.
    let mut d = Vec::new();
    for i in 0..90 {
        d.extend(alive(1000 + i, if i % 2 == 0 { HELLO } else { 0 }));
    }
    e.recv(t, &d, &src);
    assert!(e.stats().peer_restarts >= 40, "{:?}", e.stats());
    assert_eq!(src.walks.get(), 2);
    // Every flow is sent.
    let data = sent(&mut e, t, &src)
        .into_iter()
        .filter(|m| m.body.is_data())
        .count();
    assert_eq!(data, 3);
}

/// conntrackd resends a control message it kept (ACK, NACK, RESYNC) with
/// the flags it first went with: one of its handshake, NACKed after the
/// handshake ended, says HELLO again (and HELLO_BACK), numbered in
/// sequence. Checked on conntrackd 1.4.7: its handshake ACK went as seq
/// n with flags 0x68, then an ALIVE 0x30 and an ACK 0x08; NACKed, the ACK
/// came again as n + 3 with flags 0x68. It is not the peer's restart: no
/// second bulk of our whole cache, and our reports of its numbers (the
/// NACK that asked for it among them) are kept.
#[test]
fn a_handshake_control_resent_saying_hello_is_not_a_restart() {
    let src = Counted::with(3);
    let mut t = Instant::from_millis(0);
    let mut e = CtdEngine::new(params(), t);
    t = t + Duration::from_secs(1);
    e.handle_timeout(t, &src);
    let _ = sent(&mut e, t, &src);
    // Its last life, then its restart: HELLO|ALIVE, its handshake ACK
    // (HELLO|HELLO_BACK, lost), a plain ACK after our HELLO_BACK.
    e.recv(t, &alive(400, 0), &src);
    e.recv(t, &alive(401, 0), &src);
    e.recv(t, &alive(5000, HELLO), &src);
    assert_eq!((e.stats().peer_restarts, src.walks.get()), (1, 1));
    let _ = sent(&mut e, t, &src);
    e.recv(t, &ctl(5002, ACK, 100, 100), &src);
    let nacks: Vec<_> = sent(&mut e, t, &src)
        .into_iter()
        .filter(|m| matches!(m.body, Body::Nack { .. }))
        .collect();
    assert!(
        nacks.iter().any(|m| m.body
            == Body::Nack {
                from: 5001,
                to: 5001
            }),
        "{nacks:?}"
    );
    // Its answer: the lost ACK again, with the flags it first had.
    e.recv(t, &ctl(5003, ACK | HELLO | HELLO_BACK, 100, 100), &src);
    assert_eq!(
        (e.stats().peer_restarts, src.walks.get()),
        (1, 1),
        "the resent handshake ACK taken as a restart"
    );
    // Kept with the HELLO bits it went with (`-s rsqueue`).
    let nack_kept = e
        .resend_queue()
        .any(|r| matches!(r, ResendEntry::Control(_, f) if f & 0x0f == 0x04));
    assert!(nack_kept, "our NACK of its numbers was dropped");
    // A real restart after it is still one.
    e.recv(t, &alive(4000, HELLO), &src);
    assert_eq!((e.stats().peer_restarts, src.walks.get()), (2, 2));
}
