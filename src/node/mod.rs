//! One firewall's replication state, sans-IO: the internal and external
//! caches, the filters, the sync engine and the commit/flush/purge
//! bookkeeping behind every control request.
//!
//! The daemon feeds it kernel messages (with their origin), datagrams,
//! control requests and the time; it answers with what to send, reply
//! frames and [`Action`]s for the kernel (commit, inject, flush, dump).
//! Nothing here touches a socket or reads a clock, so the whole daemon
//! behaviour can be driven from tests.
//!
//! Fixes over conntrackd (reference §11): a commit always does conntracks
//! (masters, then related) and then expectations; "commit in progress" is
//! a real flag; `-c` with the external cache disabled returns at once; the
//! peer's expectations are purged with their master; expectation sync works
//! with DisableInternalCache.

pub mod render;

use std::time::Duration;

use crate::cache::{Cache, Upsert};
use crate::config::{Config, ExpectationSync, Mode};
use crate::control::proto::{
    Cache as Which, CacheSel, Format, Reply, Request, StatsView, Status, Table,
    Target,
};
use crate::filter;
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::commit::{self, CommitRules, Plan};
use crate::kernel::origin::Origin;
use crate::model::{Conntrack, Expect};
use crate::sync::{self, Apply, Engine, Key, Source, State};
use crate::time::Instant;
use crate::wire::{CtKey, ExpKey, ct_key_of, exp_key_of};

/// Something the daemon must do with the kernel or the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create these entries through the commit socket, then call
    /// [`Node::commit_done`].
    Commit(Plan),
    /// Apply a peer's change directly (DisableExternalCache).
    Inject(Box<Apply>),
    /// Delete every kernel conntrack the Filter accepts (`-F`, `-t`,
    /// `-f internal` without internal cache), and/or all expectations.
    FlushKernel {
        conntracks: bool,
        expectations: bool,
    },
    /// Dump the kernel tables and hand them to [`Node::resync_kernel`].
    ResyncKernel {
        conntracks: bool,
        expectations: bool,
        send: bool,
    },
    /// Dump the kernel table for a `-i` without internal cache.
    DumpKernel {
        table: Table,
        format: Format,
    },
    Shutdown,
}

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
}

/// The outcome of one control request.
#[derive(Debug, Default)]
pub struct Outcome {
    pub replies: Vec<Reply>,
    pub actions: Vec<Action>,
}

impl Outcome {
    fn done(text: Option<String>) -> Outcome {
        let mut replies = Vec::new();
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            replies.push(Reply::Data(t));
        }
        replies.push(Reply::Done(Status::Ok));
        Outcome {
            replies,
            actions: Vec::new(),
        }
    }

    fn status(s: Status) -> Outcome {
        Outcome {
            replies: vec![Reply::Done(s)],
            actions: Vec::new(),
        }
    }

    fn act(mut self, a: Action) -> Outcome {
        self.actions.push(a);
        self
    }
}

/// The commit being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Running {
    started: Instant,
    target: Target,
}

/// The state of one node.
pub struct Node {
    pub cfg: Config,
    pub internal_ct: Cache<Conntrack>,
    pub internal_exp: Cache<Expect>,
    pub external_ct: Cache<Conntrack>,
    pub external_exp: Cache<Expect>,
    pub engine: Engine,
    pub counters: Counters,
    pub started: Instant,
    /// The daemon's view of its links, refreshed before `-s` requests.
    pub links: Vec<render::LinkView>,
    pub runtime: render::RuntimeView,
    purge_at: Option<Instant>,
    commit: Option<Running>,
}

/// The internal caches as the engine's [`Source`].
pub struct Internal<'a> {
    pub ct: &'a Cache<Conntrack>,
    pub exp: &'a Cache<Expect>,
}

impl Source for Internal<'_> {
    fn current(&self, key: &Key) -> Option<State> {
        match key {
            Key::Ct(k) => self.ct.get(k).map(|e| State::Ct(e.value)),
            Key::Exp(k) => self.exp.get(k).map(|e| State::Exp(e.value)),
        }
    }

    fn keys(&self) -> Vec<Key> {
        // Conntracks first: masters reach the peer before expectations.
        let mut v: Vec<Key> = self.ct.keys().map(Key::Ct).collect();
        v.extend(self.exp.keys().map(|k| Key::Exp(Box::new(k))));
        v
    }
}

impl Node {
    /// A node for a configuration with a `Sync` section.
    ///
    /// # Panics
    /// Never for a configuration from [`crate::config::parse`]; a missing
    /// `Sync` section uses the defaults.
    pub fn new(
        cfg: Config,
        session: u32,
        max_datagram: usize,
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
            // Every cached entry (and as many deletions) may wait at once.
            tx_queue_size: limit.saturating_mul(2).max(1024),
            refresh_time: Duration::from_secs(u64::from(sync.refresh_time)),
        };
        Node {
            internal_ct: Cache::new(limit),
            internal_exp: Cache::new(limit),
            external_ct: Cache::new(limit),
            external_exp: Cache::new(limit),
            engine: Engine::new(params, now),
            counters: Counters::default(),
            started: now,
            links: Vec::new(),
            runtime: render::RuntimeView::default(),
            purge_at: None,
            commit: None,
            cfg,
        }
    }

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

    pub fn external_disabled(&self) -> bool {
        self.sync().disable_external_cache
    }

    /// NOTRACK with DisableInternalCache: the internal cache only stages
    /// changes until they are sent.
    pub fn internal_disabled(&self) -> bool {
        self.sync().disable_internal_cache
    }

    pub fn source(&self) -> Internal<'_> {
        Internal {
            ct: &self.internal_ct,
            exp: &self.internal_exp,
        }
    }

    // ===== the kernel side =====

    /// One kernel event or dump entry.
    pub fn kernel(&mut self, now: Instant, msg: Message, origin: Origin) {
        self.counters.events_received += 1;
        if origin == Origin::Inject {
            // Our own injection of the peer's state: not ours to sync.
            return;
        }
        let send = origin == Origin::NotMe;
        match msg.object {
            Object::Ct(ct) => self.kernel_ct(now, msg.kind, ct, send),
            Object::Exp(x) => self.kernel_exp(now, msg.kind, x, send),
        }
    }

    fn kernel_ct(
        &mut self,
        now: Instant,
        kind: Kind,
        mut ct: Conntrack,
        send: bool,
    ) {
        let key = ct_key_of(&ct);
        if kind == Kind::Destroy {
            if let Some(c) = ct.counters {
                self.counters.traffic_bytes += c.orig_bytes + c.reply_bytes;
                self.counters.traffic_packets +=
                    c.orig_packets + c.reply_packets;
            }
            if self.internal_ct.remove(&key).is_some()
                || self.internal_disabled()
            {
                if send {
                    self.engine.local_change(Key::Ct(key), false);
                }
                // The kernel drops a master's expectations with it.
                self.purge_expectations_of(&key, send);
            }
            return;
        }
        if !filter::conntrack(&self.cfg.general.filter, &ct) {
            self.counters.events_filtered += 1;
            return;
        }
        // Merge: keep what this event does not carry.
        if let Some(old) = self.internal_ct.get(&key).map(|e| e.value) {
            ct.helper = ct.helper.take().or_else(|| old.helper.clone());
            ct.master = ct.master.or(old.master);
            ct.timeout = ct.timeout.or(old.timeout);
            ct.labels = ct.labels.or(old.labels);
            ct.seq_adj = ct.seq_adj.or(old.seq_adj);
        }
        ct.counters = None;
        let new = kind == Kind::New;
        match self.internal_ct.upsert(&ct, now, new) {
            Ok(Upsert::Created) | Ok(Upsert::Updated) if send => {
                self.engine.local_change(Key::Ct(key), new);
            }
            _ => {}
        }
    }

    fn kernel_exp(&mut self, now: Instant, kind: Kind, x: Expect, send: bool) {
        if !self.expectations() {
            return;
        }
        let key = exp_key_of(&x);
        if kind == Kind::Destroy {
            if self.internal_exp.remove(&key).is_some() && send {
                self.engine.local_change(Key::Exp(Box::new(key)), false);
            }
            return;
        }
        if !filter::expectation_helper(&self.sync().expectation_sync, &x) {
            self.counters.events_filtered += 1;
            return;
        }
        // Replicated only with its master (conntrackd's ct_filter_master);
        // without an internal cache the master need only be known to the
        // kernel, which created this expectation from it (fixes §6.6).
        let master = CtKey {
            orig: x.master,
            zone: x.zone,
        };
        if !self.internal_disabled() && !self.internal_ct.contains(&master) {
            return;
        }
        let new = kind == Kind::New;
        if self.internal_exp.upsert(&x, now, new).is_ok() && send {
            self.engine.local_change(Key::Exp(Box::new(key)), new);
        }
    }

    fn purge_expectations_of(&mut self, master: &CtKey, send: bool) {
        let gone: Vec<ExpKey> = self
            .internal_exp
            .keys()
            .filter(|k| k.master == master.orig && k.zone == master.zone)
            .collect();
        for k in gone {
            self.internal_exp.remove(&k);
            if send {
                self.engine.local_change(Key::Exp(Box::new(k)), false);
            }
        }
    }

    /// The result of a kernel dump (start-up, `-R`, overrun resync).
    /// Entries no longer in the kernel leave the internal cache; with
    /// `send`, every change is also sent (overrun resync).
    pub fn resync_kernel(
        &mut self,
        now: Instant,
        objects: Vec<Object>,
        conntracks: bool,
        expectations: bool,
        send: bool,
    ) {
        let mut seen_ct = std::collections::HashSet::new();
        let mut seen_exp = std::collections::HashSet::new();
        // Conntracks before expectations: masters must be cached first.
        let (cts, exps): (Vec<Object>, Vec<Object>) = objects
            .into_iter()
            .partition(|o| matches!(o, Object::Ct(_)));
        for o in cts.into_iter().chain(exps) {
            let origin = if send { Origin::NotMe } else { Origin::Flush };
            match &o {
                Object::Ct(c) => {
                    seen_ct.insert(ct_key_of(c));
                }
                Object::Exp(x) => {
                    seen_exp.insert(exp_key_of(x));
                }
            }
            self.kernel(
                now,
                Message {
                    kind: Kind::Update,
                    object: o,
                    port: 0,
                    seq: 0,
                },
                origin,
            );
        }
        if conntracks {
            let stale: Vec<CtKey> = self
                .internal_ct
                .keys()
                .filter(|k| !seen_ct.contains(k))
                .collect();
            for k in stale {
                self.internal_ct.remove(&k);
                if send {
                    self.engine.local_change(Key::Ct(k), false);
                }
            }
        }
        if expectations {
            let stale: Vec<ExpKey> = self
                .internal_exp
                .keys()
                .filter(|k| !seen_exp.contains(k))
                .collect();
            for k in stale {
                self.internal_exp.remove(&k);
                if send {
                    self.engine.local_change(Key::Exp(Box::new(k)), false);
                }
            }
        }
    }

    /// The event socket lost events; the caller schedules a resync.
    pub fn overrun(&mut self) {
        self.counters.overruns += 1;
        self.counters.catch_event_failed += 1;
    }

    // ===== the peer side =====

    /// One datagram from the peer. Returns injection actions when the
    /// external cache is disabled. `Err` is counted in `-s network`.
    pub fn datagram(
        &mut self,
        now: Instant,
        peer: u64,
        bytes: &[u8],
    ) -> Result<Vec<Action>, crate::wire::Error> {
        let src = Internal {
            ct: &self.internal_ct,
            exp: &self.internal_exp,
        };
        self.engine.recv(now, peer, bytes, &src)?;
        let mut actions = Vec::new();
        while let Some(a) = self.engine.pop_apply() {
            if self.external_disabled() {
                actions.push(Action::Inject(Box::new(a)));
            } else {
                self.apply_external(now, a);
            }
        }
        Ok(actions)
    }

    fn apply_external(&mut self, now: Instant, a: Apply) {
        match a {
            Apply::Ct { ct, new } => {
                let _ = self.external_ct.upsert(&ct, now, new);
            }
            Apply::CtDel(k) => {
                if self.external_ct.remove(&k).is_some() {
                    // Expectations of a gone master are gone too.
                    let gone: Vec<ExpKey> = self
                        .external_exp
                        .keys()
                        .filter(|e| e.master == k.orig && e.zone == k.zone)
                        .collect();
                    for e in gone {
                        self.external_exp.remove(&e);
                    }
                }
            }
            Apply::Exp { exp, new } => {
                let _ = self.external_exp.upsert(&exp, now, new);
            }
            Apply::ExpDel(k) => {
                self.external_exp.remove(&k);
            }
        }
    }

    /// The next datagram to send.
    pub fn transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let src = Internal {
            ct: &self.internal_ct,
            exp: &self.internal_exp,
        };
        let n = self.engine.poll_transmit(now, &src, buf);
        if n.is_none()
            && self.internal_disabled()
            && self.engine.queue_lengths().0 == 0
        {
            // Bypass: everything staged has been sent.
            self.internal_ct.flush();
            self.internal_exp.flush();
        }
        n
    }

    // ===== timers =====

    /// When [`Node::tick`] must run next.
    pub fn poll_at(&self) -> Instant {
        let e = self.engine.poll_at();
        self.purge_at.map_or(e, |p| p.min(e))
    }

    /// Periodic work: the engine's timers, ALARM expiry, the `-t` purge.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let src = Internal {
            ct: &self.internal_ct,
            exp: &self.internal_exp,
        };
        self.engine.handle_timeout(now, &src);
        if self.sync().mode == Mode::Alarm {
            let life =
                Duration::from_secs(u64::from(self.sync().cache_timeout));
            self.external_ct.expire(now, life);
            self.external_exp.expire(now, life);
        }
        match self.purge_at {
            Some(at) if now >= at => {
                self.purge_at = None;
                log::info!("flushing kernel conntrack table (scheduled)");
                self.counters.kernel_flushes += 1;
                self.internal_ct.flush();
                vec![Action::FlushKernel {
                    conntracks: true,
                    expectations: false,
                }]
            }
            _ => Vec::new(),
        }
    }

    // ===== control requests =====

    /// Whether a commit is running (between `-c` and [`Node::commit_done`]).
    pub fn committing(&self) -> bool {
        self.commit.is_some()
    }

    /// Handles one control request.
    pub fn control(&mut self, now: Instant, req: Request) -> Outcome {
        match req {
            Request::Kill => Outcome::done(None).act(Action::Shutdown),
            Request::Commit(target) => self.commit_start(now, target),
            Request::FlushCache(sel) => self.flush_cache(sel),
            Request::FlushKernel(target) => {
                let (ct, exp) = self.targets(target);
                if ct {
                    log::info!("flushing kernel conntrack table");
                    self.counters.kernel_flushes += 1;
                }
                if exp {
                    log::info!("flushing kernel expect table");
                }
                Outcome::done(None).act(Action::FlushKernel {
                    conntracks: ct,
                    expectations: exp,
                })
            }
            Request::ResyncKernel(target) => {
                if self.internal_disabled() {
                    log::info!("resync is unsupported in this mode");
                    return Outcome::status(Status::NotSupported("resync is unsupported in this mode (DisableInternalCache)".into()));
                }
                let (ct, exp) = self.targets(target);
                if ct {
                    log::info!("resync with master conntrack table");
                    self.counters.kernel_resyncs += 1;
                }
                if exp {
                    log::info!("resync with master expect table");
                }
                Outcome::done(None).act(Action::ResyncKernel {
                    conntracks: ct,
                    expectations: exp,
                    send: false,
                })
            }
            Request::BulkSend => {
                if self.sync().mode == Mode::Alarm {
                    return Outcome::status(Status::NotSupported(
                        "-B does nothing in ALARM mode".into(),
                    ));
                }
                log::info!("sending bulk update");
                if self.internal_disabled() {
                    let exp = self.expectations();
                    return Outcome::done(None).act(Action::ResyncKernel {
                        conntracks: true,
                        expectations: exp,
                        send: true,
                    });
                }
                let src = Internal {
                    ct: &self.internal_ct,
                    exp: &self.internal_exp,
                };
                self.engine.bulk(&src);
                Outcome::done(None)
            }
            Request::RequestResync => {
                if !self.engine.request_resync() {
                    return Outcome::status(Status::NotSupported(
                        "-n does nothing in ALARM mode".into(),
                    ));
                }
                log::info!("resync requested");
                Outcome::done(None)
            }
            Request::ResetTimers => {
                if self.purge_at.is_none() {
                    let secs = self.sync().purge_timeout;
                    log::info!("flushing conntrack table in {secs} secs");
                    self.purge_at =
                        Some(now + Duration::from_secs(u64::from(secs)));
                }
                Outcome::done(None)
            }
            Request::Dump {
                cache,
                table,
                format,
            } => self.dump(now, cache, table, format),
            Request::Stats { view, format } => self.stats(now, view, format),
        }
    }

    fn targets(&self, t: Target) -> (bool, bool) {
        let exp = self.expectations();
        match t {
            Target::All => (true, exp),
            Target::Ct => (true, false),
            Target::Expect => (false, exp),
        }
    }

    fn flush_cache(&mut self, sel: CacheSel) -> Outcome {
        if self.committing() && sel != CacheSel::Internal {
            log::error!("ignoring flush command, commit still in progress");
            return Outcome::status(Status::Refused(
                "commit still in progress".into(),
            ));
        }
        // Any of these cancels a pending -t purge (conntrackd 1.4.6+).
        self.purge_at = None;
        let mut actions = Vec::new();
        match sel {
            CacheSel::All => {
                log::info!("flushing caches");
                if self.internal_disabled() {
                    actions.push(Action::FlushKernel {
                        conntracks: true,
                        expectations: self.expectations(),
                    });
                }
                self.internal_ct.flush();
                self.internal_exp.flush();
                self.external_ct.flush();
                self.external_exp.flush();
            }
            CacheSel::Internal => {
                log::info!("flushing internal cache");
                if self.internal_disabled() {
                    actions.push(Action::FlushKernel {
                        conntracks: true,
                        expectations: false,
                    });
                }
                self.internal_ct.flush();
            }
            CacheSel::External => {
                log::info!("flushing external cache");
                self.external_ct.flush();
            }
        }
        Outcome::done(None)
    }

    fn commit_start(&mut self, now: Instant, target: Target) -> Outcome {
        match target {
            Target::All => log::info!("committing all external caches"),
            Target::Ct => log::info!("committing conntrack cache"),
            Target::Expect => log::info!("committing expectation cache"),
        }
        if self.external_disabled() {
            // Nothing is cached: the peer's state is in the kernel already.
            return Outcome::done(None);
        }
        if self.commit.is_some() {
            log::info!("commit already in progress, skipping");
            return Outcome::status(Status::Refused(
                "commit already in progress".into(),
            ));
        }
        self.purge_at = None;
        let (ct, exp) = self.targets(target);
        let rules = CommitRules {
            commit_timeout: self.sync().commit_timeout,
            tcp_window_tracking: self.sync().tcp_window_tracking,
        };
        let age = |updated: Instant| {
            now.since(updated).as_secs().min(u64::from(u32::MAX)) as u32
        };
        let cts = self
            .external_ct
            .iter()
            .filter(|_| ct)
            .map(|e| (e.value, age(e.updated)));
        let exps = self
            .external_exp
            .iter()
            .filter(|_| exp)
            .map(|e| (e.value, age(e.updated)));
        let plan = commit::plan(cts, exps, &rules);
        self.commit = Some(Running {
            started: now,
            target,
        });
        Outcome {
            replies: Vec::new(),
            actions: vec![Action::Commit(plan)],
        }
    }

    /// The commit's outcome: one errno per planned entry. Logs
    /// conntrackd's lines and returns the client's final frame.
    pub fn commit_done(
        &mut self,
        now: Instant,
        ct_errs: &[i32],
        exp_errs: &[i32],
    ) -> Vec<Reply> {
        let Some(run) = self.commit.take() else {
            return vec![Reply::Done(Status::Ok)];
        };
        let took =
            |d: Duration| format!("{}.{:06}", d.as_secs(), d.subsec_micros());
        let elapsed = now.since(run.started);
        let (ct_ok, ct_fail) = split(ct_errs);
        let (exp_ok, exp_fail) = split(exp_errs);
        self.counters.commit_ok += (ct_ok + exp_ok) as u64;
        self.counters.commit_fail += (ct_fail + exp_fail) as u64;
        if run.target != Target::Expect {
            log::info!("Committed {ct_ok} new entries");
            if ct_fail > 0 {
                log::info!("{ct_fail} entries can't be committed");
            }
            log::info!("commit has taken {} seconds", took(elapsed));
        }
        if run.target != Target::Ct && self.expectations() {
            log::info!("Committed {exp_ok} new expectations");
            if exp_fail > 0 {
                log::info!("{exp_fail} expectations can't be committed");
            }
            log::info!("commit has taken {} seconds", took(elapsed));
        }
        let mut out = vec![];
        if ct_fail + exp_fail > 0 {
            out.push(Reply::Done(Status::Failed(format!(
                "{ct_fail} entries and {exp_fail} expectations can't be committed"
            ))));
        } else {
            out.push(Reply::Done(Status::Ok));
        }
        out
    }

    /// The outcome of injected changes (DisableExternalCache).
    pub fn injected(&mut self, errno: i32) {
        if errno == 0 {
            self.counters.inject_ok += 1;
        } else {
            self.counters.inject_fail += 1;
        }
    }

    fn dump(
        &mut self,
        now: Instant,
        cache: Which,
        table: Table,
        format: Format,
    ) -> Outcome {
        if table == Table::Expect
            && !self.expectations()
            && format != Format::Xml
        {
            return Outcome::done(None);
        }
        if cache == Which::Internal && self.internal_disabled() {
            return Outcome {
                replies: Vec::new(),
                actions: vec![Action::DumpKernel { table, format }],
            };
        }
        let (ct, exp) = match cache {
            Which::Internal => (&self.internal_ct, &self.internal_exp),
            Which::External => (&self.external_ct, &self.external_exp),
        };
        let external = cache == Which::External;
        let alarm_expiry = (external && self.sync().mode == Mode::Alarm)
            .then(|| Duration::from_secs(u64::from(self.sync().cache_timeout)));
        let text = match table {
            Table::Ct => {
                render::ct_dump(ct, now, format, external, alarm_expiry)
            }
            Table::Expect => render::exp_dump(exp, now, format, alarm_expiry),
        };
        Outcome::done(Some(text))
    }

    fn stats(&self, now: Instant, view: StatsView, format: Format) -> Outcome {
        let text = render::stats(self, now, view, format);
        Outcome::done(Some(text))
    }

    /// `ExpectationSync` as configured.
    pub fn expectation_sync(&self) -> &ExpectationSync {
        &self.sync().expectation_sync
    }
}

fn split(errs: &[i32]) -> (usize, usize) {
    let ok = errs.iter().filter(|&&e| e == 0).count();
    (ok, errs.len() - ok)
}

#[cfg(test)]
mod test;
