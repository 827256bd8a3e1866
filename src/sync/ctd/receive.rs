//! The conntrackd-protocol engine's receive side: a datagram's messages
//! read, numbered (FT-FW: HELLO, gaps NACKed, runs ACKed; NOTRACK:
//! counted only; ALARM: data only) and digested (data becomes [`Apply`],
//! a peer's ACK releases and its NACK resends). A peer's report that no
//! conntrackd sends is refused and counted (see the parent's header).

use super::queue::{Ctl, Sent};
use super::rx::{Class, WINDOW};
use super::{CtdEngine, Hello, Refused};
use crate::model::Mode;
use crate::sync::{Apply, Source};
use crate::time::Instant;
use crate::wire::ctd::{self, Body, Message};
use crate::wire::{Seq, ct_key_of, exp_key_of};

impl CtdEngine {
    /// One datagram (or a run of stream messages). Returns how many
    /// messages were read and what was refused in it.
    pub fn recv(
        &mut self,
        now: Instant,
        datagram: &[u8],
        src: &dyn Source,
    ) -> (u64, Refused) {
        let mut read = 0;
        self.in_datagram = Refused::default();
        self.stats.datagrams_recv += 1;
        self.resync_heard = false;
        let mut messages = ctd::messages(datagram, self.p.opts);
        while let Some(m) = messages.next() {
            match m {
                Ok(msg) => {
                    read += 1;
                    self.stats.msgs_recv += 1;
                    self.message(now, msg);
                }
                Err(e) => {
                    self.in_datagram.count(e);
                    self.stats.malformed += 1;
                    match e {
                        ctd::Error::Version(_) => self.stats.bad_version += 1,
                        _ => self.stats.bad_header += 1,
                    }
                    // Its number still counts, as in conntrackd (which
                    // tracks it before decoding): untracked, it was a gap
                    // NACKed after every later message, and the peer
                    // resent the same refused payload under a new number
                    // for as long as the flow lived (conntrackd 1.4.2's
                    // IPv4 NAT attributes on IPv6 flows did that). An
                    // ALIVE in its place moves the tracking and applies
                    // nothing.
                    if let Some(u) = messages.unreadable() {
                        let alive = Message {
                            seq: u.seq,
                            hello: u.hello,
                            hello_back: u.hello_back,
                            body: Body::Alive,
                        };
                        self.message(now, alive);
                    }
                }
            }
        }
        if read > 0 {
            self.heard_at = Some(now);
            if std::mem::take(&mut self.silent_bulk_owed) {
                self.stats.bulks_on_return += 1;
                self.bulk_owed = true;
            }
        }
        if std::mem::take(&mut self.bulk_owed) {
            self.bulk(src);
        }
        let refused = std::mem::take(&mut self.in_datagram);
        self.refused.add(&refused);
        (read, refused)
    }

    fn message(&mut self, now: Instant, msg: Message) {
        match self.p.mode {
            Mode::FtFw => self.ftfw_message(now, msg),
            Mode::NoTrack => {
                let seq = Seq(msg.seq);
                let class = self.rx.classify(seq);
                match class {
                    Class::InSync => {}
                    Class::After { from, to } => {
                        self.stats.lost += u64::from(to - from) + 1;
                    }
                    // Applied all the same (conntrackd does).
                    Class::Before => self.stats.before += 1,
                    // Applied too: conntrackd's NOTRACK applies whatever
                    // the number, and a restarted peer numbers from its
                    // clock, far from its last life's (its StartupResync
                    // RESYNC came first and was lost). The tracking
                    // moves once a second message follows it (`rx`).
                    Class::OutOfWindow => self.stats.out_of_window += 1,
                }
                if class != Class::OutOfWindow {
                    self.rx.update(seq);
                }
                match msg.body {
                    Body::Ack { .. } | Body::Nack { .. } => {
                        self.refuse_header();
                    }
                    b => self.digest(now, b),
                }
            }
            Mode::Alarm => {
                // conntrackd's ALARM reads data only: any flag is
                // ignored.
                if msg.body.is_data() && !msg.hello && !msg.hello_back {
                    self.digest(now, msg.body);
                }
            }
        }
    }

    fn ftfw_message(&mut self, now: Instant, msg: Message) {
        let seq = Seq(msg.seq);
        // Only once we said HELLO (conntrackd's `HELLO_INIT` ignores a
        // HELLO_BACK): one that comes first answers an earlier life's
        // HELLO, and taken as ours our first numbers went without HELLO,
        // which a conntrackd tracking that life drops as "before".
        if msg.hello_back
            && self.hello == Hello::Say
            && self.hello_since.is_some()
        {
            self.hello = Hello::Done;
            self.resend_what_went_with_hello();
            if self.resync_wanted.take().is_some() {
                self.tx.control(Ctl::Resync);
            }
        }
        let mut resent = false;
        let class = if msg.hello {
            self.say_hello_back = true;
            // The first HELLO of a handshake (or one whose number makes
            // no sense after the last) restarts the tracking; the ones
            // after it are numbered on from it.
            let normal = self.rx.classify(seq);
            // conntrackd resends a control message it kept (ACK, NACK,
            // RESYNC) with the flags it first went with: one of its
            // handshake, NACKed after it, says HELLO again, numbered in
            // sequence. A restart numbers from its clock instead.
            resent = !self.peer_hello
                && normal == Class::InSync
                && self.rx.last().is_some()
                && matches!(
                    msg.body,
                    Body::Ack { .. } | Body::Nack { .. } | Body::Resync
                );
            if resent
                || (self.peer_hello
                    && matches!(normal, Class::InSync | Class::After { .. }))
            {
                normal
            } else {
                if self.rx.last().is_some() {
                    // A restarted peer knows nothing: conntrackd waits
                    // for its RESYNC; we send our cache at once. Our
                    // ACKs and NACKs waiting name its old numbers, which
                    // its new ones may reach: sent (or resent when passed
                    // over), one would release what we never got.
                    self.stats.peer_restarts += 1;
                    self.tx.drop_reports();
                    self.rs.drop_reports();
                    self.bulk_owed = true;
                }
                self.rx.hello(seq);
                Class::InSync
            }
        } else {
            self.rx.classify(seq)
        };
        self.peer_hello = msg.hello && !resent;
        let starts_series = msg.body.is_data();
        match class {
            Class::Before => {
                self.stats.before += 1;
                return;
            }
            Class::OutOfWindow => {
                self.stats.out_of_window += 1;
                return;
            }
            Class::After { from, to } => {
                self.stats.lost += u64::from(to - from) + 1;
                self.query.loss(now);
                self.digest(now, msg.body);
                for c in self.rx.gap(from, to, seq) {
                    self.tx.control(c);
                }
            }
            Class::InSync => {
                self.digest(now, msg.body);
                if let Some(ack) = self.rx.in_sync(seq) {
                    self.tx.control(ack);
                }
            }
        }
        if starts_series {
            self.query.data(now);
        }
        self.rx.update(seq);
    }

    /// What one accepted message does.
    fn digest(&mut self, now: Instant, body: Body) {
        match body {
            Body::CtNew(ct) => {
                self.applies.push_back(Apply::Ct { ct, new: true })
            }
            Body::CtUpd(ct) => {
                self.applies.push_back(Apply::Ct { ct, new: false })
            }
            Body::CtDel(ct) => {
                self.applies.push_back(Apply::CtDel(ct_key_of(&ct)))
            }
            Body::ExpNew(exp) => {
                self.applies.push_back(Apply::Exp { exp, new: true })
            }
            Body::ExpUpd(exp) => {
                self.applies.push_back(Apply::Exp { exp, new: false })
            }
            Body::ExpDel(exp) => {
                self.applies.push_back(Apply::ExpDel(exp_key_of(&exp)))
            }
            Body::Resync => {
                self.stats.resyncs_requested_by_peer += 1;
                if !std::mem::replace(&mut self.resync_heard, true) {
                    log::info!("resync requested by other node");
                    log::info!("sending bulk update");
                }
                self.bulk_owed = true;
            }
            Body::Alive => {}
            Body::Ack { from, to } | Body::Nack { from, to }
                if !self.ftfw() || Seq(to) < Seq(from) =>
            {
                self.refuse_header();
            }
            // An ACK of numbers we never sent is corrupt or forged: read,
            // it released what the peer never got. A NACK that reaches
            // past them is a ctsyncd's tail query (`tail`) when it starts
            // among them, or right after, and spans at most [`WINDOW`]:
            // what we sent in its range is sent again, as conntrackd does.
            // Any other is corrupt or forged (a conntrackd's NACK ends
            // before a number it got from us).
            Body::Ack { to, .. } if Seq(to) >= self.next_seq => {
                self.stats.out_of_window += 1;
            }
            Body::Nack { from, to }
                if Seq(to) >= self.next_seq
                    && (Seq(from) > self.next_seq
                        || Seq(to) - Seq(from) > WINDOW) =>
            {
                self.stats.out_of_window += 1;
            }
            Body::Ack { from, to } if self.ack_too_wide(Seq(from), Seq(to)) => {
                self.stats.out_of_window += 1;
            }
            // A conntrackd NACKs a gap after a number it got from us, so
            // never from before our first: read, one far back resent
            // everything held. It NACKs any gap, however wide (reference
            // §4.7: exp_seq to the number before the message received).
            Body::Nack { from, .. } if self.before_our_numbers(Seq(from)) => {
                self.stats.out_of_window += 1;
            }
            // While we say HELLO a conntrackd takes each of our messages
            // as in sequence whatever its number (reference §4.7): once
            // data went so, its ACK may span what it lost without a NACK.
            // It releases nothing; that data goes again at the answer.
            Body::Ack { .. }
                if self.hello == Hello::Say && self.last_data_seq.is_some() => {
            }
            Body::Ack { from, to } => {
                let (from, to) = (Seq(from), Seq(to));
                self.rs.take_range(from, to);
                if self.acked_upto.is_none_or(|u| to > u) {
                    self.acked_upto = Some(to);
                }
            }
            Body::Nack { from, to } => {
                let mut resent = false;
                for s in self.rs.take_range(Seq(from), Seq(to)) {
                    resent = true;
                    self.requeue(s);
                }
                if resent {
                    self.probe.loss(now);
                }
            }
        }
    }

    /// A message read but refused (a control message no conntrackd sends
    /// in this mode, an ACK or NACK ending before it starts): counted as
    /// conntrackd counts a `MSG_BAD`, and in what the datagram refused
    /// (`-s link` adds that up).
    fn refuse_header(&mut self) {
        self.in_datagram.bad_header += 1;
        self.stats.bad_header += 1;
        self.stats.malformed += 1;
    }

    /// Whether `s` lies before our first number, where a peer's report
    /// starts only in the case [`CtdEngine::ack_too_wide`] keeps
    /// (undecidable once half the number space went by: then never).
    fn before_our_numbers(&self, s: Seq) -> bool {
        self.numbered < 1 << 31 && s < Seq(self.p.first_seq)
    }

    /// Whether an ACK of `from..=to` spans more than a conntrackd
    /// acknowledges: a run of at most its `ACKWindowSize` messages
    /// (reference §4.7; 300 by default, and any up to 2^18 + 1 keeps
    /// `to - from` within [`WINDOW`]), never before our first number
    /// but for the run it opened before our HELLO: it keeps that run
    /// when the HELLO is numbered after its start (§4.7), so its first
    /// ACK to us may start in our previous life (we restarted). A
    /// corrupt or forged `from` far back released everything held up to
    /// `to`, what the peer NACKed with it.
    fn ack_too_wide(&self, from: Seq, to: Seq) -> bool {
        let before_us = self.before_our_numbers(from);
        if before_us
            && self.acked_upto.is_none()
            && !self.before_our_numbers(to)
        {
            return false;
        }
        before_us || to - from > WINDOW
    }

    /// The peer answered our HELLO: the data we sent while saying it
    /// (the patience ran out) goes again, now numbered as the peer
    /// checks numbers. Each message saying HELLO was taken as in
    /// sequence, so one lost among them was never NACKed, and the
    /// peer's ACKs spanned it.
    fn resend_what_went_with_hello(&mut self) {
        if let Some(upto) = self.last_data_seq {
            for k in self.rs.take_keys_upto(upto) {
                self.requeue(Sent::Key(k));
            }
        }
    }

    pub(super) fn requeue(&mut self, s: Sent) {
        self.stats.retransmitted += 1;
        match s {
            Sent::Key(k) => {
                self.tx.key(k, false, &mut self.stats);
            }
            Sent::Ctl(c) => self.tx.control(c),
        }
    }
}
