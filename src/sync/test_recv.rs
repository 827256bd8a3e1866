//! The receive path's edges as an operator meets them: what is logged
//! about a datagram this node cannot read, what such a datagram still
//! counts for, and that what the path gives up is counted in `-s`.

use std::sync::Mutex;

use super::test::{ct, params};
use super::*;
use crate::wire::seal::{self, Sealer};

/// The warnings the receive path logged (other modules' lines are not
/// kept: tests run side by side in one process).
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("ctsyncd::sync::recv")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata())
            && let Ok(mut v) = LOGGED.lock()
        {
            v.push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture() {
    static CAPTURE: Capture = Capture;
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Info);
}

/// The nonce of the challenge `e` sends first at `t`.
fn challenge_sent(e: &mut Engine, t: Instant, src: &MapSource) -> u64 {
    let mut buf = [0u8; 1472];
    let n = e.poll_transmit(t, src, &mut buf).unwrap();
    let (_, body) = wire::read(&buf[..n]).unwrap();
    wire::messages(body)
        .find_map(|m| match m {
            Ok(Msg::Challenge { nonce }) => Some(nonce),
            _ => None,
        })
        .expect("a challenge")
}

#[test]
fn a_sealed_peer_is_named_as_such_to_a_node_without_a_key() {
    capture();
    let t = Instant::from_millis(0);
    // The peer got its AuthenticationKeyFile first (a key's introduction
    // goes one node at a time); this node has none yet.
    let mut peer = Engine::new(params(Mode::FtFw, 0x51ed), t);
    let key = seal::Key::from_bytes([9; 32]);
    peer.set_sealer(Sealer::new(&[key], [4; 16]).unwrap());
    let mut src = MapSource::default();
    let c = ct(7);
    src.cts.insert(wire::ct_key_of(&c), c.clone());
    peer.local_change(Key::Ct(wire::ct_key_of(&c)), true);
    let mut buf = [0u8; 1472];
    let n = peer.poll_transmit(t, &src, &mut buf).unwrap();
    let mut e = Engine::new(params(Mode::FtFw, 0x1ee), t);
    let r = e.recv(t, 1, &buf[..n], &MapSource::default());
    assert_eq!(r, Err(wire::Error::Version(wire::SEALED_VERSION)));
    let logged = LOGGED.lock().unwrap().clone();
    let line = logged
        .iter()
        .find(|l| l.contains("peer"))
        .expect("a warning");
    assert!(
        !line.contains("wire version")
            && line.contains("AuthenticationKeyFile"),
        "the line names the missing key, not a version: {line}"
    );
}

/// `msgs` from `session`, numbered from `first`, then a byte no message
/// kind of this build starts with (a newer build's appended kind).
fn with_unknown_tail(session: u32, first: u32, msgs: &[Msg]) -> Vec<u8> {
    let mut d = super::test::datagram_from(session, first, msgs);
    d.push(0x7f);
    let body = (d.len() - wire::HEADER_LEN) as u16;
    wire::Packet::new_unchecked(&mut d[..]).set_body_len(body);
    d
}

#[test]
fn a_new_session_is_challenged_and_held_whatever_its_datagram_ends_with() {
    // A newer peer's first datagram ends in a message kind this build
    // does not know: what comes before it counts all the same, and the
    // session must be asked to prove itself.
    let t = Instant::from_millis(0);
    let src = MapSource::default();
    let mut e = Engine::new(params(Mode::FtFw, 0x1ee), t);
    let c = ct(3);
    let first = with_unknown_tail(77, 40, &[Msg::CtNew(wire::to_wire_ct(&c))]);
    assert_eq!(e.recv(t, 1, &first, &src), Err(wire::Error::Malformed));
    assert_eq!(e.stats().challenges_sent, 1, "challenged");
    let nonce = challenge_sent(&mut e, t, &src);
    let answer = Msg::Response {
        echo: nonce,
        from: Seq(40),
        next: Seq(41),
    };
    let d = super::test::datagram_from(77, 41, &[answer]);
    e.recv(t, 1, &d, &src).unwrap();
    let got = e.pop_apply();
    assert!(
        matches!(&got, Some(Apply::Ct { ct, new: true }) if ct.orig == c.orig),
        "the held entry is applied once proven: {got:?}"
    );
    let s = e.stats();
    assert_eq!((s.malformed, s.datagrams_recv, s.lost), (1, 2, 0));
}

#[test]
fn anti_entropy_messages_beyond_the_waiting_queue_are_counted() {
    // A link with a large MTU (a veth's 65535, loopback) carries more
    // digest messages in one datagram than wait for the node (1024).
    let t = Instant::from_millis(0);
    let mut e = Engine::new(params(Mode::FtFw, 0x1ee), t);
    e.trust(1, 77);
    let mut buf = vec![0u8; 65_507];
    let header = wire::Header {
        flags: 0,
        session: 77,
        first_seq: Seq(5),
    };
    let mut w = wire::Writer::new(&mut buf, header).unwrap();
    let top = Msg::DigestTop {
        table: wire::Table::Ct,
        sums: wire::Sums([0; wire::FANOUT]),
    };
    for _ in 0..1100 {
        w.push(&top).unwrap();
    }
    let n = w.finish();
    e.recv(t, 1, &buf[..n], &MapSource::default()).unwrap();
    let mut waiting = 0;
    while e.pop_digest().is_some() {
        waiting += 1;
    }
    assert_eq!(waiting, 1024);
    assert_eq!(e.stats().background_dropped, 1100 - 1024, "counted");
}

#[test]
fn held_datagrams_given_up_before_the_proof_count_as_lost() {
    // A new NOTRACK peer's first burst outruns the challenge: 20
    // datagrams, of which 16 are held. The first four are gone (NOTRACK
    // resends nothing): that is loss, and -s must show it.
    let t = Instant::from_millis(0);
    let src = MapSource::default();
    let mut e = Engine::new(params(Mode::NoTrack, 0x1ee), t);
    for i in 0..20u16 {
        let m = Msg::CtNew(wire::to_wire_ct(&ct(100 + i)));
        let d = super::test::datagram_from(77, 10 + u32::from(i), &[m]);
        e.recv(t, 1, &d, &src).unwrap();
    }
    let nonce = challenge_sent(&mut e, t, &src);
    let answer = Msg::Response {
        echo: nonce,
        from: Seq(30),
        next: Seq(30),
    };
    let d = super::test::datagram_from(77, 30, &[answer]);
    e.recv(t, 1, &d, &src).unwrap();
    let mut applied = 0;
    while e.pop_apply().is_some() {
        applied += 1;
    }
    assert_eq!(applied, 16);
    assert_eq!(e.stats().lost, 4, "the four given up are lost");
}
