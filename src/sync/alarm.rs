//! ALARM: every entry is re-sent once per `RefreshTime`, spread over the
//! period (each tick sends one slice of the keys). No sequence tracking,
//! no control messages, no RESYNC: the next refresh heals whatever a late
//! or lost message got wrong.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::mode::{Cx, SyncMode};
use super::session::{Contact, Peers};
use super::{Key, Source};
use crate::time::Instant;
use crate::wire::{Msg, Seq};

pub(crate) struct Alarm {
    /// Only for noticing restarts (counted like the other modes do).
    peers: Peers<()>,
    /// Ticks per refresh period.
    slots: u64,
    /// Which slice of the keys the next tick refreshes.
    slot: u64,
}

impl Alarm {
    pub(crate) fn new(refresh_time: Duration) -> Self {
        Alarm {
            peers: Peers::new(),
            slots: refresh_time.as_secs().max(1),
            slot: 0,
        }
    }
}

impl SyncMode for Alarm {
    fn heard(&mut self, now: Instant, peer: u64, session: u32) -> Contact {
        self.peers.heard(now, peer, session, || ())
    }

    fn moved(&mut self, from: u64, to: u64) {
        self.peers.moved(from, to);
    }

    fn data(&mut self, _: u64, _: Seq, _: &mut Cx<'_>) -> bool {
        true
    }

    fn control(&mut self, _: u64, _: Msg, _: &mut Cx<'_>) {}

    fn tick(&mut self, _: Instant, src: &dyn Source, cx: &mut Cx<'_>) {
        let slot = self.slot % self.slots;
        self.slot = self.slot.wrapping_add(1);
        for key in src.keys() {
            if spread(&key) % self.slots == slot {
                cx.tx.enqueue(key, false, cx.stats);
            }
        }
    }

    fn answers_resync(&self) -> bool {
        false
    }
}

/// A cheap, stable spread of keys over refresh slots.
fn spread(key: &Key) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}
