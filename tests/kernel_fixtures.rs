//! Decoding of real kernel messages, recorded from this kernel by
//! `record_kernel_fixtures` in tests/kernel.rs (conntrack(8) commands and a
//! real FTP PASV exchange in a network namespace). Unprivileged.

use std::net::IpAddr;

use ctsyncd::kernel::codec::{self, Kind, Message, Object, Received};
use ctsyncd::model::{L4, ProtoInfo, Tuple, status};

fn one(name: &str) -> Message {
    let path = format!(
        "{}/tests/fixtures/kernel/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).unwrap();
    let mut all: Vec<_> = codec::messages(&bytes).collect();
    assert_eq!(all.len(), 1, "{name}: {all:?}");
    match all.remove(0) {
        Ok(Received::Msg(m)) => m,
        other => panic!("{name}: {other:?}"),
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
