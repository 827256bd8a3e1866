//! A peer's resync request to a node whose internal cache is not its
//! kernel's table (`DisableInternalCache`; a commit under way): the
//! answer is a dump of the kernel (conntrackd's bypass dumps the kernel
//! too), and the asker hears that the answer is complete only once the
//! dump's entries went out.

use super::test::{cfg, flow, node, tcp};
use super::*;
use crate::control::proto::{Reply, Request, Status};
use crate::kernel::codec::Object;
use crate::wire::ct_key_of;

fn conntrack(port: u16) -> Conntrack {
    let mut ct = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", port, 80));
    ct.reply = Some(ct.orig.inverse());
    ct.timeout = Some(120);
    ct
}

#[test]
fn a_bypass_node_answers_a_resync_request_with_its_kernel_table() {
    answered_from_the_kernel("");
}

/// The same over conntrackd's protocol (which has no word for complete).
#[test]
fn over_conntrackds_protocol_too() {
    answered_from_the_kernel("PeerProtocol conntrackd");
}

fn answered_from_the_kernel(options: &str) {
    let ours = options.is_empty();
    let primary = cfg("", "NOTRACK { DisableInternalCache On }", options);
    let backup = cfg("", "NOTRACK { }", options);
    let (mut fw1, mut fw2) = (node(primary, 1), node(backup, 2));
    let t = Instant::from_millis;
    // The backup comes back and asks (`-n`, StartupResync).
    let out = fw2.control(t(0), Request::RequestResync);
    assert_eq!(out.replies, vec![Reply::Done(Status::Ok)]);
    let mut jobs = Vec::new();
    for ms in (0..=2_000).step_by(100) {
        jobs.extend(flow(&mut fw2, &mut fw1, t(ms)));
    }
    let dump = jobs
        .into_iter()
        .find(|j| matches!(j.purpose, Purpose::Resync { send: true, .. }))
        .expect("the answer is a dump of the kernel table, sent");
    // Not complete before the dump's entries went out.
    for ms in (2_100..=5_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    if ours {
        assert!(fw2.engine.awaiting_resync(), "ready with nothing received");
    }
    let live: Vec<Object> = (1..=3).map(|p| Object::Ct(conntrack(p))).collect();
    fw1.job(
        t(5_100),
        dump.purpose,
        Done::Dumped {
            objects: live,
            last: true,
        },
    );
    for ms in (5_200..=10_000).step_by(100) {
        flow(&mut fw1, &mut fw2, t(ms));
    }
    for p in 1..=3 {
        let key = ct_key_of(&conntrack(p));
        assert!(fw2.external_ct.contains(&key), "flow {p} received");
    }
    assert!(!fw2.engine.awaiting_resync(), "told the answer is complete");
}

/// A resync request that comes while the node's internal cache is not
/// its kernel's table (a commit's entries are in the kernel, and come
/// into the cache by the resync after it: a switchover runs the old
/// primary's `-n` beside the new one's `-c`) is answered from the
/// kernel too, and complete only then: answered from the cache, it
/// lacked every committed flow, and the asker was told ready.
#[test]
fn a_resync_request_during_a_commit_is_answered_with_what_it_committed() {
    let c = cfg("", "FTFW { }", "");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let t = Instant::from_millis;
    for p in 1..=3 {
        fw2.external_ct.upsert(&conntrack(p), t(0), true).unwrap();
    }
    let out =
        fw2.control(t(0), Request::Commit(crate::control::proto::Target::All));
    let commit = out.actions[0].purpose;
    fw1.control(t(0), Request::RequestResync);
    let mut jobs = Vec::new();
    for ms in (0..=2_000).step_by(100) {
        jobs.extend(flow(&mut fw1, &mut fw2, t(ms)));
    }
    assert!(fw1.engine.awaiting_resync(), "ready with nothing received");
    let done = Done::Committed {
        cts: vec![0; 3],
        exps: Vec::new(),
        failed: Vec::new(),
        took_us: [10, 10],
        aborted: None,
    };
    jobs.extend(fw2.job(t(2_100), commit, done).actions);
    // Every dump the node asked for, answered with the kernel's table.
    let live: Vec<Object> = (1..=3).map(|p| Object::Ct(conntrack(p))).collect();
    for ms in (2_200..=9_000).step_by(100) {
        for j in std::mem::take(&mut jobs) {
            if let Purpose::Resync { .. } = j.purpose {
                let d = Done::Dumped {
                    objects: live.clone(),
                    last: true,
                };
                jobs.extend(fw2.job(t(ms), j.purpose, d).actions);
            }
        }
        jobs.extend(flow(&mut fw2, &mut fw1, t(ms)));
    }
    for p in 1..=3 {
        let key = ct_key_of(&conntrack(p));
        assert!(fw1.external_ct.contains(&key), "flow {p} received");
    }
    assert!(!fw1.engine.awaiting_resync(), "told the answer is complete");
}
