//! `-f` and the resend queue: flushing the internal cache forgets the
//! unacknowledged states it held (as conntrackd's flush takes them out
//! of its resend list); they are not resent as deletions of flows that
//! live on in the kernel. Unacknowledged deletions are still resent.

use super::test::{cfg, conntrack, event, flow, node, resync_with, send_now};
use super::*;
use crate::control::proto::{CacheSel, Request};
use crate::kernel::codec::{Kind, Object};
use crate::kernel::origin::Origin;
use crate::wire::ct_key_of;

#[test]
fn a_flushed_internal_cache_resends_no_deletions_of_live_flows() {
    flushed_then_repaired("");
}

/// The same over conntrackd's protocol (its own queues).
#[test]
fn over_conntrackds_protocol_too() {
    flushed_then_repaired("PeerProtocol conntrackd");
}

fn flushed_then_repaired(options: &str) {
    let c = cfg("", "FTFW { }", options);
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let t = Instant::from_millis;
    for p in 1..=5 {
        let ct = conntrack(p);
        fw1.kernel(t(0), event(Kind::New, Object::Ct(ct)), Origin::NotMe);
    }
    // conntrackd's protocol says HELLO and waits for the answer first.
    for ms in (0..=2_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(fw2.external_ct.len(), 5);
    // Their next states (and one destruction) are lost on the wire.
    for p in 1..=4 {
        let mut ct = conntrack(p);
        ct.mark = 7;
        fw1.kernel(
            t(2_100),
            event(Kind::Update, Object::Ct(ct)),
            Origin::NotMe,
        );
    }
    fw1.kernel(
        t(2_100),
        event(Kind::Destroy, Object::Ct(conntrack(5))),
        Origin::NotMe,
    );
    assert!(!send_now(&mut fw1, t(2_100)).is_empty());
    fw1.control(t(2_200), Request::FlushCache(CacheSel::Internal));
    // Probes, NACKs and the last-resort retransmission all get their turn.
    for ms in (2_300..=22_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    for p in 1..=4 {
        let key = ct_key_of(&conntrack(p));
        assert!(fw2.external_ct.contains(&key), "flow {p} kept");
    }
    let gone = ct_key_of(&conntrack(5));
    assert!(
        !fw2.external_ct.contains(&gone),
        "the deletion still resent"
    );
}

/// After `-f internal` the internal cache no longer says what the kernel
/// holds: anti-entropy prunes nothing by it (the peer keeps every flow,
/// as conntrackd's does), until a `-R` refilled it; then it repairs
/// again, pruning what the peer holds and the kernel no longer does.
#[test]
fn anti_entropy_waits_for_a_resync_after_a_flush() {
    let c = cfg("", "FTFW { }", "");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let t = Instant::from_millis;
    for p in 1..=6 {
        let ct = conntrack(p);
        fw1.kernel(t(0), event(Kind::New, Object::Ct(ct)), Origin::NotMe);
    }
    flow(&mut fw1, &mut fw2, t(0));
    assert_eq!(fw2.external_ct.len(), 6);
    // Flow 6 ends and its DESTROY event is lost (an overrun).
    fw1.internal_ct.remove(&ct_key_of(&conntrack(6)));
    fw1.control(t(100), Request::FlushCache(CacheSel::Internal));
    // Three anti-entropy periods.
    for ms in (200..=100_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(
        fw2.external_ct.len(),
        6,
        "nothing pruned by a flushed cache"
    );
    resync_with(&mut fw1, t(100_100), 1..=5);
    for ms in (100_300..=200_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(fw2.external_ct.len(), 5, "flow 6 pruned after the -R");
    assert!(!fw2.external_ct.contains(&ct_key_of(&conntrack(6))));
}

/// The scheduled purge (`-t`) empties the internal cache and asks the
/// worker to flush the kernel table. If that flush fails, the kernel
/// keeps every flow: the peer must not prune them by the empty cache,
/// nor be sent what was unacknowledged as deletions.
#[test]
fn a_purge_whose_kernel_flush_fails_prunes_nothing_on_the_peer() {
    let c = cfg("", "FTFW { PurgeTimeout 1 }", "");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let t = Instant::from_millis;
    for p in 1..=5 {
        let ct = conntrack(p);
        fw1.kernel(t(0), event(Kind::New, Object::Ct(ct)), Origin::NotMe);
    }
    flow(&mut fw1, &mut fw2, t(0));
    assert_eq!(fw2.external_ct.len(), 5);
    // A change of flow 1 is lost on the wire: still unacknowledged.
    let mut changed = conntrack(1);
    changed.mark = 7;
    fw1.kernel(
        t(50),
        event(Kind::Update, Object::Ct(changed)),
        Origin::NotMe,
    );
    assert!(!send_now(&mut fw1, t(50)).is_empty());
    fw1.control(t(100), Request::ResetTimers);
    let flush = fw1
        .tick(t(1_100))
        .into_iter()
        .find(|j| matches!(j.purpose, Purpose::Flush { .. }))
        .expect("the purge flushes the kernel table");
    assert_eq!(fw1.internal_ct.len(), 0);
    fw1.job(t(1_110), flush.purpose, Done::Failed("x".into()));
    for ms in (1_200..=100_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(fw2.external_ct.len(), 5, "nothing pruned");
}
