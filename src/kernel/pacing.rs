//! When the event loop reads the kernel's event socket during a burst
//! (pure: the socket counts its reads here and asks, each time a read
//! finds it empty, when to read next; the lossy-link simulation,
//! `sync::test_lossy`, reads its simulated socket by the same rule).
//!
//! The loop's cost is per wake-up (a dozen system calls and two context
//! switches), not per event. A wake-up for readiness reads at once: an
//! isolated event leaves without waiting. Once the socket is read empty
//! after a batch of 1 to [`GATHER_BELOW`] − 1, a burst is under way: the
//! next read comes [`GATHER`] later on a timer, without waiting for
//! readiness, and so on while each read finds something: one wake-up per
//! [`GATHER`] for as long as the burst lasts, and its last events are read
//! within [`GATHER`]. A read that finds nothing ends it (the loop waits
//! for readiness again); so does a backlog of [`GATHER_BELOW`] or more
//! (the loop is behind, or a pause would let the socket's buffer fill):
//! the next event is read as soon as it comes.

use std::time::Duration;

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

/// Counts the event socket's reads between the times it was found empty.
#[derive(Debug, Default)]
pub struct ReadPacing {
    /// Datagrams read since the socket was last found empty.
    batch: usize,
}

impl ReadPacing {
    /// A datagram (or an error) was read.
    pub fn read(&mut self) {
        self.batch += 1;
    }

    /// A read found the socket empty: how long to let more gather before
    /// reading again without waiting for readiness (the batch just read
    /// was small but not nothing: a burst is under way), or None to wait
    /// for readiness (nothing came since the last look, or a backlog was
    /// read). A new batch starts.
    pub fn drained(&mut self) -> Option<Duration> {
        let batch = std::mem::take(&mut self.batch);
        (1..GATHER_BELOW).contains(&batch).then_some(GATHER)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn after_batch(n: usize) -> Option<Duration> {
        let mut p = ReadPacing::default();
        for _ in 0..n {
            p.read();
        }
        p.drained()
    }

    #[test]
    fn a_small_batch_is_followed_by_a_pause() {
        assert_eq!(after_batch(1), Some(GATHER));
        assert_eq!(after_batch(25), Some(GATHER));
        assert_eq!(after_batch(GATHER_BELOW - 1), Some(GATHER));
    }

    #[test]
    fn nothing_or_a_backlog_waits_for_readiness() {
        assert_eq!(after_batch(0), None);
        assert_eq!(after_batch(GATHER_BELOW), None);
        assert_eq!(after_batch(1000), None);
    }

    #[test]
    fn a_burst_is_read_on_the_timer_until_a_read_finds_nothing() {
        let mut p = ReadPacing::default();
        for batch in [1, 12, 30, 7] {
            for _ in 0..batch {
                p.read();
            }
            assert_eq!(p.drained(), Some(GATHER), "after a batch of {batch}");
        }
        // The pause's read found the socket empty: back to readiness.
        assert_eq!(p.drained(), None);
        // An isolated event after it starts a burst's pacing again.
        p.read();
        assert_eq!(p.drained(), Some(GATHER));
    }

    #[test]
    fn reads_without_a_look_add_up_to_a_backlog() {
        // EventIterationLimit stops a drain before the socket is empty:
        // the reads of several drains are one batch.
        let mut p = ReadPacing::default();
        for _ in 0..GATHER_BELOW {
            p.read();
        }
        assert_eq!(p.drained(), None);
    }
}
