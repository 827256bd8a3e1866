//! The engine's side of sealed datagrams: the keys, one anti-replay
//! window per sender epoch, and the once-a-minute report of what was
//! refused.
//!
//! A datagram is opened (authenticated) before its counter may touch a
//! window, and the window is checked before anything reads the body. What
//! gets through is a plain datagram that was never seen before from a key
//! holder; the session gate ([`super::gate::Gate`]) then still decides
//! whether its session is live (a whole old session replayed opens and
//! passes its fresh windows, but it cannot answer a new challenge).
//!
//! Windows are kept per (session, epoch) in a bounded table, whatever
//! address a datagram comes from: the counter space is the sealer's (the
//! epoch is its random per-start value), and on a multicast or TCP link
//! any source address is accepted, so a window per address would let a
//! capture re-sent from a new address open again (and a replayed answer
//! prove that address at the gate). When the table is full, the least
//! recently used window of a session the gate does not believe makes
//! room; the believed sessions' windows stay, so no flood of old captures
//! can make a live session's counters acceptable again.
//!
//! Pure: the time is a parameter; the log call is the engine's.

use std::collections::HashMap;
use std::time::Duration;

use crate::time::Instant;
use crate::wire::replay::Window;
use crate::wire::seal::{EPOCH_LEN, Origin, Sealer};
use crate::wire::{self, Header, Packet};

/// Most windows kept at once (128 bytes of bitmap each).
const MAX_WINDOWS: usize = 32;

/// Refusals are reported at most this often.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Whose numbering a window tracks: a sender's session and epoch (not
/// its address, which an attacker on the link chooses).
type WindowId = (u32, [u8; EPOCH_LEN]);

/// Counts of refused datagrams since the last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) auth_failed: u64,
    pub(crate) replayed: u64,
    pub(crate) unsealed: u64,
}

impl Refused {
    fn count(&mut self, e: wire::Error) {
        match e {
            wire::Error::Replayed => self.replayed += 1,
            wire::Error::Unsealed => self.unsealed += 1,
            wire::Error::Auth => self.auth_failed += 1,
            // Sealed, but cut short, padded or of another version: no key
            // was tried. `-s` counts these as bad headers or versions.
            _ => {}
        }
    }

    fn total(&self) -> u64 {
        self.auth_failed + self.replayed + self.unsealed
    }
}

/// Says when to log refusals: the first at once, then a summary at most
/// every [`REPORT_EVERY`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ReportLimit {
    last: Option<Instant>,
    pending: Refused,
}

impl ReportLimit {
    /// Notes a refusal at `now`; returns what to report, if it is time.
    pub(crate) fn note(
        &mut self,
        now: Instant,
        e: wire::Error,
    ) -> Option<Refused> {
        self.pending.count(e);
        self.due(now)
    }

    /// What to report at `now`, if anything is pending and the last
    /// report is old enough.
    pub(crate) fn due(&mut self, now: Instant) -> Option<Refused> {
        if self.pending.total() == 0 {
            return None;
        }
        if self.last.is_some_and(|t| now.since(t) < REPORT_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

struct Tracked {
    window: Window,
    used: Instant,
}

/// Keys, windows and the refusal report of a keyed engine.
pub(crate) struct Sealing {
    pub(crate) sealer: Sealer,
    windows: HashMap<WindowId, Tracked>,
    /// Where a datagram is opened (reused: no allocation per datagram).
    pub(crate) scratch: Vec<u8>,
    pub(crate) report: ReportLimit,
}

impl Sealing {
    pub(crate) fn new(sealer: Sealer) -> Sealing {
        Sealing {
            sealer,
            windows: HashMap::new(),
            scratch: Vec::new(),
            report: ReportLimit::default(),
        }
    }

    /// Opens `datagram` into `out` and accepts its counter once, from
    /// whichever address it came; one of our own (sealed under our
    /// epoch) is refused as a replay. `believed(session)`: whether the gate
    /// believes that session for some peer (its windows are never
    /// evicted).
    ///
    /// # Errors
    /// As [`Sealer::open`], and [`wire::Error::Replayed`].
    pub(crate) fn open(
        &mut self,
        now: Instant,
        datagram: &[u8],
        out: &mut Vec<u8>,
        believed: impl Fn(u32) -> bool,
    ) -> Result<Origin, wire::Error> {
        let origin = self.sealer.open(datagram, out)?;
        let Origin { epoch, counter } = origin;
        // Our own datagram, sent back to us (from the peer's address or
        // any other): it opens with our key, and its counter is new to
        // every window (we never receive what we send), but it is
        // nobody's. Read, it asked us to prove our own session, carried
        // our answer back, and proved it as the peer's: a restart of the
        // peer, whose resend queue we emptied, and our own changes
        // applied as its. The epoch is ours alone (2^128 of them).
        if epoch == self.sealer.epoch() {
            out.clear();
            return Err(wire::Error::Replayed);
        }
        // Opened: the header is authentic and at least a header long.
        let session = Header::parse(&Packet::new_unchecked(&out[..])).session;
        let id = (session, epoch);
        if !self.windows.contains_key(&id) {
            self.make_room(&believed);
        }
        let t = self.windows.entry(id).or_insert_with(|| Tracked {
            window: Window::new(),
            used: now,
        });
        t.used = now;
        if !t.window.accept(counter) {
            out.clear();
            return Err(wire::Error::Replayed);
        }
        Ok(origin)
    }

    /// `session` proved itself with the datagram from `origin`: whatever
    /// that sender numbered before it is refused from now on, from any
    /// address.
    /// (A restarted node that saw nothing of this session before cannot
    /// tell the session's earlier datagrams from a capture replayed at
    /// it; FT-FW resends what matters, built from the current state.)
    pub(crate) fn proven(&mut self, session: u32, origin: Origin) {
        if let Some(t) = self.windows.get_mut(&(session, origin.epoch)) {
            t.window.refuse_up_to(origin.counter);
        }
    }

    fn make_room(&mut self, believed: &impl Fn(u32) -> bool) {
        if self.windows.len() < MAX_WINDOWS {
            return;
        }
        let victim = self
            .windows
            .iter()
            .filter(|((session, _), _)| !believed(*session))
            .min_by_key(|(_, t)| t.used)
            .map(|(id, _)| *id);
        if let Some(id) = victim {
            self.windows.remove(&id);
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::seal::{Key, SEAL_OVERHEAD};
    use crate::wire::{Msg, Seq, Writer};

    fn sealed(s: &mut Sealer, session: u32) -> Vec<u8> {
        let mut buf = vec![0u8; 100];
        let mut w = Writer::new(
            &mut buf[..100 - SEAL_OVERHEAD],
            Header {
                flags: 0,
                session,
                first_seq: Seq(1),
            },
        )
        .unwrap();
        w.push(&Msg::Resync).unwrap();
        let n = w.finish();
        let n = s.seal(&mut buf, n).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_datagram_opens_once_whatever_address_it_comes_from() {
        let key = Key::from_bytes([3; 32]);
        let mut peer =
            Sealer::new(std::slice::from_ref(&key), [1; 16]).unwrap();
        let mut s = Sealing::new(Sealer::new(&[key], [2; 16]).unwrap());
        let t = Instant::ZERO;
        let d0 = sealed(&mut peer, 5);
        let d1 = sealed(&mut peer, 5);
        let mut out = Vec::new();
        assert!(s.open(t, &d1, &mut out, |_| false).is_ok());
        assert!(!out.is_empty());
        assert!(s.open(t, &d0, &mut out, |_| false).is_ok());
        // The window is the sender's (session, epoch), not an address's
        // (`open` takes none): re-sent from anywhere, the same datagram
        // meets the same window.
        for d in [&d0, &d1] {
            let r = s.open(t, d, &mut out, |_| false);
            assert_eq!(r, Err(wire::Error::Replayed));
            assert!(out.is_empty());
        }
        // One of our own, sent back to us: nobody's, whatever its window.
        let own = sealed(&mut s.sealer, 5);
        let r = s.open(t, &own, &mut out, |_| false);
        assert_eq!(r, Err(wire::Error::Replayed));
        // Another session of the same sender has a window of its own.
        assert!(
            s.open(t, &sealed(&mut peer, 6), &mut out, |_| false)
                .is_ok()
        );
    }

    #[test]
    fn a_flood_of_old_sessions_cannot_evict_a_believed_window() {
        let key = Key::from_bytes([3; 32]);
        let mut live =
            Sealer::new(std::slice::from_ref(&key), [1; 16]).unwrap();
        // An epoch none of the old senders' (0..200) has: a datagram of
        // our own epoch is refused whatever its window.
        let mut s = Sealing::new(
            Sealer::new(std::slice::from_ref(&key), [255; 16]).unwrap(),
        );
        let mut out = Vec::new();
        let first = sealed(&mut live, 77);
        let believed = |session: u32| session == 77;
        assert!(s.open(Instant::ZERO, &first, &mut out, believed).is_ok());
        for i in 0..200u8 {
            let mut old =
                Sealer::new(std::slice::from_ref(&key), [i; 16]).unwrap();
            let d = sealed(&mut old, 1000 + u32::from(i));
            let now = Instant::ZERO + Duration::from_secs(u64::from(i) + 1);
            assert!(s.open(now, &d, &mut out, believed).is_ok());
        }
        assert!(s.windows.len() <= MAX_WINDOWS);
        let r = s.open(Instant::ZERO, &first, &mut out, believed);
        assert_eq!(r, Err(wire::Error::Replayed));
    }

    #[test]
    fn refusals_are_reported_at_most_once_a_minute() {
        let mut r = ReportLimit::default();
        let t0 = Instant::ZERO + Duration::from_secs(5);
        let first = r.note(t0, wire::Error::Auth).unwrap();
        assert_eq!(first.auth_failed, 1);
        for i in 1..100 {
            let now = t0 + Duration::from_millis(i * 500);
            assert_eq!(r.note(now, wire::Error::Replayed), None);
        }
        assert_eq!(r.due(t0 + Duration::from_secs(59)), None);
        let later = r.due(t0 + REPORT_EVERY).unwrap();
        assert_eq!(later.replayed, 99);
        assert_eq!(r.due(t0 + REPORT_EVERY * 3), None, "nothing pending");
        let again = r.note(t0 + REPORT_EVERY * 3, wire::Error::Unsealed);
        assert_eq!(again.map(|x| x.unsealed), Some(1));
    }

    /// A sealed datagram cut short, padded or of another version never
    /// reached the tag check: `-s` counts it as a bad header or version,
    /// not in `auth_failed`, so the log does not call it a failed
    /// authentication either.
    #[test]
    fn the_report_counts_as_the_counters_do() {
        let mut r = ReportLimit::default();
        let t = Instant::ZERO;
        for e in [
            wire::Error::Truncated,
            wire::Error::TrailingBytes,
            wire::Error::Version(3),
        ] {
            assert_eq!(r.note(t, e), None, "{e:?}");
        }
        let got = r.note(t, wire::Error::Auth).unwrap();
        assert_eq!(got.auth_failed, 1);
    }
}
