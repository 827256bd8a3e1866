//! Two FT-FW engines over a link the input drives: the primary A changes
//! entries, datagrams each way are delivered, dropped, duplicated or
//! reordered, time jumps, and forged datagrams (well framed, in the
//! peer's session, numbered near the real stream) reach either side.
//! Then the link heals. Nothing may panic; and when nothing was forged
//! and no bound dropped anything, B's external cache must equal A's
//! entries within a virtual minute. When the input's first byte has B ask
//! for a resync (`-n`), B must also have heard, a few ticks later, that
//! the resync is complete (`-s ready`). `engine_recv` feeds raw bytes, which
//! rarely pass the framing; this target reaches the sessions, the
//! reports, the probes and the resend queue with libFuzzer's guidance.
#![no_main]

mod pair;

use std::time::Duration;

use ctsyncd::config::Mode;
use ctsyncd::sync::{Engine, Key, Params};
use ctsyncd::time::Instant;
use ctsyncd::wire;
use pair::{Ends, Input, Peer};

const A_SESSION: u32 = 100;
const B_SESSION: u32 = 200;
/// Small bounds, so that the input reaches them.
const QUEUE: usize = 64;
/// Datagrams in flight per direction (the link's buffer).
const IN_FLIGHT: usize = 32;

struct Side {
    engine: Engine,
    ends: Ends,
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
            ends: Ends::default(),
            last_header: None,
            link_full: 0,
            session,
        }
    }
}

impl Peer for Side {
    fn ends(&mut self) -> &mut Ends {
        &mut self.ends
    }

    fn change(&mut self, key: Key, exists: bool) {
        self.engine.local_change(key, exists);
    }

    fn step(&mut self, now: Instant) {
        if self.engine.poll_at() <= now {
            self.engine.handle_timeout(now, &self.ends.internal);
        }
        let mut buf = [0u8; 1472];
        while let Some(n) =
            self.engine
                .poll_transmit(now, &self.ends.internal, &mut buf)
        {
            let d = buf[..n].to_vec();
            if let Ok((h, _)) = wire::read(&d) {
                self.last_header = Some((h.session, h.first_seq.0));
            }
            if self.ends.out.len() < IN_FLIGHT {
                self.ends.out.push_back(d);
            } else {
                self.link_full += 1;
            }
        }
    }

    fn receive(&mut self, now: Instant, d: &[u8]) {
        // A refusal is counted by the engine; only a panic is a finding.
        let _ = self.engine.recv(now, 1, d, &self.ends.internal);
        while let Some(a) = self.engine.pop_apply() {
            self.ends.external.apply(a);
        }
    }

    fn poll_at(&self) -> Instant {
        self.engine.poll_at()
    }
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

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (mut a, mut b) = (Side::new(A_SESSION), Side::new(B_SESSION));
    let asked = input.byte() & 1 == 1 && b.engine.request_resync();
    // A forged datagram in the sender's session, numbered near its stream.
    let forged =
        pair::run(&mut input, &mut a, &mut b, |input, now, from, to| {
            let (session, seq) = from.last_header.unwrap_or((from.session, 0));
            let delta = i32::from(input.byte() as i8);
            let flags = input.byte();
            let len = usize::from(input.byte());
            let body = input.bytes(len).to_vec();
            let d =
                forge(session, seq.wrapping_add_signed(delta), flags, &body);
            to.receive(now, &d);
        });
    let dropped = {
        let (sa, sb) = (a.engine.stats(), b.engine.stats());
        sa.resend_queue_dropped
            + sa.tx_queue_full
            + sb.resend_queue_dropped
            + sb.tx_queue_full
            + a.link_full
            + b.link_full
    };
    if !forged && dropped == 0 {
        assert_eq!(
            b.ends.external.cts,
            a.ends.internal.cts,
            "B did not converge after the link healed; A {:?}, B {:?}",
            a.engine.stats(),
            b.engine.stats()
        );
        if asked {
            // The healed link, on for a few more ticks: the word that the
            // resync is complete follows the ACK of the bulk's end.
            let mut now = a.poll_at().min(b.poll_at());
            for _ in 0..64 {
                if !b.engine.awaiting_resync() {
                    break;
                }
                while let Some(d) = a.ends.out.pop_front() {
                    b.receive(now, &d);
                }
                while let Some(d) = b.ends.out.pop_front() {
                    a.receive(now, &d);
                }
                now = now.max(a.poll_at().min(b.poll_at()));
                a.step(now);
                b.step(now);
            }
            assert!(
                !b.engine.awaiting_resync(),
                "B never heard that its resync was complete; A {:?}, B {:?}",
                a.engine.stats(),
                b.engine.stats()
            );
        }
    }
});
