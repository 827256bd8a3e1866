//! Helpers shared by the node's unit tests.

use std::time::Duration;

use super::{Completion, Done, Input, Node, Purpose};
use crate::kernel::codec::Object;
use crate::model::Conntrack;
use crate::time::Instant;

/// Hands in a dump for `purpose` as the worker would, then the timers
/// until the coalesced datagrams are out: the data messages (entries,
/// deletions) sent.
pub(super) fn dumped(
    node: &mut Node,
    now: Instant,
    purpose: Purpose,
    cts: &[Conntrack],
) -> usize {
    let done = Done::Dumped {
        objects: cts.iter().cloned().map(Object::Ct).collect(),
        last: true,
    };
    let data = |d: &[Vec<u8>]| -> usize {
        d.iter()
            .map(|g| {
                let (_, body) = crate::wire::read(g).unwrap();
                crate::wire::messages(body)
                    .filter(|m| m.as_ref().unwrap().is_data())
                    .count()
            })
            .sum()
    };
    let mut sent = data(
        &node
            .handle(now, Input::Job(Completion { purpose, done }))
            .datagrams,
    );
    for _ in 0..10 {
        let at = node.poll_at();
        if at > now + Duration::from_secs(1) {
            break;
        }
        sent += data(&node.handle(at, Input::Timer).datagrams);
    }
    sent
}
