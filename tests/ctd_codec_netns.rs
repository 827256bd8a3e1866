//! Round trip against the real conntrackd 1.4.7 (root; skipped otherwise):
//! conntracks and expectations (IPv4, IPv6, SNAT, DNAT, zone, mark, ICMP,
//! helper; labels, window scales, sequence adjustment, SCTP, DCCP)
//! encoded by `wire::ctd::encode`, sent over UDP from one network
//! namespace to a conntrackd running FT-FW or NOTRACK in another. Checks
//! that conntrackd acknowledges them (FT-FW: the ACK covers our last
//! sequence number), refuses none (`-s network`, also not the control
//! messages carrying ctsyncd's mark among them), shows them in its
//! external cache (`-e`,
//! `-e expect`), drops the one we DELete, and that after its commit
//! (`-c`) the kernel holds them with the NAT bindings our SNAT/DNAT/SPAT/
//! DPAT attributes asked for (`conntrack -L`, `conntrack -L expect`).

mod common;

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use ctsyncd::model::{Conntrack, Expect, L4, ProtoInfo, SeqAdj, Tuple, status};
use ctsyncd::wire::ctd::{self, Body, Message, Options};

const CONNTRACKD: &str = "/usr/sbin/conntrackd";
const PORT: u16 = 3780;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tuple(proto: u8, src: &str, sp: u16, dst: &str, dp: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        proto,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

const ESTABLISHED: u32 =
    status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;

fn established(orig: Tuple) -> Conntrack {
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(orig.inverse());
    ct.status = ESTABLISHED;
    ct.timeout = Some(600);
    if orig.proto == 6 {
        ct.proto_info = ProtoInfo::Tcp {
            state: 3,
            wscale_orig: 0,
            wscale_reply: 0,
            flags_orig: 0,
            flags_reply: 0,
        };
    }
    ct
}

fn ftp_expect(master: Tuple, data_port: u16) -> Expect {
    let v6 = master.src.is_ipv6();
    let ones = if v6 {
        ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
    } else {
        ip("255.255.255.255")
    };
    let mut x = Expect::new(
        master,
        Tuple {
            l4: L4::Ports {
                src: 0,
                dst: data_port,
            },
            ..master
        },
        Tuple {
            src: ones,
            dst: ones,
            proto: 6,
            l4: L4::Ports {
                src: 0,
                dst: 0xffff,
            },
        },
    );
    x.timeout = Some(300);
    x.helper = Some("ftp".try_into().unwrap());
    x
}

/// What we send, in order; the UDP flow 40007 is deleted again.
fn bodies() -> Vec<Body> {
    let mut out = Vec::new();
    let mut ct = established(tuple(6, "10.72.1.2", 40001, "10.72.2.2", 80));
    ct.mark = 7;
    out.push(Body::CtNew(ct));
    out.push(Body::CtNew(established(tuple(
        6,
        "fd72:1::2",
        40002,
        "fd72:2::2",
        443,
    ))));
    let mut snat = established(tuple(6, "10.72.1.2", 40003, "10.72.2.2", 80));
    snat.reply = Some(tuple(6, "10.72.2.2", 80, "10.72.2.1", 50003));
    snat.status |= status::SRC_NAT | status::SRC_NAT_DONE;
    out.push(Body::CtNew(snat));
    let mut dnat = established(tuple(6, "10.72.1.2", 40004, "10.72.1.1", 8080));
    dnat.reply = Some(tuple(6, "10.72.2.2", 80, "10.72.1.2", 40004));
    dnat.status |= status::DST_NAT | status::DST_NAT_DONE;
    dnat.seq_adj = Some([
        SeqAdj {
            correction_pos: 1000,
            offset_before: 0,
            offset_after: 3,
        },
        SeqAdj::default(),
    ]);
    out.push(Body::CtUpd(dnat));
    let mut dnat6 =
        established(tuple(6, "fd72:1::2", 40013, "fd72:1::1", 8080));
    dnat6.reply = Some(tuple(6, "fd72:2::2", 80, "fd72:1::2", 40013));
    dnat6.status |= status::DST_NAT | status::DST_NAT_DONE;
    out.push(Body::CtNew(dnat6));
    // Attributes the kernel check below does not cover: conntrackd must
    // accept them (else the entry is missing from -e).
    let mut labelled =
        established(tuple(6, "10.72.1.2", 40008, "10.72.2.2", 80));
    labelled.labels =
        Some([0b1000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    labelled.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 8,
        flags_orig: 0,
        flags_reply: 0,
    };
    out.push(Body::CtNew(labelled));
    let mut sctp =
        established(tuple(132, "10.72.1.2", 40009, "10.72.2.2", 3868));
    sctp.proto_info = ProtoInfo::Sctp {
        state: 3,
        vtag_orig: 0x1234_5678,
        vtag_reply: 0x9abc_def0,
    };
    out.push(Body::CtNew(sctp));
    let mut dccp =
        established(tuple(33, "fd72:1::2", 40012, "fd72:2::2", 5004));
    dccp.proto_info = ProtoInfo::Dccp {
        state: 4,
        role: 1,
        handshake_seq: 0,
    };
    out.push(Body::CtNew(dccp));
    let mut zoned = established(tuple(6, "10.72.1.2", 40005, "10.72.2.2", 80));
    zoned.zone = 9;
    out.push(Body::CtNew(zoned));
    let mut snat6 = established(tuple(6, "fd72:1::2", 40006, "fd72:2::2", 80));
    snat6.reply = Some(tuple(6, "fd72:2::2", 80, "fd72:2::1", 50006));
    snat6.status |= status::SRC_NAT | status::SRC_NAT_DONE;
    out.push(Body::CtNew(snat6));
    let udp = tuple(17, "10.72.1.2", 40007, "10.72.2.2", 53);
    out.push(Body::CtNew(established(udp)));
    let mut ping = established(Tuple {
        src: ip("10.72.1.2"),
        dst: ip("10.72.2.2"),
        proto: 1,
        l4: L4::Icmp {
            kind: 8,
            code: 0,
            id: 0x4242,
        },
    });
    ping.timeout = Some(30);
    out.push(Body::CtNew(ping));
    for (src, dst, sport) in [
        ("10.72.1.2", "10.72.2.2", 40010),
        ("fd72:1::2", "fd72:2::2", 40011),
    ] {
        let control = tuple(6, src, sport, dst, 21);
        let mut ct = established(control);
        ct.status |= status::HELPER;
        ct.helper = Some("ftp".try_into().unwrap());
        out.push(Body::CtNew(ct));
        out.push(Body::ExpNew(ftp_expect(control, 50000)));
    }
    // Expectations whose flags or class are not 0 (a SIP registration's
    // flags are PERMANENT|INACTIVE, an RTP expectation's class is 1) ...
    let mut dels = Vec::new();
    for (sport, flags, class) in [(40014, 3, 0), (40015, 0, 1)] {
        let master = tuple(17, "10.72.1.2", sport, "10.72.2.2", 5060);
        let mut x = ftp_expect(master, 50000);
        x.mask.proto = 17;
        x.helper = Some("sip".try_into().unwrap());
        x.flags = flags;
        x.class = class;
        dels.push(Body::ExpDel(Expect::new(x.master, x.tuple, x.mask)));
        out.push(Body::ExpNew(x));
    }
    // A mark that goes back to 0: the UPD must say so (conntrackd's update
    // keeps what a message leaves out).
    let mut marked = established(tuple(6, "10.72.1.2", 40016, "10.72.2.2", 80));
    marked.mark = 7;
    out.push(Body::CtNew(marked.clone()));
    marked.mark = 0;
    out.push(Body::CtUpd(marked));
    // DELs built from the key alone, as `sync::ctd::tx` builds them once
    // the entry is gone (... whose flags and class it cannot know).
    out.push(Body::CtDel(Conntrack::new(udp)));
    out.extend(dels);
    out
}

/// Our messages packed into datagrams the way conntrackd packs them;
/// the first carries HELLO (FT-FW: "I (re)started"). Among them, control
/// messages with ctsyncd's mark (what a ctsyncd in `auto` sends): an
/// ALIVE, and in FT-FW an ACK (NOTRACK has none), each followed by data
/// in the same datagram.
fn datagrams(first_seq: u32, ftfw: bool) -> (Vec<Vec<u8>>, u32) {
    let mut all = bodies();
    all.insert(2, Body::Alive);
    if ftfw {
        // Acknowledges nothing conntrackd sent (its numbers are time()).
        all.insert(5, Body::Ack { from: 1, to: 1 });
    }
    let mut out = vec![Vec::new()];
    let mut seq = first_seq;
    for body in all {
        let control = matches!(body, Body::Alive | Body::Ack { .. });
        let msg = Message {
            seq,
            hello: seq == first_seq,
            hello_back: false,
            body,
        };
        let mut buf = [0u8; 1400];
        let mut n = ctd::encode(&msg, Options::default(), &mut buf).unwrap();
        if control {
            n = ctd::append_mark(&mut buf, n).unwrap();
            assert!(ctd::carries_mark(&buf[..n]));
        }
        if out.last().unwrap().len() + n > 1400 {
            out.push(Vec::new());
        }
        out.last_mut().unwrap().extend_from_slice(&buf[..n]);
        seq += 1;
    }
    (out, seq - 1)
}

fn conf(dir: &str, mode: &str) -> String {
    format!(
        "General {{
    HashSize 16384
    HashLimit 65536
    LogFile {dir}/conntrackd.log
    Syslog off
    Systemd off
    LockFile {dir}/lock
    UNIX {{
        Path {dir}/ctl
    }}
}}
Sync {{
    Mode {mode} {{ }}
    UDP {{
        IPv4_address 10.9.0.2
        IPv4_Destination_Address 10.9.0.1
        Port {PORT}
        Interface s0
        Checksum on
    }}
    Options {{
        ExpectationSync On
    }}
}}
"
    )
}

/// The line of `text` that contains `key`, if any.
fn line_with<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(key))
}

fn expect_line<'a>(text: &'a str, key: &str, parts: &[&str]) -> &'a str {
    let line = line_with(text, key)
        .unwrap_or_else(|| panic!("no line with {key:?} in:\n{text}"));
    for p in parts {
        assert!(line.contains(p), "{p:?} missing in {line:?}");
    }
    line
}

fn run(mode: &str, tag: &str) {
    if !std::path::Path::new(CONNTRACKD).exists() {
        eprintln!("SKIPPED: {CONNTRACKD} is not installed");
        return;
    }
    let Some((a, b)) = common::pair(tag) else {
        return;
    };
    let dir = format!("/tmp/ctsyncd-ctdrt-{}-{tag}", std::process::id());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf_path = format!("{dir}/conntrackd.conf");
    std::fs::write(&conf_path, conf(&dir, mode)).unwrap();
    let _daemon = b.spawn(&[CONNTRACKD, "-C", &conf_path]);
    let ctl = |args: &str| b.sh(&format!("{CONNTRACKD} -C {conf_path} {args}"));
    // At most 10 s for its control socket.
    for tries in 0.. {
        if std::path::Path::new(&format!("{dir}/ctl")).exists() {
            break;
        }
        assert!(
            tries < 200,
            "conntrackd did not start: {}",
            std::fs::read_to_string(format!("{dir}/conntrackd.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Send from the other namespace, on the port conntrackd answers to.
    let first_seq = 0x7000_0000;
    let (grams, last_seq) = datagrams(first_seq, mode == "FTFW");
    let replies: Vec<Message> = a.enter(|| {
        let sock = UdpSocket::bind(("10.9.0.1", PORT)).unwrap();
        for g in &grams {
            sock.send_to(g, ("10.9.0.2", PORT)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        // conntrackd answers within its 1-s alive period: listen for
        // about 2.6 s (13 empty waits of 200 ms; 100 reads at most).
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        let mut quiet = 0;
        for _ in 0..100 {
            let Ok(n) = sock.recv(&mut buf) else {
                quiet += 1;
                if quiet == 13 {
                    break;
                }
                continue;
            };
            for m in ctd::messages(&buf[..n], Options::default()) {
                got.push(m.expect("conntrackd's reply decodes"));
            }
        }
        got
    });
    assert!(!replies.is_empty(), "{mode}: conntrackd sent nothing");
    if mode == "FTFW" {
        // Our HELLO is answered, and everything we sent is acknowledged.
        assert!(replies[0].hello_back, "{:?}", replies[0]);
        assert!(
            replies.iter().any(|m| matches!(
                m.body,
                Body::Ack { from, to } if from <= first_seq && to == last_seq
            )),
            "no ACK up to {last_seq:#x}: {replies:?}"
        );
    } else {
        assert!(replies.iter().all(|m| m.body == Body::Alive));
    }

    // Nothing we sent was refused (every counter of `-s network`'s
    // receive block is zero).
    let stats = ctl("-s network");
    let refused: Vec<&str> = stats
        .lines()
        .filter(|l| {
            ["Malformed", "Wrong", "Bad", "Truncated"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect();
    assert!(refused.len() >= 6, "{stats}");
    for l in refused {
        assert_eq!(l.split_whitespace().last(), Some("0"), "{stats}");
    }
    let ext = ctl("-e");
    expect_line(
        &ext,
        "sport=40001 ",
        &[
            "tcp ",
            "ESTABLISHED src=10.72.1.2 dst=10.72.2.2 sport=40001 dport=80",
            "[ASSURED]",
            "mark=7",
        ],
    );
    expect_line(
        &ext,
        "sport=40002 ",
        &["src=fd72:1::2 dst=fd72:2::2 sport=40002 dport=443"],
    );
    expect_line(&ext, "sport=40005 ", &["zone=9"]);
    let unmarked = expect_line(&ext, "sport=40016 ", &["ESTABLISHED"]);
    assert!(!unmarked.contains("mark=7"), "mark kept: {unmarked}");
    // conntrackd read our little-endian ICMP id as the id we meant.
    expect_line(
        &ext,
        "icmp",
        &["src=10.72.1.2 dst=10.72.2.2 type=8 code=0 id=16962"],
    );
    expect_line(&ext, "sport=40010 ", &["helper=ftp"]);
    expect_line(&ext, "sport=40004 ", &["dst=10.72.1.1 sport=40004"]);
    expect_line(&ext, "sport=40013 ", &["dst=fd72:1::1 sport=40013"]);
    expect_line(&ext, "sport=40008 ", &["ESTABLISHED"]);
    expect_line(&ext, "sport=40009 ", &["sctp", "dport=3868"]);
    expect_line(&ext, "sport=40012 ", &["dccp", "src=fd72:1::2"]);
    expect_line(&ext, "sport=40011 ", &["helper=ftp", "fd72:1::2"]);
    assert!(
        line_with(&ext, "sport=40007 ").is_none(),
        "DEL ignored:\n{ext}"
    );
    let exp = ctl("-e expect");
    for sport in ["sport=40014 ", "sport=40015 "] {
        assert!(
            line_with(&exp, sport).is_none(),
            "expectation DEL ignored ({sport}):\n{exp}"
        );
    }
    expect_line(
        &exp,
        "master-src=10.72.1.2",
        &[
            "proto=6 src=10.72.1.2 dst=10.72.2.2 sport=0 dport=50000",
            "mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535",
            "master-src=10.72.1.2 master-dst=10.72.2.2 sport=40010 dport=21",
            "helper=ftp",
        ],
    );
    expect_line(
        &exp,
        "master-src=fd72:1::2",
        &["dport=50000", "sport=40011 dport=21", "helper=ftp"],
    );

    // Into the kernel: the NAT bindings are what our attributes said.
    ctl("-c");
    ctl("-c expect");
    let kernel = b.sh("conntrack -L 2>/dev/null");
    expect_line(
        &kernel,
        "sport=40003 ",
        &["src=10.72.2.2 dst=10.72.2.1 sport=80 dport=50003"],
    );
    expect_line(
        &kernel,
        "sport=40004 ",
        &[
            "dst=10.72.1.1 sport=40004 dport=8080",
            "src=10.72.2.2 dst=10.72.1.2 sport=80 dport=40004",
        ],
    );
    expect_line(
        &kernel,
        "sport=40013 ",
        &["src=fd72:2::2 dst=fd72:1::2 sport=80 dport=40013"],
    );
    expect_line(
        &kernel,
        "sport=40006 ",
        &["src=fd72:2::2 dst=fd72:2::1 sport=80 dport=50006"],
    );
    expect_line(&kernel, "sport=40005 ", &["zone=9"]);
    let unmarked = expect_line(&kernel, "sport=40016 ", &["ESTABLISHED"]);
    assert!(!unmarked.contains("mark=7"), "mark kept: {unmarked}");
    expect_line(&kernel, "sport=40001 ", &["ESTABLISHED", "mark=7"]);
    expect_line(&kernel, "sport=40010 ", &["helper=ftp"]);
    // conntrack(8) lists IPv4 expectations unless told the family.
    let kexp = b.sh(
        "conntrack -L expect 2>/dev/null; conntrack -L expect -f ipv6 2>/dev/null",
    );
    expect_line(&kexp, "sport=40010", &["dport=50000", "ftp"]);
    expect_line(&kexp, "sport=40011", &["dport=50000", "ftp"]);
    drop(_daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn conntrackd_ftfw_accepts_what_we_encode() {
    run("FTFW", "ctdf");
}

#[test]
fn conntrackd_notrack_accepts_what_we_encode() {
    run("NOTRACK", "ctdn");
}
