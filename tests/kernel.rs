//! ctsyncd's kernel layer against the real kernel, inside a network
//! namespace created and removed by the test. Needs root; skipped with a
//! message otherwise (CI runs as root).

mod common;

use common::Netns;
use common::ftp::{data_channel, ftp_control, tcp};

use std::time::Duration;

use ctsyncd::kernel::codec::{self, Kind, Object, Received};
use ctsyncd::kernel::commit::{self, CommitRules};
use ctsyncd::kernel::events::{EventRead, EventSocket};
use ctsyncd::kernel::origin::{Origin, Origins};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::{Conntrack, Expect, L4, ProtoInfo, Tuple, status};
use ctsyncd::time::Instant;

/// Reads events until `pred` matches one (bounded in time and count).
fn wait_event(
    ev: &mut CtSocket,
    mut pred: impl FnMut(&codec::Message) -> bool,
) -> codec::Message {
    for _ in 0..1000 {
        let n = ev.recv_blocking(Duration::from_secs(5)).expect("event");
        for r in codec::messages(ev.received(n)) {
            if let Ok(Received::Msg(m)) = r
                && pred(&m)
            {
                return m;
            }
        }
    }
    panic!("event not seen");
}

#[test]
fn create_snat_helper_conntrack_and_see_it_in_conntrack_l() {
    let Some(ns) = Netns::new("create") else {
        return;
    };
    let orig = tcp("192.168.0.2", "192.168.1.2", 40000, 21);
    let (port, ev_kind, ev_port) = ns.enter(|| {
        let (mut ev, _) = CtSocket::events(true, 0).unwrap();
        let mut s = CtSocket::open().unwrap();
        let mut ct = Conntrack::new(orig);
        ct.reply = Some(tcp("192.168.1.2", "192.168.1.100", 21, 40000));
        ct.status = status::SEEN_REPLY | status::ASSURED;
        ct.timeout = Some(600);
        ct.mark = 42;
        ct.helper = Some("ftp".try_into().unwrap());
        ct.proto_info = ProtoInfo::Tcp {
            state: 3,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: 0,
            flags_reply: 0,
        };
        // Through the commit rules, as the caches will do it.
        let ct = commit::prepare_ct(&ct, 0, &CommitRules::default());
        let acks = s
            .batch(|buf, seq| codec::encode_ct_create(buf, &ct, seq()))
            .unwrap();
        assert_eq!(acks, [0], "create failed");
        let m = wait_event(
            &mut ev,
            |m| matches!(&m.object, Object::Ct(c) if c.orig == orig),
        );
        (s.port(), m.kind, m.port)
    });
    // Origin tracking: the event names our socket's port id.
    assert_eq!((ev_kind, ev_port), (Kind::New, port));
    let l = ns.sh("conntrack -L 2>/dev/null");
    let line = l
        .lines()
        .find(|l| l.contains("sport=40000"))
        .unwrap_or_else(|| panic!("{l}"));
    for want in [
        "tcp      6 ",
        "ESTABLISHED src=192.168.0.2 dst=192.168.1.2 sport=40000 dport=21",
        "src=192.168.1.2 dst=192.168.1.100 sport=21 dport=40000",
        "[ASSURED]",
        "mark=42",
        "helper=ftp",
    ] {
        assert!(line.contains(want), "{want} not in: {line}");
    }
}

/// A ping masqueraded with its id remapped (two hosts behind the router
/// pinging with id 1): committed, the entry's reply keeps the remapped id,
/// so the replies still in flight to it match (committed with the id
/// unchanged, they found no flow).
#[test]
fn a_masqueraded_pings_remapped_id_is_committed() {
    let Some(ns) = Netns::new("icmpnat") else {
        return;
    };
    let icmp = |src: &str, dst: &str, kind, id| Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 1,
        l4: L4::Icmp { kind, code: 0, id },
    };
    let orig = icmp("192.168.0.2", "192.168.1.2", 8, 1);
    ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let mut ct = Conntrack::new(orig);
        ct.reply = Some(icmp("192.168.1.2", "192.168.1.100", 0, 1234));
        ct.status = status::SEEN_REPLY;
        ct.timeout = Some(30);
        let ct = commit::prepare_ct(&ct, 0, &CommitRules::default());
        let acks = s
            .batch(|buf, seq| codec::encode_ct_create(buf, &ct, seq()))
            .unwrap();
        assert_eq!(acks, [0], "create failed");
    });
    let l = ns.sh("conntrack -L -p icmp 2>/dev/null");
    let want = "src=192.168.0.2 dst=192.168.1.2 type=8 code=0 id=1 src=192.168.1.2 dst=192.168.1.100 type=0 code=0 id=1234";
    assert!(l.contains(want), "{want} not in: {l}");
}

#[test]
fn foreign_changes_arrive_as_events_and_in_dumps() {
    let Some(ns) = Netns::new("events") else {
        return;
    };
    let orig = tcp("10.1.0.1", "10.2.0.1", 1234, 80);
    ns.enter(|| {
        let (mut ev, size) = CtSocket::events(false, 1 << 20).unwrap();
        assert!(size >= 1 << 20, "SO_RCVBUFFORCE gave {size}");
        let mine = ev.port();
        ns.sh("conntrack -I -p tcp -s 10.1.0.1 -d 10.2.0.1 --sport 1234 --dport 80 --state ESTABLISHED -t 300 -u SEEN_REPLY 2>&1");
        let m = wait_event(&mut ev, |m| matches!(&m.object, Object::Ct(c) if c.orig == orig));
        assert_eq!(m.kind, Kind::New);
        assert_ne!(m.port, mine, "a foreign change must not look like ours");
        let mut origins = Origins::default();
        let mut s = CtSocket::open().unwrap();
        origins.register(s.port(), Origin::Flush);
        assert_eq!(origins.classify(m.port), Origin::NotMe);

        let dumped = s.dump(false).unwrap();
        let ct = dumped.iter().find_map(|o| match o { Object::Ct(c) if c.orig == orig => Some(c), _ => None }).expect("in dump");
        assert_eq!(ct.reply, Some(orig.inverse()));
        assert_eq!(ct.tcp_state(), Some(3));
        assert!(ct.timeout.unwrap() <= 300 && ct.timeout.unwrap() > 250);

        ns.sh("conntrack -U -p tcp -s 10.1.0.1 -d 10.2.0.1 --sport 1234 --dport 80 -m 5 2>&1");
        let m = wait_event(&mut ev, |m| matches!(&m.object, Object::Ct(c) if c.orig == orig && c.mark == 5));
        assert_eq!(m.kind, Kind::Update);

        // Deleting through our socket: DESTROY, with our port as origin.
        let acks = s.batch(|buf, seq| codec::encode_ct_delete(buf, &orig, 0, seq())).unwrap();
        assert_eq!(acks, [0]);
        let m = wait_event(&mut ev, |m| m.kind == Kind::Destroy);
        assert_eq!(origins.classify(m.port), Origin::Flush);
        // A second delete reports ENOENT for that very request.
        let acks = s.batch(|buf, seq| {
            codec::encode_ct_delete(buf, &orig, 0, seq());
            codec::encode_ct_delete(buf, &tcp("10.9.9.9", "10.8.8.8", 1, 2), 0, seq());
        }).unwrap();
        assert_eq!(acks, [2, 2], "ENOENT for each request");
    });
}

#[test]
fn ftp_passive_expectation_is_seen_then_recreated_in_another_namespace() {
    let Some(fw1) = Netns::new("ftp1") else {
        return;
    };
    let Some(fw2) = Netns::new("ftp2") else {
        return;
    };
    fw1.ftp_helper();
    let _server = fw1.ftp_server();

    let (exp, master, listed) = fw1.enter(|| {
        let (mut ev, _) = CtSocket::events(true, 0).unwrap();
        // A real client: login, PASV, then keep the control connection open.
        let _client = fw1.ftp_pasv_client();
        let m = wait_event(&mut ev, |m| matches!(m.object, Object::Exp(_)));
        assert_eq!(m.kind, Kind::New);
        let Object::Exp(exp) = m.object else { unreachable!() };
        let mut s = CtSocket::open().unwrap();
        let dumped = s.dump(true).unwrap();
        // Same expectation (timeouts tick and the kernel reports different
        // ids in events and dumps, so compare identity and helper).
        assert!(
            dumped.iter().any(|o| matches!(o, Object::Exp(x) if x.key() == exp.key() && x.helper == exp.helper)),
            "{exp:?} not in our dump: {dumped:?}"
        );
        let master = s.dump(false).unwrap().into_iter().find_map(|o| match o {
            Object::Ct(c) if c.orig == exp.master => Some(c),
            _ => None,
        });
        let listed = fw1.sh("conntrack -L expect 2>/dev/null");
        (exp, master.expect("master conntrack in dump"), listed)
    });

    // What the kernel told us matches what conntrack(8) shows.
    let L4::Ports { dst: data_port, .. } = exp.tuple.l4 else {
        panic!("{exp:?}")
    };
    let L4::Ports {
        src: client_port, ..
    } = exp.master.l4
    else {
        panic!()
    };
    assert_eq!(exp.helper.as_deref(), Some("ftp"));
    assert_eq!(
        exp.mask.l4,
        L4::Ports {
            src: 0,
            dst: 0xffff
        }
    );
    let want = format!(
        "proto=6 src=127.0.0.1 dst=127.0.0.1 sport=0 dport={data_port} mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 master-dst=127.0.0.1 sport={client_port} dport=21 class=0 helper=ftp"
    );
    assert!(listed.contains(&want), "{want}\nnot in\n{listed}");
    assert_eq!(master.helper.as_deref(), Some("ftp"));

    // fw2 never saw this connection: create the master, then the
    // expectation, through the commit rules.
    let rules = CommitRules::default();
    let (ct_errs, exp_errs) = fw2.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let ct_errs = s
            .create_cts(&[commit::prepare_ct(&master, 1, &rules)])
            .unwrap();
        let exp_errs = s
            .create_exps(&[commit::prepare_exp(&exp, 1, &rules)])
            .unwrap();
        (ct_errs, exp_errs)
    });
    assert_eq!((ct_errs, exp_errs), (vec![0], vec![0]));
    let on_fw2 = fw2.sh("conntrack -L expect 2>/dev/null");
    assert!(on_fw2.contains(&want), "{want}\nnot in\n{on_fw2}");
    let cts = fw2.sh("conntrack -L 2>/dev/null");
    assert!(
        cts.contains(&format!("sport={client_port} dport=21"))
            && cts.contains("helper=ftp"),
        "{cts}"
    );

    // Creating both again: EEXIST is handled by delete + create.
    let again = fw2.enter(|| {
        let mut s = CtSocket::open().unwrap();
        s.create_exps(&[commit::prepare_exp(&exp, 1, &rules)])
            .unwrap()
    });
    assert_eq!(again, vec![0]);
}

fn udp_flows(n: u32, first: u32) -> Vec<Conntrack> {
    (first..first + n)
        .map(|i| {
            let mut ct = Conntrack::new(Tuple {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.1.0.1".parse().unwrap(),
                proto: 17,
                l4: L4::Ports {
                    src: (1024 + i % 60000) as u16,
                    dst: (1 + i / 60000) as u16,
                },
            });
            ct.timeout = Some(120);
            commit::prepare_ct(&ct, 0, &CommitRules::default())
        })
        .collect()
}

#[test]
fn event_flood_overruns_grow_the_buffer_and_are_reported() {
    let Some(ns) = Netns::new("flood") else {
        return;
    };
    ns.enter(|| {
        smol::block_on(async {
            // 64 KiB, allowed to grow once to 128 KiB.
            let mut ev =
                EventSocket::open(false, 65536, 131072, false).unwrap();
            assert_eq!(ev.buffer_size(), 65536);
            let mut s = CtSocket::open().unwrap();
            let errs = s.create_cts(&udp_flows(100_000, 0)).unwrap();
            assert!(errs.iter().all(|&e| e == 0), "creates failed");

            // The queue overflowed: the first read reports it and doubles.
            assert_eq!(
                ev.recv(|| Instant::from_millis(0)).await.unwrap(),
                EventRead::Overrun {
                    grown_to: Some(131072)
                }
            );
            assert_eq!(ev.buffer_size(), 131072);
            let mut events = drain(&mut ev);
            assert!(events > 0 && events < 100_000, "{events} events survived");

            // Another flood: now at the limit, reported without growing.
            let errs = s.create_cts(&udp_flows(30_000, 100_000)).unwrap();
            assert!(errs.iter().all(|&e| e == 0));
            assert_eq!(
                ev.recv(|| Instant::from_millis(0)).await.unwrap(),
                EventRead::Overrun { grown_to: None }
            );
            assert_eq!(ev.buffer_size(), 131072);
            events += drain(&mut ev);
            assert!(events < 130_000);
        })
    });
}

/// IPv6 flows NATed both ways, with a mark: each create several hundred
/// bytes, so a commit of them is cut into sends by size (a send past the
/// socket's buffer is refused whole, EMSGSIZE). Created, then created
/// again over themselves (each one deleted and created back, in pairs),
/// every entry is answered for and in the kernel once.
#[test]
fn large_ipv6_nat_entries_are_created_and_replaced_across_sends() {
    let Some(ns) = Netns::new("bigv6") else {
        return;
    };
    const N: u16 = 700;
    let flows: Vec<Conntrack> = (0..N)
        .map(|i| {
            let port = 20000 + i;
            let mut ct = Conntrack::new(Tuple {
                src: "2001:db8::2".parse().unwrap(),
                dst: "2001:db8:1::2".parse().unwrap(),
                proto: 6,
                l4: L4::Ports {
                    src: port,
                    dst: 443,
                },
            });
            // SNAT to 2001:db8:2::1, DNAT to 2001:db8:3::2 port 8443.
            ct.reply = Some(Tuple {
                src: "2001:db8:3::2".parse().unwrap(),
                dst: "2001:db8:2::1".parse().unwrap(),
                proto: 6,
                l4: L4::Ports {
                    src: 8443,
                    dst: port,
                },
            });
            ct.status = status::SEEN_REPLY | status::ASSURED;
            ct.timeout = Some(600);
            ct.mark = 7;
            ct.proto_info = ProtoInfo::Tcp {
                state: 3,
                wscale_orig: 7,
                wscale_reply: 7,
                flags_orig: 0,
                flags_reply: 0,
            };
            assert!(ct.snat().is_some() && ct.dnat().is_some());
            commit::prepare_ct(&ct, 0, &CommitRules::default())
        })
        .collect();
    let (first, again) = ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        (s.create_cts(&flows).unwrap(), s.create_cts(&flows).unwrap())
    });
    let refused = |errs: &[i32]| errs.iter().filter(|&&e| e != 0).count();
    assert_eq!((first.len(), refused(&first)), (N as usize, 0));
    assert_eq!((again.len(), refused(&again)), (N as usize, 0));
    let listed = ns.sh("conntrack -L -f ipv6 2>/dev/null");
    let natted = listed
        .lines()
        .filter(|l| {
            l.contains("dst=2001:db8:2::1 sport=8443") && l.contains("mark=7")
        })
        .count();
    assert_eq!(natted, N as usize, "{}", &listed[..listed.len().min(600)]);
}

/// A commit over entries the kernel already holds (a node that was
/// primary before keeps its own) replaces each by a delete and a create
/// back to back, so the flow is without an entry for as short a time as
/// possible; the batch's new entries are created as usual. The events
/// come in the kernel's order of work.
#[test]
fn an_existing_entry_is_replaced_by_its_delete_and_create_back_to_back() {
    let Some(ns) = Netns::new("replace") else {
        return;
    };
    let marked = |flows: Vec<Conntrack>, mark: u32| -> Vec<Conntrack> {
        flows
            .into_iter()
            .map(|mut c| {
                c.mark = mark;
                c
            })
            .collect()
    };
    let mut seen = ns.enter(|| {
        // Listening before the first creates: the kernel gives an entry
        // events only if someone listened when it was created.
        let (mut ev, _) = CtSocket::events(false, 4 << 20).unwrap();
        let mut s = CtSocket::open().unwrap();
        let errs = s.create_cts(&marked(udp_flows(300, 0), 1)).unwrap();
        assert!(errs.iter().all(|&e| e == 0), "{errs:?}");
        // 300 that exist (more than one send of pairs) and 100 new.
        let errs = s.create_cts(&marked(udp_flows(400, 0), 2)).unwrap();
        assert!(errs.iter().all(|&e| e == 0), "{errs:?}");
        let mut seen = Vec::new();
        for _ in 0..10_000 {
            if seen.len() >= 1000 {
                break;
            }
            let Ok(n) = ev.recv_blocking(Duration::from_secs(5)) else {
                break;
            };
            for r in codec::messages(ev.received(n)) {
                if let Ok(Received::Msg(m)) = r
                    && let Object::Ct(c) = m.object
                {
                    seen.push((m.kind, c.orig));
                }
            }
        }
        seen
    });
    // The first 300 events are the first creates'.
    assert!(seen.len() >= 300, "{} events", seen.len());
    assert!(seen.iter().take(300).all(|(k, _)| *k == Kind::New));
    let seen = seen.split_off(300);
    let count = |k| seen.iter().filter(|(kind, _)| *kind == k).count();
    assert_eq!(
        (count(Kind::Destroy), count(Kind::New), seen.len()),
        (300, 400, 700),
        "events (destroyed, new, all)"
    );
    let destroyed: Vec<usize> = (0..seen.len())
        .filter(|&i| seen[i].0 == Kind::Destroy)
        .collect();
    assert_eq!(destroyed.len(), 300);
    for i in destroyed {
        assert_eq!(
            seen.get(i + 1),
            Some(&(Kind::New, seen[i].1)),
            "the create right after the delete"
        );
    }
    let l = ns.sh("conntrack -L --mark 2 2>/dev/null | wc -l");
    assert_eq!(l.trim(), "400", "every entry replaced or created");
    let l = ns.sh("conntrack -L --mark 1 2>/dev/null | wc -l");
    assert_eq!(l.trim(), "0");
}

/// Reads every queued datagram (bounded), counting conntrack messages.
fn drain(ev: &mut EventSocket) -> usize {
    let mut count = 0;
    for _ in 0..1_000_000 {
        match ev.try_recv().unwrap() {
            None => return count,
            Some(EventRead::Data(n)) => {
                count += codec::messages(ev.received(n)).count()
            }
            Some(EventRead::Overrun { .. }) => {}
        }
    }
    panic!("event queue never emptied");
}

/// Records real kernel messages into tests/fixtures/kernel/ for the
/// unprivileged decoding tests (tests/kernel_fixtures.rs). Run as root:
/// `cargo test --test kernel record_kernel_fixtures -- --ignored`.
#[test]
#[ignore]
fn record_kernel_fixtures() {
    let Some(ns) = Netns::new("record") else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kernel");
    std::fs::create_dir_all(&dir).unwrap();
    // Netlink headers are host order: tests/kernel_fixtures.rs converts
    // when its host's order differs from the one recorded here.
    let order = if cfg!(target_endian = "big") {
        "big"
    } else {
        "little"
    };
    std::fs::write(dir.join("BYTE_ORDER"), format!("{order}\n")).unwrap();
    let steps: [(&str, &str); 6] = [
        (
            "ct_new_tcp_snat.bin",
            "conntrack -I -p tcp -s 192.168.0.2 -d 192.168.1.2 --sport 40000 --dport 21 --state ESTABLISHED -t 300 -u SEEN_REPLY,ASSURED --src-nat 192.168.1.100 -m 7",
        ),
        (
            "ct_update_mark.bin",
            "conntrack -U -p tcp -s 192.168.0.2 -d 192.168.1.2 --sport 40000 --dport 21 -m 9",
        ),
        (
            "ct_destroy_tcp.bin",
            "conntrack -D -p tcp -s 192.168.0.2 -d 192.168.1.2 --sport 40000 --dport 21",
        ),
        (
            "ct_new_icmp.bin",
            "conntrack -I -p icmp -s 10.0.0.1 -d 10.0.0.2 --icmp-type 8 --icmp-code 0 --icmp-id 77 -t 30",
        ),
        (
            "ct_new_udp6_zone.bin",
            "conntrack -I -p udp -s fd00::1 -d fd00::2 --sport 5000 --dport 53 -t 30 -w 5",
        ),
        (
            "ct_new_sctp.bin",
            "conntrack -I -p sctp -s 10.0.0.1 -d 10.0.0.2 --sport 7 --dport 8 --state ESTABLISHED --orig-vtag 1234 --reply-vtag 5678 -t 30",
        ),
    ];
    ns.enter(|| {
        let (mut ev, _) = CtSocket::events(true, 0).unwrap();
        for (file, cmd) in steps {
            ns.sh(&format!("{cmd} 2>&1"));
            let n = ev.recv_blocking(Duration::from_secs(5)).unwrap();
            std::fs::write(dir.join(file), ev.received(n)).unwrap();
        }
    });
    ns.ftp_helper();
    let _server = ns.ftp_server();
    ns.enter(|| {
        let (mut ev, _) = CtSocket::events(true, 0).unwrap();
        let _client = ns.ftp_pasv_client();
        for _ in 0..100 {
            let n = ev.recv_blocking(Duration::from_secs(5)).unwrap();
            if let Some(Ok(Received::Msg(m))) =
                codec::messages(ev.received(n)).next()
                && matches!(m.object, Object::Exp(_))
            {
                std::fs::write(dir.join("exp_new_ftp.bin"), ev.received(n))
                    .unwrap();
                return;
            }
        }
        panic!("no expectation event");
    });
}

/// DisableExternalCache's update of an FTP control connection that has an
/// expectation: ctnetlink's in-place update (what the inject worker
/// sends) keeps the expectation and applies the new mark, timeout and
/// sequence adjustment; a delete + re-create (what a create that finds the
/// entry does) drops the expectation with its master.
#[test]
fn an_update_in_place_keeps_the_masters_expectation() {
    let Some(ns) = Netns::new("upd") else {
        return;
    };
    let master = ftp_control(40000, true, 0);
    let exp = data_channel(&master, 50000);
    let has_exp = || {
        ns.sh("conntrack -L expect 2>/dev/null")
            .contains("dport=50000 ")
    };

    let (created, updated, now) = ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let created = (
            s.create_cts(std::slice::from_ref(&master)).unwrap(),
            s.create_exps(std::slice::from_ref(&exp)).unwrap(),
        );
        let mut changed = master.clone();
        changed.mark = 7;
        changed.timeout = Some(900);
        let adj = ctsyncd::model::SeqAdj {
            correction_pos: 1000,
            offset_before: 0,
            offset_after: 2,
        };
        changed.seq_adj = Some([ctsyncd::model::SeqAdj::default(), adj]);
        let updated = s
            .batch(|buf, seq| codec::encode_ct_update(buf, &changed, seq()))
            .unwrap();
        let now = s.get_ct(&master.orig, 0).unwrap();
        (created, updated, now)
    });
    assert_eq!(created, (vec![0], vec![0]));
    assert_eq!(updated, [0], "the kernel refused the update");
    let Some(Object::Ct(now)) = now else {
        panic!("master gone: {now:?}")
    };
    assert_eq!(now.mark, 7);
    assert_eq!(now.seq_adj.map(|a| a[1].offset_after), Some(2), "{now:?}");
    assert!(has_exp(), "the update removed the expectation");

    // The same change as delete + re-create: the expectation is gone.
    let again = ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        s.create_cts(std::slice::from_ref(&master)).unwrap()
    });
    assert_eq!(again, [0]);
    assert!(
        !has_exp(),
        "the kernel kept the expectation of a re-created master"
    );
}

/// The per-master expectation dump (`CtSocket::dump_exps_of`): what
/// DisableExternalCache's re-create of a master puts back
/// (src/daemon/inject.rs) is read this way, one master's list instead of
/// the whole expectation table.
fn data_ports(exps: &[Expect]) -> Vec<u16> {
    let mut ports: Vec<u16> = exps
        .iter()
        .map(|x| match x.tuple.l4 {
            L4::Ports { dst, .. } => dst,
            _ => 0,
        })
        .collect();
    ports.sort_unstable();
    ports
}

#[test]
fn a_masters_dump_holds_its_expectations_and_no_others() {
    let Some(ns) = Netns::new("expdump") else {
        return;
    };
    let a = ftp_control(40000, true, 0);
    let b = ftp_control(40001, true, 0);
    let plain = ftp_control(40002, false, 0);
    // One each: the FTP helper keeps one expectation per master (a
    // second evicts the first).
    let exps = [data_channel(&a, 50000), data_channel(&b, 50002)];
    let (created, of_a, of_b, of_plain, of_gone) = ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let created = (
            s.create_cts(&[a.clone(), b.clone(), plain.clone()])
                .unwrap(),
            s.create_exps(&exps).unwrap(),
        );
        let gone = ftp_control(40003, true, 0);
        (
            created,
            s.dump_exps_of(&a.orig, 0).unwrap(),
            s.dump_exps_of(&b.orig, 0).unwrap(),
            // No helper: the kernel answers with an ACK, not a dump.
            s.dump_exps_of(&plain.orig, 0).unwrap(),
            // Not in the kernel: ENOENT, read as none.
            s.dump_exps_of(&gone.orig, 0).unwrap(),
        )
    });
    assert_eq!(created, (vec![0; 3], vec![0; 2]));
    assert_eq!(data_ports(&of_a), [50000]);
    assert!(of_a.iter().all(|x| x.master == a.orig), "{of_a:?}");
    assert_eq!(data_ports(&of_b), [50002]);
    assert_eq!(of_b[0].master, b.orig);
    assert!(of_plain.is_empty(), "{of_plain:?}");
    assert!(of_gone.is_empty(), "{of_gone:?}");
    // The whole table still holds both (the dumps took nothing).
    let all = ns.sh("conntrack -L expect 2>/dev/null");
    for port in [50000, 50002] {
        assert!(all.contains(&format!("dport={port} ")), "{all}");
    }
}

/// A request socket has room for the acknowledgements of several whole
/// batches that fail (each failing request is acknowledged): by
/// arithmetic, a batch of 256 EEXISTs takes most of the default 208 KB.
#[test]
fn a_request_socket_has_room_for_batches_of_errors() {
    let Some(ns) = Netns::new("rcvbuf") else {
        return;
    };
    let size = ns.enter(|| CtSocket::open().unwrap().rcvbuf().unwrap());
    assert!(size >= 1 << 20, "{size}");
}

/// Set in the child half of
/// [`an_event_socket_opens_without_the_right_to_force_its_buffer`].
const USERNS_CHILD: &str = "CTSYNCD_TEST_USERNS_CHILD";

/// In a container (a user namespace of its own) the daemon may join the
/// event groups (CAP_NET_ADMIN over its network namespace) but not force
/// a receive buffer past `net.core.rmem_max` (that takes CAP_NET_ADMIN in
/// the initial user namespace). A configured `NetlinkBufferSize` must then
/// be applied as far as the system allows, as conntrackd's
/// `nfnl_rcvbufsiz` does, not stop the daemon from starting. The test
/// runs itself again under `unshare --user --map-root-user --net`.
#[test]
fn an_event_socket_opens_without_the_right_to_force_its_buffer() {
    let want = 1 << 18;
    if std::env::var_os(USERNS_CHILD).is_some() {
        let (s, size) = CtSocket::events(true, want)
            .expect("event socket with NetlinkBufferSize in a container");
        assert!(size >= want, "{size}");
        assert_eq!(s.rcvbuf().unwrap(), size);
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: kernel tests need root (CI runs them as root)");
        return;
    }
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--net"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_event_socket_opens_without_the_right_to_force_its_buffer",
            "--nocapture",
        ])
        .env(USERNS_CHILD, "1")
        .output()
        .expect("unshare (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned()
        + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran nothing: {text}");
}

/// The kernel reports no zone in an expectation (ctnetlink puts no
/// CTA_EXPECT_ZONE in its dumps or events), but every expectation of one
/// master's list is in that master's zone. DisableExternalCache's
/// re-create of a master reads its expectations this way and creates
/// them again: read as zone 0, the kernel looked for their master in
/// zone 0 and refused them all (ENOENT), so a re-created master in a
/// zone lost its expectations.
#[test]
fn a_masters_expectations_are_read_in_its_zone() {
    let Some(ns) = Netns::new("expzone") else {
        return;
    };
    let master = ftp_control(40000, true, 7);
    let exp = data_channel(&master, 50000);
    let (created, of_master, recreated) = ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let created = (
            s.create_cts(std::slice::from_ref(&master)).unwrap(),
            s.create_exps(std::slice::from_ref(&exp)).unwrap(),
        );
        let of_master = s.dump_exps_of(&master.orig, 7).unwrap();
        // What src/daemon/inject.rs's re-create does with them.
        s.batch(|buf, seq| {
            codec::encode_ct_delete(buf, &master.orig, 7, seq())
        })
        .unwrap();
        s.create_cts(std::slice::from_ref(&master)).unwrap();
        let again: Vec<Expect> = of_master
            .iter()
            .map(|x| commit::prepare_exp(x, 0, &CommitRules::default()))
            .collect();
        (created, of_master, s.create_exps(&again).unwrap())
    });
    assert_eq!(created, (vec![0], vec![0]));
    assert_eq!(data_ports(&of_master), [50000]);
    assert_eq!(of_master[0].zone, 7, "{of_master:?}");
    assert_eq!(recreated, [0], "the expectation could not be created again");
}

/// A chain of RELATED flows whose first master ended before the failover
/// (H.323: the Q.931 call is gone, its H.245 channel and that channel's
/// RTP flow are still in use): the H.245 entry is refused (ENOENT) and
/// created again without its master, as is the RTP entry, refused because
/// its master had not been created yet. The RTP entry must keep its
/// master, which the retry creates first: it lost the link although its
/// master was created in the same commit.
#[test]
fn a_related_entry_keeps_its_master_when_both_are_retried() {
    let Some(ns) = Netns::new("orphans") else {
        return;
    };
    let udp = |sport: u16, dport: u16, master: Option<Tuple>| {
        let mut ct = Conntrack::new(Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.1.0.1".parse().unwrap(),
            proto: 17,
            l4: L4::Ports {
                src: sport,
                dst: dport,
            },
        });
        ct.timeout = Some(120);
        ct.master = master;
        commit::prepare_ct(&ct, 0, &CommitRules::default())
    };
    let call = udp(1720, 1720, None); // never created
    let h245 = udp(2000, 2001, Some(call.orig));
    let rtp = udp(3000, 3001, Some(h245.orig));
    let (errs, h245_now, rtp_now) = ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let errs = s.create_cts(&[h245.clone(), rtp.clone()]).unwrap();
        (
            errs,
            s.get_ct(&h245.orig, 0).unwrap(),
            s.get_ct(&rtp.orig, 0).unwrap(),
        )
    });
    assert_eq!(errs, [0, 0]);
    let (Some(Object::Ct(h245_now)), Some(Object::Ct(rtp_now))) =
        (h245_now, rtp_now)
    else {
        panic!("not created")
    };
    assert_eq!(h245_now.master, None);
    assert_eq!(rtp_now.master, Some(h245.orig), "{rtp_now:?}");
}
