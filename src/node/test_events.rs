//! Kernel events on their way to the peer: the node's own commit events
//! cached but not sent, filtered events counted and not cached, HashLimit
//! bounding the internal cache (its refusals counted and shown by `-s`),
//! and a burst of changes leaving once per coalescing period, its tail
//! once it pauses.

use super::test::{Fw, cfg, event, ftp_master, node, tcp, text};
use super::*;
use crate::control::proto::{Format, Request, StatsView};
use crate::kernel::codec::{Kind, Object};
use crate::kernel::origin::Origin;

#[test]
fn own_commit_events_are_cached_but_not_sent() {
    let c = cfg("", "FTFW { }", "");
    let mut fw = node(c, 1);
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(ftp_master())),
        Origin::Commit,
    );
    assert_eq!(fw.internal_ct.len(), 1);
    assert_eq!(fw.engine.queue_lengths(), (0, 0));
}

#[test]
fn hash_limit_bounds_the_caches_and_counts_refusals() {
    let c = cfg("HashLimit 1000", "FTFW { }", "");
    let mut fw = node(c, 1);
    for i in 0..5000u32 {
        let mut ct = Conntrack::new(tcp(
            "10.0.0.1",
            "10.0.0.2",
            (i % 60000) as u16 + 1,
            80 + (i / 60000) as u16,
        ));
        ct.reply = Some(ct.orig.inverse());
        fw.kernel(
            Instant::from_millis(0),
            event(Kind::New, Object::Ct(ct)),
            Origin::NotMe,
        );
    }
    assert_eq!(fw.internal_ct.len(), 1000);
    assert_eq!(fw.internal_ct.stats.add_fail_enospc, 4000);
    let s = text(&fw.control(
        Instant::from_millis(0),
        Request::Stats {
            view: StatsView::Cache,
            format: Format::Plain,
        },
    ));
    assert!(
        s.contains("\t\tno space left in cache:\t        4000\n"),
        "{s}"
    );
    let s = text(&fw.control(
        Instant::from_millis(0),
        Request::Stats {
            view: StatsView::General,
            format: Format::Plain,
        },
    ));
    assert!(s.starts_with("cache internal:\ncurrent active connections:\t        1000\nconnections created:\t\t        1000\tfailed:\t        4000\n"), "{s}");
}

#[test]
fn a_burst_leaves_every_coalescing_period_and_its_tail_once_it_pauses() {
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    // Between the engine's once-a-second ticks (whose ALIVE goes at
    // once), after the first.
    let t0 = Instant::from_millis(1500);
    let at = |us: u64| t0 + Duration::from_micros(us);
    // The loop's part: timers when due, then the change.
    let mut sent_at = Vec::new();
    let run_timers = |fw: &mut Fw, until: Instant, sent_at: &mut Vec<_>| {
        while fw.poll_at() <= until {
            let p = fw.poll_at();
            fw.feed(p, Input::Timer);
            sent_at.extend(fw.wire.drain(..).map(|_| p));
        }
    };
    // A change a little more often than TX_IDLE for 3 ms: each puts the
    // flush off, so only the coalescing period (from the oldest change)
    // sends, and the tail leaves TX_IDLE after the last.
    let gap = TX_IDLE.as_micros() as u64 * 9 / 10;
    let changes = 3000 / gap;
    assert!(TX_COALESCE.as_micros() as u64 / gap < TX_FULL as u64);
    run_timers(&mut fw, t0 - Duration::from_micros(1), &mut Vec::new());
    for i in 0..changes as u16 {
        let e = at(u64::from(i) * gap);
        run_timers(&mut fw, e, &mut sent_at);
        let mut ct = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", 1000 + i, 80));
        ct.reply = Some(ct.orig.inverse());
        let msg = event(Kind::New, Object::Ct(ct));
        fw.feed(e, Input::Kernel(msg, Origin::NotMe));
        sent_at.extend(fw.wire.drain(..).map(|_| e));
    }
    let last = at((changes - 1) * gap);
    run_timers(&mut fw, last + TX_COALESCE, &mut sent_at);
    assert_eq!(sent_at, vec![t0 + TX_COALESCE, last + TX_IDLE]);
}

#[test]
fn filtered_events_are_counted_and_not_cached() {
    let c = cfg(
        "Filter { Address Ignore { IPv4_address 192.168.0.0/24 } }",
        "FTFW { }",
        "",
    );
    let mut fw = node(c, 1);
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(ftp_master())),
        Origin::NotMe,
    );
    assert!(fw.internal_ct.is_empty());
    assert_eq!(fw.counters.events_filtered, 1);
}
