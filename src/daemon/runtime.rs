//! What a daemon without a `Sync` section answers on the control socket
//! (a configuration with only `General`; in `Stats` mode `-s` is the
//! flow logger's, see `stats_mode`): runtime statistics, and an explicit
//! `NotSupported` for every replication request. Pure.

use std::time::{Duration, Instant};

use crate::control::proto::{Format, Reply, Request, StatsView, Status};

/// Daemon-wide counters shown by `-s runtime`.
#[derive(Debug)]
pub struct Runtime {
    pub started: Instant,
    /// Control connections that did not deliver a valid request.
    pub local_read_failed: u64,
    /// Valid requests this daemon does not serve.
    pub local_unknown_request: u64,
    /// The event socket's counters (a Stats-mode daemon's; zero without
    /// one) and its buffer size in bytes.
    pub events: EventCounters,
    /// Log lines some sink did not take, as the logger counted them when
    /// the loop last looked (before each request).
    pub log_write_errors: u64,
}

/// What a Stats-mode daemon counts of its kernel side, for `-s runtime`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EventCounters {
    pub received: u64,
    pub filtered: u64,
    pub overruns: u64,
    pub kernel_flushes: u64,
    pub kernel_resyncs: u64,
    pub buffer: usize,
}

impl Runtime {
    pub fn new(now: Instant) -> Self {
        Runtime {
            started: now,
            local_read_failed: 0,
            local_unknown_request: 0,
            events: EventCounters::default(),
            log_write_errors: 0,
        }
    }

    /// Handles one request: the reply frames, and true for shutdown.
    pub fn handle(&mut self, req: Request, now: Instant) -> (Vec<Reply>, bool) {
        let up = now.saturating_duration_since(self.started);
        match req {
            Request::Kill => (vec![Reply::Done(Status::Ok)], true),
            Request::Stats {
                view: StatsView::Runtime,
                format,
            } => {
                let text = match format {
                    Format::Json => self.runtime_json(up),
                    _ => self.runtime_text(up),
                };
                (vec![Reply::Data(text), Reply::Done(Status::Ok)], false)
            }
            // No child processes: dumps and flushes never fork here.
            Request::Stats {
                view: StatsView::Process,
                format,
            } => {
                let mut out = vec![];
                if format == Format::Json {
                    out.push(Reply::Data("[]\n".into()));
                }
                out.push(Reply::Done(Status::Ok));
                (out, false)
            }
            other => {
                self.local_unknown_request += 1;
                let msg = format!(
                    "{other:?} needs a Sync section in the configuration"
                );
                (vec![Reply::Done(Status::NotSupported(msg))], false)
            }
        }
    }

    /// `-s runtime` in conntrackd's layout (the same renderer as a
    /// synchronising daemon's).
    pub fn runtime_text(&self, up: Duration) -> String {
        let e = &self.events;
        let counters = crate::node::Counters {
            local_read_failed: self.local_read_failed,
            local_unknown_request: self.local_unknown_request,
            events_received: e.received,
            events_filtered: e.filtered,
            overruns: e.overruns,
            kernel_flushes: e.kernel_flushes,
            kernel_resyncs: e.kernel_resyncs,
            ..Default::default()
        };
        let mut s = String::new();
        crate::node::render::runtime_text(&mut s, up, &counters, e.buffer);
        s
    }

    /// `-s runtime --json`.
    pub fn runtime_json(&self, up: Duration) -> String {
        let e = &self.events;
        format!(
            "{{\"uptime_seconds\":{},\"local_read_failed\":{},\
             \"local_unknown_request\":{},\"events_received\":{},\
             \"events_filtered\":{},\"netlink_overruns\":{},\
             \"kernel_flushes\":{},\"kernel_resyncs\":{},\
             \"netlink_buffer\":{},\"log_write_errors\":{}}}\n",
            up.as_secs(),
            self.local_read_failed,
            self.local_unknown_request,
            e.received,
            e.filtered,
            e.overruns,
            e.kernel_flushes,
            e.kernel_resyncs,
            e.buffer,
            self.log_write_errors
        )
    }
}

pub use crate::node::render::uptime;

#[cfg(test)]
mod test {
    use super::*;
    use crate::control::proto::{CacheSel, Target};

    #[test]
    fn uptime_texts() {
        assert_eq!(uptime(Duration::from_secs(59)), "0 min");
        assert_eq!(uptime(Duration::from_secs(3600 + 120)), "1 h 2 min");
        assert_eq!(uptime(Duration::from_secs(86400 + 240)), "1 day 4 min");
        let t = 2 * 86400 + 3 * 3600 + 4 * 60;
        assert_eq!(uptime(Duration::from_secs(t)), "2 days 3 h 4 min");
    }

    #[test]
    fn runtime_stats_layout_and_counters() {
        let t0 = Instant::now();
        let mut rt = Runtime::new(t0);
        rt.local_read_failed = 3;
        let (replies, stop) = rt.handle(
            Request::Stats {
                view: StatsView::Runtime,
                format: Format::Plain,
            },
            t0 + Duration::from_secs(3720),
        );
        assert!(!stop);
        let Reply::Data(text) = &replies[0] else {
            panic!("{replies:?}")
        };
        assert!(
            text.starts_with("daemon uptime: 1 h 2 min\n\nnetlink stats:\n")
        );
        assert!(text.contains("\tevents received:\t                   0\n"));
        assert!(text.contains("\tlocal read failed:\t\t           3\n"));
        assert!(text.ends_with("local unknown request:\t\t           0\n\n"));
    }

    #[test]
    fn unsupported_requests_say_so_and_are_counted() {
        let t0 = Instant::now();
        let mut rt = Runtime::new(t0);
        for req in [
            Request::Commit(Target::All),
            Request::FlushCache(CacheSel::All),
        ] {
            let (r, stop) = rt.handle(req, t0);
            assert!(!stop);
            assert!(matches!(&r[..], [Reply::Done(Status::NotSupported(_))]));
        }
        assert_eq!(rt.local_unknown_request, 2);
        let (r, stop) = rt.handle(Request::Kill, t0);
        assert!(stop);
        assert_eq!(r, vec![Reply::Done(Status::Ok)]);
    }
}
