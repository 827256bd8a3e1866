//! conntrackd features routers still use, on a real daemon in network
//! namespaces: `Nice` and `Scheduler` as the kernel reports them for the
//! daemon's threads, and `PollSecs` (replication without an event
//! subscription). Needs root; skipped with a message otherwise.

mod common;

use std::time::Duration;

use common::fw::{self, Fw};

/// (policy, real-time priority, nice) of every thread of `pid`, from
/// /proc/PID/task/*/stat (fields 41, 40 and 19).
fn threads(pid: u32) -> Vec<(u32, u32, i32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat =
            std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap();
        let f: Vec<&str> =
            stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // Counted from field 3 (state).
        let nice = f[19 - 3].parse().unwrap();
        let rt_priority = f[40 - 3].parse().unwrap();
        let policy = f[41 - 3].parse().unwrap();
        out.push((policy, rt_priority, nice));
    }
    out
}

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;

#[test]
fn nice_and_scheduler_are_applied_to_the_daemon() {
    let Some((a, _b)) = common::pair("nice") else {
        return;
    };
    let fw = Fw::start(
        &a,
        "nice",
        "Nice -7\n  Scheduler { Type FIFO\n Priority 20 }",
        &fw::udp_link("10.9.0.1", "10.9.0.2"),
    );
    let seen = threads(fw.daemon.0.id());
    eprintln!("threads (policy, rt priority, nice): {seen:?}");
    // The event loop runs real-time as configured …
    assert_eq!(
        seen.iter()
            .filter(|t| t.0 == SCHED_FIFO && t.1 == 20)
            .count(),
        1,
        "{seen:?}"
    );
    // … and every other thread (the kernel worker among them) has the
    // configured nice value.
    let normal: Vec<_> = seen.iter().filter(|t| t.0 == SCHED_OTHER).collect();
    assert!(!normal.is_empty(), "{seen:?}");
    assert!(normal.iter().all(|t| t.2 == -7), "{seen:?}");
    assert!(!fw.log().contains("Cannot set nice level"), "{}", fw.log());
    drop(fw);

    // Without the clauses: conntrackd 1.4.7's SCHED_RR 99, nice untouched.
    let fw = Fw::start(&a, "nice0", "", &fw::udp_link("10.9.0.1", "10.9.0.2"));
    std::thread::sleep(Duration::from_millis(100));
    let seen = threads(fw.daemon.0.id());
    assert!(seen.iter().any(|t| t.0 == 2 && t.1 == 99), "{seen:?}");
    assert!(seen.iter().all(|t| t.2 == 0), "{seen:?}");
}
