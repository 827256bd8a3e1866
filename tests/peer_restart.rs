//! A backup restarted while its primary's flows changed: what the primary
//! sent while the backup was down (over TCP: written into the connection
//! that died with it) goes again once the restart is known. The backup
//! here writes into its kernel (`DisableExternalCache`), so its table
//! outlives the restart, and it asks no resync: nothing else would bring
//! those flows (no anti-entropy runs without an external cache). Real
//! daemons in two network namespaces; needs root.

// Waiting for a daemon is a wall-clock matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::fw::{Fw, create, flows, udp_link};
use common::{Netns, pair, until};

/// The sync link's own flows are not replicated.
const GENERAL: &str = "Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }";

/// Flows from `src` in `ns`'s kernel.
fn in_kernel(ns: &Netns, src: &str) -> usize {
    ns.sh("conntrack -L 2>/dev/null")
        .lines()
        .filter(|l| l.contains(&format!("src={src} ")))
        .count()
}

#[test]
fn a_backup_restarted_over_tcp_gets_what_was_sent_while_it_was_down() {
    let Some((a, b)) = pair("prt") else {
        return;
    };
    let sync = |me: &str, peer: &str| {
        let tcp = udp_link(me, peer).replacen("UDP", "TCP", 1);
        let backup = if me == "10.9.0.2" {
            "DisableExternalCache On"
        } else {
            ""
        };
        format!("Mode FTFW {{ {backup} }}\n{tcp}")
    };
    let (fw1, mut fw2) = Fw::start_pair((&a, &b), "prt", GENERAL, sync);
    let injected = |src: &str, n: usize| {
        until(Duration::from_secs(15), || in_kernel(&b, src) == n).is_some()
    };
    create(&a, &flows("10.157.0.1", 100));
    assert!(
        injected("10.157.0.1", 100),
        "before the restart: fw-2's kernel holds {}\nfw-1:\n{}\nfw-2:\n{}",
        in_kernel(&b, "10.157.0.1"),
        fw1.log(),
        fw2.log()
    );
    fw2.crash();
    create(&a, &flows("10.158.0.1", 100));
    std::thread::sleep(Duration::from_millis(500));
    fw2.restart(&b);
    assert!(
        injected("10.158.0.1", 100),
        "fw-2's kernel holds {} of the 100 flows created while it was down\nfw-1:\n{}\nfw-2:\n{}",
        in_kernel(&b, "10.158.0.1"),
        fw1.log(),
        fw2.log()
    );
    assert_eq!(in_kernel(&b, "10.157.0.1"), 100, "kept through the restart");
}
