//! Codec tests: encode → decode round trips for every attribute, and
//! truncated or corrupt input is an error, never a panic.

use super::*;
use crate::model::{SeqAdj, tcp_flag};

fn tcp(src: &str, dst: &str, sp: u16, dp: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

fn full_ct() -> Conntrack {
    let mut ct = Conntrack::new(tcp("192.168.0.2", "192.168.1.2", 40000, 21));
    ct.status = 0x200e;
    ct.timeout = Some(431999);
    ct.mark = 7;
    ct.zone = 3;
    ct.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 6,
        flags_orig: tcp_flag::BE_LIBERAL | tcp_flag::SACK_PERM,
        flags_reply: tcp_flag::SACK_PERM,
    };
    ct.helper = Some("ftp".try_into().unwrap());
    ct.master = Some(tcp("192.168.0.2", "192.168.1.2", 39999, 21));
    ct.seq_adj = Some([
        SeqAdj {
            correction_pos: 1,
            offset_before: 2,
            offset_after: 3,
        },
        SeqAdj {
            correction_pos: 4,
            offset_before: 5,
            offset_after: 6,
        },
    ]);
    ct.labels = Some([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);
    ct
}

/// A netlink message header in host byte order, as the kernel writes it:
/// byte literals would only hold on little-endian hosts.
fn nlmsghdr(len: u32, msg_type: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&len.to_ne_bytes());
    h.extend_from_slice(&msg_type.to_ne_bytes());
    h.extend_from_slice(&flags.to_ne_bytes());
    h.extend_from_slice(&seq.to_ne_bytes());
    h.extend_from_slice(&0u32.to_ne_bytes());
    h
}

fn decode_all(buf: &[u8]) -> Vec<Received> {
    messages(buf).map(|r| r.unwrap()).collect()
}

#[test]
fn conntrack_create_round_trips_every_attribute() {
    let ct = full_ct();
    let mut buf = Vec::new();
    encode_ct_create(&mut buf, &ct, 77);
    let got = decode_all(&buf);
    let [Received::Msg(m)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((m.kind, m.seq), (Kind::New, 77));
    let Object::Ct(back) = &m.object else {
        panic!()
    };
    // The request carries the untranslated reply tuple (NAT goes in
    // CTA_NAT_*), so compare that separately.
    assert_eq!(back.reply, Some(ct.orig.inverse()));
    let mut expect = ct.clone();
    expect.reply = back.reply;
    assert_eq!(back, &expect);
}

#[test]
fn nat_is_sent_as_nat_attributes() {
    let mut ct = Conntrack::new(tcp("192.168.0.2", "192.168.1.2", 40000, 21));
    ct.timeout = Some(100);
    ct.reply = Some(tcp("192.168.1.2", "192.168.1.100", 21, 1024));
    let mut buf = Vec::new();
    encode_ct_create(&mut buf, &ct, 1);
    // CTA_NAT_SRC (nested) with MINIP = MAXIP = 192.168.1.100 and port 1024.
    let attrs = &buf[NETLINK_HEADER + NFGEN_HEADER..];
    let nat = nlas(attrs)
        .map(Result::unwrap)
        .find(|(t, _)| *t == CTA_NAT_SRC)
        .unwrap()
        .1;
    let inner: Vec<(u16, Vec<u8>)> = nlas(nat)
        .map(|r| r.map(|(t, v)| (t, v.to_vec())).unwrap())
        .collect();
    assert_eq!(inner[0], (CTA_NAT_V4_MINIP, vec![192, 168, 1, 100]));
    assert_eq!(inner[1], (CTA_NAT_V4_MAXIP, vec![192, 168, 1, 100]));
    assert_eq!(inner[2].0, CTA_NAT_PROTO);
    assert!(
        nlas(attrs)
            .map(Result::unwrap)
            .all(|(t, _)| t != CTA_NAT_DST)
    );
}

#[test]
fn expectation_round_trip() {
    let x = Expect {
        master: tcp("192.168.0.2", "192.168.1.2", 40000, 21),
        tuple: tcp("192.168.0.2", "192.168.1.2", 0, 50000),
        mask: Tuple {
            src: "255.255.255.255".parse().unwrap(),
            dst: "255.255.255.255".parse().unwrap(),
            proto: 6,
            l4: L4::Ports {
                src: 0,
                dst: 0xffff,
            },
        },
        timeout: Some(300),
        zone: 0,
        flags: 0,
        class: 0,
        helper: Some("ftp".try_into().unwrap()),
        nat: Some(ExpectNat {
            dir: 1,
            tuple: tcp("10.0.0.1", "0.0.0.0", 0, 50000),
        }),
        func: Some("nat-follow-master".try_into().unwrap()),
        id: 0,
    };
    let mut buf = Vec::new();
    encode_exp_create(&mut buf, &x, 5);
    encode_exp_delete(&mut buf, &x, 6);
    let first = messages(&buf).next().unwrap().unwrap();
    let Received::Msg(m) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(m.kind, Kind::New);
    assert_eq!(m.object, Object::Exp(x.clone()));
    // The delete request only names the tuple: not a full expectation.
    assert!(messages(&buf).nth(1).unwrap().is_err());
}

#[test]
fn acks_done_and_unknown_types() {
    // NLMSG_ERROR with errno -EEXIST (17) echoing a request with seq 9.
    let mut buf = nlmsghdr(36, NLMSG_ERROR, 0, 9);
    buf.extend_from_slice(&(-17i32).to_ne_bytes());
    buf.extend_from_slice(&nlmsghdr(20, 0x0100, 0, 9));
    // NLMSG_DONE (multi-part flag), seq 10, and its 4-byte payload.
    buf.extend_from_slice(&nlmsghdr(20, NLMSG_DONE, 2, 10));
    buf.extend_from_slice(&[0, 0, 0, 0]);
    // An nfnetlink message of another subsystem (type 0x0a00), AF_INET.
    buf.extend_from_slice(&nlmsghdr(20, 0x0a00, 0, 1));
    buf.extend_from_slice(&[2, 0, 0, 0]);
    assert_eq!(
        decode_all(&buf),
        vec![
            Received::Ack { seq: 9, errno: 17 },
            Received::Done { seq: 10, errno: 0 },
            Received::Other { msg_type: 0x0a00 },
        ]
    );
}

/// The int a DONE carries is the dump's result: negative, an error
/// (EINTR here); absent or not negative (kernels before 4.14), none.
#[test]
fn a_done_carries_the_dumps_error() {
    let eintr = rustix::io::Errno::INTR.raw_os_error();
    let mut buf = nlmsghdr(20, NLMSG_DONE, 2, 4);
    buf.extend_from_slice(&(-eintr).to_ne_bytes());
    buf.extend_from_slice(&nlmsghdr(20, NLMSG_DONE, 2, 5));
    buf.extend_from_slice(&7i32.to_ne_bytes());
    buf.extend_from_slice(&nlmsghdr(16, NLMSG_DONE, 2, 6));
    assert_eq!(
        decode_all(&buf),
        vec![
            Received::Done {
                seq: 4,
                errno: eintr
            },
            Received::Done { seq: 5, errno: 0 },
            Received::Done { seq: 6, errno: 0 },
        ]
    );
}

#[test]
fn truncated_and_corrupt_messages_are_errors() {
    let mut buf = Vec::new();
    encode_ct_create(&mut buf, &full_ct(), 1);
    for cut in 1..buf.len() {
        // Every prefix decodes to an error or a shorter valid entry, and
        // never panics.
        let _ = messages(&buf[..cut]).count();
    }
    assert!(matches!(
        messages(&buf[..10]).next(),
        Some(Err(DecodeError::Truncated))
    ));
    // No original tuple at all.
    let mut nothing = Vec::new();
    let mut e = Encoder::new(&mut nothing);
    let at =
        e.begin_msg(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW, 0, 1, AF_INET);
    e.put_be32(CTA_STATUS, 0);
    e.finish_msg(at);
    assert_eq!(
        messages(&nothing).next(),
        Some(Err(DecodeError::Missing("CTA_TUPLE_ORIG")))
    );
    // A short CTA_STATUS.
    let mut bad = Vec::new();
    let mut e = Encoder::new(&mut bad);
    let at =
        e.begin_msg(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW, 0, 1, AF_INET);
    e.tuple(CTA_TUPLE_ORIG, &full_ct().orig);
    e.put(CTA_STATUS, &[1, 2]);
    e.finish_msg(at);
    assert_eq!(
        messages(&bad).next(),
        Some(Err(DecodeError::Bad("CTA_STATUS")))
    );
    // Random mutations never panic.
    let mut x: u32 = 99;
    for _ in 0..20_000 {
        let mut m = buf.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = x as usize % m.len();
            m[i] = (x >> 8) as u8;
        }
        let _ = messages(&m).count();
    }
}

#[test]
fn dump_requests() {
    let mut buf = Vec::new();
    encode_dump(&mut buf, false, 7);
    // nlmsghdr: len 20, type CTNETLINK<<8 | CT_GET, flags REQUEST|DUMP, seq 7;
    // nfgenmsg: AF_UNSPEC, v0, res_id 0.
    assert_eq!(buf.len(), 20);
    assert_eq!(&buf[4..6], &0x0101u16.to_ne_bytes());
    assert_eq!(&buf[6..8], &(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    assert_eq!(&buf[8..12], &7u32.to_ne_bytes());
    assert_eq!(&buf[16..20], &[0, 0, 0, 0]);
    let mut exp = Vec::new();
    encode_dump(&mut exp, true, 7);
    assert_eq!(&exp[4..6], &0x0201u16.to_ne_bytes());
    assert_eq!(exp[..4], buf[..4]);
    assert_eq!(exp[6..], buf[6..]);
}

#[test]
fn error_with_i32_min_errno_does_not_overflow() {
    // Found by cargo-fuzz (kernel_codec): NLMSG_ERROR carrying i32::MIN.
    let mut buf = nlmsghdr(20, NLMSG_ERROR, 0, 1);
    buf.extend_from_slice(&i32::MIN.to_ne_bytes());
    assert_eq!(
        decode_all(&buf),
        vec![Received::Ack {
            seq: 1,
            errno: i32::MAX
        }]
    );
}

#[test]
fn an_icmpv6_node_information_query_gets_the_kernel_reply_type() {
    // The kernel inverts ICMPv6 echo (128/129) and node information
    // (139/140) messages; a reply tuple that keeps 139 is refused by no
    // one, but replies (140) then never match the created entry.
    for (kind, reply) in [(128, 129), (129, 128), (139, 140), (140, 139)] {
        let mut ct = Conntrack::new(Tuple {
            src: "fd00::1".parse().unwrap(),
            dst: "fd00::2".parse().unwrap(),
            proto: 58,
            l4: L4::Icmp {
                kind,
                code: 0,
                id: 7,
            },
        });
        ct.timeout = Some(30);
        let mut buf = Vec::new();
        encode_ct_create(&mut buf, &ct, 1);
        let got = decode_all(&buf);
        let [
            Received::Msg(Message {
                object: Object::Ct(back),
                ..
            }),
        ] = &got[..]
        else {
            panic!("{got:?}")
        };
        let want = L4::Icmp {
            kind: reply,
            code: 0,
            id: 7,
        };
        assert_eq!(back.reply.map(|r| r.l4), Some(want), "type {kind}");
    }
}
