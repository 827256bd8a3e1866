//! The loop of a daemon with a `Stats` section (the flow logger): kernel
//! events into [`FlowLog`], each destroyed flow's line appended to the
//! stats log (`Stats { LogFile }`, `ctime` TAB flow, flushed per line)
//! and sent to syslog at LOG_INFO (`Stats { Syslog }`, with General's
//! facility as conntrackd does). Control requests are answered as
//! [`flow_requests`] decides; `-R`, `-F` and the resync after an event
//! overrun run on the kernel worker, so the loop never waits on the
//! kernel after start-up.

use std::fs::{File, OpenOptions};
use std::time::Instant;

use async_signal::Signals;
use smol::Async;
use smol::LocalExecutor;
use smol::channel::Receiver;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use super::kernel::event_filter;
use super::throttle::Throttle;
use super::worker::{JobSockets, Worker};
use super::{Clock, Error, Event, ReplyBudget, Runtime, reply_later};
use crate::config::{Config, LogTarget};
use crate::control::proto::{Reply, Status};
use crate::kernel::codec::{self, Kind, Object, Received};
use crate::kernel::commit::CommitRules;
use crate::kernel::events::{EventRead, EventSocket};
use crate::kernel::socket::CtSocket;
use crate::logging::StatsSyslog;
use crate::node::flow_log::{FlowLog, Resync, Source};
use crate::node::flow_requests::{self, Answer};
use crate::node::{Completion, Done, Job, Purpose, Work};

/// What the stats-mode loop owns.
pub(crate) struct StatsMode {
    events: EventSocket,
    log: FlowLog,
    file: Option<File>,
    syslog: Option<StatsSyslog>,
    iteration_limit: u32,
    worker: Worker,
    rt: Runtime,
    /// The kernel dump being folded in, and the clients of `-R` waiting
    /// for it.
    resync: Option<(Resync, Vec<Async<UnixStream>>)>,
    /// An overrun came while a dump ran: another (purging) one follows.
    overrun_pending: bool,
    /// Lines the stats log refused (a full disk), reported at most once
    /// a minute: a warning per flow flooded syslog.
    unwritten: Throttle,
}

impl StatsMode {
    /// Subscribes to conntrack events, starts the kernel worker, loads
    /// the kernel's table through it (flows that exist now are logged
    /// when they end) and opens the sinks. None when SIGTERM or SIGINT
    /// came during the load: the start ends there, as a stop (the load
    /// of a big table once ran on this thread, and a stop waited for
    /// its end; see `replicator::start`).
    ///
    /// # Errors
    /// [`Error::Netlink`] when the kernel cannot be reached,
    /// [`Error::KernelTable`] when its table cannot be read,
    /// [`Error::LogFile`] when the stats log cannot be opened.
    pub(crate) async fn open(
        cfg: &Config,
        syslog_ident: &str,
        clock: Clock,
        signals: &mut Signals,
    ) -> Result<Option<StatsMode>, Error> {
        let g = &cfg.general;
        let stats = cfg.stats.clone().unwrap_or_default();
        let events = EventSocket::open(
            false,
            g.netlink_buffer_size as usize,
            g.netlink_buffer_size_max_growth as usize,
            g.netlink_events_reliable,
        )
        .map_err(Error::Netlink)?;
        event_filter(&events, &g.filter);
        let mut log = FlowLog::new(g.filter.clone(), g.hash_limit as usize);
        let open = || CtSocket::open().map_err(Error::Netlink);
        let worker = Worker::start(JobSockets {
            dump: open()?,
            flush: open()?,
            commit: open()?,
            inject: open()?,
            filter: g.filter.clone(),
            // Stats mode never commits.
            commit_sched: super::sched::below(
                g.scheduler.unwrap_or(super::sched::DEFAULT),
            ),
            rules: CommitRules::default(),
        })
        .map_err(Error::Netlink)?;
        let load = Job {
            // The flow logger has no node: the id names nothing.
            purpose: Purpose::Refresh { id: 0 },
            work: Work::Dump {
                conntracks: true,
                expectations: false,
            },
        };
        let queued = worker.submit(load).map_err(|c| format!("{:?}", c.done));
        queued.map_err(Error::KernelTable)?;
        loop {
            let next = super::worker::completion_or_stop(&worker.done, signals);
            let Some(c) = next.await else {
                return Ok(None);
            };
            let (objects, last) = match c? {
                Completion {
                    done: Done::Dumped { objects, last },
                    ..
                } => (objects, last),
                Completion {
                    done: Done::Failed(why),
                    ..
                } => return Err(Error::KernelTable(why)),
                Completion { done, .. } => {
                    return Err(Error::KernelTable(format!("{done:?}")));
                }
            };
            for o in objects {
                if let codec::Object::Ct(ct) = o {
                    log.event(Kind::Update, ct, Source::Dump, clock.now());
                }
            }
            if last {
                break;
            }
        }
        let file = match &stats.log_file {
            LogTarget::Off => None,
            LogTarget::File(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| Error::LogFile {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        Ok(Some(StatsMode {
            events,
            log,
            file,
            syslog: stats
                .syslog
                .map(|_| StatsSyslog::open(g.syslog, syslog_ident)),
            iteration_limit: g.event_iteration_limit.max(1),
            worker,
            rt: Runtime::new(Instant::now()),
            resync: None,
            overrun_pending: false,
            unwritten: Throttle::default(),
        }))
    }

    /// Handles what one datagram of events carries.
    fn datagram(&mut self, n: usize, clock: Clock) {
        let mut lines = Vec::new();
        let now = clock.now();
        let filtered = self.log.filtered;
        for m in codec::messages(self.events.received(n)) {
            self.rt.events.received += 1;
            if let Ok(Received::Msg(m)) = m
                && let Object::Ct(ct) = m.object
                && let Some(line) = self.log.event(
                    m.kind,
                    ct,
                    Source::Event { port: m.port },
                    now,
                )
            {
                lines.push(line);
            }
        }
        self.rt.events.filtered += self.log.filtered - filtered;
        for line in lines {
            self.write(&line);
        }
    }

    fn write(&mut self, flow: &str) {
        if let Some(f) = &mut self.file {
            let now = crate::logging::local_time::now();
            if let Err(e) = crate::logging::write_stats_line(f, now, flow) {
                crate::logging::count_write_error();
                if let Some(n) = self.unwritten.failed(Instant::now()) {
                    log::warn!(
                        "cannot write the stats log: {e}; lines lost since the last report: {n}"
                    );
                }
            }
        }
        if let Some(s) = &mut self.syslog {
            s.info(flow);
        }
    }

    /// Reads events (up to `EventIterationLimit` datagrams per wake-up).
    async fn kernel_turn(&mut self, clock: Clock) {
        let first = self.events.recv(|| clock.now()).await;
        let mut read = Some(first);
        let mut left = self.iteration_limit;
        while let Some(r) = read.take() {
            match r {
                Ok(EventRead::Data(n)) => self.datagram(n, clock),
                Ok(EventRead::Overrun { .. }) => {
                    self.rt.events.overruns += 1;
                    log::warn!(
                        "netlink event socket overrun: resync with the kernel table"
                    );
                    self.start_resync(true);
                }
                Err(e) => log::warn!("cannot read kernel events: {e}"),
            }
            left -= 1;
            if left > 0 {
                read = self.events.try_recv().transpose();
            }
        }
    }

    /// Starts folding in a kernel dump (`purge`: after an overrun, the
    /// flows it proves gone are logged) unless one already runs.
    fn start_resync(&mut self, purge: bool) {
        if self.resync.is_some() {
            self.overrun_pending |= purge;
            return;
        }
        let job = Job {
            purpose: Purpose::Resync {
                client: None,
                conntracks: true,
                expectations: false,
                send: false,
                announce_new: false,
            },
            work: Work::Dump {
                conntracks: true,
                expectations: false,
            },
        };
        match self.worker.submit(job) {
            Ok(()) => {
                self.rt.events.kernel_resyncs += 1;
                self.resync = Some((self.log.resync_start(purge), Vec::new()));
            }
            Err(_) => log::warn!("kernel job queue full: resync not started"),
        }
    }

    /// A kernel job's (part of a) result. Returns the clients of `-R`
    /// to answer, and how.
    fn completion(
        &mut self,
        c: Completion,
        clock: Clock,
    ) -> Option<(Vec<Async<UnixStream>>, Status)> {
        match c.done {
            Done::Dumped { objects, last } => {
                let (r, _) = self.resync.as_mut()?;
                let cts = objects.into_iter().filter_map(|o| match o {
                    Object::Ct(ct) => Some(ct),
                    Object::Exp(_) => None,
                });
                self.log.resync_part(r, cts, clock.now());
                if !last {
                    return None;
                }
                let (r, waiting) = self.resync.take()?;
                for line in self.log.resync_end(r) {
                    self.write(&line);
                }
                self.after_resync();
                Some((waiting, Status::Ok))
            }
            Done::Failed(e) if matches!(c.purpose, Purpose::Resync { .. }) => {
                log::warn!("resync with the kernel table failed: {e}");
                let (_, waiting) = self.resync.take()?;
                self.after_resync();
                Some((waiting, Status::Failed(e)))
            }
            Done::Failed(e) => {
                log::warn!("flushing the kernel table failed: {e}");
                None
            }
            _ => None,
        }
    }

    fn after_resync(&mut self) {
        if std::mem::take(&mut self.overrun_pending) {
            self.start_resync(true);
        }
    }
}

enum Wake {
    Control(Option<Event>),
    Kernel,
    Job(Option<Completion>),
}

/// The stats-mode loop, until a signal or `-k`.
pub(crate) async fn run(
    mut sm: StatsMode,
    ex: &LocalExecutor<'_>,
    rx: &Receiver<Event>,
    clock: Clock,
    budget: &Rc<ReplyBudget>,
) {
    let done = sm.worker.done.clone();
    let mut busy = false;
    loop {
        // A wait that found something ready at once never gave the
        // executor back: under a backlog of events the control socket's
        // tasks (the accept loop, the requests' readers and writers) ran
        // only once it was read to its end, and `-s` waited for all of
        // it. They get a turn after each such wait (as the sync loop's).
        if busy {
            smol::future::yield_now().await;
        }
        let (wake, ready) = {
            let wait = smol::future::or(
                smol::future::or(
                    async { Wake::Control(rx.recv().await.ok()) },
                    async { Wake::Job(done.recv().await.ok()) },
                ),
                async {
                    sm.kernel_turn(clock).await;
                    Wake::Kernel
                },
            );
            let mut wait = std::pin::pin!(wait);
            match smol::future::poll_once(wait.as_mut()).await {
                Some(wake) => (wake, true),
                None => (wait.await, false),
            }
        };
        busy = ready;
        let ev = match wake {
            Wake::Kernel => continue,
            // A closed channel is ready at once: waiting on it again
            // spun the loop. The sync loop stops the same way.
            Wake::Job(None) => {
                log::error!("the kernel worker died; stopping");
                break;
            }
            Wake::Job(Some(c)) => {
                if let Some((waiting, status)) = sm.completion(c, clock) {
                    for stream in waiting {
                        let r = vec![Reply::Done(status.clone())];
                        reply_later(ex, budget, stream, r);
                    }
                }
                continue;
            }
            Wake::Control(None) | Wake::Control(Some(Event::Signal)) => break,
            Wake::Control(Some(ev)) => ev,
        };
        let (req, mut stream) = match ev {
            Event::Signal => break,
            Event::Evicted => {
                sm.rt.local_read_failed += 1;
                continue;
            }
            Event::Malformed(why, stream) => {
                sm.rt.local_read_failed += 1;
                let r = vec![Reply::Done(Status::BadRequest(why))];
                reply_later(ex, budget, stream, r);
                continue;
            }
            Event::Request(req, stream) => (req, stream),
        };
        let ok = |text: String| {
            let mut r = Vec::with_capacity(2);
            if !text.is_empty() {
                r.push(Reply::Data(text));
            }
            r.push(Reply::Done(Status::Ok));
            r
        };
        let replies = match flow_requests::answer(
            &mut sm.log,
            req,
            clock.now(),
            budget.loop_view(),
        ) {
            Answer::Text(text) => ok(text),
            Answer::Flushed => {
                log::info!("{}", flow_requests::FLUSHED);
                ok(String::new())
            }
            Answer::FlushKernel => {
                log::info!("{}", flow_requests::FLUSH_KERNEL);
                sm.rt.events.kernel_flushes += 1;
                let job = Job {
                    purpose: Purpose::Flush { client: None },
                    work: Work::Flush {
                        conntracks: true,
                        expectations: false,
                    },
                };
                match sm.worker.submit(job) {
                    Ok(()) => ok(String::new()),
                    Err(_) => vec![Reply::Done(Status::Failed(
                        "kernel job queue full".into(),
                    ))],
                }
            }
            Answer::Resync => {
                log::info!("{}", flow_requests::RESYNC);
                sm.start_resync(false);
                match &mut sm.resync {
                    // Answered when the dump is in.
                    Some((_, waiting)) => {
                        waiting.push(stream);
                        continue;
                    }
                    None => vec![Reply::Done(Status::Failed(
                        "kernel job queue full".into(),
                    ))],
                }
            }
            Answer::Daemon => {
                sm.rt.events.buffer = sm.events.buffer_size();
                sm.rt.log_write_errors = crate::logging::write_errors();
                let (replies, shutdown) = sm.rt.handle(req, Instant::now());
                if shutdown {
                    let _ = crate::control::server::write_replies(
                        &mut stream,
                        &replies,
                    )
                    .await;
                    break;
                }
                replies
            }
        };
        reply_later(ex, budget, stream, replies);
    }
}
