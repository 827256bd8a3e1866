//! Real sockets: two channel endpoints in network namespaces exchange
//! datagrams over UDP, IPv4 and IPv6 multicast, and TCP; losing a link
//! fails over to the next one. Needs root (CI runs it).

mod common;

use std::time::Duration;

use ctsyncd::channel::{Channels, Failover};
use ctsyncd::config;

fn sync_section(body: &str) -> config::Sync {
    let text = format!(
        "General {{ UNIX {{ Path /x }} }}\nSync {{ Mode FTFW {{ }}\n{body}\n}}"
    );
    config::parse(&text, "t.conf").unwrap().config.sync.unwrap()
}

fn open_in(ns: &common::Netns, body: &str) -> Channels {
    ns.enter(|| Channels::open(&sync_section(body)).unwrap())
}

/// Sends from `a` until `b` receives `msg` (bounded: UDP may race the
/// other side's socket setup, TCP needs its connection first).
fn deliver(a: &mut Channels, b: &mut Channels, msg: &[u8]) -> usize {
    smol::block_on(async {
        let mut buf = vec![0u8; 2048];
        for _ in 0..50 {
            a.send(msg);
            let got = smol::future::or(
                async { Some(b.recv(&mut buf).await) },
                async {
                    // Keep `a` moving (TCP connects and flushes in poll).
                    let mut abuf = [0u8; 64];
                    let _ = smol::future::or(a.recv(&mut abuf), async {
                        smol::Timer::after(Duration::from_millis(100)).await;
                        (0, 0, "0.0.0.0:0".parse().unwrap())
                    })
                    .await;
                    None
                },
            )
            .await;
            if let Some((link, n, _)) = got
                && &buf[..n] == msg
            {
                return link;
            }
        }
        panic!(
            "nothing arrived: sender {:?} {:?}, receiver {:?} {:?}",
            a.links[0].stats,
            a.links[0].tcp_connected(),
            b.links[0].stats,
            b.links[0].tcp_connected()
        );
    })
}

/// A minimal valid frame (TCP links need our framing).
fn frame(tag: u8) -> Vec<u8> {
    vec![b'c', b'T', 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 2, tag, tag]
}

#[test]
fn udp_both_ways_and_foreign_senders_are_dropped() {
    let Some((na, nb)) = common::pair("u") else {
        return;
    };
    let udp = |me: u8, peer: u8| {
        format!(
            "UDP {{ IPv4_address 10.9.0.{me} IPv4_Destination_Address 10.9.0.{peer} Port 3780 Interface s0 }}"
        )
    };
    let mut a = open_in(&na, &udp(1, 2));
    let mut b = open_in(&nb, &udp(2, 1));
    assert_eq!(a.max_datagram(), 1472);
    assert_eq!(deliver(&mut a, &mut b, &frame(1)), 0);
    assert_eq!(deliver(&mut b, &mut a, &frame(2)), 0);
    assert!(a.links[0].stats.pkts_sent >= 1 && b.links[0].stats.pkts_recv >= 1);
    // A datagram from another address of the peer's namespace is refused.
    nb.sh(&format!("ip addr add 10.9.0.3/24 dev s0 && {} -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.9.0.3', 0)); s.sendto(b'x'*20, ('10.9.0.1', 3780))\"", common::PY));
    assert_eq!(deliver(&mut b, &mut a, &frame(3)), 0);
    assert_eq!(a.links[0].stats.foreign, 1);
}

#[test]
fn multicast_ipv4_and_ipv6() {
    let Some((na, nb)) = common::pair("m") else {
        return;
    };
    let v4 = |me: u8| {
        format!(
            "Multicast {{ IPv4_address 225.0.0.50 IPv4_interface 10.9.0.{me} Group 3780 Interface s0 }}"
        )
    };
    let mut a = open_in(&na, &v4(1));
    let mut b = open_in(&nb, &v4(2));
    assert_eq!(deliver(&mut a, &mut b, &frame(4)), 0);
    assert_eq!(deliver(&mut b, &mut a, &frame(5)), 0);
    let v6 = "Multicast { IPv6_address ff02::fc Group 3781 Interface s1 }";
    let mut a6 = open_in(&na, v6);
    let mut b6 = open_in(&nb, v6);
    assert_eq!(a6.max_datagram(), 1452);
    assert_eq!(deliver(&mut a6, &mut b6, &frame(6)), 0);
}

/// Receives `n` frames, answering each with its tag + 100; gives up
/// after 20 s (returning what it got) so a failure cannot hang the run.
async fn echo(c: &mut Channels, n: usize) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut tags = Vec::new();
    let deadline = smol::Timer::after(Duration::from_secs(20));
    let receive = async {
        while tags.len() < n {
            let (_, len, _) = c.recv(&mut buf).await;
            let tag = buf[len - 1];
            tags.push(tag);
            c.send(&frame(tag + 100));
        }
    };
    smol::future::or(receive, async {
        deadline.await;
    })
    .await;
    tags
}

/// Keeps `c` polled until every queued frame is written on a connected
/// link (at least `min_ms`, at most 10 s). A fixed linger is not enough:
/// when our first connect races the peer's listener, the retry comes a
/// reconnect interval (1 s) later.
async fn linger(c: &mut Channels, min_ms: u64) {
    const TICK_MS: u64 = 50;
    let mut buf = [0u8; 64];
    for tick in 0..10_000 / TICK_MS {
        let drained = c.links.iter().all(|l| {
            l.unsent() == 0 && l.tcp_connected().is_none_or(|(_, out)| out)
        });
        if drained && tick * TICK_MS >= min_ms {
            return;
        }
        smol::future::or(
            async {
                c.recv(&mut buf).await;
            },
            async {
                smol::Timer::after(Duration::from_millis(TICK_MS)).await;
            },
        )
        .await;
    }
}

fn tcp(me: u8, peer: u8) -> String {
    format!(
        "TCP {{ IPv4_address 10.9.0.{me} IPv4_Destination_Address 10.9.0.{peer} Port 3790 Interface s0 }}"
    )
}

/// Client side: sends `tags` (queued before any connection exists) and
/// collects the echoes (tag + 100), bounded in time.
async fn send_and_collect(
    a: &mut Channels,
    tags: &[u8],
    resend: bool,
) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut replies = Vec::new();
    for &t in tags {
        a.send(&frame(t));
    }
    for _ in 0..200 {
        if replies.len() == tags.len() {
            break;
        }
        if resend {
            a.send(&frame(tags[0]));
        }
        let got =
            smol::future::or(async { Some(a.recv(&mut buf).await) }, async {
                smol::Timer::after(Duration::from_millis(100)).await;
                None
            })
            .await;
        if let Some((_, n, _)) = got
            && tags.contains(&(buf[n - 1].wrapping_sub(100)))
            && !replies.contains(&buf[n - 1])
        {
            replies.push(buf[n - 1]);
        }
    }
    replies
}

#[test]
fn tcp_connects_and_frames() {
    // Each endpoint runs in a thread inside its own namespace, as a daemon
    // would: reconnecting creates sockets, which belong to the caller's
    // namespace.
    let Some((na, nb)) = common::pair("t") else {
        return;
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            nb.enter(|| {
                let mut b = Channels::open(&sync_section(&tcp(2, 1))).unwrap();
                smol::block_on(async {
                    let got = echo(&mut b, 11).await;
                    // Stay up until the echoes are written.
                    linger(&mut b, 200).await;
                    got
                })
            })
        });
        let client = s.spawn(|| {
            na.enter(|| {
                let mut a = Channels::open(&sync_section(&tcp(1, 2))).unwrap();
                smol::block_on(async {
                    // Eleven frames queued before the connection is up;
                    // they arrive in order, one frame each.
                    let tags: Vec<u8> = (1..=11).collect();
                    let replies = send_and_collect(&mut a, &tags, false).await;
                    (replies, a.links[0].tcp_connected())
                })
            })
        });
        let (replies, connected) = client.join().unwrap();
        let first = server.join().unwrap();
        assert_eq!(first, (1..=11).collect::<Vec<u8>>());
        assert_eq!(replies, (101..=111).collect::<Vec<u8>>());
        assert_eq!(connected, Some((true, true)));
    });
}

/// The peer's endpoint is dropped and reopened on the same address (a
/// daemon restart): our broken connection is noticed on write and
/// replaced by one to the new endpoint. A frame written into the dead
/// connection is lost in flight; the client here resends, as the FT-FW
/// engine does for unacknowledged messages.
#[test]
fn tcp_reconnects_to_a_restarted_peer() {
    let Some((na, nb)) = common::pair("r") else {
        return;
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            nb.enter(|| {
                let mut b = Channels::open(&sync_section(&tcp(2, 1))).unwrap();
                let first = smol::block_on(async {
                    let got = echo(&mut b, 1).await;
                    linger(&mut b, 200).await;
                    got
                });
                drop(b);
                // The restarted daemon's listener. Rarely (under load, seen
                // in CI) the kernel still reports the old listener's port
                // in use for a moment after its close; a restarted daemon
                // in the field is restarted again by its supervisor.
                let mut b2 = None;
                for _ in 0..40 {
                    match Channels::open(&sync_section(&tcp(2, 1))) {
                        Ok(c) => {
                            b2 = Some(c);
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                            std::thread::sleep(
                                std::time::Duration::from_millis(50),
                            );
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                let mut b2 = b2.expect("port still in use after 2 s");
                let second = smol::block_on(async {
                    let got = echo(&mut b2, 1).await;
                    linger(&mut b2, 200).await;
                    got
                });
                (first, second)
            })
        });
        let client = s.spawn(|| {
            na.enter(|| {
                let mut a = Channels::open(&sync_section(&tcp(1, 2))).unwrap();
                smol::block_on(async {
                    let r1 = send_and_collect(&mut a, &[1], false).await;
                    let r2 = send_and_collect(&mut a, &[50], true).await;
                    (r1, r2)
                })
            })
        });
        let (r1, r2) = client.join().unwrap();
        let (first, second) = server.join().unwrap();
        assert_eq!((first, second), (vec![1], vec![50]));
        assert_eq!((r1, r2), (vec![101], vec![150]));
    });
}

#[test]
fn losing_the_default_link_fails_over_to_the_next() {
    let Some((na, nb)) = common::pair("f") else {
        return;
    };
    let links = |me: u8, peer: u8| {
        format!(
            "UDP Default {{ IPv4_address 10.9.0.{me} IPv4_Destination_Address 10.9.0.{peer} Port 3780 Interface s0 }}\n\
             UDP {{ IPv4_address 10.9.1.{me} IPv4_Destination_Address 10.9.1.{peer} Port 3780 Interface s1 }}"
        )
    };
    let mut a = open_in(&na, &links(1, 2));
    let mut b = open_in(&nb, &links(2, 1));
    assert_eq!(a.current(), 0);
    assert_eq!(deliver(&mut a, &mut b, &frame(1)), 0);
    na.sh("ip link set s0 down");
    let f = na.enter(|| a.check_links());
    assert_eq!(f, Some(Failover::To(1)));
    assert_eq!(deliver(&mut a, &mut b, &frame(2)), 1);
    // Follow the peer: B answers on the link A now uses.
    b.set_current(1);
    assert_eq!(deliver(&mut b, &mut a, &frame(3)), 1);
    na.sh("ip link set s1 down");
    assert_eq!(na.enter(|| a.check_links()), Some(Failover::NoneUsable));
}

/// `s0` deleted and created again (a VLAN or a bond set up anew) under
/// the same name and addresses, with a new index.
fn recreate_s0(na: &common::Netns, nb: &common::Netns) {
    na.sh(&format!(
        "ip link del s0 && ip link add s0 type veth peer name s0 netns {} && ip addr add 10.9.0.1/24 dev s0 && ip link set s0 up",
        nb.0
    ));
    nb.sh("ip addr add 10.9.0.2/24 dev s0 && ip link set s0 up");
}

/// The sockets of a link are tied to its interface's index (bound to the
/// device, multicast joined and sent on it): an interface created again
/// left the link looking RUNNING while every send failed and nothing
/// came. The link check opens it again on the new index. (TCP connects
/// from the calling thread's namespace: `deliver` runs in none, so a TCP
/// link is not exchanged with here.)
fn opened_again(tag: &str, link: fn(u8, u8) -> String) {
    let Some((na, nb)) = common::pair(tag) else {
        return;
    };
    let mut a = open_in(&na, &link(1, 2));
    let mut b = open_in(&nb, &link(2, 1));
    assert_eq!(deliver(&mut a, &mut b, &frame(1)), 0);
    recreate_s0(&na, &nb);
    assert_eq!(na.enter(|| a.check_links()), None);
    assert_eq!(nb.enter(|| b.check_links()), None);
    assert_eq!(deliver(&mut a, &mut b, &frame(2)), 0);
    assert_eq!(deliver(&mut b, &mut a, &frame(3)), 0);
}

#[test]
fn a_udp_link_whose_interface_is_created_again_is_opened_again() {
    opened_again("ru", |me, peer| {
        format!(
            "UDP {{ IPv4_address 10.9.0.{me} IPv4_Destination_Address 10.9.0.{peer} Port 3780 Interface s0 }}"
        )
    });
}

#[test]
fn a_multicast_link_whose_interface_is_created_again_is_opened_again() {
    opened_again("rm", |me, _| {
        format!(
            "Multicast {{ IPv4_address 225.0.0.50 IPv4_interface 10.9.0.{me} Group 3782 Interface s0 }}"
        )
    });
}

/// The configured local address is a second one on the interface (a
/// sync address added next to the interface's first): the peer accepts
/// only datagrams from it (its destination), so they must leave from it,
/// not from the address the kernel's route picks (the first one).
#[test]
fn udp_sends_from_the_configured_local_address() {
    let Some((na, nb)) = common::pair("ls") else {
        return;
    };
    na.sh("ip addr add 10.9.0.5/24 dev s0");
    let a = "UDP { IPv4_address 10.9.0.5 IPv4_Destination_Address 10.9.0.2 Port 3783 Interface s0 }";
    let b = "UDP { IPv4_address 10.9.0.2 IPv4_Destination_Address 10.9.0.5 Port 3783 Interface s0 }";
    let mut a = open_in(&na, a);
    let mut b = open_in(&nb, b);
    assert_eq!(deliver(&mut a, &mut b, &frame(1)), 0);
    assert_eq!(b.links[0].stats.foreign, 0);
}

/// As `udp_sends_from_the_configured_local_address`, for TCP: the peer
/// accepts only connections from its destination, so ours must come
/// from the configured local address.
#[test]
fn tcp_connects_from_the_configured_local_address() {
    let Some((na, nb)) = common::pair("lt") else {
        return;
    };
    na.sh("ip addr add 10.9.0.5/24 dev s0");
    let a = "TCP { IPv4_address 10.9.0.5 IPv4_Destination_Address 10.9.0.2 Port 3791 Interface s0 }";
    let b = "TCP { IPv4_address 10.9.0.2 IPv4_Destination_Address 10.9.0.5 Port 3791 Interface s0 }";
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            nb.enter(|| {
                let mut b = Channels::open(&sync_section(b)).unwrap();
                smol::block_on(async {
                    let got = echo(&mut b, 1).await;
                    linger(&mut b, 200).await;
                    (got, b.links[0].stats.foreign)
                })
            })
        });
        let client = s.spawn(|| {
            na.enter(|| {
                let mut a = Channels::open(&sync_section(a)).unwrap();
                smol::block_on(send_and_collect(&mut a, &[1], true))
            })
        });
        let replies = client.join().unwrap();
        let (got, foreign) = server.join().unwrap();
        assert_eq!(foreign, 0, "connections refused as foreign");
        assert_eq!((got, replies), (vec![1], vec![101]));
    });
}

/// `SndSocketBuffer` of a TCP link sizes the connection that carries our
/// frames (conntrackd sets SO_SNDBUFFORCE on its TCP client): the
/// kernel's send buffer (`ss`'s `tb`, twice the value) says so.
#[test]
fn tcp_snd_socket_buffer_sizes_our_connection() {
    let Some((na, nb)) = common::pair("sb") else {
        return;
    };
    let link = |me: u8, peer: u8| {
        format!(
            "TCP {{ IPv4_address 10.9.0.{me} IPv4_Destination_Address 10.9.0.{peer} Port 3792 Interface s0 SndSocketBuffer 3000000 }}"
        )
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            nb.enter(|| {
                let mut b = Channels::open(&sync_section(&link(2, 1))).unwrap();
                smol::block_on(async {
                    echo(&mut b, 1).await;
                    linger(&mut b, 2000).await;
                })
            })
        });
        let client = s.spawn(|| {
            na.enter(|| {
                let mut a = Channels::open(&sync_section(&link(1, 2))).unwrap();
                let replies =
                    smol::block_on(send_and_collect(&mut a, &[1], true));
                let ss =
                    na.sh("ss -tmnH state established '( dport = :3792 )'");
                (replies, ss)
            })
        });
        let (replies, ss) = client.join().unwrap();
        server.join().unwrap();
        assert_eq!(replies, vec![101]);
        let tb = ss
            .split(",tb")
            .nth(1)
            .and_then(|r| r.split(',').next()?.parse::<u64>().ok());
        assert_eq!(tb, Some(6_000_000), "{ss}");
    });
}

/// IPv6 link-local addresses need the interface as scope, for the bind
/// of both sockets and for the destination.
#[test]
fn udp_over_ipv6_link_local_addresses() {
    let Some((na, nb)) = common::pair("ll") else {
        return;
    };
    na.sh("ip -6 addr add fe80::a1/64 dev s0 nodad");
    nb.sh("ip -6 addr add fe80::b2/64 dev s0 nodad");
    let link = |me: &str, peer: &str| {
        format!(
            "UDP {{ IPv6_address {me} IPv6_Destination_Address {peer} Port 3784 Interface s0 }}"
        )
    };
    let mut a = open_in(&na, &link("fe80::a1", "fe80::b2"));
    let mut b = open_in(&nb, &link("fe80::b2", "fe80::a1"));
    assert_eq!(deliver(&mut a, &mut b, &frame(1)), 0);
    assert_eq!(deliver(&mut b, &mut a, &frame(2)), 0);
    assert_eq!(a.links[0].stats.foreign + b.links[0].stats.foreign, 0);
}
