//! `Filter From Kernelspace`: the compiled BPF program (filter::bpf) run
//! in a cBPF interpreter on recorded kernel messages and on generated
//! event messages, against the user-space filter's verdict; and, as root,
//! attached to a real event socket in a network namespace.

// Deadlines here are wall-clock bounds on real sockets, not logic.
#![allow(clippy::disallowed_methods)]

#[path = "kernel_filter/cbpf.rs"]
mod cbpf;
mod common;
#[path = "kernel_filter/size_limit.rs"]
mod size_limit;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ctsyncd::config::{AddressRule, Cidr, Filter, Logic, Rule, TcpState};
use ctsyncd::filter::{self, bpf};
use ctsyncd::kernel::codec::{self, Kind, Object, Received};
use ctsyncd::kernel::commit::{self, CommitRules};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::{Conntrack, L4, ProtoInfo, Tuple};

fn program(f: &Filter) -> Vec<bpf::Insn> {
    let p = bpf::compile(f, bpf::Endian::host()).expect("compiles");
    assert!(!p.without_address);
    p.insns
}

fn keeps(prog: &[bpf::Insn], msg: &[u8]) -> bool {
    match cbpf::run(prog, msg) {
        bpf::KEEP => true,
        bpf::DROP => false,
        other => panic!("program returned {other}"),
    }
}

fn cidr(s: &str, prefix: u8) -> Cidr {
    Cidr {
        addr: s.parse().unwrap(),
        prefix,
    }
}

fn address(logic: Logic, items: Vec<Cidr>) -> Option<AddressRule> {
    Some(AddressRule {
        logic,
        items: items.into(),
    })
}

/// A ctnetlink event as the kernel lays it out (headers in host order,
/// nests flagged NLA_F_NESTED), written independently of the codec under
/// test: both tuples (the reply one as given, e.g. NATed), the status and
/// the TCP state (DESTROY events carry it too: seen on Linux 6.18, and in
/// the recorded ct_destroy_tcp.bin).
fn event(ct: &Conntrack, destroy: bool) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    fn nest(out: &mut Vec<u8>, ty: u16, inner: Vec<u8>) {
        attr(out, ty | 0x8000, &inner);
    }
    fn ip(a: IpAddr) -> Vec<u8> {
        match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }
    fn tuple(t: &Tuple) -> Vec<u8> {
        let (s, d) = if t.src.is_ipv4() { (1, 2) } else { (3, 4) };
        let mut ips = Vec::new();
        attr(&mut ips, s, &ip(t.src));
        attr(&mut ips, d, &ip(t.dst));
        let mut proto = Vec::new();
        attr(&mut proto, 1, &[t.proto]);
        if let L4::Ports { src, dst } = t.l4 {
            attr(&mut proto, 2, &src.to_be_bytes());
            attr(&mut proto, 3, &dst.to_be_bytes());
        }
        let mut out = Vec::new();
        nest(&mut out, 1, ips);
        nest(&mut out, 2, proto);
        out
    }
    let mut attrs = Vec::new();
    nest(&mut attrs, 1, tuple(&ct.orig));
    nest(&mut attrs, 2, tuple(&ct.reply_tuple()));
    attr(&mut attrs, 3, &ct.status.to_be_bytes());
    if let Some(state) = ct.tcp_state() {
        let mut tcp = Vec::new();
        attr(&mut tcp, 1, &[state]);
        let mut info = Vec::new();
        nest(&mut info, 1, tcp);
        nest(&mut attrs, 4, info);
    }
    let mut msg = Vec::new();
    msg.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
    let kind: u16 = if destroy { 2 } else { 0 };
    msg.extend_from_slice(&(1u16 << 8 | kind).to_ne_bytes());
    msg.extend_from_slice(&[0; 10]);
    msg.push(if ct.orig.src.is_ipv4() { 2 } else { 10 });
    msg.extend_from_slice(&[0, 0, 0]);
    msg.extend_from_slice(&attrs);
    msg
}

/// The conntrack a message carries, through the daemon's own decoder, and
/// whether the message is a DESTROY.
fn decoded(msg: &[u8]) -> Option<(Conntrack, bool)> {
    let mut all: Vec<_> = codec::messages(msg).collect();
    assert_eq!(all.len(), 1);
    match all.remove(0) {
        Ok(Received::Msg(m)) => match m.object {
            Object::Ct(c) => Some((c, m.kind == Kind::Destroy)),
            Object::Exp(_) => None,
        },
        other => panic!("{other:?}"),
    }
}

/// Whether user space may act on the event: the Filter's verdict, except
/// that a DESTROY is not judged by the TCP state the flow died in (the
/// node forgets a flow it replicates whatever that state, see
/// node::kernel_side); its protocol and addresses never change, so those
/// still decide.
fn user_space_verdict(f: &Filter, ct: &Conntrack, destroy: bool) -> bool {
    if destroy {
        filter::conntrack_end(f, ct)
    } else {
        filter::conntrack(f, ct)
    }
}

#[test]
fn recorded_kernel_messages_get_the_user_space_verdict() {
    let dir = format!("{}/tests/fixtures/kernel", env!("CARGO_MANIFEST_DIR"));
    let order = std::fs::read_to_string(format!("{dir}/BYTE_ORDER")).unwrap();
    if (order.trim() == "big") != cfg!(target_endian = "big") {
        eprintln!("SKIPPED: fixtures recorded in the other byte order");
        return;
    }
    let filters = [
        Filter {
            protocol: Some(Rule {
                logic: Logic::Accept,
                items: vec![6],
            }),
            ..Filter::default()
        },
        Filter {
            protocol: Some(Rule {
                logic: Logic::Ignore,
                items: vec![6, 17],
            }),
            ..Filter::default()
        },
        Filter {
            state: Some(Rule {
                logic: Logic::Ignore,
                items: vec![TcpState::SynSent, TcpState::Established],
            }),
            ..Filter::default()
        },
        Filter {
            state: Some(Rule {
                logic: Logic::Accept,
                items: vec![TcpState::TimeWait],
            }),
            ..Filter::default()
        },
        Filter {
            address: address(
                Logic::Ignore,
                vec![cidr("192.168.0.0", 16), cidr("fd00::", 8)],
            ),
            ..Filter::default()
        },
        Filter {
            address: address(Logic::Accept, vec![cidr("127.0.0.1", 32)]),
            ..Filter::default()
        },
        Filter {
            address: address(Logic::Accept, vec![cidr("10.0.0.0", 8)]),
            ..Filter::default()
        },
    ];
    let (mut kept, mut dropped, mut expectations) = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let ct = decoded(&bytes);
        for f in &filters {
            let keep = keeps(&program(f), &bytes);
            match &ct {
                Some((ct, destroy)) => {
                    assert_eq!(
                        keep,
                        user_space_verdict(f, ct, *destroy),
                        "{path:?} through {f:?}"
                    );
                    if keep { kept += 1 } else { dropped += 1 }
                }
                // Expectations are never judged by the kernel filter.
                None => {
                    assert!(keep, "{path:?} dropped");
                    expectations += 1;
                }
            }
        }
    }
    eprintln!(
        "fixtures: {kept} kept, {dropped} dropped, {expectations} expectation passes"
    );
    assert!(kept > 0 && dropped > 0 && expectations > 0);
}

/// A small LCG: reproducible variety.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
    fn addr(&mut self, v6: bool) -> IpAddr {
        let x = self.below(64);
        if v6 {
            format!("fd00:{}::{}", self.below(3), x).parse().unwrap()
        } else {
            format!("10.{}.0.{}", self.below(3), x).parse().unwrap()
        }
    }
}

fn random_filter(rng: &mut Rng) -> Filter {
    let logic = |rng: &mut Rng| {
        if rng.below(2) == 0 {
            Logic::Accept
        } else {
            Logic::Ignore
        }
    };
    let mut f = Filter::default();
    if rng.below(2) == 0 {
        let items = [6u8, 17, 132]
            .into_iter()
            .filter(|_| rng.below(2) == 0)
            .collect();
        f.protocol = Some(Rule {
            logic: logic(rng),
            items,
        });
    }
    if rng.below(3) != 0 {
        let items = (0..rng.below(6))
            .map(|_| {
                let v6 = rng.below(3) == 0;
                let width = if v6 { 128 } else { 32 };
                let prefix = [width, width - 2, width - 8, 24, 16, 0]
                    [rng.below(6) as usize];
                Cidr {
                    addr: rng.addr(v6),
                    prefix: prefix as u8,
                }
            })
            .collect();
        f.address = address(logic(rng), items);
    }
    if rng.below(2) == 0 {
        let all = [
            TcpState::SynSent,
            TcpState::Established,
            TcpState::FinWait,
            TcpState::TimeWait,
            TcpState::Close,
        ];
        let items = all.into_iter().filter(|_| rng.below(2) == 0).collect();
        f.state = Some(Rule {
            logic: logic(rng),
            items,
        });
    }
    f
}

fn random_ct(rng: &mut Rng) -> Conntrack {
    let v6 = rng.below(3) == 0;
    let proto = [6u8, 17, 132][rng.below(3) as usize];
    let mut ct = Conntrack::new(Tuple {
        src: rng.addr(v6),
        dst: rng.addr(v6),
        proto,
        l4: L4::Ports {
            src: 1000 + rng.below(100) as u16,
            dst: 80,
        },
    });
    let mut reply = ct.orig.inverse();
    if rng.below(3) == 0 {
        reply.src = rng.addr(v6); // DNAT
    }
    ct.reply = Some(reply);
    if proto == 6 {
        ct.proto_info = ProtoInfo::Tcp {
            state: 1 + rng.below(9) as u8,
            wscale_orig: 0,
            wscale_reply: 0,
            flags_orig: 0,
            flags_reply: 0,
        };
    }
    ct
}

#[test]
fn generated_events_get_the_user_space_verdict() {
    let mut rng = Rng(0x5eed_f11e_0b9f);
    let (mut kept, mut dropped) = (0, 0);
    for _ in 0..400 {
        let f = random_filter(&mut rng);
        let prog = program(&f);
        for _ in 0..50 {
            let ct = random_ct(&mut rng);
            let destroy = rng.below(4) == 0;
            let msg = event(&ct, destroy);
            let (seen, _) = decoded(&msg).expect("a conntrack");
            assert_eq!(seen.orig, ct.orig);
            assert_eq!(seen.reply_tuple(), ct.reply_tuple());
            let want = user_space_verdict(&f, &seen, destroy);
            assert_eq!(keeps(&prog, &msg), want, "{ct:?} through {f:?}");
            if want { kept += 1 } else { dropped += 1 }
        }
    }
    eprintln!("generated: {kept} kept, {dropped} dropped");
    assert!(kept > 2000 && dropped > 2000);
}

/// A TCP flow from 10.1.0.1 in `state`.
fn tcp_flow(state: TcpState) -> Conntrack {
    let mut ct = Conntrack::new(Tuple {
        src: "10.1.0.1".parse().unwrap(),
        dst: "10.9.0.1".parse().unwrap(),
        proto: 6,
        l4: L4::Ports {
            src: 40000,
            dst: 80,
        },
    });
    ct.reply = Some(ct.orig.inverse());
    ct.proto_info = ProtoInfo::Tcp {
        state: state as u8,
        wscale_orig: 0,
        wscale_reply: 0,
        flags_orig: 0,
        flags_reply: 0,
    };
    ct.timeout = Some(120);
    ct
}

fn established_only() -> Filter {
    Filter {
        from_kernelspace: true,
        state: Some(Rule {
            logic: Logic::Accept,
            items: vec![TcpState::Established],
        }),
        ..Filter::default()
    }
}

#[test]
fn a_destroy_is_not_judged_by_the_state_the_flow_died_in() {
    // Replicated while ESTABLISHED, the flow ends in TIME_WAIT: its
    // UPDATE is no news, but its DESTROY is what makes user space forget
    // it and tell the peers; dropped, the entry would stay in both caches.
    let prog = program(&established_only());
    let ct = tcp_flow(TcpState::TimeWait);
    assert!(!keeps(&prog, &event(&ct, false)), "UPDATE in TIME_WAIT");
    assert!(keeps(&prog, &event(&ct, true)), "DESTROY in TIME_WAIT");
    // Its protocol and addresses still decide: they never change.
    let f = Filter {
        protocol: Some(Rule {
            logic: Logic::Accept,
            items: vec![17],
        }),
        ..established_only()
    };
    assert!(!keeps(&program(&f), &event(&ct, true)), "TCP not accepted");
}

#[test]
fn undecidable_messages_are_kept() {
    let f = Filter {
        protocol: Some(Rule {
            logic: Logic::Accept,
            items: vec![132],
        }),
        ..Filter::default()
    };
    let prog = program(&f);
    let mut rng = Rng(7);
    let msg = event(&random_ct(&mut rng), false);
    // Headers only: no CTA_TUPLE_ORIG to judge.
    let mut bare = msg[..20].to_vec();
    bare[..4].copy_from_slice(&20u32.to_ne_bytes());
    assert!(keeps(&prog, &bare));
    // Another subsystem (expectations).
    let mut exp = msg.clone();
    let ty = u16::from_ne_bytes([exp[4], exp[5]]) & 0xff | 2 << 8;
    exp[4..6].copy_from_slice(&ty.to_ne_bytes());
    assert!(keeps(&prog, &exp));
    // An empty Filter keeps everything.
    assert!(keeps(&program(&Filter::default()), &msg));
}

#[test]
fn too_many_prefixes_leave_the_address_rule_to_user_space() {
    // Every other /24: no two prefixes merge into one range.
    let items = (0..3000u32)
        .map(|i| Cidr {
            addr: IpAddr::V4((0x0a00_0000 + (i << 9)).into()),
            prefix: 24,
        })
        .collect();
    let f = Filter {
        address: address(Logic::Ignore, items),
        protocol: Some(Rule {
            logic: Logic::Ignore,
            items: vec![17],
        }),
        ..Filter::default()
    };
    let p = bpf::compile(&f, bpf::Endian::host()).unwrap();
    assert!(p.without_address);
    assert!(p.insns.len() <= bpf::MAX_INSNS);
    let mut rng = Rng(3);
    let mut ct = random_ct(&mut rng);
    ct.orig.proto = 17;
    ct.proto_info = ProtoInfo::None;
    ct.reply = Some(ct.orig.inverse());
    assert!(
        !keeps(&p.insns, &event(&ct, false)),
        "protocol still applied"
    );
    ct.orig.proto = 132;
    ct.reply = Some(ct.orig.inverse());
    ct.orig.src = "10.0.5.1".parse().unwrap();
    assert!(
        keeps(&p.insns, &event(&ct, false)),
        "address left to user space"
    );
    // 600 separate /24s still fit (3 instructions each per source).
    let f = Filter {
        address: address(Logic::Ignore, six_hundred_24s()),
        ..Filter::default()
    };
    let p = bpf::compile(&f, bpf::Endian::host()).unwrap();
    assert!(!p.without_address, "{} insns", p.insns.len());
}

/// Reads what arrives on `sock` until it stays quiet for 300 ms (at most
/// 10 s): (NEW/UPDATE events, DESTROY events) per second octet of the
/// original source (10.1.x.x accepted, 10.2.x.x ignored).
fn drain(sock: &mut CtSocket) -> [[u32; 2]; 3] {
    let mut seen = [[0u32; 2]; 3];
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let n = match sock.recv_blocking(Duration::from_millis(300)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("recv: {e}"),
        };
        for m in codec::messages(sock.received(n)) {
            if let Ok(Received::Msg(m)) = m
                && let Object::Ct(c) = m.object
                && let IpAddr::V4(a) = c.orig.src
            {
                let net = usize::from(a.octets()[1]).min(2);
                seen[net][usize::from(m.kind == Kind::Destroy)] += 1;
            }
        }
    }
    seen
}

#[test]
fn attached_to_a_real_event_socket_ignored_flows_never_arrive() {
    let Some(ns) = common::Netns::new("bpf") else {
        return;
    };
    const FLOWS: u16 = 200;
    let f = Filter {
        from_kernelspace: true,
        address: address(Logic::Ignore, vec![cidr("10.2.0.0", 16)]),
        ..Filter::default()
    };
    let prog = bpf::compile(&f, bpf::Endian::host()).unwrap();
    let (filtered, all) = ns.enter(|| {
        let (mut filtered, _) = CtSocket::events(false, 1 << 20).unwrap();
        filtered
            .attach_filter(&prog.insns)
            .expect("SO_ATTACH_FILTER");
        let (mut all, _) = CtSocket::events(false, 1 << 20).unwrap();
        let mut s = CtSocket::open().unwrap();
        let flows: Vec<Conntrack> = (0..FLOWS)
            .flat_map(|i| {
                [1u8, 2].map(|net| {
                    let src = IpAddr::from([10, net, (i >> 8) as u8, i as u8]);
                    udp_flow(src, 1024 + i)
                })
            })
            .collect();
        let acks = s.create_cts(&flows).unwrap();
        assert!(acks.iter().all(|e| *e == 0), "creates: {acks:?}");
        for chunk in flows.chunks(100) {
            let acks = s
                .batch(|buf, seq| {
                    for ct in chunk {
                        codec::encode_ct_delete(buf, &ct.orig, 0, seq());
                    }
                })
                .unwrap();
            assert!(acks.iter().all(|e| *e == 0), "deletes: {acks:?}");
        }
        (drain(&mut filtered), drain(&mut all))
    });
    let n = u32::from(FLOWS);
    eprintln!(
        "flows created: {n} accepted + {n} ignored; events on an unfiltered \
         socket: {all:?}; on the filtered one: {filtered:?} ([NEW/UPDATE, \
         DESTROY] for 10.0/8, 10.1/16, 10.2/16); dropped in the kernel: {}",
        all[2][0] + all[2][1] - filtered[2][0] - filtered[2][1]
    );
    assert_eq!(all[1], [n, n], "the unfiltered socket saw every event");
    assert_eq!(all[2], [n, n]);
    assert_eq!(filtered[1], [n, n], "accepted flows arrive");
    assert_eq!(filtered[2], [0, 0], "ignored flows never leave the kernel");
}

#[test]
fn attached_to_a_real_event_socket_a_destroy_arrives_whatever_its_state() {
    let Some(ns) = common::Netns::new("bpfst") else {
        return;
    };
    let prog = bpf::compile(&established_only(), bpf::Endian::host()).unwrap();
    let (filtered, all) = ns.enter(|| {
        let (mut filtered, _) = CtSocket::events(false, 1 << 20).unwrap();
        filtered
            .attach_filter(&prog.insns)
            .expect("SO_ATTACH_FILTER");
        let (mut all, _) = CtSocket::events(false, 1 << 20).unwrap();
        let mut s = CtSocket::open().unwrap();
        let rules = CommitRules::default();
        let est =
            commit::prepare_ct(&tcp_flow(TcpState::Established), 0, &rules);
        let tw = commit::prepare_ct(&tcp_flow(TcpState::TimeWait), 0, &rules);
        let acks = s.create_cts(std::slice::from_ref(&est)).unwrap();
        assert_eq!(acks, [0], "create");
        let acks = s
            .batch(|buf, seq| codec::encode_ct_update(buf, &tw, seq()))
            .unwrap();
        assert_eq!(acks, [0], "update to TIME_WAIT");
        let acks = s
            .batch(|buf, seq| codec::encode_ct_delete(buf, &tw.orig, 0, seq()))
            .unwrap();
        assert_eq!(acks, [0], "delete");
        (drain(&mut filtered), drain(&mut all))
    });
    assert_eq!(all[1], [2, 1], "NEW, UPDATE and DESTROY happened");
    assert_eq!(filtered[1], [1, 1], "NEW and DESTROY arrive, not UPDATE");
}

/// 600 separate /24s (none adjacent: no two merge), 10.0.0.0/24,
/// 10.0.2.0/24, …
fn six_hundred_24s() -> Vec<Cidr> {
    (0..600u32)
        .map(|i| Cidr {
            addr: IpAddr::V4((0x0a00_0000 + (i << 9)).into()),
            prefix: 24,
        })
        .collect()
}

/// A UDP flow from `src`:`sport` to 10.9.0.1:53, ready to create.
fn udp_flow(src: IpAddr, sport: u16) -> Conntrack {
    let mut ct = Conntrack::new(Tuple {
        src,
        dst: "10.9.0.1".parse().unwrap(),
        proto: 17,
        l4: L4::Ports {
            src: sport,
            dst: 53,
        },
    });
    ct.timeout = Some(120);
    commit::prepare_ct(&ct, 0, &CommitRules::default())
}
