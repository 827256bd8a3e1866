//! The protocol switch: auto-detection of a conntrackd peer, the way back
//! to ctsyncd's format, and the settings and keys that forbid switching.

use super::ctd::{self as engine, CtdEngine};
use super::*;
use crate::config::PeerProtocol;
use crate::model::{Conntrack, L4, Tuple};
use crate::wire::ctd::{self, Body};
use crate::wire::seal::{self, Sealer};

fn params(session: u32) -> Params {
    Params {
        mode: Mode::FtFw,
        session,
        max_datagram: 1472,
        resend_queue_size: 10_000,
        ack_window: 20,
        tx_queue_size: 10_000,
        refresh_time: Duration::from_secs(5),
        seed: u64::from(session),
    }
}

fn conntrackd(t: Instant) -> CtdEngine {
    CtdEngine::new(
        engine::Params {
            mode: Mode::FtFw,
            first_seq: 1_700_000_000,
            max_datagram: 1472,
            resend_queue_size: 10_000,
            ack_window: 20,
            tx_queue_size: 10_000,
            refresh_time: Duration::from_secs(5),
            opts: ctd::Options::default(),
        },
        t,
    )
}

fn switch(setting: PeerProtocol, t: Instant) -> Switch {
    Switch::new(params(100), ctd::Options::default(), setting, false, t)
}

fn ct(n: u16) -> Conntrack {
    let mut c = Conntrack::new(Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: 17,
        l4: L4::Ports { src: n, dst: 53 },
    });
    c.timeout = Some(30);
    c.reply = Some(c.orig.inverse());
    c
}

fn cache(from: u16, n: u16) -> MapSource {
    let mut m = MapSource::default();
    for i in from..from + n {
        m.cts.insert(wire::ct_key_of(&ct(i)), ct(i));
    }
    m
}

/// A conntrackd peer's first words (HELLO|ALIVE after a quiet second).
fn ctd_hello(c: &mut CtdEngine, src: &MapSource, t: Instant) -> Vec<u8> {
    c.handle_timeout(t, src);
    let mut buf = [0u8; 1472];
    let n = c.poll_transmit(t, src, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// Everything `s` sends now, read by the conntrackd peer.
fn to_ctd(
    s: &mut Switch,
    s_src: &MapSource,
    c: &mut CtdEngine,
    c_src: &MapSource,
    c_ext: &mut MapSource,
    t: Instant,
) -> usize {
    let mut buf = [0u8; 1472];
    let mut n = 0;
    while let Some(len) = s.poll_transmit(t, s_src, &mut buf) {
        assert!(ctd::is_conntrackd(&buf[..len]), "our format leaked");
        c.recv(t, &buf[..len], c_src);
        while let Some(a) = c.pop_apply() {
            c_ext.apply(a);
        }
        n += 1;
    }
    n
}

/// Everything the conntrackd peer sends now, read by `s`.
fn from_ctd(
    c: &mut CtdEngine,
    c_src: &MapSource,
    s: &mut Switch,
    s_src: &MapSource,
    s_ext: &mut MapSource,
    t: Instant,
) -> Vec<Received> {
    let mut buf = [0u8; 1472];
    let mut v = Vec::new();
    while let Some(len) = c.poll_transmit(t, c_src, &mut buf) {
        v.push(s.recv(t, 1, &buf[..len], s_src));
        while let Some(a) = s.pop_apply() {
            s_ext.apply(a);
        }
    }
    v
}

#[test]
fn a_conntrackd_datagram_switches_once_and_the_migration_loses_nothing() {
    let mut t = Instant::from_millis(0);
    let mut s = switch(PeerProtocol::Auto, t);
    let (ours, theirs) = (cache(0, 50), cache(1000, 30));
    let (mut s_ext, mut c_ext) = (MapSource::default(), MapSource::default());
    let mut c = conntrackd(t);
    // Before the peer spoke: our format, our queue.
    s.local_change(Key::Ct(wire::ct_key_of(&ct(7))), true);
    assert_eq!(s.protocol(), Protocol::Ctsyncd);
    // Its datagrams are counted for two seconds, then switch.
    for at in [1000, 2000] {
        t = Instant::from_millis(at);
        let hello = ctd_hello(&mut c, &theirs, t);
        let got = s.recv(t, 1, &hello, &ours);
        assert_eq!((got.switched, got.refused.before_switch), (None, 1));
    }
    t = Instant::from_millis(3000);
    let hello = ctd_hello(&mut c, &theirs, t);
    let got = s.recv(t, 1, &hello, &ours);
    assert_eq!(got.switched, Some(Protocol::Conntrackd));
    assert_eq!(got.protocol, Some(Protocol::Conntrackd));
    assert_eq!(got.result, Ok(()));
    assert_eq!(s.protocol(), Protocol::Conntrackd);
    // The pending key and the bulk carried over.
    assert_eq!(s.queue_lengths().0, 50);
    let mut switches = 0;
    for step in 1..=60 {
        t = Instant::from_millis(3000 + step * 100);
        s.handle_timeout(t, &ours);
        c.handle_timeout(t, &theirs);
        to_ctd(&mut s, &ours, &mut c, &theirs, &mut c_ext, t);
        for r in from_ctd(&mut c, &theirs, &mut s, &ours, &mut s_ext, t) {
            assert_eq!(r.result, Ok(()));
            switches += usize::from(r.switched.is_some());
        }
    }
    assert_eq!(switches, 0, "one switch only");
    assert_eq!(c_ext, ours, "the peer learnt our cache");
    assert_eq!(s_ext, theirs, "we asked for the peer's (RESYNC)");
    assert_eq!(c.stats().resyncs_requested_by_peer, 1);
}

#[test]
fn a_ctsyncd_peer_that_proves_itself_switches_back() {
    let mut t = Instant::from_millis(0);
    let mut s = switch(PeerProtocol::Auto, t);
    let ours = cache(0, 20);
    let mut c = conntrackd(t);
    for at in [1000, 2000, 3000] {
        t = Instant::from_millis(at);
        let hello = ctd_hello(&mut c, &MapSource::default(), t);
        s.recv(t, 1, &hello, &ours);
    }
    assert_eq!(s.protocol(), Protocol::Conntrackd);
    // The peer is replaced by ctsyncd: a new engine, our format.
    let mut peer = Engine::new(params(555), t);
    let (mut peer_ext, peer_src) = (MapSource::default(), MapSource::default());
    let mut back = Vec::new();
    let mut buf = [0u8; 1472];
    for step in 1..=50 {
        t = Instant::from_millis(3000 + step * 100);
        s.handle_timeout(t, &ours);
        peer.handle_timeout(t, &peer_src);
        while let Some(n) = peer.poll_transmit(t, &peer_src, &mut buf) {
            let r = s.recv(t, 1, &buf[..n], &ours);
            back.extend(r.switched);
        }
        while let Some(n) = s.poll_transmit(t, &ours, &mut buf) {
            if ctd::is_conntrackd(&buf[..n]) {
                continue; // for the conntrackd that is gone
            }
            let _ = peer.recv(t, 1, &buf[..n], &peer_src);
            while let Some(a) = peer.pop_apply() {
                peer_ext.apply(a);
            }
        }
    }
    assert_eq!(back, vec![Protocol::Ctsyncd]);
    assert_eq!(s.protocol(), Protocol::Ctsyncd);
    assert_eq!(peer_ext, ours, "the new ctsyncd peer got our cache");
}

#[test]
fn with_a_key_conntrackd_is_refused_counted_and_never_switches() {
    let t = Instant::from_millis(1000);
    let mut s = switch(PeerProtocol::Auto, t);
    let key = seal::Key::from_bytes([7; 32]);
    s.set_sealer(Sealer::new(&[key], [1; 16]).unwrap());
    let mut c = conntrackd(Instant::from_millis(0));
    let hello = ctd_hello(&mut c, &MapSource::default(), t);
    let got = s.recv(t, 1, &hello, &MapSource::default());
    assert_eq!(got.result, Err(wire::Error::Unsealed));
    assert_eq!(got.switched, None);
    assert_eq!(s.protocol(), Protocol::Ctsyncd);
    assert_eq!(s.stats().unsealed, 1);
}

#[test]
fn pinned_protocols_and_undecodable_datagrams_switch_nothing() {
    let t = Instant::from_millis(1000);
    let src = MapSource::default();
    let mut c = conntrackd(Instant::from_millis(0));
    let hello = ctd_hello(&mut c, &src, t);
    // ctsyncd only: refused as before (not our magic).
    let mut s = switch(PeerProtocol::Ctsyncd, t);
    let got = s.recv(t, 1, &hello, &src);
    assert!(got.result.is_err() && got.switched.is_none());
    assert_eq!(s.protocol(), Protocol::Ctsyncd);
    // A conntrackd header whose message does not decode: counted.
    let mut s = switch(PeerProtocol::Auto, t);
    let mut bad = hello.clone();
    bad[1] = 0x00; // a control message without a control flag
    assert!(ctd::is_conntrackd(&bad));
    let got = s.recv(t, 1, &bad, &src);
    assert_eq!((got.switched, got.refused.bad_header), (None, 1));
    assert_eq!(s.ctd_refused().bad_header, 1);
    assert_eq!(s.protocol(), Protocol::Ctsyncd);
    // conntrackd pinned: spoken from the start, our format refused.
    let mut s = switch(PeerProtocol::Conntrackd, t);
    assert_eq!(s.protocol(), Protocol::Conntrackd);
    s.local_change(Key::Ct(wire::ct_key_of(&ct(1))), true);
    let mut buf = [0u8; 1472];
    let n = s.poll_transmit(t, &src, &mut buf).unwrap();
    let first = ctd::messages(&buf[..n], ctd::Options::default())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((first.hello, first.body), (true, Body::Alive));
    let mut peer = Engine::new(params(9), t);
    peer.handle_timeout(Instant::from_millis(2000), &src);
    let n = peer
        .poll_transmit(Instant::from_millis(2000), &src, &mut buf)
        .unwrap();
    let got = s.recv(Instant::from_millis(2000), 1, &buf[..n], &src);
    assert!(got.result.is_err() && got.switched.is_none());
    assert_eq!(s.protocol(), Protocol::Conntrackd);
}

#[test]
fn a_live_ctsyncd_peer_is_not_dropped_for_a_conntrackd_datagram() {
    let mut t = Instant::from_millis(0);
    let mut s = switch(PeerProtocol::Auto, t);
    let src = MapSource::default();
    let mut peer = Engine::new(params(555), t);
    let mut buf = [0u8; 1472];
    // A ctsyncd pair at work.
    for step in 1..=20 {
        t = Instant::from_millis(step * 100);
        s.handle_timeout(t, &src);
        peer.handle_timeout(t, &src);
        while let Some(n) = peer.poll_transmit(t, &src, &mut buf) {
            assert_eq!(s.recv(t, 1, &buf[..n], &src).result, Ok(()));
        }
        while let Some(n) = s.poll_transmit(t, &src, &mut buf) {
            let _ = peer.recv(t, 1, &buf[..n], &src);
        }
    }
    let mut c = conntrackd(Instant::from_millis(0));
    let hello = ctd_hello(&mut c, &src, t);
    let got = s.recv(t, 1, &hello, &src);
    assert_eq!((got.switched, got.refused.before_switch), (None, 1));
    assert_eq!(s.protocol(), Protocol::Ctsyncd);
    // The ctsyncd peer went away: conntrackd's next words switch.
    t = t + Duration::from_secs(3);
    let hello = ctd_hello(&mut c, &src, t);
    assert_eq!(
        s.recv(t, 1, &hello, &src).switched,
        Some(Protocol::Conntrackd)
    );
}

#[test]
fn on_a_stream_ctsyncd_waits_for_the_peer_to_show_its_protocol() {
    let mut t = Instant::from_millis(0);
    let src = MapSource::default();
    let mut s = Switch::new(
        params(100),
        ctd::Options::default(),
        PeerProtocol::Auto,
        true,
        t,
    );
    let mut buf = [0u8; 1472];
    s.local_change(Key::Ct(wire::ct_key_of(&ct(1))), true);
    // A conntrackd peer would lose its framing: nothing goes yet.
    for step in 1..=40 {
        t = Instant::from_millis(step * 100);
        s.handle_timeout(t, &src);
        assert!(s.poll_transmit(t, &src, &mut buf).is_none(), "at {t:?}");
    }
    assert!(!s.wants_transmit());
    // A ctsyncd peer speaks: ours may go.
    let mut peer = Engine::new(params(9), t);
    peer.handle_timeout(Instant::from_millis(5000), &src);
    let n = peer
        .poll_transmit(Instant::from_millis(5000), &src, &mut buf)
        .unwrap();
    assert_eq!(
        s.recv(Instant::from_millis(5000), 1, &buf[..n], &src)
            .result,
        Ok(())
    );
    assert!(s.wants_transmit());
    assert!(
        s.poll_transmit(Instant::from_millis(5000), &src, &mut buf)
            .is_some()
    );
    // A silent peer: after the hold, ours goes too.
    let mut s = Switch::new(
        params(100),
        ctd::Options::default(),
        PeerProtocol::Auto,
        true,
        Instant::from_millis(0),
    );
    s.local_change(Key::Ct(wire::ct_key_of(&ct(1))), true);
    s.handle_timeout(Instant::from_millis(5000), &src);
    assert!(
        s.poll_transmit(Instant::from_millis(5000), &src, &mut buf)
            .is_some()
    );
}

/// A stream switch of `session` that met a conntrackd peer (3 s of its
/// HELLOs): it speaks conntrackd's protocol.
fn stream_switch_in_ctd(session: u32, src: &MapSource) -> Switch {
    let mut s = Switch::new(
        params(session),
        ctd::Options::default(),
        PeerProtocol::Auto,
        true,
        Instant::from_millis(0),
    );
    let mut c = conntrackd(Instant::from_millis(0));
    for at in [1000, 2000, 3000] {
        let hello =
            ctd_hello(&mut c, &MapSource::default(), Instant::from_millis(at));
        s.recv(Instant::from_millis(at), 1, &hello, src);
    }
    assert_eq!(s.protocol(), Protocol::Conntrackd);
    s
}

#[test]
fn two_ctsyncd_nodes_met_in_conntrackds_protocol_on_a_stream_come_back() {
    let mut a_src = cache(0, 30);
    let b_src = cache(1000, 20);
    let mut a = stream_switch_in_ctd(100, &a_src);
    let mut b = stream_switch_in_ctd(200, &b_src);
    let (mut a_ext, mut b_ext) = (MapSource::default(), MapSource::default());
    let (mut a_notices, mut b_notices) = (Vec::new(), Vec::new());
    // What each sent before it read the peer's mark: conntrackd's only.
    let (mut a_marked, mut b_marked) = (false, false);
    let mut buf = [0u8; 1472];
    // An in-order, lossless link (TCP): everything one side sends now is
    // read by the other in order, within the same step.
    for step in 1..=100 {
        let t = Instant::from_millis(3000 + step * 100);
        if step == 20 {
            // A change while both still speak conntrackd's protocol.
            a_src.cts.insert(wire::ct_key_of(&ct(500)), ct(500));
            a.local_change(Key::Ct(wire::ct_key_of(&ct(500))), true);
        }
        a.handle_timeout(t, &a_src);
        b.handle_timeout(t, &b_src);
        while let Some(n) = a.poll_transmit(t, &a_src, &mut buf) {
            assert!(
                b_marked || ctd::is_conntrackd(&buf[..n]),
                "ours before the peer's mark"
            );
            a_marked |= ctd::carries_mark(&buf[..n]);
            let r = b.recv(t, 1, &buf[..n], &b_src);
            b_notices.extend(r.switched);
            while let Some(x) = b.pop_apply() {
                b_ext.apply(x);
            }
        }
        while let Some(n) = b.poll_transmit(t, &b_src, &mut buf) {
            assert!(
                a_marked || ctd::is_conntrackd(&buf[..n]),
                "ours before the peer's mark"
            );
            b_marked |= ctd::carries_mark(&buf[..n]);
            let r = a.recv(t, 1, &buf[..n], &a_src);
            a_notices.extend(r.switched);
            while let Some(x) = a.pop_apply() {
                a_ext.apply(x);
            }
        }
    }
    assert!(a_marked && b_marked, "both announced themselves");
    assert_eq!(a_notices, vec![Protocol::Ctsyncd], "one notice line");
    assert_eq!(b_notices, vec![Protocol::Ctsyncd], "one notice line");
    assert_eq!(
        (a.protocol(), b.protocol()),
        (Protocol::Ctsyncd, Protocol::Ctsyncd)
    );
    assert_eq!(b_ext, a_src, "b has a's cache, the late change included");
    assert_eq!(a_ext, b_src, "a has b's cache");
}

#[test]
fn a_stream_hold_ends_on_a_marked_datagram_and_it_switches_nothing() {
    let src = cache(0, 5);
    // The peer: a ctsyncd speaking conntrackd's protocol (it announces).
    let mut peer = stream_switch_in_ctd(300, &MapSource::default());
    let mut s = Switch::new(
        params(100),
        ctd::Options::default(),
        PeerProtocol::Auto,
        true,
        Instant::from_millis(0),
    );
    let mut buf = [0u8; 1472];
    let mut marked = 0;
    for step in 1..=40 {
        let t = Instant::from_millis(3000 + step * 100);
        peer.handle_timeout(t, &MapSource::default());
        while let Some(n) =
            peer.poll_transmit(t, &MapSource::default(), &mut buf)
        {
            if !ctd::is_conntrackd(&buf[..n]) {
                continue; // its ctsyncd engine: not read in this test
            }
            marked += usize::from(ctd::carries_mark(&buf[..n]));
            let r = s.recv(t, 1, &buf[..n], &src);
            assert_eq!(r.switched, None, "a marked peer comes to us");
        }
    }
    assert!(marked > 0);
    assert_eq!(s.protocol(), Protocol::Ctsyncd);
    // The hold is over: our format may go to this peer.
    s.local_change(Key::Ct(wire::ct_key_of(&ct(1))), true);
    assert!(s.wants_transmit());
    let n = s
        .poll_transmit(Instant::from_millis(8000), &src, &mut buf)
        .unwrap();
    assert!(!ctd::is_conntrackd(&buf[..n]));
}
