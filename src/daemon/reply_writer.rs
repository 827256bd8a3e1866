//! One task per control client that writes its replies in order.
//!
//! The writer also tells the loop how far behind its client is: a dump is
//! rendered a part at a time, and the node must not render parts faster
//! than the client reads them (each waiting part holds reply budget; a
//! 200 000-entry dump rendered ahead of a client filled the budget and
//! refused the dump half way, and the next `-e` with it). After each
//! part written, and when the client is gone, the writer names its
//! client on the loop's `written` channel.

use std::cell::Cell;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use smol::channel::Sender;
use smol::{Async, LocalExecutor};

use super::reply_budget::Held;
use crate::control::proto::Reply;
use crate::control::server;
use crate::node::ClientId;

/// Data parts a client may have waiting before its dump pauses: one
/// being written and one ready behind it.
pub(crate) const PARTS_AHEAD: usize = 2;

/// The loop's end of a client's writer task.
pub(crate) struct Writer {
    tx: Sender<(Reply, Held)>,
    /// Data replies handed over and not yet written.
    behind: Rc<Cell<usize>>,
}

impl Writer {
    /// Starts the task that writes `stream`'s replies and then closes it.
    /// Each reply gives its bytes back to the budget once written; a
    /// client that stops reading gives back all it still has queued.
    pub(crate) fn start(
        ex: &LocalExecutor<'_>,
        id: ClientId,
        mut stream: Async<UnixStream>,
        written: Sender<ClientId>,
    ) -> Writer {
        let (tx, rx) = smol::channel::unbounded::<(Reply, Held)>();
        let behind = Rc::new(Cell::new(0usize));
        let count = behind.clone();
        ex.spawn(async move {
            while let Ok((r, held)) = rx.recv().await {
                let last = matches!(r, Reply::Done(_));
                let failed =
                    server::write_replies(&mut stream, &[r]).await.is_err();
                drop(held);
                if !last {
                    count.set(count.get().saturating_sub(1));
                }
                if failed || last {
                    break;
                }
                let _ = written.try_send(id);
            }
            rx.close();
            while rx.try_recv().is_ok() {}
            count.set(0);
            let _ = written.try_send(id);
        })
        .detach();
        Writer { tx, behind }
    }

    /// Queues a reply; false when the client is gone.
    pub(crate) fn send(&self, r: Reply, held: Held) -> bool {
        let data = !matches!(r, Reply::Done(_));
        if self.tx.try_send((r, held)).is_err() {
            return false;
        }
        if data {
            self.behind.set(self.behind.get() + 1);
        }
        true
    }

    /// Whether the client has as many parts waiting as it may.
    pub(crate) fn behind(&self) -> bool {
        self.behind.get() >= PARTS_AHEAD
    }

    /// Whether the task has ended (the client left or was dropped).
    pub(crate) fn gone(&self) -> bool {
        self.tx.is_closed()
    }
}
