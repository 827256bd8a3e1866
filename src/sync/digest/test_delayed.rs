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
    let Msg::DigestSubFor {
        table,
        bucket,
        sums,
        ..
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

/// What R prunes when S's Prunes for R's first ask reach it more than a
/// period late, after R asked again with equal sums (nothing in the
/// bucket changed meanwhile as far as its sums tell): S had dropped an
/// entry when it answered, then created it again with the same bytes, so
/// R holds it again, written after the first ask. `plain`: R's ask went
/// plain (its peer an older build), and S's Prunes name its sums' hash,
/// shared by both asks. Returns (pruned, the entry S dropped and created
/// again, the stale entry).
fn pruned_after_more_than_a_period(
    plain: bool,
) -> (Vec<Vec<u8>>, Vec<u8>, Vec<u8>) {
    let cfg = Config::default();
    let mut s = AntiEntropy::new(cfg, Instant::from_millis(0));
    let mut r = AntiEntropy::new(cfg, Instant::from_millis(0));
    let mut internal = big(1000);
    let mut external = internal.clone();
    let none = Mem::default();
    // A stale entry only R holds: its bucket differs in every round.
    put_ct(&mut external, &ct(5000, 1), Instant::from_millis(0));
    let stale = postcard::to_allocvec(&ct_key_of(&ct(5000, 1))).unwrap();
    // A live entry of both, in the stale entry's leaf.
    let leaf = position(&stale);
    let again = (7000..)
        .map(|i| ct(i, 0x18e))
        .find(|c| {
            position(&postcard::to_allocvec(&ct_key_of(c)).unwrap()) == leaf
        })
        .unwrap();
    let again_key = postcard::to_allocvec(&ct_key_of(&again)).unwrap();
    put_ct(&mut internal, &again, Instant::from_millis(0));
    put_ct(&mut external, &again, Instant::from_millis(0));

    // Round 1: S answers R's ask just after dropping the entry (R is
    // not told yet); the Prunes, which do not keep it, are held.
    let t1 = period(1);
    let tops = s.on_timer(t1, &internal, &none).send;
    let subs = r.on_msg(t1, &tops[0], &none, &external).send;
    let Some(Msg::DigestSubFor {
        table,
        bucket,
        sums,
        ..
    }) = subs.first()
    else {
        panic!("{subs:?}");
    };
    let ask = if plain {
        Msg::DigestSub {
            table: *table,
            bucket: *bucket,
            sums: *sums,
        }
    } else {
        subs[0].clone()
    };
    internal.t[0].remove(&again_key);
    s.on_msg(t1, &ask, &internal, &none);
    let held = s.on_timer(t1 + BATCH_DELAY, &internal, &none).send;
    assert!(!held.is_empty());

    // The entry is destroyed and created again with the same bytes; R
    // follows.
    external.t[0].remove(&again_key);
    let created = t1 + Duration::from_secs(2);
    put_ct(&mut internal, &again, created);
    put_ct(&mut external, &again, created);

    // Round 2, a period later: R asks again, with the same sums.
    let t2 = t1 + cfg.period + Duration::from_millis(1);
    let tops = s.on_timer(t2, &internal, &none).send;
    let subs2 = r.on_msg(t2, &tops[0], &none, &external).send;
    match subs2.first() {
        Some(Msg::DigestSubFor { sums: s2, .. }) => assert_eq!(s2, sums),
        other => panic!("{other:?}"),
    }
    // Only now do round 1's Prunes arrive.
    let late = t2 + Duration::from_millis(5);
    for p in &held {
        r.on_msg(late, p, &none, &external);
    }
    let pruned = r.on_timer(late + BATCH_DELAY, &none, &external).prune;
    let keys = pruned.iter().map(|k| key_bytes(k).1).collect();
    (keys, again_key, stale)
}

#[test]
fn a_prune_for_a_numbered_ask_a_period_old_is_ignored() {
    // Its ask is too old to trust, and no later ask bears its name.
    let (pruned, _, _) = pruned_after_more_than_a_period(false);
    assert_eq!(pruned, Vec::<Vec<u8>>::new());
}

#[test]
fn a_prune_for_a_plain_ask_a_period_old_answers_the_later_equal_one() {
    // The gap that numbered asks close, left with an older peer: the
    // sums' hash names the later ask too, and the live entry, written
    // before it, goes with the stale one (the next period sends it
    // again).
    let (pruned, again, stale) = pruned_after_more_than_a_period(true);
    assert_eq!(pruned.len(), 2, "{pruned:?}");
    assert!(pruned.contains(&again) && pruned.contains(&stale));
}
