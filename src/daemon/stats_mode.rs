//! The loop of a daemon with a `Stats` section (the flow logger): kernel
//! events into [`FlowLog`], each destroyed flow's line appended to the
//! stats log (`Stats { LogFile }`, `ctime` TAB flow, flushed per line)
//! and sent to syslog at LOG_INFO (`Stats { Syslog }`, with General's
//! facility as conntrackd does); the control
//! socket answers `-s` with the stats cache's block and everything else
//! as a daemon without `Sync` does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Instant;

use smol::LocalExecutor;
use smol::channel::Receiver;

use super::{Error, Event, REPLY_BUDGET, ReplyBudget, Runtime, reply_later};
use crate::config::{Config, LogTarget};
use crate::control::proto::{Format, Reply, Request, StatsView, Status};
use crate::kernel::codec::{self, Kind, Object, Received};
use crate::kernel::socket::{CtSocket, EventRead, EventSocket};
use crate::logging::StatsSyslog;
use crate::node::flow_log::FlowLog;

/// What the stats-mode loop owns.
pub(crate) struct StatsMode {
    events: EventSocket,
    log: FlowLog,
    file: Option<File>,
    syslog: Option<StatsSyslog>,
    iteration_limit: u32,
}

impl StatsMode {
    /// Subscribes to conntrack events, loads the kernel's table (flows
    /// that exist now are logged when they end) and opens the sinks.
    ///
    /// # Errors
    /// [`Error::Netlink`] when the kernel cannot be reached,
    /// [`Error::KernelTable`] when the stats log cannot be opened.
    pub(crate) fn open(
        cfg: &Config,
        syslog_ident: &str,
    ) -> Result<StatsMode, Error> {
        let g = &cfg.general;
        let stats = cfg.stats.clone().unwrap_or_default();
        let events = EventSocket::open(
            false,
            g.netlink_buffer_size as usize,
            g.netlink_buffer_size_max_growth as usize,
            g.netlink_events_reliable,
        )
        .map_err(Error::Netlink)?;
        super::kernel::event_filter(&events, &g.filter);
        let mut log = FlowLog::new(g.filter.clone(), g.hash_limit as usize);
        let mut dump = CtSocket::open().map_err(Error::Netlink)?;
        for o in dump.dump(false).map_err(Error::Netlink)? {
            if let codec::Object::Ct(ct) = o {
                log.event(Kind::Update, ct);
            }
        }
        let file = match &stats.log_file {
            LogTarget::Off => None,
            LogTarget::File(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        Error::KernelTable(format!(
                            "can't open log file `{}': {e}",
                            path.display()
                        ))
                    })?,
            ),
        };
        Ok(StatsMode {
            events,
            log,
            file,
            syslog: stats
                .syslog
                .and_then(|_| StatsSyslog::open(g.syslog, syslog_ident)),
            iteration_limit: g.event_iteration_limit.max(1),
        })
    }

    /// Handles what one datagram of events carries.
    fn datagram(&mut self, n: usize) {
        let mut lines = Vec::new();
        for m in codec::messages(self.events.received(n)) {
            if let Ok(Received::Msg(m)) = m
                && let Object::Ct(ct) = m.object
                && let Some(line) = self.log.event(m.kind, ct)
            {
                lines.push(line);
            }
        }
        for line in lines {
            self.write(&line);
        }
    }

    fn write(&mut self, flow: &str) {
        if let Some(f) = &mut self.file {
            let stamp = crate::logging::ctime(local_now());
            if let Err(e) = writeln!(f, "{stamp}\t{flow}") {
                log::warn!("cannot write the stats log: {e}");
            }
        }
        if let Some(s) = &mut self.syslog {
            s.info(flow);
        }
    }

    /// Reads events (up to `EventIterationLimit` datagrams per wake-up).
    async fn kernel_turn(&mut self) {
        let first = self.events.recv().await;
        let mut read = Some(first);
        let mut left = self.iteration_limit;
        while let Some(r) = read.take() {
            match r {
                Ok(EventRead::Data(n)) => self.datagram(n),
                Ok(EventRead::Overrun { .. }) => {
                    log::warn!(
                        "netlink event socket overrun: flows may go unlogged"
                    );
                }
                Err(e) => log::warn!("cannot read kernel events: {e}"),
            }
            left -= 1;
            if left > 0 {
                read = self.events.try_recv().transpose();
            }
        }
    }
}

fn local_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_local()
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
}

enum Wake {
    Control(Option<Event>),
    Kernel,
}

/// The stats-mode loop, until a signal or `-k`.
pub(crate) async fn run(
    mut sm: StatsMode,
    ex: &LocalExecutor<'_>,
    rx: &Receiver<Event>,
) {
    let mut rt = Runtime::new(Instant::now());
    let budget = ReplyBudget::new(REPLY_BUDGET);
    loop {
        let wake = smol::future::or(
            async { Wake::Control(rx.recv().await.ok()) },
            async {
                sm.kernel_turn().await;
                Wake::Kernel
            },
        )
        .await;
        let ev = match wake {
            Wake::Kernel => continue,
            Wake::Control(None) | Wake::Control(Some(Event::Signal)) => break,
            Wake::Control(Some(ev)) => ev,
        };
        match ev {
            Event::Signal => break,
            Event::Malformed(why, stream) => {
                rt.local_read_failed += 1;
                reply_later(
                    ex,
                    &budget,
                    stream,
                    vec![Reply::Done(Status::BadRequest(why))],
                );
            }
            Event::Request(
                Request::Stats {
                    view: StatsView::General,
                    format: Format::Plain,
                },
                stream,
            ) => {
                let replies = vec![
                    Reply::Data(sm.log.stats_text()),
                    Reply::Done(Status::Ok),
                ];
                reply_later(ex, &budget, stream, replies);
            }
            Event::Request(req, mut stream) => {
                let (replies, shutdown) = rt.handle(req, Instant::now());
                if shutdown {
                    let _ = crate::control::server::write_replies(
                        &mut stream,
                        &replies,
                    )
                    .await;
                    break;
                }
                reply_later(ex, &budget, stream, replies);
            }
        }
    }
}
