//! Real-time scheduling of the event loop, as conntrackd 1.4.7 does by
//! default (SCHED_RR at priority 99): the loop must drain the kernel's
//! event socket before a burst fills it, whatever else the router runs.
//!
//! The loop's thread is raised before the runtime's I/O thread exists
//! (async-io's "async-io" thread, which inherits the policy). Once the
//! loop has been idle for about 20 ms, that thread takes over the epoll
//! wait and keeps it while wake-ups are far apart: it is the one woken by
//! a datagram, an event or a `-s`, and it wakes the loop (a futex). At
//! the normal policy it made every such wake-up of the real-time loop
//! wait for a CPU behind the router's other processes.
//!
//! Only the loop's threads are raised for good: the kernel worker (dumps,
//! flushes, injections) keeps the normal policy, so a 200 000-entry flush
//! cannot take a core from the router's own processes. A commit is the
//! failover itself (conntrackd runs it in its real-time loop): the worker
//! runs it one step below the loop's priority ([`raised`], [`below`]), so
//! the loop still reads the commit's own events first on a shared core,
//! and rests between steps of the commit (`worker::RT_WORK`) whenever
//! another thread waits for a CPU ([`others_waiting`]), so that the other
//! processes get a turn: on two cores, the loop and the commit would
//! otherwise hold both for the whole commit. A rest nobody waits for
//! only makes the failover longer. `Scheduler { Type …
//! Priority … }` overrides the default; failing to set it (no
//! CAP_SYS_NICE, a container) is a warning, not a reason to stop.
//!
//! `Nice` (conntrackd 1.4.2's meaning; 1.4.5+ ignore it) sets the nice
//! value of the process before its threads start: it matters for the
//! kernel worker and the other normal-policy threads.

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue,
    ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
};

use crate::config::{SchedPolicy, Scheduler};

/// conntrackd 1.4.7's default.
pub(crate) const DEFAULT: Scheduler = Scheduler {
    policy: SchedPolicy::Rr,
    priority: 99,
};

/// Sets the nice value (`Nice`) of the calling thread, and so of every
/// thread it creates afterwards; the warning to log when it fails
/// (conntrackd 1.4.2's words). 0 leaves it as inherited.
pub(crate) fn nice(value: i32) -> Result<(), String> {
    if value == 0 {
        return Ok(());
    }
    rustix::process::setpriority_process(None, value)
        .map_err(|e| format!("Cannot set nice level {value}: {e}"))
}

/// Sets the calling thread's policy; the warning to log when it fails.
pub(crate) fn apply(s: Option<Scheduler>) -> Result<Scheduler, String> {
    let s = s.unwrap_or(DEFAULT);
    let policy = match s.policy {
        SchedPolicy::Rr => RealtimeThreadSchedulePolicy::RoundRobin,
        SchedPolicy::Fifo => RealtimeThreadSchedulePolicy::Fifo,
    };
    let fail = |why: String| {
        format!(
            "scheduler configuration failed: {why}. Continuing with system default scheduler."
        )
    };
    let value = ThreadPriorityValue::try_from(s.priority)
        .map_err(|e| fail(e.to_string()))?;
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(policy),
    )
    .map_err(|e| fail(format!("{e:?}")))?;
    Ok(s)
}

/// The same policy one priority step below `s` (the lowest stays).
pub(crate) fn below(s: Scheduler) -> Scheduler {
    Scheduler {
        priority: s.priority.saturating_sub(1).max(1),
        ..s
    }
}

/// Whether a thread waits for a CPU now: the kernel counts more
/// runnable threads (the caller among them) than there are CPUs this
/// process may use. Unreadable (no /proc): assume one does. Conservative
/// where the process is confined to fewer CPUs than the machine has, as
/// the count is the machine's.
pub(crate) fn others_waiting(cpus: usize) -> bool {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .as_deref()
        .and_then(runnable)
        .is_none_or(|r| r > cpus)
}

/// The CPUs this process may use (1 when unknown).
pub(crate) fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The runnable threads of a `/proc/loadavg` line: the fourth field's
/// numerator ("0.20 0.18 0.12 3/180 11206": 3).
fn runnable(loadavg: &str) -> Option<usize> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Runs `f` with the calling thread at policy `s` (when it can be set:
/// without CAP_SYS_NICE the loop has already warned), then puts the
/// thread back to the normal policy (its nice value is untouched).
pub(crate) fn raised<T>(s: Scheduler, f: impl FnOnce() -> T) -> T {
    let was_raised = apply(Some(s)).is_ok();
    let r = f();
    if was_raised {
        normal();
    }
    r
}

/// Puts the calling thread on the normal policy, with the nice value it
/// had (a thread already on it is left alone). thread-priority sets the
/// nice value with the policy (19, for its lowest priority): it is put
/// back, which a thread that was real-time may do. Dropping to
/// SCHED_OTHER needs no privilege.
pub(crate) fn normal() {
    if !matches!(
        thread_priority::thread_schedule_policy(),
        Ok(ThreadSchedulePolicy::Realtime(_))
    ) {
        return;
    }
    let nice = rustix::process::getpriority_process(None);
    let _ = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(
            ThreadPriorityValue::try_from(0u8).unwrap_or_default(),
        ),
        ThreadSchedulePolicy::Normal(
            thread_priority::NormalThreadSchedulePolicy::Other,
        ),
    );
    if let Ok(nice) = nice {
        let _ = rustix::process::setpriority_process(None, nice);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn round_robin_99_is_the_default_and_a_clause_overrides_it() {
        // A thread of its own: the test runner's threads keep their policy.
        let got = std::thread::spawn(|| {
            let r = apply(Some(Scheduler {
                policy: SchedPolicy::Fifo,
                priority: 10,
            }));
            let policy = rustix_policy();
            (r, policy)
        })
        .join()
        .unwrap();
        match got {
            // Root (CI): the policy really changed.
            (Ok(s), policy) => {
                assert_eq!(s.policy, SchedPolicy::Fifo);
                assert_eq!(policy, "SCHED_FIFO");
            }
            // Without CAP_SYS_NICE: a warning in conntrackd's words.
            (Err(w), _) => {
                eprintln!("SKIPPED (no CAP_SYS_NICE): {w}");
                assert!(w.starts_with("scheduler configuration failed: "));
            }
        }
        assert_eq!(DEFAULT.priority, 99);
        assert_eq!(DEFAULT.policy, SchedPolicy::Rr);
    }

    #[test]
    fn a_raised_run_is_real_time_and_the_thread_normal_after() {
        // A nice value of its own (raising it needs no privilege): the
        // thread gets it back after the raised run (thread-priority's
        // normal policy alone would leave 19).
        let (inside, after, nice) = std::thread::spawn(|| {
            rustix::process::setpriority_process(None, 5).unwrap();
            let inside = raised(below(DEFAULT), rustix_policy);
            let nice = rustix::process::getpriority_process(None).unwrap();
            (inside, rustix_policy(), nice)
        })
        .join()
        .unwrap();
        assert_eq!(after, "SCHED_OTHER");
        assert_eq!(nice, 5);
        if inside == "SCHED_OTHER" {
            eprintln!(
                "SKIPPED (no CAP_SYS_NICE): the policy could not be raised"
            );
        } else {
            assert_eq!(inside, "SCHED_RR");
        }
        assert_eq!(below(DEFAULT).priority, 98);
        let lowest = Scheduler {
            policy: SchedPolicy::Fifo,
            priority: 1,
        };
        assert_eq!(below(lowest), lowest);
    }

    #[test]
    fn the_runnable_count_is_the_fourth_fields_numerator() {
        assert_eq!(runnable("0.20 0.18 0.12 3/180 11206\n"), Some(3));
        assert_eq!(runnable("0.00 0.01 0.05 1/95 4242"), Some(1));
        assert_eq!(runnable("0.20 0.18 0.12"), None);
        assert_eq!(runnable("0.20 0.18 0.12 x/180 1"), None);
        assert_eq!(runnable(""), None);
    }

    #[test]
    fn threads_waiting_for_a_cpu_are_seen() {
        // Twice as many spinning threads as CPUs: some must wait. Seen
        // within 2 s (the count is read at an instant; a spinner may be
        // between two slices).
        let cpus = usable_cpus();
        let stop =
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..2 * cpus + 1)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut seen = false;
        while !seen && std::time::Instant::now() < deadline {
            seen = others_waiting(cpus);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        assert!(seen, "{} spinning threads on {cpus} CPUs", 2 * cpus + 1);
    }

    /// The calling thread's policy, as the kernel reports it.
    fn rustix_policy() -> &'static str {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Field 41 (policy), counted after the command's closing paren.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let policy: u32 = after.split(' ').nth(38).unwrap().parse().unwrap();
        match policy {
            0 => "SCHED_OTHER",
            1 => "SCHED_FIFO",
            2 => "SCHED_RR",
            _ => "other",
        }
    }
}
