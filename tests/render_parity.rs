//! The `-e` / `-e expect` lines (plain and `-x` XML) of ctsyncd are
//! conntrackd 1.4.7's, byte for byte: entries of every kind (GRE keys,
//! SCTP/DCCP states, ICMP, IPv4-compatible IPv6, zones, marks, helpers,
//! expectation flags and classes, a PPTP-like GRE expectation) are sent
//! in conntrackd's protocol to a conntrackd running NOTRACK in a network
//! namespace; its external cache's dump is compared line by line with
//! what ctsyncd's renderer writes for the same messages as ctsyncd
//! decodes them (the ages masked). Root only; skipped without conntrackd.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use ctsyncd::model::{
    Conntrack, Expect, ExpectNat, L4, ProtoInfo, Tuple, status,
};
use ctsyncd::node::render::{ct_line, ct_xml, exp_line, exp_xml};
use ctsyncd::wire::ctd::{self, Body, Options};

const CONNTRACKD: &str = "/usr/sbin/conntrackd";
const PORT: u16 = 3781;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tuple(proto: u8, src: &str, dst: &str, l4: L4) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        proto,
        l4,
    }
}

fn ports(src: u16, dst: u16) -> L4 {
    L4::Ports { src, dst }
}

fn ct(orig: Tuple, proto_info: ProtoInfo) -> Conntrack {
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(orig.inverse());
    ct.status = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;
    ct.timeout = Some(600);
    ct.proto_info = proto_info;
    ct
}

fn tcp_state(state: u8) -> ProtoInfo {
    ProtoInfo::Tcp {
        state,
        wscale_orig: 0,
        wscale_reply: 0,
        flags_orig: 0,
        flags_reply: 0,
    }
}

/// The conntracks sent: one per kind a line can show.
fn conntracks() -> Vec<Conntrack> {
    let mut v = Vec::new();
    let mut sport = 41000;
    let mut next = |proto| {
        sport += 1;
        tuple(proto, "10.72.1.2", "10.72.2.2", ports(sport, 80))
    };
    v.push(ct(next(6), tcp_state(3)));
    v.push(ct(next(6), tcp_state(9)));
    v.push(ct(next(6), tcp_state(12)));
    for state in [4, 7, 8, 9, 12] {
        let sctp = ProtoInfo::Sctp {
            state,
            vtag_orig: 1,
            vtag_reply: 2,
        };
        v.push(ct(next(132), sctp));
    }
    for state in [4, 12] {
        let dccp = ProtoInfo::Dccp {
            state,
            role: 1,
            handshake_seq: 0,
        };
        v.push(ct(next(33), dccp));
    }
    let mut zoned = ct(next(17), ProtoInfo::None);
    zoned.zone = 7;
    zoned.mark = 9;
    zoned.helper = Some("tftp".try_into().unwrap());
    v.push(zoned);
    v.push(ct(next(136), ProtoInfo::None));
    v.push(ct(
        tuple(47, "10.72.1.2", "10.72.2.2", ports(0x1234, 0x5678)),
        ProtoInfo::None,
    ));
    let icmp = L4::Icmp {
        kind: 8,
        code: 0,
        id: 77,
    };
    v.push(ct(
        tuple(1, "10.72.1.2", "10.72.2.2", icmp),
        ProtoInfo::None,
    ));
    let icmp6 = L4::Icmp {
        kind: 128,
        code: 0,
        id: 78,
    };
    v.push(ct(tuple(58, "fd72::1", "fd72::2", icmp6), ProtoInfo::None));
    v.push(ct(
        tuple(6, "::1.2.3.4", "fd72::2", ports(41100, 22)),
        tcp_state(3),
    ));
    v
}

fn ftp_like(master: Tuple, tuple: Tuple) -> Expect {
    let ones = if master.src.is_ipv6() {
        ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
    } else {
        ip("255.255.255.255")
    };
    let mask = Tuple {
        src: ones,
        dst: ones,
        proto: tuple.proto,
        l4: ports(0, 0xffff),
    };
    let mut x = Expect::new(master, tuple, mask);
    x.timeout = Some(300);
    x.helper = Some("ftp".try_into().unwrap());
    x
}

/// The expectations sent, and their masters (conntrackd keeps an
/// expectation only beside it).
fn expectations() -> (Vec<Conntrack>, Vec<Expect>) {
    let (mut masters, mut v) = (Vec::new(), Vec::new());
    for (i, (flags, class, zone)) in
        [(0, 0, 0), (3, 0, 0), (4, 1, 0), (7, 2, 5), (2, 0, 0)]
            .into_iter()
            .enumerate()
    {
        let master =
            tuple(6, "10.72.1.2", "10.72.2.2", ports(42000 + i as u16, 21));
        let mut m = ct(master, tcp_state(3));
        m.zone = zone;
        m.helper = Some("ftp".try_into().unwrap());
        m.status |= status::HELPER;
        masters.push(m);
        let mut x = ftp_like(
            master,
            Tuple {
                l4: ports(0, 50000 + i as u16),
                ..master
            },
        );
        x.flags = flags;
        x.class = class;
        x.zone = zone;
        v.push(x);
    }
    // PPTP: a GRE expectation of a TCP master.
    let master = tuple(6, "10.72.1.2", "10.72.2.2", ports(42100, 1723));
    let mut m = ct(master, tcp_state(3));
    m.helper = Some("pptp".try_into().unwrap());
    masters.push(m);
    let mut x = ftp_like(
        master,
        tuple(47, "10.72.2.2", "10.72.1.2", ports(0x0010, 0x0020)),
    );
    x.helper = Some("pptp".try_into().unwrap());
    v.push(x);
    // SIP with NAT: the expectation's NAT part and its function.
    let master = tuple(17, "10.72.1.2", "10.72.2.2", ports(5060, 5060));
    let mut m = ct(master, ProtoInfo::None);
    m.helper = Some("sip".try_into().unwrap());
    masters.push(m);
    let mut x =
        ftp_like(master, tuple(17, "10.72.2.2", "10.72.1.2", ports(0, 16000)));
    x.helper = Some("sip".try_into().unwrap());
    x.nat = Some(ExpectNat {
        dir: 1,
        tuple: tuple(17, "10.72.1.9", "10.72.1.2", ports(0, 16002)),
    });
    x.func = Some("nat-follow-master".try_into().unwrap());
    v.push(x);
    let master6 = tuple(6, "fd72::1", "fd72::2", ports(42200, 21));
    let mut m = ct(master6, tcp_state(3));
    m.helper = Some("ftp".try_into().unwrap());
    masters.push(m);
    v.push(ftp_like(
        master6,
        Tuple {
            l4: ports(0, 50100),
            ..master6
        },
    ));
    (masters, v)
}

/// The bodies as ctsyncd decodes them from the same datagrams.
fn decoded(grams: &[Vec<u8>]) -> Vec<Body> {
    grams
        .iter()
        .flat_map(|g| ctd::messages(g, Options::default()))
        .map(|m| m.expect("decodes").body)
        .collect()
}

/// Lines without their `[active since Ns]`, sorted.
fn lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(|l| match l.find(" [active since ") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect();
    v.sort();
    v
}

fn compare(what: &str, theirs: &str, mut ours: Vec<String>) -> Vec<String> {
    ours.sort();
    let theirs = lines(theirs);
    let mut bad = Vec::new();
    for l in &theirs {
        if !ours.contains(l) {
            bad.push(format!("{what}: conntrackd {l}"));
        }
    }
    for l in &ours {
        if !theirs.contains(l) {
            bad.push(format!("{what}: ctsyncd    {l}"));
        }
    }
    bad
}

#[test]
fn external_dumps_read_as_conntrackds() {
    if !std::path::Path::new(CONNTRACKD).exists() {
        eprintln!("SKIPPED: {CONNTRACKD} is not installed");
        return;
    }
    let Some((a, b)) = common::pair("rpar") else {
        return;
    };
    let dir = format!("/tmp/ctsyncd-rpar-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf_path = format!("{dir}/conntrackd.conf");
    std::fs::write(
        &conf_path,
        format!(
            "General {{\n HashSize 16384\n HashLimit 65536\n LogFile {dir}/log\n Syslog off\n Systemd off\n LockFile {dir}/lock\n UNIX {{ Path {dir}/ctl }}\n}}\nSync {{\n Mode NOTRACK {{ }}\n UDP {{\n  IPv4_address 10.9.0.2\n  IPv4_Destination_Address 10.9.0.1\n  Port {PORT}\n  Interface s0\n  Checksum on\n }}\n Options {{ ExpectationSync On }}\n}}\n"
        ),
    )
    .unwrap();
    let _daemon = b.spawn(&[CONNTRACKD, "-C", &conf_path]);
    let ctl = |args: &str| b.sh(&format!("{CONNTRACKD} -C {conf_path} {args}"));
    let t0 = Instant::now();
    while !std::path::Path::new(&format!("{dir}/ctl")).exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "conntrackd not up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (masters, exps) = expectations();
    let mut bodies: Vec<Body> =
        conntracks().into_iter().map(Body::CtNew).collect();
    bodies.extend(masters.into_iter().map(Body::CtNew));
    bodies.extend(exps.into_iter().map(Body::ExpNew));
    let grams = common::ctd::datagrams(bodies, 0x6000_0000);
    a.enter(|| {
        let sock = UdpSocket::bind(("10.9.0.1", PORT)).unwrap();
        for g in &grams {
            sock.send_to(g, ("10.9.0.2", PORT)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (mut cts, mut xs) = (Vec::new(), Vec::new());
    for body in decoded(&grams) {
        match body {
            Body::CtNew(c) => cts.push(c),
            Body::ExpNew(x) => xs.push(x),
            _ => {}
        }
    }
    // Until conntrackd holds them all (a busy machine may be slow), at
    // most 10 s: the comparison below says what is missing.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10)
        && (lines(&ctl("-e")).len() < cts.len()
            || lines(&ctl("-e expect")).len() < xs.len())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut bad = Vec::new();
    bad.extend(compare(
        "-e",
        &ctl("-e"),
        cts.iter().map(|c| ct_line(c, true)).collect(),
    ));
    bad.extend(compare(
        "-e -x",
        &ctl("-e -x"),
        cts.iter().map(|c| ct_xml(c, true)).collect(),
    ));
    bad.extend(compare(
        "-e expect",
        &ctl("-e expect"),
        xs.iter().map(exp_line).collect(),
    ));
    bad.extend(compare(
        "-e expect -x",
        &ctl("-e expect -x"),
        xs.iter().map(exp_xml).collect(),
    ));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        bad.is_empty(),
        "{} differences:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
