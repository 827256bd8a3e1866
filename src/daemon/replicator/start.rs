//! The loop's start: the key files read (a refused one stops the start
//! before anything is opened), the kernel sockets, the worker and the
//! links opened, the node made with a fresh session id, nonce seed and
//! sealing epoch, and its start-up jobs (the kernel table's load) run to
//! their end before the daemon is ready.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use async_signal::Signals;

use super::{Replicator, peer_pacing};
use crate::channel::Channels;
use crate::config::Config;
use crate::daemon::deadline::{Deadline, ReadPause};
use crate::daemon::kernel;
use crate::daemon::keyfile;
use crate::daemon::link_watch::LinkWatch;
use crate::daemon::reply_budget::ReplyBudget;
use crate::daemon::worker::{self, Worker};
use crate::daemon::{Clock, Error};
use crate::node::{Input, Node, Outbox};
use crate::wire::seal::{EPOCH_LEN, Sealer};

impl Replicator {
    /// Opens the kernel sockets, starts the worker, opens the links and
    /// loads the kernel table (waiting for it: the daemon is not ready
    /// before). None when SIGTERM or SIGINT came meanwhile: the start
    /// ends there, as a stop (see [`Replicator::start_up`]).
    pub(crate) async fn start(
        cfg: &Config,
        clock: Clock,
        budget: Rc<ReplyBudget>,
        signals: &mut Signals,
    ) -> Result<Option<Replicator>, Error> {
        let sync = cfg.sync.as_ref().ok_or(Error::NoSync)?;
        // A refused key file stops the start before anything is opened.
        let keys =
            keyfile::read_all(&sync.authentication_keys).map_err(Error::Key)?;
        let (events, sockets) = kernel::open(cfg)?;
        let worker =
            Worker::start(sockets).map_err(|e| Error::Worker(Some(e)))?;
        let channels = Channels::open(sync).map_err(Error::Link)?;
        let link_watch =
            LinkWatch::start(sync.channels.clone()).map_err(|e| {
                Error::Link(io::Error::new(
                    e.kind(),
                    format!("can't start the link check: {e}"),
                ))
            })?;
        // Session id, nonce seed and sealing epoch: fresh per start.
        let mut random = [0u8; 4 + 8 + EPOCH_LEN];
        keyfile::fill_random(&mut random).map_err(Error::Random)?;
        let (s, rest) = random.split_at(4);
        let (seed, epoch) = rest.split_at(8);
        let s: [u8; 4] = s.try_into().unwrap_or_default();
        let seed: [u8; 8] = seed.try_into().unwrap_or_default();
        let epoch: [u8; EPOCH_LEN] = epoch.try_into().unwrap_or_default();
        let now = clock.now();
        let mut node = Node::new(
            cfg.clone(),
            u32::from_ne_bytes(s),
            u64::from_ne_bytes(seed),
            channels.max_datagram(),
            events.socket.buffer_size(),
            now,
        );
        if let Some(sealer) = Sealer::new(&keys, epoch) {
            node.set_sealer(sealer);
        }
        let mut rep = Replicator {
            node,
            events,
            done: Box::pin(worker.done.clone()),
            worker,
            channels,
            link_reports: Box::pin(link_watch.reports.clone()),
            link_watch,
            clients: HashMap::new(),
            budget,
            written: {
                let (tx, rx) = smol::channel::unbounded();
                (tx, Box::pin(rx))
            },
            next_client: 0,
            rx_buf: vec![0; 65_536],
            events_empty: false,
            gather: ReadPause::new(),
            peer: peer_pacing::PeerPacing::new(),
            timer: Deadline::new(),
            timer_at: None,
            busy: false,
        };
        let out = rep.node.start(now);
        Ok(rep.start_up(clock, out, signals).await?.then_some(rep))
    }

    /// Runs the start-up jobs to their end before the daemon is ready;
    /// false when a stop signal came first. The signals are watched
    /// meanwhile: the load of a big table on a slow router takes minutes,
    /// and a stop asked for then (systemd's, keepalived's restart) was
    /// once read only after it, so systemd's SIGKILL at its stop timeout
    /// left the lock file behind and the next start was refused.
    async fn start_up(
        &mut self,
        clock: Clock,
        out: Outbox,
        signals: &mut Signals,
    ) -> Result<bool, Error> {
        let mut out = out;
        let mut pending = 0usize;
        loop {
            for job in std::mem::take(&mut out.jobs) {
                self.worker
                    .submit(job)
                    .map_err(|c| Error::KernelTable(format!("{:?}", c.done)))?;
                pending += 1;
            }
            self.emit(out);
            if pending == 0 {
                return Ok(true);
            }
            let next = worker::completion_or_stop(&self.worker.done, signals);
            let Some(c) = next.await else {
                return Ok(false);
            };
            let c = c?;
            if worker::is_final(&c.done) {
                pending -= 1;
            }
            if let crate::node::Done::Failed(why) = &c.done {
                return Err(Error::KernelTable(why.clone()));
            }
            out = self.node.handle(clock.now(), Input::Job(c));
        }
    }
}
