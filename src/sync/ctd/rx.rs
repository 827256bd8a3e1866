//! What the conntrackd-protocol engine tracks of the peer's messages: its
//! sequence numbers (one counter for all of its messages, data and
//! control, reference §4.3) and, in FT-FW, the acknowledgement window
//! (§4.7): acknowledge a run every `ACKWindowSize` messages; on a gap,
//! acknowledge the run before it and NACK the gap; a HELLO restarts the
//! tracking at its number.
//!
//! One addition: a number further than [`WINDOW`] from the expected one
//! is not believed at once (one corrupt datagram would otherwise make
//! every later message "late" and dropped); a second message that follows
//! it re-anchors the tracking there, as a HELLO would. (NOTRACK, which
//! drops nothing by number, applies the far message all the same.) A jump within the
//! window is believed at once, as conntrackd believes it: one forged
//! datagram numbered up to [`WINDOW`] ahead (or a forged HELLO) still
//! makes the real peer's messages "late" until its numbers pass it. The
//! conntrackd protocol has no authentication; a link that needs it runs
//! ctsyncd's own protocol with a key (SECURITY.md).

use super::queue::Ctl;
use crate::wire::Seq;

/// How far a number may jump before it needs a second message to be
/// believed. Larger than any resend queue, so a real gap always fits.
pub(crate) const WINDOW: u32 = 1 << 18;

/// How one message's number relates to what we expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The first number we hear, the expected one, or a HELLO's.
    InSync,
    /// Numbers `from..=to` never arrived.
    After { from: Seq, to: Seq },
    /// Older than expected (a duplicate or a message overtaken).
    Before,
    /// Further than [`WINDOW`] from the expected number: not (yet)
    /// believed.
    OutOfWindow,
}

/// The peer's numbering and our acknowledgements of it.
#[derive(Debug, Clone)]
pub(crate) struct Rx {
    last: Option<Seq>,
    /// A far number seen once: the next one after it re-anchors.
    far: Option<Seq>,
    /// First number of the run not yet acknowledged.
    ack_from: Option<Seq>,
    /// Messages left until the window's ACK.
    window: i64,
    size: i64,
}

impl Rx {
    pub(crate) fn new(ack_window: u32) -> Self {
        let size = i64::from(ack_window.max(1));
        Rx {
            last: None,
            far: None,
            ack_from: None,
            window: size,
            size,
        }
    }

    /// The last number received.
    pub(crate) fn last(&self) -> Option<Seq> {
        self.last
    }

    /// Where `seq` stands (a peer's restart is the caller's to decide).
    pub(crate) fn classify(&mut self, seq: Seq) -> Class {
        let Some(last) = self.last else {
            return Class::InSync;
        };
        let expected = last.next();
        if seq == expected {
            return Class::InSync;
        }
        let (ahead, behind) = (seq - expected, expected - seq);
        if ahead.min(behind) > WINDOW {
            // Believed when the next message follows it.
            if self.far.is_some_and(|f| seq > f && seq - f <= 16) {
                self.far = None;
                return Class::InSync;
            }
            self.far = Some(seq);
            return Class::OutOfWindow;
        }
        if seq > expected {
            Class::After {
                from: expected,
                to: seq.prev(),
            }
        } else {
            Class::Before
        }
    }

    /// A message numbered `seq` was accepted.
    pub(crate) fn update(&mut self, seq: Seq) {
        self.last = Some(seq);
    }

    /// FT-FW: a HELLO numbered `seq` arrived; a run started after it is
    /// restarted there.
    pub(crate) fn hello(&mut self, seq: Seq) {
        if self.ack_from.is_some_and(|a| seq < a) {
            self.window = self.size - 1;
            self.ack_from = Some(seq);
        }
    }

    /// FT-FW: an in-sync message numbered `seq`; the window's ACK if it is
    /// full.
    pub(crate) fn in_sync(&mut self, seq: Seq) -> Option<Ctl> {
        let from = *self.ack_from.get_or_insert(seq);
        self.window -= 1;
        if self.window > 0 {
            return None;
        }
        self.window = self.size;
        self.ack_from = None;
        Some(Ctl::Ack { from, to: seq })
    }

    /// FT-FW: message `seq` came after the gap `from..=to`: acknowledge
    /// the run before the gap, ask for the gap, start a run at `seq`.
    pub(crate) fn gap(&mut self, from: Seq, to: Seq, seq: Seq) -> Vec<Ctl> {
        let mut out = Vec::with_capacity(2);
        if let Some(a) = self.ack_from.take() {
            out.push(Ctl::Ack {
                from: a,
                to: from.prev(),
            });
        }
        out.push(Ctl::Nack { from, to });
        self.window = self.size - 1;
        self.ack_from = Some(seq);
        out
    }

    /// FT-FW, one second without sending: the ACK of the open run, if
    /// any (else the caller says ALIVE).
    pub(crate) fn idle_ack(&mut self) -> Option<Ctl> {
        let last = self.last?;
        let from = self.ack_from.take()?;
        self.window = self.size;
        Some(Ctl::Ack { from, to: last })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn window_gap_hello_and_far_numbers() {
        let mut rx = Rx::new(3);
        for s in [100, 101] {
            assert_eq!(rx.classify(Seq(s)), Class::InSync);
            assert_eq!(rx.in_sync(Seq(s)), None);
            rx.update(Seq(s));
        }
        assert_eq!(rx.classify(Seq(102)), Class::InSync);
        assert_eq!(
            rx.in_sync(Seq(102)),
            Some(Ctl::Ack {
                from: Seq(100),
                to: Seq(102)
            })
        );
        rx.update(Seq(102));
        assert_eq!(rx.classify(Seq(103)), Class::InSync);
        rx.in_sync(Seq(103));
        rx.update(Seq(103));
        let c = rx.classify(Seq(107));
        assert_eq!(
            c,
            Class::After {
                from: Seq(104),
                to: Seq(106)
            }
        );
        assert_eq!(
            rx.gap(Seq(104), Seq(106), Seq(107)),
            vec![
                Ctl::Ack {
                    from: Seq(103),
                    to: Seq(103)
                },
                Ctl::Nack {
                    from: Seq(104),
                    to: Seq(106)
                }
            ]
        );
        rx.update(Seq(107));
        assert_eq!(rx.classify(Seq(105)), Class::Before);
        assert_eq!(
            rx.idle_ack(),
            Some(Ctl::Ack {
                from: Seq(107),
                to: Seq(107)
            })
        );
        assert_eq!(rx.idle_ack(), None, "nothing open");
        // A far number is believed only when the next one follows it.
        assert_eq!(rx.classify(Seq(1 << 30)), Class::OutOfWindow);
        assert_eq!(rx.classify(Seq(108)), Class::InSync);
        assert_eq!(rx.classify(Seq(1 << 30)), Class::OutOfWindow);
        assert_eq!(rx.classify(Seq((1 << 30) + 1)), Class::InSync);
    }
}
