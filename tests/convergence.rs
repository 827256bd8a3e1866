//! Replicas converge after bursts with a configuration that sets no
//! buffer sizes: the backup holds every flow of a 2 000- and a 20 000-flow
//! burst within 1 s of the burst's end, and loses the deleted ones as
//! fast. The event socket overruns on such bursts; the daemon drains it
//! first, and resyncs with the kernel as soon as the burst is over. Real
//! daemons in two network namespaces. Needs root.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::fw::{Fw, create, delete, flows, json_number, udp_link};
use common::pair;

/// What a minimal conntrackd.conf sets: no NetlinkBufferSize, no
/// NetlinkOverrunResync, FT-FW over UDP (and the sync link's own flow
/// ignored, so counts are exact).
fn minimal(me: &str, peer: &str) -> (String, String) {
    (
        "Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }".into(),
        format!("Mode FTFW {{ }}\n{}", udp_link(me, peer)),
    )
}

#[test]
fn bursts_replicate_within_a_second_of_their_end() {
    let Some((a, b)) = pair("cvb") else {
        return;
    };
    let (g1, s1) = minimal("10.9.0.1", "10.9.0.2");
    let (g2, s2) = minimal("10.9.0.2", "10.9.0.1");
    let fw1 = Fw::start(&a, "cvb1", &g1, &s1);
    let fw2 = Fw::start(&b, "cvb2", &g2, &s2);
    let mut worst = Duration::ZERO;
    for (n, src) in [(2_000u32, "10.110.0.1"), (20_000, "10.111.0.1")] {
        let burst = flows(src, n);
        let t = Instant::now();
        create(&a, &burst);
        let created = t.elapsed();
        let took =
            fw2.wait_cached("external", u64::from(n), Duration::from_secs(10));
        let s = fw1.stats();
        eprintln!(
            "{n} new flows (created in {created:?}): on fw-2 {took:?} after the burst; fw-1 overruns {}, resyncs {}",
            json_number(&s, "runtime", "netlink_overruns"),
            json_number(&s, "runtime", "kernel_resyncs")
        );
        let took = took.unwrap_or_else(|| {
            panic!("{} of {n} on fw-2\n{}", fw2.cached("external"), fw1.log())
        });
        worst = worst.max(took);
        assert!(took < Duration::from_secs(1), "{n} new: {took:?}");

        delete(&a, &burst);
        let took = fw2.wait_cached("external", 0, Duration::from_secs(10));
        eprintln!("{n} deleted: fw-2 empty {took:?} after the burst");
        let took = took.unwrap_or_else(|| {
            panic!("{} stale on fw-2\n{}", fw2.cached("external"), fw1.log())
        });
        worst = worst.max(took);
        assert!(took < Duration::from_secs(1), "{n} deleted: {took:?}");
    }
    eprintln!("worst window: {worst:?}");
}
