//! Receive-side sequence tracking for one peer, shared by FT-FW and
//! NOTRACK: which number comes next, and which numbers never arrived.
//! What to do about a late message or a gap is the mode's decision.

use crate::wire::Seq;

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
    pub(crate) fn alive(&mut self, next: Seq) -> Option<Gap> {
        let expected = self.next?;
        if expected >= next {
            return None;
        }
        self.next = Some(next);
        Some(Gap {
            from: expected,
            to: next.prev(),
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn arrivals_across_the_wrap() {
        let mut t = SeqTrack::default();
        assert_eq!(t.alive(Seq(3)), None, "nothing expected yet");
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
        assert_eq!(t.alive(Seq(4)), None);
        assert_eq!(
            t.alive(Seq(6)),
            Some(Gap {
                from: Seq(4),
                to: Seq(5)
            })
        );
        assert_eq!(t.next(), Some(Seq(6)));
    }
}
