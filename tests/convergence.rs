//! Replicas converge after bursts with a configuration that sets no
//! buffer sizes: the backup holds every flow of a 2 000- and a 20 000-flow
//! burst within 1 s of the burst's end, and loses the deleted ones as
//! fast. The event socket overruns on such bursts; the daemon drains it
//! first, and resyncs with the kernel as soon as the burst is over. Real
//! daemons in two network namespaces. Needs root. And `-f internal` on
//! the primary prunes nothing on the backup.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::fw::{
    Fw, create, delete, flows, json_number, release_build, udp_link,
};
use common::pair;
use ctsyncd::model::Conntrack;

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
    if !release_build("bursts_replicate_within_a_second_of_their_end") {
        return;
    }
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

/// Creates `flows` in `ns`'s kernel at `per_sec`, in slices of 100.
fn storm(ns: &common::Netns, flows: &[Conntrack], per_sec: u32) {
    let slice = Duration::from_secs_f64(100.0 / f64::from(per_sec));
    for chunk in flows.chunks(100) {
        let t = Instant::now();
        create(ns, chunk);
        std::thread::sleep(slice.saturating_sub(t.elapsed()));
    }
}

#[test]
fn a_primary_killed_during_a_storm_is_repaired_within_a_period() {
    const PERIOD: u64 = 5;
    let Some((a, b)) = pair("cvk") else {
        return;
    };
    let sync = |me, peer| {
        format!(
            "Mode FTFW {{ }}\n{}\nOptions {{ AntiEntropyPeriod {PERIOD} }}",
            udp_link(me, peer)
        )
    };
    let general = "HashLimit 100000\n  Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }";
    let mut fw1 = Fw::start(&a, "cvk1", general, &sync("10.9.0.1", "10.9.0.2"));
    let fw2 = Fw::start(&b, "cvk2", general, &sync("10.9.0.2", "10.9.0.1"));
    // 30 000 flows at 3 000/s; the primary's daemon is killed after 3 s
    // and restarted 2 s later (the flows of those 2 s exist only in its
    // kernel: its start-up dump caches them, nothing sends them).
    let all = flows("10.130.0.1", 30_000);
    let storm_ns = &a;
    std::thread::scope(|s| {
        let traffic = s.spawn(|| storm(storm_ns, &all, 3_000));
        std::thread::sleep(Duration::from_secs(3));
        fw1.crash_and_restart(&a, Duration::from_secs(2));
        traffic.join().unwrap();
    });
    let end = Instant::now();
    let at_end = fw2.cached("external");
    let took = fw2.wait_cached(
        "external",
        30_000,
        Duration::from_secs(PERIOD * 2 + 5),
    );
    let s1 = fw1.stats();
    eprintln!(
        "storm over: fw-2 had {at_end} of 30000; complete {took:?} after the storm (anti-entropy period {PERIOD} s); fw-1 internal {}, {} entries sent again by anti-entropy",
        json_number(&s1, "internal", "active"),
        json_number(&s1, "anti_entropy", "entries_resent"),
    );
    assert_eq!(json_number(&s1, "internal", "active"), 30_000);
    let took = took.unwrap_or_else(|| {
        panic!(
            "fw-2 has {} of 30000\n{}",
            fw2.cached("external"),
            fw1.log()
        )
    });
    // Within one period of the restart's first round (the daemon's first
    // digest goes out one period after its start).
    assert!(
        end.elapsed() < Duration::from_secs(PERIOD * 2 + 5),
        "{took:?}"
    );
}

/// `-f internal` on the primary empties its internal cache, not its
/// kernel: the backup keeps every flow through three anti-entropy
/// periods (a digest of the empty cache pruned them all), and after the
/// `-R` that refills the cache the digests agree again.
#[test]
fn a_flushed_primary_prunes_nothing_on_the_backup() {
    const PERIOD: u64 = 1;
    let Some((a, b)) = pair("cvf") else {
        return;
    };
    let sync = |me, peer| {
        format!(
            "Mode FTFW {{ }}\n{}\nOptions {{ AntiEntropyPeriod {PERIOD} }}",
            udp_link(me, peer)
        )
    };
    let general = "Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }";
    let fw1 = Fw::start(&a, "cvf1", general, &sync("10.9.0.1", "10.9.0.2"));
    let fw2 = Fw::start(&b, "cvf2", general, &sync("10.9.0.2", "10.9.0.1"));
    create(&a, &flows("10.140.0.1", 500));
    let took = fw2.wait_cached("external", 500, Duration::from_secs(5));
    assert!(took.is_some(), "{} of 500 on fw-2", fw2.cached("external"));
    assert!(fw1.cli(&["-f", "internal"]).status.success());
    assert_eq!(fw1.cached("internal"), 0);
    std::thread::sleep(Duration::from_secs(3 * PERIOD + 1));
    let pruned = json_number(&fw2.stats(), "anti_entropy", "entries_pruned");
    assert_eq!(
        (fw2.cached("external"), pruned),
        (500, 0),
        "fw-2 after fw-1's -f\n{}",
        fw2.log()
    );
    assert!(fw1.cli(&["-R"]).status.success());
    assert_eq!(fw1.cached("internal"), 500);
    std::thread::sleep(Duration::from_secs(3 * PERIOD + 1));
    let s2 = fw2.stats();
    assert_eq!(json_number(&s2, "external", "active"), 500);
    assert_eq!(json_number(&s2, "anti_entropy", "entries_pruned"), 0);
}
