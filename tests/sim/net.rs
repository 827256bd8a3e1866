//! The randomness and the sync link of the simulation: a splitmix64
//! generator (every choice comes from one seed) and a link between
//! firewalls that loses, duplicates and reorders datagrams (each copy
//! gets its own random delay), and can be cut.

use std::collections::BTreeMap;

/// splitmix64: a tiny, well-known deterministic generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How bad the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkParams {
    /// Percent of datagrams lost.
    pub loss: u64,
    /// Percent of datagrams delivered twice.
    pub dup: u64,
    /// Base delay (ms).
    pub delay: u64,
    /// Extra random delay (ms); different delays reorder datagrams.
    pub jitter: u64,
}

impl LinkParams {
    pub const PERFECT: LinkParams = LinkParams {
        loss: 0,
        dup: 0,
        delay: 1,
        jitter: 0,
    };
}

/// A datagram in flight.
pub struct Flight {
    pub from: usize,
    pub to: usize,
    pub bytes: Vec<u8>,
}

/// Datagrams in flight, by delivery time (then sending order).
pub struct Link {
    pub params: LinkParams,
    pub up: bool,
    flight: BTreeMap<(u64, u64), Flight>,
    counter: u64,
    pub sent: u64,
    pub lost: u64,
    /// Bytes put on the wire (lost ones too).
    pub bytes: u64,
    /// When set, every datagram put on the wire, with its sender.
    pub tap: Option<Vec<(usize, Vec<u8>)>>,
}

impl Link {
    pub fn new(params: LinkParams) -> Link {
        Link {
            params,
            up: true,
            flight: BTreeMap::new(),
            counter: 0,
            sent: 0,
            lost: 0,
            bytes: 0,
            tap: None,
        }
    }

    /// Puts a datagram on the wire at `now` (ms).
    pub fn send(
        &mut self,
        rng: &mut Rng,
        now: u64,
        from: usize,
        to: usize,
        d: &[u8],
    ) {
        self.sent += 1;
        self.bytes += d.len() as u64;
        if let Some(tap) = &mut self.tap {
            tap.push((from, d.to_vec()));
        }
        let p = self.params;
        if !self.up || rng.chance(p.loss) {
            self.lost += 1;
            return;
        }
        let copies = if rng.chance(p.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let at = now + p.delay + rng.below(p.jitter + 1);
            self.counter += 1;
            let f = Flight {
                from,
                to,
                bytes: d.to_vec(),
            };
            self.flight.insert((at, self.counter), f);
        }
    }

    /// Datagrams in flight from `from`, in delivery order.
    pub fn in_flight(&self, from: usize) -> impl Iterator<Item = &[u8]> {
        self.flight
            .values()
            .filter(move |f| f.from == from)
            .map(|f| f.bytes.as_slice())
    }

    /// A datagram that claims to come from `from`, put on the wire by
    /// someone else: neither lost nor duplicated, delivered after the
    /// base delay.
    pub fn forge(&mut self, now: u64, from: usize, to: usize, d: &[u8]) {
        self.counter += 1;
        let f = Flight {
            from,
            to,
            bytes: d.to_vec(),
        };
        self.flight
            .insert((now + self.params.delay, self.counter), f);
    }

    /// When the next datagram arrives.
    pub fn next_at(&self) -> Option<u64> {
        self.flight.keys().next().map(|(t, _)| *t)
    }

    /// The next datagram due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Flight> {
        let (&k, _) = self.flight.iter().next()?;
        if k.0 > now {
            return None;
        }
        self.flight.remove(&k)
    }

    /// Drops everything in flight to or from `node` (it died, or the
    /// cable was pulled).
    pub fn drop_node(&mut self, node: usize) {
        self.flight.retain(|_, f| f.from != node && f.to != node);
    }
}
