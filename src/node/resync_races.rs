//! Tests: a resync (`-R`) whose dump arrives in parts while kernel events
//! keep coming. What the kernel still holds is marked in the internal
//! cache (by events and by fresh dump entries); the rest is swept when
//! the last part is in, and marks never outlive their resync.

use super::{ClientId, Completion, Done, Input, Node, Outbox, Purpose};
use crate::config;
use crate::control::proto::{Request, Target};
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::{Conntrack, L4, Tuple, status};
use crate::time::Instant;
use crate::wire::ct_key_of;

const CLIENT: ClientId = 5;
const T0: Instant = Instant::from_millis(1_000);

fn node() -> Node {
    let text = "General { UNIX { Path /x } }\nSync { Mode FTFW { }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    Node::new(cfg, 1, 1, 1472, 212_992, T0)
}

/// A UDP flow from source port `sport`, with the kernel's `timeout`.
fn flow(sport: u16, timeout: u32) -> Conntrack {
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

/// Asks for `-R`; the purpose its dump comes back with.
fn resync(n: &mut Node) -> Purpose {
    let out: Outbox = n.handle(
        T0,
        Input::Control {
            client: CLIENT,
            request: Request::ResyncKernel(Target::Ct),
            links: &[],
        },
    );
    assert_eq!(out.jobs.len(), 1, "{:?}", out.jobs);
    out.jobs[0].purpose
}

fn part(n: &mut Node, purpose: Purpose, cts: &[&Conntrack], last: bool) {
    let objects = cts.iter().map(|c| Object::Ct((*c).clone())).collect();
    let done = Done::Dumped { objects, last };
    n.handle(T0, Input::Job(Completion { purpose, done }));
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
