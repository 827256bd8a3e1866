//! A bulk in conntrackd's protocol (the takeover script's `-B` to the
//! conntrackd still running on the other firewall): its keys wait in a
//! list of their own, sent after the changes queued before it and before
//! those queued since, each key once, the newest state each; keys that
//! awaited an ACK go again with it, and none is lost to a full datagram
//! or a lossy link.

use super::test::{Link, ct, keys_waiting, msgs, pair, pump, run_in_steps};
use super::*;
use crate::sync::PEER_ALIVE;
use crate::sync::ftfw::SILENT_HOLD;
use crate::wire::ct_key_of;
use crate::wire::ctd::Body;

/// The data messages of `d` as (kind, port).
fn data(d: &[Vec<u8>]) -> Vec<(&'static str, u16)> {
    d.iter()
        .flat_map(|d| msgs(d))
        .filter_map(|m| {
            let (kind, c) = match m.body {
                Body::CtNew(c) => ("new", c),
                Body::CtUpd(c) => ("upd", c),
                Body::CtDel(c) => ("del", c),
                _ => return None,
            };
            let crate::model::L4::Ports { src, .. } = c.orig.l4 else {
                panic!("not a flow of ct()")
            };
            Some((kind, src))
        })
        .collect()
}

/// Changes queued before a bulk go first, then the bulk in the cache's
/// order, then changes queued since; a key queued since goes with the
/// bulk, as new if it is, and a key deleted since goes as its DEL.
#[test]
fn a_bulk_goes_between_the_changes_before_and_after_it() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    a.e.p.max_datagram = 200; // a few messages a datagram
    for i in 1..=5 {
        a.internal.cts.insert(ct_key_of(&ct(i)), ct(i));
    }
    a.add(ct(40));
    a.add(ct(41));
    // The bulk in the cache's order, less what was queued before it.
    let ports = |k: Key| match k {
        Key::Ct(k) => match k.orig.l4 {
            crate::model::L4::Ports { src, .. } => src,
            _ => unreachable!(),
        },
        Key::Exp(_) => unreachable!(),
    };
    let listed: Vec<u16> = a.internal.keys().into_iter().map(ports).collect();
    a.e.bulk(&a.internal);
    // Since the bulk began: one of its keys changed as new, one gone,
    // one new key.
    a.e.local_change(Key::Ct(ct_key_of(&ct(3))), true);
    a.internal.cts.remove(&ct_key_of(&ct(4)));
    a.e.local_change(Key::Ct(ct_key_of(&ct(4))), false);
    a.add(ct(50));
    let mut want = vec![("new", 40), ("new", 41)];
    for p in listed {
        want.push(match p {
            40 | 41 => continue,
            3 => ("new", 3),
            4 => ("del", 4),
            p => ("upd", p),
        });
    }
    want.push(("new", 50));
    let sent = data(&pump(&mut a, &mut b, t, || false));
    assert_eq!(sent, want);
    assert_eq!(b.external.cts.len(), a.internal.cts.len());
}

/// Keys that awaited an ACK when the bulk began go with it, once, with
/// their newest state; the resend queue no longer holds them.
#[test]
fn keys_awaiting_an_ack_go_with_the_bulk_once() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    for i in 1..=10 {
        a.add(ct(i));
    }
    // Sent, lost, not yet NACKed: all ten await an ACK.
    assert_eq!(data(&pump(&mut a, &mut b, t, || true)).len(), 10);
    assert_eq!(keys_waiting(&a), 10);
    let mut changed = ct(7);
    changed.timeout = Some(99);
    a.internal.cts.insert(ct_key_of(&changed), changed.clone());
    a.e.bulk(&a.internal);
    assert_eq!(keys_waiting(&a), 0, "each goes again with the bulk");
    let sent = data(&pump(&mut a, &mut b, t, || false));
    assert_eq!(sent.len(), 10, "{sent:?}");
    assert_eq!(b.external.cts.len(), 10);
    assert_eq!(b.external.cts[&ct_key_of(&changed)], changed);
}

/// A bulk of 2 000 over 20 % loss each way reaches the peer whole.
#[test]
fn a_bulk_over_a_lossy_link_arrives_whole() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    for i in 1..=2000 {
        a.internal.cts.insert(ct_key_of(&ct(i)), ct(i));
    }
    a.e.bulk(&a.internal);
    let until = t + Duration::from_secs(30);
    run_in_steps(&mut a, &mut b, &mut Link::lossy(200, 7), &mut t, until, 10);
    assert_eq!(b.external.cts.len(), 2000);
    assert_eq!(b.external.cts, a.internal.cts);
    assert_eq!(keys_waiting(&a), 0);
    assert!(a.e.tx.is_empty());
}

/// A bulk to a peer no longer heard (the old primary died: the takeover
/// script's `-B`) keeps at most `SILENT_HOLD` states for resending, not
/// one per entry; the peer gets a bulk update when heard again, and has
/// every entry then. DELs are kept (no bulk carries them).
#[test]
fn a_silent_peer_gets_a_bulk_when_heard_again_not_a_resend_queue() {
    let mut t = Instant::from_millis(0);
    let (mut a, mut b) = pair(&mut t);
    let n = 10_000;
    for i in 1..=n {
        a.internal.cts.insert(ct_key_of(&ct(i)), ct(i));
    }
    // A DEL sent while the peer is silent.
    let gone = ct(n + 1);
    a.e.local_change(Key::Ct(ct_key_of(&gone)), false);
    t = t + PEER_ALIVE + Duration::from_millis(1);
    a.e.bulk(&a.internal);
    let lost = pump(&mut a, &mut b, t, || true);
    assert!(lost.len() > 100, "{}", lost.len());
    let held = keys_waiting(&a);
    assert!(held <= SILENT_HOLD, "{held} states held for a silent peer");
    assert_eq!(
        a.e.stats().given_up_silent,
        u64::from(n),
        "every state given up"
    );
    assert_eq!(held, 1, "the DEL is kept");
    // The peer is heard again: it gets the bulk, and every entry.
    let until = t + Duration::from_secs(20);
    run_in_steps(&mut a, &mut b, &mut Link::perfect(), &mut t, until, 10);
    assert_eq!(a.e.stats().bulks_on_return, 1);
    assert_eq!(b.external.cts, a.internal.cts);
}
