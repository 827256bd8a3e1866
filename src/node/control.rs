//! A node's control requests (`-c -f -F -R -B -n -t -k -i -e -s`) and the
//! completions of the kernel jobs they start: which request waits for
//! which job, conntrackd's log lines, and each client's final frame.

use std::time::Duration;

use log::Level::{Error, Info};

use super::{
    ClientId, ControlView, Job, LinkView, Node, Purpose, RELEASE_AFTER,
    Running, Work, render,
};
use crate::config::Mode;
use crate::control::proto::{
    Cache as Which, CacheSel, Format, Reply, Request, StatsView, Status, Table,
    Target,
};
use crate::kernel::commit::{self, CommitRules};
use crate::sync::Key;
use crate::time::Instant;

/// Whole seconds an entry spent in the cache since it was reported (the
/// commit's timeout estimate).
pub(super) fn age_secs(now: Instant, updated: Instant) -> u32 {
    now.since(updated).as_secs().min(u64::from(u32::MAX)) as u32
}

impl Node {
    /// Handles one control request.
    pub(super) fn control(
        &mut self,
        now: Instant,
        client: ClientId,
        req: Request,
        links: &[LinkView],
        control: ControlView,
    ) {
        match req {
            Request::Kill => {
                self.out.reply(client, Reply::Done(Status::Ok));
                self.out.shutdown = true;
            }
            Request::Commit(target) => self.commit_start(now, client, target),
            Request::FlushCache(sel) => self.flush_cache(now, client, sel),
            Request::FlushKernel(target) => {
                let (ct, exp) = self.targets(target);
                if ct {
                    self.out.log(Info, "flushing kernel conntrack table");
                    self.counters.kernel_flushes += 1;
                }
                if exp {
                    self.out.log(Info, "flushing kernel expect table");
                }
                self.flush_kernel(Some(client), ct, exp);
            }
            Request::ResyncKernel(target) => {
                if self.internal_disabled() {
                    self.out.log(Info, "resync is unsupported in this mode");
                    return self.done(client, Status::NotSupported("resync is unsupported in this mode (DisableInternalCache)".into()));
                }
                let (ct, exp) = self.targets(target);
                if ct {
                    self.out.log(Info, "resync with master conntrack table");
                    self.counters.kernel_resyncs += 1;
                }
                if exp {
                    self.out.log(Info, "resync with master expect table");
                }
                // While polling, the internal cache is what the peer was
                // sent: a poll sends only what differs from it, and no
                // DESTROY event will tell the peer what the sweep drops.
                // A silent -R would hide its finds from the peer for good;
                // it sends its differences, as a poll does.
                let send = self.poll_period().is_some();
                self.resync_kernel(Some(client), ct, exp, send);
            }
            Request::BulkSend => {
                if self.sync().mode == Mode::Alarm {
                    return self.done(
                        client,
                        Status::NotSupported(
                            "-B does nothing in ALARM mode".into(),
                        ),
                    );
                }
                self.out.log(Info, "sending bulk update");
                if self.bulk_waits_for_commit(client) {
                    return;
                }
                if self.internal_disabled() {
                    let exp = self.expectations();
                    return self.resync_kernel(Some(client), true, exp, true);
                }
                let src = super::Internal {
                    ct: &self.internal_ct,
                    exp: &self.internal_exp,
                    bypass: self.cache_not_kernel(),
                };
                self.engine.bulk(&src);
                self.done(client, Status::Ok);
            }
            Request::RequestResync => {
                if !self.engine.request_resync() {
                    return self.done(
                        client,
                        Status::NotSupported(
                            "-n does nothing in ALARM mode".into(),
                        ),
                    );
                }
                self.out.log(Info, "resync requested");
                self.resync_asked_at = Some(now);
                self.done(client, Status::Ok);
            }
            Request::ResetTimers => {
                if self.purge_at.is_none() {
                    let secs = self.sync().purge_timeout;
                    self.out.log(
                        Info,
                        format!("flushing conntrack table in {secs} secs"),
                    );
                    self.purge_at =
                        Some(now + Duration::from_secs(u64::from(secs)));
                }
                self.done(client, Status::Ok);
            }
            Request::Dump {
                cache,
                table,
                format,
            } => self.dump(now, client, cache, table, format),
            Request::Stats {
                view: StatsView::Ready,
                format,
            } => self.ready(now, client, format),
            Request::Stats { view, format } => {
                let mut snap =
                    self.snapshot(now, links, view == StatsView::RsQueue);
                snap.control = control;
                let text = render::stats(&snap, view, format);
                self.data(client, text);
                self.done(client, Status::Ok);
            }
        }
    }

    /// `-s ready`: whether the resync this node asked for is complete
    /// (keepalived's `track_script` holds a returning node's priority
    /// down until it is; exit status 2 while it is not).
    fn ready(&mut self, now: Instant, client: ClientId, format: Format) {
        let waiting = self.engine.awaiting_resync();
        let asked = self.resync_asked_at.map(|t| now.since(t).as_secs());
        let conntrackd =
            self.engine.protocol() == crate::sync::Protocol::Conntrackd;
        let text = match (format, waiting) {
            (Format::Json, _) => format!(
                "{{\"ready\":{},\"asked_secs_ago\":{},\"peer_says_when_complete\":{}}}\n",
                !waiting,
                asked.map_or("null".into(), |s| s.to_string()),
                !conntrackd
            ),
            (_, true) => format!(
                "not ready: waiting for the other node's resync (asked {} s ago)\n",
                asked.unwrap_or(0)
            ),
            (_, false) if conntrackd => "ready (the other node speaks conntrackd's protocol, which does not say when a resync is complete)\n".into(),
            (_, false) => "ready\n".into(),
        };
        self.data(client, text);
        self.done(
            client,
            if waiting {
                Status::Failed("not ready".into())
            } else {
                Status::Ok
            },
        );
    }

    pub(super) fn done(&mut self, client: ClientId, s: Status) {
        self.out.reply(client, Reply::Done(s));
    }

    pub(super) fn data(&mut self, client: ClientId, text: String) {
        if !text.is_empty() {
            self.out.reply(client, Reply::Data(text));
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

    fn flush_kernel(&mut self, client: Option<ClientId>, ct: bool, exp: bool) {
        self.out.jobs.push(Job {
            purpose: Purpose::Flush { client },
            work: Work::Flush {
                conntracks: ct,
                expectations: exp,
            },
        });
    }

    /// Asks for a dump to resync with ([`Node::resync_job`]).
    pub(super) fn resync_kernel(
        &mut self,
        client: Option<ClientId>,
        ct: bool,
        exp: bool,
        send: bool,
    ) {
        self.resync_job(client, ct, exp, send, false);
    }

    fn flush_cache(&mut self, now: Instant, client: ClientId, sel: CacheSel) {
        if self.committing() && sel != CacheSel::Internal {
            self.out
                .log(Error, "ignoring flush command, commit still in progress");
            return self.done(
                client,
                Status::Refused("commit still in progress".into()),
            );
        }
        // `-f` (conntrackd 1.4.6+) and `-f internal` cancel a pending -t
        // purge; `-f external` does not, in conntrackd either.
        // Only ever the caches, whatever the mode: with DisableInternalCache
        // conntrackd's `-f` flushes the kernel table, so the notify script's
        // `-c; -f` deletes what it has just committed (README, differences).
        if sel != CacheSel::External {
            self.purge_at = None;
        }
        // Without an internal cache, what it holds are the kernel's events
        // staged until sent, not a cache: flushed, each staged key would
        // read as gone and go to the peer as a deletion of a live flow.
        let staging = self.internal_disabled();
        let flushed = match sel {
            CacheSel::All => {
                self.internal_ct.len()
                    + self.internal_exp.len()
                    + self.external_ct.len()
                    + self.external_exp.len()
            }
            CacheSel::Internal => self.internal_ct.len(),
            CacheSel::External => self.external_ct.len(),
        };
        self.out.release_memory |= flushed >= RELEASE_AFTER;
        if sel != CacheSel::External && !staging {
            // Changes waiting for the transmit's coalescing leave first:
            // flushed, each key would read as gone and go as a deletion
            // of a live flow (conntrackd sends each event as it comes).
            self.tx.due_now(now);
            self.transmit(now);
        }
        if sel != CacheSel::External && !staging {
            let exps_too = sel == CacheSel::All;
            self.forget_unsent(exps_too);
            // Until a resync refills it, the cache no longer says what
            // the kernel holds: anti-entropy must not prune by it.
            self.internal_flushed(exps_too);
        }
        match sel {
            CacheSel::All => {
                self.out.log(Info, "flushing caches");
                if !staging {
                    self.internal_ct.flush();
                    self.internal_exp.flush();
                }
                self.external_ct.flush();
                self.external_exp.flush();
            }
            CacheSel::Internal => {
                self.out.log(Info, "flushing internal cache");
                if !staging {
                    self.internal_ct.flush();
                }
            }
            CacheSel::External => {
                self.out.log(Info, "flushing external cache");
                self.external_ct.flush();
            }
        }
        self.done(client, Status::Ok);
    }

    /// The internal conntracks (and with `exps` its expectations) are
    /// about to be flushed: their unsent and unacknowledged changes go
    /// too. Sent after the flush, each would read as gone and go to the
    /// peer as a DEL of a flow that lives on in the kernel (or, for the
    /// purge, of one whose deletion conntrackd does not propagate).
    pub(super) fn forget_unsent(&mut self, exps: bool) {
        let (ct, exp) = (&self.internal_ct, &self.internal_exp);
        self.engine.forget_states(&|k| match k {
            Key::Ct(c) => ct.contains(c),
            Key::Exp(x) => exps && exp.contains(x),
        });
    }

    fn commit_start(&mut self, now: Instant, client: ClientId, target: Target) {
        if target == Target::Expect && !self.expectations() {
            // conntrackd 1.4.7 ignores `-c expect` without ExpectationSync:
            // no line, and a pending -t purge stays (observed). There is
            // nothing to commit, and an empty commit would still leave
            // the NEW event group and dump the whole table after it.
            return self.done(client, Status::Ok);
        }
        self.out.log(
            Info,
            match target {
                Target::All => "committing all external caches",
                Target::Ct => "committing conntrack cache",
                Target::Expect => "committing expectation cache",
            },
        );
        // Before anything else, as conntrackd: a commit that returns at
        // once (an injecting node's) or is refused as already running
        // still cancels a pending -t purge, which would otherwise flush
        // the kernel table of the node that just took over.
        self.purge_at = None;
        // The node took over: it is the reference now, and waits for no
        // resync (a master that did would lower its VRRP priority).
        self.engine.stop_awaiting();
        if self.external_disabled() {
            // Nothing is cached: the peer's state is in the kernel already.
            return self.done(client, Status::Ok);
        }
        if self.commit.is_some() {
            self.out.log(Info, "commit already in progress, skipping");
            return self.done(
                client,
                Status::Refused("commit already in progress".into()),
            );
        }
        let (ct, exp) = self.targets(target);
        let rules = self.commit_rules();
        let age = |updated: Instant| age_secs(now, updated);
        if ct && self.external_ct.len() > super::commit_split::SPLIT_ABOVE {
            return self.commit_first_part(now, client, target, exp, &rules);
        }
        // The most recently updated entries are the active ones: they go
        // first (with the expectations and their masters), so a flow in
        // use is back in the kernel while the idle tail is committed.
        let cts = self
            .external_ct
            .iter()
            .filter(|_| ct)
            .map(|e| (e.value, age(e.updated), e.updated.millis()));
        let exps = self
            .external_exp
            .iter()
            .filter(|_| exp)
            .map(|e| (e.value, age(e.updated)));
        let plan = commit::plan_active_first(cts, exps, &rules);
        self.commit = Some(Running {
            started: now,
            target,
            planned: (plan.cts.len(), plan.exps.len()),
        });
        self.pause_new_events();
        self.out.jobs.push(Job {
            purpose: Purpose::Commit { client },
            work: Work::Commit(plan),
        });
    }

    pub(super) fn commit_rules(&self) -> CommitRules {
        CommitRules {
            commit_timeout: self.sync().commit_timeout,
            tcp_window_tracking: self.sync().tcp_window_tracking,
        }
    }

    /// The commit's outcome: conntrackd's lines, the client's final frame.
    pub(super) fn commit_done(
        &mut self,
        now: Instant,
        client: ClientId,
        ct_errs: &[i32],
        exp_errs: &[i32],
        stages: Option<[Duration; 2]>,
    ) {
        let refused = std::mem::take(&mut self.commit_exp_refused);
        let Some(run) = self.commit.take() else {
            return self.done(client, Status::Ok);
        };
        self.resume_new_events();
        let took =
            |d: Duration| format!("{}.{:06}", d.as_secs(), d.subsec_micros());
        // The worker's per-stage times; a commit that failed as a whole
        // has only the node's (millisecond) clock, for both stages.
        let [ct_took, exp_took] = stages.unwrap_or([now.since(run.started); 2]);
        let (ct_ok, ct_fail) = split(ct_errs);
        let (exp_ok, exp_fail) = split(exp_errs);
        self.counters.commit_ok += (ct_ok + exp_ok) as u64;
        self.counters.commit_fail += (ct_fail + exp_fail) as u64;
        if run.target != Target::Expect {
            self.out.log(Info, format!("Committed {ct_ok} new entries"));
            if ct_fail > 0 {
                self.out
                    .log(Info, format!("{ct_fail} entries can't be committed"));
            }
            self.out.log(
                Info,
                format!("commit has taken {} seconds", took(ct_took)),
            );
        }
        // What the expectations' stage refused, after the conntracks'
        // totals (conntrackd commits the expectations then).
        self.out.logs.extend(refused);
        if run.target != Target::Ct && self.expectations() {
            self.out
                .log(Info, format!("Committed {exp_ok} new expectations"));
            if exp_fail > 0 {
                self.out.log(
                    Info,
                    format!("{exp_fail} expectations can't be committed"),
                );
            }
            self.out.log(
                Info,
                format!("commit has taken {} seconds", took(exp_took)),
            );
        }
        if ct_fail + exp_fail > 0 {
            self.done(
                client,
                Status::Failed(format!(
                    "{ct_fail} entries and {exp_fail} expectations can't be committed"
                )),
            );
        } else {
            self.done(client, Status::Ok);
        }
    }

    fn dump(
        &mut self,
        now: Instant,
        client: ClientId,
        cache: Which,
        table: Table,
        format: Format,
    ) {
        if table == Table::Expect
            && !self.expectations()
            && format != Format::Xml
        {
            // conntrackd prints nothing; `--json` promises an array.
            if format == Format::Json {
                self.data(client, "[]\n".into());
            }
            return self.done(client, Status::Ok);
        }
        if cache == Which::Internal && self.internal_disabled() {
            // A live kernel dump, answered part by part.
            let exp = table == Table::Expect;
            self.out.jobs.push(Job {
                purpose: Purpose::DumpText {
                    client,
                    table,
                    format,
                },
                work: Work::Dump {
                    conntracks: !exp,
                    expectations: exp,
                },
            });
            return;
        }
        self.start_dump(now, client, cache, table, format);
    }
}

fn split(errs: &[i32]) -> (usize, usize) {
    let ok = errs.iter().filter(|&&e| e == 0).count();
    (ok, errs.len() - ok)
}
