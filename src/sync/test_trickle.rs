//! FT-FW under a router's steady trickle of changes (one every 10 ms, on
//! a clean link): the tail probe must not follow every change. Each
//! probe and its answer are two datagrams and two wake-ups on each side;
//! probed after each isolated change, a sender spent three times
//! conntrackd's CPU per change and the sync link carried three datagrams
//! per change (`benches/sender_profile.sh` with `GAP=0.01`).

use super::test::{ct, engines, key, params, pump};
use super::test_tail::wake;
use super::*;

/// A and B over a clean link, conntrackd's ACK window (300).
fn pair() -> (Engine, Engine, MapSource, MapSource) {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = engines(Mode::FtFw, 100, 200, t);
    let mut p = params(Mode::FtFw, 100);
    p.ack_window = 300;
    a.p = p.clone();
    p.session = 200;
    b.p = p;
    (a, b, MapSource::default(), MapSource::default())
}

/// Runs `ms` milliseconds from `from`, a new conntrack on A every
/// `every` ms (numbered from `first`) while `changes` last; `lose(n)`
/// loses A's n-th datagram of the run. Returns the next free number.
#[allow(clippy::too_many_arguments)]
fn run(
    (a, b, a_src, b_ext): (
        &mut Engine,
        &mut Engine,
        &mut MapSource,
        &mut MapSource,
    ),
    from: u64,
    ms: u64,
    every: u64,
    first: u16,
    changes: u16,
    mut lose: impl FnMut(usize) -> bool,
) -> u16 {
    let mut next = first;
    let mut sent = 0;
    let mut sink = MapSource::default();
    for t in from..from + ms {
        let now = Instant::from_millis(t);
        if (t - from).is_multiple_of(every) && next < first + changes {
            let c = ct(next);
            a_src.cts.insert(wire::ct_key_of(&c), c.clone());
            a.local_change(key(&c), true);
            next += 1;
        }
        wake(a, a_src, now);
        wake(b, b_ext, now);
        let mut n = sent;
        sent += pump(a, a_src, b, b_ext, now, |_| {
            n += 1;
            !lose(n - 1)
        });
        pump(b, b_ext, a, &mut sink, now, |_| true);
    }
    next
}

#[test]
fn a_trickle_on_a_clean_link_is_probed_at_most_every_spacing() {
    let (mut a, mut b, mut a_src, mut b_ext) = pair();
    // 100 changes, one every 10 ms: each alone in its datagram, each
    // followed by a quiet period longer than the probe's (3-5 ms).
    run(
        (&mut a, &mut b, &mut a_src, &mut b_ext),
        1,
        1000,
        10,
        1,
        100,
        |_| false,
    );
    assert_eq!(b_ext.cts, a_src.cts);
    let probes = a.stats().probes_sent;
    // One per CLEAN_PROBE_SPACING (50 ms) at most: 20 in a second, where
    // every change was probed (100).
    assert!(probes <= 21, "{probes} probes for 100 changes");
    assert!(probes >= 10, "the trickle is still probed: {probes}");
}

#[test]
fn a_tail_lost_in_a_trickle_is_still_found_within_the_spacing() {
    let (mut a, mut b, mut a_src, mut b_ext) = pair();
    let next = run(
        (&mut a, &mut b, &mut a_src, &mut b_ext),
        1,
        500,
        10,
        1,
        50,
        |_| false,
    );
    assert_eq!(b_ext.cts, a_src.cts);
    // One more change, its datagram lost, then silence.
    let at = 501;
    let mut whole = None;
    run(
        (&mut a, &mut b, &mut a_src, &mut b_ext),
        at,
        1,
        10,
        next,
        1,
        |n| n == 0,
    );
    for t in at + 1..at + 500 {
        run(
            (&mut a, &mut b, &mut a_src, &mut b_ext),
            t,
            1,
            10,
            next + 1,
            0,
            |_| false,
        );
        if b_ext.cts == a_src.cts {
            whole = Some(t - at);
            break;
        }
    }
    let whole = whole.expect("the lost change never arrived");
    // The quiet period, held to the spacing since the last probe, and a
    // round trip: not the receiver's one-second tick.
    assert!(whole <= 60, "found {whole} ms after it was lost");
}
