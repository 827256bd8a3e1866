//! A conntrackd message whose header is sound but whose payload we refuse
//! (conntrackd 1.4.2 sends IPv4 NAT attributes with IPv6 flows): its
//! number is tracked as conntrackd tracks it, before the payload, so it
//! is not NACKed and resent forever. A control message we refuse counts
//! as malformed, as every refused message does.

use super::*;
use crate::sync::MapSource;
use crate::wire::ctd::{self, Body};

fn params() -> Params {
    Params {
        mode: Mode::FtFw,
        first_seq: 1000,
        max_datagram: 1472,
        resend_queue_size: 1000,
        ack_window: 20,
        tx_queue_size: 1000,
        refresh_time: Duration::from_secs(5),
        opts: Options::default(),
    }
}

fn hdr(kind: u8, flags: u8, len: usize, seq: u32) -> Vec<u8> {
    let mut v = vec![0x10 | kind, flags];
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

fn attr(v: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    v.extend_from_slice(&((4 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&kind.to_be_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
}

fn alive(seq: u32, flags: u8) -> Vec<u8> {
    hdr(10, 0x10 | flags, 8, seq)
}

/// A CT_UPD of a UDP flow; `v6_snat_as_v4`: an IPv6 flow with
/// NTA_SNAT_IPV4, as conntrackd 1.4.2 sends NATed IPv6 flows (ref §4.4.2).
fn ct_upd(seq: u32, port: u16, v6_snat_as_v4: bool) -> Vec<u8> {
    let mut p = Vec::new();
    if v6_snat_as_v4 {
        let mut a = [0u8; 32];
        a[0] = 0x20;
        a[1] = 0x01;
        a[15] = 1;
        a[16] = 0x20;
        a[17] = 0x01;
        a[31] = 2;
        attr(&mut p, 1, &a);
    } else {
        attr(&mut p, 0, &[10, 0, 0, 1, 10, 0, 0, 2]);
    }
    attr(&mut p, 5, &0x0eu32.to_be_bytes());
    attr(&mut p, 2, &[17]);
    let mut ports = port.to_be_bytes().to_vec();
    ports.extend_from_slice(&53u16.to_be_bytes());
    attr(&mut p, 3, &ports);
    attr(&mut p, 6, &30u32.to_be_bytes());
    if v6_snat_as_v4 {
        attr(&mut p, 12, &[0x20, 0x01, 0x0d, 0xb8]);
    }
    let mut m = hdr(1, 0, 8 + p.len(), seq);
    m.extend_from_slice(&p);
    m
}

fn sent(e: &mut CtdEngine, now: Instant, src: &MapSource) -> Vec<Body> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1472];
    while let Some(n) = e.poll_transmit(now, src, &mut buf) {
        for m in ctd::messages(&buf[..n], Options::default()) {
            out.push(m.unwrap().body);
        }
    }
    out
}

#[test]
fn a_payload_we_refuse_still_counts_its_number_and_is_not_nacked() {
    let src = MapSource::default();
    let mut t = Instant::from_millis(0);
    let mut e = CtdEngine::new(params(), t);
    e.recv(t, &alive(500, 0x20), &src); // peer HELLO|ALIVE
    let mut seq = 501;
    let mut total_nacks = 0;
    for _ in 0..5 {
        // conntrackd sends (and, on NACK, re-sends with a new number) the
        // same flow; then its 1-s ACK/ALIVE.
        let (_, r) = e.recv(t, &ct_upd(seq, 1234, true), &src);
        assert_eq!(r.malformed, 1);
        e.recv(t, &alive(seq + 1, 0), &src);
        let out = sent(&mut e, t, &src);
        let nacks: Vec<_> = out
            .iter()
            .filter(|b| matches!(b, Body::Nack { .. }))
            .collect();
        total_nacks += nacks.len();
        seq += 2;
        t = t + Duration::from_secs(1);
    }
    assert_eq!(
        total_nacks, 0,
        "a number we refused the payload of was NACKed"
    );
    // Refused, not applied, and counted.
    assert!(e.pop_apply().is_none());
    assert_eq!(e.stats().malformed, 5);
}

/// An ACK or NACK (`nethdr_ack`: header, then from, to).
fn ctl(seq: u32, flags: u8, from: u32, to: u32) -> Vec<u8> {
    let mut m = hdr(10, flags, 16, seq);
    m.extend_from_slice(&from.to_be_bytes());
    m.extend_from_slice(&to.to_be_bytes());
    m
}

#[test]
fn a_refused_control_message_counts_as_malformed_as_well() {
    // `-s network` prints the malformed payloads as what is left of the
    // malformed messages once the bad versions and headers are taken
    // away: each of those must count as malformed as well.
    let src = MapSource::default();
    let t = Instant::from_millis(0);
    let mut ftfw = CtdEngine::new(params(), t);
    ftfw.recv(t, &alive(500, 0x20), &src);
    ftfw.recv(t, &ctl(501, 0x08, 900, 800), &src); // ACK 900..800
    let mut notrack = CtdEngine::new(
        Params {
            mode: Mode::NoTrack,
            ..params()
        },
        t,
    );
    notrack.recv(t, &ctl(7, 0x20 | 0x04, 1, 2), &src); // NACK in NOTRACK
    for e in [&ftfw, &notrack] {
        let s = e.stats();
        assert_eq!(s.bad_header, 1);
        assert!(
            s.malformed >= s.bad_header + s.bad_version,
            "malformed {} < bad header {} + bad version {}",
            s.malformed,
            s.bad_header,
            s.bad_version
        );
    }
}

#[test]
fn a_broken_frame_after_a_refused_payload_tracks_no_number_twice() {
    // A HELLO data message whose payload we refuse, then a frame cut
    // short: the refused message's number is tracked once. Read again
    // for the broken frame, it was a HELLO numbered "before", taken as
    // the peer's restart (the whole cache queued).
    let src = MapSource::default();
    let t = Instant::from_millis(0);
    let mut e = CtdEngine::new(params(), t);
    e.recv(t, &alive(500, 0x20), &src);
    e.recv(t, &alive(501, 0x20), &src);
    let mut d = hdr(1, 0x20, 16, 502); // CT_UPD|HELLO
    d.extend_from_slice(&[0, 8, 0, 40, 0, 0, 0, 0]); // attribute 40: refused
    d.extend_from_slice(&[0x11, 0, 0]); // a header cut short
    let (_, r) = e.recv(t, &d, &src);
    assert_eq!(r.malformed + r.truncated, 2, "{r:?}");
    let s = e.stats();
    assert_eq!((s.peer_restarts, s.before), (0, 0));
}

/// What one datagram refused is what `-s link` counts (the node adds up
/// what each `recv` returns): a control message refused after it was
/// read (an ACK ending before it starts, an ACK or NACK in NOTRACK) is
/// in it, as in the engine's own count.
#[test]
fn a_control_message_refused_after_reading_is_in_the_datagrams_count() {
    let src = MapSource::default();
    let t = Instant::from_millis(0);
    let mut ftfw = CtdEngine::new(params(), t);
    ftfw.recv(t, &alive(500, 0x20), &src);
    let (_, r) = ftfw.recv(t, &ctl(501, 0x08, 900, 800), &src);
    assert_eq!(r.bad_header, 1, "ACK 900..800 in FT-FW: {r:?}");
    assert_eq!(ftfw.refused().bad_header, 1);
    let mut notrack = CtdEngine::new(
        Params {
            mode: Mode::NoTrack,
            ..params()
        },
        t,
    );
    let (_, r) = notrack.recv(t, &ctl(7, 0x04, 1, 2), &src);
    assert_eq!(r.bad_header, 1, "NACK in NOTRACK: {r:?}");
    assert_eq!(notrack.refused().bad_header, 1);
}
