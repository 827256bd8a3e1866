//! The completions of a node's kernel jobs: a commit's totals and the
//! refused entries (conntrackd's log lines), injection results, a flush's
//! and a resync's end, the parts of a `-i` kernel dump, and jobs that
//! failed as a whole or never ran.

use log::Level::{Error, Warn};

use super::render::{ct_line_refused, exp_line_refused};
use super::{
    Completion, Done, Injection, LogRecord, Node, Purpose, RELEASE_AFTER,
};
use crate::control::proto::Status;
use crate::kernel::codec::Object;
use crate::time::Instant;
use crate::wire::{ct_key_of, exp_key_of};

impl Node {
    /// One commit job's outcome: a split commit's jobs are kept until
    /// every one has ended (done, failed or refused, in any order); then
    /// conntrackd's lines for the whole commit.
    fn commit_part_done(
        &mut self,
        now: Instant,
        purpose: Purpose,
        cts: Vec<i32>,
        exps: Vec<i32>,
        took_us: Option<[u32; 2]>,
    ) {
        match (purpose, self.commit_first.as_mut()) {
            (Purpose::CommitFirst { batch, .. }, Some(f)) => {
                f.part_done(batch, cts, exps, took_us.unwrap_or([0, 0]));
            }
            (Purpose::Commit { .. }, Some(f)) => {
                f.last = Some((cts, exps, took_us));
            }
            (Purpose::Commit { client }, None) => {
                let stages = took_us.map(stage_times);
                return self.commit_done(now, client, &cts, &exps, stages);
            }
            _ => return,
        }
        let ended = self
            .commit_first
            .as_ref()
            .is_some_and(|f| f.pending.is_empty() && f.last.is_some());
        let Some(f) = self.commit_first.take_if(|_| ended) else {
            return;
        };
        let Some((mut cts, mut exps, mut took)) = f.last else {
            return;
        };
        if let Some((c, x, t)) = f.done {
            cts.splice(0..0, c);
            exps.splice(0..0, x);
            took = took
                .map(|[a, b]| [a.saturating_add(t[0]), b.saturating_add(t[1])]);
        }
        self.commit_done(now, f.client, &cts, &exps, took.map(stage_times));
    }

    pub(super) fn job_done(&mut self, now: Instant, c: Completion) {
        let Completion { purpose, done } = c;
        match (purpose, done) {
            (Purpose::Resync { .. }, Done::Dumped { objects, last }) => {
                // The dump's parts went through the loop beside the
                // cache's growth: the allocator keeps their memory.
                self.resync_dumped += objects.len();
                self.resync_part(now, purpose, objects, last);
                if last {
                    let dumped = std::mem::take(&mut self.resync_dumped);
                    self.out.release_memory |= dumped >= RELEASE_AFTER;
                }
            }
            (Purpose::Resync { .. }, Done::Failed(why)) => {
                self.resync_dumped = 0;
                self.resync_failed(now, purpose, &why);
            }
            (
                purpose
                @ (Purpose::Commit { .. } | Purpose::CommitFirst { .. }),
                Done::Committed {
                    cts,
                    exps,
                    failed,
                    took_us,
                    aborted,
                },
            ) => {
                if let Some(why) = aborted {
                    self.counters.jobs_failed += 1;
                    self.out.log(Error, format!("commit-create: {why}"));
                }
                for (errno, entry) in failed {
                    self.refused(errno, entry);
                }
                self.commit_part_done(now, purpose, cts, exps, Some(took_us));
            }
            (
                purpose
                @ (Purpose::Commit { .. } | Purpose::CommitFirst { .. }),
                Done::Failed(why),
            ) => {
                self.counters.jobs_failed += 1;
                self.out.log(Error, format!("commit-create: {why}"));
                // The whole job counts as failed: a split commit's early
                // jobs planned their own shares, the last the rest.
                let total = self.commit.map_or((0, 0), |r| r.planned);
                let first = self.commit_first.as_ref();
                let (cts, exps) = match (purpose, first) {
                    (Purpose::CommitFirst { batch, .. }, Some(f)) => {
                        f.share(batch)
                    }
                    (_, Some(f)) => {
                        (total.0 - f.planned.0, total.1 - f.planned.1)
                    }
                    (_, None) => total,
                };
                let eio = libc_eio();
                self.commit_part_done(
                    now,
                    purpose,
                    vec![eio; cts],
                    vec![eio; exps],
                    None,
                );
            }
            (Purpose::ActivityScan, Done::Dumped { objects, last }) => {
                self.activity_part(now, objects, last);
            }
            (Purpose::ActivityScan, Done::Failed(why)) => {
                self.activity_failed();
                self.out.log(Warn, format!("activity scan failed: {why}"));
            }
            (Purpose::Refresh { id }, Done::Dumped { objects, .. }) => {
                self.refreshed(now, id, objects);
            }
            (Purpose::MasterCheck { id }, Done::Dumped { objects, .. }) => {
                let master = objects.iter().find_map(|o| match o {
                    Object::Ct(c) => Some(c),
                    Object::Exp(_) => None,
                });
                self.master_checked(now, id, master);
            }
            (Purpose::MasterCheck { id }, Done::Failed(why)) => {
                self.counters.jobs_failed += 1;
                self.master_checked(now, id, None);
                self.out
                    .log(Warn, format!("can't read a master back: {why}"));
            }
            (Purpose::Refresh { id }, Done::Failed(why)) => {
                self.refreshed(now, id, Vec::new());
                // Not fatal: the peer has the entry, without the change.
                self.counters.jobs_failed += 1;
                self.out
                    .log(Warn, format!("can't read a master back: {why}"));
            }
            (Purpose::Inject { .. }, Done::Injected(results)) => {
                for (what, e) in results {
                    self.injected(what, e, true);
                }
            }
            (Purpose::Inject { changes }, Done::Failed(why)) => {
                // Refused by a full queue: none was applied. (A socket
                // that failed midway may have applied the first: they
                // count as failed too, the kernel's answer being lost.)
                self.counters.jobs_failed += 1;
                self.out.log(Warn, format!("could not inject entry: {why}"));
                let eio = libc_eio();
                for (what, n) in Injection::ALL.into_iter().zip(changes) {
                    for _ in 0..n {
                        // One line for the job said why.
                        self.injected(what, eio, false);
                    }
                }
            }
            (Purpose::Flush { client }, Done::Flushed(_)) => {
                if let Some(c) = client {
                    self.done(c, Status::Ok);
                }
            }
            (Purpose::Flush { client }, Done::Failed(why)) => {
                self.counters.jobs_failed += 1;
                if client.is_none() && !self.internal_disabled() {
                    // The scheduled purge's (only it flushes without a
                    // client): it emptied the internal cache, but the
                    // kernel keeps every flow, so the cache no longer
                    // says what it holds (see `-f`).
                    self.internal_flushed(false);
                }
                self.out.log(
                    Error,
                    format!("cannot flush the kernel table: {why}"),
                );
                if let Some(c) = client {
                    self.done(
                        c,
                        Status::Failed(format!(
                            "cannot flush the kernel table: {why}"
                        )),
                    );
                }
            }
            (
                Purpose::DumpText {
                    client,
                    table: _,
                    format,
                },
                Done::Dumped { objects, last },
            ) => {
                let text = self.live_dump_part(client, format, &objects, last);
                self.data(client, text);
                if last {
                    self.done(client, Status::Ok);
                }
            }
            (Purpose::DumpText { client, .. }, Done::Failed(why)) => {
                self.live_dump_end(client);
                self.counters.jobs_failed += 1;
                self.out
                    .log(Error, format!("can't dump kernel table: {why}"));
                self.done(
                    client,
                    Status::Failed(format!("can't dump kernel table: {why}")),
                );
            }
            (purpose, done) => {
                // A worker that answers a job with the wrong kind of
                // result is a bug; say so rather than guess.
                self.counters.jobs_failed += 1;
                self.out.log(
                    Error,
                    format!("kernel job {purpose:?} ended with {done:?}"),
                );
            }
        }
    }
}

impl Node {
    /// conntrackd's two lines for an entry a commit could not create:
    /// `commit-create: <strerror>`, then the entry as cached (the plan's
    /// copy, prepared for the kernel, if it has left the cache since) on
    /// a line of its own. conntrackd commits the expectations after the
    /// conntracks' totals: their lines wait for `commit_done`.
    fn refused(&mut self, errno: i32, entry: Object) {
        let why =
            format!("commit-create: {}", crate::strerror::of_errno(errno));
        match entry {
            Object::Ct(c) => {
                let cached = self.external_ct.get(&ct_key_of(&c));
                let c = cached.map_or(c, |e| e.value);
                self.out.log(Error, why);
                self.out.log_entry(Error, ct_line_refused(&c));
            }
            Object::Exp(x) => {
                let cached = self.external_exp.get(&exp_key_of(&x));
                let line = exp_line_refused(&cached.map_or(x, |e| e.value));
                self.commit_exp_refused.extend([
                    LogRecord {
                        level: Error,
                        text: why,
                        entry: false,
                    },
                    LogRecord {
                        level: Error,
                        text: line,
                        entry: true,
                    },
                ]);
            }
        }
    }

    /// One injected change's outcome, counted by kind as conntrackd's
    /// `external inject:` does (a delete that finds the entry gone is
    /// done, and counted in neither column), with conntrackd's warning
    /// for each kind when `log`.
    fn injected(&mut self, what: Injection, e: i32, log: bool) {
        let gone = e == rustix::io::Errno::NOENT.raw_os_error();
        let delete = matches!(what, Injection::CtDelete | Injection::ExpDelete);
        if e == 0 || (gone && delete) {
            self.counters.inject_ok += 1;
        } else {
            self.counters.inject_fail += 1;
        }
        let (ct, exp) =
            (&mut self.counters.inject_ct, &mut self.counters.inject_exp);
        let (column, what) = match what {
            Injection::CtNew => (&mut ct.created, "add new ct"),
            Injection::CtUpdate => (&mut ct.updated, "update ct"),
            Injection::CtDelete => (&mut ct.destroyed, "destroy ct"),
            Injection::ExpNew => (&mut exp.created, "add new exp"),
            Injection::ExpDelete => (&mut exp.destroyed, "delete exp"),
        };
        if gone && delete {
            return;
        }
        column[usize::from(e != 0)] += 1;
        if e != 0 && log {
            self.out.log(
                Warn,
                format!(
                    "could not {what} entry: {}",
                    crate::strerror::of_errno(e)
                ),
            );
        }
    }
}

/// A commit's per-stage microseconds as durations.
fn stage_times(us: [u32; 2]) -> [std::time::Duration; 2] {
    us.map(|us| std::time::Duration::from_micros(u64::from(us)))
}

/// EIO, the errno of an entry whose whole commit failed.
fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}
