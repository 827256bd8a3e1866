//! Dedicated links to the peer: UDP unicast, IPv4/IPv6 multicast and TCP.
//!
//! Owns the sockets of every configured link (up to four), sending on the
//! current one and receiving on all. Reception is tied to the link's
//! interface (`SO_BINDTODEVICE`); unicast links also accept only datagrams
//! from the configured peer address, and TCP links only its connections
//! (counted as `foreign` otherwise); so ours leave from the configured
//! local address, when one is set, whatever address the route picks.
//! conntrackd accepts anything that reaches the port.
//!
//! Failover (reference §4.1): [`Channels::failover`] moves to the next
//! usable link when the current one goes down or loses its carrier, as
//! the interfaces' facts last taken in ([`Channels::update`]) say. Those
//! are read ([`read_links`]), and a link whose interface was created
//! again is opened ([`open_sockets`]), where waiting on the kernel does
//! no harm: the daemon's link check thread, or [`Channels::check_links`]
//! for tools and tests. The daemon calls [`Channels::set_current`] when a valid message
//! arrives on another link (replies follow the peer). After either, the
//! daemon sizes the node's datagrams for the sending link
//! ([`Channels::max_datagram`]), as conntrackd sizes each link's buffer by
//! its own MTU.
//!
//! TCP: a listening socket accepts the peer's connection (a new one
//! replaces the old); a client connection to the peer carries our frames,
//! reconnecting at most once per second. Frames are the same as datagrams
//! (the header's length delimits them in the stream). A stream that
//! carries conntrackd's messages instead (told apart by each frame's first
//! bytes: ours start with `cT`) is cut at conntrackd's message lengths,
//! as many whole messages per read as fit. While disconnected,
//! up to `ErrorQueueLength` frames wait; older ones are dropped and
//! counted.
//!
//! Sending never blocks the event loop: a datagram that cannot be sent
//! now is counted as a send error (FT-FW resends it).
//!
//! Here: the links, sending and receiving on UDP; which link sends is
//! `failover`'s, sockets are opened in `open`, interface facts and link
//! notifications are `iface`'s, a TCP link's connections are `tcp`'s and
//! the cutting of its stream into frames `tcp_frames`'s.

mod failover;
pub mod iface;
mod no_check;
mod open;
mod tcp;
pub mod tcp_frames;
#[cfg(test)]
mod test_reads;
#[cfg(test)]
mod test_tcp;

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::task::{Context, Poll};

use smol::Async;

use crate::config::{self, Channel, Transport};
pub use failover::{Failover, LinkFacts, read_links};
pub use iface::{
    LinkEvents, LinkInfo, LinkStatus, link_info, link_info_by_index,
};
pub use open::{Opened, open_sockets};
use tcp::Tcp;

/// Per-link counters (`-s link`, `-s`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub pkts_sent: u64,
    pub pkts_recv: u64,
    pub err_send: u64,
    pub err_recv: u64,
    /// Datagrams from an address that is not the configured peer.
    pub foreign: u64,
}

enum Io {
    Udp {
        rx: Async<UdpSocket>,
        tx: Async<UdpSocket>,
        dest: SocketAddr,
        /// Unicast: the only source accepted.
        peer: Option<IpAddr>,
    },
    Tcp(Box<Tcp>),
}

/// One dedicated link.
pub struct Link {
    pub channel: Channel,
    pub info: LinkInfo,
    pub stats: LinkStats,
    io: Io,
    /// Its interface was created again and its sockets are being opened
    /// again (not asked for twice).
    reopening: bool,
    /// Opening it again failed (said once, not every second).
    reopen_failed: bool,
}

impl Link {
    pub fn kind(&self) -> &'static str {
        self.channel.transport.kind()
    }

    /// Its interface's name now, as `-s` shows it (conntrackd shows a
    /// renamed interface by its new name); the configured one until the
    /// kernel said.
    pub fn interface_name(&self) -> &str {
        self.info.name.as_deref().unwrap_or(&self.channel.interface)
    }

    /// TCP: whether our outgoing connection is up (`-s`: client=…).
    pub fn tcp_connected(&self) -> Option<(bool, bool)> {
        match &self.io {
            Io::Tcp(t) => Some(t.connections()),
            Io::Udp { .. } => None,
        }
    }

    /// TCP: frames dropped because the queue (`ErrorQueueLength`) was
    /// full.
    pub fn dropped(&self) -> u64 {
        match &self.io {
            Io::Tcp(t) => t.dropped(),
            Io::Udp { .. } => 0,
        }
    }

    /// TCP: frames queued but not yet fully written (0 for UDP, which
    /// never queues).
    pub fn unsent(&self) -> usize {
        match &self.io {
            Io::Tcp(t) => t.unsent(),
            Io::Udp { .. } => 0,
        }
    }
}

/// All links, and which one sends.
pub struct Channels {
    pub links: Vec<Link>,
    current: usize,
    /// `ErrorQueueLength`, for a link opened again.
    error_queue: usize,
    /// "no dedicated links available!" is logged once per outage.
    none_usable: bool,
    /// The link reading starts at: the one after the last read from, so
    /// that every link with datagrams queued is served in turn.
    next_read: usize,
}

impl Channels {
    /// Opens every link of the `Sync` section.
    ///
    /// # Errors
    /// conntrackd's "can't open channel socket" cases: a missing interface,
    /// a bind or a multicast join that fails.
    pub fn open(sync: &config::Sync) -> io::Result<Channels> {
        let mut links = Vec::with_capacity(sync.channels.len());
        for c in &sync.channels {
            links.push(
                open::open_link(c, sync.error_queue_length as usize).map_err(
                    |e| {
                        io::Error::new(
                            e.kind(),
                            format!(
                                "can't open channel socket: {} link on {}: {}",
                                c.transport.kind(),
                                c.interface,
                                crate::strerror::strerror(&e)
                            ),
                        )
                    },
                )?,
            );
        }
        Ok(Channels {
            links,
            current: sync.default_channel(),
            error_queue: sync.error_queue_length as usize,
            none_usable: false,
            next_read: 0,
        })
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// Follow the peer: it sent on link `i`, so we answer there.
    pub fn set_current(&mut self, i: usize) {
        if i < self.links.len() {
            self.current = i;
        }
    }

    /// Largest datagram the current link carries (conntrackd: MTU − 28 for
    /// UDP/IPv4, − 40 for TCP; IPv6 needs 20 more).
    pub fn max_datagram(&self) -> usize {
        let l = &self.links[self.current];
        let ip = match &l.channel.transport {
            Transport::Multicast {
                group: IpAddr::V6(_),
                ..
            } => 40,
            Transport::Udp {
                dest: IpAddr::V6(_),
                ..
            }
            | Transport::Tcp {
                dest: IpAddr::V6(_),
                ..
            } => 40,
            _ => 20,
        };
        let l4 = if matches!(l.io, Io::Tcp(_)) { 20 } else { 8 };
        (l.info.mtu as usize)
            .saturating_sub(ip + l4)
            .clamp(576, 65_507)
    }

    /// Sends one datagram on the current link, without blocking.
    pub fn send(&mut self, datagram: &[u8]) {
        let link = &mut self.links[self.current];
        let ok = match &mut link.io {
            Io::Udp { tx, dest, .. } => {
                let sent = tx.get_ref().send_to(datagram, *dest).is_ok();
                if sent {
                    link.stats.pkts_sent += 1;
                    link.stats.bytes_sent += datagram.len() as u64;
                }
                sent
            }
            // Counted as sent once written whole, which may be later.
            Io::Tcp(t) => t.enqueue(datagram, &mut link.stats),
        };
        if !ok {
            link.stats.err_send += 1;
        }
    }

    /// Polls every link: drives TCP connects and writes, and returns the
    /// next received datagram as (link, length, sender).
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<(usize, usize, SocketAddr)> {
        for i in self.read_order() {
            let link = &mut self.links[i];
            if let Some((n, from)) = poll_link(link, cx, buf) {
                link.stats.pkts_recv += 1;
                link.stats.bytes_recv += n as u64;
                self.next_read = i + 1;
                return Poll::Ready((i, n, from));
            }
        }
        Poll::Pending
    }

    /// The links' indexes from the one reading starts at, round: a link
    /// that always has datagrams queued (a flood on its group) must not
    /// keep the others unread, as conntrackd serves every ready socket.
    fn read_order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.links.len();
        let start = self.next_read;
        (0..n).map(move |k| (start + k) % n)
    }

    /// No link is a TCP stream (every link is read by [`Channels::try_recv`]).
    pub fn datagrams_only(&self) -> bool {
        self.links.iter().all(|l| matches!(l.io, Io::Udp { .. }))
    }

    /// A datagram already queued on a UDP link, without waiting and
    /// without registering for readiness (None: nothing queued; TCP
    /// links are left to [`Channels::recv`]).
    pub fn try_recv(
        &mut self,
        buf: &mut [u8],
    ) -> Option<(usize, usize, SocketAddr)> {
        for i in self.read_order() {
            let link = &mut self.links[i];
            let Io::Udp { rx, peer, .. } = &link.io else {
                continue;
            };
            // Foreign datagrams are skipped, a bounded number per call.
            for _ in 0..64 {
                match rx.get_ref().recv_from(buf) {
                    Ok((n, from)) => {
                        if let Some(p) = peer
                            && from.ip() != *p
                        {
                            link.stats.foreign += 1;
                            continue;
                        }
                        link.stats.pkts_recv += 1;
                        link.stats.bytes_recv += n as u64;
                        self.next_read = i + 1;
                        return Some((i, n, from));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        link.stats.err_recv += 1;
                        break;
                    }
                }
            }
        }
        None
    }

    /// Waits for the next received datagram.
    pub async fn recv(&mut self, buf: &mut [u8]) -> (usize, usize, SocketAddr) {
        smol::future::poll_fn(|cx| self.poll_recv(cx, buf)).await
    }
}

// ===== receiving =====

fn poll_link(
    link: &mut Link,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Option<(usize, SocketAddr)> {
    match &mut link.io {
        // Readiness first: the loop reads what is queued right after a
        // datagram wakes it (`Channels::try_recv`) until the socket is
        // empty, so a read here before the reactor reports the socket
        // readable would find nothing, one system call per loop turn.
        // (Datagrams still queued when that read stopped at its bound
        // are reported by the reactor's next poll.)
        Io::Udp { rx, peer, .. } => loop {
            if rx.poll_readable(cx).is_pending() {
                return None;
            }
            match rx.get_ref().recv_from(buf) {
                Ok((n, from)) => {
                    if let Some(p) = peer
                        && from.ip() != *p
                    {
                        link.stats.foreign += 1;
                        continue;
                    }
                    return Some((n, from));
                }
                // A readiness that another read used up: wait again.
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(_) => {
                    link.stats.err_recv += 1;
                    return None;
                }
            }
        },
        Io::Tcp(t) => t.poll(cx, buf, &mut link.stats),
    }
}
