//! One task per control client that writes its replies in order, and
//! the short way for a small answer that is whole at once.
//!
//! The writer also tells the loop how far behind its client is: a dump is
//! rendered a part at a time, and the node must not render parts faster
//! than the client reads them (each waiting part holds reply budget; a
//! 200 000-entry dump rendered ahead of a client filled the budget and
//! refused the dump half way, and the next `-e` with it). After each
//! part written, and when the client is gone, the writer names its
//! client on the loop's `written` channel.
//!
//! A client that stops reading (`-i | less` on its first page, a script
//! that takes its time over each line) is waited for, as conntrackd
//! waits: paced, it holds a couple of parts. It is dropped past the
//! stall deadlines only when the budget is pressed (`ReplyBudget::
//! pressed`: over half held, or a dump waiting for the place it holds);
//! it used to be dropped after 5 s whatever, and the reader found its
//! dump cut short.

use std::cell::Cell;
use std::io::{ErrorKind, Write as _};
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
                // A slow reader is waited for unless the budget is needed.
                let budget = held.budget().clone();
                let patient = move || !budget.pressed();
                let wrote = server::write_replies_unless(
                    &mut stream,
                    &[r],
                    Some(&patient),
                )
                .await;
                if let Err(e) = &wrote {
                    held.budget().count_dropped(e);
                }
                let failed = wrote.is_err();
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

/// Largest answer written at once ([`write_at_once`]): far below a UNIX
/// socket's send buffer, so that on a new connection the write is whole.
pub(crate) const AT_ONCE_MAX: usize = 16 * 1024;

/// What [`write_at_once`] did.
#[derive(Debug)]
pub(crate) enum AtOnce {
    /// All of it is written; dropping the stream ends the answer.
    Written,
    /// Only the start went out: the rest must still be written.
    Partial(Vec<u8>),
    /// Nothing went out: the writer task must write it all.
    NotNow,
    /// The client is gone.
    Failed,
}

/// Writes a whole answer (its frames, `replies` up to the last `Done`)
/// to a client that has had none yet, in the loop, without a writer task:
/// a `-s` then costs one `write` where a task cost a spawn, two wake-ups
/// of the executor and a channel (about a third of its latency on an
/// idle daemon). Answers past [`AT_ONCE_MAX`] go through the task.
pub(crate) fn write_at_once<'r>(
    stream: &Async<UnixStream>,
    replies: impl Iterator<Item = &'r Reply>,
) -> AtOnce {
    let mut bytes = Vec::new();
    for r in replies {
        bytes.extend_from_slice(&crate::control::proto::encode(r));
        if bytes.len() > AT_ONCE_MAX {
            return AtOnce::NotNow;
        }
    }
    // `Write for &UnixStream`: the loop's own handle, non-blocking.
    let mut socket: &UnixStream = stream.get_ref();
    match socket.write(&bytes) {
        Ok(n) if n == bytes.len() => AtOnce::Written,
        Ok(0) => AtOnce::Failed,
        Ok(n) => AtOnce::Partial(bytes.split_off(n)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => AtOnce::NotNow,
        Err(e) if e.kind() == ErrorKind::Interrupted => AtOnce::NotNow,
        Err(_) => AtOnce::Failed,
    }
}

/// Writes what [`write_at_once`] left (a client whose socket was full),
/// holding its bytes against the budget, then closes the connection.
pub(crate) fn finish_later(
    ex: &LocalExecutor<'_>,
    mut stream: Async<UnixStream>,
    rest: Vec<u8>,
    held: Held,
) {
    ex.spawn(async move {
        if let Err(e) = server::write_frame(&mut stream, &rest).await {
            held.budget().count_dropped(&e);
        }
        drop(held);
    })
    .detach();
}

#[cfg(test)]
mod test {
    use std::io::Read as _;

    use super::*;
    use crate::control::proto::{self, Status};
    use crate::daemon::reply_budget::ReplyBudget;

    /// The replies in `bytes`, decoded frame by frame.
    fn frames(mut bytes: &[u8]) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Some((r, used)) = proto::decode(bytes, 1 << 20).unwrap() {
            out.push(r);
            bytes = &bytes[used..];
        }
        assert!(bytes.is_empty(), "a frame cut short");
        out
    }

    fn answer(text: &str) -> Vec<Reply> {
        vec![Reply::Data(text.to_string()), Reply::Done(Status::Ok)]
    }

    /// How the answer reaches the stalled client.
    #[derive(Clone, Copy)]
    enum Path {
        /// A dump's parts through a writer task.
        Parts,
        /// Handed over at once, as a daemon without `Sync` or the flow
        /// logger answers (`daemon::reply_later`).
        Whole,
        /// A writer task into a socket pair, and conntrackd's relay from
        /// there to conntrackd's client, unframed (`daemon::accept`).
        Relayed,
    }

    /// A dump's writer, its client stalled past the stall deadline, then
    /// reading: whether the answer came whole, and the clients the budget
    /// counts as dropped.
    fn stalled_reader_gets_it_all(path: Path, pressed: bool) -> (bool, u64) {
        use std::time::{Duration, Instant};

        use crate::daemon::reply_budget::REPLY_BUDGET;
        let budget = &ReplyBudget::new(REPLY_BUDGET);
        // Most of the budget held elsewhere.
        let _others = pressed.then(|| budget.hold_bytes(REPLY_BUDGET * 3 / 4));
        let (ours, mut client) = UnixStream::pair().unwrap();
        socket2::SockRef::from(&ours)
            .set_send_buffer_size(4096)
            .unwrap();
        let ex = LocalExecutor::new();
        let text = "a line of a dump\n".repeat(20_000);
        let want = answer(&text);
        let ours = Async::new(ours).unwrap();
        let w = if let Path::Whole = path {
            crate::daemon::reply_later(&ex, budget, ours, want.clone());
            None
        } else if let Path::Relayed = path {
            let (daemon_side, relay_side) =
                crate::control::conntrackd::pair().unwrap();
            let (written, _seen) = smol::channel::unbounded();
            let w = Writer::start(&ex, 1, daemon_side, written);
            for r in &want {
                w.send(r.clone(), budget.hold(r).unwrap());
            }
            let room = budget.clone();
            ex.spawn(async move {
                crate::control::conntrackd::relay(relay_side, ours, 24, &room)
                    .await;
            })
            .detach();
            Some(w)
        } else {
            let (written, _seen) = smol::channel::unbounded();
            let w = Writer::start(&ex, 1, ours, written);
            for r in &want {
                w.send(r.clone(), budget.hold(r).unwrap());
            }
            Some(w)
        };
        // `less` on its first page: nothing read for longer than the
        // stall deadline.
        let stall = server::STALL_DEADLINE + Duration::from_secs(1);
        smol::block_on(ex.run(smol::Timer::after(stall)));
        // A reader left without data (its writer's task no longer run)
        // fails the case rather than hanging the test.
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let _ = client.read_to_end(&mut got);
            got
        });
        let t0 = Instant::now();
        smol::block_on(ex.run(async {
            while !reader.is_finished() && t0.elapsed().as_secs() < 10 {
                smol::Timer::after(Duration::from_millis(10)).await;
            }
        }));
        drop(w);
        let got = reader.join().unwrap();
        let dropped = budget.view().clients_dropped;
        if let Path::Relayed = path {
            // conntrackd's client reads text, and the end of it.
            return (got == text.as_bytes(), dropped);
        }
        let mut at = &got[..];
        let mut replies = Vec::new();
        while let Ok(Some((r, used))) = proto::decode::<Reply>(at, 1 << 20) {
            replies.push(r);
            at = &at[used..];
        }
        let text_got: String = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Data(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let whole = text_got == text
            && replies.last() == Some(&Reply::Done(Status::Ok));
        (whole, dropped)
    }

    #[test]
    fn a_slow_reader_is_waited_for_unless_the_budget_is_needed() {
        // Each case waits 6 s: all at once.
        let paths = [Path::Parts, Path::Whole, Path::Relayed];
        let runs = [false, true].map(|pressed| {
            paths.map(|path| {
                std::thread::spawn(move || {
                    stalled_reader_gets_it_all(path, pressed)
                })
            })
        });
        let [waited, pressed] = runs.map(|row| row.map(|r| r.join().unwrap()));
        // Waited for (a writer's dump, an answer handed over whole,
        // conntrackd's client through the relay)...
        assert_eq!(
            waited,
            [(true, 0), (true, 0), (true, 0)],
            "a reader that paused for 6 s lost the end of its dump"
        );
        // ...unless the budget is pressed: the stalled client gives way,
        // as before, and `-s --json` counts it (the relay's writer, whose
        // reader left, is not counted again).
        assert_eq!(pressed, [(false, 1), (false, 1), (false, 1)]);
    }

    #[test]
    fn a_small_whole_answer_is_written_at_once() {
        let (ours, mut client) = UnixStream::pair().unwrap();
        let ours = Async::new(ours).unwrap();
        let want = answer("cache internal:\n");
        assert!(matches!(write_at_once(&ours, want.iter()), AtOnce::Written));
        drop(ours);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(frames(&got), want);
    }

    #[test]
    fn a_full_socket_leaves_the_answer_to_the_writer() {
        let (ours, mut client) = UnixStream::pair().unwrap();
        socket2::SockRef::from(&ours)
            .set_send_buffer_size(4096)
            .unwrap();
        let ours = Async::new(ours).unwrap();
        // Too large: the task's business, nothing written.
        let big = answer(&"x".repeat(AT_ONCE_MAX));
        assert!(matches!(write_at_once(&ours, big.iter()), AtOnce::NotNow));
        // Larger than the socket takes: the start now, the rest returned.
        let want = answer(&"y".repeat(AT_ONCE_MAX / 2));
        let AtOnce::Partial(rest) = write_at_once(&ours, want.iter()) else {
            panic!("a 4 KiB send buffer took 8 KiB at once");
        };
        // Full: nothing more goes out now.
        let small = answer("z");
        assert!(matches!(write_at_once(&ours, small.iter()), AtOnce::NotNow));
        let mut got = vec![0u8; AT_ONCE_MAX];
        let n = client.read(&mut got).unwrap();
        got.truncate(n);
        got.extend_from_slice(&rest);
        assert_eq!(frames(&got), want);
        // A client that left: failed, not retried.
        drop(client);
        assert!(matches!(write_at_once(&ours, small.iter()), AtOnce::Failed));
    }
}
