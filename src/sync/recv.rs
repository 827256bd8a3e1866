//! The engine's receive side: a datagram from the link, opened when a
//! key is set, checked against its session's proof (held until the
//! challenge is answered, then replayed), its messages handed to the mode
//! and what they change queued for the external cache; a RESYNC request
//! answered with a bulk; refusals counted and reported.

use super::gate::Unasked;
use super::session::Contact;
use super::{
    Answer, Apply, DIGESTS_WAITING, Engine, Source, ready, report_refused, rx,
};
use crate::time::Instant;
use crate::wire::{self, Msg, Seq};

impl Engine {
    /// Handles one datagram from `peer` (an id the daemon derives from the
    /// sender's address). A resync request is answered from `src`.
    pub fn recv(
        &mut self,
        now: Instant,
        peer: u64,
        datagram: &[u8],
        src: &dyn Source,
    ) -> Result<(), wire::Error> {
        let Some(sealing) = self.sealing.as_mut() else {
            return self.recv_plain(now, peer, datagram, src);
        };
        let mut plain = std::mem::take(&mut sealing.scratch);
        let gate = &self.gate;
        // The counter is checked whatever `peer` is: any address may
        // carry a capture (see `sealing`).
        let opened =
            sealing.open(now, datagram, &mut plain, |s| gate.believes(s));
        let r = match opened {
            Ok(origin) => {
                self.opened = Some(origin);
                let r = self.recv_plain(now, peer, &plain, src);
                self.opened = None;
                r
            }
            Err(e) => {
                self.refused(now, e);
                Err(e)
            }
        };
        if let Some(s) = self.sealing.as_mut() {
            s.scratch = plain;
        }
        r
    }

    /// A plain datagram: received as such, or opened.
    fn recv_plain(
        &mut self,
        now: Instant,
        peer: u64,
        datagram: &[u8],
        src: &dyn Source,
    ) -> Result<(), wire::Error> {
        let (header, body) = match wire::read(datagram) {
            Ok(v) => v,
            Err(e) => {
                self.count_bad_datagram(e);
                return Err(e);
            }
        };
        // A held datagram replayed after its proof was counted as it came.
        let fresh = u64::from(!self.replaying);
        self.answered_in_datagram = false;
        self.stats.datagrams_recv += fresh;
        let session = header.session;
        let mut proven = self.gate.is_confirmed(peer, session);
        if proven {
            self.handshake.received(header.flags);
            self.heard_flags(peer, header.flags);
            self.mode.get_mut().heard(now, peer, session);
            self.bulk_if_owed(src);
        }
        let out_of_window = self.stats.out_of_window;
        let mut seq = header.first_seq;
        let mut malformed = None;
        for msg in wire::messages(body) {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    self.stats.malformed += fresh;
                    malformed = Some(e);
                    break;
                }
            };
            self.stats.msgs_recv += fresh;
            match msg {
                // A held datagram's challenge was answered when it came.
                Msg::Challenge { .. } | Msg::Response { .. }
                    if self.replaying => {}
                Msg::Challenge { nonce } => {
                    if self.gate.may_answer(now, peer, session) {
                        self.answer_challenge(nonce);
                    } else {
                        self.stats.answers_held += 1;
                    }
                }
                Msg::Response { echo, from, next } => {
                    let answer = Answer { echo, from, next };
                    proven |= self.proven(now, peer, session, answer, src);
                }
                // Until the session is proven its messages change nothing.
                _ if !proven => {
                    if msg.is_data() {
                        seq = seq.next();
                    }
                }
                _ if msg.is_data() => {
                    let s = seq;
                    seq = seq.next();
                    let (mode, mut cx) = self.cx(now);
                    if mode.data(peer, s, &mut cx) {
                        match msg {
                            Msg::Resync => self.answer_resync(s, src),
                            m => self.apply(m),
                        }
                    }
                }
                Msg::Synced { resync } => self.synced(resync),
                // Anti-entropy is the node's business (it holds the caches).
                Msg::DigestTop { .. }
                | Msg::DigestSub { .. }
                | Msg::Prune { .. }
                | Msg::PruneFor { .. }
                | Msg::DigestSubFor { .. } => {
                    if self.digests.len() >= DIGESTS_WAITING {
                        self.digests.pop_front();
                        self.stats.background_dropped += 1;
                    }
                    self.digests.push_back(msg);
                }
                _ => {
                    let (mode, mut cx) = self.cx(now);
                    mode.control(peer, msg, &mut cx);
                }
            }
        }
        if proven {
            // What was read of a report counts, even if its end was cut.
            let (mode, mut cx) = self.cx(now);
            mode.datagram_end(&mut cx);
            self.tell_synced(false);
        }
        // An unproven session, or numbers out of the window from a proven
        // one: ask the sender to prove itself (its answer re-anchors).
        // Whatever the datagram ends with: what came before a message we
        // cannot read (a newer build's kind) counts.
        if !proven || self.stats.out_of_window != out_of_window {
            self.challenge(now, peer, session);
        }
        if !proven {
            self.stats.unconfirmed += 1;
            self.gate.hold(peer, session, header.first_seq, datagram);
        }
        match malformed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Believes `peer`'s `session` without a challenge (tests).
    #[cfg(test)]
    pub(crate) fn trust(&mut self, peer: u64, session: u32) {
        self.gate.trust(peer, session);
    }

    fn challenge(&mut self, now: Instant, peer: u64, session: u32) {
        let expecting = self.mode.get().expects(peer);
        match self.gate.challenge(now, peer, session, expecting) {
            Ok(nonce) => {
                self.stats.challenges_sent += 1;
                self.tx.handshake(Msg::Challenge { nonce });
            }
            Err(Unasked::Held) => self.stats.challenges_held += 1,
            Err(Unasked::TooSoon) => {}
        }
    }

    /// Echoes a peer's nonce with where our numbering stands (within the
    /// gate's budget: see `gate`).
    fn answer_challenge(&mut self, nonce: u64) {
        self.mode.get_mut().challenged();
        let next = self.tx.next_seq();
        let from = self.mode.get().resume_from().unwrap_or(next);
        self.tx.handshake(Msg::Response {
            echo: nonce,
            from,
            next,
        });
    }

    /// A response from `peer`'s `session`; true when it proves the session
    /// (a restart when another one was proven before).
    fn proven(
        &mut self,
        now: Instant,
        peer: u64,
        session: u32,
        Answer { echo, from, next }: Answer,
        src: &dyn Source,
    ) -> bool {
        let Some(proof) = self.gate.answer(now, peer, session, echo) else {
            return false;
        };
        self.stats.challenges_answered += 1;
        // The first tail after a start is then probed on the link's
        // timeout, not the default one (50 ms).
        self.mode.get_mut().round_trip_sample(proof.round_trip);
        if let (Some(s), Some(origin)) = (self.sealing.as_mut(), self.opened) {
            s.proven(session, origin);
        }
        // A session moved from another address is no restart: what we
        // track of it comes along, and numbers it already brought stay
        // late.
        let moved = proof.moved_from.is_some();
        if let Some(from) = proof.moved_from {
            self.mode.get_mut().moved(from, peer);
        }
        let contact = self.mode.get_mut().heard(now, peer, session);
        if !moved
            && (contact == Contact::Restarted
                || proof.before.is_some_and(|b| b != session))
        {
            self.stats.peer_restarts += 1;
            let (mode, mut cx) = self.cx(now);
            mode.peer_restarted(&mut cx);
            self.tx.forget_reports();
            // Its new session knows nothing of a request we wait on.
            if self.awaiting.is_some() {
                self.tx.request_resync();
            }
        }
        self.bulk_if_owed(src);
        // Sealed, what the session said before its proof is not applied.
        let first_held = match self.sealing {
            Some(_) => None,
            None => proof.first_held,
        };
        let same = proof.before == Some(session) || moved;
        // Moved, its tracking is the proven session's own (what it holds
        // past the answer's `next` overtook the answer): kept, as if
        // asked before any of it came.
        let expecting = if moved { Some(next) } else { proof.expecting };
        self.reanchor(peer, same, from, next, expecting, first_held);
        if self.sealing.is_some() {
            self.replay_held_sealed(&proof.held, src);
            let (mode, mut cx) = self.cx(now);
            mode.control(peer, Msg::Alive { next }, &mut cx);
            return true;
        }
        // What the session said before its proof, in order, then the tail
        // we never saw (ALIVE's rule: NACKed in FT-FW).
        self.replaying = true;
        // Held datagrams are plain (opened, and their counters accepted,
        // when they came).
        for (_, d) in &proof.held {
            let _ = self.recv_plain(now, peer, d, src);
        }
        self.replaying = false;
        let (mode, mut cx) = self.cx(now);
        mode.control(peer, Msg::Alive { next }, &mut cx);
        true
    }

    /// Where our tracking of `peer` resumes once its answer proved it.
    /// A new session (or a restarted one): at its oldest resendable
    /// number, or the first held one if older.
    ///
    /// A session proven again (its numbers left the window, or an ALIVE
    /// came behind them) whose tracking is near its `next` keeps it:
    /// re-anchoring at its oldest unacknowledged number would only ask for
    /// what we have. Tracking ahead of `next` is kept too when it was not
    /// ahead yet as we asked (`expecting`): what came since was sent after
    /// the answer, which it overtook (each number before it arrived, or
    /// was NACKed and resent under a new number, so an original of it
    /// arriving late is stale: moved back, the tracking took one that
    /// reverted a delete which had arrived; `tests/firewall_sim.rs`, lossy
    /// seeds 23 and 1026). Ahead already as we asked, it holds numbers the
    /// peer had not used (forged or corrupt): it goes back to `next`.
    ///
    /// Never further back than [`rx::WINDOW`] before `next` (see
    /// [`within_window`]).
    fn reanchor(
        &mut self,
        peer: u64,
        same: bool,
        from: Seq,
        next: Seq,
        expecting: Option<Seq>,
        first_held: Option<Seq>,
    ) {
        match self.mode.get().expects(peer) {
            Some(e) if same && e <= next && next - e <= rx::WINDOW => {}
            Some(e) if same && e > next && e - next <= rx::WINDOW => {
                if expecting.is_none_or(|asked| asked > next) {
                    self.mode.get_mut().anchor(peer, next, None);
                }
            }
            _ => {
                let from = within_window(from, next);
                let first_held = first_held.map(|h| within_window(h, next));
                self.mode.get_mut().anchor(peer, from, first_held);
            }
        }
    }

    /// With a key, what a session said before its proof may be a capture
    /// replayed at a node that never saw it (a restarted one): its state
    /// is not applied. FT-FW resends what is missing (from the current
    /// state); a mode without resends asks for a resync instead. A held
    /// RESYNC request is still answered: a replayed one costs one bulk to
    /// a key holder, a lost one would leave the peer empty.
    fn replay_held_sealed(
        &mut self,
        held: &[(Seq, Vec<u8>)],
        src: &dyn Source,
    ) {
        let mut resync = None;
        let mut skipped = false;
        for (_, d) in held {
            let Ok((header, body)) = wire::read(d) else {
                continue;
            };
            let mut seq = header.first_seq;
            for msg in wire::messages(body).map_while(Result::ok) {
                if !msg.is_data() {
                    continue;
                }
                match msg {
                    Msg::Resync => resync = Some(seq),
                    _ => skipped = true,
                }
                seq = seq.next();
            }
        }
        if let Some(s) = resync {
            self.answer_resync(s, src);
        }
        let resends = self.mode.get().resume_from().is_some()
            || self.mode.get().resend_queue().is_some();
        if skipped && !resends {
            self.request_resync();
        }
    }

    fn count_bad_datagram(&mut self, e: wire::Error) {
        match e {
            wire::Error::Version(v) => {
                self.stats.bad_version += 1;
                if !self.version_warned {
                    self.version_warned = true;
                    // Only a node without a key reads a sealed datagram's
                    // version: the peer has a key, not another build.
                    if v == wire::SEALED_VERSION {
                        log::warn!(
                            "peer seals its datagrams (AuthenticationKeyFile) and this node has no key; ignoring its datagrams"
                        );
                    } else {
                        log::warn!(
                            "peer speaks wire version {v}, this build speaks {}; ignoring its datagrams",
                            wire::VERSION
                        );
                    }
                }
            }
            wire::Error::Auth => self.stats.auth_failed += 1,
            _ => self.stats.bad_header += 1,
        }
        self.stats.malformed += 1;
    }

    /// A datagram a keyed engine refused before reading it.
    fn refused(&mut self, now: Instant, e: wire::Error) {
        match e {
            wire::Error::Replayed => self.stats.replayed += 1,
            wire::Error::Unsealed => self.stats.unsealed += 1,
            // Bad tags, and sealed datagrams of another version or
            // framing: counted as before.
            _ => self.count_bad_datagram(e),
        }
        let report = self.sealing.as_mut().and_then(|s| s.report.note(now, e));
        if let Some(r) = report {
            report_refused(r);
        }
    }

    /// A peer heard again after a silence during which the resend queue
    /// gave up what it sent (`ftfw::SILENT_HOLD`) gets the whole cache.
    fn bulk_if_owed(&mut self, src: &dyn Source) {
        if self.mode.get_mut().take_owed_bulk() {
            self.stats.bulks_on_return += 1;
            log::info!("peer heard again after a silence: sending bulk update");
            self.bulk(src);
        }
    }

    /// The peer's RESYNC numbered `seq`: a bulk, and a word once it is
    /// delivered (`ready`).
    fn answer_resync(&mut self, seq: Seq, src: &dyn Source) {
        if !self.mode.get().answers_resync() {
            return;
        }
        self.stats.resyncs_requested_by_peer += 1;
        if !std::mem::replace(&mut self.answered_in_datagram, true) {
            log::info!("resync requested by other node");
            log::info!("sending bulk update");
            self.bulk(src);
        }
        let (queued, resends) = (self.tx.len(), self.stats.retransmitted);
        match self.answering.as_mut() {
            Some(a) => a.also(seq, queued),
            None => {
                self.answering =
                    Some(ready::Answering::new(seq, queued, resends));
            }
        }
    }

    /// The peer says the resync numbered `resync` is complete.
    fn synced(&mut self, resync: Seq) {
        if self
            .awaiting
            .as_ref()
            .is_some_and(|a| a.answered_by(resync))
        {
            self.awaiting = None;
            self.stats.resyncs_complete += 1;
            log::info!("resync complete: the other node's state is here");
        }
    }

    fn apply(&mut self, msg: Msg) {
        if let Some(a) = Apply::from_msg(msg) {
            self.applies.push_back(a);
        }
    }
}

/// Where to anchor for `at` when the peer's next number is `next`: `at`,
/// unless it is more than [`rx::WINDOW`] behind `next`. A peer with more
/// unacknowledged than the window (a large `ResendQueueSize` and a long
/// outage) answers with its oldest number: anchored there, its `next` and
/// everything after it would be out of the window, refused and challenged
/// again, for good. Anchored a window behind, the ALIVE that follows the
/// proof reports a gap within the window; what is older is given up
/// here, and the sender resends it under new numbers (its answered probe
/// or its timed resends).
fn within_window(at: Seq, next: Seq) -> Seq {
    if at <= next && next - at > rx::WINDOW {
        Seq(next.0.wrapping_sub(rx::WINDOW))
    } else {
        at
    }
}
