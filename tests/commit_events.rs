//! A commit without its own echoes (issue 17): while `-c` runs, the
//! daemon's event socket is out of the conntrack NEW group, so the kernel
//! builds no NEW event for the entries the commit creates; afterwards a
//! resync brings the committed entries into the internal cache and sends
//! the peer the flows that started meanwhile. The real kernel, in network
//! namespaces the tests create. Needs root.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fw::{Fw, create, delete, flows, udp_link};
use common::{Netns, pair};
use ctsyncd::kernel::codec::{self, Kind, Object};
use ctsyncd::kernel::events::{EventRead, EventSocket};
use ctsyncd::model::Tuple;

/// The conntrack events queued on the socket, as (kind, original tuple).
fn queued(ev: &mut EventSocket) -> Vec<(Kind, Tuple)> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match ev.try_recv().unwrap() {
            None => return out,
            Some(EventRead::Data(n)) => {
                for r in codec::messages(ev.received(n)) {
                    if let Ok(codec::Received::Msg(m)) = r
                        && let Object::Ct(c) = m.object
                    {
                        out.push((m.kind, c.orig));
                    }
                }
            }
            Some(EventRead::Overrun { .. }) => panic!("overrun"),
        }
    }
    panic!("event queue never emptied");
}

/// Out of the NEW group, a created flow causes no event while its update
/// and its end still do; back in, the next created flow's NEW arrives.
#[test]
fn the_event_socket_leaves_and_joins_the_new_group() {
    let Some(ns) = Netns::new("cev-sock") else {
        return;
    };
    let f = flows("10.160.0.1", 2);
    let events = ns.enter(|| {
        let mut ev = EventSocket::open(false, 1 << 20, 1 << 20, false).unwrap();
        let mut steps = Vec::new();
        assert!(ev.new_events());
        ev.set_new_events(false).unwrap();
        ev.set_new_events(false).unwrap(); // asked twice: still out
        assert!(!ev.new_events());
        create_here(&f[..1]);
        steps.push(queued(&mut ev));
        // An update (the mark) and the flow's end are still reported.
        let sh = |cmd: &str| {
            let ok = Command::new("sh").args(["-c", cmd]).status().unwrap();
            assert!(ok.success(), "{cmd}");
        };
        sh("conntrack -U -p udp -s 10.160.0.1 -d 10.200.0.1 --sport 1024 --dport 1 -m 5 >/dev/null 2>&1");
        steps.push(queued(&mut ev));
        sh("conntrack -D -p udp -s 10.160.0.1 -d 10.200.0.1 --sport 1024 --dport 1 >/dev/null 2>&1");
        steps.push(queued(&mut ev));
        ev.set_new_events(true).unwrap();
        assert!(ev.new_events());
        create_here(&f[1..]);
        steps.push(queued(&mut ev));
        steps
    });
    let (a, b) = (f[0].orig, f[1].orig);
    assert_eq!(events[0], [], "no NEW while out of the group");
    assert_eq!(events[1], [(Kind::Update, a)]);
    assert_eq!(events[2], [(Kind::Destroy, a)]);
    assert_eq!(events[3], [(Kind::New, b)], "NEW again once back in");
}

/// Creates flows from the calling thread's namespace.
fn create_here(cts: &[ctsyncd::model::Conntrack]) {
    let mut s = ctsyncd::kernel::socket::CtSocket::open().unwrap();
    let errs = s.create_cts(cts).unwrap();
    assert!(errs.iter().all(|&e| e == 0), "kernel refused a flow");
}

/// The groups (first 32, a bit mask) of each NETLINK_NETFILTER socket in
/// the namespace that listens to any: the daemon's event socket.
fn event_groups(ns: &Netns) -> Vec<u32> {
    ns.enter(|| {
        // thread-self: /proc/self/net is the process's namespace.
        let text =
            std::fs::read_to_string("/proc/thread-self/net/netlink").unwrap();
        text.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let groups = u32::from_str_radix(f.get(3)?, 16).ok()?;
                (f.get(1) == Some(&"12") && groups != 0).then_some(groups)
            })
            .collect()
    })
}

/// NFNLGRP_CONNTRACK_NEW is group 1: bit 0 of the mask.
const NEW_GROUP: u32 = 1;
const IDLE: u32 = 30_000;

/// End to end, two daemons: fw-2 commits 30 000 entries from its external
/// cache while traffic creates flows in its kernel. During the commit its
/// event socket is out of the NEW group; afterwards its internal cache
/// holds every committed entry and every flow created meanwhile, and
/// fw-1 was sent exactly those flows (not the committed ones, whose
/// events conntrackd does not send either).
#[test]
fn after_a_commit_the_caches_hold_what_the_new_events_would_have_said() {
    let Some((a, b)) = pair("cev") else {
        return;
    };
    let general = "HashLimit 262144\n  NetlinkBufferSize 8388608\n  NetlinkBufferSizeMaxGrowth 16777216\n  Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }";
    let fw1 = Fw::start(
        &a,
        "cev1",
        general,
        &format!("Mode FTFW {{ }}\n{}", udp_link("10.9.0.1", "10.9.0.2")),
    );
    let fw2 = Fw::start(
        &b,
        "cev2",
        general,
        &format!("Mode FTFW {{ }}\n{}", udp_link("10.9.0.2", "10.9.0.1")),
    );
    let groups = event_groups(&b);
    assert_eq!(groups.len(), 1, "one event socket: {groups:?}");
    assert_ne!(groups[0] & NEW_GROUP, 0, "in the NEW group before");
    let idle = flows("10.161.0.1", IDLE);
    create(&a, &idle);
    let synced =
        fw2.wait_cached("external", u64::from(IDLE), Duration::from_secs(60));
    assert!(synced.is_some(), "{} on fw-2", fw2.cached("external"));
    // fw-2's kernel was empty: fw-1 has been sent nothing yet.
    assert_eq!(fw1.cached("external"), 0);

    let during = flows("10.162.0.1", 400);
    let t0 = Instant::now();
    let mut commit = Command::new(common::fw::bin())
        .arg("-C")
        .arg(&fw2.conf)
        .arg("-c")
        .spawn()
        .unwrap();
    let (mut created, mut while_running, mut out_of_new) = (0, 0, 0);
    while created < during.len() && t0.elapsed() < Duration::from_secs(60) {
        let running = commit.try_wait().unwrap().is_none();
        if running
            && event_groups(&b).first().is_some_and(|g| g & NEW_GROUP == 0)
        {
            out_of_new += 1;
        }
        create(&b, &during[created..created + 1]);
        created += 1;
        if running {
            while_running += 1;
        } else {
            break;
        }
    }
    let status = commit.wait().unwrap();
    assert!(status.success(), "-c failed: {}", fw2.log());
    eprintln!(
        "commit took {:?}; {created} flows created, {while_running} while -c ran, {out_of_new} samples out of the NEW group",
        t0.elapsed()
    );
    assert!(while_running > 0, "no flow was created during the commit");
    assert!(out_of_new > 0, "the event socket never left the NEW group");
    let groups = event_groups(&b);
    assert_ne!(groups[0] & NEW_GROUP, 0, "back in the NEW group after");
    assert!(
        fw2.log().contains(&format!("Committed {IDLE} new entries")),
        "{}",
        fw2.log()
    );
    let want = u64::from(IDLE) + created as u64;
    let internal = fw2.wait_cached("internal", want, Duration::from_secs(30));
    assert!(
        internal.is_some(),
        "fw-2's internal cache holds {} of {want}",
        fw2.cached("internal")
    );
    let sent =
        fw1.wait_cached("external", created as u64, Duration::from_secs(30));
    assert!(
        sent.is_some(),
        "fw-1 was sent {} flows, {created} started",
        fw1.cached("external")
    );
    // A flow ending after the commit still leaves both.
    delete(&b, &during[..1]);
    let gone = fw1.wait_cached(
        "external",
        created as u64 - 1,
        Duration::from_secs(30),
    );
    assert!(gone.is_some(), "the end of a flow never reached fw-1");
}
