//! One budget for the memory that all pending control replies hold.
//!
//! A reply waits in its writer task until the client reads it; a dump is
//! megabytes of text. Without a bound, 100 clients asking `-i` and never
//! reading held 100 MB for 30 s. Every reply handed to a writer now takes
//! its size from this budget and gives it back once written (or once its
//! client is gone); a reply that does not fit is replaced by a
//! `Refused("too many pending replies")` to that client, counted and
//! logged at most once a minute (`-s --json`'s `control` shows the count,
//! the bytes held, and the clients dropped for not reading:
//! [`ReplyBudget::view`]). A dump comes as parts, each held until
//! written; the node renders the next part of a dump only once its client
//! has room for it (`reply_writer`), so a dump read to its end or
//! abandoned never leaves the budget full for the next request. A
//! client that stalls is dropped only when the budget is pressed
//! ([`ReplyBudget::pressed`]).
//!
//! The relay to conntrackd's own client (`control::conntrackd::relay`)
//! holds what it has read of its reply here too while its client reads,
//! so a stalled conntrackd client presses the budget as ours does.
//!
//! One reply is always admitted when nothing else is held, so a dump
//! larger than the budget is still served to a patient operator: what
//! pending replies hold never exceeds the larger of the budget and the
//! largest single reply.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::control::proto::{Reply, Status};
use crate::node::ControlView;

/// Bytes all pending replies may hold together.
pub(crate) const REPLY_BUDGET: usize = 16 << 20;

/// How often a refusal may be logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Largest text per frame: the writer holds one encoded frame beside the
/// reply while it waits for the client (see `server::write_replies`).
const FRAME: usize = 256 * 1024;

pub(crate) struct ReplyBudget {
    limit: usize,
    held: Cell<usize>,
    /// What the last data reply cost: the best guess of what the next
    /// dump will.
    last_data: Cell<usize>,
    refused: Cell<u64>,
    /// Clients disconnected because they stopped reading.
    dropped: Cell<u64>,
    logged: Cell<Option<Instant>>,
    /// Requests wait for a place that stalled clients hold (a dump's).
    wanted: Cell<bool>,
}

/// Bytes taken from the budget; given back when dropped.
pub(crate) struct Held {
    budget: Rc<ReplyBudget>,
    bytes: usize,
}

impl ReplyBudget {
    pub(crate) fn new(limit: usize) -> Rc<ReplyBudget> {
        Rc::new(ReplyBudget {
            limit,
            held: Cell::new(0),
            last_data: Cell::new(0),
            refused: Cell::new(0),
            dropped: Cell::new(0),
            logged: Cell::new(None),
            wanted: Cell::new(false),
        })
    }

    /// Takes what `reply` will hold while it waits, or `None` when that
    /// would exceed the budget.
    pub(crate) fn hold(self: &Rc<Self>, reply: &Reply) -> Option<Held> {
        let bytes = cost(reply);
        // A final status is tiny and always admitted: a client that got
        // its data also gets told that it was all.
        if matches!(reply, Reply::Done(_)) {
            return Some(self.take(bytes));
        }
        self.last_data.set(bytes);
        self.hold_bytes(bytes)
    }

    /// Takes `bytes` of data (a reply's, or an answer's rest still to
    /// write: see `reply_writer::write_at_once`), or `None` when that
    /// would exceed the budget.
    pub(crate) fn hold_bytes(self: &Rc<Self>, bytes: usize) -> Option<Held> {
        let held = self.held.get();
        if held > 0 && held + bytes > self.limit {
            return None;
        }
        Some(self.take(bytes))
    }

    fn take(self: &Rc<Self>, bytes: usize) -> Held {
        self.held.set(self.held.get() + bytes);
        Held {
            budget: self.clone(),
            bytes,
        }
    }

    /// True when a reply as large as the last one would not be admitted
    /// beside what is held and one more such reply for each of the
    /// `pending` dumps already under way or waiting their turn: a request
    /// for a dump is then refused before the dump is built (a flood of
    /// dump requests must not cost a dump's CPU each). Dumps are paced by
    /// their readers, so `held` alone never grows past a few parts each;
    /// the dumps that really wait are what overloads.
    pub(crate) fn full_for_another(&self, pending: usize) -> bool {
        let held = self.held.get();
        let want = (pending + 1).saturating_mul(self.last_data.get());
        (held > 0 || pending > 0) && held.saturating_add(want) > self.limit
    }

    /// The answer for a client whose reply did not fit: counted, logged
    /// now and then, and so small that it is never held against the
    /// budget.
    pub(crate) fn refusal(&self) -> Reply {
        self.refused.set(self.refused.get() + 1);
        let now = Instant::now();
        if self
            .logged
            .get()
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            self.logged.set(Some(now));
            log::warn!(
                "control: refusing replies, {} bytes already wait for clients that do not read ({} refused so far)",
                self.held.get(),
                self.refused.get()
            );
        }
        Reply::Done(Status::Refused("too many pending replies".into()))
    }

    /// Whether more than half the budget is held, or requests wait for a
    /// place: a client that stalls is then dropped (`reply_writer`) to
    /// make room for the others; a slow reader alone is waited for.
    pub(crate) fn pressed(&self) -> bool {
        self.wanted.get() || self.held.get().saturating_mul(2) > self.limit
    }

    /// Counts a client given up on, when `failed` says it stopped reading
    /// (a write deadline passed; a client that left is not counted).
    pub(crate) fn count_dropped(&self, failed: &io::Error) {
        if failed.kind() == io::ErrorKind::TimedOut {
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    /// What `-s --json` shows of the replies (`control`).
    pub(crate) fn view(&self) -> ControlView {
        ControlView {
            pending_bytes: self.held.get() as u64,
            budget_bytes: self.limit as u64,
            replies_refused: self.refused.get(),
            clients_dropped: self.dropped.get(),
            log_write_errors: 0,
        }
    }

    /// [`ReplyBudget::view`] with the log's write errors: what the loop
    /// hands the node with a request.
    pub(crate) fn loop_view(&self) -> ControlView {
        ControlView {
            log_write_errors: crate::logging::write_errors(),
            ..self.view()
        }
    }

    /// Whether requests wait for a place (see [`ReplyBudget::pressed`]).
    pub(crate) fn set_wanted(&self, wanted: bool) {
        self.wanted.set(wanted);
    }

    /// Bytes held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.get()
    }
}

/// The relay to conntrackd's client holds its frames here too.
impl crate::control::conntrackd::Room for Rc<ReplyBudget> {
    type Held = Held;

    fn hold(&self, bytes: usize) -> Option<Held> {
        self.hold_bytes(bytes)
    }

    fn pressed(&self) -> bool {
        ReplyBudget::pressed(self)
    }

    fn gave_up(&self, failed: &io::Error) {
        self.count_dropped(failed)
    }
}

impl Held {
    /// Nothing taken (the refusal itself).
    pub(crate) fn nothing(budget: &Rc<ReplyBudget>) -> Held {
        Held {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// The budget these bytes were taken from.
    pub(crate) fn budget(&self) -> &Rc<ReplyBudget> {
        &self.budget
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let b = &self.budget;
        b.held.set(b.held.get() - self.bytes);
    }
}

/// What a reply holds while it waits: its text, plus the one encoded
/// frame being written, plus framing.
fn cost(reply: &Reply) -> usize {
    match reply {
        Reply::Data(text) => text.len() + text.len().min(FRAME) + 64,
        Reply::Done(_) => 64,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn data(n: usize) -> Reply {
        Reply::Data("x".repeat(n))
    }

    #[test]
    fn refuses_past_the_limit_and_gives_back_on_drop() {
        let b = ReplyBudget::new(1000);
        let first = b.hold(&data(300)).unwrap();
        assert!(b.hold(&data(400)).is_none(), "300+300+400+400 > 1000");
        let small = b.hold(&Reply::Done(Status::Ok)).unwrap();
        assert!(b.full_for_another(0), "the last one asked 864 bytes");
        drop(first);
        drop(small);
        assert_eq!(b.held(), 0);
        assert!(b.hold(&data(400)).is_some());
        assert_eq!(b.held(), 0, "a dropped hold gives its bytes back");
    }

    #[test]
    fn one_oversized_reply_is_served_when_nothing_else_waits() {
        let b = ReplyBudget::new(1000);
        let big = b.hold(&data(5000)).unwrap();
        assert!(b.full_for_another(0));
        assert!(b.hold(&data(1)).is_none());
        assert!(b.hold(&Reply::Done(Status::Ok)).is_some(), "always");
        assert!(matches!(
            b.refusal(),
            Reply::Done(Status::Refused(m)) if m == "too many pending replies"
        ));
        assert_eq!(b.refused.get(), 1);
        drop(big);
        assert!(!b.full_for_another(0));
    }

    #[test]
    fn the_view_shows_what_is_held_refused_and_dropped() {
        let b = ReplyBudget::new(1000);
        let big = b.hold(&data(600)).unwrap();
        let _ = b.refusal();
        b.count_dropped(&io::ErrorKind::TimedOut.into());
        // A client that left is no drop of ours.
        b.count_dropped(&io::ErrorKind::BrokenPipe.into());
        let want = ControlView {
            pending_bytes: 600 + 600 + 64,
            budget_bytes: 1000,
            replies_refused: 1,
            clients_dropped: 1,
            log_write_errors: 0,
        };
        assert_eq!(b.view(), want);
        drop(big);
        assert_eq!(b.view().pending_bytes, 0);
    }

    #[test]
    fn pressed_past_half_the_budget_or_when_requests_wait() {
        let b = ReplyBudget::new(1000);
        let half = b.hold_bytes(500).unwrap();
        assert!(!b.pressed(), "half is not past half");
        let more = b.hold_bytes(1).unwrap();
        assert!(b.pressed());
        drop((half, more));
        assert!(!b.pressed());
        b.set_wanted(true);
        assert!(b.pressed(), "a dump waits for a place");
    }

    #[test]
    fn dumps_waiting_their_turn_count_as_pending() {
        let b = ReplyBudget::new(1000);
        drop(b.hold(&data(200)).unwrap());
        // Each such reply costs 200 + 200 + 64 = 464 bytes.
        assert!(!b.full_for_another(0), "nothing held, nothing pending");
        assert!(!b.full_for_another(1), "2 x 464 fits");
        assert!(b.full_for_another(2), "3 x 464 does not");
        let _one = b.hold(&data(200)).unwrap();
        assert!(!b.full_for_another(0), "464 held + 464 fits");
        assert!(b.full_for_another(1), "464 held + 2 x 464 does not");
    }
}
