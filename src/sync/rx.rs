//! Receive-side sequence tracking for one peer, shared by FT-FW and
//! NOTRACK: which number comes next, and which numbers never arrived.
//! What to do about a late message or a gap is the mode's decision.

use crate::wire::Seq;

/// How far a sequence number may be from the expected one, ahead or
/// behind. Further is not a gap but a corrupt, forged or stale datagram:
/// it is refused, never adopted (one datagram must not move the stream
/// 2^31 ahead), and the session is asked to prove itself again (a
/// [`crate::wire::Msg::Challenge`]; its answer re-anchors the tracking).
/// No smaller than any resend queue (the configuration clamps
/// `ResendQueueSize` to it), so a real gap always fits; a peer whose
/// queue is larger still is re-anchored a window behind its next number
/// (`Engine::reanchor`).
pub(crate) const WINDOW: u32 = 1 << 18;
const _: () = assert!(WINDOW == crate::config::RESEND_QUEUE_MAX);

/// Sequence numbers that never arrived, `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    pub(crate) from: Seq,
    pub(crate) to: Seq,
}

impl Gap {
    /// How many numbers are missing.
    pub(crate) fn len(self) -> u64 {
        u64::from(self.to - self.from) + 1
    }
}

/// How a data message's number relates to the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The expected number (or the first we hear).
    InOrder,
    /// Older than expected: a duplicate or overtaken message.
    Late,
    /// Newer than expected: the numbers in between are missing.
    After(Gap),
    /// Further than [`WINDOW`] from the expected number: refused.
    OutOfWindow,
}

/// What a peer's ALIVE tells about its numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announced {
    /// Nothing we missed.
    Nothing,
    /// The tail we never saw.
    Gap(Gap),
    /// Further than [`WINDOW`] ahead: refused.
    OutOfWindow,
}

/// Whether `s` is further than [`WINDOW`] from `next`, either way.
fn out_of_window(s: Seq, next: Seq) -> bool {
    let ahead = s - next;
    let behind = next - s;
    ahead.min(behind) > WINDOW
}

/// Where one peer's numbering stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SeqTrack {
    next: Option<Seq>,
}

impl SeqTrack {
    /// The number we expect next; None before the first message.
    pub(crate) fn next(&self) -> Option<Seq> {
        self.next
    }

    /// A data message numbered `s` arrived. A late one leaves the
    /// expectation alone; any other moves it past `s`.
    pub(crate) fn arrive(&mut self, s: Seq) -> Arrival {
        let arrival = match self.next {
            Some(next) if out_of_window(s, next) => {
                return Arrival::OutOfWindow;
            }
            Some(next) if s == next => Arrival::InOrder,
            Some(next) if s < next => return Arrival::Late,
            Some(next) => Arrival::After(Gap {
                from: next,
                to: s.prev(),
            }),
            None => Arrival::InOrder,
        };
        self.next = Some(s.next());
        arrival
    }

    /// The peer's ALIVE says its next number is `next`: the tail we never
    /// saw, if any (the expectation moves to `next`).
    ///
    /// An ALIVE behind the expectation says we took numbers the peer has
    /// not used: a forged or corrupt datagram moved the tracking ahead
    /// within the window, and every real message would now look late
    /// (FT-FW drops those, anti-entropy's resends too). It is refused as
    /// out of the window, so the session is challenged and its answer
    /// re-anchors the tracking. (An ALIVE overtaken by the data sent
    /// after it costs one challenge; the tracking, near, is kept.)
    pub(crate) fn alive(&mut self, next: Seq) -> Announced {
        let Some(expected) = self.next else {
            return Announced::Nothing;
        };
        if out_of_window(next, expected) || expected > next {
            return Announced::OutOfWindow;
        }
        if expected == next {
            return Announced::Nothing;
        }
        self.next = Some(next);
        Announced::Gap(Gap {
            from: expected,
            to: next.prev(),
        })
    }

    /// The peer proved its session: expect `at` next, whatever was
    /// expected before.
    pub(crate) fn anchor(&mut self, at: Seq) {
        self.next = Some(at);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn arrivals_across_the_wrap() {
        let mut t = SeqTrack::default();
        assert_eq!(t.alive(Seq(3)), Announced::Nothing, "nothing expected");
        assert_eq!(t.arrive(Seq(u32::MAX)), Arrival::InOrder);
        assert_eq!(t.arrive(Seq(0)), Arrival::InOrder);
        let gap = Gap {
            from: Seq(1),
            to: Seq(2),
        };
        assert_eq!(t.arrive(Seq(3)), Arrival::After(gap));
        assert_eq!(gap.len(), 2);
        assert_eq!(t.arrive(Seq(u32::MAX)), Arrival::Late);
        assert_eq!(t.next(), Some(Seq(4)), "a late message moves nothing");
        assert_eq!(t.alive(Seq(4)), Announced::Nothing);
        assert_eq!(
            t.alive(Seq(6)),
            Announced::Gap(Gap {
                from: Seq(4),
                to: Seq(5)
            })
        );
        assert_eq!(t.next(), Some(Seq(6)));
    }

    #[test]
    fn an_alive_behind_the_expectation_is_refused() {
        let mut t = SeqTrack::default();
        assert_eq!(t.arrive(Seq(100)), Arrival::InOrder);
        // A forged number ahead, within the window, moved us to 100_101.
        assert!(matches!(t.arrive(Seq(100_100)), Arrival::After(_)));
        assert_eq!(t.alive(Seq(101)), Announced::OutOfWindow);
        assert_eq!(t.next(), Some(Seq(100_101)), "the anchor moves it");
        assert_eq!(t.alive(Seq(100_101)), Announced::Nothing);
    }

    #[test]
    fn numbers_out_of_the_window_are_refused_and_move_nothing() {
        let mut t = SeqTrack::default();
        assert_eq!(t.arrive(Seq(100)), Arrival::InOrder);
        // 2^31 ahead: the datagram that once stopped replication.
        assert_eq!(t.arrive(Seq(100 + (1 << 31))), Arrival::OutOfWindow);
        assert_eq!(t.arrive(Seq(101 + WINDOW + 1)), Arrival::OutOfWindow);
        assert_eq!(t.alive(Seq(101 + WINDOW + 1)), Announced::OutOfWindow);
        assert_eq!(
            t.arrive(Seq(100u32.wrapping_sub(WINDOW + 1))),
            Arrival::OutOfWindow
        );
        assert_eq!(t.next(), Some(Seq(101)));
        // The edge of the window is still a gap.
        assert!(matches!(t.arrive(Seq(101 + WINDOW)), Arrival::After(_)));
        // A proven session re-anchors the tracking anywhere.
        t.anchor(Seq(5_000_000));
        assert_eq!(t.arrive(Seq(5_000_000)), Arrival::InOrder);
        assert_eq!(
            t.alive(Seq(5_000_003)),
            Announced::Gap(Gap {
                from: Seq(5_000_001),
                to: Seq(5_000_002)
            })
        );
    }
}
