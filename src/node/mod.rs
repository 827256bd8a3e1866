//! One firewall's replication state, sans-IO: the internal and external
//! caches, the filters, the sync engine, and the bookkeeping behind every
//! control request and kernel job.
//!
//! The daemon hands it one [`Input`] at a time with the time
//! ([`Node::handle`]) and gets one [`Outbox`] back: datagrams to send,
//! kernel [`Job`]s, control replies, log records. [`Node::poll_at`] says
//! when the next timer is due (the engine's, transmit coalescing, the
//! overrun resync, the `-t` purge). Nothing here touches a socket or
//! reads a clock, so the whole daemon's behaviour can be driven from
//! tests.
//!
//! ```text
//!  Input::Kernel ───► kernel_side ─┐              ┌─► datagrams
//!  Input::Datagram ─► peer_side ───┼── caches ────┼─► jobs (commit, inject,
//!  Input::Control ──► control ─────┤   engine     │   flush, dump)
//!  Input::Job ──────► control ─────┘              ├─► replies, logs
//!  Input::Timer ────► timers                      └─► shutdown
//! ```
//!
//! Fixes over conntrackd (reference §11): a commit always does conntracks
//! (masters, then related) and then expectations; "commit in progress" is
//! a real flag; `-c` with the external cache disabled returns at once; the
//! peer's expectations are purged with their master; expectation sync works
//! with DisableInternalCache.

mod activity;
mod anti_entropy;
mod commit_events;
mod commit_split;
mod control;
mod dumps;
pub mod flow_log;
pub mod flow_requests;
mod internal;
mod io;
mod jobs;
mod kernel_side;
mod peer_side;
mod polling;
mod read_back;
pub mod render;
mod resync;
#[cfg(test)]
mod resync_races;
mod snapshot;
#[cfg(test)]
mod test_support;

use std::time::Duration;

use crate::sync::tx_timing::TxTiming;
pub use internal::Internal;
pub use io::{
    ClientId, Completion, Done, Injection, Input, Job, LinkView, LogRecord,
    Outbox, Purpose, RELEASE_AFTER, Work,
};
pub use snapshot::{CacheView, ControlView, Counters, Injected, Snapshot};

use crate::cache::Cache;
use crate::config::{Config, Mode};
use crate::model::{Conntrack, Expect};
use crate::sync::{self, Switch};
use crate::time::Instant;

pub use crate::sync::tx_timing::{TX_COALESCE, TX_FULL, TX_IDLE};

/// The commit being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Running {
    started: Instant,
    target: crate::control::proto::Target,
    /// Planned conntracks and expectations (all fail if the job does).
    planned: (usize, usize),
}

/// The state of one node.
pub struct Node {
    cfg: Config,
    internal_ct: Cache<Conntrack>,
    internal_exp: Cache<Expect>,
    external_ct: Cache<Conntrack>,
    external_exp: Cache<Expect>,
    /// ctsyncd's engine, or conntrackd's protocol when the peer speaks it.
    engine: Switch,
    counters: Counters,
    started: Instant,
    netlink_buffer: usize,
    purge_at: Option<Instant>,
    /// When we last asked the peer for a resync (`-n`, StartupResync),
    /// for `-s ready`.
    resync_asked_at: Option<Instant>,
    overrun_resync_at: Option<Instant>,
    /// `PollSecs`: when the next polling dump is due.
    next_poll: Option<Instant>,
    /// The first overrun of the burst whose resync waits (AfterBurst).
    burst_since: Option<Instant>,
    /// Events were lost and no resync has sent the difference yet: any
    /// resync (even `-R`'s) sends what it changes until one has.
    overrun_unsent: bool,
    /// What the last resync dropped without telling the peer: the
    /// kernel had destroyed it, but the event was still on its way. When
    /// the event comes, the peer is told.
    purged_ct: std::collections::HashSet<crate::wire::CtKey>,
    purged_exp: std::collections::HashSet<crate::wire::ExpKey>,
    /// DisableInternalCache: expectations waiting for their master's
    /// Filter verdict, in the order of their `Work::Get` jobs.
    master_checks: kernel_side::MasterChecks,
    /// Masters read back for a helper's sequence adjustment.
    refreshes: read_back::Refreshes,
    /// `-f` flushed the internal conntracks, expectations: they stand
    /// for the kernel's no longer, until a resync's dump refilled them.
    flushed: [bool; 2],
    /// The start-up dump has not yet filled the internal conntracks,
    /// expectations: the cache holds what events brought, not the
    /// kernel's table, until that dump (or a later resync's) is in. Only
    /// anti-entropy heeds it, as it heeds `flushed`.
    unfilled: [bool; 2],
    tx: TxTiming,
    tx_buf: Vec<u8>,
    /// The most keys the engine's send queue held since it was last
    /// empty (see [`Outbox::release_memory`]).
    tx_peak: usize,
    /// Entries the resync dump under way has delivered so far: a large
    /// one ends with [`Outbox::release_memory`].
    resync_dumped: usize,
    commit: Option<Running>,
    /// The running commit's lines for the expectations it could not
    /// create, written after the conntracks' totals (`node::jobs`).
    commit_exp_refused: Vec<LogRecord>,
    /// A commit split in two jobs: its first stage's keys and outcome.
    commit_first: Option<commit_split::SplitCommit>,
    /// The running commit left the conntrack NEW event group
    /// (`node::commit_events`).
    new_events_paused: bool,
    /// `-B` clients waiting for the resync after a commit
    /// (`node::commit_events`); Some while that resync runs.
    bulk_after_commit: Option<Vec<ClientId>>,
    /// The resync whose dump is out (`node::resync`).
    resync: Option<resync::ResyncRun>,
    /// Resyncs asked for while it runs: one dump after it.
    resync_wanted: Option<resync::ResyncWanted>,
    anti_entropy: Option<crate::sync::digest::AntiEntropy>,
    /// The primary's scans for flows active without events.
    activity: activity::Activity,
    dumps: dumps::Dumps,
    out: Outbox,
    /// Per link: datagrams refused (`-s link`, JSON), and the protocol
    /// the peer last spoke on it.
    refused: Vec<peer_side::LinkRefused>,
}

impl Node {
    /// A node for a configuration with a `Sync` section (a missing one
    /// uses the defaults). `session` and `seed` are random per start (the
    /// seed makes the challenges' nonces unpredictable); `max_datagram`
    /// is the sending link's largest datagram (see
    /// [`Node::set_max_datagram`]);
    /// `netlink_buffer` the event socket's receive buffer size.
    pub fn new(
        cfg: Config,
        session: u32,
        seed: u64,
        max_datagram: usize,
        netlink_buffer: usize,
        now: Instant,
    ) -> Node {
        let sync = cfg.sync.clone().unwrap_or_default();
        let limit = cfg.general.hash_limit as usize;
        let params = sync::Params {
            mode: sync.mode,
            session,
            max_datagram,
            resend_queue_size: sync.resend_queue_size as usize,
            ack_window: sync.ack_window_size,
            tx_queue_size: tx_queue_limit(cfg.general.hash_limit),
            refresh_time: Duration::from_secs(u64::from(sync.refresh_time)),
            seed,
        };
        Node {
            internal_ct: Cache::new(limit),
            internal_exp: Cache::new(limit),
            external_ct: Cache::new(limit),
            external_exp: Cache::new(limit),
            engine: Switch::new(
                params,
                peer_side::ctd_options(&sync),
                sync.peer_protocol,
                sync.channels.first().is_some_and(|c| {
                    matches!(c.transport, crate::config::Transport::Tcp { .. })
                }),
                now,
            ),
            counters: Counters::default(),
            started: now,
            netlink_buffer,
            purge_at: None,
            resync_asked_at: None,
            overrun_resync_at: None,
            next_poll: cfg
                .general
                .poll_secs
                .map(|s| now + Duration::from_secs(u64::from(s))),
            burst_since: None,
            tx_peak: 0,
            resync_dumped: 0,
            overrun_unsent: false,
            purged_ct: Default::default(),
            purged_exp: Default::default(),
            master_checks: Default::default(),
            refreshes: Default::default(),
            flushed: [false; 2],
            unfilled: [false; 2],
            tx: TxTiming::default(),
            tx_buf: vec![0; max_datagram],
            commit: None,
            commit_exp_refused: Vec::new(),
            commit_first: None,
            new_events_paused: false,
            bulk_after_commit: None,
            resync: None,
            resync_wanted: None,
            anti_entropy: anti_entropy::for_config(&sync, session, now),
            activity: activity::Activity::new(
                sync.activity_scan,
                sync.mode,
                !sync.disable_internal_cache,
                cfg.general.poll_secs.is_some(),
                now,
            ),
            dumps: dumps::Dumps::default(),
            out: Outbox::default(),
            refused: Vec::new(),
            cfg,
        }
    }

    /// Seals every datagram and reads only sealed ones
    /// (`AuthenticationKeyFile`); the daemon reads the keys and draws the
    /// epoch.
    pub fn set_sealer(&mut self, sealer: crate::wire::seal::Sealer) {
        self.engine.set_sealer(sealer);
    }

    /// The link that sends now carries datagrams of at most `n` bytes (a
    /// failover, or its MTU changed): what the node builds from now on
    /// fits it, as conntrackd sizes each link's buffer by its own MTU.
    pub fn set_max_datagram(&mut self, n: usize) {
        if n != self.tx_buf.len() {
            self.tx_buf = vec![0; n];
            self.engine.set_max_datagram(n);
        }
    }

    /// What the daemon does once, before it is ready: load the kernel's
    /// table into the internal cache and, with `StartupResync`, ask the
    /// peer for its state.
    pub fn start(&mut self, now: Instant) -> Outbox {
        use log::Level::Info;
        if self.external_disabled() {
            self.out.log(Info, "disabling external cache");
        }
        if self.internal_disabled() {
            self.out.log(Info, "disabling internal cache");
        } else {
            let exp = self.expectations();
            // Until this dump is in, a digest of the cache would prune
            // the peer's copy of every flow it has not reached yet (all
            // of them if it fails: nothing dumps again on its own).
            self.unfilled = [true, exp];
            self.anti_entropy_follows_flushes();
            self.resync_kernel(None, true, exp, false);
        }
        if self.sync().startup_resync && self.engine.request_resync() {
            self.resync_asked_at = Some(now);
        }
        self.transmit(now);
        std::mem::take(&mut self.out)
    }

    /// Handles one input; returns everything it caused.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) -> Outbox {
        // The timer's input is no news: it must not put off a flush; nor
        // is the events' pause, which brings it forward.
        let news = !matches!(input, Input::Timer | Input::EventsPaused);
        match input {
            Input::Kernel(msg, origin) => {
                self.kernel_event(now, msg, origin, true)
            }
            Input::KernelUndecodable => self.counters.events_unknown += 1,
            Input::KernelReadFailed => self.counters.catch_event_failed += 1,
            Input::Overrun { buffer } => self.overrun(now, buffer),
            Input::Datagram { link, peer, bytes } => {
                self.datagram(now, link, peer, bytes)
            }
            Input::Control {
                client,
                request,
                links,
                control,
            } => self.control(now, client, request, links, control),
            Input::BadControl { client, why } => {
                self.counters.local_read_failed += 1;
                self.out.log(
                    log::Level::Debug,
                    format!("bad control request: {why}"),
                );
                self.out.reply(
                    client,
                    crate::control::proto::Reply::Done(
                        crate::control::proto::Status::BadRequest(why),
                    ),
                );
            }
            Input::Timer => self.timers(now),
            Input::EventsPaused => self.tx.inputs_paused(now),
            Input::Job(c) => self.job_done(now, c),
        }
        if self.engine.take_kernel_bulk() {
            // A peer's RESYNC (or restart, or a protocol switch) without
            // an internal cache: the state is the kernel's table, sent
            // from a dump as `-B` sends it (conntrackd's bypass dumps
            // the kernel too); the answer is complete at the dump's end.
            let exp = self.expectations();
            self.resync_kernel(None, true, exp, true);
        }
        if news {
            self.tx.news(now);
        }
        self.transmit(now);
        std::mem::take(&mut self.out)
    }

    /// When [`Input::Timer`] must be handed in next.
    pub fn poll_at(&self) -> Instant {
        if self.dumping() || self.commit_rest_due() {
            // The next part of a dump, or the rest of a commit: as soon
            // as nothing else waits.
            return self.started;
        }
        let anti_entropy = self.anti_entropy.as_ref().map(|a| a.poll_at());
        [
            self.purge_at,
            self.overrun_resync_at,
            self.next_poll,
            self.tx.poll_at(),
            anti_entropy,
            self.activity.poll_at(),
        ]
        .into_iter()
        .flatten()
        .fold(self.engine.poll_at(), Instant::min)
    }

    /// Every statistic at `now`; `links` is the loop's view of its links.
    /// The resend queue's entries are listed only with `resend_entries`.
    pub fn snapshot(
        &self,
        now: Instant,
        links: &[LinkView],
        resend_entries: bool,
    ) -> Snapshot {
        let (tx, rs) = self.engine.queue_lengths();
        Snapshot {
            uptime: now.since(self.started),
            mode: self.engine.mode(),
            internal_ct: CacheView::of(&self.internal_ct),
            internal_exp: CacheView::of(&self.internal_exp),
            external_ct: CacheView::of(&self.external_ct),
            external_exp: CacheView::of(&self.external_exp),
            internal_disabled: self.internal_disabled(),
            external_disabled: self.external_disabled(),
            expectations: self.expectations(),
            counters: self.counters,
            sync: self.engine.stats(),
            round_trip: self.engine.round_trip(),
            tx_queue: tx,
            tx_queue_limit: tx_queue_limit(self.cfg.general.hash_limit),
            resend_queue: rs,
            resend_queue_limit: self.sync().resend_queue_size as usize,
            error_queue_limit: self.sync().error_queue_length as usize,
            resend_entries: if resend_entries {
                self.engine.resend_queue().collect()
            } else {
                Vec::new()
            },
            links: self.with_refusals(links),
            netlink_buffer: self.netlink_buffer,
            anti_entropy: self.anti_entropy.as_ref().map(|a| *a.counters()),
            control: ControlView::default(),
        }
    }

    /// Whether a commit is running (between `-c` and its completion).
    pub fn committing(&self) -> bool {
        self.commit.is_some()
    }

    /// The peer speaks conntrackd's protocol: a datagram per kernel event
    /// (see `daemon::replicator::peer_pacing`).
    pub fn peer_sends_per_event(&self) -> bool {
        self.engine.protocol() == crate::sync::Protocol::Conntrackd
    }

    /// The configuration the node runs.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    // ===== helpers =====

    fn sync(&self) -> &crate::config::Sync {
        static DEFAULT: std::sync::OnceLock<crate::config::Sync> =
            std::sync::OnceLock::new();
        self.cfg
            .sync
            .as_ref()
            .unwrap_or_else(|| DEFAULT.get_or_init(Default::default))
    }

    fn expectations(&self) -> bool {
        self.sync().expectation_sync.enabled()
    }

    fn external_disabled(&self) -> bool {
        self.sync().disable_external_cache
    }

    /// Whether the internal cache is not the kernel's table, so a bulk
    /// of it (a peer's RESYNC, its restart) must come from a dump
    /// (`sync::Source::in_kernel`): without an internal cache; after
    /// `-f`, until a resync refilled it; while a commit runs and until
    /// the resync after it brought in what it committed (a `-B` waits
    /// for that resync likewise, `node::commit_events`).
    fn cache_not_kernel(&self) -> bool {
        self.internal_disabled()
            || self.flushed.contains(&true)
            || self.new_events_paused
            || self.bulk_after_commit.is_some()
    }

    /// NOTRACK with DisableInternalCache: the internal cache only stages
    /// changes until they are sent.
    fn internal_disabled(&self) -> bool {
        self.sync().disable_internal_cache
    }

    // ===== timers =====

    /// The engine's timers, ALARM expiry, the overrun resync, the `-t`
    /// purge (transmit coalescing is [`Node::transmit`]'s).
    fn timers(&mut self, now: Instant) {
        let src = Internal {
            ct: &self.internal_ct,
            exp: &self.internal_exp,
            bypass: self.cache_not_kernel(),
        };
        self.engine.handle_timeout(now, &src);
        self.anti_entropy_timer(now);
        self.dump_turn(now);
        if self.sync().mode == Mode::Alarm {
            let life =
                Duration::from_secs(u64::from(self.sync().cache_timeout));
            self.external_ct.expire(now, life);
            self.external_exp.expire(now, life);
        }
        self.polling_timer(now);
        self.activity_timer(now);
        self.commit_rest(now);
        if self.overrun_resync_at.is_some_and(|t| now >= t) {
            self.overrun_resync_at = None;
            self.burst_since = None;
            self.counters.kernel_resyncs += 1;
            let exp = self.expectations();
            self.resync_kernel(None, true, exp, true);
        }
        if self.purge_at.is_some_and(|t| now >= t) {
            self.purge_at = None;
            self.out.log(
                log::Level::Info,
                "flushing kernel conntrack table (scheduled)",
            );
            self.counters.kernel_flushes += 1;
            // Without an internal cache it holds events staged until
            // sent: flushed, they would go to the peer as deletions.
            if !self.internal_disabled() {
                self.forget_unsent(false);
                self.internal_ct.flush();
            }
            self.out.jobs.push(Job {
                purpose: Purpose::Flush { client: None },
                work: Work::Flush {
                    conntracks: true,
                    expectations: false,
                },
            });
        }
    }
}

/// How many keys the transmit queue holds at most: every cached entry,
/// and as many deletions, may wait at once. Saturating: a `HashLimit` of
/// 2^31 or more would overflow a 32-bit router's `usize`.
fn tx_queue_limit(hash_limit: u32) -> usize {
    (hash_limit as usize).saturating_mul(2).max(1024)
}

#[cfg(test)]
mod test;
#[cfg(test)]
mod test_anti_entropy;
#[cfg(test)]
mod test_bypass_resync;
#[cfg(test)]
mod test_commit;
#[cfg(test)]
mod test_commit_races;
#[cfg(test)]
mod test_commit_split;
#[cfg(test)]
mod test_dumps;
#[cfg(test)]
mod test_events;
#[cfg(test)]
mod test_exp_purge;
#[cfg(test)]
mod test_exp_zones;
#[cfg(test)]
mod test_expectations;
#[cfg(test)]
mod test_flush;
#[cfg(test)]
mod test_kernel_side;
#[cfg(test)]
mod test_link;
#[cfg(test)]
mod test_peer_side;
#[cfg(test)]
mod test_release;
#[cfg(test)]
mod test_resync;
#[cfg(test)]
mod test_stats;
