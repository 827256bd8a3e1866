//! What a Stats-mode daemon (the flow logger) does with each control
//! request, as conntrackd 1.4.7 in Stats mode: `-s`/`-s ct`, `-s cache`,
//! `-i` (plain, XML, JSON), `-f internal`, `-R` and `-F` act; `-s
//! runtime`, `-s process` and `-k` are the daemon-wide answers; every
//! other request (`-c`, `-f`, `-e`, `-n`, `-B`, `-t`, the sync views of
//! `-s`, anything about expectations) succeeds with no output, as
//! conntrackd's does, so a notify script written for a sync daemon does
//! not fail on a flow logger. Pure.

use super::ControlView;
use super::flow_log::FlowLog;
use crate::control::proto::{
    Cache, CacheSel, Format, Request, StatsView, Table, Target,
};
use crate::time::Instant;

/// What the daemon does for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Replies this text (nothing when empty), then success.
    Text(String),
    /// Answered by the daemon-wide handler (`-s runtime`, `-s process`,
    /// `-k`).
    Daemon,
    /// `-f internal`: the cache was flushed; log conntrackd's notice.
    Flushed,
    /// `-F`: log conntrackd's notice, delete the kernel's conntracks
    /// that pass the Filter (their destroy events log them), reply.
    FlushKernel,
    /// `-R`: log conntrackd's notice, fold a kernel dump into the cache,
    /// reply when it is in.
    Resync,
}

/// The notice conntrackd logs for `-f internal` in Stats mode.
pub const FLUSHED: &str = "flushing caches";
/// The notice conntrackd logs for `-F`.
pub const FLUSH_KERNEL: &str = "flushing kernel conntrack table";
/// The notice conntrackd logs for `-R`.
pub const RESYNC: &str = "resync with master conntrack table";

/// Decides (and, for what only touches the cache, does) `req` at `now`;
/// `control` is the loop's view of its replies, for `-s --json`.
pub fn answer(
    log: &mut FlowLog,
    req: Request,
    now: Instant,
    control: ControlView,
) -> Answer {
    let conntracks = |t: Target| matches!(t, Target::All | Target::Ct);
    match req {
        Request::Kill
        | Request::Stats {
            view: StatsView::Runtime | StatsView::Process,
            ..
        } => Answer::Daemon,
        Request::Stats {
            view: StatsView::General | StatsView::Cache,
            format: Format::Json,
        } => Answer::Text(json(log, &control)),
        Request::Stats {
            view: StatsView::General,
            ..
        } => Answer::Text(log.stats_text()),
        Request::Stats {
            view: StatsView::Cache,
            ..
        } => Answer::Text(log.cache_text()),
        Request::Dump {
            cache: Cache::Internal,
            table: Table::Ct,
            format,
        } => Answer::Text(log.dump_text(now, format)),
        Request::FlushCache(CacheSel::Internal) => {
            log.flush();
            Answer::Flushed
        }
        Request::FlushKernel(t) if conntracks(t) => Answer::FlushKernel,
        Request::ResyncKernel(t) if conntracks(t) => Answer::Resync,
        _ => Answer::Text(String::new()),
    }
}

/// `-s --json` / `-s cache --json` of a flow logger.
fn json(log: &FlowLog, control: &ControlView) -> String {
    let mut c = String::new();
    super::render::json_control(&mut c, control);
    format!(
        "{{\"cache\":{{\"name\":\"stats\",\"active\":{},\"created\":{},\
         \"created_failed\":{},\"updated\":{},\"destroyed\":{},\
         \"filtered\":{}}},\"traffic_bytes\":{},\"traffic_packets\":{},{c}}}\n",
        log.len(),
        log.created,
        log.created_failed,
        log.updated,
        log.destroyed,
        log.filtered,
        log.traffic_bytes,
        log.traffic_packets
    )
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::Filter;
    use crate::kernel::codec::Kind;
    use crate::model::{Conntrack, L4, Tuple};
    use crate::node::flow_log::Source;

    fn udp(port: u16) -> Conntrack {
        let mut c = Conntrack::new(Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 17,
            l4: L4::Ports { src: port, dst: 53 },
        });
        c.reply = Some(c.orig.inverse());
        c.status = crate::model::status::CONFIRMED;
        c
    }

    fn plain(view: StatsView) -> Request {
        Request::Stats {
            view,
            format: Format::Plain,
        }
    }

    #[test]
    fn each_request_gets_conntrackds_stats_mode_answer() {
        let t = Instant::ZERO;
        let mut log = FlowLog::new(Filter::default(), 10);
        // From the start-up dump: its mark is shown, 0 too.
        log.event(Kind::Update, udp(1), Source::Dump, t);
        let control = ControlView {
            pending_bytes: 10,
            budget_bytes: 20,
            replies_refused: 3,
            clients_dropped: 4,
            log_write_errors: 0,
        };
        let mut ask = |r| answer(&mut log, r, t, control);
        assert_eq!(ask(Request::Kill), Answer::Daemon);
        assert_eq!(ask(plain(StatsView::Runtime)), Answer::Daemon);
        assert_eq!(ask(plain(StatsView::Process)), Answer::Daemon);
        let Answer::Text(s) = ask(plain(StatsView::General)) else {
            panic!()
        };
        assert!(s.starts_with(
            "cache stats:\ncurrent active connections:\t           1\n"
        ));
        let Answer::Text(s) = ask(plain(StatsView::Cache)) else {
            panic!()
        };
        assert!(
            s.starts_with("cache:stats\tactive objects:\t\t           1\n")
        );
        let json = Request::Stats {
            view: StatsView::General,
            format: Format::Json,
        };
        let Answer::Text(s) = ask(json) else { panic!() };
        assert!(
            s.ends_with(",\"traffic_packets\":0,\"control\":{\"pending_bytes\":10,\"budget_bytes\":20,\"replies_refused\":3,\"clients_dropped\":4}}\n"),
            "{s}"
        );
        let dump = |format| Request::Dump {
            cache: Cache::Internal,
            table: Table::Ct,
            format,
        };
        let Answer::Text(s) = ask(dump(Format::Plain)) else {
            panic!()
        };
        assert!(s.ends_with(" mark=0 [active since 0s]\n"), "{s}");
        assert_eq!(ask(Request::ResyncKernel(Target::All)), Answer::Resync);
        assert_eq!(ask(Request::ResyncKernel(Target::Ct)), Answer::Resync);
        assert_eq!(ask(Request::FlushKernel(Target::All)), Answer::FlushKernel);
        // Silent successes, as conntrackd's Stats mode.
        let empty = Answer::Text(String::new());
        for r in [
            Request::Commit(Target::All),
            Request::FlushCache(CacheSel::All),
            Request::FlushCache(CacheSel::External),
            Request::FlushKernel(Target::Expect),
            Request::ResyncKernel(Target::Expect),
            Request::BulkSend,
            Request::RequestResync,
            Request::ResetTimers,
            plain(StatsView::Network),
            plain(StatsView::Queue),
            plain(StatsView::RsQueue),
            plain(StatsView::Link),
            plain(StatsView::Expect),
            Request::Dump {
                cache: Cache::External,
                table: Table::Ct,
                format: Format::Plain,
            },
            Request::Dump {
                cache: Cache::Internal,
                table: Table::Expect,
                format: Format::Plain,
            },
        ] {
            assert_eq!(ask(r), empty, "{r:?}");
        }
        // Still cached: none of those touched the cache.
        assert_eq!(
            ask(Request::FlushCache(CacheSel::Internal)),
            Answer::Flushed
        );
        assert!(log.is_empty());
    }
}
