//! Dedicated links to the peer: UDP unicast, IPv4/IPv6 multicast and TCP.
//!
//! Owns the sockets of every configured link (up to four), sending on the
//! current one and receiving on all. Reception is tied to the link's
//! interface (`SO_BINDTODEVICE`); unicast links also accept only datagrams
//! from the configured peer address, and TCP links only its connections
//! (counted as `foreign` otherwise).
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
//! Here: the links, sending, receiving on UDP, and failover; sockets are
//! opened in `open`, a TCP link's connections are `tcp`'s and the cutting
//! of its stream into frames `tcp_frames`'s.

pub mod iface;
mod no_check;
mod open;
mod tcp;
pub mod tcp_frames;

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::task::{Context, Poll};

use smol::Async;

use crate::config::{self, Channel, Transport};
pub use iface::{LinkEvents, LinkInfo, LinkStatus, link_info};
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
}

/// Puts `new` (opened on the interface's new index) in `l`'s place,
/// keeping its counters; when opening failed the link is down, and the
/// next check asks again.
fn reopened(l: &mut Link, new: io::Result<Opened>, error_queue: usize) {
    l.reopening = false;
    let iface = &l.channel.interface;
    match new.and_then(|o| o.into_link(&l.channel, error_queue)) {
        Ok(mut new) => {
            log::warn!("{iface}: interface created again, link opened again");
            new.stats = l.stats;
            *l = new;
        }
        Err(e) => {
            if !std::mem::replace(&mut l.reopen_failed, true) {
                log::warn!(
                    "{iface}: interface created again, link not opened: {e}"
                );
            }
            l.info.status = LinkStatus::Down;
        }
    }
}

/// What a link check read, link by link in the links' order (see
/// [`read_links`]).
pub type LinkFacts = Vec<io::Result<LinkInfo>>;

/// Reads the interfaces' facts: one rtnetlink request each, which waits
/// while the kernel holds RTNL (up to 2 s): the daemon reads them on a
/// thread of their own, never on the loop's.
pub fn read_links(interfaces: &[String]) -> LinkFacts {
    interfaces.iter().map(|name| link_info(name)).collect()
}

/// What [`Channels::check_links`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failover {
    /// Sending moved to this link.
    To(usize),
    /// No usable link is left.
    NoneUsable,
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
                                "can't open channel socket: {} link on {}: {e}",
                                c.transport.kind(),
                                c.interface
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
                tx.get_ref().send_to(datagram, *dest).is_ok()
            }
            Io::Tcp(t) => t.enqueue(datagram),
        };
        if ok {
            link.stats.pkts_sent += 1;
            link.stats.bytes_sent += datagram.len() as u64;
        } else {
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
        for (i, link) in self.links.iter_mut().enumerate() {
            if let Some((n, from)) = poll_link(link, cx, buf) {
                link.stats.pkts_recv += 1;
                link.stats.bytes_recv += n as u64;
                return Poll::Ready((i, n, from));
            }
        }
        Poll::Pending
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
        for (i, link) in self.links.iter_mut().enumerate() {
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

    /// The links' interfaces, in the links' order (for [`read_links`]).
    pub fn interfaces(&self) -> Vec<String> {
        self.links
            .iter()
            .map(|l| l.channel.interface.to_string())
            .collect()
    }

    /// Re-reads every link's interface and acts on it, waiting for the
    /// kernel: [`Channels::update`], the links opened again at once, then
    /// [`Channels::failover`]. For tools and tests; the daemon reads and
    /// opens on another thread.
    pub fn check_links(&mut self) -> Option<Failover> {
        for (i, c) in self.update(read_links(&self.interfaces())) {
            self.reopened(i, open_sockets(&c));
        }
        self.failover()
    }

    /// Takes in the interfaces' facts (from [`read_links`]; one per link,
    /// in order). Returns the links whose interface was created again:
    /// the caller opens each with [`open_sockets`] and hands the result
    /// to [`Channels::reopened`]; until then the link is not asked for
    /// again. Call [`Channels::failover`] after.
    pub fn update(&mut self, facts: LinkFacts) -> Vec<(usize, Channel)> {
        let mut reopen = Vec::new();
        for (i, (l, fact)) in self.links.iter_mut().zip(facts).enumerate() {
            match fact {
                // Deleted and created again (a VLAN or a bond set up
                // anew): the sockets are tied to the old index (bound to
                // the device, joined and sending on it). Sending failed
                // and nothing came while the link looked running.
                // Its status stays as it was until it is open again: the
                // new interface's said RUNNING while sending still went
                // to the old sockets, and a reopen that kept failing
                // (its address not there yet) moved sending onto it and
                // off again at every read.
                Ok(info) if info.index != l.info.index => {
                    if !std::mem::replace(&mut l.reopening, true) {
                        if let Io::Tcp(t) = &mut l.io {
                            // Its port, for the new listener.
                            t.close_listener();
                        }
                        reopen.push((i, l.channel.clone()));
                    }
                }
                Ok(info) => {
                    l.info.status = info.status;
                    l.info.mtu = info.mtu;
                }
                // Gone: the kernel says there is no such interface.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    l.info.status = LinkStatus::Down;
                }
                // Not asked (out of descriptors, no answer): the link is
                // as it was. Taking it for down moved sending off a
                // working link, or stopped it, whenever the daemon was
                // at its descriptor limit.
                Err(_) => {}
            }
        }
        reopen
    }

    /// Link `i` opened again (see [`Channels::update`]), or not.
    pub fn reopened(&mut self, i: usize, new: io::Result<Opened>) {
        if let Some(l) = self.links.get_mut(i)
            && l.reopening
        {
            reopened(l, new, self.error_queue);
        }
    }

    /// Moves sending off a link that went down or lost its carrier (see
    /// `next_link`), as the links' status now says.
    pub fn failover(&mut self) -> Option<Failover> {
        let status: Vec<LinkStatus> =
            self.links.iter().map(|l| l.info.status).collect();
        match next_link(self.current, &status) {
            Step::Stay => {
                self.none_usable = false;
                None
            }
            Step::To(i) => {
                self.current = i;
                log::info!(
                    "device `{}' becomes dedicated link",
                    self.links[i].channel.interface
                );
                Some(Failover::To(i))
            }
            Step::NoneUsable => {
                if !self.none_usable {
                    self.none_usable = true;
                    log::error!("no dedicated links available!");
                }
                Some(Failover::NoneUsable)
            }
        }
    }
}

/// What the links' status asks of the sending link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Stay,
    To(usize),
    NoneUsable,
}

/// Where sending goes, from link `current`, given every link's status.
/// As conntrackd, sending leaves a link that is not RUNNING (DOWN, or UP
/// without carrier), for the next link that is UP or RUNNING: a running
/// one first (polled each second, a move between two links without
/// carrier would be made every second), one only UP in place of one that
/// is DOWN (its carrier may come back first).
fn next_link(current: usize, status: &[LinkStatus]) -> Step {
    let here = status[current];
    if here == LinkStatus::Running {
        return Step::Stay;
    }
    let n = status.len();
    let others = || (1..n).map(move |k| (current + k) % n);
    let running = others().find(|&i| status[i] == LinkStatus::Running);
    let up = others().find(|&i| status[i].usable());
    match (running, up) {
        (Some(i), _) => Step::To(i),
        (None, Some(i)) if here == LinkStatus::Down => Step::To(i),
        (None, Some(_)) => Step::Stay,
        (None, None) => Step::NoneUsable,
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

#[cfg(test)]
mod test {
    use super::LinkStatus::{Down, NoCarrier, Running};
    use super::*;

    /// Two UDP links on `lo` (binding to a device needs root: None, and
    /// said, without it).
    fn two_links_on_lo(test: &str) -> Option<Channels> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED {test}: binding to a device needs root");
            return None;
        }
        let text = "General { UNIX { Path /tmp/cm.sock } } \
             Sync { Mode FTFW { } \
             UDP { IPv4_address 127.0.0.1 IPv4_Destination_Address 127.0.0.1 Port 37951 Interface lo } \
             UDP { IPv4_address 127.0.0.1 IPv4_Destination_Address 127.0.0.1 Port 37952 Interface lo } }";
        let cfg = crate::config::parse(text, "t.conf").unwrap().config;
        Some(Channels::open(cfg.sync.as_ref().unwrap()).unwrap())
    }

    /// Link 0 sends and has lost its carrier; link 1's interface was
    /// created again and opening it keeps failing (its address is not
    /// there yet). Link 1 is no place to send until it is open: its new
    /// interface's RUNNING moved sending onto its dead sockets and off
    /// again at every read (found by review). Once open, it takes over.
    #[test]
    fn a_link_waiting_to_be_opened_again_takes_no_sending() {
        let Some(mut ch) = two_links_on_lo("a_link_waiting_to_be_opened_again")
        else {
            return;
        };
        let lo = |status| {
            Ok(LinkInfo {
                index: 1,
                mtu: 65536,
                status,
            })
        };
        let recreated = || {
            Ok(LinkInfo {
                index: 999,
                mtu: 1500,
                status: Running,
            })
        };
        ch.links[1].info.status = Down;
        for _ in 0..3 {
            let asked = ch.update(vec![lo(NoCarrier), recreated()]);
            assert_eq!(asked.len(), 1);
            // Link 0 is only up, link 1 down: nothing better to move to.
            assert_eq!(ch.failover(), Some(Failover::NoneUsable));
            let refused = io::Error::from(ErrorKind::AddrNotAvailable);
            ch.reopened(1, Err(refused));
            assert_eq!(ch.failover(), Some(Failover::NoneUsable));
        }
        assert_eq!(ch.current(), 0);
        // Opened at last (on lo here: what the kernel gives it).
        let asked = ch.update(vec![lo(NoCarrier), recreated()]);
        assert_eq!(asked.len(), 1);
        ch.reopened(1, open_sockets(&asked[0].1));
        assert_eq!(ch.failover(), Some(Failover::To(1)));
    }

    #[test]
    fn a_link_that_lost_its_carrier_hands_sending_to_a_running_one() {
        // conntrackd moves off a link that is not both UP and RUNNING
        // (sync-mode.c: a cable pulled, the switch port or the peer's NIC
        // down), not only off one that is DOWN.
        assert_eq!(next_link(0, &[NoCarrier, Running]), Step::To(1));
        assert_eq!(next_link(1, &[Running, Down, NoCarrier]), Step::To(0));
        assert_eq!(next_link(0, &[Down, Running]), Step::To(1));
        assert_eq!(next_link(0, &[Running, Running]), Step::Stay);
        // A running link before one that is only up, whatever the order.
        assert_eq!(next_link(0, &[Down, NoCarrier, Running]), Step::To(2));
        // Only up, it may get its carrier: better than one that is down.
        assert_eq!(next_link(0, &[Down, NoCarrier]), Step::To(1));
        // Without carrier everywhere, sending stays (no move every
        // second between links that carry nothing).
        assert_eq!(next_link(0, &[NoCarrier, NoCarrier]), Step::Stay);
        // Nothing else up at all: said once by the caller.
        assert_eq!(next_link(0, &[NoCarrier, Down]), Step::NoneUsable);
        assert_eq!(next_link(0, &[Down, Down]), Step::NoneUsable);
        assert_eq!(next_link(0, &[NoCarrier]), Step::NoneUsable);
    }
}
