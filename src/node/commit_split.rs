//! A large commit in batches, so that the worker is never idle while
//! the loop plans (a plan decodes every entry it holds: about 1 µs each
//! on the bench machine, against 4 µs of kernel time to create one).
//!
//! 1. at once: every expectation and the [`FIRST_JOB`] most recently
//!    updated conntracks with the masters they need, picked from the
//!    slots' timestamps without decoding the rest (about 2 ms: the active
//!    flows wait for nothing else);
//! 2. on the loop's next turn, while the worker commits the first job: a
//!    copy of the external conntracks in stored form, most recent first
//!    ([`ByRecency`], about 15 ms for 100 000, the one wait of the
//!    worker), and its first batch of [`FIRST_BATCH`];
//! 3. then one batch per turn, each [`GROWTH`] times the last up to
//!    [`MAX_BATCH`], planned while the worker commits the one before:
//!    never more than [`IN_FLIGHT`] jobs wait for the kernel, so at most
//!    two batches are ever held decoded.
//!
//! The commit takes the cache as it was when the copy was made (what a
//! conntrackd commit, which holds its loop, takes too); entries the first
//! job committed are skipped. Every RELATED conntrack's master goes in
//! the same job or an earlier one, so it exists when the RELATED entry is
//! created: a master due in a later batch is pulled into the child's
//! (with its own master, when it is RELATED too) and skipped when its own
//! turn comes. conntrackd's log lines and the
//! client's reply cover the whole commit (`jobs::commit_part_done`),
//! given once every job has ended, whatever the order their completions
//! came in (a refused job's comes at once).

use std::collections::{HashSet, VecDeque};

use super::control::age_secs;
use super::{ClientId, Job, Node, Purpose, Running, Work};
use crate::cache::{ByRecency, Entry};
use crate::control::proto::Target;
use crate::kernel::commit::{self, CommitRules};
use crate::model::Conntrack;
use crate::time::Instant;
use crate::wire::{CtKey, ct_key_of};

/// Conntracks in the first job: its first stage alone. A first job of
/// 4096, planned in 15 ms on the bench machine, covered the copy's time
/// but held the active flows back by as much (the commit gap rose from
/// 24 to 47–62 ms); the worker's one wait for the copy costs less.
pub(super) const FIRST_JOB: usize = commit::FIRST_STAGE;

/// A commit of more external conntracks than this is split (below, a
/// plan takes too little time to hide).
pub(super) const SPLIT_ABOVE: usize = 4 * FIRST_JOB;

/// The first batch taken from the copy: planned in about a millisecond.
pub(super) const FIRST_BATCH: usize = 1024;
/// Each batch is this many times the one before (a batch is planned in
/// about a quarter of the time the kernel takes to create the one
/// before)…
pub(super) const GROWTH: usize = 4;
/// …up to this many conntracks (about 5 MB decoded).
pub(super) const MAX_BATCH: usize = 16 * 1024;
/// Commit jobs handed to the worker and not yet done: one it works on,
/// one waiting, so it goes on at once when it ends the first.
pub(super) const IN_FLIGHT: usize = 2;

/// A split commit while its jobs run: what they hold, and their
/// outcomes once in.
#[derive(Debug)]
pub(super) struct SplitCommit {
    pub client: ClientId,
    /// Conntracks committed out of their turn, which later batches skip:
    /// the first job's, and masters pulled into a RELATED entry's batch.
    pub keys: HashSet<CtKey>,
    /// The external conntracks, most recent first, taken on the turn
    /// after the first job (dropped once every batch is planned).
    pub snapshot: Option<ByRecency<Conntrack>>,
    /// Conntracks the next batch takes from it.
    pub batch: usize,
    /// The last job is planned: nothing more to do but wait.
    pub last_planned: bool,
    /// Each early job not yet done: its batch number and its planned
    /// conntracks and expectations (a failed job counts them as failed).
    pub pending: VecDeque<(u32, (usize, usize))>,
    /// The next early job's batch number.
    pub next_batch: u32,
    /// Planned by the early jobs, together.
    pub planned: (usize, usize),
    /// The early jobs' errnos (conntracks, expectations) and per-stage
    /// microseconds, together.
    pub done: Option<(Vec<i32>, Vec<i32>, [u32; 2])>,
    /// The last job's errnos and times (none: it failed as a whole), when
    /// it ended before an early one: refused by the worker's full queue,
    /// it comes back at once. The commit ends when every job is in.
    pub last: Option<JobOutcome>,
}

/// A commit job's errnos (conntracks, expectations) and per-stage
/// microseconds (none: it failed as a whole).
pub(super) type JobOutcome = (Vec<i32>, Vec<i32>, Option<[u32; 2]>);

impl SplitCommit {
    /// What early job `batch` planned, while it is not done.
    pub(super) fn share(&self, batch: u32) -> (usize, usize) {
        self.pending
            .iter()
            .find(|(b, _)| *b == batch)
            .map_or((0, 0), |(_, share)| *share)
    }

    /// Early job `batch` ended: its errnos and times join the others'.
    pub(super) fn part_done(
        &mut self,
        batch: u32,
        mut cts: Vec<i32>,
        mut exps: Vec<i32>,
        took_us: [u32; 2],
    ) {
        self.pending.retain(|(b, _)| *b != batch);
        let (c, x, t) = self.done.get_or_insert_default();
        c.append(&mut cts);
        x.append(&mut exps);
        *t = [
            t[0].saturating_add(took_us[0]),
            t[1].saturating_add(took_us[1]),
        ];
    }
}

impl Node {
    /// A large commit's first job: the expectations, the most recently
    /// updated conntracks and the masters they need, picked without
    /// decoding the rest, so that they reach the kernel while the rest is
    /// planned (on the next turns, [`Node::commit_rest`]).
    pub(super) fn commit_first_part(
        &mut self,
        now: Instant,
        client: ClientId,
        target: Target,
        exp: bool,
        rules: &CommitRules,
    ) {
        let age = |updated: Instant| age_secs(now, updated);
        let recent = self.external_ct.most_recent(FIRST_JOB);
        let exps: Vec<_> = self
            .external_exp
            .iter()
            .filter(|_| exp)
            .map(|e| (e.value, age(e.updated)))
            .collect();
        let exp_masters: Vec<CtKey> = exps
            .iter()
            .map(|(x, _)| CtKey {
                orig: x.master,
                zone: x.zone,
            })
            .collect();
        let mut keys: HashSet<CtKey> = HashSet::new();
        let first = self.with_masters(now, recent, exp_masters, &mut keys);
        let plan = commit::plan_active_first(first, exps, rules);
        let planned = (plan.cts.len(), plan.exps.len());
        self.commit = Some(Running {
            started: now,
            target,
            planned,
        });
        self.pause_new_events();
        self.commit_first = Some(SplitCommit {
            client,
            keys,
            snapshot: None,
            batch: FIRST_BATCH,
            last_planned: false,
            pending: VecDeque::from([(0, planned)]),
            next_batch: 1,
            planned,
            done: None,
            last: None,
        });
        self.out.jobs.push(Job {
            purpose: Purpose::CommitFirst { client, batch: 0 },
            work: Work::Commit(plan),
        });
    }

    /// `entries` not yet in `keys`, then the masters of the RELATED ones
    /// among them and `more_masters`, where cached and not in `keys`
    /// either, and the masters of those up each chain (an expectation's
    /// master may be RELATED itself: H.323's H.245 channel); all of them
    /// go into `keys`, which also ends a cycle. Each with its age and
    /// recency, as a plan takes them.
    fn with_masters(
        &self,
        now: Instant,
        entries: Vec<Entry<Conntrack>>,
        more_masters: Vec<CtKey>,
        keys: &mut HashSet<CtKey>,
    ) -> Vec<(Conntrack, u32, u64)> {
        let age = |updated: Instant| age_secs(now, updated);
        let mut masters = more_masters;
        let mut out = Vec::with_capacity(entries.len() + masters.len());
        for e in entries {
            if keys.insert(ct_key_of(&e.value)) {
                if let Some(orig) = e.value.master {
                    masters.push(CtKey {
                        orig,
                        zone: e.value.zone,
                    });
                }
                out.push((e.value, age(e.updated), e.updated.millis()));
            }
        }
        // In order; a pulled master's own master joins the end.
        let mut next = 0;
        while let Some(&k) = masters.get(next) {
            next += 1;
            if !keys.contains(&k)
                && let Some(e) = self.external_ct.get(&k)
            {
                keys.insert(k);
                if let Some(orig) = e.value.master {
                    masters.push(CtKey {
                        orig,
                        zone: e.value.zone,
                    });
                }
                out.push((e.value, age(e.updated), e.updated.millis()));
            }
        }
        out
    }

    /// A split commit's next batch can be planned: some remain, and the
    /// worker has fewer than [`IN_FLIGHT`] of its jobs.
    pub(super) fn commit_rest_due(&self) -> bool {
        self.commit_first
            .as_ref()
            .is_some_and(|f| !f.last_planned && f.pending.len() < IN_FLIGHT)
    }

    /// The next batch of a split commit, one per turn, most recent first:
    /// an early job, or the last one when the copy is used up.
    pub(super) fn commit_rest(&mut self, now: Instant) {
        if !self.commit_rest_due() {
            return;
        }
        let rules = self.commit_rules();
        let Some(mut part) = self.commit_first.take() else {
            return;
        };
        let client = part.client;
        let mut snapshot = part
            .snapshot
            .take()
            .unwrap_or_else(|| self.external_ct.by_recency());
        let cts =
            self.batch(now, &rules, part.batch, &mut snapshot, &mut part.keys);
        part.batch = part.batch.saturating_mul(GROWTH).min(MAX_BATCH);
        let plan = commit::plan_in_order(cts);
        let planned = (plan.cts.len(), 0);
        if let Some(run) = self.commit.as_mut() {
            run.planned.0 += planned.0;
        }
        let purpose = if snapshot.remaining() == 0 {
            part.last_planned = true;
            Purpose::Commit { client }
        } else {
            part.snapshot = Some(snapshot);
            let batch = part.next_batch;
            part.next_batch += 1;
            part.pending.push_back((batch, planned));
            part.planned.0 += planned.0;
            Purpose::CommitFirst { client, batch }
        };
        self.commit_first = Some(part);
        self.out.jobs.push(Job {
            purpose,
            work: Work::Commit(plan),
        });
    }

    /// The next `n` conntracks of the copy not committed yet, prepared,
    /// with the masters of the RELATED ones among them that a later
    /// batch holds (or that came into the cache after the copy), and
    /// theirs up each chain, which go into `keys`.
    fn batch(
        &self,
        now: Instant,
        rules: &CommitRules,
        n: usize,
        snapshot: &mut ByRecency<Conntrack>,
        keys: &mut HashSet<CtKey>,
    ) -> Vec<Conntrack> {
        let mut out = Vec::with_capacity(n.min(snapshot.remaining()));
        let mut masters = Vec::new();
        let mut add = |mut c: Conntrack, updated: Instant| {
            commit::prepare_in_place(&mut c, age_secs(now, updated), rules);
            out.push(c);
        };
        let mut taken = 0;
        while taken < n {
            let Some((_, c, updated)) = snapshot.next_entry() else {
                break;
            };
            if keys.contains(&ct_key_of(&c)) {
                continue;
            }
            if let Some(orig) = c.master {
                masters.push(CtKey { orig, zone: c.zone });
            }
            add(c, updated);
            taken += 1;
        }
        let end = snapshot.taken();
        let mut next = 0;
        while let Some(&m) = masters.get(next) {
            next += 1;
            if keys.contains(&m) {
                continue;
            }
            let pulled = match snapshot.position(&m) {
                // An earlier batch's, or this one's.
                Some(pos) if pos < end => None,
                Some(pos) => snapshot.get(pos),
                None => self.external_ct.get(&m).map(|e| (e.value, e.updated)),
            };
            if let Some((c, updated)) = pulled {
                keys.insert(m);
                if let Some(orig) = c.master {
                    masters.push(CtKey { orig, zone: c.zone });
                }
                add(c, updated);
            }
        }
        out
    }
}
