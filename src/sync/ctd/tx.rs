//! The transmit side of the conntrackd-protocol engine: packing
//! messages into one datagram up to the link's size, each numbered when
//! it is written, a key built from the internal cache at that moment (or
//! as a DEL from the key when the entry is gone), and what FT-FW keeps
//! for resending.

use super::queue::{Ctl, Next, Sent};
use super::{CtdEngine, Hello};
use crate::model::{Conntrack, Expect};
use crate::sync::ftfw::keep_for_silent_peer;
use crate::sync::{Key, PEER_ALIVE, Source, State};
use crate::time::Instant;
use crate::wire::Seq;
use crate::wire::ctd::{self, Body, Message, flag};

impl CtdEngine {
    /// Builds the next datagram into `buf` (at most `max_datagram`
    /// bytes). None when nothing waits.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        src: &dyn Source,
        buf: &mut [u8],
    ) -> Option<usize> {
        let limit = buf.len().min(self.p.max_datagram);
        let mut off = 0;
        let mut n = 0u64;
        let data_waits = self.data_waits();
        while let Some(next) = self.tx.take() {
            if data_waits && matches!(next, Next::Key(..)) {
                self.tx.put_back(next);
                break;
            }
            let body = match &next {
                Next::Ctl(c) => ctl_body(*c),
                Next::Key(k, new, _) => build(k, *new, src),
            };
            let gone = matches!(body, Body::CtDel(_) | Body::ExpDel(_));
            let ftfw = self.ftfw();
            let msg = Message {
                seq: self.next_seq.0,
                hello: ftfw && self.hello == Hello::Say,
                hello_back: ftfw && self.say_hello_back,
                body,
            };
            let out = &mut buf[off..limit];
            let written = ctd::encode(&msg, self.p.opts, out).and_then(|len| {
                if self.announce {
                    ctd::append_mark(out, len)
                } else {
                    Ok(len)
                }
            });
            match written {
                Ok(len) => {
                    off += len;
                    n += 1;
                    let seq = self.next_seq;
                    self.next_seq = seq.next();
                    self.numbered += 1;
                    self.say_hello_back &= !msg.hello_back;
                    let mut hello = 0;
                    if msg.hello {
                        hello |= flag::HELLO;
                    }
                    if msg.hello_back {
                        hello |= flag::HELLO_BACK;
                    }
                    self.sent(seq, (next, gone), hello, now);
                }
                Err(ctd::Error::TooBig) if n > 0 => {
                    self.tx.put_back(next);
                    break;
                }
                Err(_) => {
                    // Does not fit an empty datagram, or cannot be
                    // written: never sendable.
                    self.stats.too_big += 1;
                }
            }
        }
        self.tx.release_if_drained();
        if n == 0 {
            return None;
        }
        self.stats.msgs_sent += n;
        self.stats.datagrams_sent += 1;
        self.last_tx = now;
        self.hello_since.get_or_insert(now);
        Some(off)
    }

    /// `hello`: the HELLO bits it went with; `gone`: a key sent as a
    /// DEL.
    fn sent(
        &mut self,
        seq: Seq,
        (what, gone): (Next, bool),
        hello: u8,
        now: Instant,
    ) {
        if !self.ftfw() {
            return;
        }
        let kept = match what {
            Next::Key(k, ..) => {
                self.last_data_seq = Some(seq);
                self.probe.data(now);
                if !gone && !self.hold_state_for_silent_peer(now) {
                    return;
                }
                Sent::Key(k)
            }
            // ALIVE is not kept (conntrackd frees it), nor a tail query.
            Next::Ctl(Ctl::Alive | Ctl::Query { .. }) => return,
            Next::Ctl(c) => Sent::Ctl(c),
        };
        self.rs.push(seq, (kept, gone), hello, now, &mut self.stats);
    }

    /// Whether an entry's state just sent is kept for resending: while
    /// the peer is heard, always; while it is not, up to
    /// `SILENT_HOLD` of them (half `ResendQueueSize` if that is less),
    /// then those are given up and the peer gets a bulk update when heard
    /// again (see the module header).
    fn hold_state_for_silent_peer(&mut self, now: Instant) -> bool {
        self.heard_at.is_some_and(|t| now.since(t) < PEER_ALIVE)
            || keep_for_silent_peer(
                &mut self.silent_bulk_owed,
                (self.rs.len(), self.p.resend_queue_size),
                || self.rs.give_up_states(),
                &mut self.stats,
            )
    }
}

fn ctl_body(c: Ctl) -> Body {
    match c {
        Ctl::Ack { from, to } => Body::Ack {
            from: from.0,
            to: to.0,
        },
        Ctl::Nack { from, to } | Ctl::Query { from, to } => Body::Nack {
            from: from.0,
            to: to.0,
        },
        Ctl::Resync => Body::Resync,
        Ctl::Alive => Body::Alive,
    }
}

/// The message carrying `key`'s current state, or its DEL.
fn build(key: &Key, new: bool, src: &dyn Source) -> Body {
    match (key, src.current(key)) {
        (_, Some(State::Ct(ct))) if new => Body::CtNew(ct),
        (_, Some(State::Ct(ct))) => Body::CtUpd(ct),
        (_, Some(State::Exp(x))) if new => Body::ExpNew(x),
        (_, Some(State::Exp(x))) => Body::ExpUpd(x),
        (Key::Ct(k), None) => {
            let mut ct = Conntrack::new(k.orig);
            ct.zone = k.zone;
            Body::CtDel(ct)
        }
        (Key::Exp(k), None) => {
            let mut x = Expect::new(k.master, k.tuple, k.mask);
            x.zone = k.zone;
            Body::ExpDel(x)
        }
    }
}
