//! FT-FW over a lossy link, simulated: two engines, a fixed one-way
//! delay, seeded pseudo-random loss in each direction, and the daemon's
//! transmit coalescing, all in simulated milliseconds. Many seeds: every
//! one must converge (nothing lost), and the tail (from the last change to
//! the receiver holding everything) must be short in every run, not only
//! on average.

use std::collections::VecDeque;

use super::test::{ct, key};
use super::*;

/// One-way delay of the sync link.
const DELAY_MS: u64 = 1;
/// The node's transmit coalescing (`node::TX_COALESCE`, `TX_FULL`): a
/// datagram leaves once the oldest waiting change is this old, or once
/// this many keys wait.
const COALESCE_MS: u64 = 2;
const COALESCE_FULL: usize = 48;
/// Simulated time allowed before a run counts as never converging.
const GIVE_UP_MS: u64 = 20_000;
/// Seeds of the lossy run, and its bounds on the tail (simulated).
const SEEDS: u64 = 200;
/// Before probes kept their pace on a heard peer, NACKs measured the
/// round trip and reports were repeated (by the receiver, and echoed from
/// the datagram before), this run's tails were: median 26 ms, 90th
/// percentile 163 ms, worst 3854 ms (seed 118: the first tail probes timed
/// out at the unmeasured default, backed off to a second, and the
/// last-resort resend came after 2.5 s). With them: 11, 24 and 75 ms.
const MEDIAN_BOUND_MS: u64 = 15;
const P90_BOUND_MS: u64 = 40;
const MAX_BOUND_MS: u64 = 120;

/// splitmix64: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `pct` %.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// One node: its engine, the cache it sends from (the sender's internal
/// one; empty on the receiver) and the one it applies to (the external
/// cache), and its coalescing deadline.
struct Node {
    engine: Engine,
    internal: MapSource,
    external: MapSource,
    tx_due: Option<u64>,
}

impl Node {
    fn new(session: u32, peer_session: u32) -> Node {
        let p = Params {
            mode: Mode::FtFw,
            session,
            max_datagram: 1472,
            // conntrackd's defaults, as the daemon's configuration has them.
            resend_queue_size: 131_072,
            ack_window: 300,
            tx_queue_size: 1 << 20,
            refresh_time: Duration::from_secs(5),
            seed: u64::from(session),
        };
        let mut engine = Engine::new(p, Instant::from_millis(0));
        engine.trust(1, peer_session);
        Node {
            engine,
            internal: MapSource::default(),
            external: MapSource::default(),
            tx_due: None,
        }
    }

    fn timers(&mut self, now: Instant) {
        if self.engine.poll_at() <= now {
            self.engine.handle_timeout(now, &self.internal);
        }
    }

    fn receive(&mut self, now: Instant, datagram: &[u8]) {
        self.engine
            .recv(now, 1, datagram, &self.internal)
            .expect("a well-formed datagram");
        while let Some(a) = self.engine.pop_apply() {
            self.external.apply(a);
        }
    }

    /// What the node's transmit step sends at `now` (see `COALESCE_MS`).
    fn transmit(&mut self, now: u64) -> Vec<Vec<u8>> {
        if !self.engine.wants_transmit() {
            self.tx_due = None;
            return Vec::new();
        }
        let due = *self.tx_due.get_or_insert(now + COALESCE_MS);
        if now < due && self.engine.queue_lengths().0 < COALESCE_FULL {
            return Vec::new();
        }
        self.tx_due = None;
        let mut out = Vec::new();
        let mut buf = [0u8; 1472];
        while let Some(len) = self.engine.poll_transmit(
            Instant::from_millis(now),
            &self.internal,
            &mut buf,
        ) {
            out.push(buf[..len].to_vec());
        }
        out
    }
}

/// One direction of the link: datagrams in flight with their arrival
/// times; `loss_pct` % never arrive.
struct Wire {
    flight: VecDeque<(u64, Vec<u8>)>,
    loss_pct: u64,
    sent: u64,
    lost: u64,
}

impl Wire {
    fn new(loss_pct: u64) -> Wire {
        Wire {
            flight: VecDeque::new(),
            loss_pct,
            sent: 0,
            lost: 0,
        }
    }

    fn send(&mut self, now: u64, datagrams: Vec<Vec<u8>>, rng: &mut Rng) {
        for d in datagrams {
            self.sent += 1;
            let lost = rng.chance(self.loss_pct);
            if std::env::var("LOSSY_TRACE").is_ok() {
                trace(now, &d, lost);
            }
            if lost {
                self.lost += 1;
            } else {
                self.flight.push_back((now + DELAY_MS, d));
            }
        }
    }

    fn arrive(&mut self, now: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.flight.front().is_some_and(|(at, _)| *at <= now) {
            out.push(self.flight.pop_front().unwrap().1);
        }
        out
    }
}

/// With `LOSSY_TRACE` set: one line per datagram (time, session, first
/// number, control messages, data count, whether it is lost).
fn trace(now: u64, d: &[u8], lost: bool) {
    let (h, body) = wire::read(d).unwrap();
    let msgs: Vec<Msg> = wire::messages(body).map(Result::unwrap).collect();
    let data = msgs.iter().filter(|m| m.is_data()).count();
    let control: Vec<_> = msgs.iter().filter(|m| !m.is_data()).collect();
    let fate = if lost { " LOST" } else { "" };
    eprintln!(
        "{now} {} seq {:?} +{data} {control:?}{fate}",
        h.session, h.first_seq
    );
}

/// The outcome of one simulated burst.
#[derive(Debug)]
struct Run {
    /// Milliseconds from the last change to the receiver holding every
    /// entry.
    tail_ms: u64,
    probes: u64,
    /// Data messages A sent again, and of those after answered probes.
    retransmitted: u64,
    tail_resent: u64,
}

/// `entries` new conntracks appear on A, `per_ms` each millisecond; the
/// link loses `loss_pct` % each way (decided by `seed`). Runs until B's
/// external cache equals A's internal one.
fn burst(seed: u64, entries: u16, per_ms: u16, loss_pct: u64) -> Run {
    let mut rng = Rng(seed);
    let (mut a, mut b) = (Node::new(100, 200), Node::new(200, 100));
    let (mut a_to_b, mut b_to_a) = (Wire::new(loss_pct), Wire::new(loss_pct));
    let mut made = 0u16;
    let mut last_change = 0;
    for now in 1..GIVE_UP_MS {
        let t = Instant::from_millis(now);
        for d in a_to_b.arrive(now) {
            b.receive(t, &d);
        }
        for d in b_to_a.arrive(now) {
            a.receive(t, &d);
        }
        a.timers(t);
        b.timers(t);
        for _ in 0..per_ms.min(entries - made) {
            made += 1;
            let c = ct(made);
            a.internal.cts.insert(wire::ct_key_of(&c), c.clone());
            a.engine.local_change(key(&c), true);
            last_change = now;
        }
        a_to_b.send(now, a.transmit(now), &mut rng);
        b_to_a.send(now, b.transmit(now), &mut rng);
        if made == entries && b.external.cts.len() == usize::from(entries) {
            assert_eq!(b.external.cts, a.internal.cts, "seed {seed}");
            return Run {
                tail_ms: now - last_change,
                probes: a.engine.stats().probes_sent,
                retransmitted: a.engine.stats().retransmitted,
                tail_resent: a.engine.stats().tail_resent,
            };
        }
    }
    panic!(
        "seed {seed}: B has {} of {entries} after {GIVE_UP_MS} ms; A {:?}; \
         lost {}/{} and {}/{}",
        b.external.cts.len(),
        a.engine.stats(),
        a_to_b.lost,
        a_to_b.sent,
        b_to_a.lost,
        b_to_a.sent
    );
}

fn percentile(sorted: &[u64], pct: usize) -> u64 {
    sorted[(sorted.len() - 1) * pct / 100]
}

#[test]
fn a_lossless_link_has_no_tail_to_recover() {
    let r = burst(1, 3000, 20, 0);
    assert!(r.tail_ms <= 2 * COALESCE_MS + DELAY_MS, "{r:?}");
    assert_eq!((r.probes, r.retransmitted, r.tail_resent), (0, 0, 0));
}

#[test]
fn twenty_percent_loss_each_way_converges_fast_for_every_seed() {
    // One seed, traced with LOSSY_TRACE; LOSSY_BURST=entries,per_ms.
    if let Ok(seed) = std::env::var("LOSSY_SEED") {
        let (n, rate) = std::env::var("LOSSY_BURST")
            .ok()
            .and_then(|b| {
                let (n, r) = b.split_once(',')?;
                Some((n.parse().ok()?, r.parse().ok()?))
            })
            .unwrap_or((3000, 20));
        eprintln!("{:?}", burst(seed.parse().unwrap(), n, rate, 20));
        return;
    }
    let runs: Vec<(u64, Run)> = (0..SEEDS)
        .map(|seed| (seed, burst(seed, 3000, 20, 20)))
        .collect();
    let mut tails: Vec<u64> = runs.iter().map(|(_, r)| r.tail_ms).collect();
    tails.sort_unstable();
    let (median, p90, max) = (
        percentile(&tails, 50),
        percentile(&tails, 90),
        tails[tails.len() - 1],
    );
    let worst = runs.iter().max_by_key(|(_, r)| r.tail_ms).unwrap();
    eprintln!(
        "tail over {SEEDS} seeds: median {median} ms, p90 {p90} ms, \
         max {max} ms (seed {}: {:?})",
        worst.0, worst.1
    );
    assert!(median <= MEDIAN_BOUND_MS, "median {median} ms");
    assert!(p90 <= P90_BOUND_MS, "90th percentile {p90} ms");
    assert!(max <= MAX_BOUND_MS, "worst seed {}: {:?}", worst.0, worst.1);
}
