//! The conntrackd-protocol engine's clock: when it wants to be woken
//! ([`CtdEngine::poll_at`]) and what each wake-up does: the HELLO
//! patience and a waiting RESYNC, entries the peer's ACKs passed over
//! ([`super::PASSED_OVER`]), the tail query and probe ([`super::tail`]),
//! the quiet second's ALIVE (or ACK), and ALARM's refresh slices.

use super::queue::Ctl;
use super::rx::WINDOW;
use super::{CtdEngine, HELLO_PATIENCE, Hello, PASSED_OVER, RESYNC_WAIT};
use crate::model::Mode;
use crate::sync::{ALIVE_INTERVAL, Key, Source};
use crate::time::Instant;
use crate::wire::Seq;

impl CtdEngine {
    pub fn poll_at(&self) -> Instant {
        match self.p.mode {
            Mode::Alarm => self.refresh_at,
            Mode::FtFw => [
                self.query.due(),
                self.probe.due(),
                self.acked_upto
                    .and_then(|u| self.rs.passed_over_since(u))
                    .map(|at| at + PASSED_OVER),
            ]
            .into_iter()
            .flatten()
            .fold(self.last_tx + ALIVE_INTERVAL, Instant::min),
            Mode::NoTrack => self.last_tx + ALIVE_INTERVAL,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, src: &dyn Source) {
        if self.p.mode == Mode::Alarm {
            if now >= self.refresh_at {
                self.refresh_at = now + ALIVE_INTERVAL;
                self.refresh(src);
            }
            return;
        }
        if self.ftfw() {
            if self.hello == Hello::Say
                && self
                    .hello_since
                    .is_some_and(|t| now.since(t) >= HELLO_PATIENCE)
            {
                self.impatient = true;
            }
            if self
                .resync_wanted
                .is_some_and(|t| now.since(t) >= RESYNC_WAIT)
            {
                self.resync_wanted = None;
                self.tx.control(Ctl::Resync);
            }
            if let Some(upto) = self.acked_upto {
                for s in self.rs.take_passed_over(upto, now, PASSED_OVER) {
                    self.requeue(s);
                }
            }
            self.ask_for_tail(now);
            self.probe_tail(now);
        }
        if now >= self.last_tx + ALIVE_INTERVAL {
            // One ALIVE (or ACK) per quiet second, whether or not it
            // could be sent at once.
            self.last_tx = now;
            let ack = if self.ftfw() {
                self.rx.idle_ack()
            } else {
                None
            };
            self.tx.control(ack.unwrap_or(Ctl::Alive));
        }
    }

    /// FT-FW: the tail query, when due (`tail`): a NACK of the numbers
    /// after the last one heard. Not while our handshake is open: every
    /// message then says HELLO, and a conntrackd empties its resend queue
    /// at each (reference §4.7).
    fn ask_for_tail(&mut self, now: Instant) {
        let Some(last) = self.rx.last().filter(|_| self.hello == Hello::Done)
        else {
            // Asked for nothing (a due query must not stay due).
            self.query.reset();
            return;
        };
        if self.query.poll(now) {
            // With the ACK of the open run, as conntrackd NACKs a gap: a
            // query is a transmission, and puts off the quiet second's.
            if let Some(ack) = self.rx.idle_ack() {
                self.tx.control(ack);
            }
            self.queue_tail_query(last);
        }
    }

    /// A NACK of the peer's numbers after `last` (the tail query): never
    /// kept for resending, counted in `tail_queries`.
    fn queue_tail_query(&mut self, last: Seq) {
        self.stats.tail_queries += 1;
        self.tx.control(Ctl::Query {
            from: last.next(),
            to: last + WINDOW,
        });
    }

    /// FT-FW: the tail probe, when due (`tail`): an ALIVE while data we
    /// sent awaits the peer's ACK, with a query of the peer's numbers. Not
    /// while our handshake is open (every message then says HELLO, and
    /// empties a conntrackd's resend queue).
    fn probe_tail(&mut self, now: Instant) {
        let unacked = self
            .last_data_seq
            .is_some_and(|d| self.acked_upto.is_none_or(|u| u < d));
        if !unacked || self.hello != Hello::Done {
            self.probe.reset();
            return;
        }
        if self.probe.poll(now) {
            self.stats.probes_sent += 1;
            self.tx.control(Ctl::Alive);
            // And the peer's own tail: a NACK of ours it sent last and
            // lost leaves its gap unrepaired until its next message, a
            // second later. Asked for, it is sent again.
            if let Some(last) = self.rx.last() {
                self.queue_tail_query(last);
            }
        }
    }

    /// ALARM: one slice of the keys per second, each key once per
    /// `RefreshTime`.
    fn refresh(&mut self, src: &dyn Source) {
        let slots = self.p.refresh_time.as_secs().max(1);
        let slot = self.slot % slots;
        self.slot = self.slot.wrapping_add(1);
        for key in src.keys() {
            if spread(&key) % slots == slot {
                self.tx.key(key, false, &mut self.stats);
            }
        }
    }
}

/// A cheap, stable spread of keys over refresh slots.
fn spread(key: &Key) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}
