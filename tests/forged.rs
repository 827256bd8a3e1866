//! One datagram cannot break the stream: forged from the primary's
//! address with what an attacker on the link sees (the session, the next
//! sequence number), a datagram 2^31 ahead and one claiming a new session
//! are refused and counted, and new flows keep replicating; a forged
//! DESTROY that is accepted (right session, right number) is repaired by
//! anti-entropy within one period. Real daemons
//! in two network namespaces; the attacker sniffs the link with a packet
//! socket. Needs root.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::fw::{Fw, create, flows, json_number, udp_link};
use common::pair;
use common::sniff::{capture, datagram, forge};
use ctsyncd::wire::{self, Msg, Seq, ct_key_of};

/// Anti-entropy's period in these tests (seconds).
const PERIOD: u64 = 3;
const FW1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const FW2: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 2), 3780);

fn config(me: &str, peer: &str) -> (String, String) {
    (
        "Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }".into(),
        format!(
            "Mode FTFW {{ }}\n{}\nOptions {{ AntiEntropyPeriod {PERIOD} }}",
            udp_link(me, peer)
        ),
    )
}

/// The primary's session and next sequence number, from an ALIVE it sends
/// when idle (once a second).
fn observe(ns: &common::Netns) -> (u32, Seq) {
    let mut seen = None;
    capture(ns, FW1, 3780, Duration::from_secs(5), |d| {
        let Ok((h, body)) = wire::read(d) else {
            return false;
        };
        for m in wire::messages(body).flatten() {
            if let Msg::Alive { next } = m {
                seen = Some((h.session, next));
            }
        }
        seen.is_some()
    })
    .expect("no ALIVE from fw-1 on the link");
    seen.unwrap()
}

#[test]
fn forged_datagrams_never_stop_replication() {
    let Some((a, b)) = pair("fgd") else {
        return;
    };
    let (g1, s1) = config("10.9.0.1", "10.9.0.2");
    let (g2, s2) = config("10.9.0.2", "10.9.0.1");
    let fw1 = Fw::start(&a, "fgd1", &g1, &s1);
    let fw2 = Fw::start(&b, "fgd2", &g2, &s2);
    let first = flows("10.120.0.1", 100);
    create(&a, &first);
    assert!(
        fw2.wait_cached("external", 100, Duration::from_secs(10))
            .is_some()
    );
    let (session, next) = observe(&b);
    let victim = Msg::CtDel(ct_key_of(&first[0]));

    // 2^31 ahead, in the primary's session: the datagram that once made
    // "Lost msgs" jump by 2^31 and stopped replication for good.
    let far =
        datagram(session, next + (1 << 31), std::slice::from_ref(&victim));
    forge(&a, FW1, FW2, &far);
    // A "new session" of the primary: never answers the challenge.
    forge(&a, FW1, FW2, &datagram(session ^ 0x5a5a, Seq(0), &[victim]));

    let second = flows("10.121.0.1", 100);
    create(&a, &second);
    let took = fw2.wait_cached("external", 200, Duration::from_secs(10));
    let s = fw2.stats();
    eprintln!(
        "after the forgeries: 100 new flows on fw-2 {took:?}; out_of_window {}, unconfirmed {}, lost {}",
        json_number(&s, "sync", "out_of_window"),
        json_number(&s, "sync", "unconfirmed"),
        json_number(&s, "sync", "lost"),
    );
    assert!(
        took.is_some(),
        "replication stopped: {}",
        fw2.cached("external")
    );
    assert!(json_number(&s, "sync", "out_of_window") >= 1);
    assert!(json_number(&s, "sync", "unconfirmed") >= 1);
    assert!(json_number(&s, "sync", "lost") < 1000, "no 2^31 'lost'");
    assert_eq!(json_number(&s, "sync", "peer_restarts"), 0);

    // A forged DESTROY of a live flow, numbered as the primary's next: it
    // is applied (nothing tells it from the real thing without a key).
    let (session, next) = observe(&b);
    let live = Msg::CtDel(ct_key_of(&second[7]));
    forge(&a, FW1, FW2, &datagram(session, next, &[live]));
    let gone = fw2.wait_cached("external", 199, Duration::from_secs(5));
    eprintln!("forged DESTROY applied after {gone:?}");
    // Anti-entropy finds and repairs it. The forgery took the primary's
    // next number, so the primary's own message of that number is read as
    // a duplicate and dropped (and acknowledged); when that message is the
    // repair itself (nothing else was sent in between), the next round
    // repairs it: two periods, plus the narrowing.
    let limit = Duration::from_secs(2 * PERIOD + 2);
    let back = fw2.wait_cached("external", 200, limit);
    let s1 = fw1.stats();
    eprintln!(
        "repaired after {back:?}; fw-1 anti-entropy: {} rounds, {} entries sent again",
        json_number(&s1, "anti_entropy", "rounds"),
        json_number(&s1, "anti_entropy", "entries_resent"),
    );
    assert!(back.is_some(), "not repaired: {}", fw2.cached("external"));
    assert!(fw1.log().contains("anti-entropy: "), "{}", fw1.log());
}
