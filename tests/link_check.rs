//! The link check in a running daemon: its interfaces are read on a
//! thread of its own, when the kernel notifies a change and once a second,
//! and the loop acts on what it found.
//! Sending moves to the next link when the default one goes down, and a
//! link whose interface was deleted and created again (a VLAN or a bond
//! set up anew) is opened again; replication goes on in both cases. The
//! TCP case runs here, where the daemon lives in the namespace (a TCP
//! link connects from its thread's namespace, which `tests/channel.rs`
//! cannot give it). Needs root.

// Waiting for a daemon is a wall-clock matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::fw::{Fw, create, flows, udp_link};
use common::{Netns, pair, until};
use ctsyncd::channel::LinkStatus;
use ctsyncd::daemon::link_watch::{LINK_CHECK, LinkWatch, Report};

/// The sync links' own flows are not replicated (the counts below are
/// the test's flows only).
const GENERAL: &str = "Filter { Address Ignore { IPv4_address 10.9.0.0/24\n  IPv4_address 10.9.1.0/24 } }";

/// `n` new flows on fw-1 reach fw-2's external cache, which then holds
/// `total`.
fn replicated(a: &Netns, fw1: &Fw, fw2: &Fw, src: &str, n: u32, total: u64) {
    create(a, &flows(src, n));
    assert!(
        fw2.wait_cached("external", total, Duration::from_secs(15))
            .is_some(),
        "fw-2 holds {} of {total}\nfw-1:\n{}\nfw-2:\n{}",
        fw2.cached("external"),
        fw1.log(),
        fw2.log()
    );
}

/// Waits for `line` in `fw`'s log.
fn logged(fw: &Fw, line: &str) {
    assert!(
        until(Duration::from_secs(10), || fw.log().contains(line)).is_some(),
        "no \"{line}\" in the log:\n{}",
        fw.log()
    );
}

#[test]
fn losing_the_default_link_moves_sending_to_the_next() {
    let Some((a, b)) = pair("lcf") else {
        return;
    };
    let sync = |me: &str, peer: &str| {
        let s1 = udp_link(me, peer)
            .replace("10.9.0.", "10.9.1.")
            .replace("s0", "s1");
        let s0 = udp_link(me, peer).replacen("UDP", "UDP Default", 1);
        format!("Mode FTFW {{ }}\n{s0}\n{s1}")
    };
    let (fw1, fw2) = Fw::start_pair((&a, &b), "lcf", GENERAL, sync);
    replicated(&a, &fw1, &fw2, "10.151.0.1", 100, 100);
    a.sh("ip link set s0 down");
    logged(&fw1, "device `s1' becomes dedicated link");
    // fw-2's end of s0 lost its carrier: it moves too.
    logged(&fw2, "device `s1' becomes dedicated link");
    replicated(&a, &fw1, &fw2, "10.152.0.1", 100, 200);
    a.sh("ip link set s1 down");
    logged(&fw1, "no dedicated links available!");
}

/// `s0` deleted and created again on both sides, with its addresses and
/// new indexes.
fn recreate_s0(a: &Netns, b: &Netns) {
    a.sh(&format!(
        "ip link del s0 && ip link add s0 type veth peer name s0 netns {} && ip addr add 10.9.0.1/24 dev s0 && ip link set s0 up",
        b.0
    ));
    b.sh("ip addr add 10.9.0.2/24 dev s0 && ip link set s0 up");
}

fn opened_again(tag: &str, link: fn(&str, &str) -> String) {
    let Some((a, b)) = pair(tag) else {
        return;
    };
    let sync =
        |me: &str, peer: &str| format!("Mode FTFW {{ }}\n{}", link(me, peer));
    let (fw1, fw2) = Fw::start_pair((&a, &b), tag, GENERAL, sync);
    replicated(&a, &fw1, &fw2, "10.153.0.1", 100, 100);
    recreate_s0(&a, &b);
    logged(&fw1, "s0: interface created again, link opened again");
    logged(&fw2, "s0: interface created again, link opened again");
    replicated(&a, &fw1, &fw2, "10.154.0.1", 100, 200);
}

#[test]
fn a_udp_link_whose_interface_is_created_again_carries_on() {
    opened_again("lcu", udp_link);
}

/// `PeerProtocol ctsyncd`: in `auto` nothing is written to a stream for
/// its first 5 s unless the peer spoke first.
#[test]
fn a_tcp_link_whose_interface_is_created_again_carries_on() {
    opened_again("lct", |me, peer| {
        let tcp = udp_link(me, peer).replacen("UDP", "TCP", 1);
        format!("{tcp}\nOptions {{ PeerProtocol ctsyncd }}")
    });
}

/// `s0` renamed on fw-1 while the daemons run (an interface renamed by
/// a management tool): the sockets are tied to its index, which did not
/// change, and replication goes on over it, as with conntrackd, whose
/// link monitor follows interfaces by index.
#[test]
fn a_link_whose_interface_is_renamed_carries_on() {
    let Some((a, b)) = pair("lcr") else {
        return;
    };
    let sync = |me: &str, peer: &str| {
        format!("Mode FTFW {{ }}\n{}", udp_link(me, peer))
    };
    let (fw1, fw2) = Fw::start_pair((&a, &b), "lcr", GENERAL, sync);
    replicated(&a, &fw1, &fw2, "10.155.0.1", 100, 100);
    a.sh("ip link set s0 down && ip link set s0 name sync0 && ip link set sync0 up");
    // The rename's down and up, seen and over (read at once on the
    // notification, and once a second in any case).
    std::thread::sleep(LINK_CHECK * 2);
    replicated(&a, &fw1, &fw2, "10.156.0.1", 100, 200);
    let links =
        String::from_utf8_lossy(&fw1.cli(&["-s", "link"]).stdout).into_owned();
    // Down while it was renamed ("no dedicated links available!", as
    // conntrackd logs it too), running since, and shown by its new name
    // (conntrackd 1.4.7: "UDP traffic device=sync0 status=RUNNING",
    // "UDP traffic (active device=sync0)").
    assert!(
        links.contains("UDP traffic device=sync0 status=RUNNING "),
        "{links}"
    );
    let network =
        String::from_utf8_lossy(&fw1.cli(&["-s"]).stdout).into_owned();
    assert!(
        network.contains("UDP traffic (active device=sync0)"),
        "{network}"
    );
}

/// A TCP link whose interface was renamed connects again over it: the
/// backup restarted, so fw-1 opens a new connection, bound to the
/// interface it was configured with, now named otherwise. (What fw-1
/// wrote to the dead connection goes again once it learns of the
/// restart, `tests/peer_restart.rs`; what came before, the restarted
/// backup's empty external cache lacks until anti-entropy, here every
/// 2 s.)
#[test]
fn a_tcp_link_whose_interface_is_renamed_connects_again() {
    let Some((a, b)) = pair("lcrt") else {
        return;
    };
    let sync = |me: &str, peer: &str| {
        let tcp = udp_link(me, peer).replacen("UDP", "TCP", 1);
        format!(
            "Mode FTFW {{ }}\n{tcp}\nOptions {{ PeerProtocol ctsyncd AntiEntropyPeriod 2 }}"
        )
    };
    let (fw1, mut fw2) = Fw::start_pair((&a, &b), "lcrt", GENERAL, sync);
    replicated(&a, &fw1, &fw2, "10.157.0.1", 100, 100);
    a.sh("ip link set s0 down && ip link set s0 name sync0 && ip link set sync0 up");
    std::thread::sleep(LINK_CHECK * 2);
    fw2.crash_and_restart(&b, Duration::from_millis(200));
    create(&a, &flows("10.158.0.1", 100));
    let arrived = || {
        let shown = String::from_utf8_lossy(&fw2.cli(&["-e"]).stdout)
            .lines()
            .filter(|l| l.contains("src=10.158.0.1 "))
            .count();
        shown == 100
    };
    assert!(
        until(Duration::from_secs(20), arrived).is_some(),
        "fw-2 holds {} entries\nfw-1:\n{}\nfw-2:\n{}",
        fw2.cached("external"),
        fw1.log(),
        fw2.log()
    );
}

/// The link check's thread in namespace `a`, on its `s0` and `s1`.
fn watch_in(a: &Netns) -> LinkWatch {
    let text = format!(
        "General {{ UNIX {{ Path /tmp/lcn.sock }} }}\nSync {{ Mode FTFW {{ }}\n{}\n{}\n}}",
        udp_link("10.9.0.1", "10.9.0.2"),
        udp_link("10.9.1.1", "10.9.1.2").replace("s0", "s1")
    );
    let cfg = ctsyncd::config::parse(&text, "t.conf").unwrap().config;
    let links = cfg.sync.unwrap().channels;
    a.enter(|| LinkWatch::start(links)).unwrap()
}

fn next_facts(watch: &LinkWatch) -> Vec<LinkStatus> {
    loop {
        match watch.reports.recv_blocking() {
            Ok(Report::Facts(facts)) => {
                return facts.into_iter().map(|f| f.unwrap().status).collect();
            }
            Ok(Report::Reopened(..)) => {}
            Err(_) => panic!("the link check's thread died"),
        }
    }
}

/// The kernel's link notification brings the next read forward: a link
/// that goes down is reported within milliseconds, not at the next
/// second's read (conntrackd's link monitor acts at once too). Taken
/// right after a periodic read, so that the next one is a second away.
#[test]
fn a_link_going_down_is_reported_at_once() {
    let Some((a, _b)) = pair("lcn") else {
        return;
    };
    let watch = watch_in(&a);
    use LinkStatus::Running;
    assert_eq!(next_facts(&watch), [Running, Running]);
    let down = Instant::now();
    a.sh("ip link set s1 down");
    assert_eq!(next_facts(&watch), [Running, LinkStatus::Down]);
    let took = down.elapsed();
    assert!(
        took < LINK_CHECK / 2,
        "s1 down reported after {took:?}: at the periodic read, not at the notification"
    );
    eprintln!("s1 down reported after {took:?}");
}
