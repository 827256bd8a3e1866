//! Unit tests of the conntrackd codec: the decoded samples of the
//! reference (§4.4.2, §4.5), control messages, framing, NAT byte order,
//! and round trips of everything the format carries. Captures of the real
//! daemon are checked in `tests/ctd_fixtures.rs`.

use std::net::IpAddr;

use super::*;
use crate::model::{
    ExpectNat, HelperName, L4, ProtoInfo, SeqAdj, Tuple, status,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(src: &str, dst: &str, sp: u16, dp: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        proto: 6,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

fn helper(s: &str) -> HelperName {
    HelperName::try_from(s).unwrap()
}

fn one(datagram: &[u8]) -> Message {
    let all: Vec<_> = messages(datagram, Options::default()).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap().unwrap()
}

fn enc(msg: &Message, opts: Options) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let n = encode(msg, opts, &mut buf).unwrap();
    assert_eq!(n % 4, 0);
    buf[..n].to_vec()
}

fn roundtrip(msg: &Message, opts: Options) -> Message {
    let bytes = enc(msg, opts);
    let all: Vec<_> = messages(&bytes, opts).collect();
    assert_eq!(all.len(), 1);
    all.into_iter().next().unwrap().unwrap()
}

/// The observed CT_UPD of an FTP control connection (§4.4.2).
const CT_UPD_FTP: &str = "11000044 6b0940e8
    000c0000 7f000001 7f000001  00080005 0000200e  00050002 06000000
    00080003 933e0015  00050004 03000000  00080006 00069780
    0008001b 66747000";

#[test]
fn decodes_the_reference_ct_upd_and_encodes_it_back() {
    let bytes = hex(CT_UPD_FTP);
    let m = one(&bytes);
    assert_eq!((m.seq, m.hello, m.hello_back), (0x6b0940e8, false, false));
    let Body::CtUpd(ct) = &m.body else {
        panic!("{m:?}")
    };
    assert_eq!(ct.orig, tcp("127.0.0.1", "127.0.0.1", 37694, 21));
    assert_eq!(ct.reply, Some(ct.orig.inverse()));
    assert_eq!(ct.status, 0x200e);
    assert_eq!(ct.tcp_state(), Some(3));
    assert_eq!(ct.timeout, Some(432000));
    assert_eq!(ct.helper, Some(helper("ftp")));
    assert_eq!((ct.zone, ct.mark, ct.master, ct.labels), (0, 0, None, None));
    // Re-encoded with its mark of 0 after the timeout, as conntrackd sends
    // an UPD once its entry holds a mark (`mark_zero_in_an_upd`).
    assert_eq!(
        enc(&m, Options::default()),
        hex("1100004c 6b0940e8
            000c0000 7f000001 7f000001  00080005 0000200e  00050002 06000000
            00080003 933e0015  00050004 03000000  00080006 00069780
            00080007 00000000  0008001b 66747000")
    );
    // As a NEW, conntrackd's bytes.
    let Body::CtUpd(ct) = m.body.clone() else {
        unreachable!()
    };
    let mut new = enc(
        &Message {
            body: Body::CtNew(ct),
            ..m
        },
        Options::default(),
    );
    new[0] = 0x11;
    assert_eq!(new, bytes);
}

/// conntrackd updates an entry with what a CT_UPD carries and keeps the
/// rest: a mark set back to 0 must be said (a NEW replaces the entry).
#[test]
fn mark_zero_in_an_upd() {
    let mut ct = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", 1, 2));
    let at = |body| {
        let b = enc(
            &Message {
                seq: 1,
                hello: false,
                hello_back: false,
                body,
            },
            Options::default(),
        );
        b.windows(8).any(|w| w == [0, 8, 0, 7, 0, 0, 0, 0])
    };
    assert!(at(Body::CtUpd(ct.clone())), "UPD says mark 0");
    assert!(!at(Body::CtNew(ct.clone())));
    assert!(!at(Body::CtDel(ct.clone())));
    ct.mark = 7;
    assert!(!at(Body::CtUpd(ct)));
}

/// The observed EXP_NEW of an FTP PASV expectation (§4.5).
const EXP_NEW_FTP: &str = "1300007c 6b0940e9
    000c0000 7f000001 7f000001  00050002 06000000  00080003 933e0015
    000c0004 7f000001 7f000001  00050006 06000000  00080007 0000c350
    000c0008 ffffffff ffffffff  0005000a 06000000  0008000b 0000ffff
    0008000c 0000012c  0008000d 00000000  0008000e 00000000
    00080013 66747000";

#[test]
fn decodes_the_reference_exp_new_and_encodes_it_back() {
    let bytes = hex(EXP_NEW_FTP);
    let m = one(&bytes);
    let Body::ExpNew(x) = &m.body else {
        panic!("{m:?}")
    };
    assert_eq!(x.master, tcp("127.0.0.1", "127.0.0.1", 37694, 21));
    assert_eq!(x.tuple, tcp("127.0.0.1", "127.0.0.1", 0, 50000));
    assert_eq!(x.mask, tcp("255.255.255.255", "255.255.255.255", 0, 0xffff));
    assert_eq!((x.timeout, x.flags, x.class), (Some(300), 0, 0));
    assert_eq!(x.helper, Some(helper("ftp")));
    assert_eq!((x.nat, x.func.as_deref(), x.zone), (None, None, 0));
    assert_eq!(enc(&m, Options::default()), bytes);
}

#[test]
fn the_ctsyncd_mark_trails_control_messages_only() {
    let cases = [
        (Body::Alive, "1a300010 00000007 63747379 6e636401"),
        (
            Body::Ack { from: 5, to: 9 },
            "1a280018 00000007 00000005 00000009 63747379 6e636401",
        ),
    ];
    for (body, want) in cases {
        let m = Message {
            seq: 7,
            hello: true,
            hello_back: false,
            body,
        };
        let mut out = [0u8; 64];
        let len = encode(&m, Options::default(), &mut out).unwrap();
        let len = append_mark(&mut out, len).unwrap();
        let want = hex(want);
        assert_eq!(&out[..len], &want[..], "{m:?}");
        // Our decoder (as conntrackd's) reads the message as before.
        assert_eq!(one(&want), m);
        assert!(carries_mark(&want));
        assert_eq!(stream_message_len(&want), Some(Ok(want.len())));
        // Without the mark, or with a different trailer: not marked.
        assert!(!carries_mark(&want[..want.len() - 8]));
        let mut other = want.clone();
        *other.last_mut().unwrap() = 2;
        assert!(!carries_mark(&other));
        // No room for the trailer.
        let mut small = [0u8; 64];
        let plain = encode(&m, Options::default(), &mut small).unwrap();
        assert_eq!(append_mark(&mut small[..plain], plain), Err(Error::TooBig));
    }
    // A marked ALIVE after an unmarked one in one datagram.
    let mut d = hex("1a100008 00000001");
    d.extend(hex("1a100010 00000002 63747379 6e636401"));
    assert!(carries_mark(&d));
    // Data messages are never marked.
    let data = Message {
        seq: 1,
        hello: false,
        hello_back: false,
        body: Body::CtDel(Conntrack::new(tcp("1.2.3.4", "5.6.7.8", 1, 2))),
    };
    let mut out = [0u8; 256];
    let len = encode(&data, Options::default(), &mut out).unwrap();
    assert_eq!(append_mark(&mut out, len), Ok(len));
    assert!(!carries_mark(&out[..len]));
}

#[test]
fn control_messages_have_conntrackd_bytes() {
    let cases = [
        (Body::Alive, true, false, "1a300008 00000007"),
        (
            Body::Ack { from: 5, to: 9 },
            true,
            true,
            "1a680010 00000007 00000005 00000009",
        ),
        (
            Body::Nack { from: 1, to: 2 },
            false,
            false,
            "1a040010 00000007 00000001 00000002",
        ),
        (
            Body::Resync,
            true,
            false,
            "1a220010 00000007 00000000 00000000",
        ),
    ];
    for (body, hello, hello_back, want) in cases {
        let m = Message {
            seq: 7,
            hello,
            hello_back,
            body,
        };
        let want = hex(want);
        assert_eq!(enc(&m, Options::default()), want, "{m:?}");
        assert_eq!(one(&want), m);
    }
}

#[test]
fn a_datagram_carries_several_messages_and_skips_bad_ones() {
    let mut d = hex(CT_UPD_FTP);
    // A message of version 2: skipped, the walk goes on.
    d.extend(hex("21000008 00000001"));
    // A control message without a control flag: malformed header.
    d.extend(hex("1a200008 00000002"));
    // An unknown type: bad type.
    d.extend(hex("17000008 00000003"));
    // A data type with a control flag: malformed header.
    d.extend(hex("10080008 00000004"));
    // A payload without an address group: malformed payload.
    d.extend(hex("10000010 00000005 00050002 06000000"));
    d.extend(hex("1a100008 00000006"));
    // Cut short: one error, then the end.
    d.extend(hex("1a10"));
    let got: Vec<_> = messages(&d, Options::default())
        .map(|r| r.map(|m| m.seq))
        .collect();
    assert_eq!(
        got,
        vec![
            Ok(0x6b0940e8),
            Err(Error::Version(2)),
            Err(Error::BadHeader),
            Err(Error::BadType(7)),
            Err(Error::BadHeader),
            Err(Error::Malformed),
            Ok(6),
            Err(Error::Truncated),
        ]
    );
}

#[test]
fn framing_errors_end_the_datagram() {
    let cases: [(&str, Error); 5] = [
        ("1a100000 00000001 1a100008 00000002", Error::BadSize),
        ("1a100010 00000001", Error::BadSize),
        ("1a080008 00000001 00000000", Error::Truncated),
        ("1a080008 00000001 00000000 00000000", Error::BadSize),
        ("1a100004 00000001", Error::BadSize),
    ];
    for (d, e) in cases {
        let got: Vec<_> = messages(&hex(d), Options::default()).collect();
        assert_eq!(got, vec![Err(e)], "{d}");
    }
    assert_eq!(messages(&[], Options::default()).count(), 0);
}

#[test]
fn stream_framing() {
    let ack = hex("1a080010 00000001 00000002 00000003");
    assert_eq!(stream_message_len(&ack[..7]), None);
    assert_eq!(stream_message_len(&ack[..12]), None);
    assert_eq!(stream_message_len(&ack), Some(Ok(16)));
    let mut two = hex(CT_UPD_FTP);
    two.extend(&ack);
    assert_eq!(stream_message_len(&two), Some(Ok(68)));
    assert_eq!(stream_message_len(&hex(CT_UPD_FTP)[..40]), None);
    assert_eq!(
        stream_message_len(&hex("1a100000 00000001")),
        Some(Err(Error::BadSize))
    );
    assert_eq!(
        stream_message_len(&hex("1a080008 00000001 00000000 00000000")),
        Some(Err(Error::BadSize))
    );
}

#[test]
fn sniffs_conntrackd_and_never_ctsyncd() {
    assert!(is_conntrackd(&hex(CT_UPD_FTP)));
    assert!(is_conntrackd(&hex("1a300008 00000001")));
    assert!(!is_conntrackd(&hex("1a300008 000000")));
    assert!(!is_conntrackd(&hex("1a300010 00000001")));
    assert!(!is_conntrackd(&hex("16000008 00000001")));
    assert!(!is_conntrackd(&hex("21000008 00000001")));
    let mut ours = b"cT".to_vec();
    ours.extend([1, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(!is_conntrackd(&ours));
}

fn snat_ct() -> Conntrack {
    let orig = tcp("10.0.1.2", "10.0.2.2", 40000, 80);
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(tcp("10.0.2.2", "10.0.2.1", 80, 1024));
    ct.status = status::SEEN_REPLY
        | status::ASSURED
        | status::CONFIRMED
        | status::SRC_NAT
        | status::SRC_NAT_DONE
        | status::DST_NAT_DONE;
    ct.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 9,
        flags_orig: 0,
        flags_reply: 0,
    };
    ct.timeout = Some(120);
    ct
}

#[test]
fn snat_goes_out_in_conntrackd_byte_order() {
    let m = Message {
        seq: 1,
        hello: false,
        hello_back: false,
        body: Body::CtNew(snat_ct()),
    };
    let bytes = enc(&m, Options::default());
    let want = hex("1000005c 00000001
        000c0000 0a000102 0a000202  00080005 0000019e  00050002 06000000
        00080003 9c400050  00050004 03000000  00050019 07000000
        0005001a 09000000  00080006 00000078
        0008000c 0a000201  0006000e 00040000");
    assert_eq!(bytes, want);
    assert_eq!(roundtrip(&m, Options::default()), m);
    // conntrackd 1.4.2 on x86 reverses the address.
    let old = Options {
        nat_order: NatByteOrder::V142,
        send_timeout: false,
    };
    let b142 = enc(&m, old);
    assert!(b142.windows(8).any(|w| w == hex("0008000c 0102000a")));
    assert!(!b142.windows(4).any(|w| w == hex("00080006")));
    let Body::CtNew(ct) = roundtrip(&m, old).body else {
        panic!()
    };
    assert_eq!((ct.reply, ct.timeout), (snat_ct().reply, None));
}

#[test]
fn ipv6_dnat_zone_labels_seq_adj_master_mark_round_trip() {
    let orig = tcp("2001:db8::2", "2001:db8:1::80", 50000, 2121);
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(tcp("2001:db8:2::5", "2001:db8::2", 21, 50000));
    ct.status = status::CONFIRMED | status::DST_NAT | status::DST_NAT_DONE;
    ct.zone = 7;
    ct.mark = 0x42;
    ct.helper = Some(helper("ftp"));
    ct.master = Some(tcp("2001:db8::2", "2001:db8:1::80", 49999, 21));
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
    let mut labels = [0u8; 16];
    labels[0] = 0b10; // label 1
    labels[5] = 0x80; // label 47
    ct.labels = Some(labels);
    ct.timeout = Some(30);
    let m = Message {
        seq: 9,
        hello: true,
        hello_back: false,
        body: Body::CtUpd(ct),
    };
    let bytes = enc(&m, Options::default());
    assert_eq!(bytes[..2], [0x11, 0x20]);
    // DNAT address (attr 30) and port (attr 15, LE), labels as BE words
    // with label 47 = word 1 bit 15, zone last.
    let dnat = hex("0014001e 20010db8 00020000 00000000 00000005");
    assert!(bytes.windows(dnat.len()).any(|w| w == dnat));
    assert!(bytes.windows(8).any(|w| w == hex("0006000f 15000000")));
    let l = hex("0014001c 00000002 00008000 00000000 00000000");
    assert!(bytes.windows(l.len()).any(|w| w == l));
    assert!(bytes.ends_with(&hex("00060020 00070000")));
    assert_eq!(roundtrip(&m, Options::default()), m);
}

#[test]
fn icmp_id_and_sctp_dccp_round_trip() {
    let mut ping = Conntrack::new(Tuple {
        src: ip("10.0.0.1"),
        dst: ip("10.0.0.2"),
        proto: 1,
        l4: L4::Icmp {
            kind: 8,
            code: 0,
            id: 0x1234,
        },
    });
    ping.reply = Some(ping.orig.inverse());
    let m = Message {
        seq: 3,
        hello: false,
        hello_back: false,
        body: Body::CtNew(ping),
    };
    let bytes = enc(&m, Options::default());
    assert!(bytes.windows(8).any(|w| w == hex("00060018 34120000")));
    assert_eq!(roundtrip(&m, Options::default()), m);
    for (proto, info) in [
        (
            132,
            ProtoInfo::Sctp {
                state: 3,
                vtag_orig: 0xdeadbeef,
                vtag_reply: 7,
            },
        ),
        (
            33,
            ProtoInfo::Dccp {
                state: 4,
                role: 1,
                handshake_seq: 0,
            },
        ),
        (17, ProtoInfo::None),
    ] {
        let mut t = tcp("::1", "::2", 5, 6);
        t.proto = proto;
        let mut ct = Conntrack::new(t);
        ct.reply = Some(t.inverse());
        ct.proto_info = info;
        let m = Message {
            seq: 4,
            hello: false,
            hello_back: true,
            body: Body::CtDel(ct),
        };
        assert_eq!(roundtrip(&m, Options::default()), m);
    }
}

#[test]
fn a_del_from_a_key_carries_the_identity() {
    let mut ct = Conntrack::new(tcp("192.168.0.2", "192.168.1.2", 1, 2));
    ct.zone = 3;
    let m = Message {
        seq: 0,
        hello: false,
        hello_back: false,
        body: Body::CtDel(ct),
    };
    assert_eq!(
        enc(&m, Options::default()),
        hex("12000034 00000000
            000c0000 c0a80002 c0a80102  00080005 00000000
            00050002 06000000  00080003 00010002  00060020 00030000")
    );
}

/// conntrackd finds the entry an EXP_DEL names by every attribute both
/// carry: a DEL from a key leaves out the flags and class it cannot know
/// (a 0 missed an entry of class 1); the reference NEW, as a DEL, keeps
/// conntrackd's bytes.
#[test]
fn an_expectation_del_from_a_key_leaves_out_flags_and_class() {
    let x = Expect::new(
        tcp("127.0.0.1", "127.0.0.1", 37694, 21),
        tcp("127.0.0.1", "127.0.0.1", 0, 50000),
        tcp("255.255.255.255", "255.255.255.255", 0, 0xffff),
    );
    let msg = |body| Message {
        seq: 0x6b09_40e9,
        hello: false,
        hello_back: false,
        body,
    };
    let bytes = enc(&msg(Body::ExpDel(x)), Options::default());
    // The reference NEW up to its TIMEOUT (92 bytes): no FLAGS, no CLASS.
    let reference = hex(EXP_NEW_FTP);
    assert_eq!(bytes[0], 0x15, "v1 EXP_DEL");
    assert_eq!(bytes[2..4], [0, 0x5c]);
    assert_eq!(bytes[4..], reference[4..0x5c]);
    let Body::ExpNew(full) = one(&reference).body else {
        panic!()
    };
    let mut del = enc(&msg(Body::ExpDel(full)), Options::default());
    del[0] = 0x13;
    assert_eq!(del, reference);
}

#[test]
fn expectation_with_nat_and_function_round_trips() {
    let master = tcp("10.0.1.2", "10.0.2.2", 40000, 21);
    let mut x = Expect::new(
        master,
        tcp("10.0.2.2", "10.0.2.1", 0, 50001),
        tcp("255.255.255.255", "255.255.255.255", 0, 0xffff),
    );
    x.timeout = Some(299);
    x.flags = 4;
    x.helper = Some(helper("ftp"));
    x.func = Some("nat-follow-master".try_into().unwrap());
    x.nat = Some(ExpectNat {
        dir: 1,
        tuple: tcp("10.0.1.2", "0.0.0.0", 50001, 0),
    });
    let m = Message {
        seq: 11,
        hello: false,
        hello_back: false,
        body: Body::ExpDel(x),
    };
    assert_eq!(roundtrip(&m, Options::default()), m);
}

/// A data message of `kind` around `payload` (hex), its length filled in.
fn data(kind: u8, payload: &str) -> Vec<u8> {
    let p = hex(payload);
    let mut m = vec![0x10 | kind, 0];
    m.extend(u16::try_from(8 + p.len()).unwrap().to_be_bytes());
    m.extend([0, 0, 0, 1]);
    m.extend(p);
    m
}

#[test]
fn payloads_conntrackd_refuses_are_malformed() {
    let v4 = "000c0000 0a000001 0a000002";
    let bad = [
        // attribute number 33 (past NTA_MAX)
        (0, format!("{v4} 00050021 01000000")),
        // NTA_STATUS of 3 bytes
        (0, format!("{v4} 00070005 01020300")),
        // nta_len 3
        (0, format!("{v4} 00030005 00000000")),
        // nta_len past the message
        (0, format!("{v4} 00100005")),
        // no protocol
        (0, v4.to_string()),
        // no address group
        (1, "00050002 06000000".to_string()),
        // helper name without a NUL
        (0, format!("{v4} 00050002 06000000 0008001b 66747070")),
        // helper attribute longer than 16
        (
            0,
            format!(
                "{v4} 00050002 06000000
                 0014001b 61616161 61616161 61616161 61610000"
            ),
        ),
        // labels not a whole number of words
        (0, format!("{v4} 00050002 06000000 0006001c 01000000")),
        // SNAT_IPV6 on an IPv4 flow
        (
            2,
            format!(
                "{v4} 00050002 06000000
                 0014001d 00000000 00000000 00000000 00000001"
            ),
        ),
        // expectation without a mask
        (
            3,
            format!(
                "{v4} 00050002 06000000 000c0004 0a000001 0a000002 00050006 06000000"
            ),
        ),
        // expectation attribute 21 (past NTA_EXP_MAX)
        (4, format!("{v4} 00050015 06000000")),
    ];
    for (kind, payload) in bad {
        let got: Vec<_> =
            messages(&data(kind, &payload), Options::default()).collect();
        assert_eq!(got, vec![Err(Error::Malformed)], "{payload}");
    }
    // The same walk accepts up to four trailing bytes, as conntrackd does.
    let ok = data(0, &format!("{v4} 00050002 06000000 00000000"));
    assert!(matches!(one(&ok).body, Body::CtNew(_)));
}

#[test]
fn encode_refuses_a_small_buffer() {
    let m = Message {
        seq: 1,
        hello: false,
        hello_back: false,
        body: Body::CtNew(snat_ct()),
    };
    let mut small = [0u8; 40];
    assert_eq!(
        encode(&m, Options::default(), &mut small),
        Err(Error::TooBig)
    );
    let ack = Message {
        body: Body::Ack { from: 1, to: 2 },
        ..m
    };
    assert_eq!(
        encode(&ack, Options::default(), &mut small[..15]),
        Err(Error::TooBig)
    );
}

#[test]
fn a_142_peer_gets_no_ipv6_nat() {
    let orig = tcp("2001:db8::2", "2001:db8:1::80", 50000, 80);
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(tcp("2001:db8:2::5", "2001:db8::2", 80, 50000));
    let m = Message {
        seq: 1,
        hello: false,
        hello_back: false,
        body: Body::CtNew(ct),
    };
    let old = Options {
        nat_order: NatByteOrder::V142,
        send_timeout: true,
    };
    let b142 = enc(&m, old);
    assert!(!b142.windows(4).any(|w| w == hex("0014001e")));
    // Nor is it read from a 1.4.7 message: 1.4.2 would not have.
    let b147 = enc(&m, Options::default());
    assert!(b147.windows(4).any(|w| w == hex("0014001e")));
    let Body::CtNew(got) = messages(&b147, old).next().unwrap().unwrap().body
    else {
        panic!()
    };
    assert_eq!(got.reply, Some(orig.inverse()));
}

#[test]
fn a_142_peer_gets_a_zoned_flow_without_its_zone() {
    // 1.4.2 refuses a whole message with an attribute past 29 (ref
    // §4.4.3), and acknowledges its number all the same.
    let mut ct = Conntrack::new(tcp("10.0.1.2", "10.0.2.2", 40000, 80));
    ct.zone = 7;
    let m = Message {
        seq: 1,
        hello: false,
        hello_back: false,
        body: Body::CtNew(ct.clone()),
    };
    let zone_attr = hex("00060020 0007");
    let b147 = enc(&m, Options::default());
    assert!(b147.windows(6).any(|w| w == zone_attr));
    let old = Options {
        nat_order: NatByteOrder::V142,
        send_timeout: true,
    };
    let b142 = enc(&m, old);
    assert!(!b142.windows(4).any(|w| w == hex("00060020")));
    let Body::CtNew(got) = messages(&b142, old).next().unwrap().unwrap().body
    else {
        panic!()
    };
    assert_eq!((got.orig, got.zone), (ct.orig, 0));
    // Nor is it read (1.4.2 would have refused the message).
    let Body::CtNew(got) = messages(&b147, old).next().unwrap().unwrap().body
    else {
        panic!()
    };
    assert_eq!(got.zone, 0);
}
