//! The contract every sync mode meets (conntrackd's `struct sync_mode`),
//! and the one place the engine picks the mode.
//!
//! The engine owns what all modes share (the transmit path, the
//! handshake, the statistics) and asks its mode, through [`SyncMode`],
//! what each event means: whether a data message is applied, what a
//! control message does, what runs each tick, what a sent message leaves
//! behind.

use super::alarm::Alarm;
use super::ftfw::{FtFw, ResendQueue};
use super::notrack::NoTrack;
use super::session::Contact;
use super::tx::{Sent, Transmit};
use super::{Key, Params, RoundTrip, Source, Stats};
use crate::model::Mode;
use crate::time::Instant;
use crate::wire::{Msg, Seq};

/// What a mode may touch besides its own state.
pub(crate) struct Cx<'a> {
    pub(crate) now: Instant,
    pub(crate) stats: &'a mut Stats,
    pub(crate) tx: &'a mut Transmit,
}

/// One replication mode.
pub(crate) trait SyncMode {
    /// A datagram from `peer`, of `session`, arrived at `now`.
    fn heard(&mut self, now: Instant, peer: u64, session: u32) -> Contact;

    /// A known peer restarted: it knows nothing of our old numbers, and
    /// may lack what it never acknowledged.
    fn peer_restarted(&mut self, _cx: &mut Cx<'_>) {}

    /// Peer `from`'s session was proven at `to`: what is tracked of it
    /// is `to`'s now.
    fn moved(&mut self, from: u64, to: u64);

    /// Data message number `seq` from `peer`; true to apply it.
    fn data(&mut self, peer: u64, seq: Seq, cx: &mut Cx<'_>) -> bool;

    /// A control message (ACK, NACK, ALIVE) from `peer`.
    fn control(&mut self, peer: u64, msg: Msg, cx: &mut Cx<'_>);

    /// Every message of a datagram from a proven peer was handled: a
    /// report comes in several messages (an ACK or NACK per range), and
    /// what it says as a whole is known only now.
    fn datagram_end(&mut self, _cx: &mut Cx<'_>) {}

    /// The periodic work, once per [`super::ALIVE_INTERVAL`].
    fn tick(&mut self, now: Instant, src: &dyn Source, cx: &mut Cx<'_>);

    /// When [`SyncMode::wake`] wants to run between ticks (FT-FW's tail
    /// probe), if ever.
    fn wake_at(&self) -> Option<Instant> {
        None
    }

    /// The time [`SyncMode::wake_at`] gave has come.
    fn wake(&mut self, _now: Instant, _cx: &mut Cx<'_>) {}

    /// The node's inputs paused at `now` (nothing new for a moment): the
    /// likely end of a burst. What it sends at `now` follows the call.
    fn paused(&mut self, _now: Instant) {}

    /// Data message `seq` went out at `now` (`gone`: a DEL, the key's
    /// entry is no longer cached).
    fn sent(
        &mut self,
        _seq: Seq,
        _what: Sent,
        _gone: bool,
        _now: Instant,
        _: &mut Stats,
    ) {
    }

    /// How many more data messages may go out at `now` before some are
    /// acknowledged (None: no bound). What is left waits in the transmit
    /// queue, where changes to one entry coalesce.
    fn room(&self, _now: Instant) -> Option<usize> {
        None
    }

    /// Whether the peer, heard again, is owed a bulk update: what was
    /// sent while it was silent was not kept for it (asked once).
    fn take_owed_bulk(&mut self) -> bool {
        false
    }

    /// `peer` proved its session (a [`Msg::Response`]): resume its
    /// tracking at `from`, the oldest number it can resend, or at the
    /// first of the datagrams held until the proof.
    fn anchor(&mut self, _peer: u64, _from: Seq, _first_held: Option<Seq>) {}

    /// The number expected next from `peer`, if any.
    fn expects(&self, _peer: u64) -> Option<Seq> {
        None
    }

    /// The oldest number we can still resend, for our
    /// [`Msg::Response`]s (None: only the next one).
    fn resume_from(&self) -> Option<Seq> {
        None
    }

    /// Whether RESYNC exists in this mode: a peer's request is answered
    /// with a bulk, and `-n` sends one.
    fn answers_resync(&self) -> bool;

    /// Whether our datagrams carry the HELLO handshake flags.
    fn says_hello(&self) -> bool {
        false
    }

    /// Empties the resend queue, returning what it held (a protocol
    /// switch hands the keys to the other engine).
    fn drain_resend(&mut self) -> Vec<Sent> {
        Vec::new()
    }

    /// The peer challenged us: it has not proven our session (see
    /// `gate::Gate`), so it has held what we sent, unanswered.
    fn challenged(&mut self) {}

    /// A round trip measured outside the mode (a challenge's).
    fn round_trip_sample(&mut self, _rtt: std::time::Duration) {}

    /// The measured round trip to the peer and the retransmission
    /// timeout taken from it (FT-FW, once measured).
    fn round_trip(&self) -> Option<RoundTrip> {
        None
    }

    /// Sent messages awaiting acknowledgement (FT-FW only).
    fn resend_queue(&self) -> Option<&ResendQueue> {
        None
    }

    /// Gives up the unacknowledged states of the keys `which` names (see
    /// [`ResendQueue::give_up_states`]; FT-FW only). Returns how many.
    fn give_up_states(&mut self, _which: &dyn Fn(&Key) -> bool) -> usize {
        0
    }
}

/// The engine's mode and its state.
pub(crate) enum ModeState {
    /// Boxed: its queues' state is several times the others'.
    FtFw(Box<FtFw>),
    NoTrack(NoTrack),
    Alarm(Alarm),
}

impl ModeState {
    pub(crate) fn new(p: &Params) -> Self {
        match p.mode {
            Mode::FtFw => ModeState::FtFw(Box::new(FtFw::new(
                p.ack_window,
                p.resend_queue_size,
            ))),
            Mode::NoTrack => ModeState::NoTrack(NoTrack::new()),
            Mode::Alarm => ModeState::Alarm(Alarm::new(p.refresh_time)),
        }
    }

    pub(crate) fn get(&self) -> &dyn SyncMode {
        match self {
            ModeState::FtFw(m) => &**m,
            ModeState::NoTrack(m) => m,
            ModeState::Alarm(m) => m,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut dyn SyncMode {
        match self {
            ModeState::FtFw(m) => &mut **m,
            ModeState::NoTrack(m) => m,
            ModeState::Alarm(m) => m,
        }
    }
}
