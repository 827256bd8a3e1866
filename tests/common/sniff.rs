//! Reading the sync link as an attacker on it would: IPv4 packets from a
//! namespace's interfaces through an `AF_PACKET` socket, and sending
//! datagrams that claim to come from the primary.

#![allow(dead_code)]
// Deadlines here are wall-clock bounds on real sockets, not logic.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use ctsyncd::wire::{Header, Msg, Seq, Writer};
use socket2::{Domain, Protocol, Socket, Type};

use super::Netns;

/// ETH_P_IP: IPv4 packets, without the link-layer header (SOCK_DGRAM).
const ETH_P_IP: u16 = 0x0800;

/// The first UDP payload from `src` to port `dport` seen in `ns` within
/// `limit` for which `want` is true.
pub fn capture(
    ns: &Netns,
    src: Ipv4Addr,
    dport: u16,
    limit: Duration,
    mut want: impl FnMut(&[u8]) -> bool + Send,
) -> Option<Vec<u8>> {
    capture_udp(ns, src, dport, limit, |_, payload| want(payload))
        .map(|(_, payload)| payload)
}

/// As [`capture`], with the UDP header's checksum field (0: sent without
/// one) beside the payload.
pub fn capture_udp(
    ns: &Netns,
    src: Ipv4Addr,
    dport: u16,
    limit: Duration,
    mut want: impl FnMut(u16, &[u8]) -> bool + Send,
) -> Option<(u16, Vec<u8>)> {
    ns.enter(|| {
        let proto = Protocol::from(i32::from(ETH_P_IP.to_be()));
        let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // A packet socket reads like a file: one packet per read.
        let mut f = std::fs::File::from(std::os::fd::OwnedFd::from(s));
        let mut pkt = vec![0u8; 65536];
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            let Ok(n) = std::io::Read::read(&mut f, &mut pkt) else {
                continue;
            };
            if let Some((sum, payload)) = udp_payload(&pkt[..n], src, dport)
                && want(sum, payload)
            {
                return Some((sum, payload.to_vec()));
            }
        }
        None
    })
}

/// The UDP checksum field and payload of an IPv4 packet from `src` to
/// port `dport`.
fn udp_payload(p: &[u8], src: Ipv4Addr, dport: u16) -> Option<(u16, &[u8])> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    if p.first()? >> 4 != 4 || p.get(9)? != &17 || p.len() < ihl + 8 {
        return None;
    }
    let from = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let port = u16::from_be_bytes([p[ihl + 2], p[ihl + 3]]);
    let sum = u16::from_be_bytes([p[ihl + 6], p[ihl + 7]]);
    (from == src && port == dport).then(|| (sum, &p[ihl + 8..]))
}

/// Sends `datagram` from `src` (any port) to `dst`, inside `ns`.
pub fn forge(ns: &Netns, src: Ipv4Addr, dst: SocketAddrV4, datagram: &[u8]) {
    ns.enter(|| {
        let s = UdpSocket::bind(SocketAddrV4::new(src, 0)).unwrap();
        // A lossy link may drop it at once (EPERM from the output chain).
        let _ = s.send_to(datagram, dst);
    });
}

/// A plain datagram of `session` whose first data message is numbered
/// `first`: what an attacker who read the link can write.
pub fn datagram(session: u32, first: Seq, msgs: &[Msg]) -> Vec<u8> {
    let mut buf = [0u8; 1472];
    let header = Header {
        flags: 0,
        session,
        first_seq: first,
    };
    let mut w = Writer::new(&mut buf, header).unwrap();
    for m in msgs {
        w.push(m).unwrap();
    }
    let n = w.finish();
    buf[..n].to_vec()
}
