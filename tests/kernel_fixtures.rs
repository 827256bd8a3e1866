//! Decoding of real kernel messages, recorded from this kernel by
//! `record_kernel_fixtures` in tests/kernel.rs (conntrack(8) commands and a
//! real FTP PASV exchange in a network namespace). Unprivileged.
//!
//! Netlink and attribute headers are in the recording host's byte order
//! (attribute payloads are big-endian whatever the host). The fixtures'
//! order is recorded in tests/fixtures/kernel/BYTE_ORDER, and `one` swaps
//! the headers when it differs from this host's, so the tests also run on
//! big-endian MIPS.

use std::net::IpAddr;

use ctsyncd::kernel::codec::{self, Kind, Message, Object, Received};
use ctsyncd::model::{L4, ProtoInfo, Tuple, status};

fn one(name: &str) -> Message {
    let path = format!(
        "{}/tests/fixtures/kernel/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut bytes = std::fs::read(path).unwrap();
    let recorded = recorded_order();
    if recorded != host_order() {
        swap_headers(&mut bytes, &recorded);
    }
    let mut all: Vec<_> = codec::messages(&bytes).collect();
    assert_eq!(all.len(), 1, "{name}: {all:?}");
    match all.remove(0) {
        Ok(Received::Msg(m)) => m,
        other => panic!("{name}: {other:?}"),
    }
}

fn host_order() -> &'static str {
    if cfg!(target_endian = "big") {
        "big"
    } else {
        "little"
    }
}

fn recorded_order() -> String {
    let path = format!(
        "{}/tests/fixtures/kernel/BYTE_ORDER",
        env!("CARGO_MANIFEST_DIR")
    );
    let order = std::fs::read_to_string(path).unwrap().trim().to_string();
    assert!(order == "little" || order == "big", "BYTE_ORDER: {order}");
    order
}

/// `NLA_F_NESTED`: the kernel marks every nest it writes with it.
const NLA_F_NESTED: u16 = 0x8000;
/// `nlmsghdr` plus `nfgenmsg`.
const HEADERS: usize = 16 + 4;

fn u16_in(order: &str, b: &[u8]) -> u16 {
    let b = [b[0], b[1]];
    if order == "big" {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

/// Reverses the byte order of every netlink header in `buf`, which is in
/// `from` order ("little" or "big"): the `nlmsghdr` fields and each
/// attribute's length and type, nests included. `nfgenmsg` and attribute
/// payloads are bytes or big-endian and stay as they are.
fn swap_headers(buf: &mut [u8], from: &str) {
    let mut at = 0;
    while at + HEADERS <= buf.len() {
        let b: [u8; 4] = buf[at..at + 4].try_into().unwrap();
        let len = if from == "big" {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        } as usize;
        assert!(len >= HEADERS && at + len <= buf.len(), "bad nlmsghdr");
        for (off, width) in [(0, 4), (4, 2), (6, 2), (8, 4), (12, 4)] {
            buf[at + off..at + off + width].reverse();
        }
        swap_attrs(&mut buf[at + HEADERS..at + len], from);
        at += len.next_multiple_of(4);
    }
}

/// Swaps the attribute headers in `buf` (in `from` order), recursing into
/// nests.
fn swap_attrs(buf: &mut [u8], from: &str) {
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = usize::from(u16_in(from, &buf[at..at + 2]));
        let kind = u16_in(from, &buf[at + 2..at + 4]);
        assert!(len >= 4 && at + len <= buf.len(), "bad nlattr");
        buf[at..at + 2].reverse();
        buf[at + 2..at + 4].reverse();
        if kind & NLA_F_NESTED != 0 {
            swap_attrs(&mut buf[at + 4..at + len], from);
        }
        at += len.next_multiple_of(4);
    }
}

#[test]
fn header_swap_round_trips_and_keeps_payloads() {
    let order = recorded_order();
    let other = if order == "big" { "little" } else { "big" };
    for entry in std::fs::read_dir(format!(
        "{}/tests/fixtures/kernel",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let orig = std::fs::read(&path).unwrap();
        let mut once = orig.clone();
        swap_headers(&mut once, &order);
        assert_ne!(once, orig, "{path:?}");
        // The nfgenmsg (family, version, res_id) is bytes: untouched.
        assert_eq!(once[16..20], orig[16..20], "{path:?}");
        swap_headers(&mut once, other);
        assert_eq!(once, orig, "{path:?}");
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ports(src: &str, dst: &str, proto: u8, sp: u16, dp: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        proto,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

#[test]
fn tcp_with_snat_new_update_destroy() {
    let orig = ports("192.168.0.2", "192.168.1.2", 6, 40000, 21);
    let nat_reply = ports("192.168.1.2", "192.168.1.100", 6, 21, 40000);
    for (file, kind, mark) in [
        ("ct_new_tcp_snat.bin", Kind::New, 7),
        ("ct_update_mark.bin", Kind::Update, 9),
        ("ct_destroy_tcp.bin", Kind::Destroy, 9),
    ] {
        let m = one(file);
        assert_eq!(m.kind, kind, "{file}");
        let Object::Ct(ct) = m.object else {
            panic!("{file}")
        };
        assert_eq!(ct.orig, orig);
        assert_eq!(ct.reply, Some(nat_reply));
        assert_eq!(ct.mark, mark);
        assert_eq!(ct.tcp_state(), Some(3));
        assert!(
            ct.status & status::SRC_NAT_DONE != 0
                && ct.status & status::CONFIRMED != 0
        );
        // The SNAT binding is recovered from the reply tuple.
        let snat = ct.snat().unwrap();
        assert_eq!((snat.addr, snat.port), (ip("192.168.1.100"), None));
        assert_eq!(ct.dnat(), None);
    }
    let Object::Ct(new) = one("ct_new_tcp_snat.bin").object else {
        panic!()
    };
    assert_eq!(new.timeout, Some(300));
    assert_eq!(new.status, 414); // SEEN_REPLY|ASSURED|CONFIRMED|SRC_NAT|SRC_NAT_DONE|DST_NAT_DONE
    assert!(matches!(
        new.proto_info,
        ProtoInfo::Tcp {
            state: 3,
            flags_orig: 10,
            flags_reply: 10,
            ..
        }
    ));
}

#[test]
fn icmp_udp6_zone_and_sctp() {
    let Object::Ct(icmp) = one("ct_new_icmp.bin").object else {
        panic!()
    };
    assert_eq!(
        icmp.orig.l4,
        L4::Icmp {
            kind: 8,
            code: 0,
            id: 77
        }
    );
    assert_eq!(icmp.reply, Some(icmp.orig.inverse()));
    assert_eq!(icmp.timeout, Some(30));

    let Object::Ct(udp) = one("ct_new_udp6_zone.bin").object else {
        panic!()
    };
    assert_eq!(udp.orig, ports("fd00::1", "fd00::2", 17, 5000, 53));
    assert_eq!(udp.zone, 5);
    assert_eq!(udp.key(), (udp.orig, 5));
    assert_eq!(udp.proto_info, ProtoInfo::None);

    let Object::Ct(sctp) = one("ct_new_sctp.bin").object else {
        panic!()
    };
    assert_eq!(sctp.orig, ports("10.0.0.1", "10.0.0.2", 132, 7, 8));
    // conntrack(8) passes the vtags in host order; the kernel reports the
    // bytes it was given, and we read them as the big-endian u32 they are.
    assert_eq!(
        sctp.proto_info,
        ProtoInfo::Sctp {
            state: 4,
            vtag_orig: 1234u32.swap_bytes(),
            vtag_reply: 5678u32.swap_bytes()
        }
    );
}

#[test]
fn ftp_passive_expectation() {
    let m = one("exp_new_ftp.bin");
    assert_eq!(m.kind, Kind::New);
    let Object::Exp(x) = m.object else { panic!() };
    assert_eq!(x.helper.as_deref(), Some("ftp"));
    assert_eq!(
        (x.master.src, x.master.dst, x.master.proto),
        (ip("127.0.0.1"), ip("127.0.0.1"), 6)
    );
    assert!(matches!(x.master.l4, L4::Ports { dst: 21, .. }));
    // Any source port, the announced destination port.
    assert!(matches!(x.tuple.l4, L4::Ports { src: 0, dst } if dst > 1023));
    assert_eq!(
        x.mask,
        Tuple {
            src: ip("255.255.255.255"),
            dst: ip("255.255.255.255"),
            proto: 6,
            l4: L4::Ports {
                src: 0,
                dst: 0xffff
            }
        }
    );
    assert_eq!(
        (x.timeout, x.flags, x.class, x.nat),
        (Some(300), 0, 0, None)
    );
}
