//! What engine_pair and ctd_pair share: two engines over a link the input
//! drives (changes on A; delivery, loss, duplication and reordering each
//! way; time jumps; a corrupt datagram, which each target makes its own
//! way), then the link heals. The targets differ in the engine and in
//! how they corrupt a datagram.

use std::collections::VecDeque;

use ctsyncd::model::{Conntrack, L4, Tuple};
use ctsyncd::sync::MapSource;
use ctsyncd::time::Instant;

pub const MAX_OPS: usize = 400;
const HEAL_US: u64 = 60_000_000;
const HEAL_STEPS: usize = 200_000;

/// What the driver moves and compares of a side, whatever its engine.
#[derive(Default)]
pub struct Ends {
    /// Datagrams it sent, not yet delivered.
    pub out: VecDeque<Vec<u8>>,
    /// What it sends from (A's entries; B's is empty).
    pub internal: MapSource,
    /// What it applied from its peer.
    pub external: MapSource,
}

/// One side of the pair, as the driver needs it.
pub trait Peer {
    fn ends(&mut self) -> &mut Ends;
    /// A local change of `key`'s entry (true: it exists now).
    fn change(&mut self, key: ctsyncd::sync::Key, exists: bool);
    /// Runs due timers and queues whatever the engine sends now.
    fn step(&mut self, now: Instant);
    fn receive(&mut self, now: Instant, d: &[u8]);
    fn poll_at(&self) -> Instant;
}

/// Reads the input a byte at a time (zeros once it runs out).
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next `n` bytes, or what is left (engine_pair's forged bodies;
    /// ctd_pair corrupts real datagrams instead).
    #[allow(dead_code)]
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

pub fn ct(port: u16, timeout: u32) -> Conntrack {
    let mut c = Conntrack::new(Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: 17,
        l4: L4::Ports { src: port, dst: 53 },
    });
    c.timeout = Some(timeout);
    c.reply = Some(c.orig.inverse());
    c
}

/// Runs the input's operations on the link, then heals it: everything is
/// delivered, time runs to the next deadline, until B holds A's entries
/// (or a virtual minute passed). `corrupt` makes a corrupt datagram as
/// if from its first side and delivers it to its second (the input says
/// which way). Returns whether anything corrupt was delivered.
pub fn run<P: Peer>(
    input: &mut Input,
    a: &mut P,
    b: &mut P,
    mut corrupt: impl FnMut(&mut Input, Instant, &mut P, &mut P),
) -> bool {
    let mut now_us = 0u64;
    let mut forged = false;
    for _ in 0..MAX_OPS {
        if input.0.is_empty() {
            break;
        }
        let now = Instant::from_micros(now_us);
        match input.byte() % 10 {
            0 => {
                let port = u16::from(input.byte() % 48);
                let how = input.byte();
                let c = ct(port, u32::from(how));
                let key = ctsyncd::wire::ct_key_of(&c);
                if how & 1 == 1 {
                    a.ends().internal.cts.remove(&key);
                    a.change(ctsyncd::sync::Key::Ct(key), false);
                } else {
                    a.ends().internal.cts.insert(key, c);
                    a.change(ctsyncd::sync::Key::Ct(key), true);
                }
            }
            1 => {
                if let Some(d) = a.ends().out.pop_front() {
                    b.receive(now, &d);
                }
            }
            2 => {
                a.ends().out.pop_front();
            }
            3 => {
                if let Some(d) = b.ends().out.pop_front() {
                    a.receive(now, &d);
                }
            }
            4 => {
                b.ends().out.pop_front();
            }
            5 => now_us += u64::from(input.byte()) * 50 + 1,
            6 => {
                if let Some(d) = a.ends().out.front().cloned() {
                    b.receive(now, &d);
                }
            }
            7 => {
                if a.ends().out.len() >= 2 {
                    a.ends().out.swap(0, 1);
                }
            }
            8 | 9 => {
                forged = true;
                if input.byte() & 1 == 0 {
                    corrupt(input, now, a, b);
                } else {
                    corrupt(input, now, b, a);
                }
            }
            _ => unreachable!(),
        }
        let now = Instant::from_micros(now_us);
        a.step(now);
        b.step(now);
    }

    for _ in 0..HEAL_STEPS {
        let now = Instant::from_micros(now_us);
        while let Some(d) = a.ends().out.pop_front() {
            b.receive(now, &d);
        }
        while let Some(d) = b.ends().out.pop_front() {
            a.receive(now, &d);
        }
        a.step(now);
        b.step(now);
        let converged = b.ends().external.cts == a.ends().internal.cts;
        let idle = a.ends().out.is_empty() && b.ends().out.is_empty();
        if (converged && idle) || now_us > HEAL_US {
            break;
        }
        let next = a.poll_at().min(b.poll_at());
        let next_us = next.since(Instant::from_micros(0)).as_micros() as u64;
        now_us = if idle {
            next_us.max(now_us + 1)
        } else {
            now_us
        };
    }
    forged
}
