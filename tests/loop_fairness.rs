//! Under a backlog of kernel events the event loop still reads its peer:
//! while fw-1 works through a flood of new flows, fw-2's ACKs reach it and
//! its resend queue stays short. A drain of the event socket that stops at
//! `EventIterationLimit` leaves more to read at once, and the loop's wait
//! looks at the event socket before the sync link; without a turn for the
//! peer after such a drain, fw-1 read none of fw-2's datagrams until the
//! backlog was gone in 5 of 8 runs: its resend queue grew past 50 000
//! entries, and fw-2 held only 131 072 of the 200 000 flows (the resend
//! queue's bound) 30 s after the flood, or completed only then.
//! `EventIterationLimit 1` makes a long backlog likely on any machine:
//! every event then costs a turn of the loop. The same over TCP, whose
//! link that turn read nothing of (it only read UDP links). Needs root.

// Sampling a running flood is a wall-clock matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::fw::{Fw, create, flows, json_number, udp_link};
use common::pair;

const FLOOD: u32 = 200_000;

/// Over UDP, then over TCP: one after the other, as two floods at once
/// on a small machine leave neither a backlog to judge by. A TCP link is
/// read only by the wait's poll, which also drives its connects and
/// writes: the peer's turn after a drain polls it too. (`PeerProtocol
/// ctsyncd`: in `auto` nothing is written to a stream for its first 5 s
/// unless the peer spoke first.)
#[test]
fn the_peer_is_read_during_a_backlog_of_events() {
    backlog("lfa", udp_link);
    backlog("lft", |me, peer| {
        let tcp = udp_link(me, peer).replacen("UDP", "TCP", 1);
        format!("{tcp}\nOptions {{ PeerProtocol ctsyncd }}")
    });
}

fn backlog(tag: &str, link: fn(&str, &str) -> String) {
    let Some((a, b)) = pair(tag) else {
        return;
    };
    let general = "HashLimit 600000\n  EventIterationLimit 1\n  NetlinkBufferSize 134217728\n  NetlinkBufferSizeMaxGrowth 134217728\n  Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }";
    let sync =
        |me: &str, peer: &str| format!("Mode FTFW {{ }}\n{}", link(me, peer));
    let (fw1, fw2) = Fw::start_pair((&a, &b), tag, general, sync);
    // The pair has met (a TCP link connects within its reconnect
    // second): what the flood's 300 ms show is then the loop's doing.
    let met = Instant::now();
    while json_number(&fw1.stats(), "sync", "datagrams_recv") == 0 {
        assert!(
            met.elapsed() < Duration::from_secs(10),
            "fw-1 never heard fw-2"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let burst = flows("10.142.0.1", FLOOD);
    let sample = || {
        let s = fw1.stats();
        (
            json_number(&s, "sync", "datagrams_recv"),
            json_number(&s, "sync", "resend_queue"),
            json_number(&s, "runtime", "events_received"),
        )
    };
    let (early, late) = std::thread::scope(|s| {
        let t = Instant::now();
        let flood = s.spawn(|| create(&a, &burst));
        std::thread::sleep(
            Duration::from_millis(200).saturating_sub(t.elapsed()),
        );
        let early = sample();
        std::thread::sleep(
            Duration::from_millis(300).saturating_sub(t.elapsed()),
        );
        let late = sample();
        flood.join().unwrap();
        (early, late)
    });
    eprintln!(
        "fw-1 at 200 ms: {} datagrams from fw-2, {} unacknowledged, {} events read; at 300 ms: {}, {}, {}",
        early.0, early.1, early.2, late.0, late.1, late.2
    );
    let took =
        fw2.wait_cached("external", u64::from(FLOOD), Duration::from_secs(30));
    assert!(
        took.is_some(),
        "{} on fw-2\n{}",
        fw2.cached("external"),
        fw1.log()
    );
    if late.2 >= u64::from(FLOOD) {
        eprintln!(
            "SKIPPED the {tag} backlog test: fw-1 had read all {FLOOD} events by 300 ms, no backlog to judge"
        );
        return;
    }
    assert!(
        late.0 > early.0,
        "fw-1 read nothing from fw-2 between 200 and 300 ms into the flood ({} datagrams)",
        late.0
    );
    assert!(late.1 < 10_000, "{} entries unacknowledged", late.1);
}
