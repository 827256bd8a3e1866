//! The connections the simulated traffic creates: SNATed TCP and UDP
//! flows, an FTP control connection with its helper, its PASV
//! expectation, and the RELATED data connection that consumes it.

use std::net::{IpAddr, Ipv4Addr};

use ctsyncd::model::{Conntrack, Expect, L4, ProtoInfo, Tuple, status};

/// The clients' side and the servers' side of the firewall, and the
/// firewall's outside address (the SNAT source).
const INSIDE: u32 = 0xc0a8_0000; // 192.168.0.0/16
const SERVER: &str = "203.0.113.10";
const OUTSIDE: &str = "198.51.100.1";

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

pub fn tuple(proto: u8, src: IpAddr, sp: u16, dst: IpAddr, dp: u16) -> Tuple {
    Tuple {
        src,
        dst,
        proto,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

/// Flow number `n`: a client behind the firewall to a server, TCP for
/// even numbers and UDP for odd ones, source-NATed to the outside address.
pub fn flow(n: u32) -> Conntrack {
    let client = v4(INSIDE + 2 + (n >> 14));
    let sport = 10_000 + (n & 0x3fff) as u16;
    let proto = if n % 2 == 0 { 6 } else { 17 };
    let server: IpAddr = SERVER.parse().unwrap();
    let orig = tuple(proto, client, sport, server, 443);
    let mut c = Conntrack::new(orig);
    c.reply = Some(tuple(proto, server, 443, OUTSIDE.parse().unwrap(), sport));
    c.status = status::CONFIRMED | status::SRC_NAT | status::SRC_NAT_DONE;
    c.timeout = Some(if proto == 6 { 120 } else { 30 });
    if proto == 6 {
        c.proto_info = ProtoInfo::Tcp {
            state: 1, // SYN_SENT
            wscale_orig: 7,
            wscale_reply: 0,
            flags_orig: 0,
            flags_reply: 0,
        };
    }
    c
}

/// The flow after its reply was seen: ESTABLISHED and ASSURED.
pub fn established(mut c: Conntrack) -> Conntrack {
    c.status |= status::SEEN_REPLY | status::ASSURED;
    c.timeout = Some(if c.orig.proto == 6 { 432_000 } else { 180 });
    if let ProtoInfo::Tcp {
        state,
        wscale_reply,
        ..
    } = &mut c.proto_info
    {
        *state = 3;
        *wscale_reply = 7;
    }
    c
}

/// FTP control connection number `n` (helper `ftp`).
pub fn ftp_master(n: u16) -> Conntrack {
    let client = v4(INSIDE + 0x100 + u32::from(n));
    let server: IpAddr = SERVER.parse().unwrap();
    let sport = 40_000 + n % 20_000;
    let mut c =
        established(Conntrack::new(tuple(6, client, sport, server, 21)));
    c.reply = Some(tuple(6, server, 21, OUTSIDE.parse().unwrap(), sport));
    c.status |= status::SRC_NAT | status::SRC_NAT_DONE;
    c.helper = Some("ftp".try_into().unwrap());
    c
}

/// The expectation the server's `227 Entering Passive Mode` creates: the
/// client to the server's data port, any source port.
pub fn pasv(master: &Conntrack, port: u16) -> Expect {
    let mut x = Expect::new(
        master.orig,
        tuple(6, master.orig.src, 0, master.orig.dst, port),
        tuple(
            6,
            "255.255.255.255".parse().unwrap(),
            0,
            "255.255.255.255".parse().unwrap(),
            0xffff,
        ),
    );
    x.timeout = Some(300);
    x.helper = Some("ftp".try_into().unwrap());
    x
}

/// The data connection that consumes `x`: RELATED to its master.
pub fn ftp_data(x: &Expect, sport: u16) -> Conntrack {
    let L4::Ports { dst, .. } = x.tuple.l4 else {
        unreachable!("ftp expectations have ports")
    };
    let orig = tuple(6, x.tuple.src, sport, x.tuple.dst, dst);
    let mut c = established(Conntrack::new(orig));
    c.reply = Some(tuple(6, x.tuple.dst, dst, OUTSIDE.parse().unwrap(), sport));
    c.status |= status::EXPECTED | status::SRC_NAT | status::SRC_NAT_DONE;
    c.master = Some(x.master);
    c
}
