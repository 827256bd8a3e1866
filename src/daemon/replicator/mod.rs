//! The event loop of a synchronising daemon: it moves bytes and runs jobs.
//!
//! ```text
//!  kernel events ──┐                         ┌─► Channels::send ──► peer
//!  peer datagrams ─┤                         ├─► worker: kernel jobs
//!  control requests┼─► Node::handle(Input) ──┼─► reply writers
//!  job completions ┤        (sans-IO)        └─► log records
//!  Node::poll_at ──┘
//! ```
//!
//! One owner, no locks: every input is handled to completion here, and
//! nothing here waits on the kernel: dumps, flushes, commits and
//! injections run in the kernel worker ([`super::worker`]), so replication,
//! `-s` and the notify script's requests are served while a 200 000-entry
//! dump or flush runs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;

use smol::LocalExecutor;
use smol::channel::{Receiver, Sender};
use smol::future::{self, FutureExt as _};
use smol::stream::StreamExt as _;

use super::deadline::{Deadline, ReadPause};
use super::kernel::Events;
use super::link_watch::{LinkWatch, Report};
use super::reply_budget::ReplyBudget;
use super::worker::Worker;
use super::{Clock, Event};
use crate::channel::Channels;
use crate::control::server;
use crate::kernel::pacing::AfterDrain;
use crate::node::{ClientId, Completion, Input, Node, Outbox};
use crate::time::Instant;

mod clients;
mod peer_pacing;
mod reads;
mod start;

use clients::Client;

/// Datagrams read per wake-up when more are queued: one wake-up (one
/// poll of the reactor) then serves a burst, while the event socket still
/// gets its turn after at most this many.
const PEER_BATCH: usize = 64;

pub(crate) struct Replicator {
    node: Node,
    events: Events,
    worker: Worker,
    channels: Channels,
    /// The links' interfaces are read, and a link whose interface was
    /// created again is opened again, on its thread: the loop never asks
    /// rtnetlink.
    link_watch: LinkWatch,
    /// Its reports (the same channel as `link_watch.reports`).
    link_reports: Stream<Report>,
    clients: HashMap<ClientId, Client>,
    /// What the replies waiting in writers may hold together.
    budget: Rc<ReplyBudget>,
    /// Writers name their client here after each part written and when
    /// they end: the node's dumps are paced by it.
    written: (Sender<ClientId>, Stream<ClientId>),
    /// The worker's completions (the same channel as `worker.done`).
    done: Stream<Completion>,
    next_client: ClientId,
    rx_buf: Vec<u8>,
    /// The last read of the event socket found it empty: it is read
    /// again once it is readable, not on every turn.
    events_empty: bool,
    /// The event socket's next read during a burst (see
    /// `kernel::pacing`), waited on like any input, not slept: a loop
    /// thread that blocks gives the reactor to async-io's helper thread
    /// within 50 µs, and the wake-ups after it went through both threads
    /// (the helper's `epoll_wait`, then a futex wake of this one), two
    /// real-time threads on two cores. Waited on, the helper woke a
    /// median of 97 times in a burst of 30 000 events instead of 248, and
    /// the lossy bench's sender took 7 % less CPU
    /// (`results/wave12-1-gather.md`).
    ///
    /// While it is under way the node's deadlines wait too (those due
    /// run between a burst's reads), as the burst's next events would
    /// otherwise find its datagram just sent and a probe after it (a
    /// blocking pause held them by holding the whole loop). The sync link
    /// and the control socket are served meanwhile.
    gather: ReadPause,
    /// One timer for the node's next deadline, moved only when the
    /// deadline comes earlier (a new timer per turn cost the reactor a
    /// timer insertion and removal every time).
    timer: Deadline,
    /// When `timer` fires (None: not set, or fired); at or before the
    /// node's next deadline.
    timer_at: Option<Instant>,
    /// The last wait found something ready at once (the loop is busy).
    busy: bool,
    /// The sync links' reads during a conntrackd peer's burst
    /// (`peer_pacing`).
    peer: peer_pacing::PeerPacing,
}

/// A channel's receiving end waited on as a stream: its listener is kept
/// from one turn to the next instead of being made and dropped each time.
type Stream<T> = Pin<Box<Receiver<T>>>;

/// What woke the loop.
enum Wake {
    Control(Option<Event>),
    /// The event socket has something to read (the next turn reads it).
    Kernel,
    Peer(usize, usize, SocketAddr),
    /// A conntrackd peer's burst: the links' next read is due.
    PeerTick,
    Tick,
    /// A kernel job finished or delivered a part (None: the worker died).
    Job(Option<Completion>),
    /// A client's writer wrote a part or ended.
    Written(ClientId),
    /// The link check's thread reported (None: it died).
    Links(Option<Report>),
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
    pub(crate) async fn run(
        &mut self,
        ex: &LocalExecutor<'_>,
        rx: &Receiver<Event>,
        clock: Clock,
    ) {
        let mut rx: Stream<Event> = Box::pin(rx.clone());
        loop {
            // Under a flood of kernel events every wait() is ready at once;
            // without this the executor never runs the control socket's
            // reader and writer tasks, and `-s` stalls until the flood ends.
            // Only after a turn whose wait found something ready at once:
            // a wait that blocked let those tasks run, and each yield costs
            // a poll of the reactor.
            if self.busy {
                future::yield_now().await;
            }
            // The event socket before anything else: a burst must be read
            // before it fills the socket's buffer, not after a backlog of
            // datagrams and requests. (Not again right after a read that
            // found it empty: that would cost a system call per event.)
            if !self.events_empty && !self.gather.is_on() {
                if self.drain_kernel(ex, clock).await {
                    break;
                }
                // Read empty: during a burst the next read comes on a
                // timer, else when the socket is readable.
                let drained = self
                    .events_empty
                    .then(|| self.events.socket.drained(clock.now()));
                match drained {
                    Some(AfterDrain::Pause(pause)) => {
                        self.gather.start(pause);
                        // The node's deadlines wait out a pause, but not
                        // a whole burst of pauses: those due run between
                        // reads (the burst's transmit rule is not among
                        // them, as the read just gave it news).
                        if self.next_deadline() <= clock.now()
                            && self.tick(ex, clock).await
                        {
                            break;
                        }
                    }
                    // An isolated event, or a burst's end: what waits
                    // leaves now, not at a wake-up of its own.
                    Some(AfterDrain::Paused) => {
                        let out =
                            self.node.handle(clock.now(), Input::EventsPaused);
                        if self.apply(ex, clock, out).await {
                            break;
                        }
                    }
                    Some(AfterDrain::Backlog) | None => {}
                }
                // A drain that stopped at EventIterationLimit leaves the
                // event socket's branch of `wait` ready at once, and it is
                // polled before the peer's: under a backlog of events the
                // peer's datagrams (its challenge, ACKs and NACKs) waited
                // for the backlog's end: in a flood read one event per
                // turn, fw-1 read nothing of fw-2 and held 33 000–80 000
                // entries unacknowledged (`tests/loop_fairness.rs`). They get a
                // turn after each such drain (one `recvfrom` per
                // EventIterationLimit events).
                if !self.events_empty && self.peer_turn(ex, clock).await {
                    break;
                }
            }
            let wake = {
                let mut wait = std::pin::pin!(self.wait(&mut rx, clock));
                match future::poll_once(wait.as_mut()).await {
                    Some(wake) => (wake, true),
                    None => (wait.await, false),
                }
            };
            self.busy = wake.1;
            let shutdown = match wake.0 {
                Wake::Control(None) | Wake::Control(Some(Event::Signal)) => {
                    break;
                }
                // Counted by the node as a bad request whose answer has
                // nobody to go to.
                Wake::Control(Some(Event::Evicted)) => {
                    let client = self.next_client;
                    self.next_client += 1;
                    let why = "closed before its request, to make room".into();
                    self.input(ex, clock, Input::BadControl { client, why })
                        .await
                }
                Wake::Control(Some(Event::Malformed(why, stream))) => {
                    let client = self.client(stream);
                    self.input(ex, clock, Input::BadControl { client, why })
                        .await
                }
                Wake::Control(Some(Event::Request(req, stream))) => {
                    let client = self.client(stream);
                    self.request(ex, clock, client, req).await
                }
                Wake::Kernel => {
                    // The pause is over or the socket became readable:
                    // the next turn reads.
                    self.events_empty = false;
                    self.gather.end();
                    false
                }
                Wake::Peer(link, n, from) => {
                    self.datagrams(ex, clock, (link, n, from)).await
                }
                Wake::PeerTick => {
                    self.peer.tick_due();
                    self.peer_turn(ex, clock).await
                }
                Wake::Tick => self.tick(ex, clock).await,
                Wake::Job(Some(c)) => {
                    self.input(ex, clock, Input::Job(c)).await
                }
                Wake::Job(None) => {
                    log::error!("the kernel worker died; stopping");
                    true
                }
                Wake::Links(Some(report)) => {
                    self.links(report);
                    false
                }
                Wake::Links(None) => {
                    log::error!("the link check's thread died; stopping");
                    true
                }
                Wake::Written(id) => {
                    self.paced(id);
                    while let Ok(id) = self.written.1.try_recv() {
                        self.paced(id);
                    }
                    false
                }
            };
            if shutdown {
                break;
            }
        }
    }

    /// The node's next deadline has come; true to stop.
    async fn tick(&mut self, ex: &LocalExecutor<'_>, clock: Clock) -> bool {
        self.timer_at = None;
        self.input(ex, clock, Input::Timer).await
    }

    /// When [`Replicator::tick`] is due.
    fn next_deadline(&self) -> Instant {
        self.node.poll_at()
    }

    /// What the link check's thread found: the links' status (sending
    /// moves off a link that went down), or a link opened again.
    fn links(&mut self, report: Report) {
        match report {
            Report::Facts(facts) => {
                for i in self.channels.update(facts) {
                    if let Err(e) = self.link_watch.reopen(i) {
                        self.channels.reopened(i, Err(e));
                    }
                }
            }
            Report::Reopened(i, opened) => self.channels.reopened(i, opened),
        }
        self.channels.failover();
        self.node.set_max_datagram(self.channels.max_datagram());
    }

    async fn wait(&mut self, rx: &mut Stream<Event>, clock: Clock) -> Wake {
        let deadline = self.next_deadline();
        // Moved only when the deadline comes earlier (or the timer fired):
        // one that moved later costs at most an early tick, in which the
        // node finds nothing due, instead of a re-arm per input.
        if self.timer_at.is_none_or(|t| deadline < t) {
            self.timer.set_at(clock.at(deadline));
            self.timer_at = Some(deadline);
        }
        let Replicator {
            events,
            done,
            link_reports,
            channels,
            rx_buf,
            written,
            timer,
            events_empty,
            gather,
            peer: peer_pacing,
            ..
        } = self;
        let gathering = gather.is_on();
        // The channels as streams (see `run`).
        let control = async { Wake::Control(rx.next().await) };
        // The turn began by reading the event socket: wait until it has
        // more (without a read that finds it empty each turn), or come
        // back at once when that read stopped at EventIterationLimit.
        let kernel = async {
            if let Some(pause) = gather.timer() {
                pause.fired().await;
            } else if *events_empty {
                // An error is the next read's to report.
                let _ = events.socket.readable().await;
            }
            Wake::Kernel
        };
        let peer = async {
            if let Some(tick) = peer_pacing.pause() {
                tick.fired().await;
                return Wake::PeerTick;
            }
            let (link, n, from) = channels.recv(rx_buf).await;
            Wake::Peer(link, n, from)
        };
        let timer = async {
            if gathering {
                future::pending::<()>().await;
            }
            timer.fired().await;
            Wake::Tick
        };
        let job = async { Wake::Job(done.next().await) };
        let links = async { Wake::Links(link_reports.next().await) };
        let written = async {
            match written.1.next().await {
                Some(id) => Wake::Written(id),
                None => future::pending().await,
            }
        };
        // Polled in this order when several are ready: the end of a commit
        // is answered at once, not after the backlog of events the commit
        // itself caused (those only update the internal cache).
        // The links' reports before the event socket: under a flood of
        // events they would wait for its end, and a failover with them.
        control
            .or(job)
            .or(written)
            .or(links)
            .or(kernel)
            .or(peer)
            .or(timer)
            .await
    }

    async fn input(
        &mut self,
        ex: &LocalExecutor<'_>,
        clock: Clock,
        input: Input<'_>,
    ) -> bool {
        let out = self.node.handle(clock.now(), input);
        self.apply(ex, clock, out).await
    }

    /// Writes the logs and sends the datagrams at once; runs the jobs and
    /// replies. Returns true to stop.
    async fn apply(
        &mut self,
        ex: &LocalExecutor<'_>,
        clock: Clock,
        out: Outbox,
    ) -> bool {
        let mut out = out;
        loop {
            let shutdown = out.shutdown;
            let jobs = std::mem::take(&mut out.jobs);
            let replies = std::mem::take(&mut out.replies);
            self.emit(out);
            if shutdown {
                // The last replies (`-k`'s) are written before the loop
                // ends.
                for (id, r) in replies {
                    if let Some(Client::Waiting(mut s)) =
                        self.clients.remove(&id)
                    {
                        let _ = server::write_replies(&mut s, &[r]).await;
                    }
                }
                return true;
            }
            self.reply(ex, replies);
            // A job the worker cannot take comes straight back as failed.
            let refused: Vec<Completion> = jobs
                .into_iter()
                .filter_map(|j| self.worker.submit(j).err())
                .collect();
            if refused.is_empty() {
                return false;
            }
            let mut next = Outbox::default();
            for c in refused {
                let o = self.node.handle(clock.now(), Input::Job(c));
                next.merge(o);
            }
            out = next;
        }
    }

    /// The parts of an outbox that need no waiting.
    fn emit(&mut self, out: Outbox) {
        for l in out.logs {
            if l.entry {
                let target = crate::logging::ENTRY;
                log::log!(target: target, l.level, "{}", l.text);
            } else {
                log::log!(l.level, "{}", l.text);
            }
        }
        // Before the jobs are handed to the worker: a commit must not
        // start while the socket still listens, nor the resync that
        // follows it dump before the socket listens again.
        if let Some(on) = out.new_events
            && let Err(e) = self.events.socket.set_new_events(on)
        {
            let what = if on { "join" } else { "leave" };
            log::error!("cannot {what} the conntrack NEW event group: {e}");
        }
        if let Some(link) = out.follow_link {
            self.channels.set_current(link);
            self.node.set_max_datagram(self.channels.max_datagram());
        }
        for d in &out.datagrams {
            self.channels.send(d);
        }
        let release = out.release_memory;
        // The datagrams first: a bulk's are megabytes.
        drop(out.datagrams);
        if release {
            super::trim::release_free_memory();
        }
    }
}
