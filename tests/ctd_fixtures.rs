//! Datagrams of the real conntrackd 1.4.7, recorded by
//! tests/fixtures/ctd/capture.py (two daemons in network namespaces, a
//! firewall with NAT, zones, marks and the FTP helper; see its header for
//! the flows), decoded by `wire::ctd` to the values the flows had, and
//! re-encoded to the same bytes. Then the same datagrams, mutated a few
//! thousand times with a fixed seed, must never panic the decoder and
//! every message it accepts must survive encode → decode unchanged (what
//! fuzz/fuzz_targets/ctd_datagram.rs checks without a bound). Unprivileged.

use std::net::IpAddr;

use ctsyncd::model::{Conntrack, Expect, L4, ProtoInfo, Tuple, status};
use ctsyncd::wire::ctd::{self, Body, Message, Options};

/// One captured datagram.
struct Datagram {
    /// `fw->peer` or `peer->fw`.
    dir: String,
    /// The capture phase it fell into.
    phase: String,
    bytes: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex line");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load(run: &str) -> Vec<Datagram> {
    let path = format!(
        "{}/tests/fixtures/ctd/{run}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let (mut dir, mut phase) = (String::new(), String::new());
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("# phase: ") {
            phase = p.to_string();
        } else if let Some(c) = line.strip_prefix("# ") {
            if let Some(d) = c.split(' ').nth(1).filter(|d| d.contains("->")) {
                dir = d.to_string();
            }
        } else if !line.is_empty() {
            out.push(Datagram {
                dir: dir.clone(),
                phase: phase.clone(),
                bytes: hex(line),
            });
        }
    }
    assert!(out.len() > 20, "{run}: only {} datagrams", out.len());
    out
}

/// A decoded message with its direction, phase and wire bytes.
struct Seen {
    dir: String,
    phase: String,
    msg: Message,
    raw: Vec<u8>,
}

/// Every message of a run; none may fail to decode.
fn decode_all(run: &str) -> Vec<Seen> {
    let mut all = Vec::new();
    for d in load(run) {
        assert!(ctd::is_conntrackd(&d.bytes), "{run}: sniff");
        let mut off = 0;
        for m in ctd::messages(&d.bytes, Options::default()) {
            let msg = m.unwrap_or_else(|e| panic!("{run} {}: {e}", d.phase));
            let len = usize::from(u16::from_be_bytes([
                d.bytes[off + 2],
                d.bytes[off + 3],
            ]));
            all.push(Seen {
                dir: d.dir.clone(),
                phase: d.phase.clone(),
                msg,
                raw: d.bytes[off..off + len].to_vec(),
            });
            off += len;
        }
        assert_eq!(off, d.bytes.len(), "{run}: bytes after the messages");
    }
    all
}

fn kind(b: &Body) -> &'static str {
    match b {
        Body::CtNew(_) => "CtNew",
        Body::CtUpd(_) => "CtUpd",
        Body::CtDel(_) => "CtDel",
        Body::ExpNew(_) => "ExpNew",
        Body::ExpUpd(_) => "ExpUpd",
        Body::ExpDel(_) => "ExpDel",
        Body::Ack { .. } => "Ack",
        Body::Nack { .. } => "Nack",
        Body::Resync => "Resync",
        Body::Alive => "Alive",
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ct_of(b: &Body) -> Option<&Conntrack> {
    match b {
        Body::CtNew(c) | Body::CtUpd(c) | Body::CtDel(c) => Some(c),
        _ => None,
    }
}

fn exp_of(b: &Body) -> Option<&Expect> {
    match b {
        Body::ExpNew(x) | Body::ExpUpd(x) | Body::ExpDel(x) => Some(x),
        _ => None,
    }
}

/// The conntrack messages about the flow whose original source port is
/// `sport`, in capture order.
fn flow(all: &[Seen], sport: u16) -> Vec<(&'static str, &Conntrack)> {
    all.iter()
        .filter_map(|s| Some((kind(&s.msg.body), ct_of(&s.msg.body)?)))
        .filter(
            |(_, c)| matches!(c.orig.l4, L4::Ports { src, .. } if src == sport),
        )
        .collect()
}

/// The flow's last state before it was deleted, and that it was deleted.
fn last_update(all: &[Seen], sport: u16) -> Conntrack {
    let msgs = flow(all, sport);
    assert!(
        msgs.iter().any(|(k, _)| *k == "CtDel"),
        "flow {sport}: no CT_DEL"
    );
    msgs.iter()
        .rev()
        .find(|(k, _)| *k != "CtDel")
        .map(|(_, c)| (*c).clone())
        .unwrap_or_else(|| panic!("flow {sport}: no CT_NEW/UPD"))
}

fn tcp(src: &str, sp: u16, dst: &str, dp: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        proto: 6,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

const SEEN: u32 = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;

#[test]
fn every_captured_message_decodes_and_re_encodes_to_the_same_bytes() {
    let mut kinds = std::collections::BTreeMap::new();
    for run in ["ftfw", "notrack", "expect"] {
        for s in decode_all(run) {
            let mut buf = [0u8; 4096];
            let n = ctd::encode(&s.msg, Options::default(), &mut buf).unwrap();
            let mut ours = buf[..n].to_vec();
            // An UPD says a mark of 0 (conntrackd keeps what an UPD leaves
            // out), which conntrackd leaves out until its entry holds one.
            if let Body::CtUpd(ct) = &s.msg.body
                && ct.mark == 0
                && ours.len() == s.raw.len() + 8
            {
                let at = (8..ours.len())
                    .step_by(4)
                    .find(|&i| ours[i..i + 8] == [0, 8, 0, 7, 0, 0, 0, 0])
                    .expect("mark 0");
                ours.drain(at..at + 8);
                ours[2..4].copy_from_slice(&(n as u16 - 8).to_be_bytes());
            }
            assert_eq!(ours, s.raw, "{run} {}: {:?}", s.phase, s.msg);
            let flags = (s.msg.hello, s.msg.hello_back);
            *kinds.entry((run, kind(&s.msg.body), flags)).or_insert(0) += 1;
        }
    }
    // Every message type conntrackd sent in these runs, and the HELLO
    // combinations of its handshake (§4.7).
    for want in [
        ("ftfw", "Resync", (true, false)),
        ("ftfw", "Ack", (true, true)),
        ("ftfw", "Ack", (false, true)),
        ("ftfw", "Ack", (false, false)),
        ("ftfw", "Nack", (false, false)),
        ("ftfw", "Resync", (false, false)),
        ("ftfw", "CtNew", (false, false)),
        ("ftfw", "CtUpd", (false, false)),
        ("ftfw", "CtDel", (false, false)),
        ("ftfw", "Alive", (false, false)),
        ("notrack", "Alive", (false, false)),
        ("notrack", "Resync", (false, false)),
        ("notrack", "CtUpd", (false, false)),
        ("notrack", "CtDel", (false, false)),
        ("expect", "Alive", (true, false)),
        ("expect", "ExpNew", (false, false)),
        ("expect", "ExpDel", (false, false)),
    ] {
        assert!(kinds.contains_key(&want), "no {want:?} in {kinds:?}");
    }
}

#[test]
fn the_handshake_acknowledges_the_hello() {
    let all = decode_all("ftfw");
    // fw starts with StartupResync: RESYNC|HELLO (0x22) first.
    let first = &all[0];
    assert_eq!(first.dir, "fw->peer");
    assert_eq!(first.raw[..2], [0x1a, 0x22]);
    assert_eq!(first.msg.body, Body::Resync);
    // The peer answers HELLO|HELLO_BACK|ACK (0x68) for exactly that
    // message; fw's next says HELLO_BACK (0x48) and no HELLO any more.
    let answer = all.iter().find(|s| s.dir == "peer->fw").unwrap();
    assert_eq!(answer.raw[..2], [0x1a, 0x68]);
    assert_eq!(
        answer.msg.body,
        Body::Ack {
            from: first.msg.seq,
            to: first.msg.seq
        }
    );
    let back = all.iter().filter(|s| s.dir == "fw->peer").nth(1).unwrap();
    assert_eq!(back.raw[..2], [0x1a, 0x48]);
    assert!(!back.msg.hello && back.msg.hello_back);
    assert_eq!(back.msg.seq, first.msg.seq + 1);
    // Sequence numbers of each sender go up by one per message.
    for dir in ["fw->peer", "peer->fw"] {
        let seqs: Vec<u32> = all
            .iter()
            .filter(|s| s.dir == dir)
            .map(|s| s.msg.seq)
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{dir}: {seqs:?}");
    }
}

#[test]
fn the_nack_names_the_dropped_messages_and_they_are_resent() {
    let all = decode_all("ftfw");
    let (i, from, to) = all
        .iter()
        .enumerate()
        .find_map(|(i, s)| match s.msg.body {
            Body::Nack { from, to } => Some((i, from, to)),
            _ => None,
        })
        .expect("a NACK");
    assert_eq!(all[i].dir, "peer->fw");
    // The range is what fw sent while the peer dropped the link (the
    // capture sees them before the peer's nft drops them).
    let dropped: Vec<&Seen> = all
        .iter()
        .filter(|s| s.dir == "fw->peer" && (from..=to).contains(&s.msg.seq))
        .collect();
    assert_eq!(dropped.len() as u32, to - from + 1);
    assert!(dropped.iter().all(|s| s.phase.starts_with("nack")));
    assert!(dropped.iter().any(|s| {
        ct_of(&s.msg.body).is_some_and(|c| {
            c.orig == tcp("10.71.1.2", 41011, "10.71.2.2", 7001)
        })
    }));
    // fw resends flow 41011 with new sequence numbers after the NACK.
    assert!(all[i..].iter().any(|s| s.dir == "fw->peer"
        && s.msg.seq > to
        && ct_of(&s.msg.body).is_some_and(|c| c.orig.l4
            == L4::Ports {
                src: 41011,
                dst: 7001
            })));
}

#[test]
fn plain_tcp_flows_ipv4_and_ipv6() {
    let all = decode_all("ftfw");
    for (sport, orig) in [
        (41001, tcp("10.71.1.2", 41001, "10.71.2.2", 7001)),
        (41002, tcp("fd71:1::2", 41002, "fd71:2::2", 7001)),
    ] {
        let states: Vec<Option<u8>> = flow(&all, sport)
            .iter()
            .map(|(_, c)| c.tcp_state())
            .collect();
        // ESTABLISHED, then the close (FIN_WAIT/TIME_WAIT...).
        assert!(states.contains(&Some(3)), "{sport}: {states:?}");
        assert!(states.contains(&Some(7)), "{sport}: {states:?}");
        let ct = last_update(&all, sport);
        assert_eq!(ct.orig, orig);
        assert_eq!(ct.reply, Some(orig.inverse()));
        assert_eq!(ct.status & SEEN, SEEN);
        assert_eq!((ct.zone, ct.mark, ct.helper.as_deref()), (0, 0, None));
        assert!(matches!(ct.timeout, Some(1..=120)), "{:?}", ct.timeout);
        assert!(matches!(
            ct.proto_info,
            ProtoInfo::Tcp {
                state: 7,
                wscale_orig: 0,
                wscale_reply: 0,
                ..
            }
        ));
    }
}

#[test]
fn snat_and_dnat_become_the_reply_tuple() {
    let all = decode_all("ftfw");
    // SNAT to an address and a port from 40000-40100.
    for (sport, orig, to) in [
        (
            41003,
            tcp("10.71.1.2", 41003, "10.71.2.2", 7003),
            ip("10.71.2.1"),
        ),
        (
            41004,
            tcp("fd71:1::2", 41004, "fd71:2::2", 7003),
            ip("fd71:2::1"),
        ),
    ] {
        let ct = last_update(&all, sport);
        let r = ct.reply.unwrap();
        assert_eq!(ct.orig, orig);
        assert_eq!((r.src, r.dst), (orig.dst, to), "{sport}");
        let L4::Ports { src: 7003, dst } = r.l4 else {
            panic!("{r:?}")
        };
        assert!((40000..=40100).contains(&dst), "{sport}: port {dst}");
        assert_ne!(ct.status & status::SRC_NAT_DONE, 0);
        assert_eq!(ct.snat().unwrap().addr, to);
    }
    // DNAT 10.71.1.1:8080 -> 10.71.2.2:7002 (and IPv6).
    for (sport, orig, to) in [
        (
            41005,
            tcp("10.71.1.2", 41005, "10.71.1.1", 8080),
            tcp("10.71.2.2", 7002, "10.71.1.2", 41005),
        ),
        (
            41006,
            tcp("fd71:1::2", 41006, "fd71:1::1", 8080),
            tcp("fd71:2::2", 7002, "fd71:1::2", 41006),
        ),
    ] {
        let ct = last_update(&all, sport);
        assert_eq!((ct.orig, ct.reply), (orig, Some(to)));
        assert_ne!(ct.status & status::DST_NAT, 0);
        assert_eq!(ct.snat(), None);
    }
    // UDP, SNAT of the address only.
    let ct = last_update(&all, 41007);
    assert_eq!(ct.orig.proto, 17);
    assert_eq!(ct.proto_info, ProtoInfo::None);
    assert_eq!(ct.reply.unwrap().dst, ip("10.71.2.1"), "address translated");
    assert_eq!(ct.snat().unwrap().port, None, "port kept");
}

#[test]
fn zone_mark_and_labels_arrive() {
    let all = decode_all("ftfw");
    let zoned = last_update(&all, 41008);
    assert_eq!(zoned.zone, 5);
    assert_eq!(zoned.orig, tcp("10.71.1.2", 41008, "10.71.2.2", 7005));
    // The DEL carries the zone too: it is part of the identity.
    assert!(flow(&all, 41008).iter().all(|(_, c)| c.zone == 5));
    assert_eq!(last_update(&all, 41009).mark, 0x42);
    // Labels 1 and 40 (nft `ct label set`): bit n%8 of byte n/8.
    let mut labels = [0u8; 16];
    labels[0] = 1 << 1;
    labels[5] = 1 << 0;
    assert_eq!(last_update(&all, 41010).labels, Some(labels));
}

#[test]
fn icmp_ids_come_through_conntrackd_byte_order() {
    let all = decode_all("ftfw");
    let icmp: Vec<&Conntrack> = all
        .iter()
        .filter_map(|s| ct_of(&s.msg.body))
        .filter(|c| matches!(c.orig.l4, L4::Icmp { .. }))
        .collect();
    let v4 = icmp.iter().find(|c| c.orig.proto == 1).unwrap();
    assert_eq!(
        v4.orig.l4,
        L4::Icmp {
            kind: 8,
            code: 0,
            id: 0x1234
        }
    );
    assert_eq!(v4.orig.src, ip("10.71.1.2"));
    // SNAT of the echo request to 10.71.2.1.
    let r = v4.reply.unwrap();
    assert_eq!((r.src, r.dst), (ip("10.71.2.2"), ip("10.71.2.1")));
    assert_eq!(
        r.l4,
        L4::Icmp {
            kind: 0,
            code: 0,
            id: 0x1234
        }
    );
    let v6 = icmp.iter().find(|c| c.orig.proto == 58).unwrap();
    assert_eq!(
        v6.orig.l4,
        L4::Icmp {
            kind: 128,
            code: 0,
            id: 0x2345
        }
    );
    assert_eq!(v6.reply, Some(v6.orig.inverse()));
}

#[test]
fn notrack_has_no_acknowledgements() {
    let all = decode_all("notrack");
    assert!(all.iter().all(|s| !s.msg.hello && !s.msg.hello_back));
    assert!(
        !all.iter().any(|s| matches!(
            s.msg.body,
            Body::Ack { .. } | Body::Nack { .. }
        ))
    );
    let resync = all.iter().position(|s| s.msg.body == Body::Resync).unwrap();
    assert_eq!(all[resync].dir, "peer->fw");
    assert_eq!(all[resync].raw.len(), 16);
    // The bulk answer carries the flows again.
    assert!(all[resync..].iter().any(|s| s.dir == "fw->peer"
        && ct_of(&s.msg.body).is_some_and(
            |c| c.orig == tcp("10.71.1.2", 41001, "10.71.2.2", 7001)
        )));
    let ct = last_update(&all, 41003);
    assert_eq!(ct.reply.unwrap().dst, ip("10.71.2.1"));
}

#[test]
fn ftp_expectations_and_related_flows() {
    let all = decode_all("expect");
    let exps: Vec<(&str, &Expect)> = all
        .iter()
        .filter_map(|s| Some((kind(&s.msg.body), exp_of(&s.msg.body)?)))
        .collect();
    let control = tcp("10.71.1.2", 41021, "10.71.2.2", 21);
    let plain: Vec<_> =
        exps.iter().filter(|(_, x)| x.master == control).collect();
    assert_eq!(
        plain.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ["ExpNew", "ExpDel"]
    );
    let x = plain[0].1;
    let L4::Ports {
        src: 0,
        dst: data_port,
    } = x.tuple.l4
    else {
        panic!("{x:?}")
    };
    assert!((50000..=50010).contains(&data_port));
    assert_eq!(
        (x.tuple.src, x.tuple.dst),
        (ip("10.71.1.2"), ip("10.71.2.2"))
    );
    assert_eq!(x.mask, tcp("255.255.255.255", 0, "255.255.255.255", 0xffff));
    assert_eq!((x.flags, x.class, x.zone), (0, 0, 0));
    assert_eq!(x.helper.as_deref(), Some("ftp"));
    assert!(matches!(x.timeout, Some(250..=300)));
    assert_eq!((x.nat, x.func.as_deref()), (None, None));
    // With DNAT the expectation carries the NAT tuple and nf_nat_ftp's
    // expectation function.
    let nat_control = tcp("10.71.1.2", 41022, "10.71.1.1", 2121);
    let (_, nx) = exps.iter().find(|(_, x)| x.master == nat_control).unwrap();
    let nat = nx.nat.unwrap();
    assert_eq!(nat.dir, 0);
    assert_eq!(nat.tuple.proto, 6);
    let L4::Ports { dst: nat_dport, .. } = nx.tuple.l4 else {
        panic!()
    };
    assert_eq!(
        nat.tuple.l4,
        L4::Ports {
            src: nat_dport,
            dst: 0
        }
    );
    assert_eq!(nx.func.as_deref(), Some("nat-follow-master"));
    // The control connections run the helper; the data connections name
    // them as master.
    for (ctl, sport) in [(control, 41021), (nat_control, 41022)] {
        let c = last_update(&all, sport);
        assert_eq!(c.helper.as_deref(), Some("ftp"));
        assert_ne!(c.status & status::HELPER, 0);
        let data: Vec<&Conntrack> = all
            .iter()
            .filter_map(|s| ct_of(&s.msg.body))
            .filter(|c| c.master == Some(ctl))
            .collect();
        assert!(!data.is_empty(), "no data connection of {sport}");
        assert!(data.iter().all(|d| d.status & status::EXPECTED != 0));
    }
    // The DNATed control connection: reply from 10.71.2.222:21.
    let c = last_update(&all, 41022);
    assert_eq!(c.reply, Some(tcp("10.71.2.222", 21, "10.71.1.2", 41022)));
}

/// xorshift64*: a fixed, dependency-free sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What the fuzz target checks: never a panic; every accepted message
/// encodes, and decodes back to itself (with either NAT byte order);
/// stream framing agrees.
fn check(data: &[u8]) -> (usize, usize) {
    let (mut accepted, mut refused) = (0, 0);
    let old = Options {
        nat_order: ctd::NatByteOrder::V142,
        send_timeout: true,
    };
    let mut buf = vec![0u8; 70_000];
    for opts in [Options::default(), old] {
        for m in ctd::messages(data, opts) {
            let Ok(m) = m else {
                refused += 1;
                continue;
            };
            let n = ctd::encode(&m, opts, &mut buf).unwrap();
            let again: Vec<_> = ctd::messages(&buf[..n], opts).collect();
            assert_eq!(again, vec![Ok(m.clone())], "{data:02x?}");
            assert_eq!(ctd::stream_message_len(&buf[..n]), Some(Ok(n)));
            accepted += 1;
        }
    }
    if let Some(Ok(n)) = ctd::stream_message_len(data) {
        assert!(n >= ctd::HEADER_LEN && n <= data.len());
    }
    (accepted, refused)
}

#[test]
fn mutated_captures_never_panic_and_accepted_messages_round_trip() {
    let corpus: Vec<Vec<u8>> = ["ftfw", "notrack", "expect"]
        .iter()
        .flat_map(|r| load(r))
        .map(|d| d.bytes)
        .collect();
    let mut rng = Rng(0x5eed_c7d0_2026);
    let (mut accepted, mut refused, mut rounds) = (0, 0, 0);
    for _ in 0..5000 {
        let mut d = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(d.len());
            match rng.below(6) {
                // A random byte (attribute lengths and numbers included).
                0 | 1 => d[at] = rng.next() as u8,
                2 => d[at] ^= 1 << rng.below(8),
                3 => d.truncate(at),
                // Another message's bytes spliced in.
                4 => {
                    let other = &corpus[rng.below(corpus.len())];
                    let from = rng.below(other.len());
                    let n = rng.below(64).min(other.len() - from);
                    let tail = d.split_off(at.min(d.len()));
                    d.extend_from_slice(&other[from..from + n]);
                    d.extend(tail);
                }
                _ => d.insert(at.min(d.len()), rng.next() as u8),
            }
            if d.is_empty() {
                break;
            }
        }
        let (a, r) = check(&d);
        (accepted, refused, rounds) = (accepted + a, refused + r, rounds + 1);
    }
    // Both paths ran many times: messages the mutations spared (or made
    // differently valid) round-trip; the others were refused, not crashed
    // on.
    assert_eq!(rounds, 5000);
    assert!(accepted > 1000 && refused > 1000, "{accepted} / {refused}");
}
