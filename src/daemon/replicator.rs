//! The event loop of a synchronising daemon.
//!
//! ```text
//!  kernel events ──► Node::kernel ─┐            ┌─► Channels::send ──► peer
//!  peer datagrams ─► Node::datagram ├─ Node ────┤
//!  control requests ► Node::control ┘  (sans-IO) └─► Actions: commit,
//!  deadlines ──────► Node::tick                      inject, flush, dump
//! ```
//!
//! One owner, no locks: every input is handled to completion in this loop.
//! The one exception is a commit: its plan and the commit socket go to a
//! worker thread, which creates the entries in the kernel (the kernel's
//! work runs in the sending thread, so it gets a core of its own) and
//! hands the socket back with one errno per entry. Meanwhile replication,
//! `-s`, a refused second `-c` and the events the commit causes keep being
//! served here; the client of `-c` gets its answer when the worker is
//! done.

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
use crate::kernel::origin::Origin;
use crate::kernel::socket::{CtSocket, EventRead};
use crate::node::render::{self, LinkView};
use crate::node::{Action, Node};
use crate::time::Instant;

/// Changes wait at most this long for more to fill a datagram: a burst of
/// kernel events then leaves in full datagrams instead of one each.
const TX_COALESCE: Duration = Duration::from_millis(2);
/// Keys that fill about one datagram: send at once.
const TX_FULL: usize = 48;
const LINK_CHECK: Duration = Duration::from_secs(1);

/// A commit runs in a worker thread with the commit socket, so the
/// kernel's create work (done in the sending thread) runs on one core
/// while this loop reads the events it causes, and everything else, on
/// another. The loop is never blocked by a large commit.
struct CommitJob {
    done: Receiver<CommitResult>,
    client: Async<std::os::unix::net::UnixStream>,
}

/// What the worker hands back: the socket, the plan (for error texts) and
/// one errno per entry, or the error that stopped it.
type CommitResult = (CtSocket, Plan, std::io::Result<(Vec<i32>, Vec<i32>)>);

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
    /// The commit worker finished (None: it died without a word).
    Job(Option<CommitResult>),
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
                Wake::Job(result) => {
                    self.commit_finished(ex, clock.now(), result);
                }
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
        let commit = async move {
            match job {
                Some(j) => Wake::Job(j.done.recv().await.ok()),
                None => future::pending().await,
            }
        };
        // Polled in this order when several are ready: the end of a commit
        // is answered at once, not after the backlog of events the commit
        // itself caused (those only update the internal cache).
        control.or(commit).or(events).or(peer).or(timer).await
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
                    self.start_commit(now, plan, stream, ex);
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

    /// Hands the plan and the commit socket to a worker thread.
    fn start_commit(
        &mut self,
        now: Instant,
        plan: Plan,
        client: Async<std::os::unix::net::UnixStream>,
        ex: &LocalExecutor<'_>,
    ) {
        let Some(mut sock) = self.kernel.commit.take() else {
            // The node refuses a second commit; this cannot happen.
            let replies = self.node.commit_done(now, &[], &[]);
            reply_later(ex, client, replies);
            return;
        };
        let (tx, rx) = smol::channel::bounded(1);
        let spawned = std::thread::Builder::new().name("commit".into()).spawn(
            move || {
                let result = sock.commit(&plan);
                let _ = tx.send_blocking((sock, plan, result));
            },
        );
        match spawned {
            Ok(_) => self.job = Some(CommitJob { done: rx, client }),
            Err(e) => {
                error!("commit-create: can't start the commit thread: {e}");
                // The socket went down with the closure.
                self.reopen_commit_socket();
                let replies = self.node.commit_done(now, &[], &[]);
                reply_later(ex, client, replies);
            }
        }
    }

    /// A new commit socket when the worker's was lost, so the next `-c`
    /// works; its events are ours like the old one's.
    fn reopen_commit_socket(&mut self) {
        match CtSocket::open() {
            Ok(s) => {
                self.kernel.origins.register(s.port(), Origin::Commit);
                self.kernel.commit = Some(s);
            }
            Err(e) => error!("commit-create: can't open netlink handler: {e}"),
        }
    }

    /// The worker's result: per-entry errors are logged as conntrackd
    /// does, the node logs the totals, the client gets its answer.
    fn commit_finished(
        &mut self,
        ex: &LocalExecutor<'_>,
        now: Instant,
        result: Option<CommitResult>,
    ) {
        let Some(job) = self.job.take() else {
            return;
        };
        let (ct_errs, exp_errs) = match result {
            Some((sock, plan, outcome)) => {
                self.kernel.commit = Some(sock);
                match outcome {
                    Ok((cts, exps)) => {
                        log_failures(&plan, &cts, &exps);
                        (cts, exps)
                    }
                    Err(e) => {
                        error!("commit-create: {e}");
                        // The whole plan counts as failed.
                        (vec![5; plan.cts.len()], vec![5; plan.exps.len()])
                    }
                }
            }
            None => {
                // The worker died (a bug); reopen the socket for the next.
                error!(
                    "commit-create: the commit thread ended without a result"
                );
                self.reopen_commit_socket();
                (Vec::new(), Vec::new())
            }
        };
        let replies = self.node.commit_done(now, &ct_errs, &exp_errs);
        reply_later(ex, job.client, replies);
    }
}

/// conntrackd's two lines for each entry the kernel refused.
fn log_failures(plan: &Plan, cts: &[i32], exps: &[i32]) {
    let failed_cts = cts.iter().zip(&plan.cts).filter(|(e, _)| **e != 0);
    for (&e, c) in failed_cts {
        error!("commit-create: {}", std::io::Error::from_raw_os_error(e));
        error!("{}", tuple_text(&c.orig));
    }
    let failed_exps = exps.iter().zip(&plan.exps).filter(|(e, _)| **e != 0);
    for (&e, x) in failed_exps {
        error!("commit-create: {}", std::io::Error::from_raw_os_error(e));
        error!("{}", tuple_text(&x.tuple));
    }
}
