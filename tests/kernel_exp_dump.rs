//! The per-master expectation dump (`CtSocket::dump_exps_of`) against the
//! real kernel, inside a network namespace created and removed by the
//! test: what DisableExternalCache's re-create of a master puts back
//! (src/daemon/inject.rs) is read this way, one master's list instead of
//! the whole expectation table. Needs root; skipped with a message
//! otherwise (CI runs as root).

mod common;

use common::Netns;

use ctsyncd::kernel::commit::{self, CommitRules};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::{Conntrack, Expect, L4, ProtoInfo, Tuple, status};

fn tcp(src: &str, dst: &str, sp: u16, dp: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

/// An established FTP control connection from `client` port `sport`;
/// without the helper when `helper` is false.
fn control(sport: u16, helper: bool) -> Conntrack {
    let mut ct = Conntrack::new(tcp("192.168.0.2", "192.168.1.2", sport, 21));
    ct.status = status::SEEN_REPLY | status::ASSURED;
    ct.timeout = Some(600);
    ct.helper = helper.then(|| "ftp".try_into().unwrap());
    ct.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 7,
        flags_orig: 0,
        flags_reply: 0,
    };
    commit::prepare_ct(&ct, 0, &CommitRules::default())
}

/// The passive data channel `master` announced on `port`.
fn data_channel(master: &Conntrack, port: u16) -> Expect {
    let mut x = Expect::new(
        master.orig,
        tcp("192.168.0.2", "192.168.1.2", 0, port),
        Tuple {
            src: "255.255.255.255".parse().unwrap(),
            dst: "255.255.255.255".parse().unwrap(),
            proto: 6,
            l4: L4::Ports {
                src: 0,
                dst: 0xffff,
            },
        },
    );
    x.timeout = Some(300);
    x.helper = Some("ftp".try_into().unwrap());
    commit::prepare_exp(&x, 0, &CommitRules::default())
}

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
    let a = control(40000, true);
    let b = control(40001, true);
    let plain = control(40002, false);
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
        let gone = control(40003, true);
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
