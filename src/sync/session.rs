//! Who we talk to: the HELLO flags of our own session, and the table of
//! peers by session id, which notices when a proven session replaces
//! another (a restart). Which sessions are proven is the gate's
//! (`gate`).
//!
//! Each datagram names its sender's session (random per daemon start). A
//! session we have not seen from that peer before means it restarted (or
//! is new): whatever we tracked for it is void. The table is bounded: the
//! peer heard least recently makes room for a new one.

use std::collections::HashMap;

use crate::time::Instant;
use crate::wire::flag;

/// Most peers tracked at once (the least recently heard is forgotten).
pub(crate) const MAX_PEERS: usize = 8;

/// Our side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hello {
    /// We (re)started: every datagram says HELLO until a HELLO_BACK.
    Sent,
    /// The peer answered; we stop saying HELLO.
    Answered,
}

/// The peer's side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloBack {
    /// Nothing to answer.
    NotOwed,
    /// The peer said HELLO: our next datagram answers HELLO_BACK.
    Owed,
}

/// Both sides of the HELLO handshake (conntrackd's `hello_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handshake {
    pub(crate) hello: Hello,
    pub(crate) back: HelloBack,
}

impl Handshake {
    pub(crate) fn new() -> Self {
        Handshake {
            hello: Hello::Sent,
            back: HelloBack::NotOwed,
        }
    }

    /// A datagram with header `flags` arrived.
    pub(crate) fn received(&mut self, flags: u8) {
        if flags & flag::HELLO_BACK != 0 {
            self.hello = Hello::Answered;
        }
        if flags & flag::HELLO != 0 {
            self.back = HelloBack::Owed;
        }
    }

    /// The flags of the next datagram; it pays an owed HELLO_BACK.
    pub(crate) fn flags_to_send(&mut self) -> u8 {
        let mut flags = 0;
        if self.hello == Hello::Sent {
            flags |= flag::HELLO;
        }
        if self.back == HelloBack::Owed {
            flags |= flag::HELLO_BACK;
            self.back = HelloBack::NotOwed;
        }
        flags
    }
}

/// What peers said they can do (the capability bits in their header
/// flags), as their last proven datagram said: a message only some
/// could read goes out only when every peer heard can (a multicast
/// link may carry several, and an older build counts what it cannot
/// read as malformed, dropping the rest of that datagram). At most
/// [`MAX_PEERS`]; a peer that was never heard again keeps its say (the
/// cautious way, when it said no).
#[derive(Debug, Clone, Default)]
pub(crate) struct Capable {
    /// Most recently heard first.
    peers: std::collections::VecDeque<(u64, u8)>,
}

impl Capable {
    /// `peer`'s last proven datagram carried the header flags `can`.
    pub(crate) fn heard(&mut self, peer: u64, can: u8) {
        // Every proven datagram comes here: the usual case, the peer
        // heard last, touches nothing else.
        if let Some(front) = self.peers.front_mut()
            && front.0 == peer
        {
            front.1 = can;
            return;
        }
        if let Some(i) = self.peers.iter().position(|(p, _)| *p == peer) {
            self.peers.remove(i);
        } else if self.peers.len() >= MAX_PEERS {
            self.peers.pop_back();
        }
        self.peers.push_front((peer, can));
    }

    /// Whether every peer heard said `bit` (and one was heard).
    pub(crate) fn all(&self, bit: u8) -> bool {
        !self.peers.is_empty()
            && self.peers.iter().all(|(_, can)| can & bit != 0)
    }
}

/// How a datagram's session relates to what we know of its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contact {
    /// The session we know.
    Known,
    /// A peer we did not know (or had forgotten).
    First,
    /// A known peer with a new session: it restarted.
    Restarted,
}

/// One peer: its session, when we last heard it, and the mode's receive
/// state `R` for it.
#[derive(Debug, Clone)]
pub(crate) struct Peer<R> {
    session: u32,
    heard: Instant,
    pub(crate) rx: R,
}

/// The peers by id (the daemon derives the id from the sender address).
#[derive(Debug, Clone)]
pub(crate) struct Peers<R> {
    map: HashMap<u64, Peer<R>>,
}

impl<R> Peers<R> {
    pub(crate) fn new() -> Self {
        Peers {
            map: HashMap::new(),
        }
    }

    /// Records a datagram from peer `id` with `session` at `now`. A new
    /// session starts from `fresh()` receive state.
    pub(crate) fn heard(
        &mut self,
        now: Instant,
        id: u64,
        session: u32,
        fresh: impl FnOnce() -> R,
    ) -> Contact {
        let contact = match self.map.get(&id) {
            Some(p) if p.session == session => Contact::Known,
            Some(_) => Contact::Restarted,
            None => Contact::First,
        };
        if contact != Contact::Known {
            // A restart replaces its own entry: only a new peer needs room.
            if contact == Contact::First
                && self.map.len() >= MAX_PEERS
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, p)| p.heard)
                    .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
            let rx = fresh();
            self.map.insert(
                id,
                Peer {
                    session,
                    heard: now,
                    rx,
                },
            );
        }
        if let Some(p) = self.map.get_mut(&id) {
            p.heard = now;
        }
        contact
    }

    /// Peer `from`'s session was proven at `to` (see
    /// `gate::Proven::moved_from`): its entry, tracking included, is
    /// `to`'s now (replacing any `to` had).
    pub(crate) fn moved(&mut self, from: u64, to: u64) {
        if let Some(p) = self.map.remove(&from) {
            self.map.insert(to, p);
        }
    }

    /// The receive state of peer `id`, to read.
    pub(crate) fn rx(&self, id: u64) -> Option<&R> {
        self.map.get(&id).map(|p| &p.rx)
    }

    /// The receive state of peer `id`.
    pub(crate) fn rx_mut(&mut self, id: u64) -> Option<&mut R> {
        self.map.get_mut(&id).map(|p| &mut p.rx)
    }

    /// Every peer's receive state.
    pub(crate) fn rx_all(&mut self) -> impl Iterator<Item = &mut R> {
        self.map.values_mut().map(|p| &mut p.rx)
    }

    /// True when some peer was heard less than `within` before `now`.
    pub(crate) fn any_heard(
        &self,
        now: Instant,
        within: std::time::Duration,
    ) -> bool {
        self.map.values().any(|p| now.since(p.heard) < within)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_capability_counts_only_when_every_peer_heard_has_it() {
        const A: u8 = 0x08;
        const B: u8 = 0x10;
        let mut c = Capable::default();
        assert!(!c.all(A), "nobody heard");
        c.heard(1, A | B);
        assert!(c.all(A) && c.all(B));
        c.heard(2, A);
        assert!(c.all(A), "both read A");
        assert!(!c.all(B), "an older build on the link");
        c.heard(1, A | B);
        assert!(!c.all(B), "peer 2 said no and was not heard since");
        c.heard(2, A | B);
        assert!(c.all(B), "peer 2 upgraded");
        // Bounded: the peer heard least recently makes room.
        c.heard(3, 0);
        assert!(!c.all(A));
        for p in 10..10 + MAX_PEERS as u64 {
            c.heard(p, A | B);
        }
        assert!(c.all(A) && c.all(B), "peer 3 forgotten");
        assert_eq!(c.peers.len(), MAX_PEERS);
    }

    #[test]
    fn hello_is_said_until_answered_and_answered_once() {
        let mut a = Handshake::new();
        assert_eq!(a.flags_to_send(), flag::HELLO);
        a.received(flag::HELLO);
        assert_eq!(a.flags_to_send(), flag::HELLO | flag::HELLO_BACK);
        assert_eq!(a.flags_to_send(), flag::HELLO, "answered once");
        a.received(flag::HELLO_BACK);
        assert_eq!(a.hello, Hello::Answered);
        assert_eq!(a.flags_to_send(), 0);
    }

    #[test]
    fn a_new_session_is_a_restart_and_the_table_is_bounded() {
        let mut peers: Peers<u32> = Peers::new();
        assert_eq!(
            peers.heard(Instant::from_millis(0), 1, 10, || 0),
            Contact::First
        );
        *peers.rx_mut(1).unwrap() = 5;
        assert_eq!(
            peers.heard(Instant::from_millis(1), 1, 10, || 0),
            Contact::Known
        );
        assert_eq!(peers.rx_mut(1), Some(&mut 5));
        assert_eq!(
            peers.heard(Instant::from_millis(2), 1, 11, || 0),
            Contact::Restarted
        );
        assert_eq!(peers.rx_mut(1), Some(&mut 0), "tracking starts over");
        for id in 2..=MAX_PEERS as u64 + 1 {
            peers.heard(Instant::from_millis(10 + id), id, 1, || 0);
        }
        assert_eq!(peers.map.len(), MAX_PEERS);
        assert!(peers.rx_mut(1).is_none(), "least recently heard is gone");
    }

    #[test]
    fn a_restart_in_a_full_table_forgets_no_other_peer() {
        // The restarted peer's entry is replaced in place: the table does
        // not grow, so nobody need make room.
        let mut peers: Peers<u32> = Peers::new();
        for id in 1..=MAX_PEERS as u64 {
            peers.heard(Instant::from_millis(id), id, 1, || 0);
            *peers.rx_mut(id).unwrap() = 7;
        }
        let last = MAX_PEERS as u64;
        assert_eq!(
            peers.heard(Instant::from_millis(100), last, 2, || 0),
            Contact::Restarted
        );
        assert_eq!(peers.rx_mut(last), Some(&mut 0));
        for id in 1..last {
            assert_eq!(peers.rx_mut(id), Some(&mut 7), "peer {id} kept");
        }
    }
}
