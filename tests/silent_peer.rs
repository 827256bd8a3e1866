//! A peer cut off for longer than `PEER_ALIVE` (3 s) with its session
//! intact: the primary keeps no resend queue of its changes' states past
//! 4096 (`ftfw::SILENT_HOLD`), only its deletions, and sends the peer the
//! whole cache when it is heard again. The backup ends with every new flow
//! and without the deleted ones. Real daemons in two network namespaces,
//! the sync link cut by nftables in the backup's; needs root.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::fw::{Fw, create, delete, flows, json_number, udp_link};
use common::{pair, until};

const BEFORE: u32 = 100;
const DELETED: u32 = 50;
const DURING: u32 = 6_000;

fn config(me: &str, peer: &str) -> (String, String) {
    (
        "HashLimit 100000\n  Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }"
            .into(),
        format!("Mode FTFW {{ }}\n{}", udp_link(me, peer)),
    )
}

#[test]
fn a_peer_cut_off_gets_the_whole_cache_when_heard_again() {
    let Some((a, b)) = pair("slp") else {
        return;
    };
    let (g1, s1) = config("10.9.0.1", "10.9.0.2");
    let (g2, s2) = config("10.9.0.2", "10.9.0.1");
    let fw1 = Fw::start(&a, "slp1", &g1, &s1);
    let fw2 = Fw::start(&b, "slp2", &g2, &s2);
    let before = flows("10.141.0.1", BEFORE);
    create(&a, &before);
    let limit = Duration::from_secs(10);
    assert!(
        fw2.wait_cached("external", u64::from(BEFORE), limit)
            .is_some(),
        "replicated before the cut: {}",
        fw2.cached("external")
    );
    // The sync link loses everything, both ways, in the backup's
    // namespace; the daemons keep running.
    b.sh(
        "nft add table inet cut && nft add chain inet cut in '{ type filter hook input priority -300; policy accept; }' && nft add chain inet cut out '{ type filter hook output priority -300; policy accept; }' && nft add rule inet cut in iifname s0 udp dport 3780 drop && nft add rule inet cut out oifname s0 udp dport 3780 drop",
    );
    std::thread::sleep(Duration::from_secs(4));
    delete(&a, &before[..DELETED as usize]);
    create(&a, &flows("10.142.0.1", DURING));
    let sync = |key| json_number(&fw1.stats(), "sync", key);
    assert!(
        until(limit, || sync("tx_queue") == 0
            && sync("given_up_silent") > 0)
        .is_some(),
        "fw-1 never gave up a state: {}",
        fw1.stats()
    );
    let held = sync("resend_queue");
    assert!(
        held <= 4096 + u64::from(DELETED),
        "{held} entries held for a silent peer"
    );
    assert_eq!(sync("bulks_on_return"), 0);
    b.sh("nft delete table inet cut");
    let want = u64::from(BEFORE - DELETED + DURING);
    let took = fw2.wait_cached("external", want, Duration::from_secs(30));
    assert!(
        took.is_some(),
        "fw-2 holds {} of {want}\n{}",
        fw2.cached("external"),
        fw1.log()
    );
    assert_eq!(sync("bulks_on_return"), 1);
    eprintln!(
        "fw-1 held {held} entries for the silent peer, gave up {}; fw-2 caught up {:?} after the cut ended",
        sync("given_up_silent"),
        took.unwrap()
    );
}
