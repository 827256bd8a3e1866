//! FT-FW under a router's steady trickle of changes (one every 10 ms, on
//! a clean link): the tail probe must not follow every change. Each
//! probe and its answer are two datagrams and two wake-ups on each side;
//! probed after each isolated change, a sender spent three times
//! conntrackd's CPU per change and the sync link carried three datagrams
//! per change (`benches/sender_profile.sh` with `GAP=0.01`).

use super::test::{engines, new_ct, params, pump};
use super::test_tail::wake;
use super::*;
use crate::sync::ftfw::CLEAN_PROBE_SPACING;

/// A and B over a clean link (conntrackd's ACK window, 300), run one
/// millisecond at a time.
struct Link {
    a: Engine,
    b: Engine,
    a_src: MapSource,
    b_ext: MapSource,
    /// The millisecond the next step runs at.
    t: u64,
}

impl Link {
    fn new() -> Link {
        let (mut a, mut b) =
            engines(Mode::FtFw, 100, 200, Instant::from_millis(0));
        let mut p = params(Mode::FtFw, 100);
        p.ack_window = 300;
        a.p = p.clone();
        p.session = 200;
        b.p = p;
        let (a_src, b_ext) = (MapSource::default(), MapSource::default());
        Link {
            a,
            b,
            a_src,
            b_ext,
            t: 1,
        }
    }

    /// One millisecond: a new conntrack `change` on A first, if any; A's
    /// datagrams of this step are lost when `lose`.
    fn step(&mut self, change: Option<u16>, lose: bool) {
        let now = Instant::from_millis(self.t);
        if let Some(port) = change {
            new_ct(&mut self.a, &mut self.a_src, port);
        }
        wake(&mut self.a, &self.a_src, now);
        wake(&mut self.b, &self.b_ext, now);
        let Link {
            a, b, a_src, b_ext, ..
        } = self;
        pump(a, a_src, b, b_ext, now, |_| !lose);
        pump(b, b_ext, a, &mut MapSource::default(), now, |_| true);
        self.t += 1;
    }

    /// `n` changes, one every `every` ms, and the quiet after the last
    /// up to `every` ms; ports from `first`.
    fn trickle(&mut self, first: u16, n: u16, every: u64) {
        for port in first..first + n {
            self.step(Some(port), false);
            for _ in 1..every {
                self.step(None, false);
            }
        }
    }

    fn whole(&self) -> bool {
        self.b_ext.cts == self.a_src.cts
    }
}

#[test]
fn a_trickle_on_a_clean_link_is_probed_at_most_every_spacing() {
    let mut l = Link::new();
    // 100 changes, one every 10 ms: each alone in its datagram, each
    // followed by a quiet period longer than the probe's (3-5 ms).
    l.trickle(1, 100, 10);
    assert!(l.whole());
    let probes = l.a.stats().probes_sent;
    // One per CLEAN_PROBE_SPACING at most in the trickle's second, where
    // every change was probed (100).
    let most = 1000 / CLEAN_PROBE_SPACING.as_millis() as u64 + 1;
    assert!(probes <= most, "{probes} probes for 100 changes");
    assert!(probes >= most / 2, "the trickle is still probed: {probes}");
}

#[test]
fn a_tail_lost_in_a_trickle_is_still_found_within_the_spacing() {
    let mut l = Link::new();
    l.trickle(1, 50, 10);
    assert!(l.whole());
    // One more change, its datagram lost, then silence.
    l.step(Some(51), true);
    let whole = (1..500).find(|_| {
        l.step(None, false);
        l.whole()
    });
    let whole = whole.expect("the lost change never arrived");
    // The quiet period, held to the spacing since the last probe, and a
    // round trip: not the receiver's one-second tick.
    let within = CLEAN_PROBE_SPACING.as_millis() as u64 + 10;
    assert!(whole <= within, "found {whole} ms after it was lost");
}
