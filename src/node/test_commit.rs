//! Commit, flush and purge: a commit's plan (masters, RELATED flows, then
//! expectations), what is refused while it runs and how it ends; a commit
//! with the external cache disabled (injection); the PurgeTimeout timer
//! and what cancels it; `-f` never touching the kernel; the log of each
//! stage's time.

use super::test::{
    CLIENT, Fw, cfg, event, flow, ftp_master, ftp_session, node, status_of, tcp,
};
use super::*;
use crate::control::proto::{CacheSel, Reply, Request, Status, Target};
use crate::kernel::codec::{Kind, Object};
use crate::kernel::origin::Origin;
use crate::model::status;
use crate::sync::Apply;

#[test]
fn commit_plans_masters_related_then_expectations_and_logs_the_result() {
    let c = cfg("HashSize 8192", "FTFW { }", "ExpectationSync On");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let m = ftp_master();
    let mut data =
        Conntrack::new(tcp("192.168.0.2", "192.168.1.2", 40001, 50000));
    data.reply = Some(data.orig.inverse());
    data.master = Some(m.orig);
    data.timeout = Some(100);
    fw1.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(data)),
        Origin::NotMe,
    );
    ftp_session(&mut fw1, &m);
    flow(&mut fw1, &mut fw2, Instant::from_millis(0));
    let now = Instant::from_millis(30_000);
    // HashSize 8192 (conntrackd skips expectations there): both stages.
    let o = fw2.control(now, Request::Commit(Target::All));
    assert!(o.replies.is_empty(), "the reply waits for the commit");
    let [
        Job {
            work: Work::Commit(plan),
            ..
        },
    ] = &o.actions[..]
    else {
        panic!("{:?}", o.actions)
    };
    assert_eq!(plan.cts.len(), 2);
    assert!(plan.cts[0].master.is_none() && plan.cts[1].master.is_some());
    assert_eq!(plan.exps.len(), 1);
    assert_eq!(plan.cts[0].timeout, Some(432000 - 30));
    assert!(plan.cts[0].status & status::CONFIRMED != 0);
    // While it runs: a second commit and -f are refused, -f internal not.
    assert!(fw2.committing());
    let again = fw2.control(now, Request::Commit(Target::Ct));
    assert!(matches!(status_of(&again), Some(Status::Refused(_))));
    assert!(matches!(
        status_of(&fw2.control(now, Request::FlushCache(CacheSel::All))),
        Some(Status::Refused(_))
    ));
    assert!(matches!(
        status_of(&fw2.control(now, Request::FlushCache(CacheSel::External))),
        Some(Status::Refused(_))
    ));
    assert_eq!(
        status_of(&fw2.control(now, Request::FlushCache(CacheSel::Internal))),
        Some(&Status::Ok)
    );
    let done = fw2.commit_done(Instant::from_millis(30_050), &[0, 0], &[0]);
    assert_eq!(done, vec![Reply::Done(Status::Ok)]);
    assert_eq!(fw2.counters.commit_ok, 3);
    // After the commit -f is accepted (conntrackd refuses it forever).
    assert_eq!(
        status_of(&fw2.control(now, Request::FlushCache(CacheSel::All))),
        Some(&Status::Ok)
    );
    assert!(fw2.external_ct.is_empty() && fw2.external_exp.is_empty());
    // Failures are reported to the client.
    fw2.control(now, Request::Commit(Target::All));
    let done = fw2.commit_done(now, &[], &[]);
    assert_eq!(done, vec![Reply::Done(Status::Ok)]);
    fw2.control(now, Request::Commit(Target::Ct));
    assert!(matches!(
        &fw2.commit_done(now, &[2], &[])[..],
        [Reply::Done(Status::Failed(_))]
    ));
}

#[test]
fn disabled_external_cache_injects_and_commit_returns_at_once() {
    let c = cfg("", "FTFW { DisableExternalCache On }", "ExpectationSync On");
    let mut fw1 = node(cfg("", "FTFW { }", "ExpectationSync On"), 1);
    let mut fw2 = node(c, 2);
    let m = ftp_master();
    ftp_session(&mut fw1, &m);
    let actions = flow(&mut fw1, &mut fw2, Instant::from_millis(0));
    let kinds: Vec<&str> = actions
        .iter()
        .flat_map(|j| match &j.work {
            Work::Inject(changes) => changes.clone(),
            other => panic!("{other:?}"),
        })
        .map(|a| match a {
            Apply::Ct { .. } => "ct",
            Apply::Exp { .. } => "exp",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["ct", "exp"]);
    assert!(fw2.external_ct.is_empty());
    let o = fw2.control(Instant::from_millis(1), Request::Commit(Target::All));
    assert_eq!(o.replies, vec![Reply::Done(Status::Ok)]);
    assert!(o.actions.is_empty() && !fw2.committing());
    // Events caused by our own injection are not replicated back.
    fw2.kernel(
        Instant::from_millis(2),
        event(Kind::New, Object::Ct(m)),
        Origin::Inject,
    );
    assert!(fw2.internal_ct.is_empty());
}

/// An injection job the worker's full queue refuses (or whose socket
/// fails) applied none of its changes that the node can tell: each
/// counts as failed, in its kind's column (a datagram carries many
/// changes; one failure for all of them hid the rest from -s).
#[test]
fn a_refused_injection_counts_each_of_its_changes_as_failed() {
    let c = cfg("", "FTFW { DisableExternalCache On }", "ExpectationSync On");
    let mut fw1 = node(cfg("", "FTFW { }", "ExpectationSync On"), 1);
    let mut fw2 = node(c, 2);
    let m = ftp_master();
    ftp_session(&mut fw1, &m);
    let jobs = flow(&mut fw1, &mut fw2, Instant::from_millis(0));
    let changes: usize = jobs
        .iter()
        .map(|j| match &j.work {
            Work::Inject(changes) => changes.len(),
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(changes, 2, "the master and its expectation");
    for j in jobs {
        fw2.job(
            Instant::from_millis(1),
            j.purpose,
            super::test::queue_full(),
        );
    }
    let now = Instant::from_millis(2);
    assert_eq!(fw2.counters.inject_fail, 2);
    assert_eq!(fw2.counters.inject_ok, 0);
    assert_eq!(fw2.counters.jobs_failed, 1);
    let stats = |fw: &mut Fw, view| {
        let o = fw.control(
            now,
            Request::Stats {
                view,
                format: crate::control::proto::Format::Plain,
            },
        );
        format!("{:?}", o.replies)
    };
    let failed_create =
        "connections created:\\t\\t           0\\tfailed:\\t           1";
    let s = stats(&mut fw2, crate::control::proto::StatsView::General);
    assert!(s.contains(failed_create), "{s}");
    let s = stats(&mut fw2, crate::control::proto::StatsView::Expect);
    assert!(s.contains(failed_create), "{s}");
}

#[test]
fn purge_timer_flushes_kernel_and_internal_cache_and_commit_cancels_it() {
    let c = cfg("", "FTFW { PurgeTimeout 5 }", "");
    let mut fw = node(c, 1);
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(ftp_master())),
        Origin::NotMe,
    );
    assert_eq!(
        status_of(&fw.control(Instant::from_millis(0), Request::ResetTimers)),
        Some(&Status::Ok)
    );
    // The queued change leaves once nothing new came for TX_IDLE, then
    // FT-FW's tail probe is due (the sent change is unacknowledged, the
    // link quiet for 5 ms); the purge is due at 5 s.
    let sent = Instant::from_millis(0) + TX_IDLE;
    assert_eq!(fw.poll_at(), sent);
    fw.wire.clear();
    fw.feed(sent - Duration::from_micros(1), Input::Timer);
    assert!(fw.wire.is_empty(), "not before TX_IDLE");
    fw.feed(sent, Input::Timer);
    assert_eq!(fw.wire.len(), 1);
    assert_eq!(fw.poll_at(), sent + Duration::from_millis(5));
    assert!(fw.tick(Instant::from_millis(4000)).is_empty());
    assert_eq!(
        fw.tick(Instant::from_millis(5000)),
        vec![Job {
            purpose: Purpose::Flush { client: None },
            work: Work::Flush {
                conntracks: true,
                expectations: false
            }
        }]
    );
    assert!(fw.internal_ct.is_empty());
    // A commit cancels a pending purge.
    fw.control(Instant::from_millis(6000), Request::ResetTimers);
    fw.control(Instant::from_millis(6000), Request::Commit(Target::All));
    fw.commit_done(Instant::from_millis(6000), &[], &[]);
    // (The activity scan's dump is due by then; no flush.)
    let jobs = fw.tick(Instant::from_millis(20_000));
    assert!(
        jobs.iter().all(|j| !matches!(j.work, Work::Flush { .. })),
        "{jobs:?}"
    );
}

#[test]
fn every_commit_cancels_a_pending_purge_and_flush_external_does_not() {
    // conntrackd's -c drops the -t alarm before anything else (an
    // injecting node's commit, a commit refused as already running);
    // its -f external leaves it.
    let flushes = |fw: &mut Fw| {
        fw.tick(Instant::from_millis(20_000))
            .iter()
            .filter(|j| matches!(j.work, Work::Flush { .. }))
            .count()
    };
    let at = Instant::from_millis;
    let mut fw = node(
        cfg("", "FTFW { DisableExternalCache On PurgeTimeout 5 }", ""),
        1,
    );
    fw.control(at(0), Request::ResetTimers);
    fw.control(at(1000), Request::Commit(Target::All));
    assert_eq!(flushes(&mut fw), 0, "injecting node: -c left the purge");
    let mut fw = node(cfg("", "FTFW { PurgeTimeout 5 }", ""), 1);
    fw.control(at(0), Request::Commit(Target::All));
    fw.control(at(100), Request::ResetTimers);
    let o = fw.control(at(200), Request::Commit(Target::All));
    assert!(matches!(status_of(&o), Some(Status::Refused(_))));
    assert_eq!(flushes(&mut fw), 0, "-c during a commit left the purge");
    let mut fw = node(cfg("", "FTFW { PurgeTimeout 5 }", ""), 1);
    fw.control(at(0), Request::ResetTimers);
    fw.control(at(1000), Request::FlushCache(CacheSel::External));
    assert_eq!(flushes(&mut fw), 1, "-f external cancelled the purge");
}

/// `-c expect` without ExpectationSync is nothing in conntrackd 1.4.7
/// (observed: no line logged, a pending `-t` purge still flushes, exit
/// 0). It logged `committing expectation cache`, dropped the purge, left
/// the NEW event group for an empty commit and dumped the whole kernel
/// table after it.
#[test]
fn commit_expect_without_expectation_sync_does_nothing() {
    let at = Instant::from_millis;
    let mut fw = node(cfg("", "FTFW { PurgeTimeout 5 }", ""), 1);
    fw.external_ct.upsert(&ftp_master(), at(0), true).unwrap();
    fw.control(at(0), Request::ResetTimers);
    let out = fw.feed(
        at(1000),
        Input::Control {
            client: CLIENT,
            request: Request::Commit(Target::Expect),
            links: &[],
            control: Default::default(),
        },
    );
    let logs: Vec<&str> = out.logs.iter().map(|l| &*l.text).collect();
    assert!(logs.is_empty(), "{logs:?}");
    assert_eq!(out.replies, vec![(CLIENT, Reply::Done(Status::Ok))]);
    assert!(out.jobs.is_empty(), "{:?}", out.jobs);
    assert_eq!(out.new_events, None);
    assert!(!fw.committing());
    let flushes = fw
        .tick(at(20_000))
        .iter()
        .filter(|j| matches!(j.work, Work::Flush { .. }))
        .count();
    assert_eq!(flushes, 1, "the purge still runs");
}

#[test]
fn flush_cache_never_touches_the_kernel_even_without_internal_cache() {
    // The notify script runs `-c` then `-f`: a kernel flush here would
    // delete what the commit just created.
    let c = cfg(
        "",
        "NOTRACK { DisableInternalCache On }",
        "ExpectationSync On",
    );
    let mut fw = node(c, 1);
    for sel in [CacheSel::All, CacheSel::Internal, CacheSel::External] {
        let o = fw.control(Instant::from_millis(0), Request::FlushCache(sel));
        assert!(o.actions.is_empty(), "{sel:?}: {:?}", o.actions);
        assert_eq!(o.replies, vec![Reply::Done(Status::Ok)]);
    }
}

#[test]
fn commit_logs_each_stage_time_in_microseconds() {
    let c = cfg("", "FTFW { }", "ExpectationSync On");
    let mut fw = node(c, 2);
    fw.control(Instant::from_millis(0), Request::Commit(Target::All));
    let done = Done::Committed {
        cts: Vec::new(),
        exps: Vec::new(),
        failed: Vec::new(),
        took_us: [147, 1_000_076],
        aborted: None,
    };
    let purpose = Purpose::Commit { client: CLIENT };
    let o = fw.feed(
        Instant::from_millis(5),
        Input::Job(Completion { purpose, done }),
    );
    let lines: Vec<&str> = o.logs.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        lines,
        [
            "Committed 0 new entries",
            "commit has taken 0.000147 seconds",
            "Committed 0 new expectations",
            "commit has taken 1.000076 seconds"
        ]
    );
}

/// A commit job whose socket failed midway: what the kernel answered for
/// counts as answered (two created), the rest failed, with one line for
/// the reason; it used to come back as a failed job, every entry failed,
/// those the kernel took included.
#[test]
fn a_commit_that_ended_midway_counts_what_the_kernel_took() {
    let mut fw = node(cfg("", "FTFW { }", ""), 2);
    let t0 = Instant::from_millis(0);
    for port in [1001, 1002, 1003] {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", port, 80));
        c.timeout = Some(432000);
        c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
        fw.external_ct.upsert(&c, t0, true).unwrap();
    }
    let now = Instant::from_millis(1000);
    let job = fw.control(now, Request::Commit(Target::Ct)).actions;
    assert_eq!(job.len(), 1, "{job:?}");
    let eio = rustix::io::Errno::IO.raw_os_error();
    let done = Done::Committed {
        cts: vec![0, 0, eio],
        exps: Vec::new(),
        failed: Vec::new(),
        took_us: [10, 0],
        aborted: Some("no answer from the kernel".into()),
    };
    let o = fw.feed(
        now,
        Input::Job(Completion {
            purpose: job[0].purpose,
            done,
        }),
    );
    assert_eq!((fw.counters.commit_ok, fw.counters.commit_fail), (2, 1));
    assert_eq!(fw.counters.jobs_failed, 1);
    let said = |text: &str| o.logs.iter().filter(|l| l.text == text).count();
    assert_eq!(said("commit-create: no answer from the kernel"), 1);
    assert_eq!(said("Committed 2 new entries"), 1, "{:?}", o.logs);
    assert!(
        matches!(&o.replies[..], [(_, Reply::Done(Status::Failed(_)))]),
        "{:?}",
        o.replies
    );
}

/// Each entry a commit could not create is logged as conntrackd 1.4.7
/// logs it: `commit-create: <strerror>`, then the entry as cached (its
/// cached timeout, not the plan's) on an entry line; the expectations'
/// after the conntracks' totals (observed: tests/commit_log_parity).
#[test]
fn refused_entries_are_logged_as_cached_expectations_after_the_totals() {
    let mut fw = node(cfg("", "FTFW { }", "ExpectationSync On"), 2);
    let t0 = Instant::from_millis(0);
    let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1001, 21));
    c.timeout = Some(432000);
    c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
    fw.external_ct.upsert(&c, t0, true).unwrap();
    let mask = tcp("255.255.255.255", "255.255.255.255", 0, 0xffff);
    let mut x =
        Expect::new(c.orig, tcp("10.1.0.1", "10.2.0.1", 0, 50000), mask);
    x.timeout = Some(300);
    fw.external_exp.upsert(&x, t0, true).unwrap();
    let now = Instant::from_millis(5000);
    let job = fw.control(now, Request::Commit(Target::All)).actions;
    let Work::Commit(plan) = &job[0].work else {
        panic!("{job:?}")
    };
    assert_eq!(plan.cts[0].timeout, Some(432000 - 5), "the plan's own");
    let (eopnotsupp, enoent) = (
        rustix::io::Errno::OPNOTSUPP.raw_os_error(),
        rustix::io::Errno::NOENT.raw_os_error(),
    );
    let done = Done::Committed {
        cts: vec![eopnotsupp],
        exps: vec![enoent],
        failed: vec![
            (eopnotsupp, Object::Ct(plan.cts[0].clone())),
            (enoent, Object::Exp(plan.exps[0].clone())),
        ],
        took_us: [10, 5],
        aborted: None,
    };
    let purpose = job[0].purpose;
    let o = fw.feed(now, Input::Job(Completion { purpose, done }));
    let lines: Vec<(bool, &str)> =
        o.logs.iter().map(|l| (l.entry, &*l.text)).collect();
    assert_eq!(
        lines,
        [
            (false, "commit-create: Operation not supported"),
            (
                true,
                "tcp      6 432000 src=10.1.0.1 dst=10.2.0.1 sport=1001 dport=21 [ASSURED]"
            ),
            (false, "Committed 0 new entries"),
            (false, "1 entries can't be committed"),
            (false, "commit has taken 0.000010 seconds"),
            (false, "commit-create: No such file or directory"),
            (
                true,
                "300 proto=6 src=10.1.0.1 dst=10.2.0.1 sport=0 dport=50000 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=10.1.0.1 master-dst=10.2.0.1 sport=1001 dport=21 class=0"
            ),
            (false, "Committed 0 new expectations"),
            (false, "1 expectations can't be committed"),
            (false, "commit has taken 0.000005 seconds"),
        ]
    );
}
