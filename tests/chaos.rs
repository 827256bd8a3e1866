//! Chaos (issue 14, part 4): the whole-firewall simulation (`sim/`) for a
//! few virtual minutes of everything at once: a link that loses,
//! reorders and duplicates (its weather changes), is cut now and then;
//! flow churn and bursts of new flows on the primary; the primary's
//! daemon killed and restarted (a new session over the same kernel,
//! whose flows created while it was down only its start-up dump knows);
//! the backup's daemon restarted (with or without `-n`); event socket
//! overruns; and forged datagrams from the primary's address: one 2^31
//! ahead in its real session, one of a fake new session, one ahead
//! within the sequence window, and a DESTROY of a live flow with the
//! right session and the right next number (applied: only anti-entropy
//! repairs it). Then the chaos stops, the
//! link heals, and within two anti-entropy periods the backup's external
//! cache must equal the primary's internal cache, entry by entry, and
//! the primary's internal cache its kernel. In FT-FW, and in NOTRACK
//! (nothing is resent there: anti-entropy repairs every loss).
//!
//! Also measured here: the digest traffic at rest at 100 000 entries.
//!
//! `SIM_SEEDS=n` runs seeds 1..=n (default [`SEEDS`]), `SIM_SEED=s` one
//! seed; `SIM_STATS=1` prints a line per seed (with when the caches
//! first agreed after the link healed). A failing seed prints its
//! transcript ([`World::fail`]). The simulation is seeded, but the
//! node's caches hash with random keys, so the order of a bulk send or
//! a repair, and what follows, may differ between two runs of a seed.

mod sim;

use std::collections::HashSet;

use ctsyncd::control::proto::{Cache, Request, Table};
use ctsyncd::model::Conntrack;
use ctsyncd::node::render::ct_json;
use ctsyncd::time::Instant;
use ctsyncd::wire::{self, Header, Msg, Seq, Writer, ct_key_of};
use sim::flows::{established, flow};
use sim::net::LinkParams;
use sim::script::{
    FW1, FW2, assert_internal_is_kernel, assert_replicated, backup, churn,
    primary,
};
use sim::traffic::Traffic;
use sim::{World, cfg};

/// Anti-entropy's period in the chaos (seconds).
const PERIOD: u64 = 10;
/// How long the chaos lasts (virtual milliseconds).
const CHAOS: u64 = 120_000;
/// Seeds in a default `cargo test`: FT-FW runs them all, NOTRACK every
/// [`SHARDS`]th.
const SEEDS: u64 = 16;
/// Test functions the seeds are spread over (they run in parallel).
const SHARDS: u64 = 4;
/// Burst flows are numbered from here (apart from [`Traffic`]'s).
const BURST_BASE: u32 = 1 << 21;

/// What the forged datagrams did in one run.
#[derive(Debug, Default, Clone, Copy)]
struct Forged {
    /// Datagrams 2^31 ahead sent, and `out_of_window` refusals seen.
    far: u64,
    far_refused: u64,
    /// Fake new sessions sent, and `unconfirmed` datagrams seen.
    fake: u64,
    fake_unconfirmed: u64,
    /// Datagrams ahead within the window sent.
    near: u64,
    /// Forged DESTROYs of a flow the backup held, and those applied.
    destroys: u64,
    destroys_applied: u64,
}

impl Forged {
    fn add(&mut self, o: Forged) {
        self.far += o.far;
        self.far_refused += o.far_refused;
        self.fake += o.fake;
        self.fake_unconfirmed += o.fake_unconfirmed;
        self.near += o.near;
        self.destroys += o.destroys;
        self.destroys_applied += o.destroys_applied;
    }
}

/// Bursts of new flows, and what is left of them.
struct Bursts {
    next: u32,
    alive: Vec<Conntrack>,
}

impl Bursts {
    /// `n` new flows at once (no time passes).
    fn burst(&mut self, w: &mut World, n: u64) {
        for _ in 0..n {
            let c = flow(self.next);
            self.next += 1;
            if w.new_flow(FW1, &c) {
                self.alive.push(c);
            }
        }
    }

    /// Some of the burst flows are answered (ESTABLISHED), some end.
    fn churn(&mut self, w: &mut World, n: u64) {
        for _ in 0..n {
            if self.alive.is_empty() {
                return;
            }
            let k = w.rng.below(self.alive.len() as u64) as usize;
            if w.rng.chance(50) {
                let c = established(self.alive[k].clone());
                assert!(w.update_flow(FW1, &c));
                self.alive[k] = c;
            } else {
                let c = self.alive.swap_remove(k);
                assert!(w.end_flow(FW1, &ct_key_of(&c)));
            }
        }
    }
}

/// A link's weather for a while.
fn weather(w: &mut World) -> LinkParams {
    LinkParams {
        loss: w.rng.below(25),
        dup: w.rng.below(10),
        delay: 1 + w.rng.below(3),
        jitter: w.rng.below(30),
    }
}

// ===== forging =====

/// One datagram as a sender would frame it (no key is configured).
fn datagram(session: u32, first: Seq, msgs: &[Msg]) -> Vec<u8> {
    let mut buf = [0u8; sim::MAX_DATAGRAM];
    let header = Header {
        flags: 0,
        session,
        first_seq: first,
    };
    let mut w = Writer::new(&mut buf, header).unwrap();
    for m in msgs {
        w.push(m).unwrap();
    }
    let n = w.finish();
    buf[..n].to_vec()
}

/// What someone on the link learns from fw1's datagrams in flight: its
/// session and the next number it will use (the highest of an ALIVE's
/// `next`, a RESPONSE's `next`, and the number after a datagram's data
/// messages).
fn sniff(w: &World) -> Option<(u32, Seq)> {
    let mut seen: Option<(u32, Seq)> = None;
    for d in w.link.in_flight(FW1) {
        let Ok((h, body)) = wire::read(d) else {
            continue;
        };
        let mut next = h.first_seq;
        let mut said = None;
        for m in wire::messages(body).flatten() {
            match m {
                Msg::Alive { next } | Msg::Response { next, .. } => {
                    said = Some(next);
                }
                m if m.is_data() => next = next.next(),
                _ => {}
            }
        }
        let mut n = said.map_or(next, |s| if s > next { s } else { next });
        if let Some((_, before)) = seen {
            if before > n {
                n = before;
            }
        }
        seen = Some((h.session, n));
    }
    seen
}

/// Waits (up to 3 s, the link going on) for a datagram of fw1's in
/// flight and reads it. One millisecond at a time: a datagram is in
/// flight for about that long, and a coarser step can step over every
/// one of an idle link's few.
fn observe(w: &mut World) -> Option<(u32, Seq)> {
    for _ in 0..3000 {
        if w.fws[FW1].node.is_none() || w.fws[FW2].node.is_none() {
            return None;
        }
        if let Some(s) = sniff(w) {
            return Some(s);
        }
        w.run(1);
    }
    None
}

/// The start of a conntrack's `-e --json` object: its original tuple.
fn orig_of(json: &str) -> &str {
    let end = json.find(",\"reply\"").expect("reply after orig");
    &json[..end]
}

/// The original tuples of fw2's external conntracks, as JSON.
fn held_by_backup(w: &mut World) -> HashSet<String> {
    let external = w.cache(FW2, Cache::External, Table::Ct);
    external.iter().map(|e| orig_of(e).to_string()).collect()
}

fn sync_stats(w: &World, i: usize) -> ctsyncd::sync::Stats {
    w.fws[i]
        .node()
        .snapshot(Instant::from_millis(w.now), &[], false)
        .sync
}

/// The three forged datagrams, one after the other, from fw1's address
/// to fw2.
fn forge(w: &mut World) -> Forged {
    let mut f = Forged::default();
    if !w.link.up {
        return f;
    }
    let Some((session, next)) = observe(w) else {
        return f;
    };
    // A live flow the backup holds: the victim.
    let held = held_by_backup(w);
    let Some(victim) = w.fws[FW1]
        .kernel
        .conntracks()
        .find(|c| held.contains(orig_of(&ct_json(c, 0))))
        .cloned()
    else {
        return f;
    };
    let del = Msg::CtDel(ct_key_of(&victim));
    let settle = w.link.params.delay + 1;

    // 2^31 ahead in the real session.
    let before = sync_stats(w, FW2);
    let far = datagram(session, next + (1 << 31), std::slice::from_ref(&del));
    w.link.forge(w.now, FW1, FW2, &far);
    w.run(settle);
    f.far = 1;
    f.far_refused = sync_stats(w, FW2).out_of_window - before.out_of_window;

    // A "new session" of the primary's: it never answers the challenge.
    let before = sync_stats(w, FW2);
    let fake = datagram(session ^ 0x5a5a, Seq(0), std::slice::from_ref(&del));
    w.link.forge(w.now, FW1, FW2, &fake);
    w.run(settle);
    f.fake = 1;
    f.fake_unconfirmed = sync_stats(w, FW2).unconfirmed - before.unconfirmed;

    // A DESTROY of the victim, numbered as the primary's next. (The
    // primary's own message with that number will be taken for a
    // duplicate.)
    let Some((session, next)) = sniff(w).or(Some((session, next))) else {
        return f;
    };
    let destroy = datagram(session, next, std::slice::from_ref(&del));
    w.link.forge(w.now, FW1, FW2, &destroy);
    w.run(settle);
    f.destroys = 1;
    if !held_by_backup(w).contains(orig_of(&ct_json(&victim, 0))) {
        f.destroys_applied = 1;
    }

    // Ahead within the window: a gap of numbers the primary never used
    // (last: it would make the DESTROY above look late).
    let ahead = 1_000 + w.rng.below(100_000) as u32;
    let near = datagram(session, next + 1 + ahead, &[del]);
    w.link.forge(w.now, FW1, FW2, &near);
    w.run(settle);
    f.near = 1;
    f
}

// ===== the chaos =====

/// One seed of chaos; returns what the forgeries did.
fn chaos(seed: u64, mode: &str) -> Forged {
    let c = cfg(
        "NetlinkOverrunResync 1",
        mode,
        &format!("ExpectationSync On\nAntiEntropyPeriod {PERIOD}"),
    );
    let params = LinkParams {
        loss: 10,
        dup: 5,
        delay: 1,
        jitter: 15,
    };
    let mut w = World::new(seed, params, vec![c.clone(), c]);
    w.start(FW1);
    w.start(FW2);
    primary(&mut w, FW1);
    backup(&mut w, FW2);
    let mut t = Traffic::new(0);
    let mut b = Bursts {
        next: BURST_BASE,
        alive: Vec::new(),
    };
    let mut forged = Forged::default();
    let mut restarts = [0u32; 2];
    while w.now < CHAOS {
        match w.rng.below(100) {
            0..40 => {
                let n = 10 + w.rng.below(50) as u32;
                churn(&mut w, &mut t, FW1, n);
            }
            40..52 => {
                let n = 20 + w.rng.below(130);
                b.burst(&mut w, n);
            }
            52..62 => {
                let n = w.rng.below(100);
                b.churn(&mut w, n);
            }
            62..68 => {
                // kill -9 of the primary's daemon during the storm; the
                // kernel goes on without it.
                w.crash(FW1);
                let n = w.rng.below(100) as u32;
                churn(&mut w, &mut t, FW1, n);
                let n = w.rng.below(150);
                b.burst(&mut w, n);
                let down = 200 + w.rng.below(3000);
                w.run(down);
                w.start(FW1);
                restarts[FW1] += 1;
            }
            68..72 => {
                w.crash(FW2);
                let n = w.rng.below(100) as u32;
                churn(&mut w, &mut t, FW1, n);
                let down = w.rng.below(3000);
                w.run(down);
                w.start(FW2);
                // keepalived does not always rerun notify backup (-n).
                if w.rng.chance(50) {
                    backup(&mut w, FW2);
                }
                restarts[FW2] += 1;
            }
            72..80 => forged.add(forge(&mut w)),
            80..84 => {
                w.link.up = false;
                let cut = 100 + w.rng.below(2000);
                w.run(cut);
                w.link.up = true;
            }
            84..87 => w.overrun(FW1),
            _ => {}
        }
        if w.rng.chance(15) {
            w.link.params = weather(&mut w);
        }
        let idle = w.rng.below(2500);
        w.run(idle);
    }
    // The chaos stops; the link heals; at most two periods.
    w.link.up = true;
    w.link.params = LinkParams::PERFECT;
    let healed = w.now;
    let stats = std::env::var_os("SIM_STATS").is_some();
    // With SIM_STATS, when they first agree (checked every second).
    let mut equal_after = None;
    while w.now < healed + 2 * PERIOD * 1000 {
        w.run(1000);
        if stats && equal_after.is_none() && agree(&mut w) {
            equal_after = Some(w.now - healed);
        }
    }
    assert_internal_is_kernel(&mut w, FW1);
    assert_replicated(&mut w, FW1, FW2);
    if stats {
        let now = Instant::from_millis(w.now);
        let s = w.fws[FW1].node().snapshot(now, &[], false);
        let ae = s.anti_entropy.unwrap_or_default();
        let r = w.fws[FW2].node().snapshot(now, &[], false);
        let k = &w.fws[FW1].kernel;
        eprintln!(
            "seed {seed}: healed at {healed} ms, equal after {equal_after:?} \
             ms; {} cts {} exps; {} \
             changes + {} burst flows; restarts {restarts:?}; {forged:?}; \
             {} datagrams ({} lost); fw1 anti-entropy {} rounds, {} leaves \
             repaired, {} resent; fw2 pruned {}, out_of_window {}, \
             unconfirmed {}",
            k.ct_count(),
            k.exp_count(),
            t.changes,
            b.next - BURST_BASE,
            w.link.sent,
            w.link.lost,
            ae.rounds,
            ae.leaves_repaired,
            ae.entries_resent,
            r.anti_entropy.unwrap_or_default().entries_pruned,
            r.sync.out_of_window,
            r.sync.unconfirmed,
        );
    }
    forged
}

/// Whether fw2's external cache is fw1's internal cache (both tables).
fn agree(w: &mut World) -> bool {
    [Table::Ct, Table::Expect].into_iter().all(|t| {
        w.cache(FW1, Cache::Internal, t) == w.cache(FW2, Cache::External, t)
    })
}

/// Runs this shard's seeds (or `SIM_SEED` alone, if it is one of them)
/// and checks that the forgeries were tried and did what they do.
fn shard(k: u64, mode: &str) {
    let n = std::env::var("SIM_SEEDS")
        .map(|s| s.parse().expect("SIM_SEEDS is a number"))
        .unwrap_or(SEEDS);
    let only = std::env::var("SIM_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("SIM_SEED is a number"));
    let seeds: Vec<u64> = (1..=n)
        .filter(|s| s % SHARDS == k)
        .filter(|s| only.is_none_or(|o| o == *s))
        .collect();
    let mut all = Forged::default();
    for seed in &seeds {
        all.add(chaos(*seed, mode));
    }
    if seeds.len() >= 4 {
        assert!(all.far > 0 && all.far_refused > 0, "{all:?}");
        assert!(all.fake > 0 && all.fake_unconfirmed > 0, "{all:?}");
        assert!(all.destroys > 0 && all.destroys_applied > 0, "{all:?}");
    }
}

#[test]
fn chaos_converges_shard_0() {
    shard(0, "FTFW { }");
}

#[test]
fn chaos_converges_shard_1() {
    shard(1, "FTFW { }");
}

#[test]
fn chaos_converges_shard_2() {
    shard(2, "FTFW { }");
}

#[test]
fn chaos_converges_shard_3() {
    shard(3, "FTFW { }");
}

/// NOTRACK: nothing is resent, so whatever the link loses only
/// anti-entropy repairs.
#[test]
fn chaos_converges_notrack() {
    shard(0, "NOTRACK { }");
}

// ===== the digest traffic at rest =====

/// The bytes of a datagram's anti-entropy messages (DigestTop,
/// DigestSub, Prune), without the header and the other messages it
/// shares the datagram with.
fn digest_bytes(d: &[u8]) -> u64 {
    let Ok((_, body)) = wire::read(d) else {
        return 0;
    };
    let mut rest = body;
    let mut n = 0;
    while let Ok((m, tail)) = postcard::take_from_bytes::<Msg>(rest) {
        if matches!(
            m,
            Msg::DigestTop { .. } | Msg::DigestSub { .. } | Msg::Prune { .. }
        ) {
            n += (rest.len() - tail.len()) as u64;
        }
        rest = tail;
    }
    n
}

fn tapped(w: &mut World) -> Vec<(usize, Vec<u8>)> {
    w.link.tap.replace(Vec::new()).unwrap_or_default()
}

/// 100 000 flows, the default period: the initial sync (a backup that
/// starts empty asks with `-n`) against what anti-entropy sends once the
/// caches agree, over four periods. It must stay under 1 % of the
/// initial sync's bytes per minute.
#[test]
fn digest_traffic_at_rest_is_under_one_percent_of_the_initial_sync() {
    const ENTRIES: u32 = 100_000;
    const PERIODS: u64 = 4;
    let c = cfg("", "FTFW { }", "");
    let period = c.sync.as_ref().unwrap().anti_entropy_period as u64;
    let mut w = World::new(1, LinkParams::PERFECT, vec![c.clone(), c]);
    w.trace = false;
    for n in 0..ENTRIES {
        assert!(w.new_flow(FW1, &established(flow(n))));
    }
    w.start(FW1);
    w.start(FW2);
    w.link.tap = Some(Vec::new());
    w.ok(FW2, Request::RequestResync);
    w.run(20_000);
    let sync = tapped(&mut w);
    let initial: u64 = sync.iter().map(|(_, d)| d.len() as u64).sum();
    // (Equal entry by entry: no bucket differs below, four times.)
    let ext =
        w.fws[FW2]
            .node()
            .snapshot(Instant::from_millis(w.now), &[], false);
    assert_eq!(ext.external_ct.len, ENTRIES as usize);

    // At rest: nothing changes for four periods.
    let ae = |w: &World, i: usize| {
        let now = Instant::from_millis(w.now);
        w.fws[i]
            .node()
            .snapshot(now, &[], false)
            .anti_entropy
            .unwrap()
    };
    let before = [ae(&w, FW1), ae(&w, FW2)];
    w.run(PERIODS * period * 1000);
    let rest = tapped(&mut w);
    let after = [ae(&w, FW1), ae(&w, FW2)];
    let bytes = |f: &dyn Fn(&[u8]) -> bool| -> u64 {
        let it = rest.iter().filter(|(_, d)| f(d));
        it.map(|(_, d)| d.len() as u64).sum()
    };
    let messages: u64 = rest.iter().map(|(_, d)| digest_bytes(d)).sum();
    // The datagrams that carry them, whole (an upper bound).
    let carrying = bytes(&|d| digest_bytes(d) > 0);
    let all = bytes(&|_| true);
    let minutes = (PERIODS * period) as f64 / 60.0;
    let per_minute = carrying as f64 / minutes;
    eprintln!(
        "{ENTRIES} entries: initial sync {initial} bytes in {} datagrams; \
         at rest (period {period} s, {PERIODS} periods): anti-entropy \
         messages {:.0} bytes/min, datagrams carrying them {per_minute:.0} \
         bytes/min ({:.4} % of the initial sync), all traffic {:.0} \
         bytes/min",
        sync.len(),
        messages as f64 / minutes,
        100.0 * per_minute / initial as f64,
        all as f64 / minutes,
    );
    for i in [FW1, FW2] {
        assert_eq!(
            after[i].rounds - before[i].rounds,
            PERIODS,
            "fw{}: a round per period",
            i + 1
        );
        assert_eq!(after[i].buckets_differing, before[i].buckets_differing);
        assert_eq!(after[i].entries_resent, before[i].entries_resent);
        assert_eq!(after[i].entries_pruned, before[i].entries_pruned);
    }
    assert!(messages > 0, "no digest on the link at rest");
    assert!(per_minute < initial as f64 / 100.0);
}

// ===== a forged datagram ahead, within the window =====

/// A forged datagram in the primary's session numbered `ahead` past its
/// next number, then 50 new flows on the primary: the backup must hold
/// them within 3 s (anti-entropy is off: the stream alone must recover).
fn ahead_then_new_flows(ahead: u32) {
    let c = cfg("", "FTFW { }", "AntiEntropyPeriod 0");
    let mut w = World::new(1, LinkParams::PERFECT, vec![c.clone(), c]);
    w.start(FW1);
    w.start(FW2);
    primary(&mut w, FW1);
    backup(&mut w, FW2);
    let mut b = Bursts {
        next: BURST_BASE,
        alive: Vec::new(),
    };
    b.burst(&mut w, 20);
    w.run(2_000);
    assert_replicated(&mut w, FW1, FW2);
    let Some((session, next)) = observe(&mut w) else {
        w.fail("nothing of fw1's in flight");
    };
    let del = Msg::CtDel(ct_key_of(&b.alive[0]));
    let d = datagram(session, next + ahead, &[del]);
    w.link.forge(w.now, FW1, FW2, &d);
    w.run(10);
    b.burst(&mut w, 50);
    w.run(3_000);
    let held = held_by_backup(&mut w);
    let missing = b.alive[20..]
        .iter()
        .filter(|c| !held.contains(orig_of(&ct_json(c, 0))))
        .count();
    let s = sync_stats(&w, FW2);
    w.ensure(missing == 0, || {
        format!(
            "{ahead} ahead: {missing} of 50 new flows missing on fw2 after \
             3 s (lost {}, before {}, out_of_window {})",
            s.lost, s.before, s.out_of_window
        )
    });
}

#[test]
fn a_datagram_far_ahead_does_not_stall_replication() {
    ahead_then_new_flows(1 << 31);
}

/// Found by the chaos' forgeries: a datagram numbered ahead but within
/// `rx::WINDOW` moved the backup's expectation past it, and FT-FW then
/// dropped every real message as late (anti-entropy's resends too) until
/// the primary's numbering caught up. Now the primary's next ALIVE,
/// behind the expectation, is refused and the session challenged; its
/// answer re-anchors the tracking (src/sync/rx.rs `SeqTrack::alive`).
#[test]
fn a_datagram_ahead_within_the_window_does_not_stall_replication() {
    ahead_then_new_flows(100_000);
}
