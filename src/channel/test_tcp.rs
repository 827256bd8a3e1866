//! TCP links: what their counters say about queued frames.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::Channels;

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
