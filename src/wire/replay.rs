//! The sliding anti-replay window over a sender's datagram counter (the
//! sealed nonce's low half), as IPsec (RFC 6479) and WireGuard keep it:
//! the highest counter seen, and a bitmap of the [`WINDOW`] counters
//! that end with it (the highest and the `WINDOW - 1` below it: one bit
//! each, `c % WINDOW`). A counter seen before, or older than the window,
//! is refused; a newer one slides the window.
//!
//! Only a datagram that opened (authenticated) may touch a window: a
//! forged counter could otherwise slide it and lock the sender out.
//!
//! Pure and fixed-size: 128 bytes of bitmap per window.

/// Counters the window spans, the highest seen included: of those below
/// it, `WINDOW - 1` are still accepted (once).
pub const WINDOW: u64 = 1024;

const WORDS: usize = (WINDOW / 64) as usize;

/// One sender epoch's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// One more than the highest counter accepted (0: none yet).
    top: u64,
    /// Bit `c % WINDOW` is set when counter `c` (within the window) was
    /// accepted.
    seen: [u64; WORDS],
}

impl Default for Window {
    fn default() -> Self {
        Window::new()
    }
}

impl Window {
    pub fn new() -> Window {
        Window {
            top: 0,
            seen: [0; WORDS],
        }
    }

    /// Accepts `counter` once: true the first time a counter within the
    /// window (or above it) is offered, false for a repeat or one too old.
    pub fn accept(&mut self, counter: u64) -> bool {
        // The sender never uses the last counter (it cannot name a top).
        if counter == u64::MAX {
            return false;
        }
        if counter >= self.top {
            // Slide: counters between the old top and this one were not
            // seen; their bits (left from WINDOW counters ago) are cleared.
            if counter - self.top >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                for c in self.top..counter {
                    self.clear(c);
                }
            }
            self.set(counter);
            self.top = counter + 1;
            return true;
        }
        if self.top - counter > WINDOW {
            return false;
        }
        if self.is_set(counter) {
            return false;
        }
        self.set(counter);
        true
    }

    /// Refuses every counter up to `counter` from now on (a session's
    /// proof: what was sent before it cannot be told from a replay).
    pub fn refuse_up_to(&mut self, counter: u64) {
        if counter == u64::MAX {
            self.top = u64::MAX;
            self.seen = [u64::MAX; WORDS];
            return;
        }
        if counter >= self.top {
            self.top = counter + 1;
            self.seen = [u64::MAX; WORDS];
            return;
        }
        for c in self.top.saturating_sub(WINDOW)..=counter {
            self.set(c);
        }
    }

    fn bit(c: u64) -> (usize, u64) {
        let i = c % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn set(&mut self, c: u64) {
        let (w, m) = Window::bit(c);
        self.seen[w] |= m;
    }

    fn clear(&mut self, c: u64) {
        let (w, m) = Window::bit(c);
        self.seen[w] &= !m;
    }

    fn is_set(&self, c: u64) -> bool {
        let (w, m) = Window::bit(c);
        self.seen[w] & m != 0
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn each_counter_is_accepted_once() {
        let mut w = Window::new();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(5));
        // Late but within the window: once.
        assert!(w.accept(3) && !w.accept(3));
        assert!(w.accept(1) && w.accept(2) && w.accept(4));
        for c in 0..=5 {
            assert!(!w.accept(c), "{c} accepted twice");
        }
    }

    #[test]
    fn the_window_slides_and_forgets_nothing_inside_it() {
        let mut w = Window::new();
        assert!(w.accept(2000));
        // The oldest still inside: top - WINDOW = 2001 - 1024 = 977.
        assert!(!w.accept(976));
        assert!(w.accept(977));
        assert!(!w.accept(977));
        // A jump of exactly the window, then one short of it.
        assert!(w.accept(2000 + WINDOW));
        assert!(!w.accept(2000));
        assert!(w.accept(2001));
        assert!(w.accept(2000 + WINDOW + WINDOW - 1));
        assert!(!w.accept(2000 + WINDOW - 1), "older than the window");
        assert!(w.accept(2000 + WINDOW + 1));
        assert!(!w.accept(2000 + WINDOW + 1));
        assert!(!w.accept(u64::MAX));
    }

    #[test]
    fn a_proof_refuses_everything_before_it() {
        let mut w = Window::new();
        assert!(w.accept(10));
        w.refuse_up_to(500);
        assert!((0..=500).all(|c| !w.accept(c)));
        assert!(w.accept(501) && w.accept(503));
        w.refuse_up_to(502);
        assert!(!w.accept(502) && w.accept(504));
        assert!(!w.accept(503), "seen before");
    }

    #[test]
    fn matches_a_set_of_seen_counters() {
        // Against the definition: accepted iff never seen and newer than
        // highest - WINDOW.
        let mut w = Window::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut x: u64 = 0x9e37_79b9;
        let mut base = 0u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 50 == 0 {
                base += x % 3000;
            }
            let c = base + x % 1500;
            let top = seen.last().map_or(0, |h| h + 1);
            let want = !seen.contains(&c) && c + WINDOW >= top;
            assert_eq!(w.accept(c), want, "counter {c}, top {top}");
            if want {
                seen.insert(c);
            }
        }
    }
}
