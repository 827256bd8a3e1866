//! Tests: requests racing a commit while the event socket is out of the
//! conntrack NEW group (`commit_events`): a `-R` whose dump is read
//! while the commit runs must not swallow the NEW event of a flow that
//! traffic started meanwhile.

use super::resync_races::node;
use super::test_support::sent_from;
use super::{ClientId, Completion, Done, Input, Node, Outbox, Purpose, Work};
use crate::control::proto::{Request, Target};
use crate::kernel::codec::Object;
use crate::model::Conntrack;
use crate::time::Instant;
use crate::wire::{Msg, ct_key_of, from_wire_ct};

const CLIENT: ClientId = 3;
const RESYNCER: ClientId = 4;
const T0: Instant = Instant::from_millis(1_000);

/// A UDP flow from source port `sport`, as the kernel reports it.
fn flow(sport: u16) -> Conntrack {
    super::resync_races::flow(sport, 120)
}

fn control(n: &mut Node, client: ClientId, request: Request) -> Outbox {
    let input = Input::Control {
        client,
        request,
        links: &[],
        control: Default::default(),
    };
    n.handle(T0, input)
}

fn done(n: &mut Node, purpose: Purpose, done: Done) -> Outbox {
    n.handle(T0, Input::Job(Completion { purpose, done }))
}

fn resync_purpose(out: &Outbox) -> Purpose {
    let p: Vec<Purpose> = out
        .jobs
        .iter()
        .map(|j| j.purpose)
        .filter(|p| matches!(p, Purpose::Resync { .. }))
        .collect();
    assert_eq!(p.len(), 1, "{:?}", out.jobs);
    p[0]
}

fn dump(cts: &[&Conntrack]) -> Done {
    Done::Dumped {
        objects: cts.iter().map(|c| Object::Ct((*c).clone())).collect(),
        last: true,
    }
}

/// A commit's outcome: its one conntrack created.
fn committed_one() -> Done {
    Done::Committed {
        cts: vec![0],
        exps: Vec::new(),
        failed: Vec::new(),
        took_us: [10, 0],
        aborted: None,
    }
}

/// The keys of the conntracks `sent` announces as new.
fn announced(sent: &[Msg]) -> Vec<crate::wire::CtKey> {
    sent.iter()
        .filter_map(|m| match m {
            Msg::CtNew(w) => Some(ct_key_of(&from_wire_ct(w.clone()))),
            _ => None,
        })
        .collect()
}

/// A `-R` while the commit runs: its dump finds a flow born during the
/// commit, whose NEW event the node did not read. It cached the flow
/// silently, so the commit's own resync took it for known and never
/// announced it: the peer did not hear of the flow at all.
#[test]
fn a_resync_during_a_commit_leaves_a_flow_born_meanwhile_announced() {
    let mut n = node();
    let committed = flow(5000);
    n.external_ct.upsert(&committed, T0, true).unwrap();
    let out = control(&mut n, CLIENT, Request::Commit(Target::Ct));
    assert_eq!(out.new_events, Some(false));
    let commit = out.jobs[0].purpose;
    assert!(matches!(out.jobs[0].work, Work::Commit(_)));

    let born = flow(6000);
    let out = control(&mut n, RESYNCER, Request::ResyncKernel(Target::Ct));
    let r = resync_purpose(&out);
    let out = done(&mut n, r, dump(&[&committed, &born]));
    let mut sent = sent_from(&mut n, T0, &out);

    let out = done(&mut n, commit, committed_one());
    assert_eq!(out.new_events, Some(true));
    let r = resync_purpose(&out);
    let out = done(&mut n, r, dump(&[&committed, &born]));
    sent.extend(sent_from(&mut n, T0, &out));

    assert!(n.internal_ct.contains(&ct_key_of(&born)));
    assert_eq!(
        announced(&sent),
        [ct_key_of(&born)],
        "only the flow born during the commit, as a NEW event would: {sent:?}"
    );
}

/// The same with the `-R`'s dump handed out just before the `-c`: its
/// parts are read while the NEW group is away all the same.
#[test]
fn a_resync_out_when_a_commit_starts_leaves_a_flow_born_meanwhile_announced() {
    let mut n = node();
    let committed = flow(5000);
    n.external_ct.upsert(&committed, T0, true).unwrap();
    let out = control(&mut n, RESYNCER, Request::ResyncKernel(Target::Ct));
    let r = resync_purpose(&out);
    let out = control(&mut n, CLIENT, Request::Commit(Target::Ct));
    let commit = out.jobs[0].purpose;

    let born = flow(6000);
    let out = done(&mut n, r, dump(&[&committed, &born]));
    let mut sent = sent_from(&mut n, T0, &out);
    let out = done(&mut n, commit, committed_one());
    let r = resync_purpose(&out);
    let out = done(&mut n, r, dump(&[&committed, &born]));
    sent.extend(sent_from(&mut n, T0, &out));
    assert_eq!(announced(&sent), [ct_key_of(&born)], "{sent:?}");
}

/// The commit's resync fails (the worker's full queue refused its dump):
/// the internal cache lacks every committed entry, and nothing dumps
/// again on its own. A `-B` waiting for that resync, or one after it,
/// sent the cache as it was, without them, and so would the answer to
/// the peer's RESYNC. The cache stands for the kernel's table no longer,
/// as after `-f`: a bulk comes from a dump, which refills it.
#[test]
fn a_failed_resync_after_a_commit_leaves_the_bulk_to_a_dump() {
    let mut n = node();
    let committed = flow(5000);
    n.external_ct.upsert(&committed, T0, true).unwrap();
    let out = control(&mut n, CLIENT, Request::Commit(Target::Ct));
    let commit = out.jobs[0].purpose;
    let out = done(&mut n, commit, committed_one());
    let r = resync_purpose(&out);
    let out = control(&mut n, RESYNCER, Request::BulkSend);
    assert!(out.replies.is_empty(), "-B waits for the commit's resync");
    let failed = Done::Failed("kernel job queue full".into());
    let out = done(&mut n, r, failed);
    let bulk_dump = |out: &Outbox| {
        out.jobs.iter().any(|j| {
            matches!(j.purpose, Purpose::Resync { send: true, .. })
                && matches!(
                    j.work,
                    Work::Dump {
                        conntracks: true,
                        ..
                    }
                )
        })
    };
    assert!(
        bulk_dump(&out),
        "the waiting -B is sent from a dump: {:?}",
        out.jobs
    );
    assert!(n.internal_ct.is_empty());
}
