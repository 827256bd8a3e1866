//! conntrackd features routers still use, on a real daemon in network
//! namespaces: `Nice` and `Scheduler` as the kernel reports them for the
//! daemon's threads, and `PollSecs` (replication without an event
//! subscription). Needs root; skipped with a message otherwise.

mod common;

use std::time::Duration;

use common::fw::{self, Fw};

/// (policy, real-time priority, nice, name) of every thread of `pid`,
/// from /proc/PID/task/*/stat (fields 41, 40, 19 and 2).
fn threads(pid: u32) -> Vec<(u32, u32, i32, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat =
            std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap();
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()]
            .to_string();
        let f: Vec<&str> =
            stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // Counted from field 3 (state).
        let nice = f[19 - 3].parse().unwrap();
        let rt_priority = f[40 - 3].parse().unwrap();
        let policy = f[41 - 3].parse().unwrap();
        out.push((policy, rt_priority, nice, name));
    }
    out
}

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;

#[test]
fn nice_and_scheduler_are_applied_to_the_daemon() {
    let Some((a, _b)) = common::pair("nice") else {
        return;
    };
    let fw = Fw::start(
        &a,
        "nice",
        "Nice -7\n  Scheduler { Type FIFO\n Priority 20 }",
        &fw::udp_link("10.9.0.1", "10.9.0.2"),
    );
    let seen = threads(fw.daemon.0.id());
    eprintln!("threads (policy, rt priority, nice, name): {seen:?}");
    // The event loop runs real-time as configured, and so do the
    // runtime's I/O thread, which wakes the loop, and the link check,
    // which tells it a link went down …
    let mut real_time: Vec<&str> = seen
        .iter()
        .filter(|t| t.0 == SCHED_FIFO && t.1 == 20)
        .map(|t| t.3.as_str())
        .collect();
    real_time.sort_unstable();
    assert_eq!(real_time, ["async-io", "ctsyncd", "links"], "{seen:?}");
    // … and every other thread (the kernel worker among them) has the
    // normal policy and the configured nice value.
    let normal: Vec<_> = seen.iter().filter(|t| t.0 == SCHED_OTHER).collect();
    assert!(normal.iter().any(|t| t.3 == "kernel"), "{seen:?}");
    assert_eq!(normal.len() + real_time.len(), seen.len(), "{seen:?}");
    assert!(normal.iter().all(|t| t.2 == -7), "{seen:?}");
    assert!(!fw.log().contains("Cannot set nice level"), "{}", fw.log());
    drop(fw);

    // Without the clauses: conntrackd 1.4.7's SCHED_RR 99, nice untouched.
    let fw = Fw::start(&a, "nice0", "", &fw::udp_link("10.9.0.1", "10.9.0.2"));
    std::thread::sleep(Duration::from_millis(100));
    let seen = threads(fw.daemon.0.id());
    for t in &seen {
        let real_time = t.3 != "kernel";
        assert_eq!(
            (t.0, t.1),
            if real_time { (2, 99) } else { (0, 0) },
            "{seen:?}"
        );
    }
    assert!(seen.iter().all(|t| t.2 == 0), "{seen:?}");
}

/// The conntrack event groups the NETLINK_NETFILTER sockets of a
/// namespace subscribe to (/proc/net/netlink: protocol 12, groups mask).
fn netfilter_groups(ns: &common::Netns) -> Vec<u32> {
    ns.sh("cat /proc/net/netlink")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"12"))
                .then(|| u32::from_str_radix(f[3], 16).unwrap())
        })
        .collect()
}

#[test]
fn poll_secs_replicates_without_an_event_subscription() {
    let Some((a, b)) = common::pair("poll") else {
        return;
    };
    let fa = Fw::start(
        &a,
        "polla",
        "PollSecs 1",
        &fw::udp_link("10.9.0.1", "10.9.0.2"),
    );
    let fb = Fw::start(&b, "pollb", "", &fw::udp_link("10.9.0.2", "10.9.0.1"));
    assert!(fa.log().contains("running in polling mode"), "{}", fa.log());
    // Polling: none of the daemon's netfilter sockets listens to events;
    // the event-mode daemon's does.
    let groups = netfilter_groups(&a);
    assert!(
        !groups.is_empty() && groups.iter().all(|g| *g == 0),
        "{groups:?}"
    );
    assert!(netfilter_groups(&b).iter().any(|g| *g != 0));
    let flows = fw::flows("10.50.0.1", 60);
    fw::create(&a, &flows);
    let took = fb.wait_cached("external", 60, Duration::from_secs(15));
    assert!(took.is_some(), "new flows not replicated: {}", fb.stats());
    fw::delete(&a, &flows[..25]);
    let took = fb.wait_cached("external", 35, Duration::from_secs(15));
    assert!(
        took.is_some(),
        "destroyed flows not replicated: {}",
        fb.stats()
    );
    assert_eq!(fa.cached("internal"), 35);
}

/// The UDP checksum field of a sync datagram fw (10.9.0.1 in `a`) sends,
/// as `b` receives it.
fn sync_datagram_checksum(tag: &str, link_extra: &str) -> Option<u16> {
    let (a, b) = common::pair(tag)?;
    let link = fw::udp_link("10.9.0.1", "10.9.0.2").replacen(
        "Interface s0",
        &format!("Interface s0 {link_extra}"),
        1,
    );
    assert!(link.contains(link_extra));
    let _fw = Fw::start(&a, tag, "", &format!("Mode FTFW {{ }}\n{link}"));
    // FT-FW says HELLO/ALIVE every second even to a silent peer.
    let got = common::sniff::capture_udp(
        &b,
        "10.9.0.1".parse().unwrap(),
        3780,
        Duration::from_secs(5),
        |_, _| true,
    );
    Some(got.expect("no sync datagram within 5 s").0)
}

#[test]
fn checksum_off_sends_ipv4_datagrams_without_a_udp_checksum() {
    let Some(off) = sync_datagram_checksum("csoff", "Checksum off") else {
        return;
    };
    assert_eq!(off, 0, "Checksum off: the UDP checksum field must be 0");
    let on = sync_datagram_checksum("cson", "Checksum on").unwrap();
    assert_ne!(on, 0, "Checksum on: the UDP checksum field is filled");
}
