//! Two conntrackd-protocol engines (`sync::ctd`, FT-FW) over a link the
//! input drives, as engine_pair does for ctsyncd's own: changes on A,
//! delivery, loss, duplication, reordering, time jumps and corrupt
//! copies; then the link heals. No panic, and without a corrupt copy, a
//! bound's drop or a peer restart, B's external cache must equal A's
//! entries. Restarts are left out of that check: a reordered HELLO during
//! an open handshake is taken for a restart and can apply a late message
//! over a newer one, as conntrackd does (src/sync/ctd/mod.rs).
#![no_main]

mod pair;

use std::time::Duration;

use ctsyncd::model::Mode;
use ctsyncd::sync::Key;
use ctsyncd::sync::ctd::{CtdEngine, Params};
use ctsyncd::time::Instant;
use ctsyncd::wire::ctd::Options;
use pair::{Ends, Input, Peer};

const QUEUE: usize = 64;
const IN_FLIGHT: usize = 32;

struct Side {
    engine: CtdEngine,
    ends: Ends,
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
            ends: Ends::default(),
            link_full: 0,
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
            if self.ends.out.len() < IN_FLIGHT {
                self.ends.out.push_back(buf[..n].to_vec());
            } else {
                self.link_full += 1;
            }
        }
    }

    fn receive(&mut self, now: Instant, d: &[u8]) {
        let _ = self.engine.recv(now, d, &self.ends.internal);
        while let Some(a) = self.engine.pop_apply() {
            self.ends.external.apply(a);
        }
    }

    fn poll_at(&self) -> Instant {
        self.engine.poll_at()
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let s0 = u32::from_be_bytes([
        input.byte(),
        input.byte(),
        input.byte(),
        input.byte(),
    ]);
    let s1 = u32::from_be_bytes([
        input.byte(),
        input.byte(),
        input.byte(),
        input.byte(),
    ]);
    let (mut a, mut b) = (Side::new(s0), Side::new(s1));
    // A corrupt copy of the next datagram either way.
    let forged =
        pair::run(&mut input, &mut a, &mut b, |input, now, from, to| {
            let pos = usize::from(input.byte());
            let x = input.byte();
            if let Some(mut d) = from.ends.out.front().cloned() {
                let i = pos % d.len();
                d[i] ^= x;
                to.receive(now, &d);
            }
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
    // A late or duplicated HELLO is taken for a restart and may be
    // applied out of order (see the header).
    let restarts =
        a.engine.stats().peer_restarts + b.engine.stats().peer_restarts;
    if !forged && dropped == 0 && restarts == 0 {
        assert_eq!(
            b.ends.external.cts,
            a.ends.internal.cts,
            "B did not converge after the link healed; A {:?}, B {:?}",
            a.engine.stats(),
            b.engine.stats()
        );
    }
});
