//! Two FT-FW engines over a link the input drives: the primary A changes
//! entries, datagrams each way are delivered, dropped, duplicated or
//! reordered, time jumps, and forged datagrams (well framed, in the
//! peer's session, numbered near the real stream) reach either side.
//! Then the link heals. Nothing may panic; and when nothing was forged
//! and no bound dropped anything, B's external cache must equal A's
//! entries within a virtual minute. `engine_recv` feeds raw bytes, which
//! rarely pass the framing; this target reaches the sessions, the
//! reports, the probes and the resend queue with libFuzzer's guidance.
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use ctsyncd::config::Mode;
use ctsyncd::model::{Conntrack, L4, Tuple};
use ctsyncd::sync::{Engine, Key, MapSource, Params};
use ctsyncd::time::Instant;
use ctsyncd::wire;

const A_SESSION: u32 = 100;
const B_SESSION: u32 = 200;
/// Small bounds, so that the input reaches them.
const QUEUE: usize = 64;
/// Datagrams in flight per direction (the link's buffer).
const IN_FLIGHT: usize = 32;
const MAX_OPS: usize = 400;
const HEAL_US: u64 = 60_000_000;
const HEAL_STEPS: usize = 200_000;

struct Side {
    engine: Engine,
    /// What this side sends from (A's entries; B's is empty).
    internal: MapSource,
    /// What it applied from its peer.
    external: MapSource,
    /// Datagrams it sent, not yet delivered.
    out: VecDeque<Vec<u8>>,
    /// The header of the last datagram it sent (session, first number).
    last_header: Option<(u32, u32)>,
    link_full: u64,
    session: u32,
}

impl Side {
    fn new(session: u32) -> Side {
        let p = Params {
            mode: Mode::FtFw,
            session,
            max_datagram: 1472,
            resend_queue_size: QUEUE,
            ack_window: 4,
            tx_queue_size: QUEUE,
            refresh_time: Duration::from_secs(1),
            seed: u64::from(session),
        };
        Side {
            engine: Engine::new(p, Instant::from_micros(0)),
            internal: MapSource::default(),
            external: MapSource::default(),
            out: VecDeque::new(),
            last_header: None,
            link_full: 0,
            session,
        }
    }

    /// Runs due timers and queues whatever the engine sends now.
    fn step(&mut self, now: Instant) {
        if self.engine.poll_at() <= now {
            self.engine.handle_timeout(now, &self.internal);
        }
        let mut buf = [0u8; 1472];
        while let Some(n) = self.engine.poll_transmit(now, &self.internal, &mut buf) {
            let d = buf[..n].to_vec();
            if let Ok((h, _)) = wire::read(&d) {
                self.last_header = Some((h.session, h.first_seq.0));
            }
            if self.out.len() < IN_FLIGHT {
                self.out.push_back(d);
            } else {
                self.link_full += 1;
            }
        }
    }

    fn receive(&mut self, now: Instant, d: &[u8]) {
        // A refusal is counted by the engine; only a panic is a finding.
        let _ = self.engine.recv(now, 1, d, &self.internal);
        while let Some(a) = self.engine.pop_apply() {
            self.external.apply(a);
        }
    }
}

fn ct(port: u16, timeout: u32) -> Conntrack {
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

/// A well-framed plain datagram around `body`.
fn forge(session: u32, first_seq: u32, flags: u8, body: &[u8]) -> Vec<u8> {
    let body = &body[..body.len().min(1400)];
    let mut d = Vec::with_capacity(wire::HEADER_LEN + body.len());
    d.extend_from_slice(&wire::MAGIC);
    d.push(wire::VERSION);
    d.push(flags);
    d.extend_from_slice(&session.to_be_bytes());
    d.extend_from_slice(&first_seq.to_be_bytes());
    d.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    d.extend_from_slice(body);
    d
}

/// Reads the input a byte at a time (zeros once it runs out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (mut a, mut b) = (Side::new(A_SESSION), Side::new(B_SESSION));
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
                let key = Key::Ct(wire::ct_key_of(&c));
                if how & 1 == 1 {
                    a.internal.cts.remove(&wire::ct_key_of(&c));
                    a.engine.local_change(key, false);
                } else {
                    a.internal.cts.insert(wire::ct_key_of(&c), c);
                    a.engine.local_change(key, true);
                }
            }
            1 => {
                if let Some(d) = a.out.pop_front() {
                    b.receive(now, &d);
                }
            }
            2 => {
                a.out.pop_front();
            }
            3 => {
                if let Some(d) = b.out.pop_front() {
                    a.receive(now, &d);
                }
            }
            4 => {
                b.out.pop_front();
            }
            5 => now_us += u64::from(input.byte()) * 50 + 1,
            6 => {
                if let Some(d) = a.out.front().cloned() {
                    b.receive(now, &d);
                }
            }
            7 => {
                if a.out.len() >= 2 {
                    a.out.swap(0, 1);
                }
            }
            8 | 9 => {
                forged = true;
                let to_b = input.byte() & 1 == 0;
                let (from, to) = if to_b { (&a, &mut b) } else { (&b, &mut a) };
                let (session, seq) = from.last_header.unwrap_or((from.session, 0));
                let delta = i32::from(input.byte() as i8);
                let flags = input.byte();
                let len = usize::from(input.byte());
                let body = input.bytes(len).to_vec();
                let d = forge(session, seq.wrapping_add_signed(delta), flags, &body);
                to.receive(now, &d);
            }
            _ => unreachable!(),
        }
        let now = Instant::from_micros(now_us);
        a.step(now);
        b.step(now);
    }

    // The link heals: everything is delivered, time runs to the next
    // deadline.
    for _ in 0..HEAL_STEPS {
        let now = Instant::from_micros(now_us);
        while let Some(d) = a.out.pop_front() {
            b.receive(now, &d);
        }
        while let Some(d) = b.out.pop_front() {
            a.receive(now, &d);
        }
        a.step(now);
        b.step(now);
        let converged = b.external.cts == a.internal.cts;
        if (converged && a.out.is_empty() && b.out.is_empty()) || now_us > HEAL_US {
            break;
        }
        let next = a.engine.poll_at().min(b.engine.poll_at());
        let next_us = next.since(Instant::from_micros(0)).as_micros() as u64;
        now_us = if a.out.is_empty() && b.out.is_empty() {
            next_us.max(now_us + 1)
        } else {
            now_us
        };
    }
    let dropped = {
        let (sa, sb) = (a.engine.stats(), b.engine.stats());
        sa.resend_queue_dropped + sa.tx_queue_full + sb.resend_queue_dropped + sb.tx_queue_full
            + a.link_full
            + b.link_full
    };
    if !forged && dropped == 0 {
        assert_eq!(
            b.external.cts, a.internal.cts,
            "B did not converge after the link healed; A {:?}, B {:?}",
            a.engine.stats(),
            b.engine.stats()
        );
    }
});

