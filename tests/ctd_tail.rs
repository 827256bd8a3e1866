//! A lost tail crosses a pair being migrated within milliseconds, in
//! either direction (issue 17, item 1). conntrackd's protocol has no
//! probe: a lost last message is found only at the sender's next one, its
//! ALIVE or ACK a second later. ctsyncd asks (`sync::ctd::tail`):
//!
//! - as the backup of a conntrackd 1.4.7 primary it NACKs the numbers
//!   after the last one it heard, and conntrackd resends what it sent in
//!   that range;
//! - as the primary of a conntrackd backup it sends an ALIVE, whose number
//!   shows conntrackd the gap, which conntrackd NACKs.
//!
//! Real daemons in two network namespaces, the primary on `a`; nftables
//! drops one data datagram of the primary's (`numgen`, as in
//! `ctd_interop`; this kernel has no netem). Needs root and conntrackd
//! (`make ci-deps`).

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::ctd::{self, Ctd, Peer};
use common::fw::{Fw, flows, json_number};
use common::{Netns, pair, until};
use ctsyncd::kernel::socket::CtSocket;

const GENERAL: &str = "HashLimit 65536\n  Filter From Userspace { Address Ignore { IPv4_address 10.9.0.0/24 } }";

fn sync(me: &str, peer: &str) -> String {
    format!(
        "Mode FTFW {{ }}\nUDP {{ IPv4_address {me} IPv4_Destination_Address {peer} Port 3780 Interface s0 }}"
    )
}

/// Drops the `n`-th (from 0) datagram of more than 32 bytes `ns` sends to
/// the sync port: a data message's (ACKs and ALIVEs are 16 and 8).
fn drop_data_datagram(ns: &Netns, n: u32) {
    ns.sh(&format!(
        "nft -f - <<'EOF'
table inet ctd_tail {{
    chain out {{ type filter hook output priority -300; udp dport 3780 udp length > 40 numgen inc mod 1000000 == {n} counter drop; }}
}}
EOF"
    ));
}

fn dropped(ns: &Netns) -> u64 {
    ns.sh("nft list table inet ctd_tail")
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_conntrackd_primarys_lost_tail_is_asked_for_at_once() {
    let test = "a_conntrackd_primarys_lost_tail_is_asked_for_at_once";
    if !ctd::installed(test) || !common::fw::release_build(test) {
        return;
    }
    let Some((a, b)) = pair("ctt") else {
        return;
    };
    let primary =
        Ctd::start(&a, "cttp", GENERAL, &sync("10.9.0.1", "10.9.0.2"));
    let backup = Fw::start(&b, "cttb", GENERAL, &sync("10.9.0.2", "10.9.0.1"));
    let show = || {
        format!(
            "--- conntrackd log ---\n{}\n--- ctsyncd log ---\n{}\n--- ctsyncd -s ---\n{}",
            std::fs::read_to_string(primary.dir.join("log"))
                .unwrap_or_default(),
            backup.log(),
            backup.stats()
        )
    };
    // The backup learns that its peer speaks conntrackd's protocol, and
    // holds a first flow.
    let cts = flows("10.150.0.1", 3);
    common::fw::create(&a, &cts[..1]);
    assert!(
        backup
            .wait_cached("external", 1, Duration::from_secs(30))
            .is_some(),
        "the first flow never arrived\n{}",
        show()
    );
    assert!(
        backup.log().contains("peer speaks conntrackd 1.4 protocol"),
        "{}",
        show()
    );
    // Past the handshake and its ACKs: a quiet link.
    std::thread::sleep(Duration::from_secs(2));
    let before = backup.stats();
    drop_data_datagram(&a, 1);
    let t0 = a.enter(|| {
        let mut s = CtSocket::open().unwrap();
        assert_eq!(s.create_cts(&cts[1..2]).unwrap(), vec![0]);
        std::thread::sleep(Duration::from_millis(2));
        let t0 = Instant::now();
        assert_eq!(s.create_cts(&cts[2..3]).unwrap(), vec![0]);
        t0
    });
    let arrived =
        until(Duration::from_secs(5), || backup.cached("external") == 3)
            .map(|_| t0.elapsed());
    let after = backup.stats();
    let delta = |key| {
        json_number(&after, "sync", key) - json_number(&before, "sync", key)
    };
    eprintln!(
        "{test}: the lost flow arrived after {arrived:?}; {} datagram dropped, {} tail queries, {} numbers missed",
        dropped(&a),
        delta("tail_queries"),
        delta("lost")
    );
    assert_eq!(dropped(&a), 1, "the rule dropped one datagram\n{}", show());
    let arrived =
        arrived.unwrap_or_else(|| panic!("never arrived\n{}", show()));
    // conntrackd alone repairs it at its next message, a second after its
    // last (the lost one).
    assert!(
        arrived < Duration::from_millis(500),
        "took {arrived:?}\n{}",
        show()
    );
    assert!(delta("tail_queries") >= 1, "{}", show());
    assert!(
        delta("lost") >= 1,
        "the resend came after a gap\n{}",
        show()
    );
    assert_eq!(delta("out_of_window"), 0, "{}", show());
}

#[test]
fn a_lost_tail_sent_to_a_conntrackd_backup_is_shown_to_it_at_once() {
    let test = "a_lost_tail_sent_to_a_conntrackd_backup_is_shown_to_it_at_once";
    if !ctd::installed(test) || !common::fw::release_build(test) {
        return;
    }
    let Some((a, b)) = pair("ctu") else {
        return;
    };
    let primary = Fw::start(&a, "ctup", GENERAL, &sync("10.9.0.1", "10.9.0.2"));
    let backup = Ctd::start(&b, "ctub", GENERAL, &sync("10.9.0.2", "10.9.0.1"));
    let show = || {
        format!(
            "--- ctsyncd log ---\n{}\n--- ctsyncd -s ---\n{}\n--- conntrackd log ---\n{}",
            primary.log(),
            primary.stats(),
            backup.log()
        )
    };
    // The primary learns that its peer speaks conntrackd's protocol, and
    // the backup holds a first flow.
    let cts = flows("10.151.0.1", 2);
    common::fw::create(&a, &cts[..1]);
    assert!(
        until(Duration::from_secs(30), || backup.active("external") == 1)
            .is_some(),
        "the first flow never arrived\n{}",
        show()
    );
    assert!(
        primary
            .log()
            .contains("peer speaks conntrackd 1.4 protocol"),
        "{}",
        show()
    );
    // Past the handshake and its ACKs: a quiet link. The next flow's
    // datagram is lost, and nothing follows it.
    std::thread::sleep(Duration::from_secs(2));
    let before = primary.stats();
    drop_data_datagram(&a, 0);
    let t0 = Instant::now();
    common::fw::create(&a, &cts[1..]);
    let arrived =
        until(Duration::from_secs(5), || backup.active("external") == 2)
            .map(|_| t0.elapsed());
    let after = primary.stats();
    let delta = |key| {
        json_number(&after, "sync", key) - json_number(&before, "sync", key)
    };
    eprintln!(
        "{test}: the lost flow arrived after {arrived:?}; {} datagram dropped, {} probes, {} resent",
        dropped(&a),
        delta("probes_sent"),
        delta("retransmitted")
    );
    assert_eq!(dropped(&a), 1, "the rule dropped one datagram\n{}", show());
    let arrived =
        arrived.unwrap_or_else(|| panic!("never arrived\n{}", show()));
    // Without the probe, conntrackd would see the gap at the primary's
    // next ALIVE, a second after its last message (the lost one).
    assert!(
        arrived < Duration::from_millis(500),
        "took {arrived:?}\n{}",
        show()
    );
    assert!(delta("probes_sent") >= 1, "{}", show());
    assert!(
        delta("retransmitted") >= 1,
        "resent on its NACK\n{}",
        show()
    );
}

/// Drops the first NACK `ns`'s conntrackd sends, alone or after an ACK in
/// one datagram (its gap's ACK and NACK go together).
fn drop_first_nack(ns: &Netns) {
    ns.sh(
        "nft -f - <<'EOF'
table inet ctd_tail_nack {
    set done { type ipv4_addr; flags dynamic; }
    chain out {
        type filter hook output priority -300;
        udp dport 3780 ip saddr @done accept
        udp dport 3780 @th,72,8 & 0x04 == 0x04 add @done { ip saddr } counter drop
        udp dport 3780 udp length >= 40 @th,200,8 & 0x04 == 0x04 add @done { ip saddr } counter drop
    }
}
EOF",
    );
}

fn nacks_dropped(ns: &Netns) -> u64 {
    ns.sh("nft list table inet ctd_tail_nack")
        .split("counter packets ")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A gap conntrackd NACKs, and its NACK lost: conntrackd says nothing
/// more until its next ACK or ALIVE, a second later. The primary's probe
/// asks for conntrackd's tail too, and the NACK is sent again.
#[test]
fn a_conntrackd_backups_lost_nack_is_asked_for_at_once() {
    let test = "a_conntrackd_backups_lost_nack_is_asked_for_at_once";
    if !ctd::installed(test) || !common::fw::release_build(test) {
        return;
    }
    let Some((a, b)) = pair("ctv") else {
        return;
    };
    let primary = Fw::start(&a, "ctvp", GENERAL, &sync("10.9.0.1", "10.9.0.2"));
    let backup = Ctd::start(&b, "ctvb", GENERAL, &sync("10.9.0.2", "10.9.0.1"));
    let show = || {
        format!(
            "--- ctsyncd log ---\n{}\n--- ctsyncd -s ---\n{}\n--- conntrackd log ---\n{}",
            primary.log(),
            primary.stats(),
            backup.log()
        )
    };
    let cts = flows("10.152.0.1", 3);
    common::fw::create(&a, &cts[..1]);
    assert!(
        until(Duration::from_secs(30), || backup.active("external") == 1)
            .is_some(),
        "the first flow never arrived\n{}",
        show()
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = primary.stats();
    // The next flow's datagram is lost; the one after shows conntrackd
    // the gap, and its NACK is lost.
    drop_data_datagram(&a, 0);
    drop_first_nack(&b);
    let t0 = Instant::now();
    common::fw::create(&a, &cts[1..2]);
    std::thread::sleep(Duration::from_millis(20));
    common::fw::create(&a, &cts[2..]);
    let arrived =
        until(Duration::from_secs(5), || backup.active("external") == 3)
            .map(|_| t0.elapsed());
    let after = primary.stats();
    let delta = |key| {
        json_number(&after, "sync", key) - json_number(&before, "sync", key)
    };
    eprintln!(
        "{test}: the lost flow arrived after {arrived:?}; {} data and {} NACK datagrams dropped, {} probes, {} queries, {} resent",
        dropped(&a),
        nacks_dropped(&b),
        delta("probes_sent"),
        delta("tail_queries"),
        delta("retransmitted")
    );
    assert_eq!(dropped(&a), 1, "{}", show());
    assert_eq!(
        nacks_dropped(&b),
        1,
        "conntrackd's NACK was dropped\n{}",
        show()
    );
    let arrived =
        arrived.unwrap_or_else(|| panic!("never arrived\n{}", show()));
    assert!(
        arrived < Duration::from_millis(500),
        "took {arrived:?}\n{}",
        show()
    );
    assert!(delta("tail_queries") >= 1, "{}", show());
}
