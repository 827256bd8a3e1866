//! An FTP expectation whose master is in a conntrack zone, between two
//! daemons and two real kernels. The kernel reports expectations without
//! their master's zone; the primary takes it from the cached master, so
//! the backup holds the expectation in zone 7 and its commit creates it
//! there, beside its master (in zone 0 the kernel finds no master and
//! refuses it). Over conntrackd's protocol, whose expectations carry no
//! zone, the backup takes it from the master it holds. Needs root;
//! skipped with a message otherwise.

// The wait for conntrackd is a wall-clock bound on a real process.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::ctd::{Ctd, Peer};
use common::ftp::{data_channel, ftp_control};
use common::fw::{Fw, udp_link};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::Conntrack;

/// `conntrack -L expect`'s lines with `dport={port} ` (the tool prints no
/// zone for an expectation: which zone holds it is asked by master).
fn listed(ns: &common::Netns, port: u16) -> usize {
    ns.sh("conntrack -L expect 2>/dev/null")
        .lines()
        .filter(|l| l.contains(&format!("dport={port} ")))
        .count()
}

/// Both FTP sessions' masters and expectations, created in `ns`'s kernel
/// by a socket that is not the daemon's.
fn two_sessions(ns: &common::Netns) -> [Conntrack; 2] {
    // Zone 7 and, for contrast, zone 0: one PASV each.
    let masters = [ftp_control(40007, true, 7), ftp_control(40000, true, 0)];
    let exps = [
        data_channel(&masters[0], 50007),
        data_channel(&masters[1], 50000),
    ];
    ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        assert_eq!(s.create_cts(&masters).unwrap(), [0, 0]);
        assert_eq!(s.create_exps(&exps).unwrap(), [0, 0]);
    });
    masters
}

fn sync_section(me: &str, peer: &str) -> String {
    format!(
        "Mode FTFW {{ }}\n{}\nOptions {{ ExpectationSync {{ ftp }} }}",
        udp_link(me, peer)
    )
}

/// The same, both daemons speaking conntrackd's protocol (whose
/// expectations carry no zone).
fn ctd_sync_section(me: &str, peer: &str) -> String {
    format!(
        "Mode FTFW {{ }}\n{}\nOptions {{ ExpectationSync {{ ftp }} PeerProtocol conntrackd }}",
        udp_link(me, peer)
    )
}

/// What the feature is for: conntrackd 1.4.7 in the same place caches
/// (and so sends) only the expectation whose master is in zone 0.
#[test]
fn conntrackd_keeps_only_the_zone_0_masters_expectation() {
    if !common::ctd::installed(
        "conntrackd_keeps_only_the_zone_0_masters_expectation",
    ) {
        return;
    }
    let Some((a, _b)) = common::pair("xc") else {
        return;
    };
    let ctd = Ctd::start(&a, "xc1", "", &sync_section("10.9.0.1", "10.9.0.2"));
    two_sessions(&a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut shown = String::new();
    while std::time::Instant::now() < deadline
        && !shown.contains("dport=50000 ")
    {
        std::thread::sleep(Duration::from_millis(100));
        shown = ctd.run(&["-i", "expect"]);
    }
    assert!(shown.contains("dport=50000 "), "{shown}");
    // Given the time it took the first, the second would be there.
    std::thread::sleep(Duration::from_millis(500));
    let shown = ctd.run(&["-i", "expect"]);
    assert!(!shown.contains("dport=50007 "), "{shown}");
}

#[test]
fn a_zoned_masters_expectation_is_committed_in_its_zone() {
    committed_in_its_zone("xz", sync_section);
}

/// Over conntrackd's protocol, which has no expectation zone: the backup
/// takes it from the master it holds.
#[test]
fn a_zoned_masters_expectation_over_conntrackds_protocol_is_committed_in_its_zone()
 {
    committed_in_its_zone("xk", ctd_sync_section);
}

fn committed_in_its_zone(tag: &str, sync: fn(&str, &str) -> String) {
    let Some((a, b)) = common::pair(tag) else {
        return;
    };
    let (fw1, fw2) = Fw::start_pair((&a, &b), tag, "", sync);
    let masters = two_sessions(&a);
    let limit = Duration::from_secs(10);
    assert!(
        fw2.wait_cached("external_expect", 2, limit).is_some(),
        "fw2 has {} expectations of 2: {}",
        fw2.cached("external_expect"),
        fw2.log()
    );
    let shown = String::from_utf8(fw2.cli(&["-e", "expect"]).stdout).unwrap();
    let zone7 = shown
        .lines()
        .filter(|l| l.contains("dport=50007 "))
        .collect::<Vec<_>>();
    assert!(
        zone7.len() == 1 && zone7[0].contains(" zone=7 "),
        "{shown}\nfw2's conntracks: {}",
        String::from_utf8(fw2.cli(&["-e"]).stdout).unwrap()
    );
    let committed = fw2.cli(&["-c"]);
    assert!(committed.status.success(), "{committed:?}");
    assert_eq!(listed(&b, 50007), 1, "zone 7: {}", fw2.log());
    assert_eq!(listed(&b, 50000), 1, "zone 0: {}", fw2.log());
    assert!(
        fw2.log().contains("Committed 2 new expectations"),
        "{}",
        fw2.log()
    );
    // The one in zone 7 is its zone-7 master's.
    let of_master = b.enter(|| {
        let mut s = CtSocket::open().unwrap();
        s.dump_exps_of(&masters[0].orig, 7).unwrap()
    });
    assert_eq!(of_master.len(), 1, "{of_master:?}");
    assert_eq!(of_master[0].zone, 7);
    drop(fw1);
}
