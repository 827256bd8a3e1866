//! A resync's end (`ready`): the asker waits until the answerer says its
//! bulk was delivered, over a lossy link, with changes during the bulk,
//! and never on a word that is not about its own request.

use super::test::{ct, datagram_from, heard_pair, hears, new_ct, pump};
use super::*;

/// Entries in the answerer's cache.
const N: u16 = 600;

/// The answerer A with its internal cache, and the asker B with its
/// external cache.
struct Pair {
    a: Engine,
    a_src: MapSource,
    b: Engine,
    b_ext: MapSource,
}

/// The answerer A (session 100) holding [`N`] entries, and the asker B
/// (200), proven to each other and each having heard the other; B has
/// asked for a resync and A has it.
fn asked(t: Instant) -> Pair {
    asked_with(t, 1000)
}

/// As [`asked`], A's resend queue holding `resend_queue_size` entries.
fn asked_with(t: Instant, resend_queue_size: usize) -> Pair {
    let (mut a, mut b) = heard_pair(resend_queue_size, 10_000, t);
    hears(&mut b, &a, t);
    let mut a_src = MapSource::default();
    for p in 1..=N {
        let c = ct(p);
        a_src.cts.insert(wire::ct_key_of(&c), c);
    }
    assert!(b.request_resync());
    assert!(b.awaiting_resync());
    let b_int = MapSource::default();
    // A answers from the source it receives with: its internal cache.
    assert_eq!(pump(&mut b, &b_int, &mut a, &mut a_src, t, |_| true), 1);
    assert_eq!(a.queue_lengths().0, usize::from(N));
    assert_eq!(a.stats().resyncs_requested_by_peer, 1);
    Pair {
        a,
        a_src,
        b,
        b_ext: MapSource::default(),
    }
}

/// Runs both engines in 5 ms steps for at most `secs`, losing the
/// datagrams `lose` picks (by direction and running count), calling
/// `each` with A after every step; returns the step at which B stopped
/// waiting.
fn run(
    p: &mut Pair,
    t: Instant,
    secs: u64,
    mut lose: impl FnMut(bool, usize) -> bool,
    mut each: impl FnMut(&mut Engine, &mut MapSource),
) -> Option<u64> {
    let Pair { a, a_src, b, b_ext } = p;
    let (mut ab, mut ba) = (0, 0);
    let b_int = MapSource::default();
    for step in 0..secs * 200 {
        let now = t + Duration::from_millis(5 * step);
        a.handle_timeout(now, a_src);
        b.handle_timeout(now, &b_int);
        pump(a, a_src, b, b_ext, now, |_| {
            ab += 1;
            !lose(true, ab)
        });
        // A answers a resync from the source it receives with.
        pump(b, &b_int, a, a_src, now, |_| {
            ba += 1;
            !lose(false, ba)
        });
        each(a, a_src);
        if !b.awaiting_resync() {
            return Some(step);
        }
    }
    None
}

#[test]
fn the_asker_is_ready_only_once_the_bulk_is_all_delivered() {
    let t = Instant::from_millis(0);
    for seed in 0..20usize {
        let mut p = asked(t);
        // One datagram in four lost each way, a different pattern per
        // seed; the resync request itself went through.
        let lose = |_: bool, n: usize| (n * 7 + seed) % 4 == 0;
        let at = run(&mut p, t, 30, lose, |_, _| {});
        assert!(at.is_some(), "seed {seed}: never ready");
        assert_eq!(
            p.b_ext.cts.len(),
            usize::from(N),
            "seed {seed}: ready early"
        );
        assert!(
            p.a.stats().retransmitted > 0,
            "seed {seed}: nothing was lost"
        );
        assert_eq!(p.b.stats().resyncs_complete, 1);
        assert!(p.a.stats().synced_sent >= 1);
    }
}

#[test]
fn changes_during_the_bulk_do_not_hold_the_answer_back() {
    let t = Instant::from_millis(0);
    let mut p = asked(t);
    let mut port = N;
    let at = run(
        &mut p,
        t,
        30,
        |_, n| n % 5 == 0,
        |a, a_src| {
            // A new flow every 5 ms, for ever: the resend queue is never
            // empty for long, nor the transmit queue.
            port += 1;
            new_ct(a, a_src, port);
        },
    )
    .expect("never ready under changes");
    // Every entry the bulk carried is here.
    for port in 1..=N {
        let k = wire::ct_key_of(&ct(port));
        assert!(p.b_ext.cts.contains_key(&k), "{port} missing");
    }
    // Within a few ticks of the bulk, not at the end of the changes.
    assert!(at < 1000, "ready only after {} ms", at * 5);
}

#[test]
fn a_lost_word_is_repeated_on_the_next_tick() {
    let t = Instant::from_millis(0);
    let Pair {
        mut a,
        a_src,
        mut b,
        mut b_ext,
    } = asked(t);
    let mut dropped = 0;
    // Lose A's datagrams that carry a Synced, the first two times.
    let mut buf = [0u8; 1472];
    let b_int = MapSource::default();
    let mut ready_at = None;
    for step in 0..2000u64 {
        let now = t + Duration::from_millis(5 * step);
        a.handle_timeout(now, &a_src);
        b.handle_timeout(now, &b_int);
        while let Some(len) = a.poll_transmit(now, &a_src, &mut buf) {
            let (_, body) = wire::read(&buf[..len]).unwrap();
            let says = wire::messages(body)
                .any(|m| matches!(m, Ok(Msg::Synced { .. })));
            if says && dropped < 2 {
                dropped += 1;
                continue;
            }
            b.recv(now, 1, &buf[..len], &b_ext.clone()).unwrap();
            while let Some(ap) = b.pop_apply() {
                b_ext.apply(ap);
            }
        }
        let mut a_ext = MapSource::default();
        pump(&mut b, &b_int, &mut a, &mut a_ext, now, |_| true);
        if !b.awaiting_resync() {
            ready_at = Some(now);
            break;
        }
    }
    assert_eq!(dropped, 2);
    assert!(ready_at.is_some(), "the third word never came");
    assert_eq!(b_ext.cts.len(), usize::from(N));
    // The third of five: two more repeats follow on the next ticks.
    assert_eq!(a.stats().synced_sent, 3);
}

#[test]
fn only_a_word_about_our_own_request_ends_the_wait() {
    let t = Instant::from_millis(0);
    let Pair { a, mut b, .. } = asked(t);
    let next = a.tx.next_seq();
    // Our RESYNC went out as B's first number (its session, 200).
    let ours = Seq(200);
    let other = Seq(7);
    let d = datagram_from(100, next.0, &[Msg::Synced { resync: other }]);
    b.recv(t, 1, &d, &MapSource::default()).unwrap();
    assert!(b.awaiting_resync(), "another request's answer");
    // Our number, from a session B never proved: held, not believed.
    let d = datagram_from(555, 1, &[Msg::Synced { resync: ours }]);
    b.recv(t, 2, &d, &MapSource::default()).unwrap();
    assert!(b.awaiting_resync(), "an unproven session's word");
    let d = datagram_from(100, next.0, &[Msg::Synced { resync: ours }]);
    b.recv(t, 1, &d, &MapSource::default()).unwrap();
    assert!(!b.awaiting_resync());
    assert_eq!(b.stats().resyncs_complete, 1);
}

#[test]
fn an_empty_cache_is_answered_at_once_and_the_wait_can_be_dropped() {
    let t = Instant::from_millis(0);
    let (mut a, mut b) = heard_pair(1000, 10_000, t);
    hears(&mut b, &a, t);
    let (a_src, mut b_ext, mut a_ext) = (
        MapSource::default(),
        MapSource::default(),
        MapSource::default(),
    );
    assert!(b.request_resync());
    pump(&mut b, &MapSource::default(), &mut a, &mut a_ext, t, |_| {
        true
    });
    // A's ACK of the RESYNC, with the word: nothing was queued.
    pump(&mut a, &a_src, &mut b, &mut b_ext, t, |_| true);
    assert!(!b.awaiting_resync());
    // A new request, then a takeover (`-c`) ends the wait.
    assert!(b.request_resync());
    assert!(b.awaiting_resync());
    b.stop_awaiting();
    assert!(!b.awaiting_resync());
}

#[test]
fn a_peer_that_restarts_while_we_wait_is_asked_again() {
    let t = Instant::from_millis(0);
    let mut p = asked(t);
    // A dies with the bulk still queued; a new A (session 300), the same
    // cache, knows nothing of B's request.
    p.a = Engine::new(super::test::params(Mode::FtFw, 300), t);
    let at = run(&mut p, t, 30, |_, _| false, |_, _| {});
    assert!(at.is_some(), "never ready");
    assert_eq!(p.b.stats().peer_restarts, 1);
    assert_eq!(p.a.stats().resyncs_requested_by_peer, 1);
    assert_eq!(p.b_ext.cts.len(), usize::from(N));
}

#[test]
fn a_bulk_larger_than_the_resend_queue_is_not_told_complete_with_gaps() {
    // The bulk (600 entries) for a resend queue of 100, the first
    // datagram lost. It went out at once, and the first 500 gave way
    // unacknowledged: the lost datagram's NACK found nothing to resend,
    // and the asker was told its resync was complete with 536 of 600.
    let t = Instant::from_millis(0);
    let mut p = asked_with(t, 100);
    let at = run(&mut p, t, 30, |to_b, n| to_b && n == 1, |_, _| {});
    let held = p.b_ext.cts.len();
    assert!(at.is_some(), "never ready");
    assert_eq!(held, usize::from(N), "ready at step {at:?} with {held}");
    // Nothing unacknowledged gave way: the rest waited for ACKs.
    assert_eq!(p.a.stats().resend_queue_dropped, 0);
}
