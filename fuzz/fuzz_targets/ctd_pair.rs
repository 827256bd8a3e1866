//! Two conntrackd-protocol engines (`sync::ctd`, FT-FW) over a link the
//! input drives, as engine_pair does for ctsyncd's own: changes on A,
//! delivery, loss, duplication, reordering, time jumps and corrupt
//! copies; then the link heals. No panic, and without a corrupt copy, a
//! bound's drop or a peer restart, B's external cache must equal A's
//! entries. Restarts are left out of that check: a reordered HELLO during
//! an open handshake is taken for a restart and can apply a late message
//! over a newer one, as conntrackd does (src/sync/ctd/mod.rs).
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use ctsyncd::model::{Conntrack, L4, Mode, Tuple};
use ctsyncd::sync::ctd::{CtdEngine, Params};
use ctsyncd::sync::{Key, MapSource};
use ctsyncd::time::Instant;
use ctsyncd::wire;
use ctsyncd::wire::ctd::Options;

const QUEUE: usize = 64;
const IN_FLIGHT: usize = 32;
const MAX_OPS: usize = 400;
const HEAL_US: u64 = 60_000_000;
const HEAL_STEPS: usize = 200_000;

struct Side {
    engine: CtdEngine,
    internal: MapSource,
    external: MapSource,
    out: VecDeque<Vec<u8>>,
    link_full: u64,
}

impl Side {
    fn new(first_seq: u32) -> Side {
        let p = Params {
            mode: Mode::FtFw,
            first_seq,
            max_datagram: 1472,
            resend_queue_size: QUEUE,
            ack_window: 4,
            tx_queue_size: QUEUE,
            refresh_time: Duration::from_secs(1),
            opts: Options::default(),
        };
        Side {
            engine: CtdEngine::new(p, Instant::from_micros(0)),
            internal: MapSource::default(),
            external: MapSource::default(),
            out: VecDeque::new(),
            link_full: 0,
        }
    }

    fn step(&mut self, now: Instant) {
        if self.engine.poll_at() <= now {
            self.engine.handle_timeout(now, &self.internal);
        }
        let mut buf = [0u8; 1472];
        while let Some(n) = self.engine.poll_transmit(now, &self.internal, &mut buf) {
            if self.out.len() < IN_FLIGHT {
                self.out.push_back(buf[..n].to_vec());
            } else {
                self.link_full += 1;
            }
        }
    }

    fn receive(&mut self, now: Instant, d: &[u8]) {
        let _ = self.engine.recv(now, d, &self.internal);
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
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let s0 = u32::from_be_bytes([input.byte(), input.byte(), input.byte(), input.byte()]);
    let s1 = u32::from_be_bytes([input.byte(), input.byte(), input.byte(), input.byte()]);
    let (mut a, mut b) = (Side::new(s0), Side::new(s1));
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
                // A corrupt copy of the next datagram either way.
                forged = true;
                let to_b = input.byte() & 1 == 0;
                let (from, to) = if to_b { (&a, &mut b) } else { (&b, &mut a) };
                let pos = usize::from(input.byte());
                let x = input.byte();
                if let Some(mut d) = from.out.front().cloned() {
                    let i = pos % d.len();
                    d[i] ^= x;
                    to.receive(now, &d);
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
    // A late or duplicated HELLO is taken for a restart and may be
    // applied out of order (see the header).
    let restarts = a.engine.stats().peer_restarts + b.engine.stats().peer_restarts;
    if !forged && dropped == 0 && restarts == 0 {
        assert_eq!(
            b.external.cts, a.internal.cts,
            "B did not converge after the link healed; A {:?}, B {:?}",
            a.engine.stats(),
            b.engine.stats()
        );
    }
});
