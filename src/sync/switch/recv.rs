//! The switch's receive side, where its rule is applied (see the parent
//! module): which engine reads a datagram (conntrackd's sniffed and
//! refused while keyed or pinned, counted until they kept coming for
//! `SWITCH_AFTER` while no ctsyncd peer talks; ctsyncd's refused while
//! pinned to conntrackd's), a marked datagram heard, and what a switch
//! either way carries over to the other engine.

use super::{CTSYNCD_HEARD, Protocol, SWITCH_AFTER, Switch};
use crate::config::PeerProtocol;
use crate::model::Mode;
use crate::sync::Source;
use crate::sync::ctd::{CtdEngine, Refused};
use crate::time::Instant;
use crate::wire::{self, ctd};

/// What reading one datagram gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// ctsyncd's verdict on a datagram it read (a refused one is counted
    /// as before).
    pub result: Result<(), wire::Error>,
    /// The protocol the datagram was read in, if it was read.
    pub protocol: Option<Protocol>,
    /// conntrackd messages refused in it, by why.
    pub refused: Refused,
    /// The datagram switched the link to this protocol: log it.
    pub switched: Option<Protocol>,
}

impl Switch {
    // ===== receive side =====

    fn accepts_ctd(&self) -> bool {
        !self.keyed && self.setting != PeerProtocol::Ctsyncd
    }

    /// Handles one datagram from `peer` (see the module header for which
    /// engine reads it).
    pub fn recv(
        &mut self,
        now: Instant,
        peer: u64,
        datagram: &[u8],
        src: &dyn Source,
    ) -> Received {
        let mut out = Received {
            result: Ok(()),
            protocol: None,
            refused: Refused::default(),
            switched: None,
        };
        if self.accepts_ctd() && ctd::is_conntrackd(datagram) {
            if self.setting == PeerProtocol::Auto && ctd::carries_mark(datagram)
            {
                self.heard_marked(now);
            }
            if self.ctd.is_none() {
                let decodes = matches!(
                    ctd::messages(datagram, self.ctd_params.opts).next(),
                    Some(Ok(_))
                );
                if !decodes {
                    // Counted as conntrackd's refusals, switching nothing.
                    let mut r = Refused::default();
                    for e in ctd::messages(datagram, self.ctd_params.opts)
                        .filter_map(Result::err)
                    {
                        r.count(e);
                    }
                    self.ctd_refused_past.add(&r);
                    out.refused = r;
                    out.result = Err(wire::Error::Malformed);
                    return out;
                }
                let since = *self.ctd_since.get_or_insert(now);
                let ctsyncd_talks = self
                    .ctsyncd_alive
                    .is_some_and(|t| now.since(t) < CTSYNCD_HEARD);
                if ctsyncd_talks || now.since(since) < SWITCH_AFTER {
                    // Not yet (see the module header): counted.
                    out.refused.before_switch = 1;
                    self.ctd_refused_past.before_switch += 1;
                    out.result = Err(wire::Error::Malformed);
                    return out;
                }
                self.switch_to_conntrackd(now, src);
                out.switched = Some(Protocol::Conntrackd);
            }
            if let Some(c) = self.ctd.as_mut() {
                let (read, refused) = c.recv(now, datagram, src);
                out.refused = refused;
                if read > 0 {
                    out.protocol = Some(Protocol::Conntrackd);
                } else {
                    out.result = Err(wire::Error::Malformed);
                }
            }
            return out;
        }
        if self.setting == PeerProtocol::Conntrackd {
            // Pinned: anything else is not for us.
            out.refused.bad_header = 1;
            self.ctd_refused_past.bad_header += 1;
            out.result = Err(wire::Error::BadMagic);
            return out;
        }
        let proven_before = self.ct.stats().challenges_answered;
        out.result = self.ct.recv(now, peer, datagram, src);
        if out.result.is_ok() {
            out.protocol = Some(Protocol::Ctsyncd);
            if self.ctd.is_none() {
                self.ctsyncd_alive = Some(now);
                self.ctd_since = None;
                self.stream_hold = None;
            } else {
                self.ctsyncd_heard = Some(now);
                if self.ct.stats().challenges_answered > proven_before {
                    self.switch_to_ctsyncd(src);
                    out.switched = Some(Protocol::Ctsyncd);
                }
            }
        }
        out
    }

    /// A conntrackd datagram carrying ctsyncd's mark: the peer is a
    /// ctsyncd (in `auto`) that speaks conntrackd's protocol. Ours may
    /// talk to it: while we speak ctsyncd's format, this lifts the stream
    /// hold and counts as a live ctsyncd peer (its conntrackd datagrams
    /// switch nothing, it switches to us); while we speak conntrackd's,
    /// the ctsyncd engine may send (its challenge brings both sides back).
    fn heard_marked(&mut self, now: Instant) {
        if self.ctd.is_none() {
            self.ctsyncd_alive = Some(now);
            self.ctd_since = None;
            self.stream_hold = None;
        } else {
            self.ctsyncd_heard = Some(now);
        }
    }

    /// The peer speaks conntrackd's protocol: see the module header.
    fn switch_to_conntrackd(&mut self, now: Instant, src: &dyn Source) {
        let mut c = CtdEngine::new(self.ctd_params, now);
        // Only `auto` comes back to our format (`new` pins the others).
        c.announce();
        for (k, new) in self.ct.drain_keys() {
            c.local_change(k, new);
        }
        c.bulk(src);
        if self.mode != Mode::Alarm {
            c.request_resync();
        }
        self.ctd = Some(c);
        self.ctsyncd_heard = None;
        self.ctd_since = None;
        self.stream_hold = None;
    }

    /// A ctsyncd peer proved itself: back to our format.
    fn switch_to_ctsyncd(&mut self, src: &dyn Source) {
        let Some(mut c) = self.ctd.take() else {
            return;
        };
        for (k, new) in c.drain_keys() {
            self.ct.local_change(k, new);
        }
        self.ctd_past.add(c.stats());
        self.ctd_refused_past.add(c.refused());
        self.ct.bulk(src);
        self.ct.request_resync();
        self.ctsyncd_heard = None;
        self.ctsyncd_alive = None;
    }
}
