//! A master's end takes its expectations with it (the kernel drops them
//! together): the DESTROY of a flow purges the internal cache's
//! expectations of that master, and the peer's DEL of a conntrack the
//! external cache's, and no other; and what that costs when most flows
//! have no expectation at all.

use super::*;
use crate::config;
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::{Expect, L4, Tuple, status};
use crate::wire::{ct_key_of, exp_key_of};

fn node() -> Node {
    let text = "General { UNIX { Path /x } }\nSync { Mode FTFW { }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }\nOptions { ExpectationSync { ftp } } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    Node::new(cfg, 1, 1, 1472, 212_992, Instant::from_millis(0))
}

/// The `i`th of many distinct TCP flows.
fn flow(i: u32) -> Conntrack {
    let [_, a, b, c] = i.to_be_bytes();
    let orig = Tuple {
        src: std::net::Ipv4Addr::new(10, a, b, c).into(),
        dst: "192.168.1.2".parse().unwrap(),
        proto: 6,
        l4: L4::Ports {
            src: 40000,
            dst: 21,
        },
    };
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(orig.inverse());
    ct.status = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;
    ct.timeout = Some(432_000);
    ct
}

/// An FTP data channel expectation of `master`, told apart by `port`.
fn expectation(master: &Conntrack, port: u16) -> Expect {
    // test.rs's FTP PASV expectation, for this master's addresses, zone
    // and the given port.
    let mut e = super::test::pasv(master);
    e.tuple = Tuple {
        src: master.orig.src,
        dst: master.orig.dst,
        proto: 6,
        l4: L4::Ports { src: 0, dst: port },
    };
    e.zone = master.zone;
    e
}

/// This thread's CPU time: the measurement's, less the noise of a busy
/// machine than the wall clock's.
fn cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn message(kind: Kind, object: Object) -> Message {
    Message {
        kind,
        object,
        port: 0,
        seq: 0,
    }
}

/// The cost of a burst of DESTROYs (100 000 flows expiring) with 0, 100
/// and 2 000 expectations of other masters cached. Run with
/// `cargo test --release --lib node::test_exp_purge -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints the CPU time of 100 000 DESTROYs"]
fn destroys_with_expectations_cached() {
    const FLOWS: u32 = 100_000;
    for exps in [0u32, 100, 2_000] {
        let mut n = node();
        let t0 = Instant::from_millis(0);
        for i in 0..FLOWS {
            n.internal_ct.upsert(&flow(i), t0, true).unwrap();
        }
        // Masters that stay: every DESTROY looks for expectations it
        // does not find.
        for j in 0..exps {
            let m = flow(1_000_000 + j);
            n.internal_ct.upsert(&m, t0, true).unwrap();
            n.internal_exp
                .upsert(&expectation(&m, 50_000), t0, true)
                .unwrap();
        }
        let start = cpu();
        for i in 0..FLOWS {
            let msg = message(Kind::Destroy, Object::Ct(flow(i)));
            n.handle(t0, Input::Kernel(msg, Origin::NotMe));
        }
        let took = cpu() - start;
        assert_eq!(n.internal_ct.len(), exps as usize);
        assert_eq!(n.internal_exp.len(), exps as usize);
        println!(
            "{FLOWS} DESTROYs, {exps} expectations cached: {:.3} s CPU ({} ns each)",
            took.as_secs_f64(),
            took.as_nanos() / u128::from(FLOWS)
        );
        // The peer's DELs of as many conntracks, on the external cache.
        for i in 0..FLOWS {
            n.external_ct.upsert(&flow(i), t0, true).unwrap();
        }
        for j in 0..exps {
            let m = flow(1_000_000 + j);
            n.external_ct.upsert(&m, t0, true).unwrap();
            n.external_exp
                .upsert(&expectation(&m, 50_000), t0, true)
                .unwrap();
        }
        let start = cpu();
        for i in 0..FLOWS {
            n.forget_external_ct(&ct_key_of(&flow(i)));
        }
        let took = cpu() - start;
        assert_eq!(n.external_exp.len(), exps as usize);
        println!(
            "{FLOWS} peer DELs, {exps} expectations cached: {:.3} s CPU ({} ns each)",
            took.as_secs_f64(),
            took.as_nanos() / u128::from(FLOWS)
        );
    }
}

/// A master, the same tuple in zone 1 (another flow: conntrack zones
/// keep apart what the tuple alone does not), and another master, each
/// with expectations; the first has two, one of them with the very
/// tuple of the zone-1 master's.
struct Masters {
    m0: Conntrack,
    m1: Conntrack,
    other: Conntrack,
    of_m0: [Expect; 2],
    of_m1: Expect,
    of_other: Expect,
}

fn masters() -> Masters {
    let m0 = flow(1);
    let mut m1 = flow(1);
    m1.zone = 1;
    let other = flow(2);
    Masters {
        of_m0: [expectation(&m0, 50_000), expectation(&m0, 50_001)],
        of_m1: expectation(&m1, 50_000),
        of_other: expectation(&other, 50_000),
        m0,
        m1,
        other,
    }
}

fn exp_keys(c: &Cache<Expect>) -> Vec<crate::wire::ExpKey> {
    let mut v: Vec<_> = c.iter().map(|e| exp_key_of(&e.value)).collect();
    v.sort_by_key(|k| (k.zone, format!("{k:?}")));
    v
}

/// The kernel drops a master's expectations with it, and sends no
/// DESTROY for them: the master's DESTROY purges them from the internal
/// cache, sent to the peer as deleted when the DESTROY is not our own
/// doing. The same tuple's flow in another zone, and another master,
/// keep theirs.
#[test]
fn a_destroyed_masters_expectations_go_and_no_others() {
    for send in [true, false] {
        let mut n = node();
        let t0 = Instant::from_millis(0);
        let m = masters();
        for ct in [&m.m0, &m.m1, &m.other] {
            let msg = message(Kind::New, Object::Ct(ct.clone()));
            n.handle(t0, Input::Kernel(msg, Origin::NotMe));
        }
        for x in m.of_m0.iter().chain([&m.of_m1, &m.of_other]) {
            let msg = message(Kind::New, Object::Exp(x.clone()));
            n.handle(t0, Input::Kernel(msg, Origin::NotMe));
        }
        assert_eq!(n.internal_exp.len(), 4);
        let out = n.handle(t0, Input::Timer);
        test_support::sent_from(&mut n, t0, &out);
        let before = n.internal_exp.stats;

        let origin = if send { Origin::NotMe } else { Origin::Flush };
        let msg = message(Kind::Destroy, Object::Ct(m.m0.clone()));
        let now = Instant::from_millis(5_000);
        let out = n.handle(now, Input::Kernel(msg, origin));
        let sent = test_support::sent_from(&mut n, now, &out);

        let mut kept = vec![exp_key_of(&m.of_other), exp_key_of(&m.of_m1)];
        kept.sort_by_key(|k| (k.zone, format!("{k:?}")));
        assert_eq!(exp_keys(&n.internal_exp), kept, "send {send}");
        let mut deleted: Vec<_> = sent
            .iter()
            .filter_map(|s| match s {
                crate::wire::Msg::ExpDel(k) => Some(*k),
                _ => None,
            })
            .collect();
        deleted.sort_by_key(|k| format!("{k:?}"));
        let mut purged: Vec<_> = m.of_m0.iter().map(exp_key_of).collect();
        purged.sort_by_key(|k| format!("{k:?}"));
        if send {
            assert_eq!(deleted, purged);
        } else {
            assert!(deleted.is_empty(), "{deleted:?}");
        }
        // Each one purged is a deletion, none a failed one.
        let after = n.internal_exp.stats;
        assert_eq!(after.del_ok - before.del_ok, 2, "send {send}");
        assert_eq!(after.del_fail, before.del_fail);
        // A master with no expectation left: a DESTROY purges nothing.
        let msg = message(Kind::Destroy, Object::Ct(m.other.clone()));
        let out = n.handle(now, Input::Kernel(msg, origin));
        let sent = test_support::sent_from(&mut n, now, &out);
        assert_eq!(exp_keys(&n.internal_exp), vec![exp_key_of(&m.of_m1)]);
        let exp_dels = sent
            .iter()
            .filter(|s| matches!(s, crate::wire::Msg::ExpDel(_)))
            .count();
        assert_eq!(exp_dels, usize::from(send), "send {send}");
    }
}

/// The peer's DEL of a conntrack takes its expectations out of the
/// external cache (a commit would otherwise create them without their
/// master, refused); the same tuple's flow in another zone, and another
/// master, keep theirs.
#[test]
fn a_peers_deleted_master_takes_its_expectations_from_the_external_cache() {
    let mut n = node();
    let t0 = Instant::from_millis(0);
    let m = masters();
    for ct in [&m.m0, &m.m1, &m.other] {
        n.external_ct.upsert(ct, t0, true).unwrap();
    }
    for x in m.of_m0.iter().chain([&m.of_m1, &m.of_other]) {
        n.external_exp.upsert(x, t0, true).unwrap();
    }
    n.forget_external_ct(&ct_key_of(&m.m0));
    let mut kept = vec![exp_key_of(&m.of_other), exp_key_of(&m.of_m1)];
    kept.sort_by_key(|k| (k.zone, format!("{k:?}")));
    assert_eq!(exp_keys(&n.external_exp), kept);
    assert_eq!(n.external_exp.stats.del_ok, 2);
    assert_eq!(n.external_exp.stats.del_fail, 0);
    // Not cached: nothing else goes.
    n.forget_external_ct(&ct_key_of(&m.m0));
    assert_eq!(exp_keys(&n.external_exp), kept);
}
