//! Masters read back from the kernel after a NAT helper announced an
//! expectation (the sequence adjustment no event reports), and the rule
//! that keeps such a read from bringing back a flow whose DESTROY came
//! while it ran.

use super::{Job, Node, Purpose, Work};
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::time::Instant;
use crate::wire::CtKey;

/// Masters being read back ([`Node::refresh_master`]), by the id their
/// `Purpose::Refresh` carries, each with whether a DESTROY of it came
/// since: the worker's read is then older than that event, and its
/// answer must not bring the flow back.
#[derive(Debug, Default)]
pub(super) struct Refreshes {
    /// (id, master, destroyed since)
    waiting: std::collections::VecDeque<(u32, CtKey, bool)>,
    next: u32,
}
/// Most masters read back at once (beyond, a seq adjustment waits for
/// the master's next event, as in conntrackd).
const MAX_REFRESHES: usize = 4096;

impl Refreshes {
    /// A DESTROY of `key` came: a read of it under way is older.
    pub(super) fn destroyed(&mut self, key: &CtKey) {
        for w in self.waiting.iter_mut() {
            w.2 |= w.1 == *key;
        }
    }
}

impl Node {
    /// A NAT helper that announces an expectation also rewrote the
    /// packet that carried it (the FTP PASV/PORT address), and the
    /// length change became a sequence adjustment of the master. The
    /// kernel sends no event for that (only synproxy reports
    /// `IPCT_SEQADJ`), yet the peer needs it to carry the control
    /// connection after a failover: read the master back from the kernel
    /// and send it as an update.
    pub(super) fn refresh_master(&mut self, master: CtKey) {
        let r = &mut self.refreshes;
        if r.waiting.len() >= MAX_REFRESHES {
            return;
        }
        let id = r.next;
        r.next = r.next.wrapping_add(1);
        r.waiting.push_back((id, master, false));
        self.out.jobs.push(Job {
            purpose: Purpose::Refresh { id },
            work: Work::Get {
                orig: master.orig,
                zone: master.zone,
            },
        });
    }

    /// The master a [`Node::refresh_master`] read back as `id` (none: it
    /// is gone, and its destroy event says so; or the read failed). Not
    /// taken when a DESTROY of it came meanwhile: the read is older.
    pub(super) fn refreshed(
        &mut self,
        now: Instant,
        id: u32,
        objects: Vec<Object>,
    ) {
        let waiting = &mut self.refreshes.waiting;
        let Some(at) = waiting.iter().position(|w| w.0 == id) else {
            return;
        };
        if waiting.remove(at).is_some_and(|w| w.2) {
            return;
        }
        for o in objects {
            let msg = Message {
                kind: Kind::Update,
                object: o,
                port: 0,
                seq: 0,
            };
            self.kernel_event(now, msg, Origin::NotMe, false);
        }
    }
}
