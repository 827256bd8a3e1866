//! Helpers shared by the node's unit tests.

use std::time::Duration;

use super::{Completion, Done, Input, Node, Purpose};
use crate::kernel::codec::Object;
use crate::model::Conntrack;
use crate::time::Instant;
use crate::wire::Msg;

/// Hands in a dump for `purpose` as the worker would, then the timers
/// until the coalesced datagrams are out: the data messages (entries,
/// deletions) sent.
pub(super) fn dumped(
    node: &mut Node,
    now: Instant,
    purpose: Purpose,
    cts: &[Conntrack],
) -> usize {
    let objects = cts.iter().cloned().map(Object::Ct).collect();
    dumped_objects(node, now, purpose, objects).len()
}

/// [`dumped`] with any objects: the data messages sent.
pub(super) fn dumped_objects(
    node: &mut Node,
    now: Instant,
    purpose: Purpose,
    objects: Vec<Object>,
) -> Vec<Msg> {
    let done = Done::Dumped {
        objects,
        last: true,
    };
    let out = node.handle(now, Input::Job(Completion { purpose, done }));
    sent_from(node, now, &out)
}

/// The data messages in `out`'s datagrams and in those the node's timers
/// send within the next second.
pub(super) fn sent_from(
    node: &mut Node,
    now: Instant,
    out: &super::Outbox,
) -> Vec<Msg> {
    let data = |d: &[Vec<u8>]| -> Vec<Msg> {
        d.iter()
            .flat_map(|g| {
                let (_, body) = crate::wire::read(g).unwrap();
                crate::wire::messages(body)
                    .map(|m| m.unwrap())
                    .filter(Msg::is_data)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut sent = data(&out.datagrams);
    for _ in 0..10 {
        let at = node.poll_at();
        if at > now + Duration::from_secs(1) {
            break;
        }
        sent.extend(data(&node.handle(at, Input::Timer).datagrams));
    }
    sent
}
