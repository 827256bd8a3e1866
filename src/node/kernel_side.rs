//! The kernel side of a node: events into the internal cache (filtered,
//! merged, sent to the peer when they are not our own doing, tracked for
//! the resync under way: `node::resync`) and overruns.

use std::time::Duration;

use super::{Job, Node, Purpose, Work, polling};
use crate::cache::Upsert;
use crate::config::OverrunResync;
use crate::filter;
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::{Conntrack, Expect, ProtoInfo, status};
use crate::sync::Key;
use crate::time::Instant;
use crate::wire::{CtKey, ExpKey, ct_key_of, exp_key_of};

/// Expectations waiting for their master's check, by the id their
/// `Purpose::MasterCheck` carries (a job refused by a full queue
/// completes before the jobs ahead of it, so order is not enough).
#[derive(Debug, Default)]
pub(super) struct MasterChecks {
    /// (id, expectation, new, send, event)
    waiting: std::collections::VecDeque<(u32, Expect, bool, bool, bool)>,
    next: u32,
}
/// Most expectations waiting for a master check.
const MAX_MASTER_CHECKS: usize = 4096;

/// After an overrun's resync failed, the next is tried this much later
/// (without an explicit `NetlinkOverrunResync`).
const OVERRUN_RETRY: Duration = Duration::from_secs(5);

/// After an overrun, the burst is over once no event came for this long.
pub(super) const BURST_QUIET: Duration = Duration::from_millis(200);
/// … or at the latest this long after its first overrun.
pub(super) const BURST_MAX: Duration = Duration::from_secs(30);

impl Node {
    /// An event from the kernel's event socket (`event`), or a conntrack
    /// read back in its place (a [`Node::refresh_master`]).
    pub(super) fn kernel_event(
        &mut self,
        now: Instant,
        mut msg: Message,
        origin: Origin,
        event: bool,
    ) {
        self.burst_goes_on(now);
        if let Object::Exp(x) = &mut msg.object {
            // Before its key is taken for the resync's marks.
            self.stamp_master_zone(x);
        }
        // During a resync: whether the entry is in the kernel after this
        // event, for the sweep at the dump's end.
        let mut held = None;
        if let Some(run) = self.resync.as_mut() {
            let destroyed = msg.kind == Kind::Destroy;
            let h = Held::of(&msg.object);
            match &h {
                Held::Ct(k) if destroyed => {
                    run.gone_ct.insert(*k);
                }
                Held::Ct(k) => {
                    run.gone_ct.remove(k);
                    run.touched_ct.insert(*k);
                }
                Held::Exp(k) if destroyed => {
                    run.gone_exp.insert(*k);
                }
                Held::Exp(k) => {
                    run.gone_exp.remove(k);
                    run.touched_exp.insert(*k);
                }
            }
            held = Some((h, !destroyed));
        }
        self.kernel(now, msg, origin, event);
        // After the event is handled: an entry it creates is new, and
        // unmarked, until then.
        if let Some((h, in_kernel)) = held {
            self.mark_held(&h, in_kernel);
        }
    }

    /// Marks a cached entry as in the kernel (or not) for the resync
    /// under way; nothing when it is not cached.
    pub(super) fn mark_held(&mut self, h: &Held, in_kernel: bool) {
        match h {
            Held::Ct(k) => self.internal_ct.mark(k, in_kernel),
            Held::Exp(k) => self.internal_exp.mark(k, in_kernel),
        };
    }

    /// One kernel event or dump entry (`event` false: only events count
    /// in `events received` and `events filtered`, as in conntrackd,
    /// whose dump handler counts neither).
    pub(super) fn kernel(
        &mut self,
        now: Instant,
        msg: Message,
        origin: Origin,
        event: bool,
    ) {
        if event {
            self.counters.events_received += 1;
        }
        if origin == Origin::Inject {
            // Our own injection of the peer's state: not ours to sync.
            return;
        }
        let send = origin == Origin::NotMe;
        match msg.object {
            Object::Ct(ct) => self.kernel_ct(now, msg.kind, ct, send, event),
            Object::Exp(x) => self.kernel_exp(now, msg.kind, x, send, event),
        }
    }

    /// Counts an event the bypass (no internal cache) sent, in
    /// `internal bypass:` as conntrackd counts its events.
    fn bypassed(&mut self, ct: bool, change: Kind, event: bool) {
        if !event || !self.internal_disabled() {
            return;
        }
        let b = if ct {
            &mut self.counters.bypass_ct
        } else {
            &mut self.counters.bypass_exp
        };
        match change {
            Kind::New => b.new += 1,
            Kind::Update => b.updated += 1,
            Kind::Destroy => b.destroyed += 1,
        }
    }

    /// A conntrack's event (`event`) or dump entry.
    pub(super) fn kernel_ct(
        &mut self,
        now: Instant,
        kind: Kind,
        mut ct: Conntrack,
        send: bool,
        event: bool,
    ) {
        let key = ct_key_of(&ct);
        if kind == Kind::Destroy {
            // A read back under way is older than this, and so is a
            // master check: its expectations died with it.
            self.refreshes.destroyed(&key);
            self.master_checks.waiting.retain(|w| {
                CtKey {
                    orig: w.1.master,
                    zone: w.1.zone,
                } != key
            });
            // Without an internal cache, only a flow the Filter could
            // have let through (conntrackd filters every event before its
            // bypass).
            if self.internal_ct.take(&key).is_some()
                || self.purged_ct.remove(&key)
                || (self.internal_disabled()
                    && filter::conntrack_end(&self.cfg.general.filter, &ct))
            {
                // Only a flow this node replicates counts as traffic
                // processed (conntrackd's `update_traffic_stats` after a
                // delete that found the entry).
                if let Some(c) = ct.counters {
                    self.counters.traffic_bytes += c.orig_bytes + c.reply_bytes;
                    self.counters.traffic_packets +=
                        c.orig_packets + c.reply_packets;
                }
                if send {
                    self.engine.local_change(Key::Ct(key), false);
                    self.bypassed(true, kind, event);
                }
                // The kernel drops a master's expectations with it.
                self.purge_expectations_of(&key, send);
            }
            return;
        }
        if !filter::conntrack(&self.cfg.general.filter, &ct) {
            if event {
                self.counters.events_filtered += 1;
            }
            return;
        }
        // Neither counters nor timestamps are replicated.
        ct.counters = None;
        ct.timestamp = None;
        let new = kind == Kind::New;
        let polled = self.poll_period().is_some();
        let mut unchanged = false;
        let stored =
            self.internal_ct
                .upsert_merged(&mut ct, now, new, |old, ct| {
                    // A NEW is a new flow with all its state (a tuple
                    // reused after a DESTROY an overrun lost): nothing of
                    // the old one is its own (conntrackd deletes and
                    // inserts).
                    if new {
                        return;
                    }
                    // Merge: keep what this event does not carry (the
                    // TCP, SCTP or DCCP state comes only with a change of
                    // it, IPCT_PROTOINFO: a mark's or an ASSURED bit's
                    // UPDATE has none).
                    if ct.proto_info == ProtoInfo::None {
                        ct.proto_info = old.proto_info;
                    }
                    ct.helper = ct.helper.take().or_else(|| old.helper.clone());
                    ct.master = ct.master.or(old.master);
                    ct.timeout = if ct.status & status::OFFLOADED != 0 {
                        // In a flowtable the kernel holds the timeout at
                        // a placeholder (about a day, renewed) that says
                        // nothing of the flow's packets, and puts the
                        // protocol's own back when the flow leaves it.
                        // The cache keeps what the last real state said:
                        // what a packet sets, and an offloaded flow
                        // carried one lately. Committed with the
                        // placeholder, a UDP flow that ended would stay a
                        // day on the new primary, and a TCP one would get
                        // a day instead of its five.
                        old.timeout.or(ct.timeout)
                    } else {
                        ct.timeout.or(old.timeout)
                    };
                    ct.labels = ct.labels.or(old.labels);
                    ct.seq_adj = ct.seq_adj.or(old.seq_adj);
                    // Polling: a dumped entry that did not change is not news.
                    unchanged = polled && !polling::changed(&old, ct);
                    if unchanged {
                        // Nor is it stored with its counted-down timeout:
                        // the cache keeps what the peer was sent.
                        // Anti-entropy hashes the stored entry, and a
                        // timeout rewritten at every poll made every leaf
                        // differ: the whole table resent each period.
                        ct.timeout = old.timeout;
                    }
                });
        match stored {
            Ok(Upsert::Created) | Ok(Upsert::Updated) if send && !unchanged => {
                self.engine.local_change(Key::Ct(key), new);
                self.bypassed(true, kind, event);
            }
            _ => {}
        }
    }

    /// Gives `x` its master's zone, which the kernel leaves out of
    /// expectation events and dumps (there is no CTA_EXPECT_ZONE in
    /// them): the zone of the cached conntrack with the master's tuple,
    /// when none has it in zone 0 (the lowest zone if several do). Left
    /// in zone 0 when the master is not cached: then the expectation is
    /// not replicated (its master is not), or its master has ended.
    pub(super) fn stamp_master_zone(&self, x: &mut Expect) {
        x.zone = master_zone(&self.internal_ct, x.master, x.zone);
    }

    /// An expectation's event (`event`) or dump entry.
    fn kernel_exp(
        &mut self,
        now: Instant,
        kind: Kind,
        x: Expect,
        send: bool,
        event: bool,
    ) {
        // `x` is in its master's zone already: both ways here, an event
        // (`kernel_event`) and a resync's dump entry, stamp it first.
        if !self.expectations() {
            return;
        }
        let key = exp_key_of(&x);
        if kind == Kind::Destroy {
            // Waiting for its master's check, it would be sent after
            // this deletion (the check's read is older).
            self.master_checks
                .waiting
                .retain(|w| exp_key_of(&w.1) != key);
            // Without an internal cache nothing stays staged once sent:
            // every DESTROY the helper list accepts goes, as a
            // conntrack's does (conntrackd's bypass sends them all).
            let cached = self.internal_exp.take(&key).is_some()
                || self.purged_exp.remove(&key)
                || (self.internal_disabled()
                    && filter::expectation_helper(
                        &self.sync().expectation_sync,
                        &x,
                    ));
            if cached && send {
                self.engine.local_change(Key::Exp(Box::new(key)), false);
                self.bypassed(false, kind, event);
            }
            return;
        }
        if !filter::expectation_helper(&self.sync().expectation_sync, &x) {
            if event {
                self.counters.events_filtered += 1;
            }
            return;
        }
        // Replicated only with its master (conntrackd's ct_filter_master):
        // the master must be in the internal cache, which holds what the
        // Filter accepts. Without an internal cache the kernel's master
        // must pass the Filter (read back first: see `master_checked`).
        let master = CtKey {
            orig: x.master,
            zone: x.zone,
        };
        let new = kind == Kind::New;
        if self.internal_disabled() {
            let checks = &mut self.master_checks;
            if checks.waiting.len() >= MAX_MASTER_CHECKS {
                // The worker is this far behind: drop rather than grow.
                self.counters.events_filtered += 1;
                return;
            }
            let id = checks.next;
            checks.next = checks.next.wrapping_add(1);
            checks.waiting.push_back((id, x, new, send, event));
            self.out.jobs.push(Job {
                purpose: Purpose::MasterCheck { id },
                work: Work::Get {
                    orig: master.orig,
                    zone: master.zone,
                },
            });
            return;
        }
        if self.internal_ct.contains(&master) {
            self.replicate_exp(now, x, new, send, event);
        } else if let Some(run) = self.resync.as_mut()
            && !run.gone_ct.contains(&master)
        {
            // A resync's dump is arriving: the master may be in a part
            // still to come (after `-f` every master is), and the dump,
            // read before this event, will not carry the expectation.
            // Held until the dump's end (`Node::take_held_exps`).
            if run.held_exp.len() < super::resync::MAX_HELD_EXP {
                run.held_exp.push((x, new, send, event));
            } else if event {
                self.counters.events_filtered += 1;
            }
        }
    }

    /// The master of the expectation waiting as check `id`, as the
    /// kernel holds it (none: gone, and the expectation with it).
    pub(super) fn master_checked(
        &mut self,
        now: Instant,
        id: u32,
        master: Option<&Conntrack>,
    ) {
        let waiting = &mut self.master_checks.waiting;
        let Some(at) = waiting.iter().position(|w| w.0 == id) else {
            return;
        };
        let Some((_, x, new, send, event)) = waiting.remove(at) else {
            return;
        };
        if master
            .is_some_and(|m| filter::conntrack(&self.cfg.general.filter, m))
        {
            self.replicate_exp(now, x, new, send, event);
        }
    }

    pub(super) fn replicate_exp(
        &mut self,
        now: Instant,
        x: Expect,
        new: bool,
        send: bool,
        event: bool,
    ) {
        let key = exp_key_of(&x);
        let master = CtKey {
            orig: x.master,
            zone: x.zone,
        };
        if self.internal_exp.upsert(&x, now, new).is_ok() && send {
            self.engine.local_change(Key::Exp(Box::new(key)), new);
            let kind = if new { Kind::New } else { Kind::Update };
            self.bypassed(false, kind, event);
            if new && x.nat.is_some() {
                self.refresh_master(master);
            }
        }
    }

    /// Removes `master`'s expectations from the internal cache (sent as
    /// deleted when `send`): found by master, not by a walk over every
    /// expectation's key, which each DESTROY paid (see `cache::groups`).
    pub(super) fn purge_expectations_of(&mut self, master: &CtKey, send: bool) {
        for k in self.internal_exp.take_group(master) {
            if send {
                self.engine.local_change(Key::Exp(Box::new(k)), false);
            }
        }
    }

    /// The event socket lost events: a resync with the kernel follows.
    /// By default as soon as the burst is over (no event for
    /// [`BURST_QUIET`], at most [`BURST_MAX`] after the first overrun);
    /// with an explicit `NetlinkOverrunResync N`, N seconds after the last
    /// overrun (repeated overruns keep postponing it, as in conntrackd).
    pub(super) fn overrun(&mut self, now: Instant, buffer: usize) {
        self.counters.overruns += 1;
        self.overrun_unsent = true;
        self.counters.catch_event_failed += 1;
        self.netlink_buffer = buffer;
        if self.internal_disabled() {
            return;
        }
        match self.cfg.general.netlink_overrun_resync {
            OverrunResync::Off => {}
            OverrunResync::After(secs) => {
                self.overrun_resync_at =
                    Some(now + Duration::from_secs(u64::from(secs)));
            }
            OverrunResync::AfterBurst => {
                let first = *self.burst_since.get_or_insert(now);
                self.overrun_resync_at =
                    Some((now + BURST_QUIET).min(first + BURST_MAX));
            }
        }
    }

    /// An overrun's resync (or one that ran while an overrun was still
    /// unrepaired) failed: the cache still misses what the overrun lost,
    /// so another is tried, after the explicit delay or [`OVERRUN_RETRY`]
    /// (a dump that keeps failing costs one dump and one log line per
    /// delay). Unless an overrun meanwhile scheduled one already.
    pub(super) fn overrun_resync_failed(&mut self, now: Instant) {
        if !self.overrun_unsent
            || self.internal_disabled()
            || self.overrun_resync_at.is_some()
        {
            return;
        }
        let delay = match self.cfg.general.netlink_overrun_resync {
            OverrunResync::Off => return,
            OverrunResync::After(secs) => Duration::from_secs(u64::from(secs)),
            OverrunResync::AfterBurst => OVERRUN_RETRY,
        };
        self.overrun_resync_at = Some(now + delay);
    }

    /// Another event while a burst's resync waits for the quiet: the
    /// burst is not over yet.
    fn burst_goes_on(&mut self, now: Instant) {
        if let (Some(first), Some(_)) =
            (self.burst_since, self.overrun_resync_at)
        {
            self.overrun_resync_at =
                Some((now + BURST_QUIET).min(first + BURST_MAX));
        }
    }
}

/// The cache key of an event's or a dump entry's object.
pub(super) enum Held {
    Ct(CtKey),
    Exp(ExpKey),
}

impl Held {
    pub(super) fn of(o: &Object) -> Held {
        match o {
            Object::Ct(c) => Held::Ct(ct_key_of(c)),
            Object::Exp(x) => Held::Exp(exp_key_of(x)),
        }
    }
}

/// The zone of an expectation of `master` reported in `zone`: `zone`
/// unless it is 0 and `cts` holds no zone-0 conntrack of `master`; then
/// the lowest zone `cts` holds one in, if any ([`Node::stamp_master_zone`];
/// a conntrackd peer's expectations carry no zone either).
pub(super) fn master_zone(
    cts: &crate::cache::Cache<Conntrack>,
    master: crate::model::Tuple,
    zone: u16,
) -> u16 {
    if zone != 0
        || cts.contains(&CtKey {
            orig: master,
            zone: 0,
        })
    {
        return zone;
    }
    let zones = cts.group_keys(&master);
    zones.iter().map(|k| k.zone).min().unwrap_or(0)
}
