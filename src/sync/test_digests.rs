//! Anti-entropy messages on the background queue: a Prune too big for
//! the link goes in parts and blocks nothing, at the smallest datagram
//! (576 bytes) the digests and prunes fit and are sent, and prunes
//! beyond the queue's room are dropped and counted.

use super::test::params;
use super::*;
use crate::wire::{Header, Writer};

#[test]
fn a_prune_too_big_for_the_link_goes_in_parts_and_blocks_nothing() {
    // IPv6 link with MTU 1280: max_datagram 1232; a Prune of KEEP_MAX
    // hashes (about 1300 bytes) does not fit one datagram, and left at
    // the head of the background queue it blocked the DigestSubs.
    let t = Instant::from_millis(0);
    let mut p = params(Mode::FtFw, 100);
    p.max_datagram = 1232;
    let mut a = Engine::new(p, t);
    a.trust(1, 200);
    let src = MapSource::default();
    a.send_digest(Msg::Prune {
        table: wire::Table::Ct,
        bucket: 1,
        sub: 2,
        lo: 0,
        hi: u64::MAX,
        keep: wire::KeyHashes(vec![u64::MAX / 3; wire::KEEP_MAX]),
    });
    for b in 0..3u8 {
        a.send_digest(Msg::DigestSub {
            table: wire::Table::Ct,
            bucket: b,
            sums: wire::Sums([1; wire::FANOUT]),
        });
    }
    let mut buf = [0u8; 1472];
    let mut sent = 0;
    while a.poll_transmit(t, &src, &mut buf).is_some() {
        sent += 1;
    }
    assert!(
        sent > 0 && !a.wants_transmit(),
        "sent {sent} datagrams; the DigestSubs wait behind the Prune forever (wants_transmit={}, too_big={})",
        a.wants_transmit(),
        a.stats().too_big
    );
}

/// Every message in the datagrams `a` sends now (each at most `limit`
/// bytes).
fn sent_messages(a: &mut Engine, limit: usize) -> Vec<Msg> {
    let src = MapSource::default();
    let mut buf = [0u8; 1472];
    let mut out = Vec::new();
    while let Some(n) = a.poll_transmit(Instant::ZERO, &src, &mut buf) {
        assert!(n <= limit, "{n} bytes");
        let (_, body) = wire::read(&buf[..n]).unwrap();
        out.extend(wire::messages(body).map(Result::unwrap));
    }
    out
}

#[test]
fn at_576_bytes_the_digests_and_prunes_fit_and_are_sent() {
    // The smallest datagram a link is given (channel::max_datagram).
    let mut p = params(Mode::FtFw, 100);
    p.max_datagram = 576;
    let mut a = Engine::new(p, Instant::ZERO);
    a.trust(1, 200);
    // Dense sums (every bucket non-zero): their largest encoding.
    let sums = wire::Sums(std::array::from_fn(|i| i as u64 + 1));
    let top = Msg::DigestTop {
        table: wire::Table::Ct,
        sums,
    };
    let sub = Msg::DigestSub {
        table: wire::Table::Exp,
        bucket: 63,
        sums,
    };
    // A full Prune as anti-entropy builds it (for 1472 bytes).
    let keep: Vec<u64> = (0..wire::KEEP_MAX as u64).map(|i| i << 40).collect();
    a.send_digest(top.clone());
    a.send_digest(sub.clone());
    a.send_digest(Msg::Prune {
        table: wire::Table::Ct,
        bucket: 0,
        sub: 0,
        lo: 0,
        hi: u64::MAX,
        keep: wire::KeyHashes(keep.clone()),
    });
    let msgs = sent_messages(&mut a, 576);
    assert_eq!(a.stats().too_big, 0);
    assert!(!a.wants_transmit());
    assert_eq!(msgs[..2], [top, sub]);
    // The Prune in parts that cover its range in order, and keep it all.
    let mut next = 0u64;
    let mut kept: Vec<u64> = Vec::new();
    for m in &msgs[2..] {
        let Msg::Prune { lo, hi, keep, .. } = m else {
            panic!("{m:?}");
        };
        assert_eq!(*lo, next);
        kept.extend(&keep.0);
        next = hi.wrapping_add(1);
    }
    assert_eq!(next, 0, "up to u64::MAX");
    assert!(msgs.len() > 3, "in parts");
    assert_eq!(kept, keep);
}

/// A repair of more leaves than the background queue holds (1024: one
/// anti-entropy flush builds a Prune per differing leaf, up to 4096) drops
/// the oldest: counted, so `-s --json` shows it (it was silent).
#[test]
fn prunes_beyond_the_background_queue_are_dropped_and_counted() {
    let mut a = Engine::new(params(Mode::FtFw, 100), Instant::ZERO);
    a.trust(1, 200);
    for bucket in 0..1100u32 {
        a.send_digest(Msg::Prune {
            table: wire::Table::Ct,
            bucket: (bucket % 64) as u8,
            sub: (bucket / 64) as u8,
            lo: 0,
            hi: u64::MAX,
            keep: wire::KeyHashes(vec![u64::from(bucket)]),
        });
    }
    assert_eq!(a.stats().background_dropped, 1100 - 1024);
}

/// A datagram from trusted `peer` (1 or 2: sessions 200, 300) with header
/// `flags`.
fn hear(a: &mut Engine, peer: u64, flags: u8, src: &MapSource) {
    let mut buf = [0u8; 1472];
    let header = Header {
        flags,
        session: [0, 200, 300][peer as usize],
        first_seq: Seq(1),
    };
    let mut w = Writer::new(&mut buf, header).unwrap();
    w.push(&Msg::Alive { next: Seq(1) }).unwrap();
    let n = w.finish();
    a.recv(Instant::ZERO, peer, &buf[..n], src).unwrap();
}

/// Every datagram says this build reads `PruneFor`; a Prune names its ask
/// only when every peer's last datagram said the same, and goes as the
/// plain Prune an older build reads otherwise (split alike on a small
/// link, the ask counted in each part's room). Two peers share the link
/// (multicast): one older build among them is enough.
#[test]
fn a_prune_names_its_ask_only_to_a_peer_that_reads_it() {
    let mut p = params(Mode::FtFw, 100);
    p.max_datagram = 576;
    let mut a = Engine::new(p, Instant::ZERO);
    a.trust(1, 200);
    a.trust(2, 300);
    let keep: Vec<u64> = (0..wire::KEEP_MAX as u64).map(|i| i << 40).collect();
    let prune = Msg::PruneFor {
        ask: u64::MAX,
        table: wire::Table::Ct,
        bucket: 0,
        sub: 0,
        lo: 0,
        hi: u64::MAX,
        keep: wire::KeyHashes(keep.clone()),
    };
    let src = MapSource::default();
    let pf = wire::flag::PRUNE_FOR;
    for (peer, peer_flags, named) in [
        (1, 0, false),
        (1, pf, true),
        (1, wire::flag::HELLO_BACK, false),
        (1, pf, true),
        (2, 0, false),
        (1, pf, false),
        (2, pf, true),
    ] {
        let mut buf = [0u8; 1472];
        hear(&mut a, peer, peer_flags, &src);
        a.send_digest(prune.clone());
        let mut kept: Vec<u64> = Vec::new();
        let mut parts = 0;
        while let Some(n) = a.poll_transmit(Instant::ZERO, &src, &mut buf) {
            assert!(n <= 576, "{n} bytes");
            let (h, body) = wire::read(&buf[..n]).unwrap();
            assert_ne!(h.flags & wire::flag::PRUNE_FOR, 0, "{h:?}");
            for m in wire::messages(body).map(Result::unwrap) {
                let part = match (&m, named) {
                    (Msg::PruneFor { ask, keep, .. }, true) => {
                        assert_eq!(*ask, u64::MAX);
                        keep
                    }
                    (Msg::Prune { keep, .. }, false) => keep,
                    (Msg::PruneFor { .. } | Msg::Prune { .. }, _) => {
                        panic!("peer flags {peer_flags:#x}: {m:?}")
                    }
                    _ => continue,
                };
                parts += 1;
                kept.extend(&part.0);
            }
        }
        assert!(parts > 1, "in parts at 576 bytes");
        assert_eq!(kept, keep, "peer flags {peer_flags:#x}");
    }
}

/// Every datagram says this build reads `DigestSubFor`; an ask names
/// itself only when every peer's last datagram said the same, and goes as
/// the plain DigestSub an older build reads otherwise (a build that reads
/// only `PruneFor` is such a one).
#[test]
fn an_ask_names_itself_only_to_a_peer_that_reads_it() {
    let mut a = Engine::new(params(Mode::FtFw, 100), Instant::ZERO);
    a.trust(1, 200);
    a.trust(2, 300);
    let sums = wire::Sums([7; 64]);
    let ask = Msg::DigestSubFor {
        ask: 42,
        table: wire::Table::Exp,
        bucket: 3,
        sums,
    };
    let plain = Msg::DigestSub {
        table: wire::Table::Exp,
        bucket: 3,
        sums,
    };
    let src = MapSource::default();
    let (pf, dsf) = (wire::flag::PRUNE_FOR, wire::flag::DIGEST_SUB_FOR);
    for (peer, peer_flags, named) in [
        (1, pf, false),
        (1, pf | dsf, true),
        (2, 0, false),
        (1, pf | dsf, false),
        (2, pf | dsf, true),
    ] {
        let mut buf = [0u8; 1472];
        hear(&mut a, peer, peer_flags, &src);
        a.send_digest(ask.clone());
        let mut sent = Vec::new();
        while let Some(n) = a.poll_transmit(Instant::ZERO, &src, &mut buf) {
            let (h, body) = wire::read(&buf[..n]).unwrap();
            assert_ne!(h.flags & dsf, 0, "{h:?}");
            sent.extend(
                wire::messages(body)
                    .map(Result::unwrap)
                    .filter(|m| !matches!(m, Msg::Alive { .. })),
            );
        }
        let want = if named { &ask } else { &plain };
        assert_eq!(
            sent,
            std::slice::from_ref(want),
            "peer flags {peer_flags:#x}"
        );
    }
}

/// A named ask or Prune queued while every peer read names goes plain
/// when an older build is heard before it leaves (one joined the link, or
/// a node was downgraded): sent as queued, the older build counted it
/// malformed and dropped the rest of its datagram.
#[test]
fn what_waits_goes_plain_when_an_older_peer_is_heard() {
    let mut a = Engine::new(params(Mode::FtFw, 100), Instant::ZERO);
    a.trust(1, 200);
    a.trust(2, 300);
    let src = MapSource::default();
    let (pf, dsf) = (wire::flag::PRUNE_FOR, wire::flag::DIGEST_SUB_FOR);
    hear(&mut a, 1, pf | dsf, &src);
    let sums = wire::Sums([7; 64]);
    let keep = wire::KeyHashes(vec![9]);
    a.send_digest(Msg::DigestSubFor {
        ask: 42,
        table: wire::Table::Ct,
        bucket: 3,
        sums,
    });
    let prune_for = Msg::PruneFor {
        ask: 43,
        table: wire::Table::Ct,
        bucket: 3,
        sub: 4,
        lo: 0,
        hi: u64::MAX,
        keep: keep.clone(),
    };
    a.send_digest(prune_for.clone());
    // Peer 2 reads PruneFor only: the ask goes plain, the Prune named.
    hear(&mut a, 2, pf, &src);
    let sent = |a: &mut Engine| {
        let mut buf = [0u8; 1472];
        let mut msgs = Vec::new();
        while let Some(n) = a.poll_transmit(Instant::ZERO, &src, &mut buf) {
            let (_, body) = wire::read(&buf[..n]).unwrap();
            msgs.extend(wire::messages(body).map(Result::unwrap).filter(|m| {
                matches!(
                    m,
                    Msg::DigestSub { .. }
                        | Msg::DigestSubFor { .. }
                        | Msg::Prune { .. }
                        | Msg::PruneFor { .. }
                )
            }));
        }
        msgs
    };
    let plain_ask = Msg::DigestSub {
        table: wire::Table::Ct,
        bucket: 3,
        sums,
    };
    assert_eq!(sent(&mut a), [plain_ask.clone(), prune_for.clone()]);
    // The same queued again, then a peer that reads neither.
    a.send_digest(Msg::DigestSubFor {
        ask: 44,
        table: wire::Table::Ct,
        bucket: 3,
        sums,
    });
    a.send_digest(prune_for);
    hear(&mut a, 2, 0, &src);
    let plain_prune = Msg::Prune {
        table: wire::Table::Ct,
        bucket: 3,
        sub: 4,
        lo: 0,
        hi: u64::MAX,
        keep,
    };
    assert_eq!(sent(&mut a), [plain_ask, plain_prune]);
}
