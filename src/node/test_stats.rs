//! `-s` and its views as conntrackd prints them (general, link, runtime,
//! the queues, network, cache, and the blocks of disabled caches), a
//! conntrackd peer noticed once and shown per link, and a kernel job the
//! worker refused counted where `-s` shows it.

use super::test::{Fw, cfg, node, queue_full, text};
use super::*;
use crate::control::proto::{
    Format, Reply, Request, StatsView, Status, Target,
};

#[test]
fn statistics_views() {
    let c = cfg("", "FTFW { }", "");
    let mut fw = node(c, 1);
    fw.links = vec![render::LinkView {
        kind: "UDP",
        interface: "sync0".into(),
        status: "RUNNING",
        active: true,
        pkts_sent: 14,
        bytes_sent: 368,
        ..Default::default()
    }];
    let now = Instant::from_millis(61_000);
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::General,
            format: Format::Plain,
        },
    ));
    assert!(s.contains("traffic processed:\n                   0 Bytes                         0 Pckts\n\n"), "{s}");
    assert!(s.contains("UDP traffic (active device=sync0):\n                 368 Bytes sent                    0 Bytes recv\n                  14 Pckts sent "), "{s}");
    assert!(s.ends_with("message tracking:\n                   0 Malformed msgs                    0 Lost msgs\n\n"));
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Link,
            format: Format::Plain,
        },
    ));
    assert!(
        s.starts_with("UDP traffic device=sync0 status=RUNNING role=ACTIVE:\n")
    );
    // What was refused is visible in text too, not only under --json.
    assert!(
        s.contains(
            "                   0 Foreign                       0 Auth failed\n"
        ),
        "{s}"
    );
    assert!(
        s.contains(
            "refused by the sync engine:\n                   0 Out of window "
        ),
        "{s}"
    );
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Runtime,
            format: Format::Plain,
        },
    ));
    assert!(
        s.starts_with("daemon uptime: 1 min\n\nnetlink stats:\n"),
        "{s}"
    );
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::RsQueue,
            format: Format::Plain,
        },
    ));
    assert_eq!(s, "resent queue (len=0)\n");
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Queue,
            format: Format::Plain,
        },
    ));
    assert!(s.contains("queue txqueue:\ncurrent elements:\t\t           0\n"));
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Network,
            format: Format::Plain,
        },
    ));
    assert!(s.starts_with("network statistics:\n\trecv:\n\t\tMalformed messages:\t                   0\n"));
    let j = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Cache,
            format: Format::Json,
        },
    ));
    assert!(
        j.starts_with(
            "{\"caches\":{\"internal\":{\"active\":0,\"limit\":262144,"
        ),
        "{j}"
    );
    assert!(j.contains("\"links\":[{\"kind\":\"UDP\",\"interface\":\"sync0\",\"status\":\"RUNNING\",\"active\":true,"));
    assert!(j.ends_with("}\n"));
}

#[test]
fn stats_cache_shows_the_bypass_and_inject_blocks_of_disabled_caches() {
    // conntrackd's `-s cache` asks each cache for its extended stats; the
    // bypass and the inject answer with their `-s` blocks.
    let cache = |c: Config| {
        text(&node(c, 1).control(
            Instant::from_millis(0),
            Request::Stats {
                view: StatsView::Cache,
                format: Format::Plain,
            },
        ))
    };
    let s = cache(cfg("", "NOTRACK { DisableInternalCache On }", ""));
    assert!(
        s.starts_with("internal bypass:\nconnections new:\t\t"),
        "{s}"
    );
    assert!(!s.contains("cache:internal"), "{s}");
    assert!(s.contains("cache:external\tactive objects:"), "{s}");
    let s = cache(cfg("", "FTFW { DisableExternalCache On }", ""));
    assert!(s.starts_with("cache:internal\tactive objects:"), "{s}");
    assert!(
        s.ends_with(
            "external inject:\nconnections created:\t\t           0\tfailed:\t           0\nconnections updated:\t\t           0\tfailed:\t           0\nconnections destroyed:\t\t           0\tfailed:\t           0\n\n"
        ),
        "{s}"
    );
}

#[test]
fn a_conntrackd_peer_is_noticed_once_per_switch_and_shown_per_link() {
    use crate::sync::MapSource;
    use crate::sync::ctd::{CtdEngine, Params};
    let mut fw = node(cfg("", "FTFW { }", ""), 100);
    fw.links = vec![LinkView {
        kind: "UDP",
        interface: "lo".into(),
        status: "RUNNING",
        active: true,
        ..Default::default()
    }];
    let mut peer = CtdEngine::new(
        Params {
            mode: Mode::FtFw,
            first_seq: 7,
            max_datagram: 1472,
            resend_queue_size: 100,
            ack_window: 20,
            tx_queue_size: 100,
            refresh_time: Duration::from_secs(60),
            opts: Default::default(),
        },
        Instant::from_millis(0),
    );
    let src = MapSource::default();
    let mut notices = Vec::new();
    for s in 1..=3 {
        let now = Instant::from_millis(s * 1000);
        peer.handle_timeout(now, &src);
        let mut buf = [0u8; 1472];
        let n = peer.poll_transmit(now, &src, &mut buf).unwrap();
        let o = fw.feed(
            now,
            Input::Datagram {
                link: 0,
                peer: 1,
                bytes: &buf[..n],
            },
        );
        notices
            .extend(o.logs.into_iter().filter(|l| l.level == log::Level::Info));
        // Our answers are conntrackd's.
        assert!(
            fw.wire
                .drain(..)
                .all(|d| crate::wire::ctd::is_conntrackd(&d))
        );
    }
    assert_eq!(
        notices,
        vec![LogRecord {
            level: log::Level::Info,
            text: "sync link lo (udp 10.0.0.2:1): peer speaks conntrackd 1.4 protocol".into(),
            entry: false,
        }]
    );
    let now = Instant::from_millis(4000);
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Link,
            format: Format::Plain,
        },
    ));
    assert!(
        s.contains(
            "peer protocol: conntrackd 1.4\nconntrackd messages refused:\n"
        ),
        "{s}"
    );
    let j = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::General,
            format: Format::Json,
        },
    ));
    assert!(j.contains("\"peer_protocol\":\"conntrackd 1.4\",\"conntrackd_refused\":{\"truncated\":0,"), "{j}");
}

/// A kernel job the worker's full queue refused is counted, and `-s`
/// shows the count: under `--json`, and in `-s link`'s text, where
/// ctsyncd's own counters follow conntrackd's.
#[test]
fn a_refused_job_is_counted_where_stats_show_it() {
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    let now = Instant::from_millis(1_000);
    let flush = fw.control(now, Request::FlushKernel(Target::Ct)).actions;
    assert!(matches!(flush[0].work, Work::Flush { .. }));
    let o = fw.job(now, flush[0].purpose, queue_full());
    assert!(matches!(o.replies[..], [Reply::Done(Status::Failed(_))]));
    let stats = |fw: &mut Fw, view, format| {
        text(&fw.control(now, Request::Stats { view, format }))
    };
    let json = stats(&mut fw, StatsView::General, Format::Json);
    assert!(json.contains("\"jobs_failed\":1,"), "{json}");
    let link = stats(&mut fw, StatsView::Link, Format::Plain);
    assert!(
        link.ends_with(
            "kernel jobs:\n                   1 Failed or refused\n\n"
        ),
        "{link}"
    );
}

#[test]
fn the_loops_control_replies_are_in_the_json() {
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    fw.control_view = ControlView {
        pending_bytes: 4096,
        budget_bytes: 16 << 20,
        replies_refused: 3,
        clients_dropped: 2,
        log_write_errors: 5,
    };
    let now = Instant::from_millis(1_000);
    let json = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::General,
            format: Format::Json,
        },
    ));
    let want = "\"control\":{\"pending_bytes\":4096,\"budget_bytes\":16777216,\"replies_refused\":3,\"clients_dropped\":2},";
    assert!(json.contains(want), "{json}");
    // The log's write errors are the daemon's, under runtime.
    assert!(json.contains(",\"log_write_errors\":5}}\n"), "{json}");
}

#[test]
fn the_transmit_queue_limit_saturates_on_a_32_bit_router() {
    // HashLimit is any u32; twice it does not fit a 32-bit usize (CI runs
    // this under qemu for ARMv7 and MIPS).
    let want = usize::try_from(2 * u64::from(u32::MAX)).unwrap_or(usize::MAX);
    assert_eq!(tx_queue_limit(u32::MAX), want);
    let twice_2_31 = usize::try_from(1u64 << 32).unwrap_or(usize::MAX);
    assert_eq!(tx_queue_limit(1 << 31), twice_2_31);
    assert_eq!(tx_queue_limit(100), 1024);
}
