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
//! `ctd_interop`; this kernel has no netem), and in one test the backup's
//! NACK of it. Needs root and conntrackd (`make ci-deps`).

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::ctd::{self, Ctd, Peer};
use common::fw::{Fw, create, flows, json_number};
use common::{Netns, pair, until};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::Conntrack;

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
    ns.nft_counted("ctd_tail")
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
    ns.nft_counted("ctd_tail_nack")
}

/// ctsyncd and conntrackd 1.4.7, the primary on `a`, past a first flow
/// (ctsyncd found its peer's protocol) and two quiet seconds.
struct Mixed {
    ctsyncd: Fw,
    conntrackd: Ctd,
    ctsyncd_primary: bool,
    /// ctsyncd's statistics when the set-up ended.
    before: String,
    a: Netns,
    b: Netns,
}

impl Mixed {
    fn start(test: &str, tag: &str, ctsyncd_primary: bool) -> Option<Mixed> {
        if !ctd::installed(test) || !common::fw::release_build(test) {
            return None;
        }
        let (a, b) = pair(tag)?;
        let (fw_ns, ctd_ns, fw_ip, ctd_ip) = if ctsyncd_primary {
            (&a, &b, "10.9.0.1", "10.9.0.2")
        } else {
            (&b, &a, "10.9.0.2", "10.9.0.1")
        };
        let conntrackd = Ctd::start(
            ctd_ns,
            &format!("{tag}c"),
            GENERAL,
            &sync(ctd_ip, fw_ip),
        );
        let ctsyncd =
            Fw::start(fw_ns, &format!("{tag}s"), GENERAL, &sync(fw_ip, ctd_ip));
        let mut m = Mixed {
            ctsyncd,
            conntrackd,
            ctsyncd_primary,
            before: String::new(),
            a,
            b,
        };
        create(&m.a, &m.flows()[..1]);
        assert!(
            until(Duration::from_secs(30), || m.backup_holds(1)).is_some(),
            "the first flow never arrived\n{}",
            m.show()
        );
        assert!(
            m.ctsyncd
                .log()
                .contains("peer speaks conntrackd 1.4 protocol"),
            "{}",
            m.show()
        );
        // Past the handshake and its ACKs: a quiet link.
        std::thread::sleep(Duration::from_secs(2));
        m.before = m.ctsyncd.stats();
        Some(m)
    }

    /// The test's flows, created on the primary.
    fn flows(&self) -> Vec<Conntrack> {
        flows("10.150.0.1", 3)
    }

    fn backup_holds(&self, n: u64) -> bool {
        if self.ctsyncd_primary {
            self.conntrackd.active("external") == n
        } else {
            self.ctsyncd.cached("external") == n
        }
    }

    /// How long after `t0` the backup held `n` flows (at most 5 s).
    fn arrived(&self, n: u64, t0: Instant) -> Option<Duration> {
        until(Duration::from_secs(5), || self.backup_holds(n))
            .map(|_| t0.elapsed())
    }

    /// A counter of ctsyncd's `sync` statistics since the set-up.
    fn delta(&self, key: &str) -> u64 {
        json_number(&self.ctsyncd.stats(), "sync", key)
            - json_number(&self.before, "sync", key)
    }

    fn show(&self) -> String {
        format!(
            "--- ctsyncd log ---\n{}\n--- ctsyncd -s ---\n{}\n--- conntrackd log ---\n{}",
            self.ctsyncd.log(),
            self.ctsyncd.stats(),
            self.conntrackd.log()
        )
    }

    /// The repair came within 500 ms: without ctsyncd's question it comes
    /// at the sender's next message, a second after its last (the lost
    /// one).
    fn assert_soon(&self, arrived: Option<Duration>) {
        let arrived =
            arrived.unwrap_or_else(|| panic!("never arrived\n{}", self.show()));
        assert!(
            arrived < Duration::from_millis(500),
            "took {arrived:?}\n{}",
            self.show()
        );
    }
}

#[test]
fn a_conntrackd_primarys_lost_tail_is_asked_for_at_once() {
    let test = "a_conntrackd_primarys_lost_tail_is_asked_for_at_once";
    let Some(m) = Mixed::start(test, "ctt", false) else {
        return;
    };
    // The second of two flows created 2 ms apart is lost, and nothing
    // follows it.
    drop_data_datagram(&m.a, 1);
    let cts = m.flows();
    let t0 = m.a.enter(|| {
        let mut s = CtSocket::open().unwrap();
        assert_eq!(s.create_cts(&cts[1..2]).unwrap(), vec![0]);
        std::thread::sleep(Duration::from_millis(2));
        let t0 = Instant::now();
        assert_eq!(s.create_cts(&cts[2..3]).unwrap(), vec![0]);
        t0
    });
    let arrived = m.arrived(3, t0);
    eprintln!(
        "{test}: the lost flow arrived after {arrived:?}; {} datagram dropped, {} tail queries, {} numbers missed",
        dropped(&m.a),
        m.delta("tail_queries"),
        m.delta("lost")
    );
    assert_eq!(
        dropped(&m.a),
        1,
        "the rule dropped one datagram\n{}",
        m.show()
    );
    m.assert_soon(arrived);
    assert!(m.delta("tail_queries") >= 1, "{}", m.show());
    assert!(
        m.delta("lost") >= 1,
        "the resend came after a gap\n{}",
        m.show()
    );
    assert_eq!(m.delta("out_of_window"), 0, "{}", m.show());
}

#[test]
fn a_lost_tail_sent_to_a_conntrackd_backup_is_shown_to_it_at_once() {
    let test = "a_lost_tail_sent_to_a_conntrackd_backup_is_shown_to_it_at_once";
    let Some(m) = Mixed::start(test, "ctu", true) else {
        return;
    };
    // The next flow's datagram is lost, and nothing follows it.
    drop_data_datagram(&m.a, 0);
    let t0 = Instant::now();
    create(&m.a, &m.flows()[1..2]);
    let arrived = m.arrived(2, t0);
    eprintln!(
        "{test}: the lost flow arrived after {arrived:?}; {} datagram dropped, {} probes, {} resent",
        dropped(&m.a),
        m.delta("probes_sent"),
        m.delta("retransmitted")
    );
    assert_eq!(
        dropped(&m.a),
        1,
        "the rule dropped one datagram\n{}",
        m.show()
    );
    m.assert_soon(arrived);
    assert!(m.delta("probes_sent") >= 1, "{}", m.show());
    assert!(
        m.delta("retransmitted") >= 1,
        "resent on its NACK\n{}",
        m.show()
    );
}

/// A gap conntrackd NACKs, and its NACK lost: conntrackd says nothing
/// more until its next ACK or ALIVE, a second later. The primary's probe
/// asks for conntrackd's tail too, and the NACK is sent again (after the
/// clean link's probe spacing, 250 ms: the lost flow's own probe showed
/// conntrackd the gap).
#[test]
fn a_conntrackd_backups_lost_nack_is_asked_for_at_once() {
    let test = "a_conntrackd_backups_lost_nack_is_asked_for_at_once";
    let Some(m) = Mixed::start(test, "ctv", true) else {
        return;
    };
    // The next flow's datagram is lost; the one after shows conntrackd
    // the gap, and its NACK is lost.
    drop_data_datagram(&m.a, 0);
    drop_first_nack(&m.b);
    let cts = m.flows();
    let t0 = Instant::now();
    create(&m.a, &cts[1..2]);
    std::thread::sleep(Duration::from_millis(20));
    create(&m.a, &cts[2..]);
    let arrived = m.arrived(3, t0);
    eprintln!(
        "{test}: the lost flow arrived after {arrived:?}; {} data and {} NACK datagrams dropped, {} probes, {} queries, {} resent",
        dropped(&m.a),
        nacks_dropped(&m.b),
        m.delta("probes_sent"),
        m.delta("tail_queries"),
        m.delta("retransmitted")
    );
    assert_eq!(dropped(&m.a), 1, "{}", m.show());
    assert_eq!(
        nacks_dropped(&m.b),
        1,
        "conntrackd's NACK was dropped\n{}",
        m.show()
    );
    m.assert_soon(arrived);
    assert!(m.delta("tail_queries") >= 1, "{}", m.show());
}
