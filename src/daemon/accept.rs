//! Accepting control connections fairly.
//!
//! Each accepted connection gets a reader task with its own deadline
//! (started at accept, [`server::READ_DEADLINE`]). At most
//! [`MAX_PENDING_CLIENTS`] may be waiting for their request at once. When
//! one more arrives, the *oldest* connection still waiting is closed to
//! make room: a client that keeps many idle connections open only ever
//! evicts its own stale ones, while an operator's `-s`, which sends its
//! request at once, is read long before it becomes the oldest. Refusing
//! the newcomer instead (as before) let 33 idle connections lock the
//! operator out for as long as they were reopened.
//!
//! A conntrackd client's connection, once its request is read, becomes a
//! relay task (`conntrackds_client`), detached like the others: it lives
//! as long as its answer, and what it holds is held in the reply budget.
//!
//! A failed `accept` pauses the loop (see [`ACCEPT_BACKOFF`]) and is
//! warned about at most once a minute (`throttle`); out of file
//! descriptors, the oldest idle connection is closed first, as when too
//! many wait.

use std::cell::Cell;
use std::collections::VecDeque;
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::channel::Sender;
use smol::{Async, LocalExecutor, Task, Timer};

use super::Event;
use super::reply_budget::ReplyBudget;
use super::throttle::Throttle;
use crate::control::{conntrackd, server};

/// Most connections that may be waiting for their request at once.
pub(crate) const MAX_PENDING_CLIENTS: usize = 32;

/// The pause after a failed `accept`. Out of file descriptors (EMFILE,
/// ENFILE) `accept` fails at once and the connection stays queued, so
/// the listener stays ready: without a pause the loop retried forever
/// and the executor, the daemon's only thread, ran nothing else again,
/// not even the readers' deadlines that would have freed descriptors
/// (100 % CPU, replication stopped, for good).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// After closing an idle connection to free a descriptor: long enough
/// for its cancelled task to be dropped (and the descriptor closed)
/// before the next try, so one failure closes one connection.
const EVICTED_BACKOFF: Duration = Duration::from_millis(10);

/// A connection whose reader task has not yet delivered an event.
struct Pending {
    /// Cleared by the task once the request is read (or failed): from then
    /// on the connection holds an answer to give and is never evicted.
    reading: Rc<Cell<bool>>,
    /// Dropping it cancels the task and closes the connection.
    task: Task<()>,
}

/// Accepts control connections forever and hands each request (or read
/// failure) to the main loop through `tx`.
pub(crate) async fn accept_loop<'a>(
    ex: &LocalExecutor<'a>,
    listener: Async<UnixListener>,
    tx: Sender<Event>,
    budget: Rc<ReplyBudget>,
) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut failures = Throttle::default();
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                match failures.failed(Instant::now()) {
                    Some(1) => log::warn!(
                        "cannot accept on the UNIX socket: {e}; retrying"
                    ),
                    Some(n) => log::warn!(
                        "cannot accept on the UNIX socket: {e} ({n} failures since the last report); retrying"
                    ),
                    None => {}
                }
                settle(&mut pending);
                let evicted = out_of_descriptors(&e)
                    && pending.pop_front().map(|p| drop(p.task)).is_some();
                if evicted {
                    counted(&tx);
                }
                let pause = if evicted {
                    EVICTED_BACKOFF
                } else {
                    ACCEPT_BACKOFF
                };
                Timer::after(pause).await;
                continue;
            }
        };
        settle(&mut pending);
        if pending.len() >= MAX_PENDING_CLIENTS
            && let Some(oldest) = pending.pop_front()
        {
            log::debug!("control: closing the oldest idle connection");
            drop(oldest.task);
            counted(&tx);
        }
        let reading = Rc::new(Cell::new(true));
        let (tx, done) = (tx.clone(), reading.clone());
        let budget = budget.clone();
        let task = ex.spawn(async move {
            let ev = match server::read_request(&mut stream).await {
                Ok(req) => Event::Request(req, stream),
                Err(server::ReadError::Conntrackd(code)) => {
                    done.set(false);
                    conntrackds_client(code, stream, &tx, &budget).await;
                    return;
                }
                Err(e) => Event::Malformed(e.to_string(), stream),
            };
            done.set(false);
            let _ = tx.send(ev).await;
        });
        pending.push_back(Pending { reading, task });
        // Let the new reader run before the next accept: a burst of
        // clients that send their requests at once (100 scripts asking
        // together) is then read, not evicted by its own later members.
        smol::future::yield_now().await;
    }
}

/// Serves conntrackd's client (a notify script still calling its binary,
/// monitoring that speaks its protocol): the daemon answers the request
/// into a socket pair, and this task relays the text of the answer, as
/// conntrackd writes it, and closes.
async fn conntrackds_client(
    code: u8,
    stream: Async<UnixStream>,
    tx: &Sender<Event>,
    budget: &Rc<ReplyBudget>,
) {
    let Some(req) = conntrackd::request(code) else {
        // conntrackd takes an unknown code as nothing to do: the client
        // sees the connection close, and exits 0.
        log::warn!("control: {}", server::ReadError::Conntrackd(code));
        return;
    };
    log::debug!(
        "control: conntrackd's client asks {} (request {code})",
        conntrackd::command(code)
    );
    let (daemon_side, relay_side) = match conntrackd::pair() {
        Ok(p) => p,
        Err(e) => {
            log::warn!("control: cannot answer conntrackd's client: {e}");
            return;
        }
    };
    if tx.send(Event::Request(req, daemon_side)).await.is_ok() {
        conntrackd::relay(relay_side, stream, code, budget).await;
    }
}

/// Has the main loop count a connection closed before its request came,
/// as one that timed out is (it was closed without a trace). Not waited
/// for: the accept loop must go on; a main loop 32 events behind loses
/// the count.
fn counted(tx: &Sender<Event>) {
    let _ = tx.try_send(Event::Evicted);
}

/// The per-process or system-wide descriptor table is full.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    let raw = e.raw_os_error();
    raw == Some(rustix::io::Errno::MFILE.raw_os_error())
        || raw == Some(rustix::io::Errno::NFILE.raw_os_error())
}

/// Lets go of the connections that are no longer waiting for a request:
/// their tasks run on, detached, until the main loop takes their event.
fn settle(pending: &mut VecDeque<Pending>) {
    let mut i = 0;
    while i < pending.len() {
        if pending[i].reading.get() {
            i += 1;
        } else if let Some(p) = pending.remove(i) {
            p.task.detach();
        }
    }
}
