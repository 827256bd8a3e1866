//! A large commit split into jobs (`commit_split`): the first stage, then
//! batches that grow, most recent first; masters brought along before
//! what names them, expectations after their masters' whole chain; and
//! jobs the worker refuses (back out of order, each counting its own
//! entries as failed) while the commit waits for every earlier job.

use super::test::{CLIENT, Fw, cfg, ftp_master, node, pasv, queue_full, tcp};
use super::*;
use crate::control::proto::{Reply, Request, Status, Target};
use crate::model::{L4, Tuple, status};

/// A commit of a large external cache goes out in batches: first the
/// expectation, its (old) master and the most recently updated entries,
/// picked before the rest is decoded (the expectation, its master and the
/// newest of them in the first stage); then, most recent first, batches
/// that grow fourfold, a new one only while fewer than two jobs wait for
/// the kernel; the last without the master the first job took. The
/// client's reply and conntrackd's lines count every job.
#[test]
fn a_large_commit_goes_out_in_growing_batches_most_recent_first() {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB, GROWTH, MAX_BATCH};
    use crate::kernel::commit::FIRST_STAGE;
    let mut fw = node(cfg("", "FTFW { }", "ExpectationSync On"), 1);
    let master = ftp_master();
    fw.external_ct
        .upsert(&master, Instant::from_millis(0), true)
        .unwrap();
    fw.external_exp
        .upsert(&pasv(&master), Instant::from_millis(0), true)
        .unwrap();
    // Growing fourfold, then held at the bound (twice), then the rest.
    let batches = [FIRST_BATCH, FIRST_BATCH * GROWTH, MAX_BATCH, MAX_BATCH];
    assert_eq!(FIRST_BATCH * GROWTH * GROWTH, MAX_BATCH);
    let last = 3000;
    let idle = (FIRST_JOB + batches.iter().sum::<usize>() + last) as u16;
    for i in 0..idle {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1024 + i, 80));
        c.timeout = Some(432000);
        c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
        // Updated at i ms: the last ones are the most recent.
        let at = Instant::from_millis(1 + u64::from(i));
        fw.external_ct.upsert(&c, at, true).unwrap();
    }
    let now = Instant::from_millis(100_000);
    let first = fw.control(now, Request::Commit(Target::All)).actions;
    assert_eq!(first.len(), 1, "{:?}", first.len());
    let Work::Commit(plan) = &first[0].work else {
        panic!("{first:?}")
    };
    let early = |batch: u32| Purpose::CommitFirst {
        client: CLIENT,
        batch,
    };
    assert_eq!(first[0].purpose, early(0));
    assert_eq!(plan.exps.len(), 1);
    assert_eq!(plan.cts.len(), FIRST_JOB + 1);
    assert_eq!(plan.first, (FIRST_STAGE + 1, 1), "the first stage");
    assert!(plan.cts.iter().any(|c| c.orig == master.orig), "its master");
    let sport = |c: &Conntrack| match c.orig.l4 {
        L4::Ports { src, .. } => src,
        _ => 0,
    };
    let ports = |p: &crate::kernel::commit::Plan| -> Vec<u16> {
        p.cts.iter().map(sport).collect()
    };
    // The ports of the `n` entries updated before the newest `skip`, most
    // recent first.
    let newest = |skip: usize, n: usize| -> Vec<u16> {
        let top = 1024 + idle - skip as u16;
        (top - n as u16..top).rev().collect()
    };
    let mut first_ports = ports(plan);
    first_ports.sort_unstable();
    let mut want = newest(0, FIRST_JOB);
    want.sort_unstable();
    assert!(want.iter().all(|p| first_ports.binary_search(p).is_ok()));
    let is_commit = |j: &Job| matches!(j.work, Work::Commit(_));
    let next_job = |fw: &mut Fw| -> Option<Job> {
        // The next batch is planned on the next turn, due at once (the
        // activity scan's dump may be due too).
        assert!(fw.poll_at() <= now);
        let mut jobs: Vec<Job> =
            fw.tick(now).into_iter().filter(is_commit).collect();
        assert!(jobs.len() <= 1, "one batch per turn");
        jobs.pop()
    };
    let done = |cts: usize, exps: usize| Done::Committed {
        cts: vec![0; cts],
        exps: vec![0; exps],
        failed: Vec::new(),
        took_us: [100, 50],
        aborted: None,
    };
    // Each batch, and the completion that lets the next one be planned
    // (the job before it: two are with the worker at most).
    let mut before = (FIRST_JOB + 1, 1);
    let mut skip = FIRST_JOB;
    for (k, &size) in batches.iter().enumerate() {
        let batch = next_job(&mut fw).expect("a batch");
        assert_eq!(batch.purpose, early(k as u32 + 1), "batch {k}");
        let Work::Commit(p) = &batch.work else {
            panic!()
        };
        assert_eq!(ports(p), newest(skip, size), "batch {k}");
        assert!(
            !fw.tick(now).iter().any(is_commit),
            "two jobs wait for the kernel: no more before one ends"
        );
        let o = fw.job(now, early(k as u32), done(before.0, before.1));
        assert!(o.replies.is_empty(), "the client waits for the rest");
        before = (size, 0);
        skip += size;
    }
    let rest = next_job(&mut fw).expect("the last batch");
    assert_eq!(rest.purpose, Purpose::Commit { client: CLIENT });
    let Work::Commit(rest_plan) = &rest.work else {
        panic!()
    };
    assert!(rest_plan.exps.is_empty());
    assert_eq!(
        ports(rest_plan),
        newest(skip, last),
        "the rest, most recent first, without the master"
    );
    let o = fw.job(now, early(batches.len() as u32), done(before.0, 0));
    assert!(o.replies.is_empty(), "the client waits for the rest");
    assert!(
        !fw.tick(now).iter().any(is_commit),
        "the rest is planned once"
    );
    let replies = fw.commit_done(now, &vec![0; last], &[]);
    assert!(replies.contains(&Reply::Done(Status::Ok)), "{replies:?}");
    assert_eq!(fw.counters.commit_ok, u64::from(idle) + 2);
    assert!(fw.commit.is_none() && fw.commit_first.is_none());
}

/// A RELATED flow in a later batch brings its master along when the
/// master is older (its own turn then skips it), not when an earlier
/// batch created it, and goes alone when the master is not cached.
#[test]
fn a_batch_brings_an_older_master_along_and_its_turn_skips_it() {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB};
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    let idle = (FIRST_JOB + FIRST_BATCH + 500) as u16;
    let flow = |i: u16| {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1024 + i, 80));
        c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
        c
    };
    for i in 0..idle {
        fw.external_ct
            .upsert(&flow(i), Instant::from_millis(1 + u64::from(i)), true)
            .unwrap();
    }
    // In the first batch: a data flow whose master is the oldest entry,
    // one whose master the first job took, one whose master is gone.
    let in_batch = |k: u16| {
        Instant::from_millis(u64::from(idle) - FIRST_JOB as u64 - u64::from(k))
    };
    let old_master = flow(0).orig;
    let recent_master = flow(idle - 1).orig;
    let mut children = Vec::new();
    for (k, master) in [(10, old_master), (11, recent_master)]
        .into_iter()
        .chain([(12, tcp("10.9.9.9", "10.2.0.1", 1, 21))])
    {
        let mut c = Conntrack::new(tcp("10.1.0.7", "10.2.0.1", 6000 + k, 20));
        c.status = status::EXPECTED | status::CONFIRMED | status::SEEN_REPLY;
        c.master = Some(master);
        fw.external_ct.upsert(&c, in_batch(k), true).unwrap();
        children.push(c.orig);
    }
    let now = Instant::from_millis(100_000);
    let first = fw.control(now, Request::Commit(Target::Ct)).actions;
    let Work::Commit(plan0) = &first[0].work else {
        panic!("{first:?}")
    };
    assert!(plan0.cts.iter().any(|c| c.orig == recent_master));
    let is_commit = |j: &Job| matches!(j.work, Work::Commit(_));
    let batch = fw.tick(now).into_iter().find(is_commit).unwrap();
    let Work::Commit(plan1) = &batch.work else {
        panic!()
    };
    let at = |t: &Tuple| plan1.cts.iter().position(|c| c.orig == *t);
    let (m, child) = (at(&old_master).unwrap(), at(&children[0]).unwrap());
    assert!(m < child, "the master is created first");
    assert!(at(&children[1]).is_some() && at(&children[2]).is_some());
    assert_eq!(at(&recent_master), None, "the first job created it");
    assert_eq!(plan1.cts.len(), FIRST_BATCH + 1, "the batch and the master");
    let purpose = first[0].purpose;
    let done = Done::Committed {
        cts: vec![0; plan0.cts.len()],
        exps: Vec::new(),
        failed: Vec::new(),
        took_us: [1, 1],
        aborted: None,
    };
    fw.job(now, purpose, done);
    let rest = fw.tick(now).into_iter().find(is_commit).unwrap();
    assert_eq!(rest.purpose, Purpose::Commit { client: CLIENT });
    let Work::Commit(plan2) = &rest.work else {
        panic!()
    };
    assert!(plan2.cts.iter().all(|c| c.orig != old_master), "once only");
    let all = plan0.cts.len() + plan1.cts.len() + plan2.cts.len();
    assert_eq!(all, usize::from(idle) + children.len());
}

/// An expectation whose master is itself RELATED (H.323's H.245
/// channel, master of the RTP expectations) and not among the 256 most
/// recent: the master's whole chain goes into the first stage, each
/// master before what names it, so the kernel is never asked for the
/// expectation (nor its master) before the master. `fillers` more recent
/// conntracks: a commit in one job, or split.
fn a_related_masters_chain_precedes_its_expectation(fillers: u16) {
    let mut fw = node(cfg("", "FTFW { }", "ExpectationSync On"), 1);
    let est = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
    let mut a = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", 40000, 1720));
    a.status = est;
    a.timeout = Some(432000);
    let mut b = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", 40001, 30000));
    b.status = est | status::EXPECTED;
    b.timeout = Some(432000);
    b.master = Some(a.orig);
    let t0 = Instant::from_millis(0);
    fw.external_ct.upsert(&a, t0, true).unwrap();
    fw.external_ct.upsert(&b, t0, true).unwrap();
    fw.external_exp.upsert(&pasv(&b), t0, true).unwrap();
    for i in 0..fillers {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1024 + i, 80));
        c.status = est;
        c.timeout = Some(432000);
        let at = Instant::from_millis(1 + u64::from(i));
        fw.external_ct.upsert(&c, at, true).unwrap();
    }
    let o =
        fw.control(Instant::from_millis(10_000), Request::Commit(Target::All));
    let Work::Commit(plan) = &o.actions[0].work else {
        panic!()
    };
    let at = |t: &Tuple| plan.cts.iter().position(|c| c.orig == *t).unwrap();
    let (ia, ib) = (at(&a.orig), at(&b.orig));
    assert_eq!(plan.exps.len(), plan.first.1, "expectations: first stage");
    assert!(ia < ib, "A before B");
    assert!(
        ib < plan.first.0,
        "B (index {ib}) must precede the expectations, created after the \
         first {} conntracks",
        plan.first.0
    );
}

#[test]
fn an_expectation_of_a_related_master_follows_its_masters_whole_chain() {
    a_related_masters_chain_precedes_its_expectation(300);
}

#[test]
fn in_a_split_commit_an_expectation_of_a_related_master_follows_its_chain() {
    let split = super::commit_split::SPLIT_ABOVE as u16;
    a_related_masters_chain_precedes_its_expectation(split + 100);
}

/// A split commit of [`FIRST_JOB`] + [`FIRST_BATCH`] + 500 idle
/// conntracks, its first two jobs handed out (the first stage's and the
/// first batch's, both with the worker).
fn split_commit_of_three_jobs(now: Instant) -> (Fw, Job, Job) {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB};
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    let n = (FIRST_JOB + FIRST_BATCH + 500) as u16;
    for i in 0..n {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1024 + i, 80));
        c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
        fw.external_ct
            .upsert(&c, Instant::from_millis(1 + u64::from(i)), true)
            .unwrap();
    }
    let mut j1 = fw.control(now, Request::Commit(Target::Ct)).actions;
    let j2 = fw.tick(now).into_iter().find(is_commit).unwrap();
    let first = |batch| Purpose::CommitFirst {
        client: CLIENT,
        batch,
    };
    assert_eq!(j1[0].purpose, first(0));
    assert_eq!(j2.purpose, first(1));
    (fw, j1.remove(0), j2)
}

fn is_commit(j: &Job) -> bool {
    matches!(j.work, Work::Commit(_))
}

/// Every entry of a commit job created.
fn committed(j: &Job) -> Done {
    let Work::Commit(p) = &j.work else { panic!() };
    Done::Committed {
        cts: vec![0; p.cts.len()],
        exps: vec![0; p.exps.len()],
        failed: Vec::new(),
        took_us: [1, 1],
        aborted: None,
    }
}

/// A split commit whose last job the worker refuses (its queue full)
/// while an earlier job is still queued: the refusal comes back at once,
/// out of order, and the commit (the client's answer, the NEW events'
/// return) waits for the earlier job all the same.
#[test]
fn a_refused_last_job_leaves_the_commit_running_until_every_earlier_job_ends() {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB};
    let now = Instant::from_millis(100_000);
    let (mut fw, j1, j2) = split_commit_of_three_jobs(now);
    fw.job(now, j1.purpose, committed(&j1));
    let j3 = fw.tick(now).into_iter().find(is_commit).unwrap();
    assert_eq!(j3.purpose, Purpose::Commit { client: CLIENT });
    // The worker's queue is full: j3 comes straight back, j2 still queued.
    let o = fw.job(now, j3.purpose, queue_full());
    assert!(
        o.replies.is_empty() && fw.committing(),
        "j2 ({FIRST_BATCH} entries) has not run, yet the commit ended: {:?}",
        o.replies
    );
    let o = fw.job(now, j2.purpose, committed(&j2));
    assert_eq!(
        o.replies,
        [Reply::Done(Status::Failed(
            "500 entries and 0 expectations can't be committed".into()
        ))]
    );
    assert!(!fw.committing());
    assert_eq!(fw.counters.commit_ok, (FIRST_JOB + FIRST_BATCH) as u64);
    assert_eq!(fw.counters.commit_fail, 500);
}

/// An early job refused while the one before it is still queued counts
/// its own entries as failed, not those of the job ahead of it (whose
/// completion comes later and counts its own).
#[test]
fn a_refused_early_job_counts_its_own_entries_as_failed() {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB};
    let now = Instant::from_millis(100_000);
    let (mut fw, j1, j2) = split_commit_of_three_jobs(now);
    let o = fw.job(now, j2.purpose, queue_full());
    assert!(o.replies.is_empty() && fw.committing());
    let j3 = fw.tick(now).into_iter().find(is_commit).unwrap();
    assert_eq!(j3.purpose, Purpose::Commit { client: CLIENT });
    fw.job(now, j1.purpose, committed(&j1));
    let o = fw.job(now, j3.purpose, committed(&j3));
    assert_eq!(
        o.replies,
        [Reply::Done(Status::Failed(format!(
            "{FIRST_BATCH} entries and 0 expectations can't be committed"
        )))]
    );
    assert_eq!(fw.counters.commit_ok, (FIRST_JOB + 500) as u64);
    assert_eq!(fw.counters.commit_fail, FIRST_BATCH as u64);
}
