//! `-c` brings an active flow back first: with 100 000 idle entries in
//! the backup's external cache and one flow updated after them, the
//! active one is in the backup's kernel (`conntrack -G`) while the commit
//! is still running (the `-c` client has not returned, and the kernel
//! holds only part of the table). Real daemons in two network
//! namespaces. Needs root.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fw::{Fw, create, flows, release_build, udp_link};
use common::{Netns, pair};
use ctsyncd::kernel::socket::CtSocket;

const IDLE: u32 = 100_000;

#[test]
fn an_active_flow_is_committed_before_the_idle_table() {
    if !release_build("an_active_flow_is_committed_before_the_idle_table") {
        return;
    }
    let Some((a, b)) = pair("cor") else {
        return;
    };
    let general = "HashLimit 262144\n  Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }";
    let fw1 = Fw::start(
        &a,
        "cor1",
        general,
        &format!("Mode FTFW {{ }}\n{}", udp_link("10.9.0.1", "10.9.0.2")),
    );
    let fw2 = Fw::start(
        &b,
        "cor2",
        general,
        &format!("Mode FTFW {{ }}\n{}", udp_link("10.9.0.2", "10.9.0.1")),
    );
    create(&a, &flows("10.130.0.1", IDLE));
    let idle =
        fw2.wait_cached("external", u64::from(IDLE), Duration::from_secs(60));
    assert!(idle.is_some(), "{} on fw-2", fw2.cached("external"));
    // The active flow: updated after every idle one.
    std::thread::sleep(Duration::from_millis(50));
    create(&a, &flows("10.131.0.7", 1));
    let all = fw2.wait_cached(
        "external",
        u64::from(IDLE) + 1,
        Duration::from_secs(10),
    );
    assert!(all.is_some(), "the active flow never reached fw-2");
    drop(fw1);

    let t0 = Instant::now();
    let mut commit = Command::new(common::fw::bin())
        .arg("-C")
        .arg(&fw2.conf)
        .arg("-c")
        .spawn()
        .unwrap();
    let get = "conntrack -G -p udp -s 10.131.0.7 -d 10.200.0.1 --sport 1024 --dport 1 >/dev/null 2>&1 && echo found || true";
    let mut found = None;
    while t0.elapsed() < Duration::from_secs(30) {
        if b.sh(get).contains("found") {
            let running = commit.try_wait().unwrap().is_none();
            let count: u64 = b.sh("conntrack -C").trim().parse().unwrap();
            found = Some((t0.elapsed(), running, count));
            break;
        }
        if commit.try_wait().unwrap().is_some() && !b.sh(get).contains("found")
        {
            break;
        }
    }
    let status = commit.wait().unwrap();
    let took = t0.elapsed();
    assert!(status.success(), "-c failed: {}", fw2.log());
    let committed: u64 = b.sh("conntrack -C").trim().parse().unwrap();
    eprintln!(
        "active flow in the kernel after {found:?} (elapsed, commit still running, kernel entries); whole commit {took:?}, {committed} entries"
    );
    let (_, running, count) =
        found.expect("the active flow was never committed");
    assert!(committed > u64::from(IDLE), "{committed} committed");
    assert!(
        running && count < u64::from(IDLE),
        "the active flow came only when the commit was done ({count} entries in the kernel)"
    );
}

/// A RELATED flow whose master ended before the failover (in neither the
/// plan nor the kernel): ctnetlink refuses it with ENOENT, so the commit
/// creates it without the master instead of losing it; a RELATED flow
/// whose master is there keeps its link. The real kernel, through the
/// socket the worker commits with.
#[test]
fn a_related_flow_whose_master_is_gone_is_created_without_it() {
    let Some(ns) = Netns::new("cor-orphan") else {
        return;
    };
    let all = flows("10.140.0.1", 3);
    let (master, mut child, mut orphan) =
        (all[0].clone(), all[1].clone(), all[2].clone());
    child.master = Some(master.orig);
    // A master no kernel has: another source address.
    orphan.master = Some(flows("10.141.0.1", 1)[0].orig);
    let (errs, child_back, orphan_back) = ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let errs = s.create_cts(&[master, child.clone(), orphan.clone()]);
        let get = |s: &mut CtSocket, c: &ctsyncd::model::Conntrack| match s
            .get_ct(&c.orig, c.zone)
            .unwrap()
        {
            Some(ctsyncd::kernel::codec::Object::Ct(c)) => Some(c),
            _ => None,
        };
        (errs.unwrap(), get(&mut s, &child), get(&mut s, &orphan))
    });
    assert_eq!(errs, [0, 0, 0], "every flow created");
    let orphan_back = orphan_back.expect("the orphan is in the kernel");
    assert_eq!(orphan_back.master, None);
    let child_back = child_back.expect("the child is in the kernel");
    assert_eq!(child_back.master, child.master, "the live master is kept");
}
