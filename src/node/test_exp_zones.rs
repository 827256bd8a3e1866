//! Expectations of masters outside zone 0. The kernel reports an
//! expectation's master by tuple only (no CTA_EXPECT_ZONE in its events
//! and dumps): the node takes the zone of the cached master, so that the
//! expectation is replicated, ended and committed in its master's zone.

use super::test::{
    cfg, event, flow, ftp_master, ftp_session, node, pasv, text,
};
use super::*;
use crate::control::proto::{
    Cache as Which, CacheSel, Format, Request, Table, Target,
};
use crate::kernel::codec::{Kind, Object};
use crate::kernel::origin::Origin;
use crate::model::Conntrack;
use crate::wire::ct_key_of;

fn zoned_master(zone: u16) -> Conntrack {
    Conntrack {
        zone,
        ..ftp_master()
    }
}

fn zones_of(c: &crate::cache::Cache<Expect>) -> Vec<u16> {
    c.iter().map(|e| e.value.zone).collect()
}

#[test]
fn an_expectation_is_replicated_ended_and_committed_in_its_masters_zone() {
    let c = cfg("", "FTFW { }", "ExpectationSync { ftp }");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let t = Instant::from_millis;
    let m = zoned_master(7);
    // `pasv` is in zone 0, as the kernel reports every expectation.
    ftp_session(&mut fw1, &m);
    assert_eq!(zones_of(&fw1.internal_exp), [7]);
    flow(&mut fw1, &mut fw2, t(1000));
    assert_eq!(zones_of(&fw2.external_exp), [7]);
    let dump = fw2.control(
        t(2000),
        Request::Dump {
            cache: Which::External,
            table: Table::Expect,
            format: Format::Plain,
        },
    );
    assert!(text(&dump).contains(" zone=7 "), "{}", text(&dump));
    // The commit creates it in zone 7, where its master is committed.
    let o = fw2.control(t(3000), Request::Commit(Target::All));
    let [
        Job {
            work: Work::Commit(plan),
            ..
        },
    ] = &o.actions[..]
    else {
        panic!("{:?}", o.actions)
    };
    assert_eq!(plan.cts.iter().map(|c| c.zone).collect::<Vec<_>>(), [7]);
    assert_eq!(plan.exps.iter().map(|x| x.zone).collect::<Vec<_>>(), [7]);
    // Its end, reported in zone 0 too, reaches the peer.
    fw1.kernel(
        t(4000),
        event(Kind::Destroy, Object::Exp(pasv(&m))),
        Origin::NotMe,
    );
    assert!(fw1.internal_exp.is_empty());
    assert!(fw1.internal_ct.contains(&ct_key_of(&m)));
    flow(&mut fw1, &mut fw2, t(5000));
    assert!(fw2.external_exp.is_empty());
}

/// The master's tuple cached in zone 0 is the master: a conntrack with
/// the same tuple in another zone does not move the expectation there.
/// Of several zones without zone 0, the lowest is taken.
#[test]
fn a_master_in_zone_0_keeps_its_expectation_there() {
    let c = cfg("", "FTFW { }", "ExpectationSync { ftp }");
    let mut fw = node(c, 1);
    let t = Instant::from_millis(0);
    for zone in [9, 0, 4] {
        let m = zoned_master(zone);
        fw.kernel(t, event(Kind::New, Object::Ct(m)), Origin::NotMe);
    }
    let x = pasv(&ftp_master());
    fw.kernel(t, event(Kind::New, Object::Exp(x.clone())), Origin::NotMe);
    assert_eq!(zones_of(&fw.internal_exp), [0]);
    fw.internal_ct.take(&ct_key_of(&zoned_master(0))).unwrap();
    fw.internal_exp.flush();
    fw.kernel(t, event(Kind::New, Object::Exp(x)), Origin::NotMe);
    assert_eq!(zones_of(&fw.internal_exp), [4]);
}

/// A resync's dump: the expectation, announced before its zoned master
/// came in the dump, is kept in the master's zone, and its mark holds it
/// through the sweep at the dump's end.
#[test]
fn a_resync_keeps_the_expectation_of_a_zoned_master_in_its_zone() {
    let c = cfg("", "FTFW { }", "ExpectationSync On");
    let mut fw = node(c, 1);
    let t = Instant::from_millis;
    let m = zoned_master(5);
    fw.control(t(0), Request::FlushCache(CacheSel::All));
    let out = fw.control(t(0), Request::ResyncKernel(Target::All));
    let [job] = &out.actions[..] else {
        panic!("{:?}", out.actions)
    };
    let purpose = job.purpose;
    fw.kernel(t(1), event(Kind::New, Object::Exp(pasv(&m))), Origin::NotMe);
    let done = Done::Dumped {
        objects: vec![Object::Ct(m.clone())],
        last: true,
    };
    fw.job(t(2), purpose, done);
    assert_eq!(zones_of(&fw.internal_exp), [5]);
    // A second resync, whose dump holds both (the expectation without
    // its zone): the expectation is marked as in the kernel and stays.
    let out = fw.control(t(3), Request::ResyncKernel(Target::All));
    let [job] = &out.actions[..] else {
        panic!("{:?}", out.actions)
    };
    let done = Done::Dumped {
        objects: vec![Object::Ct(m.clone()), Object::Exp(pasv(&m))],
        last: true,
    };
    fw.job(t(4), job.purpose, done);
    assert_eq!(zones_of(&fw.internal_exp), [5]);
}
