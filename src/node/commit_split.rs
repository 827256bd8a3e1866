//! A large commit in three kernel jobs, so that the worker is never idle
//! while the loop plans (a plan decodes every entry it holds: about 50 ms
//! for 100 000 on the bench machine, 30 % of the kernel's own time).
//!
//! 1. at once: every expectation, the [`commit::FIRST_STAGE`] most
//!    recently updated conntracks and the masters they need, picked from
//!    the slots' timestamps without decoding the rest;
//! 2. on the loop's next turn, while the worker commits the first: the
//!    next [`AHEAD`] most recent and their masters (planned in a few
//!    milliseconds);
//! 3. on the turn after, while the worker commits the second: the rest,
//!    most recent first.
//!
//! Every RELATED conntrack's master goes in the same job or an earlier
//! one, so it exists when the RELATED entry is created. conntrackd's log
//! lines and the client's reply cover the whole commit
//! (`jobs::commit_part_done`).

use std::collections::{HashSet, VecDeque};

use super::control::age_secs;
use super::{ClientId, Job, Node, Purpose, Running, Work};
use crate::cache::Entry;
use crate::control::proto::Target;
use crate::kernel::commit::{self, CommitRules};
use crate::model::{Conntrack, Expect};
use crate::time::Instant;
use crate::wire::{CtKey, ct_key_of};

/// A commit of more external conntracks than this is split (below, a
/// plan takes too little time to hide).
pub(super) const SPLIT_ABOVE: usize = 4 * commit::FIRST_STAGE;

/// Conntracks in the second job: enough kernel work (tens of
/// milliseconds) to cover the planning of the rest.
pub(super) const AHEAD: usize = 16 * 1024;

/// A split commit's early jobs: what they hold, and their outcomes once
/// in.
#[derive(Debug)]
pub(super) struct FirstPart {
    pub client: ClientId,
    /// The conntracks the early jobs commit (the later skip them).
    pub keys: HashSet<CtKey>,
    /// The second job is still to be planned (on the next turn)…
    pub ahead_due: bool,
    /// …and the rest (on the turn after).
    pub rest_due: bool,
    /// The planned conntracks and expectations of each early job not yet
    /// done, in job order (a failed job counts them as failed).
    pub pending: VecDeque<(usize, usize)>,
    /// Planned by the early jobs, together.
    pub planned: (usize, usize),
    /// The early jobs' errnos (conntracks, expectations) and per-stage
    /// microseconds, together.
    pub done: Option<(Vec<i32>, Vec<i32>, [u32; 2])>,
}

impl FirstPart {
    /// An early job ended: its errnos and times join the others'.
    pub(super) fn part_done(
        &mut self,
        mut cts: Vec<i32>,
        mut exps: Vec<i32>,
        took_us: [u32; 2],
    ) {
        self.pending.pop_front();
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
        let recent = self.external_ct.most_recent(commit::FIRST_STAGE);
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
        self.commit_first = Some(FirstPart {
            client,
            keys,
            ahead_due: true,
            rest_due: true,
            pending: VecDeque::from([planned]),
            planned,
            done: None,
        });
        self.out.jobs.push(Job {
            purpose: Purpose::CommitFirst { client },
            work: Work::Commit(plan),
        });
    }

    /// `entries` not yet in `keys`, then the masters of the RELATED ones
    /// among them and `more_masters`, where cached and not in `keys`
    /// either; all of them go into `keys`. Each with its age and recency,
    /// as a plan takes them.
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
        for k in masters {
            if !keys.contains(&k)
                && let Some(e) = self.external_ct.get(&k)
            {
                keys.insert(k);
                out.push((e.value, age(e.updated), e.updated.millis()));
            }
        }
        out
    }

    pub(super) fn commit_rest_due(&self) -> bool {
        self.commit_first
            .as_ref()
            .is_some_and(|f| f.ahead_due || f.rest_due)
    }

    /// The next job of a split commit, one per turn: the next [`AHEAD`]
    /// most recent (an early job), then every other external conntrack,
    /// most recent first (the last job).
    pub(super) fn commit_rest(&mut self, now: Instant) {
        if !self.commit_rest_due() {
            return;
        }
        let rules = self.commit_rules();
        let Some(mut first) = self.commit_first.take() else {
            return;
        };
        let no_exps = std::iter::empty::<(Expect, u32)>();
        let client = first.client;
        if first.ahead_due {
            first.ahead_due = false;
            let recent =
                self.external_ct.most_recent(commit::FIRST_STAGE + AHEAD);
            let cts =
                self.with_masters(now, recent, Vec::new(), &mut first.keys);
            let plan = commit::plan_active_first(cts, no_exps, &rules);
            let planned = (plan.cts.len(), 0);
            first.pending.push_back(planned);
            first.planned.0 += planned.0;
            if let Some(run) = self.commit.as_mut() {
                run.planned.0 += planned.0;
            }
            self.commit_first = Some(first);
            self.out.jobs.push(Job {
                purpose: Purpose::CommitFirst { client },
                work: Work::Commit(plan),
            });
            return;
        }
        first.rest_due = false;
        let age = |updated: Instant| age_secs(now, updated);
        let keys = &first.keys;
        let cts = self
            .external_ct
            .iter()
            .filter(|e| !keys.contains(&ct_key_of(&e.value)))
            .map(|e| (e.value, age(e.updated), e.updated.millis()));
        let plan = commit::plan_active_first(cts, no_exps, &rules);
        if let Some(run) = self.commit.as_mut() {
            run.planned.0 += plan.cts.len();
        }
        self.commit_first = Some(first);
        self.out.jobs.push(Job {
            purpose: Purpose::Commit { client },
            work: Work::Commit(plan),
        });
    }
}
