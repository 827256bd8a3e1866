//! Chaos with the real daemons: random loss on the sync link (nftables
//! `numgen`; this kernel has no netem, so reordering and duplication are
//! the simulation's part, tests/chaos.rs), bursts and deletions of
//! flows, the primary's daemon killed with -9 and restarted, and forged
//! datagrams (2^31 ahead, a fake new session, a DESTROY of a live flow).
//! When the chaos stops and the link heals, the backup's external cache
//! equals the primary's internal cache, entry by entry, within two
//! anti-entropy periods, with no `-B`. Needs root.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use common::fw::{Fw, ask, create, delete, flows, json_number, udp_link};
use common::sniff::{capture, datagram, forge};
use common::{Netns, pair};
use ctsyncd::control::proto::{Cache, Format, Request, Table};
use ctsyncd::wire::{self, Msg, Seq, ct_key_of};

const PERIOD: u64 = 4;
const FW1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const FW2: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 2), 3780);

/// Drops `percent` % of the sync link's datagrams in both directions.
fn lossy(ns: &Netns, percent: u32) {
    ns.sh(&format!(
        "nft -f - <<'EOF'
table inet ctsyncd_chaos {{
    chain in {{ type filter hook input priority -300; udp dport 3780 numgen random mod 100 < {percent} drop; }}
    chain out {{ type filter hook output priority -300; udp dport 3780 numgen random mod 100 < {percent} drop; }}
}}
EOF"
    ));
}

fn heal(ns: &Netns) {
    ns.sh("nft delete table inet ctsyncd_chaos");
}

/// The original tuples in a `--json` dump, as text.
fn origs(fw: &Fw, cache: Cache) -> BTreeSet<String> {
    let req = Request::Dump {
        cache,
        table: Table::Ct,
        format: Format::Json,
    };
    let text = ask(&fw.sock(), &req, Duration::from_secs(10)).unwrap();
    text.split("{\"orig\":")
        .skip(1)
        .map(|s| s[..s.find('}').unwrap_or(s.len())].to_string())
        .collect()
}

/// The primary's session and next number, from a datagram on the link.
fn observe(ns: &Netns) -> Option<(u32, Seq)> {
    let mut seen = None;
    capture(ns, FW1, 3780, Duration::from_secs(3), |d| {
        if let Ok((h, body)) = wire::read(d) {
            for m in wire::messages(body).flatten() {
                if let Msg::Alive { next } = m {
                    seen = Some((h.session, next));
                }
            }
        }
        seen.is_some()
    })?;
    seen
}

#[test]
fn after_chaos_the_backup_equals_the_primary() {
    let Some((a, b)) = pair("cho") else {
        return;
    };
    let sync = |me, peer| {
        format!(
            "Mode FTFW {{ }}\n{}\nOptions {{ AntiEntropyPeriod {PERIOD} }}",
            udp_link(me, peer)
        )
    };
    let general = "HashLimit 100000\n  Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }";
    let mut fw1 = Fw::start(&a, "cho1", general, &sync("10.9.0.1", "10.9.0.2"));
    let fw2 = Fw::start(&b, "cho2", general, &sync("10.9.0.2", "10.9.0.1"));
    let waves: Vec<_> = (0..6)
        .map(|i| flows(&format!("10.14{i}.0.1"), 2_000))
        .collect();
    lossy(&a, 10);
    lossy(&b, 10);
    let t0 = Instant::now();
    for (i, wave) in waves.iter().enumerate() {
        create(&a, wave);
        // Churn: half of the previous wave goes.
        if i > 0 {
            delete(&a, &waves[i - 1][..1_000]);
        }
        match i {
            1 => fw1.crash_and_restart(&a, Duration::from_secs(1)),
            2 | 4 => {
                if let Some((session, next)) = observe(&b) {
                    let victim = Msg::CtDel(ct_key_of(&wave[3]));
                    let far = datagram(
                        session,
                        next + (1 << 31),
                        std::slice::from_ref(&victim),
                    );
                    forge(&a, FW1, FW2, &far);
                    let fake = datagram(
                        session ^ 0x77,
                        Seq(1),
                        std::slice::from_ref(&victim),
                    );
                    forge(&a, FW1, FW2, &fake);
                    forge(&a, FW1, FW2, &datagram(session, next, &[victim]));
                }
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    heal(&a);
    heal(&b);
    eprintln!("chaos for {:?}", t0.elapsed());
    let healed = Instant::now();
    let want = origs(&fw1, Cache::Internal);
    let mut got = origs(&fw2, Cache::External);
    while got != want && healed.elapsed() < Duration::from_secs(2 * PERIOD + 3)
    {
        std::thread::sleep(Duration::from_millis(200));
        got = origs(&fw2, Cache::External);
    }
    let want = origs(&fw1, Cache::Internal);
    let s1 = fw1.stats();
    let s2 = fw2.stats();
    eprintln!(
        "equal after {:?}: fw-1 {} entries, fw-2 {}; fw-1 anti-entropy resent {}, fw-2 pruned {}; fw-2 out_of_window {}, unconfirmed {}, peer_restarts {}; malformed fw-1 {}, fw-2 {}",
        healed.elapsed(),
        want.len(),
        got.len(),
        json_number(&s1, "anti_entropy", "entries_resent"),
        json_number(&s2, "anti_entropy", "entries_pruned"),
        json_number(&s2, "sync", "out_of_window"),
        json_number(&s2, "sync", "unconfirmed"),
        json_number(&s2, "sync", "peer_restarts"),
        json_number(&s1, "sync", "malformed"),
        json_number(&s2, "sync", "malformed"),
    );
    // 6 waves of 2 000, 5 half-waves deleted.
    assert_eq!(want.len(), 12_000 - 5 * 1_000);
    let missing = want.difference(&got).count();
    let stale = got.difference(&want).count();
    assert_eq!((missing, stale), (0, 0), "fw-2 differs from fw-1");
    // Every message either side sent was one the other reads (a build
    // that did not read PruneFor, for one, is sent plain Prunes).
    for s in [&s1, &s2] {
        assert_eq!(json_number(s, "sync", "malformed"), 0);
    }
}
