//! One plain-data snapshot of everything the statistics show: the
//! caches' sizes and counters, the daemon's counters, the sync engine's
//! counters and queues, and the loop's links. The renderers
//! ([`super::render::stats`]) read nothing else.

use std::time::Duration;

use super::render::LinkView;
use crate::cache::{Cache, CacheStats, Stored};
use crate::config::Mode;
use crate::sync::{RoundTrip, Stats as SyncStats};

/// Daemon-wide counters (`-s runtime`, `-s`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub events_received: u64,
    pub events_filtered: u64,
    pub events_unknown: u64,
    pub catch_event_failed: u64,
    pub overruns: u64,
    pub kernel_flushes: u64,
    pub kernel_resyncs: u64,
    pub traffic_bytes: u64,
    pub traffic_packets: u64,
    pub local_read_failed: u64,
    pub local_unknown_request: u64,
    pub commit_ok: u64,
    pub commit_fail: u64,
    pub inject_ok: u64,
    pub inject_fail: u64,
    /// The same, by kind (`external inject:`, in `-s` and `-s expect`).
    pub inject_ct: Injected,
    pub inject_exp: Injected,
    /// Kernel jobs that failed as a whole or never ran (queue full).
    pub jobs_failed: u64,
    /// Activity scans done, and the active flows they sent again.
    pub activity_scans: u64,
    pub activity_resent: u64,
    /// Events sent without an internal cache (`internal bypass:`).
    pub bypass_ct: Bypassed,
    pub bypass_exp: Bypassed,
}

/// Events the bypass sent, by kind (conntrackd's `internal bypass:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bypassed {
    pub new: u64,
    pub updated: u64,
    pub destroyed: u64,
}

/// A peer's changes injected, by kind, done and failed (conntrackd's
/// `external inject:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub created: [u64; 2],
    pub updated: [u64; 2],
    pub destroyed: [u64; 2],
}

/// What the daemon's loop counts that the node never sees: the control
/// socket's replies (the node sees only requests), `-s --json`'s
/// `control`, and the log's write errors, `runtime`'s `log_write_errors`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlView {
    /// Bytes that replies waiting for their clients hold now, and the
    /// most they may hold together.
    pub pending_bytes: u64,
    pub budget_bytes: u64,
    /// Requests answered "too many pending replies".
    pub replies_refused: u64,
    /// Clients disconnected because they stopped reading their reply.
    pub clients_dropped: u64,
    /// Log lines that some sink (the file, syslog, the console) did not
    /// take: a full disk, a syslog daemon gone.
    pub log_write_errors: u64,
}

/// One cache as the statistics show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheView {
    pub len: usize,
    pub bytes: usize,
    pub limit: usize,
    pub stats: CacheStats,
}

impl CacheView {
    pub(crate) fn of<V: Stored>(c: &Cache<V>) -> CacheView {
        CacheView {
            len: c.len(),
            bytes: c.bytes(),
            limit: c.limit(),
            stats: c.stats,
        }
    }
}

/// Everything `-s` can show, at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub uptime: Duration,
    pub mode: Mode,
    pub internal_ct: CacheView,
    pub internal_exp: CacheView,
    pub external_ct: CacheView,
    pub external_exp: CacheView,
    pub internal_disabled: bool,
    pub external_disabled: bool,
    pub expectations: bool,
    pub counters: Counters,
    pub sync: SyncStats,
    /// FT-FW's measured round trip, once measured.
    pub round_trip: Option<RoundTrip>,
    pub tx_queue: usize,
    pub tx_queue_limit: usize,
    pub resend_queue: usize,
    pub resend_queue_limit: usize,
    /// `ErrorQueueLength`: the bound of a TCP link's queue.
    pub error_queue_limit: usize,
    /// The resend queue's entries as (sequence number, is control), filled
    /// only for `-s rsqueue`.
    pub resend_entries: Vec<crate::sync::ResendEntry>,
    pub links: Vec<LinkView>,
    pub netlink_buffer: usize,
    /// Anti-entropy's counters, when it runs.
    pub anti_entropy: Option<crate::sync::digest::Counters>,
    /// The control socket's replies (zero where no loop gave them).
    pub control: ControlView,
}
