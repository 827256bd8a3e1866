//! The engine's send side: the next datagram, built from what waits
//! (`poll_transmit`: the header with its HELLO and capability flags, the
//! messages `tx` fills in, a resync's progress noted, sealed when a key
//! is set), and anti-entropy's messages put on the background queue
//! (`send_digest`: a Prune cut to this link's datagram; a named ask or
//! Prune sent plain while a peer does not say it reads the name, and
//! what waits made plain when such a peer is heard: `heard_flags`).

use super::{Engine, Source, digest, session, tx};
use crate::time::Instant;
use crate::wire::flag::{DIGEST_SUB_FOR, PRUNE_FOR};
use crate::wire::seal::SEAL_OVERHEAD;
use crate::wire::{self, Header, Msg, Writer};

impl Engine {
    // ===== anti-entropy =====

    /// Sends an anti-entropy message (a bounded background queue, after
    /// control messages and before data). A Prune with more key hashes
    /// than this link's datagram holds goes as several, each complete for
    /// its part of the range (anti-entropy builds them for 1472 bytes, and
    /// a link's datagram may be as small as 576). A named ask or Prune
    /// goes plain unless every peer heard says it reads the name
    /// ([`readable`]).
    pub fn send_digest(&mut self, msg: Msg) {
        let max = wire::prune_keep_max(
            self.unsealed_room(self.p.max_datagram)
                .saturating_sub(wire::HEADER_LEN),
        );
        let Some(mut prune) = msg.as_prune() else {
            self.queue_digest(msg);
            return;
        };
        let keep = std::mem::take(&mut prune.keep.0);
        let parts = if keep.len() > max {
            digest::split_prune(prune.lo, prune.hi, &keep, max)
        } else {
            vec![(prune.lo, prune.hi, keep)]
        };
        for (lo, hi, part) in parts {
            self.queue_digest(
                wire::Prune {
                    lo,
                    hi,
                    keep: wire::KeyHashes(part),
                    ..prune.clone()
                }
                .into(),
            );
        }
    }

    fn queue_digest(&mut self, m: Msg) {
        let dropped = self.tx.background(readable(&self.capable, m));
        self.stats.background_dropped += u64::from(dropped);
    }

    /// A proven datagram from `peer` carried the header `flags`. When it
    /// says it reads less than every peer heard did (an older build joined
    /// the link, or a node was downgraded), what waits in the background
    /// queue goes as it reads it; until then it went out as queued, and
    /// the older build counted it malformed and dropped the rest of its
    /// datagram.
    pub(super) fn heard_flags(&mut self, peer: u64, flags: u8) {
        let reads = |c: &session::Capable| {
            [PRUNE_FOR, DIGEST_SUB_FOR].map(|bit| c.all(bit))
        };
        let before = reads(&self.capable);
        self.capable.heard(peer, flags);
        let after = reads(&self.capable);
        if before.iter().zip(&after).any(|(b, a)| *b && !*a) {
            let capable = &self.capable;
            self.tx.map_background(|m| readable(capable, m));
        }
    }

    /// What a datagram of `limit` bytes leaves for header and body: the
    /// nonce and tag go after the body when sealed.
    fn unsealed_room(&self, limit: usize) -> usize {
        if self.sealing.is_some() {
            limit.saturating_sub(SEAL_OVERHEAD)
        } else {
            limit
        }
    }

    // ===== transmit =====

    /// Builds the next datagram into `buf` (at most `max_datagram`
    /// bytes). None when there is nothing to send.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        src: &dyn Source,
        buf: &mut [u8],
    ) -> Option<usize> {
        if !self.tx.is_pending() {
            return None;
        }
        let limit = buf.len().min(self.p.max_datagram);
        let room = self.unsealed_room(limit);
        let hello = if self.mode.get().says_hello() {
            self.handshake.flags_to_send()
        } else {
            0
        };
        let flags = hello | PRUNE_FOR | DIGEST_SUB_FOR;
        let header = Header {
            flags,
            session: self.p.session,
            first_seq: self.tx.next_seq(),
        };
        let Ok(mut w) = Writer::new(&mut buf[..room], header) else {
            return None;
        };
        if let Some(a) = self.answering.as_mut() {
            a.resends(self.stats.retransmitted, self.tx.len());
        }
        let keys = self.tx.len();
        let mode = self.mode.get_mut();
        let room = mode.room(now);
        let awaiting = &mut self.awaiting;
        let msgs = self.tx.fill(
            &mut w,
            src,
            &mut self.stats,
            room,
            |seq, what, gone, stats| {
                if let (tx::Sent::Resync, Some(a)) = (&what, awaiting.as_mut())
                {
                    a.sent_as(seq);
                }
                mode.sent(seq, what, gone, now, stats)
            },
        );
        if let Some(a) = self.answering.as_mut() {
            a.popped(keys - self.tx.len(), self.tx.next_seq().prev());
        }
        if msgs == 0 {
            return None;
        }
        self.stats.msgs_sent += u64::from(msgs);
        self.stats.datagrams_sent += 1;
        self.tx.transmitted(now);
        let len = w.finish();
        match self.sealing.as_mut() {
            None => Some(len),
            // Never fails: the writer left the room, and a counter of
            // 2^64 datagrams is not spent in this universe's lifetime.
            Some(s) => s.sealer.seal(&mut buf[..limit], len).ok(),
        }
    }
}

/// `m` as every peer heard reads it: a `DigestSubFor` or `PruneFor` goes
/// as the plain message while any peer has not said it reads the name (an
/// older build would count it malformed). A plain ask is answered naming
/// its sums' hash, which the asker also keeps; a plain Prune is checked
/// against the latest ask of its bucket.
fn readable(capable: &session::Capable, m: Msg) -> Msg {
    match m {
        Msg::DigestSubFor {
            table,
            bucket,
            sums,
            ..
        } if !capable.all(DIGEST_SUB_FOR) => Msg::DigestSub {
            table,
            bucket,
            sums,
        },
        Msg::PruneFor { .. } if !capable.all(PRUNE_FOR) => match m.as_prune() {
            Some(p) => wire::Prune { ask: None, ..p }.into(),
            None => m,
        },
        m => m,
    }
}
