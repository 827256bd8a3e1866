//! Cross-build smoke test: does the smol reactor's timer fire on this
//! target, and without spinning?
//!
//! Why it exists: on mips/mipsel musl, rustix's libc backend once handed
//! musl's `timerfd_settime` an `itimerspec` of the wrong layout, so the
//! reactor's timers never fired and it spun (docs/notes/
//! rustix-mips-musl-timerfd.md). Every daemon timeout rides on that
//! reactor, so `make cross-test` runs this under qemu-user on each target.
//!
//! Waits for a few short smol timers and checks that the elapsed time is
//! bounded both ways and that the process mostly slept. Exits 0 and prints
//! `timer ok …`, or prints what went wrong and exits 1. A watchdog thread
//! bounds the run at 20 s whatever the reactor does.

// Measuring the clock is this program's whole point.
#![allow(clippy::disallowed_methods)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

/// Timers of 50 ms each: short enough to be sub-second (the broken layout
/// lost the nanoseconds), long enough to measure under qemu.
const ROUNDS: u32 = 6;
const STEP: Duration = Duration::from_millis(50);

/// CPU time of the whole process (qemu-user passes this clock through, so
/// it is qemu's own: emulation overhead included).
fn cpu_time() -> Duration {
    Duration::try_from(clock_gettime(ClockId::ProcessCPUTime))
        .unwrap_or_default()
}

fn main() -> ExitCode {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(20));
        eprintln!("timer FAILED: no timer fired within 20 s");
        std::process::exit(1);
    });
    let cpu0 = cpu_time();
    let start = Instant::now();
    smol::block_on(async {
        for _ in 0..ROUNDS {
            smol::Timer::after(STEP).await;
        }
    });
    let wall = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let want = STEP * ROUNDS;
    // Generous upper bounds: qemu-user on a loaded 2-core CI machine.
    if wall < want || wall > want * 20 {
        eprintln!("timer FAILED: {ROUNDS} × {STEP:?} took {wall:?}");
        return ExitCode::FAILURE;
    }
    if cpu > wall / 2 + Duration::from_millis(200) {
        eprintln!("timer FAILED: the reactor spun ({cpu:?} CPU in {wall:?})");
        return ExitCode::FAILURE;
    }
    println!("timer ok: {ROUNDS} × {STEP:?} in {wall:?}, {cpu:?} CPU");
    ExitCode::SUCCESS
}
