//! Reading several links: each one with datagrams queued is served in
//! turn.

use std::net::UdpSocket;

use super::Channels;

/// Two UDP links on `lo`, both from 127.0.0.1, on ports `port` and
/// `port + 1`. None, and said, without root (binding to a device needs
/// it).
fn two_links(test: &str, port: u16) -> Option<Channels> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED {test}: binding to a device needs root");
        return None;
    }
    let link = |p: u16| {
        format!(
            "UDP {{ IPv4_address 127.0.0.1 IPv4_Destination_Address \
             127.0.0.1 Port {p} Interface lo }}"
        )
    };
    let text = format!(
        "General {{ UNIX {{ Path /tmp/cr.sock }} }} \
         Sync {{ Mode FTFW {{ }} {} {} }}",
        link(port),
        link(port + 1)
    );
    let cfg = crate::config::parse(&text, "t.conf").unwrap().config;
    Some(Channels::open(cfg.sync.as_ref().unwrap()).unwrap())
}

/// Datagrams queued on both links are read from both in turn, as
/// conntrackd serves every ready socket at each wake-up. The first link
/// was always read first: a sender that kept it busy (a flood on its
/// multicast group) kept the peer's datagrams on the second unread until
/// its buffer overflowed (found by review).
#[test]
fn a_busy_first_link_does_not_starve_the_second() {
    let Some(mut ch) = two_links("a_busy_first_link", 37971) else {
        return;
    };
    let from = UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in 0..4u8 {
        from.send_to(&[n], "127.0.0.1:37971").unwrap();
    }
    from.send_to(&[9], "127.0.0.1:37972").unwrap();
    let mut buf = [0u8; 16];
    let mut links = Vec::new();
    for _ in 0..2 {
        // Loopback delivers at once; bounded in case it did not.
        for _ in 0..100 {
            if let Some((link, _, _)) = ch.try_recv(&mut buf) {
                links.push(link);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    assert_eq!(links, vec![0, 1], "one read each");
    assert_eq!(buf[0], 9, "the second link's datagram");
}
