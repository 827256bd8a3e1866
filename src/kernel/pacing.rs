//! When the event loop reads the kernel's event socket during a burst
//! (pure: the socket counts its reads here and asks, each time a read
//! finds it empty, when to read next; the lossy-link simulation,
//! `sync::test_lossy`, reads its simulated socket by the same rule).
//!
//! The loop's cost is per wake-up (a dozen system calls and two context
//! switches), not per event. A wake-up for readiness reads at once. Once
//! the socket is read empty after a batch of 2 to [`GATHER_BELOW`] − 1,
//! or of 1 within [`BURST_GAP`] of the last batch, a burst is under way:
//! the next read comes [`GATHER`] later on a timer, without waiting for
//! readiness, and so on while each read finds something: one wake-up per
//! [`GATHER`] for as long as the burst lasts, and its last events are read
//! within [`GATHER`]. A read that finds nothing ends it (the loop waits
//! for readiness again, and what the burst left waiting may leave now);
//! so does a backlog of [`GATHER_BELOW`] or more (the loop is behind, or
//! a pause would let the socket's buffer fill): the next event is read as
//! soon as it comes. An isolated event (alone, long after the last) is no
//! burst: it leaves at once and the loop waits for readiness, one wake-up
//! for it where the pause after it cost a second (a router's steady
//! trickle of new flows is mostly such events).

use std::time::Duration;

use crate::time::Instant;

/// How long a burst's events gather between two reads. Until wave 16 the
/// pause (500 µs) came after each wake-up for readiness, which read
/// nothing before it: two wake-ups per pause, and an isolated event or a
/// burst's last one waited the whole pause when it was the one that woke
/// the loop. Reading on a timer for as long as something comes, in
/// alternating lossy runs of the bench (`results/wave16-1-tick.md`, 16
/// runs each): 250 µs took 3–6 % less of the sender's CPU per generated
/// second than the old pause, with a lag median of 0.76–1.03 ms against
/// 1.08–1.17 ms; 100 µs took 21–25 % more for 0.62–0.91 ms; 200 µs fell
/// between. How the daemon waits it out: `kernel::events`.
pub const GATHER: Duration = Duration::from_micros(250);

/// A batch this large or larger is a backlog: the loop waits for
/// readiness instead of pausing (see the module notes). 64 in 250 µs is
/// 256 000 events a second: below that rate a pause gathers fewer.
pub const GATHER_BELOW: usize = 64;

/// A batch of one this soon after the last batch is a burst's (read on
/// the timer); later, an isolated event (read on readiness).
pub const BURST_GAP: Duration = Duration::from_micros(500);

/// What the loop does once a read found the event socket empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDrain {
    /// A burst is under way: read again this much later, on a timer.
    Pause(Duration),
    /// The events paused (an isolated event, or a burst's end): wait for
    /// readiness, and let what they left waiting leave now.
    Paused,
    /// A backlog was read: wait for readiness (more is coming at once).
    Backlog,
}

/// Counts the event socket's reads between the times it was found empty.
#[derive(Debug, Default)]
pub struct ReadPacing {
    /// Datagrams read since the socket was last found empty.
    batch: usize,
    /// When the last batch (not nothing) was found read.
    last_batch: Option<Instant>,
}

impl ReadPacing {
    /// A datagram (or an error) was read.
    pub fn read(&mut self) {
        self.batch += 1;
    }

    /// A read found the socket empty at `now`: whether to let more
    /// gather before reading again without waiting for readiness (see
    /// [`AfterDrain`] and the module notes). A new batch starts.
    pub fn drained(&mut self, now: Instant) -> AfterDrain {
        let batch = std::mem::take(&mut self.batch);
        if batch == 0 {
            return AfterDrain::Paused;
        }
        let last = self.last_batch.replace(now);
        if batch >= GATHER_BELOW {
            return AfterDrain::Backlog;
        }
        let in_burst =
            batch > 1 || last.is_some_and(|t| now.since(t) <= BURST_GAP);
        if in_burst {
            AfterDrain::Pause(GATHER)
        } else {
            AfterDrain::Paused
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const T0: Instant = Instant::from_millis(1000);

    fn us(n: u64) -> Instant {
        T0 + Duration::from_micros(n)
    }

    fn after_batch(p: &mut ReadPacing, n: usize, now: Instant) -> AfterDrain {
        for _ in 0..n {
            p.read();
        }
        p.drained(now)
    }

    #[test]
    fn a_batch_of_several_is_followed_by_a_pause() {
        for n in [2, 25, GATHER_BELOW - 1] {
            let mut p = ReadPacing::default();
            assert_eq!(after_batch(&mut p, n, T0), AfterDrain::Pause(GATHER));
        }
    }

    #[test]
    fn an_isolated_event_leaves_at_once_and_waits_for_readiness() {
        let mut p = ReadPacing::default();
        assert_eq!(after_batch(&mut p, 1, T0), AfterDrain::Paused);
        // The next one 10 ms later: isolated too (a router's trickle).
        assert_eq!(after_batch(&mut p, 1, us(10_000)), AfterDrain::Paused);
        // One right after it: a burst begins.
        assert_eq!(
            after_batch(&mut p, 1, us(10_100)),
            AfterDrain::Pause(GATHER)
        );
    }

    #[test]
    fn nothing_ends_a_burst_and_a_backlog_waits_for_readiness() {
        let mut p = ReadPacing::default();
        assert_eq!(after_batch(&mut p, 0, T0), AfterDrain::Paused);
        assert_eq!(after_batch(&mut p, GATHER_BELOW, T0), AfterDrain::Backlog);
        assert_eq!(after_batch(&mut p, 1000, T0), AfterDrain::Backlog);
    }

    #[test]
    fn a_burst_is_read_on_the_timer_until_a_read_finds_nothing() {
        let mut p = ReadPacing::default();
        let mut t = 0;
        for batch in [3, 12, 1, 30, 1, 7] {
            t += GATHER.as_micros() as u64;
            assert_eq!(
                after_batch(&mut p, batch, us(t)),
                AfterDrain::Pause(GATHER),
                "after a batch of {batch}"
            );
        }
        // The pause's read found the socket empty: the burst ended.
        t += GATHER.as_micros() as u64;
        assert_eq!(p.drained(us(t)), AfterDrain::Paused);
        // An event soon after the burst's last batch is still the burst's.
        assert_eq!(
            after_batch(&mut p, 1, us(t + 200)),
            AfterDrain::Pause(GATHER)
        );
    }

    #[test]
    fn reads_without_a_look_add_up_to_a_backlog() {
        // EventIterationLimit stops a drain before the socket is empty:
        // the reads of several drains are one batch.
        let mut p = ReadPacing::default();
        assert_eq!(after_batch(&mut p, GATHER_BELOW, T0), AfterDrain::Backlog);
    }
}
