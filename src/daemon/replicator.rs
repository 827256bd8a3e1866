//! The event loop of a synchronising daemon.
//!
//! ```text
//!  kernel events ──► Node::kernel ─┐            ┌─► Channels::send ──► peer
//!  peer datagrams ─► Node::datagram ├─ Node ────┤
//!  control requests ► Node::control ┘  (sans-IO) └─► Actions: commit batches,
//!  deadlines ──────► Node::tick                      inject, flush, dump
//! ```
//!
//! One owner, no locks: every input is handled to completion in this loop.
//! A commit runs in batches of 256 entries between other events, so
//! replication, `-s` and a refused second `-c` keep being served while it
//! runs; the client of `-c` gets its answer when the last batch is done.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use log::{error, info};
use smol::channel::Receiver;
use smol::future::{self, FutureExt as _};
use smol::{Async, LocalExecutor, Timer};

use super::kernel::{Kernel, tuple_text};
use super::{Clock, Event, reply_later};
use crate::channel::Channels;
use crate::config::Config;
use crate::control::proto::{Format, Reply, Status, Table};
use crate::control::server;
use crate::kernel::codec::{self, Object, Received};
use crate::kernel::commit::Plan;
use crate::kernel::socket::{CtSocket, EventRead};
use crate::node::render::{self, LinkView};
use crate::node::{Action, Node};
use crate::time::Instant;

/// Entries created per loop iteration during a commit.
const COMMIT_BATCH: usize = 1024;
/// Entries per commit step: a batch for each of the two commit sockets.
const COMMIT_STEP: usize = 2 * COMMIT_BATCH;
/// Changes wait at most this long for more to fill a datagram: a burst of
/// kernel events then leaves in full datagrams instead of one each.
const TX_COALESCE: Duration = Duration::from_millis(2);
/// Keys that fill about one datagram: send at once.
const TX_FULL: usize = 48;
const LINK_CHECK: Duration = Duration::from_secs(1);

struct CommitJob {
    plan: Plan,
    /// `plan.cts[..masters]` have no master: they must all exist before
    /// any RELATED entry is created, so no step spans this boundary.
    masters: usize,
    ct_errs: Vec<i32>,
    exp_errs: Vec<i32>,
    client: Async<std::os::unix::net::UnixStream>,
}

pub(crate) struct Replicator {
    node: Node,
    kernel: Kernel,
    channels: Channels,
    job: Option<CommitJob>,
    overrun_resync_at: Option<Instant>,
    next_link_check: Instant,
    tx_due: Option<Instant>,
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
}

/// What woke the loop.
enum Wake {
    Control(Option<Event>),
    Kernel(std::io::Result<EventRead>),
    Peer(usize, usize, SocketAddr),
    Tick,
    Job,
}

fn peer_id(from: &SocketAddr) -> u64 {
    match from.ip() {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64)
        }
    }
}

impl Replicator {
    /// Opens the kernel sockets and the links and loads the kernel table.
    pub(crate) fn start(
        cfg: &Config,
        clock: Clock,
    ) -> Result<Replicator, String> {
        let sync = cfg.sync.as_ref().ok_or("no Sync section")?;
        let mut kernel = Kernel::open(cfg)?;
        let channels = Channels::open(sync).map_err(|e| e.to_string())?;
        let mut session = [0u8; 4];
        let _ = rustix::rand::getrandom(
            &mut session,
            rustix::rand::GetRandomFlags::empty(),
        );
        let now = clock.now();
        let mut node = Node::new(
            cfg.clone(),
            u32::from_ne_bytes(session),
            channels.max_datagram(),
            now,
        );
        if sync.disable_external_cache {
            info!("disabling external cache");
        }
        if sync.disable_internal_cache {
            info!("disabling internal cache");
        } else {
            let exp = sync.expectation_sync.enabled();
            let objects = kernel.dump(true, exp).map_err(|e| {
                format!("can't get kernel conntrack table: {e}")
            })?;
            node.resync_kernel(now, objects, true, exp, false);
        }
        if sync.startup_resync {
            let _ = node
                .control(now, crate::control::proto::Request::RequestResync);
        }
        node.runtime.netlink_buffer = kernel.events.buffer_size();
        Ok(Replicator {
            node,
            kernel,
            channels,
            job: None,
            overrun_resync_at: None,
            next_link_check: now + LINK_CHECK,
            tx_due: None,
            tx_buf: vec![0; 65_536],
            rx_buf: vec![0; 65_536],
        })
    }

    pub(crate) async fn run(
        &mut self,
        ex: &LocalExecutor<'_>,
        rx: &Receiver<Event>,
        clock: Clock,
    ) {
        loop {
            // Under a flood of kernel events every wait() is ready at once;
            // without this the executor never runs the control socket's
            // reader and writer tasks, and `-s` stalls until the flood ends.
            future::yield_now().await;
            self.transmit(clock.now());
            match self.wait(rx, clock).await {
                Wake::Control(None) | Wake::Control(Some(Event::Signal)) => {
                    break;
                }
                Wake::Control(Some(Event::Malformed(why, stream))) => {
                    self.node.counters.local_read_failed += 1;
                    log::debug!("bad control request: {why}");
                    reply_later(
                        ex,
                        stream,
                        vec![Reply::Done(Status::BadRequest(why))],
                    );
                }
                Wake::Control(Some(Event::Request(req, stream))) => {
                    if self.request(ex, clock, req, stream).await {
                        break;
                    }
                }
                Wake::Kernel(r) => self.kernel_events(clock.now(), r),
                Wake::Peer(link, n, from) => {
                    self.peer(clock.now(), link, n, from)
                }
                Wake::Tick => self.tick(clock.now()),
                Wake::Job => self.commit_step(ex, clock.now()),
            }
        }
    }

    async fn wait(&mut self, rx: &Receiver<Event>, clock: Clock) -> Wake {
        let Replicator {
            node,
            kernel,
            channels,
            job,
            overrun_resync_at,
            next_link_check,
            rx_buf,
            tx_due,
            ..
        } = self;
        let mut deadline = node.poll_at().min(*next_link_check);
        for t in [*overrun_resync_at, *tx_due].into_iter().flatten() {
            deadline = deadline.min(t);
        }
        let control = async { Wake::Control(rx.recv().await.ok()) };
        let events = async { Wake::Kernel(kernel.events.recv().await) };
        let peer = async {
            let (link, n, from) = channels.recv(rx_buf).await;
            Wake::Peer(link, n, from)
        };
        let timer = async {
            Timer::at(clock.at(deadline)).await;
            Wake::Tick
        };
        let busy = job.is_some();
        let idle = async move {
            if busy {
                future::yield_now().await;
                Wake::Job
            } else {
                future::pending().await
            }
        };
        control.or(events).or(peer).or(timer).or(idle).await
    }

    fn transmit(&mut self, now: Instant) {
        if !self.node.engine.wants_transmit() {
            self.tx_due = None;
            return;
        }
        let due = *self.tx_due.get_or_insert(now + TX_COALESCE);
        if now < due && self.node.engine.queue_lengths().0 < TX_FULL {
            return;
        }
        self.tx_due = None;
        let max = self.channels.max_datagram().min(self.tx_buf.len());
        while let Some(n) = self.node.transmit(now, &mut self.tx_buf[..max]) {
            self.channels.send(&self.tx_buf[..n]);
        }
    }

    fn kernel_events(
        &mut self,
        now: Instant,
        first: std::io::Result<EventRead>,
    ) {
        let limit = self.node.cfg.general.event_iteration_limit.max(1);
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(r) = next.take() {
            match r {
                Ok(EventRead::Data(n)) => {
                    for m in codec::messages(self.kernel.events.received(n)) {
                        match m {
                            Ok(Received::Msg(m)) => {
                                let origin =
                                    self.kernel.origins.classify(m.port);
                                self.node.kernel(now, m, origin);
                            }
                            Ok(_) => {}
                            Err(_) => self.node.counters.events_unknown += 1,
                        }
                    }
                }
                Ok(EventRead::Overrun { .. }) => {
                    self.node.overrun();
                    self.node.runtime.netlink_buffer =
                        self.kernel.events.buffer_size();
                    let internal = !self.node.internal_disabled();
                    if let (Some(secs), true) =
                        (self.node.cfg.general.netlink_overrun_resync, internal)
                    {
                        // Repeated overruns keep postponing it, as conntrackd.
                        self.overrun_resync_at =
                            Some(now + Duration::from_secs(u64::from(secs)));
                    }
                }
                Err(_) => self.node.counters.catch_event_failed += 1,
            }
            handled += 1;
            if handled < limit {
                next = self.kernel.events.try_recv().transpose();
            }
        }
    }

    fn peer(&mut self, now: Instant, link: usize, n: usize, from: SocketAddr) {
        match self.node.datagram(now, peer_id(&from), &self.rx_buf[..n]) {
            Ok(actions) => {
                // Replies follow the peer onto the link it used.
                self.channels.set_current(link);
                for a in actions {
                    self.act(now, a);
                }
            }
            Err(e) => log::debug!("datagram from {from}: {e}"),
        }
    }

    fn tick(&mut self, now: Instant) {
        for a in self.node.tick(now) {
            self.act(now, a);
        }
        if now >= self.next_link_check {
            self.next_link_check = now + LINK_CHECK;
            self.channels.check_links();
        }
        if self.overrun_resync_at.is_some_and(|t| now >= t) {
            self.overrun_resync_at = None;
            let exp = self.node.expectation_sync().enabled();
            self.node.counters.kernel_resyncs += 1;
            match self.kernel.dump(true, exp) {
                Ok(objects) => {
                    self.node.resync_kernel(now, objects, true, exp, true)
                }
                Err(e) => error!("can't dump kernel table: {e}"),
            }
        }
    }

    /// Kernel work for an action that needs no client.
    fn act(&mut self, now: Instant, a: Action) {
        match a {
            Action::Inject(apply) => match self.kernel.inject(&apply) {
                Ok(errno) => {
                    self.node.injected(errno);
                    if errno != 0 {
                        log::warn!(
                            "could not inject entry: {}",
                            std::io::Error::from_raw_os_error(errno)
                        );
                    }
                }
                Err(e) => {
                    self.node.injected(5);
                    log::warn!("could not inject entry: {e}");
                }
            },
            Action::FlushKernel {
                conntracks,
                expectations,
            } => {
                let filter = self.node.cfg.general.filter.clone();
                if let Err(e) = self.kernel.flush_selective(
                    &filter,
                    conntracks,
                    expectations,
                ) {
                    error!("cannot flush the kernel table: {e}");
                }
            }
            Action::ResyncKernel {
                conntracks,
                expectations,
                send,
            } => match self.kernel.dump(conntracks, expectations) {
                Ok(objects) => self.node.resync_kernel(
                    now,
                    objects,
                    conntracks,
                    expectations,
                    send,
                ),
                Err(e) => error!("can't dump kernel table: {e}"),
            },
            Action::Commit(_)
            | Action::DumpKernel { .. }
            | Action::Shutdown => {}
        }
    }

    fn link_views(&self) -> Vec<LinkView> {
        let current = self.channels.current();
        self.channels
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| LinkView {
                kind: l.kind(),
                interface: l.channel.interface.to_string(),
                status: l.info.status.as_str(),
                active: i == current,
                tcp: l.tcp_connected(),
                bytes_sent: l.stats.bytes_sent,
                bytes_recv: l.stats.bytes_recv,
                pkts_sent: l.stats.pkts_sent,
                pkts_recv: l.stats.pkts_recv,
                err_send: l.stats.err_send,
                err_recv: l.stats.err_recv,
                foreign: l.stats.foreign,
            })
            .collect()
    }

    /// One control request; true to shut down.
    async fn request(
        &mut self,
        ex: &LocalExecutor<'_>,
        clock: Clock,
        req: crate::control::proto::Request,
        mut stream: Async<std::os::unix::net::UnixStream>,
    ) -> bool {
        let now = clock.now();
        self.node.links = self.link_views();
        self.node.runtime.netlink_buffer = self.kernel.events.buffer_size();
        let outcome = self.node.control(now, req);
        let mut replies = outcome.replies;
        for a in outcome.actions {
            match a {
                Action::Shutdown => {
                    let _ = server::write_replies(&mut stream, &replies).await;
                    return true;
                }
                Action::Commit(plan) => {
                    let masters = plan
                        .cts
                        .iter()
                        .position(|c| c.master.is_some())
                        .unwrap_or(plan.cts.len());
                    self.job = Some(CommitJob {
                        masters,
                        plan,
                        ct_errs: Vec::new(),
                        exp_errs: Vec::new(),
                        client: stream,
                    });
                    return false;
                }
                Action::DumpKernel { table, format } => {
                    let text = self.kernel_dump_text(table, format);
                    replies.insert(0, Reply::Data(text));
                }
                other => self.act(now, other),
            }
        }
        reply_later(ex, stream, replies);
        false
    }

    /// `-i` without an internal cache: a live kernel dump.
    fn kernel_dump_text(&mut self, table: Table, format: Format) -> String {
        let exp = table == Table::Expect;
        let objects = match self.kernel.dump(!exp, exp) {
            Ok(o) => o,
            Err(e) => {
                error!("can't dump kernel table: {e}");
                return String::new();
            }
        };
        let mut out = String::new();
        for o in objects {
            let line = match (&o, format) {
                (Object::Ct(c), Format::Json) => render::ct_json(c, 0),
                (Object::Ct(c), _) => render::ct_line(c, false),
                (Object::Exp(x), Format::Json) => render::exp_json(x, 0),
                (Object::Exp(x), _) => render::exp_line(x),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// One batch of the running commit.
    fn commit_step(&mut self, ex: &LocalExecutor<'_>, now: Instant) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let (done_ct, done_exp) = (job.ct_errs.len(), job.exp_errs.len());
        let k = &mut self.kernel;
        let result = if done_ct < job.plan.cts.len() {
            let step = &job.plan.cts
                [ct_step(done_ct, job.masters, job.plan.cts.len())];
            both_sockets(&mut k.commit, &mut k.commit2, step, |s, b| {
                s.create_cts(b)
            })
            .map(|e| (e, true))
        } else if done_exp < job.plan.exps.len() {
            let step = &job.plan.exps
                [done_exp..(done_exp + COMMIT_STEP).min(job.plan.exps.len())];
            both_sockets(&mut k.commit, &mut k.commit2, step, |s, b| {
                s.create_exps(b)
            })
            .map(|e| (e, false))
        } else {
            let job = self.job.take().expect("checked above");
            let replies =
                self.node.commit_done(now, &job.ct_errs, &job.exp_errs);
            reply_later(ex, job.client, replies);
            return;
        };
        match result {
            Ok((errs, cts)) => {
                for (i, &e) in errs.iter().enumerate() {
                    if e != 0 {
                        let what = if cts {
                            tuple_text(&job.plan.cts[done_ct + i].orig)
                        } else {
                            tuple_text(&job.plan.exps[done_exp + i].tuple)
                        };
                        error!(
                            "commit-create: {}",
                            std::io::Error::from_raw_os_error(e)
                        );
                        error!("{what}");
                    }
                }
                if cts {
                    job.ct_errs.extend(errs);
                } else {
                    job.exp_errs.extend(errs);
                }
            }
            Err(e) => {
                error!("commit-create: {e}");
                // Count the whole rest as failed and finish.
                job.ct_errs.resize(job.plan.cts.len(), 5);
                job.exp_errs.resize(job.plan.exps.len(), 5);
            }
        }
    }
}

/// The conntracks of the next commit step: at most [`COMMIT_STEP`], and
/// never both masters and RELATED entries (`masters` = how many masters
/// lead the plan).
fn ct_step(done: usize, masters: usize, len: usize) -> std::ops::Range<usize> {
    let end = if done < masters { masters } else { len };
    done..end.min(done + COMMIT_STEP)
}

/// Runs `create` over `items`: the first half on `a` in this thread, the
/// second on `b` in a scoped thread when this machine has a second core
/// (the kernel's create work runs in the sending thread, so this is the
/// one way to use both). Errnos come back in item order.
fn both_sockets<T: Sync>(
    a: &mut CtSocket,
    b: &mut CtSocket,
    items: &[T],
    create: impl Fn(&mut CtSocket, &[T]) -> std::io::Result<Vec<i32>> + Sync,
) -> std::io::Result<Vec<i32>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 || items.len() <= COMMIT_BATCH {
        return create(a, items);
    }
    let (first, second) = items.split_at(items.len() / 2);
    let create = &create;
    std::thread::scope(|s| {
        let other = s.spawn(move || create(b, second));
        let mut errs = create(a, first)?;
        // A panic there would be a bug in the codec; report it as EIO.
        errs.extend(
            other
                .join()
                .unwrap_or(Err(std::io::Error::from_raw_os_error(5)))?,
        );
        Ok(errs)
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn commit_steps_never_mix_masters_and_related() {
        let (masters, len) = (3000, 5000);
        let mut done = 0;
        let mut steps = Vec::new();
        while done < len {
            let r = ct_step(done, masters, len);
            assert!(r.end <= masters || r.start >= masters, "{r:?}");
            assert!(!r.is_empty() && r.len() <= COMMIT_STEP);
            done = r.end;
            steps.push(r);
        }
        assert_eq!(steps, vec![0..2048, 2048..3000, 3000..5000]);
        // Only masters, only related.
        assert_eq!(ct_step(0, 10, 10), 0..10);
        assert_eq!(ct_step(0, 0, 10), 0..10);
    }
}
