//! A bulk's keys in their own queue (`tx`): sent after the keys queued
//! before it began and before those queued since, each key once (as when
//! the bulk's keys were coalesced into the key queue), none lost when a
//! datagram fills, and dropped or handed on with the rest.

use super::test::{ct, engines, key};
use super::*;
use crate::wire::{self, Msg};

/// A cache of `ct(1..=n)`.
fn cache(n: u16) -> MapSource {
    let mut src = MapSource::default();
    for p in 1..=n {
        let c = ct(p);
        src.cts.insert(wire::ct_key_of(&c), c);
    }
    src
}

/// A NOTRACK sender (nothing held for acknowledgement).
fn sender() -> Engine {
    engines(Mode::NoTrack, 100, 200, Instant::from_millis(0)).0
}

/// The data messages `e` sends now, as (kind, port), in `max` bytes a
/// datagram.
fn sent(
    e: &mut Engine,
    src: &MapSource,
    max: usize,
) -> Vec<(&'static str, u16)> {
    let mut buf = vec![0u8; max];
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let Some(n) = e.poll_transmit(Instant::from_millis(0), src, &mut buf)
        else {
            return out;
        };
        let (_, body) = wire::read(&buf[..n]).unwrap();
        for m in wire::messages(body) {
            let (kind, k) = match m.unwrap() {
                Msg::CtNew(w) => ("new", w.key),
                Msg::CtUpd(w) => ("upd", w.key),
                Msg::CtDel(k) => ("del", k),
                _ => continue,
            };
            let crate::model::L4::Ports { src: port, .. } = k.orig.l4 else {
                panic!("not a flow of ct()")
            };
            out.push((kind, port));
        }
    }
    panic!("the sender never ran dry");
}

/// Changes queued before a bulk go first, then the bulk in the cache's
/// order, then changes queued since. A key queued before goes in its
/// place only; one queued since goes with the bulk, as new if it is.
#[test]
fn a_bulk_goes_between_the_changes_before_and_after_it() {
    let mut src = cache(5);
    let mut e = sender();
    for p in [40, 41] {
        let c = ct(p);
        src.cts.insert(wire::ct_key_of(&c), c.clone());
        e.local_change(key(&c), true);
    }
    e.bulk(&src);
    let bulk: Vec<(&str, u16)> = src
        .keys()
        .iter()
        .filter_map(|k| match k {
            Key::Ct(k) => match k.orig.l4 {
                crate::model::L4::Ports { src: 40 | 41, .. } => None,
                crate::model::L4::Ports { src: 3, .. } => Some(("new", 3)),
                crate::model::L4::Ports { src, .. } => Some(("upd", src)),
                _ => unreachable!(),
            },
            Key::Exp(_) => unreachable!(),
        })
        .collect();
    let c = ct(42);
    src.cts.insert(wire::ct_key_of(&c), c.clone());
    e.local_change(key(&c), true);
    e.local_change(key(&ct(3)), true);
    let mut want = vec![("new", 40), ("new", 41)];
    want.extend(bulk);
    want.push(("new", 42));
    assert_eq!(sent(&mut e, &src, 1472), want);
    assert_eq!(want.len(), 8);
    assert_eq!(e.queue_lengths().0, 0);
}

/// Datagrams too small for more than a few messages: each key that did
/// not fit waits at the head of its queue, so the order and the count
/// hold, and a bulk key put back stays behind the changes before it.
#[test]
fn keys_that_do_not_fit_keep_their_place() {
    let mut src = cache(30);
    let mut e = sender();
    for p in [40, 41, 42] {
        let c = ct(p);
        src.cts.insert(wire::ct_key_of(&c), c.clone());
        e.local_change(key(&c), true);
    }
    e.bulk(&src);
    let c = ct(43);
    src.cts.insert(wire::ct_key_of(&c), c.clone());
    e.local_change(key(&c), true);
    let small = sent(&mut e, &src, 100);
    let mut again = sender();
    for p in [40, 41, 42] {
        again.local_change(key(&ct(p)), true);
    }
    let mut without_43 = src.clone();
    without_43.cts.remove(&wire::ct_key_of(&ct(43)));
    // The bulk's keys as the cache listed them when it began (43 came
    // after it).
    again.bulk(&without_43);
    again.local_change(key(&ct(43)), true);
    assert_eq!(small, sent(&mut again, &src, 1472));
    assert_eq!(small.len(), 30 + 3 + 1);
}

/// `-f`: the forgotten keys leave the bulk too, each counted once; a
/// protocol switch takes every waiting key, the bulk's in its place.
#[test]
fn forgotten_and_drained_keys_include_the_bulks() {
    let src = cache(6);
    let mut e = sender();
    e.local_change(key(&ct(5)), true);
    e.bulk(&src);
    e.local_change(key(&ct(2)), false);
    e.local_change(key(&ct(3)), false);
    let odd = |k: &Key| {
        matches!(k, Key::Ct(k) if matches!(k.orig.l4,
            crate::model::L4::Ports { src, .. } if src % 2 == 1))
    };
    // 5 before; 1 and 3 in the bulk (3 queued since too).
    assert_eq!(e.forget_states(&odd), 3);
    let drained: Vec<(Key, bool)> = e.drain_keys();
    let want: Vec<(Key, bool)> = src
        .keys()
        .into_iter()
        .filter(|k| !odd(k))
        .map(|k| (k, false))
        .collect();
    // 2, queued since, went with the bulk.
    assert_eq!(drained, want);
    assert_eq!(e.queue_lengths().0, 0);
}
