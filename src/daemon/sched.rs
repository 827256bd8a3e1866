//! Real-time scheduling of the event loop, as conntrackd 1.4.7 does by
//! default (SCHED_RR at priority 99): the loop must drain the kernel's
//! event socket before a burst fills it, whatever else the router runs.
//!
//! Only the loop's thread is raised for good: the kernel worker (dumps,
//! flushes, injections) keeps the normal policy, so a 200 000-entry flush
//! cannot take a core from the router's own processes. A commit is the
//! failover itself (conntrackd runs it in its real-time loop): the worker
//! runs it one step below the loop's priority ([`raised`], [`below`]), so
//! the loop still reads the commit's own events first on a shared core,
//! and rests between steps of the commit (`worker::RT_WORK`) so that the
//! other processes get a turn: on two cores, the loop and the commit
//! would otherwise hold both for the whole commit. `Scheduler { Type …;
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

/// Runs `f` with the calling thread at policy `s` (when it can be set:
/// without CAP_SYS_NICE the loop has already warned), then puts the
/// thread back to the normal policy (its nice value is untouched).
pub(crate) fn raised<T>(s: Scheduler, f: impl FnOnce() -> T) -> T {
    let was_raised = apply(Some(s)).is_ok();
    let r = f();
    if was_raised {
        // Cannot fail: dropping to SCHED_OTHER needs no privilege.
        let _ = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Crossplatform(
                ThreadPriorityValue::try_from(0u8).unwrap_or_default(),
            ),
            ThreadSchedulePolicy::Normal(
                thread_priority::NormalThreadSchedulePolicy::Other,
            ),
        );
    }
    r
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
        let (inside, after) = std::thread::spawn(|| {
            let inside = raised(below(DEFAULT), rustix_policy);
            (inside, rustix_policy())
        })
        .join()
        .unwrap();
        assert_eq!(after, "SCHED_OTHER");
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
