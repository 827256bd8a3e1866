//! The event loop's timers (the node's next deadline, the pauses of the
//! event socket's and a conntrackd peer's reads during a burst): each a
//! `timerfd` waited on like any socket.
//!
//! async-io's timers live in a map its reactor splits and merges on every
//! poll (about 700 instructions each time, two polls per wake-up: a
//! sixth of the backup's instructions while replicating). The loop needs
//! two timers, each set for one moment at a time, so it uses timer file
//! descriptors instead and async-io's timer map stays empty. Without a
//! timerfd (no descriptor left at start) it falls back to an async-io
//! timer.

// I/O layer: a relative deadline needs the clock's current reading.
#![allow(clippy::disallowed_methods)]

use std::os::fd::OwnedFd;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
    timerfd_create, timerfd_settime,
};
use smol::{Async, Timer};

pub(crate) enum Deadline {
    Fd(Async<OwnedFd>),
    Timer(Timer),
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

impl Deadline {
    /// A timer that is not set.
    pub(crate) fn new() -> Deadline {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        );
        match fd.map_err(std::io::Error::from).and_then(Async::new) {
            Ok(fd) => Deadline::Fd(fd),
            Err(e) => {
                log::warn!("no timerfd ({e}): using the runtime's timers");
                Deadline::Timer(Timer::never())
            }
        }
    }

    /// Fires at `at` (at once when it has passed), replacing any earlier
    /// setting.
    pub(crate) fn set_at(&mut self, at: Instant) {
        match self {
            Deadline::Fd(fd) => {
                // Zero would disarm the timer: a deadline that has passed
                // fires after a nanosecond.
                let left = at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1));
                let spec = Itimerspec {
                    it_interval: timespec(Duration::ZERO),
                    it_value: timespec(left),
                };
                let set = timerfd_settime(
                    fd.get_ref(),
                    TimerfdTimerFlags::empty(),
                    &spec,
                );
                if let Err(e) = set {
                    // Not expected on a valid descriptor; the loop's
                    // link check (each second) still wakes it.
                    log::warn!("timerfd_settime: {e}");
                }
            }
            Deadline::Timer(t) => {
                t.set_at(at);
            }
        }
    }

    /// Fires `after` from now, replacing any earlier setting.
    pub(crate) fn set_after(&mut self, after: Duration) {
        self.set_at(Instant::now() + after);
    }

    /// Waits until the timer fires (then it is no longer set).
    pub(crate) async fn fired(&mut self) {
        match self {
            Deadline::Fd(fd) => {
                // `poll_readable`, not `readable()`: the future of
                // `readable()` unregisters its waker when dropped, and the
                // loop builds its wait anew every turn, so every turn paid
                // an `epoll_ctl` to register the timer again. This waker
                // stays registered until the timer fires. It answers
                // Ready right after a registration too, fired or not:
                // the read tells. Bounded: a stale readiness (the timer
                // was set again since) reads nothing and waits again.
                let mut tries = 0;
                std::future::poll_fn(|cx| {
                    loop {
                        match fd.poll_readable(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Err(_)) => return Poll::Ready(()),
                            Poll::Ready(Ok(())) => {}
                        }
                        tries += 1;
                        let mut count = [0u8; 8];
                        if rustix::io::read(fd.get_ref(), &mut count).is_ok()
                            || tries >= 1000
                        {
                            return Poll::Ready(());
                        }
                    }
                })
                .await;
            }
            Deadline::Timer(t) => {
                t.await;
            }
        }
    }
}

/// A pause of one input's reads during a burst (the event socket's
/// gather; a conntrackd peer's datagrams, `replicator::peer_pacing`): the
/// loop waits for this timer instead of the input's readiness, and reads
/// it when the timer fires. When to pause is `kernel::pacing`'s rule.
pub(crate) struct ReadPause {
    timer: Deadline,
    on: bool,
}

impl ReadPause {
    pub(crate) fn new() -> ReadPause {
        ReadPause {
            timer: Deadline::new(),
            on: false,
        }
    }

    /// The input is next read `pause` from now, not on readiness.
    pub(crate) fn start(&mut self, pause: Duration) {
        self.timer.set_after(pause);
        self.on = true;
    }

    /// A pause is under way.
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// The timer to wait for instead of the input's readiness, while a
    /// pause is under way.
    pub(crate) fn timer(&mut self) -> Option<&mut Deadline> {
        self.on.then_some(&mut self.timer)
    }

    /// The pause is over (its timer fired, or the rule ended it): the
    /// input is read now, then on readiness unless a pause starts again.
    pub(crate) fn end(&mut self) {
        self.on = false;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fires_at_its_deadline_and_again_when_set_again() {
        smol::block_on(async {
            let mut d = Deadline::new();
            assert!(matches!(d, Deadline::Fd(_)), "timerfd available");
            let t0 = Instant::now();
            d.set_at(t0 + Duration::from_millis(30));
            d.fired().await;
            assert!(t0.elapsed() >= Duration::from_millis(30));
            // A later setting replaces an earlier one.
            let t1 = Instant::now();
            d.set_at(t1 + Duration::from_millis(5));
            d.set_at(t1 + Duration::from_millis(40));
            d.fired().await;
            assert!(t1.elapsed() >= Duration::from_millis(40));
            // A deadline that has passed fires at once.
            d.set_at(t1);
            let t2 = Instant::now();
            d.fired().await;
            assert!(t2.elapsed() < Duration::from_secs(1));
        });
    }

    #[test]
    fn a_read_pause_offers_its_timer_only_while_under_way() {
        smol::block_on(async {
            let mut p = ReadPause::new();
            assert!(!p.is_on() && p.timer().is_none());
            let t0 = Instant::now();
            p.start(Duration::from_millis(20));
            assert!(p.is_on());
            p.timer().expect("under way").fired().await;
            assert!(t0.elapsed() >= Duration::from_millis(20));
            p.end();
            assert!(!p.is_on() && p.timer().is_none());
        });
    }
}
