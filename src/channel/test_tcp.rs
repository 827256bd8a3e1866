//! TCP links: what their counters say about queued frames, the frames
//! already received when the peer connects again, and the queue of a link
//! opened again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::task::{Context, Waker};
use std::time::Duration;

use smol::Async;

use super::tcp::Tcp;
use super::{Channels, LinkInfo, LinkStats, LinkStatus, open_sockets};

/// A TCP link on `lo` listening on 127.0.0.1:`port`, its peer 127.0.0.2
/// (`queue`: ErrorQueueLength). None, and said, without root (binding
/// to a device needs it).
fn tcp_link(test: &str, port: u16, queue: u32) -> Option<Channels> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED {test}: binding to a device needs root");
        return None;
    }
    let text = format!(
        "General {{ UNIX {{ Path /tmp/ct.sock }} }} \
         Sync {{ Mode FTFW {{ }} \
         TCP {{ IPv4_address 127.0.0.1 IPv4_Destination_Address 127.0.0.2 \
         Port {port} Interface lo ErrorQueueLength {queue} }} }}"
    );
    let cfg = crate::config::parse(&text, "t.conf").unwrap().config;
    Some(Channels::open(cfg.sync.as_ref().unwrap()).unwrap())
}

/// Polls the links once, then waits 10 ms, as the daemon's loop does:
/// on a thread that drives the reactor (`block_on`). Readiness reported
/// only by async-io's own thread can come in a tick that counts as stale.
fn poll(ch: &mut Channels) {
    smol::block_on(async {
        let mut buf = [0u8; 256];
        let _ = smol::future::poll_once(ch.recv(&mut buf)).await;
        smol::Timer::after(Duration::from_millis(10)).await;
    });
}

/// A frame queued while the connection to the peer was not up is sent
/// once it is: conntrackd counts its failed send as an error and its
/// later delivery from the error queue as sent. It was counted only as
/// an error: `Pckts sent` and `Bytes sent` left out every frame that
/// waited (found by review).
#[test]
fn a_frame_sent_after_waiting_in_the_queue_counts_as_sent() {
    let Some(mut ch) = tcp_link("a_frame_sent_after_waiting", 37961, 8) else {
        return;
    };
    let peer = TcpListener::bind("127.0.0.2:37961").unwrap();
    peer.set_nonblocking(true).unwrap();
    let frame = [b'c', b'T', 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 2, 7, 7];
    ch.send(&frame);
    let mut got = Vec::new();
    let mut conn: Option<TcpStream> = None;
    // 3 s at most: 10 ms a turn.
    for _ in 0..300 {
        if got.len() >= frame.len() {
            break;
        }
        poll(&mut ch);
        if conn.is_none()
            && let Ok((s, _)) = peer.accept()
        {
            s.set_nonblocking(true).unwrap();
            conn = Some(s);
        }
        if let Some(s) = &mut conn {
            let mut b = [0u8; 64];
            if let Ok(n) = s.read(&mut b) {
                got.extend_from_slice(&b[..n]);
            }
        }
    }
    assert_eq!(got, frame, "the peer received the frame");
    let s = ch.links[0].stats;
    assert_eq!(
        (s.pkts_sent, s.bytes_sent, s.err_send),
        (1, frame.len() as u64, 1),
        "sent once, after one failed send"
    );
}

/// A link on 127.0.0.1 whose peer is 127.0.0.1 at a port nothing
/// listens on; its listening address.
fn bare_link() -> (Tcp, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let at = l.local_addr().unwrap();
    let dest = "127.0.0.1:1".parse().unwrap();
    let t = Tcp::new(
        Async::new(l).unwrap(),
        (None, dest),
        ("lo".into(), 1),
        (0, 0),
        8,
    );
    (t, at)
}

/// Our frame with sequence number `n`.
fn frame(n: u8) -> Vec<u8> {
    vec![b'c', b'T', 1, 0, 0, 0, 0, 1, 0, 0, 0, n, 0, 2, 7, 7]
}

/// The peer's frames already read whole from its connection are handed
/// on when it connects again (a daemon restarted, a connection it gave
/// up on): they were dropped with the partial bytes, when conntrackd,
/// which handles every whole message of a read at once, never loses
/// one it has read (found by review).
#[test]
fn whole_frames_read_survive_the_peers_new_connection() {
    let (mut t, at) = bare_link();
    let mut stats = LinkStats::default();
    let mut cx = Context::from_waker(Waker::noop());
    let mut buf = [0u8; 256];
    let mut old = TcpStream::connect(at).unwrap();
    let mut two = frame(1);
    two.extend_from_slice(&frame(2));
    // And the first bytes of a third, which the new connection cannot
    // complete.
    two.extend_from_slice(&frame(3)[..5]);
    old.write_all(&two).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (n, _) = t.poll(&mut cx, &mut buf, &mut stats).expect("frame 1");
    assert_eq!(buf[..n], frame(1));
    let _new = TcpStream::connect(at).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let got = t.poll(&mut cx, &mut buf, &mut stats);
    assert_eq!(got.map(|(n, _)| buf[..n].to_vec()), Some(frame(2)));
    assert!(
        t.poll(&mut cx, &mut buf, &mut stats).is_none(),
        "no frame 3"
    );
    assert_eq!(stats.err_recv, 0);
}

/// A TCP link whose interface was created again keeps its queue of
/// frames not yet sent, and its count of those dropped: the new
/// connection carries them to the same peer. Both were lost with the old
/// link, and `-s queue`'s "not enough space errors" went back to 0
/// (found by review).
#[test]
fn a_tcp_link_opened_again_keeps_its_queue_and_its_drop_count() {
    let Some(mut ch) = tcp_link("a_tcp_link_opened_again", 37962, 2) else {
        return;
    };
    for n in 1..=3 {
        ch.send(&frame(n));
    }
    assert_eq!((ch.links[0].unsent(), ch.links[0].dropped()), (2, 1));
    let recreated = LinkInfo {
        index: 999,
        mtu: 65536,
        status: LinkStatus::Running,
        name: Some("lo".try_into().unwrap()),
    };
    assert_eq!(ch.update(vec![Ok(recreated)]), vec![0]);
    ch.reopened(0, open_sockets(&ch.links[0].channel));
    assert_eq!(ch.links[0].info.index, 1, "opened again on lo");
    assert_eq!((ch.links[0].unsent(), ch.links[0].dropped()), (2, 1));
    assert_eq!(ch.links[0].stats.err_send, 3);
}
