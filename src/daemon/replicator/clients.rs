//! The loop's control clients: a request handed to the node (a dump
//! refused before it is built when the reply budget is spent), and the
//! replies written back without ever stalling the loop: a small whole
//! answer at once, anything else by a writer task per client within the
//! reply budget, a dump paced by its client's reading.

use std::os::unix::net::UnixStream;

use smol::{Async, LocalExecutor};

use super::Replicator;
use crate::control::proto::{Reply, Request};
use crate::daemon::Clock;
use crate::daemon::reply_budget::Held;
use crate::daemon::reply_writer::{
    AtOnce, Writer, finish_later, write_at_once,
};
use crate::node::{ClientId, Input, LinkView};

/// A control connection: waiting for its first reply, or handed to a
/// writer task that sends the replies in order.
pub(super) enum Client {
    Waiting(Async<UnixStream>),
    Writing(Writer),
}

impl Replicator {
    pub(super) fn client(&mut self, stream: Async<UnixStream>) -> ClientId {
        let id = self.next_client;
        self.next_client += 1;
        self.clients.insert(id, Client::Waiting(stream));
        id
    }

    fn link_views(&self) -> Vec<LinkView> {
        let current = self.channels.current();
        self.channels
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| LinkView {
                kind: l.kind(),
                interface: l.interface_name().to_string(),
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
                error_queue: l.unsent(),
                error_queue_full: l.dropped(),
                // Refusals of sealed traffic are the node's to count.
                ..LinkView::default()
            })
            .collect()
    }

    pub(super) async fn request(
        &mut self,
        ex: &LocalExecutor<'_>,
        clock: Clock,
        client: ClientId,
        request: Request,
    ) -> bool {
        // A dump would only be built to be refused: refuse it first.
        if matches!(request, Request::Dump { .. })
            && self.budget.full_for_another(self.node.dumps_pending())
        {
            let refusal = self.budget.refusal();
            self.reply(ex, vec![(client, refusal)]);
            return false;
        }
        let links = self.link_views();
        let out = self.node.handle(
            clock.now(),
            Input::Control {
                client,
                request,
                links: &links,
                control: self.budget.loop_view(),
            },
        );
        self.apply(ex, clock, out).await
    }

    /// Hands replies to each client's writer (a slow client never stalls
    /// the loop); a `Done` is a client's last frame.
    pub(super) fn reply(
        &mut self,
        ex: &LocalExecutor<'_>,
        replies: Vec<(ClientId, Reply)>,
    ) {
        let replies = self.answer_at_once(ex, replies);
        for (id, r) in replies {
            let Some(client) = self.clients.remove(&id) else {
                // A part for a client that left or was refused: its dump
                // stops here.
                self.node.client_gone(id);
                continue;
            };
            let (r, held, refused) = match self.budget.hold(&r) {
                Some(held) => (r, held, false),
                None => {
                    (self.budget.refusal(), Held::nothing(&self.budget), true)
                }
            };
            let last = matches!(r, Reply::Done(_));
            let w = match client {
                Client::Writing(w) => w,
                Client::Waiting(stream) => {
                    Writer::start(ex, id, stream, self.written.0.clone())
                }
            };
            if !w.send(r, held) || refused {
                self.node.client_gone(id);
            } else if !last {
                self.node.dump_paced(id, w.behind());
                self.clients.insert(id, Client::Writing(w));
            }
        }
        self.budget.set_wanted(self.node.dumps_waiting());
    }

    /// Writes the answers that are whole in `replies` (up to their
    /// `Done`) and small, for clients that have had no reply yet, at once
    /// (`reply_writer::write_at_once`); returns the other replies.
    fn answer_at_once(
        &mut self,
        ex: &LocalExecutor<'_>,
        mut replies: Vec<(ClientId, Reply)>,
    ) -> Vec<(ClientId, Reply)> {
        let whole: Vec<ClientId> = replies
            .iter()
            .filter(|(id, r)| {
                matches!(r, Reply::Done(_))
                    && matches!(self.clients.get(id), Some(Client::Waiting(_)))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in whole {
            let Some(Client::Waiting(stream)) = self.clients.get(&id) else {
                continue;
            };
            let frames = replies.iter().filter(|(i, _)| *i == id);
            let done = match write_at_once(stream, frames.map(|(_, r)| r)) {
                AtOnce::NotNow => continue,
                AtOnce::Written => true,
                AtOnce::Failed => false,
                AtOnce::Partial(rest) => {
                    let held = self.budget.hold_bytes(rest.len());
                    if let (Some(held), Some(Client::Waiting(stream))) =
                        (held, self.clients.remove(&id))
                    {
                        finish_later(ex, stream, rest, held);
                    }
                    true
                }
            };
            // Dropped here (closed) unless `finish_later` took it.
            self.clients.remove(&id);
            replies.retain(|(i, _)| *i != id);
            if !done {
                self.node.client_gone(id);
            }
        }
        replies
    }

    /// A client's writer moved on: its dump resumes once the client has
    /// room for the next part, or stops when the client is gone.
    pub(super) fn paced(&mut self, id: ClientId) {
        match self.clients.get(&id) {
            Some(Client::Writing(w)) if w.gone() => {
                self.clients.remove(&id);
                self.node.client_gone(id);
            }
            Some(Client::Writing(w)) => self.node.dump_paced(id, w.behind()),
            _ => self.node.client_gone(id),
        }
        self.budget.set_wanted(self.node.dumps_waiting());
    }
}
