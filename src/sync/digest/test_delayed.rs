//! A Prune the network delays past the next round's ask for its bucket:
//! named by its ask (`PruneFor`), it spares what the receiver was sent
//! in between; a plain Prune, from a build that cannot name it, is
//! checked against the later ask and deletes it.
//!
//! The next ask comes within a period of the first here: the sender's
//! period is shorter than the receiver's (a Prune is accepted for an ask
//! at most the receiver's period old, so with equal periods one delayed
//! that long is ignored, and the next round prunes).

use std::time::Duration;

use super::test::{Mem, big, ct, key_bytes, period, put_ct};
use super::*;
use crate::wire::ct_key_of;

/// The keys R prunes when S's first-round Prunes reach it only after
/// R asked again in the second round; `plain`: as Prunes of an older
/// build, which name no ask.
fn pruned_after_a_delay(plain: bool) -> (Vec<Vec<u8>>, Vec<u8>, Vec<u8>) {
    let s_period = Duration::from_secs(10);
    let mut s = AntiEntropy::new(
        Config {
            period: s_period,
            ..Config::default()
        },
        Instant::from_millis(0),
    );
    let mut r = AntiEntropy::new(Config::default(), Instant::from_millis(0));
    let mut internal = big(1000);
    let mut external = internal.clone();
    let none = Mem::default();
    // A stale entry only R holds: its bucket differs in every round.
    put_ct(&mut external, &ct(5000, 1), Instant::from_millis(0));
    let stale = postcard::to_allocvec(&ct_key_of(&ct(5000, 1))).unwrap();

    // Round 1: S answers R's ask; its Prunes are held by the network.
    let t1 = period(1);
    let tops = s.on_timer(t1, &internal, &none).send;
    let subs = r.on_msg(t1, &tops[0], &none, &external).send;
    assert_eq!(subs.len(), 1, "{subs:?}");
    s.on_msg(t1, &subs[0], &internal, &none);
    let held = s.on_timer(t1 + BATCH_DELAY, &internal, &none).send;
    assert!(!held.is_empty());

    // A new flow in the stale entry's leaf, created on S after it
    // answered, reaches R.
    let leaf = position(&stale);
    let fresh = (6000..)
        .map(|i| ct(i, 0x18e))
        .find(|c| {
            position(&postcard::to_allocvec(&ct_key_of(c)).unwrap()) == leaf
        })
        .unwrap();
    let fresh_key = postcard::to_allocvec(&ct_key_of(&fresh)).unwrap();
    let created = t1 + Duration::from_secs(1);
    put_ct(&mut internal, &fresh, created);
    put_ct(&mut external, &fresh, created + Duration::from_millis(1));

    // Round 2: R asks for the bucket again (the stale entry is still
    // there); only now do round 1's Prunes arrive, before round 2's.
    let t2 = t1 + s_period;
    let tops = s.on_timer(t2, &internal, &none).send;
    let subs = r.on_msg(t2, &tops[0], &none, &external).send;
    assert_eq!(subs.len(), 1, "the bucket differs again: {subs:?}");
    let late = t2 + Duration::from_millis(5);
    for p in &held {
        let mut p = p.as_prune().expect("a repair sends Prunes");
        if plain {
            p.ask = None;
        }
        let p = Msg::from(p);
        r.on_msg(late, &p, &none, &external);
    }
    let pruned = r.on_timer(late + BATCH_DELAY, &none, &external).prune;
    let keys = pruned.iter().map(|k| key_bytes(k).1).collect();
    (keys, stale, fresh_key)
}

#[test]
fn a_prune_named_by_its_ask_spares_what_came_after_that_ask() {
    let (pruned, stale, _) = pruned_after_a_delay(false);
    assert_eq!(pruned, vec![stale], "only the stale entry goes");
}

#[test]
fn a_plain_prune_delayed_past_the_next_ask_takes_what_came_between() {
    // Why PruneFor exists: checked against the later ask, the fresh flow
    // looks older than the ask and is not in the Prune's keep list.
    let (pruned, stale, fresh) = pruned_after_a_delay(true);
    assert_eq!(pruned.len(), 2, "{pruned:?}");
    assert!(pruned.contains(&stale) && pruned.contains(&fresh));
}

#[test]
fn a_bucket_asked_twice_before_the_pass_names_both_asks() {
    // Two receivers of one multicast DigestTop ask for the same bucket
    // with different sums before the sender's pass: each must find a
    // Prune naming its own ask (one id per bucket renamed the first
    // asker's Prunes, which it then ignored).
    let s_cfg = Config::default();
    let mut s = AntiEntropy::new(s_cfg, Instant::from_millis(0));
    let mut r = AntiEntropy::new(s_cfg, Instant::from_millis(0));
    let internal = big(1000);
    let mut external = internal.clone();
    let none = Mem::default();
    let stale = ct(5000, 1);
    put_ct(&mut external, &stale, Instant::from_millis(0));
    let t1 = period(1);
    let tops = s.on_timer(t1, &internal, &none).send;
    let subs = r.on_msg(t1, &tops[0], &none, &external).send;
    s.on_msg(t1, &subs[0], &internal, &none);
    let Msg::DigestSub {
        table,
        bucket,
        sums,
    } = &subs[0]
    else {
        panic!("{subs:?}");
    };
    let mut other = *sums;
    other.0[0] = other.0[0].wrapping_add(1);
    let second = t1 + Duration::from_millis(10);
    let theirs = Msg::DigestSub {
        table: *table,
        bucket: *bucket,
        sums: other,
    };
    s.on_msg(second, &theirs, &internal, &none);
    let sent = s.on_timer(second + BATCH_DELAY, &internal, &none).send;
    let at = second + BATCH_DELAY + Duration::from_millis(1);
    for p in &sent {
        r.on_msg(at, p, &none, &external);
    }
    assert_eq!(r.counters().ignored, sent.len() as u64 / 2, "the other's");
    let pruned: Vec<Vec<u8>> = r
        .on_timer(at + BATCH_DELAY, &none, &external)
        .prune
        .iter()
        .map(|k| key_bytes(k).1)
        .collect();
    let stale_key = postcard::to_allocvec(&ct_key_of(&stale)).unwrap();
    assert_eq!(pruned, vec![stale_key]);
}
