//! Anti-entropy at start: until the start-up dump of the kernel table is
//! in, the internal cache holds only what events brought, not what the
//! kernel holds. The peer's external cache still holds this node's flows
//! (from before its restart): a digest of the partial cache would prune
//! them there, and a dump that failed is never retried on its own.

use super::test::{Fw, cfg, conntrack, event, flow, node, resync_with};
use super::*;
use crate::kernel::codec::{Kind, Object};
use crate::kernel::origin::Origin;
use crate::wire::ct_key_of;

/// fw1 restarts; fw2 holds its five flows (and a sixth that ended while
/// it was down). Returns both, and the start-up dump's purpose.
fn restarted(options: &str) -> (Fw, Fw, Purpose) {
    let c = cfg("", "FTFW { }", options);
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let t0 = Instant::from_millis(0);
    for p in 1..=6 {
        fw2.external_ct.upsert(&conntrack(p), t0, true).unwrap();
    }
    let dump = start_up_dump(&mut fw1, t0);
    // A new flow's event comes first (the session with fw2 opens).
    fw1.kernel(
        t0,
        event(Kind::New, Object::Ct(conntrack(7))),
        Origin::NotMe,
    );
    flow(&mut fw1, &mut fw2, t0);
    assert_eq!(fw2.external_ct.len(), 7);
    (fw1, fw2, dump)
}

/// Starts `fw` at `t0`; the purpose of its start-up dump.
fn start_up_dump(fw: &mut Fw, t0: Instant) -> Purpose {
    fw.node
        .start(t0)
        .jobs
        .into_iter()
        .find(|j| matches!(j.purpose, Purpose::Resync { .. }))
        .expect("the start-up dump")
        .purpose
}

#[test]
fn a_failed_start_up_dump_prunes_nothing_on_the_peer() {
    let (mut fw1, mut fw2, dump) = restarted("");
    let t = Instant::from_millis;
    fw1.job(t(100), dump, Done::Failed("x".into()));
    // Three anti-entropy periods.
    for ms in (200..=100_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(
        fw2.external_ct.len(),
        7,
        "nothing pruned by a cache the kernel's table never filled"
    );
    // A `-R` fills it: what ended (flow 6) is pruned then.
    resync_with(&mut fw1, t(100_100), [1, 2, 3, 4, 5, 7]);
    for ms in (100_300..=200_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(fw2.external_ct.len(), 6, "flow 6 pruned after the -R");
    assert!(!fw2.external_ct.contains(&ct_key_of(&conntrack(6))));
}

#[test]
fn a_slow_start_up_dump_prunes_nothing_before_it_is_in() {
    // A period of a second: the dump's first part is in, the rest late.
    let (mut fw1, mut fw2, dump) = restarted("AntiEntropyPeriod 1");
    let t = Instant::from_millis;
    let part = (1..=2).map(|p| Object::Ct(conntrack(p))).collect();
    fw1.job(
        t(100),
        dump,
        Done::Dumped {
            objects: part,
            last: false,
        },
    );
    for ms in (200..=5_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(fw2.external_ct.len(), 7, "nothing pruned mid-dump");
    let rest = (3..=5).map(|p| Object::Ct(conntrack(p))).collect();
    fw1.job(
        t(5_100),
        dump,
        Done::Dumped {
            objects: rest,
            last: true,
        },
    );
    for ms in (5_200..=10_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(fw2.external_ct.len(), 6, "flow 6 pruned once it is in");
    assert!(!fw2.external_ct.contains(&ct_key_of(&conntrack(6))));
}

/// A master the peer no longer has is pruned with its expectation, which
/// goes with it; the expectation's own prune then finds nothing, and that
/// is no failure: `-s expect`'s external `del_fail` (and "entry not
/// found") counted one for each such pair.
#[test]
fn a_master_pruned_with_its_expectation_counts_no_failure() {
    let c = cfg("", "FTFW { }", "ExpectationSync On\nAntiEntropyPeriod 1");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let t = Instant::from_millis;
    let master = super::test::ftp_master();
    fw2.external_ct.upsert(&master, t(0), true).unwrap();
    let exp = super::test::pasv(&master);
    fw2.external_exp.upsert(&exp, t(0), true).unwrap();
    for p in 1..=3 {
        fw2.external_ct.upsert(&conntrack(p), t(0), true).unwrap();
    }
    let dump = start_up_dump(&mut fw1, t(0));
    let live = (1..=3).map(|p| Object::Ct(conntrack(p))).collect();
    fw1.job(
        t(100),
        dump,
        Done::Dumped {
            objects: live,
            last: true,
        },
    );
    for ms in (200..=10_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    assert_eq!(fw2.external_ct.len(), 3, "the master pruned");
    assert_eq!(fw2.external_exp.len(), 0, "its expectation with it");
    let s = fw2.external_exp.stats;
    assert_eq!((s.del_ok, s.del_fail, s.del_enoent), (1, 0, 0), "{s:?}");
}
