//! Tests: a resync (`-R`) whose dump arrives in parts while kernel events
//! keep coming. What the kernel still holds is marked in the internal
//! cache (by events and by fresh dump entries); the rest is swept when
//! the last part is in, and marks never outlive their resync. A resync
//! asked for while a dump runs waits for its end.

use super::{ClientId, Completion, Done, Input, Node, Outbox, Purpose};
use crate::config;
use crate::control::proto::{Reply, Request, Status, Target};
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::{Conntrack, L4, Tuple, status};
use crate::time::Instant;
use crate::wire::ct_key_of;

const CLIENT: ClientId = 5;
const T0: Instant = Instant::from_millis(1_000);

pub(super) fn node() -> Node {
    let text = "General { UNIX { Path /x } }\nSync { Mode FTFW { }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    Node::new(cfg, 1, 1, 1472, 212_992, T0)
}

/// A UDP flow from source port `sport`, with the kernel's `timeout`.
pub(super) fn flow(sport: u16, timeout: u32) -> Conntrack {
    let mut c = Conntrack::new(Tuple {
        src: "192.168.0.2".parse().unwrap(),
        dst: "192.168.1.2".parse().unwrap(),
        proto: 17,
        l4: L4::Ports {
            src: sport,
            dst: 53,
        },
    });
    c.reply = Some(c.orig.inverse());
    c.status = status::CONFIRMED | status::SEEN_REPLY;
    c.timeout = Some(timeout);
    c
}

fn event(n: &mut Node, kind: Kind, c: &Conntrack, origin: Origin) {
    let msg = Message {
        kind,
        object: Object::Ct(c.clone()),
        port: 0,
        seq: 0,
    };
    n.handle(T0, Input::Kernel(msg, origin));
}

fn request_resync(n: &mut Node) -> Outbox {
    n.handle(
        T0,
        Input::Control {
            client: CLIENT,
            request: Request::ResyncKernel(Target::Ct),
            links: &[],
            control: Default::default(),
        },
    )
}

/// Asks for `-R`; the purpose its dump comes back with.
fn resync(n: &mut Node) -> Purpose {
    let out = request_resync(n);
    assert_eq!(out.jobs.len(), 1, "{:?}", out.jobs);
    out.jobs[0].purpose
}

fn part(
    n: &mut Node,
    purpose: Purpose,
    cts: &[&Conntrack],
    last: bool,
) -> Outbox {
    let objects = cts.iter().map(|c| Object::Ct((*c).clone())).collect();
    let done = Done::Dumped { objects, last };
    n.handle(T0, Input::Job(Completion { purpose, done }))
}

fn cached(n: &Node, c: &Conntrack) -> bool {
    n.internal_ct.contains(&ct_key_of(c))
}

#[test]
fn a_resync_keeps_what_the_kernel_holds_and_sweeps_the_rest() {
    let mut n = node();
    let kept = flow(1, 120);
    let stale = flow(2, 120);
    let born = flow(3, 120);
    let ended = flow(4, 120);
    let changed = flow(5, 120);
    let injected = flow(6, 120);
    let injected_ended = flow(7, 120);
    for c in [&kept, &stale, &ended, &changed, &injected, &injected_ended] {
        event(&mut n, Kind::New, c, Origin::NotMe);
    }
    assert_eq!(n.internal_ct.len(), 6);

    let purpose = resync(&mut n);
    // The first part, then events, then the last part: the dump was
    // read before any of the events.
    part(&mut n, purpose, &[&kept], false);
    event(&mut n, Kind::New, &born, Origin::NotMe);
    event(&mut n, Kind::Destroy, &ended, Origin::NotMe);
    let mut newer = changed.clone();
    newer.timeout = Some(60);
    event(&mut n, Kind::Update, &newer, Origin::NotMe);
    // Our own injection's events leave the cache as it is, but say
    // whether the kernel holds the entry.
    event(&mut n, Kind::New, &injected, Origin::Inject);
    event(&mut n, Kind::Destroy, &injected_ended, Origin::Inject);
    assert!(
        cached(&n, &injected_ended),
        "an injection's event caches nothing"
    );
    part(&mut n, purpose, &[&ended, &changed], true);

    assert!(cached(&n, &kept), "in the dump");
    assert!(!cached(&n, &stale), "neither in the dump nor seen since");
    assert!(cached(&n, &born), "created after its part was dumped");
    assert!(!cached(&n, &ended), "the dump is older than the DESTROY");
    let e = n.internal_ct.get(&ct_key_of(&changed)).unwrap();
    assert_eq!(e.value.timeout, Some(60), "the event's state is newer");
    assert!(cached(&n, &injected), "in the kernel since the dump");
    assert!(!cached(&n, &injected_ended), "gone from the kernel");
    assert_eq!(n.internal_ct.len(), 4);
    assert!(n.resync.is_none());

    // The next resync starts with no marks: what its dump lacks goes,
    // whatever the last one found.
    let purpose = resync(&mut n);
    part(&mut n, purpose, &[&kept], true);
    assert!(cached(&n, &kept));
    assert_eq!(n.internal_ct.len(), 1, "born, changed and injected swept");
}

#[test]
fn a_failed_dump_removes_nothing_and_leaves_no_marks() {
    let mut n = node();
    let a = flow(1, 120);
    let b = flow(2, 120);
    event(&mut n, Kind::New, &a, Origin::NotMe);
    event(&mut n, Kind::New, &b, Origin::NotMe);

    let purpose = resync(&mut n);
    event(&mut n, Kind::Update, &a, Origin::NotMe);
    let failed = Done::Failed("ENOBUFS".into());
    n.handle(
        T0,
        Input::Job(Completion {
            purpose,
            done: failed,
        }),
    );
    assert_eq!(n.internal_ct.len(), 2, "nothing removed");

    // `a`'s mark from the failed resync does not keep it now.
    let purpose = resync(&mut n);
    part(&mut n, purpose, &[&b], true);
    assert!(!cached(&n, &a));
    assert!(cached(&n, &b));
}

/// `-R` while a dump runs: no job yet (it waits for that dump's end).
fn resync_waits(n: &mut Node) {
    let out = request_resync(n);
    assert!(out.jobs.is_empty(), "{:?}", out.jobs);
}

/// The one resync dump `out` hands to the worker.
fn resync_in(out: &Outbox) -> Purpose {
    let dumps: Vec<Purpose> = out
        .jobs
        .iter()
        .map(|j| j.purpose)
        .filter(|p| matches!(p, Purpose::Resync { .. }))
        .collect();
    assert_eq!(dumps.len(), 1, "{:?}", out.jobs);
    dumps[0]
}

/// Two resyncs asked for back to back (the commit's and the notify
/// script's `-R`). Were the second dump handed out at once, the worker
/// would read its table before the first dump's end, and a flow born in
/// between would be tracked by neither dump: the second sweep would
/// drop it. It is handed out when the first ends, and tracks from then.
#[test]
fn a_resync_asked_for_during_a_dump_waits_for_it_and_keeps_flows_born_meanwhile()
 {
    let mut n = node();
    let p1 = resync(&mut n);
    resync_waits(&mut n);
    let born = flow(9, 120);
    event(&mut n, Kind::New, &born, Origin::NotMe);
    let out = part(&mut n, p1, &[], true);
    assert!(cached(&n, &born), "kept by the first sweep");
    let p2 = resync_in(&out);
    // Its table is read after the first dump ended: `born` is in it; a
    // flow born once it was handed out is tracked by it.
    let later = flow(10, 120);
    event(&mut n, Kind::New, &later, Origin::NotMe);
    part(&mut n, p2, &[&born], true);
    assert!(cached(&n, &born), "in the second dump");
    assert!(
        cached(&n, &later),
        "born after the second dump was asked for"
    );
    assert!(n.resync.is_none() && n.resync_wanted.is_none());
}

/// The same window, a DESTROY: a second dump read before it would bring
/// the ended flow back. Each dump's sweep trusts only what it saw since
/// it was handed out.
#[test]
fn a_resync_asked_for_during_a_dump_never_brings_back_a_destroyed_flow() {
    let mut n = node();
    let (x, y) = (flow(8, 120), flow(7, 120));
    event(&mut n, Kind::New, &x, Origin::NotMe);
    event(&mut n, Kind::New, &y, Origin::NotMe);
    let p1 = resync(&mut n);
    resync_waits(&mut n);
    event(&mut n, Kind::Destroy, &x, Origin::NotMe);
    let out = part(&mut n, p1, &[&x, &y], true);
    assert!(!cached(&n, &x), "the first dump is older than the DESTROY");
    assert!(cached(&n, &y));
    let p2 = resync_in(&out);
    event(&mut n, Kind::Destroy, &y, Origin::NotMe);
    part(&mut n, p2, &[&y], true);
    assert!(!cached(&n, &x), "the kernel destroyed it before this dump");
    assert!(!cached(&n, &y), "the second dump is older than the DESTROY");
}

/// A resync asked for while a dump runs is handed out only at that
/// dump's end, so a full job queue's refusal of it (a completion out of
/// order) can never be taken for the running dump's failure and clear
/// its marks: the first dump's sweep keeps what its earlier parts
/// found, and the refusal removes nothing and answers its client.
#[test]
fn a_refused_resync_never_disturbs_the_dump_before_it() {
    let mut n = node();
    let (a, b) = (flow(1, 120), flow(2, 120));
    event(&mut n, Kind::New, &a, Origin::NotMe);
    event(&mut n, Kind::New, &b, Origin::NotMe);
    let p1 = resync(&mut n);
    part(&mut n, p1, &[&a], false);
    resync_waits(&mut n);
    let out = part(&mut n, p1, &[&b], true);
    assert!(cached(&n, &a), "in the first part of the dump");
    assert!(cached(&n, &b));
    let p2 = resync_in(&out);
    let done = Done::Failed("kernel job queue full".into());
    let out = n.handle(T0, Input::Job(Completion { purpose: p2, done }));
    assert!(
        matches!(&out.replies[..], [(CLIENT, Reply::Done(Status::Failed(_)))]),
        "{:?}",
        out.replies
    );
    assert_eq!(n.internal_ct.len(), 2, "nothing removed");
    assert!(n.resync.is_none());
    // The next -R goes to the worker at once.
    resync(&mut n);
}
