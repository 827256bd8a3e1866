//! When the event loop lets kernel events gather before reading them
//! (pure: the event socket counts its reads and waits here, and asks
//! whether to pause).
//!
//! The loop's cost is per wake-up (a dozen system calls and two context
//! switches), not per event: during a burst, a wake-up that read only a
//! few events is followed by a short pause ([`GATHER`]) so that the next
//! read finds many. A batch of [`GATHER_BELOW`] or more is a backlog (the
//! loop is behind, or the rate would overrun the socket's buffer in a
//! pause): the next wake-up reads at once.

use std::time::Duration;

/// How long more events may gather after a wake-up that followed a small
/// batch. It saved about a third of the sender's CPU per entry
/// (results/wave4-tx-sender.md). A burst's last events wait for it too
/// (half of it, on average); at 100 µs the sender took a fifth more CPU
/// per entry in `benches/bench.py` (0.39 s against 0.32–0.33 s for
/// 50 000, results/wave8-*), for a lag under loss that the run-to-run
/// spread hid (shorter pauses since: results/wave15-1-gather-below.md).
/// How the daemon waits it out: `kernel::events`.
pub const GATHER: Duration = Duration::from_micros(500);

/// A batch this large or larger is not followed by a pause. At 16 (until
/// wave 15), a steady burst of 50 000 events a second alternated: a pause,
/// a read of about 25, then a wake-up at the very next event that read
/// that one alone (25 ≥ 16: no pause), then a pause again, three
/// wake-ups per 25 events. At 64 it is two, and the lossy bench's sender
/// took 9 % less CPU per generated second; a burst's tail waits for the
/// pause more often (results/wave15-1-gather-below.md). Above about
/// 128 000 events a second a pause gathers 64 or more and the wake-ups
/// alternate as before; a pause is as long as before, so it never lets
/// more gather in the socket's buffer than it did.
pub const GATHER_BELOW: usize = 64;

/// Counts the event socket's reads between its waits for readiness.
#[derive(Debug, Default)]
pub struct ReadPacing {
    /// Datagrams read since the socket last had to be waited for.
    since_wait: usize,
    /// The last wait followed a small batch: the caller lets more gather.
    gather: bool,
}

impl ReadPacing {
    /// A datagram (or an error) was read.
    pub fn read(&mut self) {
        self.since_wait += 1;
    }

    /// A wait for readiness ended: whether the batch read before it
    /// (nothing is read during a wait) calls for a pause; a new batch
    /// starts.
    pub fn woken(&mut self) {
        self.gather = self.since_wait < GATHER_BELOW;
        self.since_wait = 0;
    }

    /// How long to let more events gather before reading, after a wait
    /// that followed a small batch; once per wait.
    pub fn take_gather(&mut self) -> Option<Duration> {
        std::mem::take(&mut self.gather).then_some(GATHER)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn after_batch(n: usize) -> Option<Duration> {
        let mut p = ReadPacing::default();
        p.woken();
        p.take_gather();
        for _ in 0..n {
            p.read();
        }
        p.woken();
        p.take_gather()
    }

    #[test]
    fn a_lone_event_or_a_burst_paced_batch_is_followed_by_a_pause() {
        assert_eq!(after_batch(0), Some(GATHER));
        assert_eq!(after_batch(1), Some(GATHER));
        // What one pause gathers of a 50 000-a-second burst: the next
        // wake-up pauses too, instead of reading its first event alone.
        assert_eq!(after_batch(25), Some(GATHER));
        assert_eq!(after_batch(GATHER_BELOW - 1), Some(GATHER));
    }

    #[test]
    fn a_backlog_is_read_at_once() {
        assert_eq!(after_batch(GATHER_BELOW), None);
        assert_eq!(after_batch(1000), None);
    }

    #[test]
    fn the_pause_is_taken_once_per_wait() {
        let mut p = ReadPacing::default();
        p.read();
        p.woken();
        assert_eq!(p.take_gather(), Some(GATHER));
        assert_eq!(p.take_gather(), None);
    }

    #[test]
    fn reads_without_a_wait_add_up_to_a_backlog() {
        // EventIterationLimit stops a drain without a wait: the reads of
        // several drains are one batch.
        let mut p = ReadPacing::default();
        for _ in 0..GATHER_BELOW {
            p.read();
        }
        p.woken();
        assert_eq!(p.take_gather(), None);
    }
}
