//! Lines conntrackd 1.4.7 printed (Debian 1:1.4.7-1+b2, with
//! libnetfilter_conntrack 1.0.9) for entries of each kind, in `-i`/`-e`
//! (plain and `-x`), and what ctsyncd writes for the same entries.
//! The `-i` lines came from `conntrack -I` in a network namespace (their
//! `mark=0`, which conntrackd shows for an entry created through
//! ctnetlink, left out); the `-e` ones from tests/render_parity.rs. One
//! (the secmark's XML) follows the reference's element order instead:
//! no flow here can carry a secmark.

use std::net::IpAddr;

use super::{ct_line, ct_xml, exp_line, exp_xml};
use crate::model::{Conntrack, Expect, L4, Tuple, status};

fn tuple(proto: u8, src: &str, dst: &str, l4: L4) -> Tuple {
    Tuple {
        src: src.parse::<IpAddr>().unwrap(),
        dst: dst.parse::<IpAddr>().unwrap(),
        proto,
        l4,
    }
}

fn ports(src: u16, dst: u16) -> L4 {
    L4::Ports { src, dst }
}

/// A new, unreplied entry as `conntrack -I` makes it.
fn unreplied(orig: Tuple) -> Conntrack {
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(orig.inverse());
    ct.status = status::CONFIRMED;
    ct
}

/// A PPTP-like expectation: a GRE tuple of a TCP master.
fn gre_expect() -> Expect {
    let master = tuple(6, "10.72.1.2", "10.72.2.2", ports(42100, 1723));
    let ones = "255.255.255.255";
    let mut x = Expect::new(
        master,
        tuple(47, "10.72.2.2", "10.72.1.2", ports(0x10, 0x20)),
        tuple(47, ones, ones, ports(0, 0xffff)),
    );
    x.helper = Some("pptp".try_into().unwrap());
    x
}

#[test]
fn gre_keys_are_printed_as_keys_in_hex() {
    let gre =
        unreplied(tuple(47, "10.0.0.1", "10.0.0.2", ports(0x1234, 0x5678)));
    assert_eq!(
        ct_line(&gre, false),
        "gre      47 src=10.0.0.1 dst=10.0.0.2 srckey=0x1234 dstkey=0x5678 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 srckey=0x5678 dstkey=0x1234"
    );
    assert_eq!(
        ct_xml(&gre, false),
        "<flow><meta direction=\"original\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>10.0.0.1</src><dst>10.0.0.2</dst></layer3><layer4 protonum=\"47\" protoname=\"gre\"><srckey>0x1234</srckey><dstkey>0x5678</dstkey></layer4></meta><meta direction=\"reply\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>10.0.0.2</src><dst>10.0.0.1</dst></layer3><layer4 protonum=\"47\" protoname=\"gre\"><srckey>0x5678</srckey><dstkey>0x1234</dstkey></layer4></meta><meta direction=\"independent\"><unreplied/></meta></flow>"
    );
    assert_eq!(
        exp_line(&gre_expect()),
        "proto=47 src=10.72.2.2 dst=10.72.1.2 srckey=0x10 dstkey=0x20 mask-src=255.255.255.255 mask-dst=255.255.255.255 srckey=0x0 dstkey=0xffff master-src=10.72.1.2 master-dst=10.72.2.2 sport=42100 dport=1723 class=0 helper=pptp"
    );
    assert_eq!(
        exp_xml(&gre_expect()),
        "<flow><layer3 protonum=\"2\" protoname=\"ipv4\"><expected><src>10.72.2.2</src><dst>10.72.1.2</dst></expected><mask><src>255.255.255.255</src><dst>255.255.255.255</dst></mask><master><src>10.72.1.2</src><dst>10.72.2.2</dst></master></layer3><layer4 protonum=\"47\" protoname=\"gre\"><expected><srckey>0x10</srckey><dstkey>0x20</dstkey></expected><mask><srckey>0x0</srckey><dstkey>0xffff</dstkey></mask><master><sport>42100</sport><dport>1723</dport></master></layer4><meta><helper-name>pptp</helper-name><class>0</class></meta></flow>"
    );
}

/// A tuple without its layer-4 fields (a peer's UDP-Lite or GRE entry,
/// which conntrackd's protocol carries no ports for; DCCP on a kernel
/// without its tracker) still has them printed, as 0, and an
/// expectation's XML has each tuple's element even when it is empty.
#[test]
fn missing_layer4_fields_are_printed_by_protocol_number() {
    let mut lite =
        Conntrack::new(tuple(136, "10.72.1.2", "10.72.2.2", L4::None));
    lite.status = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;
    assert_eq!(
        ct_line(&lite, true),
        "udplite  136 src=10.72.1.2 dst=10.72.2.2 sport=0 dport=0 [ASSURED]"
    );
    assert_eq!(
        ct_xml(&lite, true),
        "<flow><meta direction=\"original\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>10.72.1.2</src><dst>10.72.2.2</dst></layer3><layer4 protonum=\"136\" protoname=\"udplite\"><sport>0</sport><dport>0</dport></layer4></meta><meta direction=\"reply\"><layer3 protonum=\"0\" protoname=\"unknown\"><src></src><dst></dst></layer3><layer4 protonum=\"0\" protoname=\"unknown\"></layer4></meta><meta direction=\"independent\"><assured/></meta></flow>"
    );
    let mut gre = lite.clone();
    gre.orig.proto = 47;
    assert_eq!(
        ct_line(&gre, true),
        "gre      47 src=10.72.1.2 dst=10.72.2.2 srckey=0x0 dstkey=0x0 [ASSURED]"
    );
    let dccp = unreplied(tuple(33, "10.0.0.1", "10.0.0.2", L4::None));
    assert_eq!(
        ct_line(&dccp, false),
        "dccp     33 src=10.0.0.1 dst=10.0.0.2 sport=0 dport=0 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=0 dport=0"
    );
    // `conntrack -I expect` without the expected ports made this one.
    let master = tuple(6, "127.0.0.1", "127.0.0.1", ports(58476, 21));
    let ones = "255.255.255.255";
    let mut x = Expect::new(
        master,
        tuple(19, "127.0.0.1", "127.0.0.1", L4::None),
        tuple(19, ones, ones, L4::None),
    );
    x.helper = Some("ftp".try_into().unwrap());
    assert_eq!(
        exp_line(&x),
        "proto=19 src=127.0.0.1 dst=127.0.0.1 mask-src=255.255.255.255 mask-dst=255.255.255.255 master-src=127.0.0.1 master-dst=127.0.0.1 sport=58476 dport=21 class=0 helper=ftp"
    );
    assert_eq!(
        exp_xml(&x),
        "<flow><layer3 protonum=\"2\" protoname=\"ipv4\"><expected><src>127.0.0.1</src><dst>127.0.0.1</dst></expected><mask><src>255.255.255.255</src><dst>255.255.255.255</dst></mask><master><src>127.0.0.1</src><dst>127.0.0.1</dst></master></layer3><layer4 protonum=\"19\" protoname=\"unknown\"><expected></expected><mask></mask><master><sport>58476</sport><dport>21</dport></master></layer4><meta><helper-name>ftp</helper-name><class>0</class></meta></flow>"
    );
}

/// An IPv4-compatible IPv6 address is written as inet_ntop writes it.
#[test]
fn ipv4_compatible_addresses_are_dotted() {
    let mut ct = unreplied(tuple(6, "::1.2.3.4", "fd00::2", ports(1000, 80)));
    ct.proto_info = crate::model::ProtoInfo::Tcp {
        state: 1,
        wscale_orig: 0,
        wscale_reply: 0,
        flags_orig: 0,
        flags_reply: 0,
    };
    assert_eq!(
        ct_line(&ct, false),
        "tcp      6 SYN_SENT src=::1.2.3.4 dst=fd00::2 sport=1000 dport=80 [UNREPLIED] src=fd00::2 dst=::1.2.3.4 sport=80 dport=1000"
    );
    assert_eq!(
        ct_xml(&ct, false),
        "<flow><meta direction=\"original\"><layer3 protonum=\"10\" protoname=\"ipv6\"><src>::1.2.3.4</src><dst>fd00::2</dst></layer3><layer4 protonum=\"6\" protoname=\"tcp\"><sport>1000</sport><dport>80</dport></layer4></meta><meta direction=\"reply\"><layer3 protonum=\"10\" protoname=\"ipv6\"><src>fd00::2</src><dst>::1.2.3.4</dst></layer3><layer4 protonum=\"6\" protoname=\"tcp\"><sport>80</sport><dport>1000</dport></layer4></meta><meta direction=\"independent\"><state>SYN_SENT</state><unreplied/></meta></flow>"
    );
    let mut x = gre_expect();
    x.master.src = "::10.72.1.2".parse().unwrap();
    x.master.dst = "::10.72.2.2".parse().unwrap();
    assert!(
        exp_line(&x)
            .contains(" master-src=::10.72.1.2 master-dst=::10.72.2.2 "),
        "{}",
        exp_line(&x)
    );
    assert!(
        exp_xml(&x).contains(
            "<master><src>::10.72.1.2</src><dst>::10.72.2.2</dst></master>"
        ),
        "{}",
        exp_xml(&x)
    );
}

/// conntrackd's XML names an SCTP or DCCP state by the TCP state of the
/// same number; its plain line names it right.
#[test]
fn xml_states_are_named_from_the_tcp_table() {
    let state = |ct: &Conntrack| {
        let x = ct_xml(ct, true);
        let at = x.find("<state>").map(|i| i + 7);
        at.map(|i| x[i..i + x[i..].find('<').unwrap()].to_string())
    };
    let mut ct = unreplied(tuple(132, "10.72.1.2", "10.72.2.2", ports(1, 2)));
    for (n, xml, plain) in [
        (4, "FIN_WAIT", "ESTABLISHED"),
        (7, "TIME_WAIT", "SHUTDOWN_ACK_SENT"),
        (8, "CLOSE", "HEARTBEAT_SENT"),
        (9, "SYN_SENT2", "HEARTBEAT_ACKED"),
    ] {
        ct.proto_info = crate::model::ProtoInfo::Sctp {
            state: n,
            vtag_orig: 1,
            vtag_reply: 2,
        };
        assert_eq!(state(&ct).as_deref(), Some(xml), "SCTP {n}");
        assert!(ct_line(&ct, true).contains(&format!(" {plain} ")));
    }
    ct.orig.proto = 33;
    ct.proto_info = crate::model::ProtoInfo::Dccp {
        state: 4,
        role: 1,
        handshake_seq: 0,
    };
    assert_eq!(state(&ct).as_deref(), Some("FIN_WAIT"));
    assert!(ct_line(&ct, true).contains(" OPEN "));
}

/// An expectation's flags are elements of its XML `<meta>` (a SIP
/// registration's are PERMANENT and INACTIVE).
#[test]
fn expectation_flags_are_in_the_xml() {
    let master = tuple(6, "10.72.1.2", "10.72.2.2", ports(42001, 21));
    let ones = "255.255.255.255";
    let mut x = Expect::new(
        master,
        tuple(6, "10.72.1.2", "10.72.2.2", ports(0, 50001)),
        tuple(6, ones, ones, ports(0, 0xffff)),
    );
    x.helper = Some("ftp".try_into().unwrap());
    x.flags = 3;
    assert_eq!(
        exp_xml(&x),
        "<flow><layer3 protonum=\"2\" protoname=\"ipv4\"><expected><src>10.72.1.2</src><dst>10.72.2.2</dst></expected><mask><src>255.255.255.255</src><dst>255.255.255.255</dst></mask><master><src>10.72.1.2</src><dst>10.72.2.2</dst></master></layer3><layer4 protonum=\"6\" protoname=\"tcp\"><expected><sport>0</sport><dport>50001</dport></expected><mask><sport>0</sport><dport>65535</dport></mask><master><sport>42001</sport><dport>21</dport></master></layer4><meta><helper-name>ftp</helper-name><class>0</class><permanent/><inactive/></meta></flow>"
    );
    let meta = |flags, class| {
        let mut y = x.clone();
        y.flags = flags;
        y.class = class;
        let s = exp_xml(&y);
        s[s.find("<class>").unwrap()..].to_string()
    };
    assert_eq!(meta(4, 1), "<class>1</class><userspace/></meta></flow>");
    assert_eq!(
        meta(7, 2),
        "<class>2</class><permanent/><inactive/><userspace/></meta></flow>"
    );
    assert_eq!(meta(2, 0), "<class>0</class><inactive/></meta></flow>");
    assert!(exp_line(&x).ends_with(" PERMANENT,INACTIVE class=0 helper=ftp"));
}

/// A state past the protocol's table (a peer's, a newer kernel's) reads
/// NONE, plain and XML, as conntrackd prints it.
#[test]
fn an_unknown_state_reads_none() {
    let mut ct = unreplied(tuple(6, "10.72.1.2", "10.72.2.2", ports(1, 2)));
    let states = [
        crate::model::ProtoInfo::Tcp {
            state: 12,
            wscale_orig: 0,
            wscale_reply: 0,
            flags_orig: 0,
            flags_reply: 0,
        },
        crate::model::ProtoInfo::Sctp {
            state: 12,
            vtag_orig: 0,
            vtag_reply: 0,
        },
        crate::model::ProtoInfo::Dccp {
            state: 200,
            role: 0,
            handshake_seq: 0,
        },
    ];
    for (proto, info) in [6, 132, 33].into_iter().zip(states) {
        ct.orig.proto = proto;
        ct.proto_info = info;
        let line = ct_line(&ct, true);
        assert!(line.contains(" NONE src="), "{line}");
        assert!(ct_xml(&ct, true).contains("<state>NONE</state>"));
    }
}

/// A flow's security mark is in its XML as in its plain line, after the
/// mark (libnetfilter_conntrack's order: state, timeout, mark, secmark,
/// secctx, zone, …; reference §2.4.1).
#[test]
fn the_secmark_is_in_the_xml() {
    let mut ct = unreplied(tuple(17, "10.0.0.1", "10.0.0.2", ports(1, 53)));
    ct.mark = 5;
    ct.secmark = 7;
    ct.zone = 3;
    assert!(ct_line(&ct, true).ends_with(" mark=5 secmark=7 zone=3"));
    let x = ct_xml(&ct, true);
    assert!(
        x.ends_with("<meta direction=\"independent\"><mark>5</mark><secmark>7</secmark><zone>3</zone><unreplied/></meta></flow>"),
        "{x}"
    );
}
