//! NOTRACK: the shared transmit path without acknowledgements. The
//! receiver counts late messages and gaps but applies whatever arrives
//! (as conntrackd does); the sender keeps nothing once sent, says ALIVE
//! when it has been quiet for a tick, and answers RESYNC with a bulk.

use super::mode::{Cx, SyncMode};
use super::rx::{Announced, Arrival, SeqTrack};
use super::session::{Contact, Peers};
use super::{ALIVE_INTERVAL, Source};
use crate::time::Instant;
use crate::wire::{Msg, Seq};

pub(crate) struct NoTrack {
    peers: Peers<SeqTrack>,
}

impl NoTrack {
    pub(crate) fn new() -> Self {
        NoTrack {
            peers: Peers::new(),
        }
    }
}

impl SyncMode for NoTrack {
    fn heard(&mut self, now: Instant, peer: u64, session: u32) -> Contact {
        self.peers.heard(now, peer, session, SeqTrack::default)
    }

    fn moved(&mut self, from: u64, to: u64) {
        self.peers.moved(from, to);
    }

    fn data(&mut self, peer: u64, seq: Seq, cx: &mut Cx<'_>) -> bool {
        let Some(rx) = self.peers.rx_mut(peer) else {
            return false;
        };
        match rx.arrive(seq) {
            Arrival::InOrder => {}
            // Applied all the same: nothing newer will come to heal it.
            Arrival::Late => cx.stats.before += 1,
            Arrival::After(gap) => cx.stats.lost += gap.len(),
            Arrival::OutOfWindow => {
                cx.stats.out_of_window += 1;
                return false;
            }
        }
        true
    }

    fn control(&mut self, peer: u64, msg: Msg, cx: &mut Cx<'_>) {
        match msg {
            Msg::Alive { next } => {
                match self.peers.rx_mut(peer).map(|rx| rx.alive(next)) {
                    Some(Announced::Gap(gap)) => cx.stats.lost += gap.len(),
                    Some(Announced::OutOfWindow) => {
                        cx.stats.out_of_window += 1;
                    }
                    _ => {}
                }
            }
            // ACK and NACK belong to FT-FW.
            _ => cx.stats.malformed += 1,
        }
    }

    fn tick(&mut self, now: Instant, _: &dyn Source, cx: &mut Cx<'_>) {
        if now.since(cx.tx.last_tx()) >= ALIVE_INTERVAL {
            cx.tx.control(Msg::Alive {
                next: cx.tx.next_seq(),
            });
        }
    }

    fn anchor(&mut self, peer: u64, from: Seq, first_held: Option<Seq>) {
        // Nothing is resent in NOTRACK: resume with what we held, or at
        // the peer's next number (its `from`).
        if let Some(rx) = self.peers.rx_mut(peer) {
            rx.anchor(first_held.unwrap_or(from));
        }
    }

    fn expects(&self, peer: u64) -> Option<Seq> {
        self.peers.rx(peer).and_then(|rx| rx.next())
    }

    fn answers_resync(&self) -> bool {
        true
    }
}
