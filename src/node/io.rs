//! The node's door: the plain-data inputs it takes and the one outbox it
//! returns.
//!
//! Everything the daemon loop learns (a kernel event, a peer datagram, a
//! control request, a timer, the end of a kernel job) becomes one
//! [`Input`]; everything the node wants done (datagrams to send, kernel
//! jobs, control replies, log records, shutdown) comes back in one
//! [`Outbox`]. The loop only moves bytes and runs jobs, so a test (or the
//! whole-firewall simulation) can stand in for it completely.

use crate::control::proto::{Format, Reply, Request, Table};
use crate::kernel::codec::{Message, Object};
use crate::kernel::commit::Plan;
use crate::kernel::origin::Origin;
use crate::sync::Apply;

pub use super::render::LinkView;

/// A control connection, numbered by the loop.
pub type ClientId = u64;

/// One thing that happened, handed to [`super::Node::handle`] with the
/// time.
// An input is moved into `handle` at once and never stored: boxing the
// kernel event would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input<'a> {
    /// A kernel event (or a dump entry replayed as one).
    Kernel(Message, Origin),
    /// A kernel message that could not be decoded.
    KernelUndecodable,
    /// Reading the event socket failed.
    KernelReadFailed,
    /// The event socket overran (events were lost); `buffer` is its
    /// receive buffer size now.
    Overrun { buffer: usize },
    /// A datagram from a peer on dedicated link `link`.
    Datagram {
        link: usize,
        peer: u64,
        bytes: &'a [u8],
    },
    /// A control request. `links` is the loop's view of its links, for
    /// the statistics.
    Control {
        client: ClientId,
        request: Request,
        links: &'a [LinkView],
        /// The loop's view of its control replies, for the statistics.
        control: super::ControlView,
    },
    /// A control connection that did not deliver a valid request.
    BadControl { client: ClientId, why: String },
    /// The time given by [`super::Node::poll_at`] has come.
    Timer,
    /// The kernel's events paused (the event socket was read empty with
    /// no burst under way): what they left waiting may leave now instead
    /// of a quiet period later (`sync::tx_timing`), without a wake-up of
    /// its own.
    EventsPaused,
    /// A kernel job finished (or, for a dump, delivered a part).
    Job(Completion),
}

/// A kernel job: ctnetlink work that may block, so the loop runs it off
/// its thread. Jobs run one after another in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Returned untouched in the [`Completion`].
    pub purpose: Purpose,
    pub work: Work,
}

/// What the kernel is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Create these entries (conntracks in order, then expectations).
    Commit(Plan),
    /// Apply a peer's changes directly, in order (DisableExternalCache).
    Inject(Vec<Apply>),
    /// Delete every kernel conntrack the Filter accepts, and/or every
    /// expectation.
    Flush {
        conntracks: bool,
        expectations: bool,
    },
    /// Dump the tables; the result arrives in parts ([`Done::Dumped`]).
    Dump {
        conntracks: bool,
        expectations: bool,
    },
    /// Read one conntrack as the kernel holds it now (one
    /// [`Done::Dumped`], empty if it is gone).
    Get {
        orig: crate::model::Tuple,
        zone: u16,
    },
}

/// Why a job was asked for: the node's bookkeeping, echoed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `-c`: the client waits for the totals.
    Commit { client: ClientId },
    /// `-c` on a large cache: the first stage, sent as its own job before
    /// the rest is even planned, and the batches after it but the last
    /// (`Commit`). `batch` numbers them within the commit (0: the first
    /// stage): a job the worker's full queue refuses comes back before
    /// the jobs queued ahead of it, and is told from them by its number.
    CommitFirst { client: ClientId, batch: u32 },
    /// DisableExternalCache: count successes and failures. `changes`:
    /// how many of each [`Injection`] the job holds (indexed by it), each
    /// counted as failed when the job fails as a whole (a full queue
    /// refused it: a datagram's worth of changes, not one).
    Inject { changes: [u32; Injection::KINDS] },
    /// `-F` (a client waits) or the scheduled `-t` purge (none).
    Flush { client: Option<ClientId> },
    /// Bring the internal cache in line with the kernel: start-up, `-R`
    /// (a client waits; the clients of requests that waited for a
    /// running dump are kept by the node: `node::resync`), an overrun,
    /// `-B` without internal cache. With
    /// `send`, every change is also sent to the peer. With
    /// `announce_new`, an entry that neither cache knew is sent as new:
    /// after a commit that kept the NEW events away, it is a flow that
    /// started meanwhile (what the commit created is in the external
    /// cache).
    Resync {
        client: Option<ClientId>,
        conntracks: bool,
        expectations: bool,
        send: bool,
        announce_new: bool,
    },
    /// The activity scan's dump (`node::activity`).
    ActivityScan,
    /// A conntrack re-read because the kernel changed it without an
    /// event (a helper's sequence adjustment): sent as an update. `id`
    /// names it among the node's reads under way (`node::kernel_side`).
    Refresh { id: u32 },
    /// DisableInternalCache: the master of the oldest expectation waiting
    /// in the node's master checks, for the Filter.
    MasterCheck { id: u32 },
    /// `-i` without internal cache: the kernel's table as text.
    DumpText {
        client: ClientId,
        table: Table,
        format: Format,
    },
}

/// The end (or a part) of a job.
#[derive(Debug)]
pub struct Completion {
    pub purpose: Purpose,
    pub done: Done,
}

/// What a job produced.
#[derive(Debug)]
pub enum Done {
    /// One errno per planned conntrack and expectation (0 = created),
    /// and the errno and the entry (as planned) of each refused one, for
    /// the log.
    Committed {
        cts: Vec<i32>,
        exps: Vec<i32>,
        failed: Vec<(i32, crate::kernel::codec::Object)>,
        /// Microseconds the conntrack stage and the expectation stage each
        /// took in the kernel (conntrackd logs one total per stage, in
        /// microseconds: the node's clock counts milliseconds).
        took_us: [u32; 2],
        /// Why the job ended before the plan's end (its socket failed):
        /// the entries the kernel did not answer for carry EIO.
        /// (Boxed: a `String` made every completion too large to move
        /// cheaply, clippy's `result_large_err`.)
        aborted: Option<Box<str>>,
    },
    /// What each injected change was, and its errno (0 = done), in
    /// order.
    Injected(Vec<(Injection, i32)>),
    /// How many entries were deleted.
    Flushed(usize),
    /// Part of a dump; `last` ends it.
    Dumped { objects: Vec<Object>, last: bool },
    /// The job failed as a whole (or was never run: the job queue was
    /// full); the text says why.
    Failed(String),
}

/// What an injected change does to the kernel, as conntrackd's
/// `external inject:` counters tell them apart: a peer's NEW creates, its
/// UPDATE updates (both fall back on each other in the kernel, the
/// change still counts as what the peer sent), its DESTROY deletes. An
/// expectation's UPDATE is created as a NEW is, and counted so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    CtNew,
    CtUpdate,
    CtDelete,
    ExpNew,
    ExpDelete,
}

impl Injection {
    pub const KINDS: usize = 5;
    pub const ALL: [Injection; Injection::KINDS] = [
        Injection::CtNew,
        Injection::CtUpdate,
        Injection::CtDelete,
        Injection::ExpNew,
        Injection::ExpDelete,
    ];

    pub fn of(a: &Apply) -> Injection {
        match a {
            Apply::Ct { new: true, .. } => Injection::CtNew,
            Apply::Ct { new: false, .. } => Injection::CtUpdate,
            Apply::CtDel(_) => Injection::CtDelete,
            Apply::Exp { .. } => Injection::ExpNew,
            Apply::ExpDel(_) => Injection::ExpDelete,
        }
    }
}

/// A log line the node wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: log::Level,
    pub text: String,
    /// An entry's line, as conntrackd writes the entry a commit could not
    /// create: after the time alone (no pid, no level), see `logging`.
    pub entry: bool,
}

/// Everything one input caused.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Datagrams for the peer, in order.
    pub datagrams: Vec<Vec<u8>>,
    /// Replies follow the peer onto this link (it just spoke on it).
    pub follow_link: Option<usize>,
    /// Kernel jobs, in order.
    pub jobs: Vec<Job>,
    /// Reply frames per client, in order; a `Reply::Done` is a client's
    /// last frame.
    pub replies: Vec<(ClientId, Reply)>,
    pub logs: Vec<LogRecord>,
    /// Join (true) or leave (false) the conntrack NEW event group before
    /// the jobs run: a commit leaves it, so that the kernel builds no
    /// event for our own creates (see `Node::commit_start`).
    pub new_events: Option<bool>,
    /// Stop the daemon once the replies are written.
    pub shutdown: bool,
    /// Large containers were just freed (a send queue of at least
    /// [`RELEASE_AFTER`] keys drained, a cache that large flushed, a
    /// resync dump that large ended): the daemon may hand the allocator's
    /// free pages back to the system.
    pub release_memory: bool,
}

/// Containers of at least this many entries, once freed, are worth handing
/// back to the system ([`Outbox::release_memory`]). The allocator keeps
/// what a burst freed: after `-B` of 95 000 entries to a dead peer (the
/// notify script's, after a failover) the daemon stayed 28 MB, 18 MB more
/// than before it, of which the resend queue it keeps is 6 MB. A resync
/// dump of 100 000 left about 10 MB (see the daemon's `trim`).
pub const RELEASE_AFTER: usize = 10_000;

impl Outbox {
    pub(crate) fn log(&mut self, level: log::Level, text: impl Into<String>) {
        self.logs.push(LogRecord {
            level,
            text: text.into(),
            entry: false,
        });
    }

    /// An entry's line ([`LogRecord::entry`]).
    pub(crate) fn log_entry(&mut self, level: log::Level, text: String) {
        self.logs.push(LogRecord {
            level,
            text,
            entry: true,
        });
    }

    pub(crate) fn reply(&mut self, client: ClientId, r: Reply) {
        self.replies.push((client, r));
    }

    /// Appends another outbox's contents after this one's.
    pub fn merge(&mut self, other: Outbox) {
        self.datagrams.extend(other.datagrams);
        self.follow_link = other.follow_link.or(self.follow_link);
        self.jobs.extend(other.jobs);
        self.replies.extend(other.replies);
        self.logs.extend(other.logs);
        self.new_events = other.new_events.or(self.new_events);
        self.shutdown |= other.shutdown;
        self.release_memory |= other.release_memory;
    }

    /// True when nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
            && self.jobs.is_empty()
            && self.replies.is_empty()
            && self.logs.is_empty()
            && self.new_events.is_none()
            && !self.shutdown
            && !self.release_memory
    }
}
