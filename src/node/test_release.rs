//! When the node tells the daemon to hand freed memory back to the system
//! (`Outbox::release_memory`): once a send queue of at least
//! [`RELEASE_AFTER`] keys has drained (`-B` to a peer that never answers,
//! the notify script's after a failover), and after a flush of a cache
//! that large; never while the queue still holds keys, nor for small ones.

use std::time::Duration;

use super::*;
use crate::config;
use crate::control::proto::{CacheSel, Request};
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::{L4, Tuple};

/// An FT-FW node whose internal cache holds `n` conntracks, put there as
/// a resync would (nothing sent).
fn node_holding(n: u32) -> Node {
    let text = "General { UNIX { Path /x } HashLimit 200000 }\nSync { Mode FTFW { }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    let now = Instant::from_millis(0);
    let mut node = Node::new(cfg, 1, 1, 1472, 212_992, now);
    for i in 0..n {
        let msg = Message {
            kind: Kind::New,
            object: Object::Ct(flow(i)),
            port: 0,
            seq: 0,
        };
        let out = node.handle(now, Input::Kernel(msg, Origin::Flush));
        assert!(out.datagrams.is_empty() && !out.release_memory);
    }
    assert_eq!(node.internal_ct.len(), n as usize);
    node
}

/// The `i`th of a set of distinct UDP conntracks.
fn flow(i: u32) -> Conntrack {
    let orig = Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: 17,
        l4: L4::Ports {
            src: (i % 60_000) as u16,
            dst: 53 + (i / 60_000) as u16,
        },
    };
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(orig.inverse());
    ct
}

fn control(node: &mut Node, now: Instant, request: Request) -> Outbox {
    let links = Vec::new();
    node.handle(
        now,
        Input::Control {
            client: 1,
            request,
            links: &links,
            control: Default::default(),
        },
    )
}

/// `-B`, then the timers until the send queue is empty (bounded): the
/// datagrams sent, and when the release came (`Some(keys still queued
/// then)`, None when it never did).
fn bulk_until_drained(node: &mut Node) -> (usize, Option<usize>) {
    let mut now = Instant::from_millis(10);
    let mut out = control(node, now, Request::BulkSend);
    let (mut datagrams, mut released) = (0, None);
    for _ in 0..1000 {
        datagrams += out.datagrams.len();
        if out.release_memory {
            assert!(released.is_none(), "released twice");
            released = Some(node.engine.queue_lengths().0);
        }
        if node.engine.queue_lengths().0 == 0 {
            break;
        }
        now = node.poll_at().max(now + Duration::from_micros(1));
        out = node.handle(now, Input::Timer);
    }
    assert_eq!(node.engine.queue_lengths().0, 0, "the bulk never drained");
    (datagrams, released)
}

#[test]
fn a_drained_bulk_of_many_keys_releases_memory_once_and_a_small_one_does_not() {
    let n = RELEASE_AFTER as u32;
    let mut big = node_holding(n);
    let (datagrams, released) = bulk_until_drained(&mut big);
    assert!(datagrams > 100, "{datagrams} datagrams for {n} entries");
    assert_eq!(released, Some(0), "released once the queue was empty");
    // No peer was ever heard: past ftfw::SILENT_HOLD the resend queue
    // gave the states up (the peer gets a bulk when heard) and keeps none.
    assert_eq!(big.engine.queue_lengths().1, 0);
    assert_eq!(big.engine.stats().given_up_silent, RELEASE_AFTER as u64);
    // A second bulk as large, once drained, releases again.
    let out = control(&mut big, Instant::from_millis(5_000), Request::BulkSend);
    let mut any = out.release_memory;
    for _ in 0..1000 {
        if big.engine.queue_lengths().0 == 0 {
            break;
        }
        let at = big.poll_at();
        any |= big.handle(at, Input::Timer).release_memory;
    }
    assert!(any, "a second bulk as large releases again");

    let mut small = node_holding(100);
    let (datagrams, released) = bulk_until_drained(&mut small);
    assert!(datagrams > 0);
    assert_eq!(released, None, "100 keys are not worth a trim");
}

#[test]
fn flushing_a_large_cache_releases_memory_and_a_small_one_does_not() {
    let now = Instant::from_millis(10);
    for sel in [CacheSel::Internal, CacheSel::All] {
        let mut big = node_holding(RELEASE_AFTER as u32);
        let out = control(&mut big, now, Request::FlushCache(sel));
        assert!(out.release_memory, "{sel:?}");
        assert_eq!(big.internal_ct.len(), 0);
    }
    // The external cache is empty here: flushing it frees nothing.
    let mut big = node_holding(RELEASE_AFTER as u32);
    let out = control(&mut big, now, Request::FlushCache(CacheSel::External));
    assert!(!out.release_memory);
    let mut small = node_holding(100);
    let out = control(&mut small, now, Request::FlushCache(CacheSel::All));
    assert!(!out.release_memory);
}

/// A resync dump's part as the worker hands it in.
fn resync_part(node: &mut Node, from: u32, to: u32, last: bool) -> Outbox {
    let purpose = Purpose::Resync {
        client: None,
        conntracks: true,
        expectations: false,
        send: false,
        announce_new: false,
    };
    let objects = (from..to).map(|i| Object::Ct(flow(i))).collect();
    let done = Done::Dumped { objects, last };
    node.handle(
        Instant::from_millis(10),
        Input::Job(Completion { purpose, done }),
    )
}

#[test]
fn a_large_resync_dump_releases_memory_at_its_end_and_a_small_one_does_not() {
    let half = RELEASE_AFTER as u32 / 2;
    let mut node = node_holding(0);
    let first = resync_part(&mut node, 0, half, false);
    assert!(!first.release_memory, "not before the dump's last part");
    let last = resync_part(&mut node, half, 2 * half, true);
    assert!(last.release_memory, "the parts count together");
    assert_eq!(node.internal_ct.len(), 2 * half as usize);
    // The count starts over: a small dump after it releases nothing.
    let small = resync_part(&mut node, 0, 100, true);
    assert!(!small.release_memory);
}

/// A datagram of the peer's (session 77) carrying `msgs`, its data
/// numbered from 1.
fn from_peer(msgs: &[crate::wire::Msg]) -> Vec<u8> {
    use crate::wire::{Header, Seq, Writer};
    let mut buf = [0u8; 1472];
    let header = Header {
        flags: 0,
        session: 77,
        first_seq: Seq(1),
    };
    let mut w = Writer::new(&mut buf, header).unwrap();
    for m in msgs {
        w.push(m).unwrap();
    }
    let n = w.finish();
    buf[..n].to_vec()
}

/// Every message in `datagrams`, with the sequence number of each data
/// message.
fn read_all(
    datagrams: &[Vec<u8>],
) -> Vec<(Option<crate::wire::Seq>, crate::wire::Msg)> {
    let mut all = Vec::new();
    for d in datagrams {
        let (h, body) = crate::wire::read(d).unwrap();
        let mut seq = h.first_seq;
        for m in crate::wire::messages(body).map(Result::unwrap) {
            if m.is_data() {
                all.push((Some(seq), m));
                seq = seq.next();
            } else {
                all.push((None, m));
            }
        }
    }
    all
}

/// To a live peer a bulk's memory is the send queue's and the resend
/// queue's: handed back once the peer acknowledged it, not as soon as
/// the send queue drained, when every state still waits for its ACK
/// (the trim then found little to give back, and the resend queue was
/// freed after it: 100 000 left the daemon 7.6 MB larger).
#[test]
fn a_bulk_to_a_live_peer_releases_memory_once_acknowledged() {
    use crate::wire::{Msg, Seq};
    let mut node = node_holding(RELEASE_AFTER as u32);
    let mut now = Instant::from_millis(10);
    let datagram = |node: &mut Node, now, bytes: &[u8]| {
        node.handle(
            now,
            Input::Datagram {
                link: 0,
                peer: 1,
                bytes,
            },
        )
    };
    // The peer's first word, challenged; its answer proves it.
    let alive = from_peer(&[Msg::Alive { next: Seq(1) }]);
    let mut sent = datagram(&mut node, now, &alive).datagrams;
    node.tx.due_now(now);
    sent.extend(node.handle(now, Input::Timer).datagrams);
    let nonce = read_all(&sent)
        .into_iter()
        .find_map(|(_, m)| match m {
            Msg::Challenge { nonce } => Some(nonce),
            _ => None,
        })
        .expect("a challenge");
    let answer = Msg::Response {
        echo: nonce,
        from: Seq(1),
        next: Seq(1),
    };
    datagram(&mut node, now, &from_peer(&[answer]));
    assert!(node.engine.stats().challenges_answered >= 1, "proven");
    let out = control(&mut node, now, Request::BulkSend);
    assert!(!out.release_memory);
    let mut sent = out.datagrams;
    for _ in 0..1000 {
        if node.engine.queue_lengths().0 == 0 {
            break;
        }
        now = node.poll_at().max(now + Duration::from_micros(1));
        let out = node.handle(now, Input::Timer);
        assert!(!out.release_memory, "released before the ACK");
        sent.extend(out.datagrams);
    }
    let (tx, resend) = node.engine.queue_lengths();
    assert_eq!(tx, 0, "the bulk never drained");
    assert_eq!(resend, RELEASE_AFTER, "every state waits for its ACK");
    let seqs: Vec<Seq> =
        read_all(&sent).into_iter().filter_map(|(s, _)| s).collect();
    let (from, to) = (seqs[0], seqs[seqs.len() - 1]);
    let ack = from_peer(&[Msg::Ack { from, to }]);
    let out = datagram(&mut node, now + Duration::from_millis(1), &ack);
    assert_eq!(node.engine.queue_lengths(), (0, 0));
    assert!(out.release_memory, "released once acknowledged");
}
