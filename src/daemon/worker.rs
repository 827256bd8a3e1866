//! The kernel worker: one thread that runs every ctnetlink job that may
//! block (dumps, flushes, commits, injections), so the event loop never
//! waits on the kernel.
//!
//! ```text
//!  loop ──Job──► [bounded queue, JOB_QUEUE] ──► worker thread
//!  loop ◄──Completion── [bounded, parts of dumps] ◄──┘  (dump, flush,
//!                                                       commit, inject
//!                                                       sockets)
//! ```
//!
//! Jobs run one at a time in the order given, so injected changes reach
//! the kernel in the peer's order and a dump's parts arrive in sequence.
//! A dump is handed back in parts of [`DUMP_PART`] entries, so the loop
//! folds a 200 000-entry table into the cache a slice at a time between
//! datagrams and control requests.

use std::io;
use std::thread::JoinHandle;

use smol::channel::{self, Receiver, Sender, TrySendError};

use super::{inject, sched};
use crate::config::{Filter, Scheduler};
use crate::filter;
use crate::kernel::codec::{self, Object};
use crate::kernel::commit::{CommitRules, Plan};
use crate::kernel::socket::CtSocket;
use crate::model::Conntrack;
use crate::node::{Completion, Done, Job, Work};

/// Most jobs waiting for the worker; more are refused (and the node told
/// so) rather than queued without bound.
pub(crate) const JOB_QUEUE: usize = 1024;
/// Entries per part of a dump.
pub(crate) const DUMP_PART: usize = 2048;
/// Completions waiting for the loop: the worker waits when the loop is
/// this far behind. Kept to a couple of dump parts: at 64 (131 072
/// entries, more than most tables) a loop busy with clients let a whole
/// dump pile up here, about 300 bytes an entry, beside the cache it was
/// folded into (300 waiting conntrackd `-R` clients grew the peak RSS by
/// 2.8 to 14 MB at 50 000 flows; with 2, by 2.2 MB every time). A `-R` of
/// 100 000 flows takes the same time (205 against 209 ms): the kernel
/// dump waits while the loop folds a part.
const DONE_QUEUE: usize = 2;
/// A real-time commit rests after this much work when another thread
/// waits for a CPU (`sched::others_waiting`), so that every other process
/// gets a turn at least that often; when none waits it goes on (a rest
/// then only delays the failover: 10 % of a 100 000-entry commit). Measured
/// in time, not entries: a create costs about half as much when the event
/// socket is out of the NEW group (`node::commit_events`), and a fixed
/// count of 2048 then rested twice as often as it needed to (49 rests,
/// about 55 ms of a 100 000-entry commit).
const RT_WORK: std::time::Duration = std::time::Duration::from_millis(10);
/// The rest.
const RT_REST: std::time::Duration = std::time::Duration::from_millis(1);
/// Conntracks created between two looks at the clock (four sends).
const RT_STEP: usize = 1024;

/// The sockets the worker owns, and what it needs to use them.
pub(crate) struct JobSockets {
    pub dump: CtSocket,
    pub flush: CtSocket,
    pub commit: CtSocket,
    pub inject: CtSocket,
    pub filter: Filter,
    pub rules: CommitRules,
    /// The real-time policy a commit runs at (one step below the loop's).
    pub commit_sched: Scheduler,
}

pub(crate) struct Worker {
    jobs: Sender<Job>,
    pub done: Receiver<Completion>,
    _thread: JoinHandle<()>,
}

impl Worker {
    /// Starts the thread.
    pub(crate) fn start(sockets: JobSockets) -> io::Result<Worker> {
        let (jobs, job_rx) = channel::bounded(JOB_QUEUE);
        let (done_tx, done) = channel::bounded(DONE_QUEUE);
        let thread = std::thread::Builder::new().name("kernel".into()).spawn(
            move || {
                // Started by the real-time loop: back to the normal policy
                // (see `sched`).
                sched::normal();
                run(sockets, &job_rx, &done_tx)
            },
        )?;
        Ok(Worker {
            jobs,
            done,
            _thread: thread,
        })
    }

    /// Queues a job; a full queue gives the job back as a completion that
    /// says so.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Completion> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(j) | TrySendError::Closed(j)) => {
                Err(Completion {
                    purpose: j.purpose,
                    done: Done::Failed("kernel job queue full".into()),
                })
            }
        }
    }
}

/// During the start: the worker's next completion, or None once a stop
/// signal came first (an unreadable signal is no stop, as in
/// `forward_signals`), so a stop need not wait for the whole start-up
/// dump. Err: the worker is gone.
pub(crate) async fn completion_or_stop(
    done: &Receiver<Completion>,
    signals: &mut async_signal::Signals,
) -> Option<Result<Completion, super::Error>> {
    use smol::stream::StreamExt as _;
    let next = async {
        Some(done.recv().await.map_err(|_| super::Error::Worker(None)))
    };
    let stop = async {
        while let Some(sig) = signals.next().await {
            if sig.is_ok() {
                return None;
            }
        }
        smol::future::pending().await
    };
    smol::future::or(next, stop).await
}

/// Whether this is a job's last completion.
pub(crate) fn is_final(done: &Done) -> bool {
    !matches!(done, Done::Dumped { last: false, .. })
}

fn run(mut s: JobSockets, jobs: &Receiver<Job>, done: &Sender<Completion>) {
    while let Ok(job) = jobs.recv_blocking() {
        let purpose = job.purpose;
        let send =
            |d: Done| done.send_blocking(Completion { purpose, done: d });
        let result = match job.work {
            Work::Dump {
                conntracks,
                expectations,
            } => dump(&mut s.dump, conntracks, expectations, &send),
            Work::Flush {
                conntracks,
                expectations,
            } => flush(
                [&mut s.dump, &mut s.flush],
                &s.filter,
                conntracks,
                expectations,
            )
            .map(|n| send(Done::Flushed(n))),
            Work::Commit(plan) => {
                let sock = &mut s.commit;
                Ok(send(sched::raised(s.commit_sched, || {
                    commit_plan(sock, &plan)
                })))
            }
            Work::Get { orig, zone } => s.dump.get_ct(&orig, zone).map(|o| {
                send(Done::Dumped {
                    objects: o.into_iter().collect(),
                    last: true,
                })
            }),
            Work::Inject(changes) => {
                inject::inject(&mut s.inject, &s.rules, &changes)
                    .map(|errs| send(Done::Injected(errs)))
            }
        };
        let sent = match result {
            Ok(sent) => sent,
            Err(e) => send(Done::Failed(crate::strerror::strerror(&e))),
        };
        if sent.is_err() {
            // The loop is gone: the daemon is stopping.
            return;
        }
    }
}

type Sent = Result<(), channel::SendError<Completion>>;

/// Dumps the tables and hands them over in parts; conntracks first, so
/// masters are cached before their expectations.
fn dump(
    sock: &mut CtSocket,
    conntracks: bool,
    expectations: bool,
    send: &dyn Fn(Done) -> Sent,
) -> io::Result<Sent> {
    // Parts leave as they fill: the table is never held whole.
    let mut part = Vec::with_capacity(DUMP_PART);
    let mut sent: Sent = Ok(());
    let mut each = |o: Object| {
        part.push(o);
        if part.len() == DUMP_PART && sent.is_ok() {
            let objects =
                std::mem::replace(&mut part, Vec::with_capacity(DUMP_PART));
            sent = send(Done::Dumped {
                objects,
                last: false,
            });
        }
    };
    if conntracks {
        sock.dump_each(false, &mut each)?;
    }
    if expectations {
        sock.dump_each(true, &mut each)?;
    }
    if sent.is_err() {
        return Ok(sent);
    }
    Ok(send(Done::Dumped {
        objects: part,
        last: true,
    }))
}

/// Deletes every kernel conntrack the Filter accepts (entries the node
/// ignores are never deleted), and/or every expectation. Returns how many
/// conntracks were deleted (the expectation table goes in one request).
///
/// The conntracks are deleted while the dump that finds them runs (on
/// `dump`, the deletes on `delete`), a batch at a time: the table is never
/// held whole. Dumped first, 100 000 entries raised the peak RSS by 30 MB
/// (`tests/memory_release.rs`). An entry the dump reports twice (it
/// restarts a hash chain whose entry it paused at was deleted) is not
/// found the second time, and not counted.
fn flush(
    [dump, delete]: [&mut CtSocket; 2],
    f: &Filter,
    conntracks: bool,
    expectations: bool,
) -> io::Result<usize> {
    let mut deleted = 0;
    if conntracks {
        let mut victims = Vec::with_capacity(FLUSH_BATCH);
        let mut failed = None;
        dump.dump_each(false, &mut |o| {
            if let Object::Ct(c) = o
                && failed.is_none()
                && filter::conntrack(f, &c)
            {
                victims.push(c);
                if victims.len() == FLUSH_BATCH {
                    match delete_cts(delete, &victims) {
                        Ok(n) => deleted += n,
                        Err(e) => failed = Some(e),
                    }
                    victims.clear();
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        deleted += delete_cts(delete, &victims)?;
    }
    if expectations {
        // One request for the whole table, not a delete per expectation
        // read from a dump: the kernel reports no zone in those, and a
        // delete by tuple in zone 0 missed every one whose master is in
        // another zone. Not counted: that took a dump of the table only
        // for a number nobody reads.
        let errs =
            delete.batch(|buf, seq| codec::encode_exp_flush(buf, seq()))?;
        if let Some(&e) = errs.first().filter(|&&e| e != 0) {
            return Err(io::Error::from_raw_os_error(e));
        }
    }
    Ok(deleted)
}

/// Conntracks deleted in one send by [`flush`].
const FLUSH_BATCH: usize = 256;

/// Deletes `victims` by their original tuples, and those not found so by
/// their reply tuples: one whose zone is set for the original direction
/// only (the model does not keep it) has its reply tuple in zone 0.
/// Returns how many were deleted.
fn delete_cts(sock: &mut CtSocket, victims: &[Conntrack]) -> io::Result<usize> {
    let errs = sock.batch(|buf, seq| {
        for c in victims {
            codec::encode_ct_delete(buf, &c.orig, c.zone, seq());
        }
    })?;
    let mut deleted = errs.iter().filter(|&&e| e == 0).count();
    let gone = rustix::io::Errno::NOENT.raw_os_error();
    let missed: Vec<_> = victims
        .iter()
        .zip(&errs)
        .filter(|(_, e)| **e == gone)
        .filter_map(|(c, _)| Some((c.reply?, c.zone)))
        .collect();
    let errs = sock.batch(|buf, seq| {
        for (reply, zone) in &missed {
            codec::encode_ct_delete_by_reply(buf, reply, *zone, seq());
        }
    })?;
    deleted += errs.iter().filter(|&&e| e == 0).count();
    Ok(deleted)
}

/// Runs a commit plan stage by stage (the first stage's conntracks and
/// expectations before the idle rest); each refused entry is reported
/// (the entry itself, for the log). A socket that fails midway (no
/// answer within its timeout) ends the job there: what the kernel
/// answered for counts as it answered, the rest as failed.
fn commit_plan(sock: &mut CtSocket, plan: &Plan) -> Done {
    use std::time::{Duration, Instant};
    // Conntracks and expectations timed apart, for the log's two "commit
    // has taken" lines.
    let (mut ct_took, mut exp_took) = (Duration::ZERO, Duration::ZERO);
    let mut cts = Vec::with_capacity(plan.cts.len());
    let mut exps = Vec::with_capacity(plan.exps.len());
    let mut working_since = Instant::now();
    let cpus = sched::usable_cpus();
    let mut aborted = None;
    'stages: for (c, x) in plan.stages() {
        let t = Instant::now();
        for step in c.chunks(RT_STEP) {
            if working_since.elapsed() >= RT_WORK {
                if sched::others_waiting(cpus) {
                    std::thread::sleep(RT_REST);
                }
                working_since = Instant::now();
            }
            if let Err(e) = sock.create_cts_into(step, &mut cts) {
                // The log's "commit has taken" counts the wait too.
                ct_took += t.elapsed();
                aborted = Some(e);
                break 'stages;
            }
        }
        let t2 = Instant::now();
        ct_took += t2 - t;
        let created = sock.create_exps_into(x, &mut exps);
        exp_took += t2.elapsed();
        if let Err(e) = created {
            aborted = Some(e);
            break;
        }
    }
    let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
    committed(
        plan,
        cts,
        exps,
        aborted,
        [micros(ct_took), micros(exp_took)],
    )
}

/// A commit's outcome from what the kernel answered (`cts` and `exps`:
/// one errno for each of the plan's first entries, in plan order) and
/// why the job ended early, if it did: the entries with no answer count
/// as failed (EIO), and only the refusals the kernel gave are listed
/// with their entries (one log line for the rest, not one per entry).
fn committed(
    plan: &Plan,
    mut cts: Vec<i32>,
    mut exps: Vec<i32>,
    aborted: Option<io::Error>,
    took_us: [u32; 2],
) -> Done {
    let refused_cts = cts
        .iter()
        .zip(&plan.cts)
        .filter(|(e, _)| **e != 0)
        .map(|(&e, c)| (e, Object::Ct(c.clone())));
    let refused_exps = exps
        .iter()
        .zip(&plan.exps)
        .filter(|(e, _)| **e != 0)
        .map(|(&e, x)| (e, Object::Exp(x.clone())));
    let failed = refused_cts.chain(refused_exps).collect();
    let eio = rustix::io::Errno::IO.raw_os_error();
    cts.resize(plan.cts.len(), eio);
    exps.resize(plan.exps.len(), eio);
    Done::Committed {
        cts,
        exps,
        failed,
        took_us,
        aborted: aborted.map(|e| crate::strerror::strerror(&e).into()),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::kernel::test_netns::in_new_netns;
    use crate::model::{Expect, L4, Tuple};

    fn ct(port: u16) -> Conntrack {
        Conntrack::new(Tuple {
            src: "10.1.0.1".parse().unwrap(),
            dst: "10.2.0.1".parse().unwrap(),
            proto: 6,
            l4: L4::Ports { src: port, dst: 80 },
        })
    }

    /// The socket failed after the kernel answered for three of five
    /// conntracks (one refused): those three keep their answers, the two
    /// after them and the expectation are failed (EIO), and only the
    /// kernel's refusal is listed with its entry.
    #[test]
    fn a_commit_ended_midway_keeps_what_the_kernel_answered() {
        let master = ct(21);
        let plan = Plan {
            cts: (0..5).map(|i| ct(1000 + i)).collect(),
            exps: vec![Expect::new(master.orig, ct(2000).orig, ct(0).orig)],
            first: (0, 0),
        };
        let eexist = rustix::io::Errno::EXIST.raw_os_error();
        let eio = rustix::io::Errno::IO.raw_os_error();
        let why = io::Error::new(io::ErrorKind::TimedOut, "no answer");
        let Done::Committed {
            cts,
            exps,
            failed,
            aborted,
            ..
        } = committed(&plan, vec![0, eexist, 0], Vec::new(), Some(why), [1, 0])
        else {
            panic!("not a commit's outcome")
        };
        assert_eq!(cts, [0, eexist, 0, eio, eio]);
        assert_eq!(exps, [eio]);
        assert_eq!(failed, [(eexist, Object::Ct(plan.cts[1].clone()))]);
        assert_eq!(aborted.as_deref(), Some("no answer"));
    }

    #[test]
    fn a_whole_commit_is_not_aborted() {
        let plan = Plan {
            cts: vec![ct(1000)],
            exps: Vec::new(),
            first: (0, 0),
        };
        let done = committed(&plan, vec![0], Vec::new(), None, [1, 0]);
        assert!(matches!(
            done,
            Done::Committed { ref cts, aborted: None, .. } if cts == &[0]
        ));
    }

    /// `-F`'s flush of the expectation table empties it whatever the
    /// zone of their masters. The kernel reports no zone in an
    /// expectation, and each was deleted by its tuple in zone 0: those
    /// of a master in any other zone were not found (ENOENT) and stayed.
    #[test]
    fn a_flush_deletes_the_expectations_of_masters_in_zones() {
        use crate::model::{ProtoInfo, status};
        let left = in_new_netns("expflush", || {
            let mut s = CtSocket::open().unwrap();
            let rules = CommitRules::default();
            let mut exps = Vec::new();
            for (zone, port) in [(0, 40000), (7, 40001)] {
                let mut master = ct(port);
                master.orig.dst = "10.2.0.1".parse().unwrap();
                master.orig.l4 = L4::Ports { src: port, dst: 21 };
                master.zone = zone;
                master.status = status::SEEN_REPLY | status::ASSURED;
                master.timeout = Some(600);
                master.helper = Some("ftp".try_into().unwrap());
                master.proto_info = ProtoInfo::Tcp {
                    state: 3,
                    wscale_orig: 0,
                    wscale_reply: 0,
                    flags_orig: 0,
                    flags_reply: 0,
                };
                let master =
                    crate::kernel::commit::prepare_ct(&master, 0, &rules);
                assert_eq!(
                    s.create_cts(std::slice::from_ref(&master)).unwrap(),
                    [0]
                );
                let mut tuple = master.orig;
                tuple.l4 = L4::Ports {
                    src: 0,
                    dst: port + 10000,
                };
                let mut mask = tuple;
                mask.src = "255.255.255.255".parse().unwrap();
                mask.dst = mask.src;
                mask.l4 = L4::Ports {
                    src: 0,
                    dst: 0xffff,
                };
                let mut x = Expect::new(master.orig, tuple, mask);
                x.zone = zone;
                x.timeout = Some(300);
                x.helper = Some("ftp".try_into().unwrap());
                exps.push(crate::kernel::commit::prepare_exp(&x, 0, &rules));
            }
            assert_eq!(s.create_exps(&exps).unwrap(), [0, 0]);
            assert_eq!(s.dump(true).unwrap().len(), 2);
            let mut d = CtSocket::open().unwrap();
            flush([&mut d, &mut s], &Filter::default(), false, true).unwrap();
            s.dump(true).unwrap()
        });
        let Some(left) = left else { return };
        assert!(left.is_empty(), "left after the flush: {left:?}");
    }
}
