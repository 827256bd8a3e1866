//! The loop's reads: the peer's datagrams and the kernel's events, as
//! many as are queued per wake-up (bounded), each handed to the node and
//! its outbox applied.

use std::net::SocketAddr;

use smol::LocalExecutor;

use super::{PEER_BATCH, Replicator, peer_id};
use crate::daemon::Clock;
use crate::kernel::codec::{self, Received};
use crate::kernel::events::EventRead;
use crate::node::Input;

impl Replicator {
    /// The datagram that woke the loop, then those queued behind it (at
    /// most [`PEER_BATCH`] in all); true to stop.
    pub(super) async fn datagrams(
        &mut self,
        ex: &LocalExecutor<'_>,
        clock: Clock,
        first: (usize, usize, SocketAddr),
    ) -> bool {
        let mut next = Some(first);
        let mut read = 0;
        while let Some((link, n, from)) = next.take() {
            let out = self.node.handle(
                clock.now(),
                Input::Datagram {
                    link,
                    peer: peer_id(&from),
                    bytes: &self.rx_buf[..n],
                },
            );
            if self.apply(ex, clock, out).await {
                return true;
            }
            read += 1;
            if read < PEER_BATCH {
                next = self.queued_datagram().await;
            }
        }
        // Read empty (not stopped at the bound): when to read next.
        if read < PEER_BATCH {
            let per_event = self.node.peer_sends_per_event()
                && self.channels.datagrams_only();
            self.peer.drained(read, per_event, clock.now());
        }
        false
    }

    /// The peer's datagrams queued now, if any (at most [`PEER_BATCH`]),
    /// without waiting; true to stop.
    pub(super) async fn peer_turn(
        &mut self,
        ex: &LocalExecutor<'_>,
        clock: Clock,
    ) -> bool {
        match self.queued_datagram().await {
            Some(first) => self.datagrams(ex, clock, first).await,
            None => false,
        }
    }

    /// A datagram queued now on any link, without waiting. UDP links are
    /// read directly; a TCP link only through `poll_recv`, which also
    /// drives its connects, accepts and writes: left to the wait, a TCP
    /// peer was not read (nor reconnected) for as long as a backlog of
    /// events lasted. Polled once, it returns at once.
    async fn queued_datagram(&mut self) -> Option<(usize, usize, SocketAddr)> {
        if let Some(d) = self.channels.try_recv(&mut self.rx_buf) {
            return Some(d);
        }
        if self.channels.datagrams_only() {
            return None;
        }
        smol::future::poll_once(self.channels.recv(&mut self.rx_buf)).await
    }

    /// Whatever the event socket holds now (at most EventIterationLimit
    /// reads); true to stop.
    pub(super) async fn drain_kernel(
        &mut self,
        ex: &LocalExecutor<'_>,
        clock: Clock,
    ) -> bool {
        match self.events.socket.try_recv() {
            Ok(None) => {
                self.events_empty = true;
                false
            }
            Ok(Some(r)) => self.kernel_events(ex, clock, Ok(r)).await,
            Err(e) => self.kernel_events(ex, clock, Err(e)).await,
        }
    }

    async fn kernel_events(
        &mut self,
        ex: &LocalExecutor<'_>,
        clock: Clock,
        first: std::io::Result<EventRead>,
    ) -> bool {
        let limit = self.node.config().general.event_iteration_limit.max(1);
        let mut next = Some(first);
        let mut handled = 0;
        let mut shutdown = false;
        while let Some(r) = next.take() {
            let now = clock.now();
            match r {
                Ok(EventRead::Data(n)) => {
                    let mut outs = Vec::new();
                    for m in codec::messages(self.events.socket.received(n)) {
                        let input = match m {
                            Ok(Received::Msg(m)) => {
                                let origin =
                                    self.events.origins.classify(m.port);
                                Input::Kernel(m, origin)
                            }
                            Ok(_) => continue,
                            Err(_) => Input::KernelUndecodable,
                        };
                        let out = self.node.handle(now, input);
                        if !out.is_empty() {
                            outs.push(out);
                        }
                    }
                    for out in outs {
                        shutdown |= self.apply(ex, clock, out).await;
                    }
                }
                Ok(EventRead::Overrun { .. }) => {
                    let buffer = self.events.socket.buffer_size();
                    let out = self.node.handle(now, Input::Overrun { buffer });
                    shutdown |= self.apply(ex, clock, out).await;
                }
                Err(_) => {
                    let out = self.node.handle(now, Input::KernelReadFailed);
                    shutdown |= self.apply(ex, clock, out).await;
                }
            }
            handled += 1;
            if handled < limit {
                next = self.events.socket.try_recv().transpose();
                self.events_empty = next.is_none();
            }
        }
        shutdown
    }
}
