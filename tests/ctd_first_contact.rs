//! A migration's first contact: ctsyncd replaces a conntrackd primary
//! whose backup is still conntrackd 1.4.7, and the backup's answer to
//! ctsyncd's HELLO is late (lost, at 20 % loss a few times in a row).
//! After 3 s (`HELLO_PATIENCE`) ctsyncd's data goes all the same, saying
//! HELLO; conntrackd takes each such message as in sequence whatever its
//! number, so one lost among them is never NACKed and its ACKs span it.
//! ctsyncd sends that data again once the answer comes. Before it did,
//! `make bench --first-contact` lost 5 000 to 10 000 of 50 000 flows in
//! about one run in ten.
//!
//! Real daemons in two namespaces. nftables on the backup's side drops
//! every conntrackd datagram carrying HELLO_BACK until ctsyncd's second
//! data datagram (saying HELLO, in conntrackd's format) was dropped on
//! the primary's side; then the backup's rule goes. Needs root and conntrackd
//! (`make ci-deps`).

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::ctd::{self, Ctd, Peer};
use common::fw::{Fw, create, flows, json_number};
use common::{Netns, pair, until};

const GENERAL: &str = "HashLimit 65536\n  Filter From Userspace { Address Ignore { IPv4_address 10.9.0.0/24 } }";

fn sync(me: &str, peer: &str) -> String {
    format!(
        "Mode FTFW {{ }}\nUDP {{ IPv4_address {me} IPv4_Destination_Address {peer} Port 3780 Interface s0 }}"
    )
}

/// The first byte of conntrackd's header holds its version (1) in the
/// high nibble, the second the flags: HELLO 0x20, HELLO_BACK 0x40.
/// ctsyncd's own datagrams start with `c` (0x63).
fn block_hello_back(ns: &Netns) {
    ns.sh("nft -f - <<'EOF'
table inet first_contact {
    chain out {
        type filter hook output priority -300;
        udp dport 3780 @th,64,4 == 1 @th,72,8 & 0x40 == 0x40 counter drop
    }
}
EOF");
}

/// Drops the second datagram of conntrackd's format with data (longer
/// than any run of control messages) that says HELLO: the first opens
/// the backup's ACK run, so its ACK spans the lost one.
fn drop_second_hello_data(ns: &Netns) {
    let hello_data =
        "udp dport 3780 udp length > 120 @th,64,4 == 1 @th,72,8 & 0x20 == 0x20";
    ns.sh(&format!(
        "nft -f - <<'EOF'
table inet first_contact {{
    set first {{ type ipv4_addr; flags dynamic; }}
    set done {{ type ipv4_addr; flags dynamic; }}
    chain out {{
        type filter hook output priority -300;
        udp dport 3780 ip saddr @done accept
        {hello_data} ip saddr @first add @done {{ ip saddr }} counter drop
        {hello_data} add @first {{ ip saddr }} accept
    }}
}}
EOF"
    ));
}

fn dropped(ns: &Netns) -> u64 {
    ns.nft_counted("first_contact")
}

#[test]
fn data_sent_saying_hello_to_a_conntrackd_backup_is_not_lost() {
    let test = "data_sent_saying_hello_to_a_conntrackd_backup_is_not_lost";
    if !ctd::installed(test) || !common::fw::release_build(test) {
        return;
    }
    let Some((a, b)) = pair("cfc") else {
        return;
    };
    block_hello_back(&b);
    drop_second_hello_data(&a);
    let conntrackd =
        Ctd::start(&b, "cfcc", GENERAL, &sync("10.9.0.2", "10.9.0.1"));
    let ctsyncd = Fw::start(&a, "cfcs", GENERAL, &sync("10.9.0.1", "10.9.0.2"));
    // Several datagrams' worth.
    let cts = flows("10.151.0.1", 200);
    create(&a, &cts);
    let show = || {
        format!(
            "--- ctsyncd log ---\n{}\n--- ctsyncd -s ---\n{}\n--- conntrackd log ---\n{}\n--- conntrackd -s network ---\n{}",
            ctsyncd.log(),
            ctsyncd.stats(),
            conntrackd.log(),
            conntrackd.run(&["-s", "network"])
        )
    };
    // Discovery (2 s of conntrackd's datagrams), then the patience (3 s).
    assert!(
        until(Duration::from_secs(20), || dropped(&a) == 1).is_some(),
        "no data datagram saying HELLO was sent\n{}",
        show()
    );
    let held_back = dropped(&b);
    assert!(held_back >= 1, "no answer to our HELLO was held back");
    // The answer may come now; its ACK (a second after the backup's last
    // message, which was held back) spans the lost numbers.
    b.sh("nft delete table inet first_contact");
    let arrived = until(Duration::from_secs(10), || {
        conntrackd.active("external") == 200
    });
    let stats = ctsyncd.stats();
    eprintln!(
        "{test}: {held_back} answers held back, the HELLO data dropped; the flows arrived {arrived:?} after the answers were let through ({} resent, {} lost on our side)",
        json_number(&stats, "sync", "retransmitted"),
        json_number(&stats, "sync", "lost"),
    );
    assert!(arrived.is_some(), "flows lost\n{}", show());
    assert!(
        ctsyncd
            .log()
            .contains("peer speaks conntrackd 1.4 protocol"),
        "{}",
        show()
    );
}
