//! Dedicated links to the peer: UDP unicast, IPv4/IPv6 multicast and TCP.
//!
//! Owns the sockets of every configured link (up to four), sending on the
//! current one and receiving on all. Reception is tied to the link's
//! interface (`SO_BINDTODEVICE`); unicast links also accept only datagrams
//! from the configured peer address (counted as `foreign` otherwise).
//! conntrackd accepts anything that reaches the port.
//!
//! Failover (reference §4.1): [`Channels::check_links`] moves to the next
//! usable link when the current one goes down, and the daemon calls
//! [`Channels::set_current`] when a valid message arrives on another link
//! (replies follow the peer).
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

// I/O layer: the TCP reconnect pacing reads the clock, like the daemon
// loop; the sans-IO layers below never do (clippy.toml).
#![allow(clippy::disallowed_methods)]

pub mod iface;
mod no_check;

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener,
    TcpStream, UdpSocket,
};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smol::Async;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{self, Channel, Transport};
use crate::wire;
pub use iface::{LinkInfo, LinkStatus, link_info};

/// TCP reconnect attempts at most this often (conntrackd's 1 s).
const RECONNECT: Duration = Duration::from_secs(1);
/// Largest frame accepted on a TCP stream.
const MAX_FRAME: usize = 65_535 + wire::HEADER_LEN + wire::seal::SEAL_OVERHEAD;

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

enum Outbound {
    Idle,
    Connecting(Async<TcpStream>),
    Connected(Async<TcpStream>),
}

struct Tcp {
    listener: Async<TcpListener>,
    inbound: Option<Async<TcpStream>>,
    inbuf: Vec<u8>,
    outbound: Outbound,
    last_attempt: Option<Instant>,
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the front frame already written.
    written: usize,
    queue_max: usize,
    /// Frames dropped because the queue was full (`-s queue`: errorq's
    /// "not enough space errors").
    dropped: u64,
    dest: SocketAddr,
    interface: String,
    retry: Option<smol::Timer>,
}

/// One dedicated link.
pub struct Link {
    pub channel: Channel,
    pub info: LinkInfo,
    pub stats: LinkStats,
    io: Io,
}

impl Link {
    pub fn kind(&self) -> &'static str {
        self.channel.transport.kind()
    }

    /// TCP: whether our outgoing connection is up (`-s`: client=…).
    pub fn tcp_connected(&self) -> Option<(bool, bool)> {
        match &self.io {
            Io::Tcp(t) => Some((
                t.inbound.is_some(),
                matches!(t.outbound, Outbound::Connected(_)),
            )),
            Io::Udp { .. } => None,
        }
    }

    /// TCP: frames dropped because the queue (`ErrorQueueLength`) was
    /// full.
    pub fn dropped(&self) -> u64 {
        match &self.io {
            Io::Tcp(t) => t.dropped,
            Io::Udp { .. } => 0,
        }
    }

    /// TCP: frames queued but not yet fully written (0 for UDP, which
    /// never queues).
    pub fn unsent(&self) -> usize {
        match &self.io {
            Io::Tcp(t) => t.queue.len(),
            Io::Udp { .. } => 0,
        }
    }
}

/// All links, and which one sends.
pub struct Channels {
    pub links: Vec<Link>,
    current: usize,
    /// "no dedicated links available!" is logged once per outage.
    none_usable: bool,
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
                open_link(c, sync.error_queue_length as usize).map_err(
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

    /// Re-reads every link's interface status; moves sending off a link
    /// that went down. Call about once a second.
    pub fn check_links(&mut self) -> Option<Failover> {
        for l in &mut self.links {
            if let Ok(info) = link_info(&l.channel.interface) {
                l.info.status = info.status;
                l.info.mtu = info.mtu;
            } else {
                l.info.status = LinkStatus::Down;
            }
        }
        if self.links[self.current].info.status.usable() {
            self.none_usable = false;
            return None;
        }
        let n = self.links.len();
        let next = (1..n)
            .map(|k| (self.current + k) % n)
            .find(|&i| self.links[i].info.status.usable());
        match next {
            Some(i) => {
                self.current = i;
                log::info!(
                    "device `{}' becomes dedicated link",
                    self.links[i].channel.interface
                );
                Some(Failover::To(i))
            }
            None => {
                if !self.none_usable {
                    self.none_usable = true;
                    log::error!("no dedicated links available!");
                }
                Some(Failover::NoneUsable)
            }
        }
    }
}

// ===== opening =====

fn domain(ip: &IpAddr) -> Domain {
    if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

fn buffers(s: &Socket, c: &Channel) {
    // Unset, the buffers hold a burst rather than the system's ~200 KiB: a
    // bulk of 20 000 changes leaves as ~400 datagrams at once, and a tail
    // dropped by a full receive buffer waits for the next ALIVE to be
    // noticed. Memory is only used while a burst is in flight.
    let or_default = |n: u32| if n > 0 { n as usize } else { DEFAULT_BUFFER };
    let (snd, rcv) = (or_default(c.snd_buffer), or_default(c.rcv_buffer));
    // The *_FORCE variants need CAP_NET_ADMIN; fall back to the plain ones.
    if rustix::net::sockopt::set_socket_send_buffer_size_force(s, snd).is_err()
    {
        let _ = s.set_send_buffer_size(snd);
    }
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(s, rcv).is_err()
    {
        let _ = s.set_recv_buffer_size(rcv);
    }
}

/// Socket buffer size for the links when the configuration sets none.
const DEFAULT_BUFFER: usize = 4 << 20;

/// A socket bound to the link's interface.
fn socket(dom: Domain, ty: Type, c: &Channel) -> io::Result<Socket> {
    let proto = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let s = Socket::new(dom, ty, Some(proto))?;
    s.bind_device(Some(c.interface.as_bytes()))?;
    if dom == Domain::IPV6 {
        s.set_only_v6(true)?;
    }
    buffers(&s, c);
    Ok(s)
}

/// Link-local IPv6 peers need the interface as scope.
fn scoped(addr: IpAddr, port: u16, ifindex: u32) -> SocketAddr {
    match addr {
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => {
            SocketAddr::V6(SocketAddrV6::new(a, port, 0, ifindex))
        }
        a => SocketAddr::new(a, port),
    }
}

fn unspecified(like: &IpAddr) -> IpAddr {
    if like.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    }
}

fn open_link(c: &Channel, error_queue: usize) -> io::Result<Link> {
    let info = link_info(&c.interface)?;
    let io = match &c.transport {
        Transport::Multicast {
            group,
            ipv4_interface,
            port,
        } => {
            let dom = domain(group);
            let rx = socket(dom, Type::DGRAM, c)?;
            rx.set_reuse_address(true)?;
            rx.bind(&SocketAddr::new(*group, *port).into())?;
            let tx = socket(dom, Type::DGRAM, c)?;
            no_check::apply(&tx, c.checksum)?;
            match group {
                IpAddr::V4(g) => {
                    let local = ipv4_interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    rx.join_multicast_v4_n(
                        g,
                        &socket2::InterfaceIndexOrAddress::Index(info.index),
                    )?;
                    if local.is_unspecified() {
                        rustix::net::sockopt::set_ip_multicast_if_with_ifindex(
                            &tx,
                            &Ipv4Addr::UNSPECIFIED,
                            &local,
                            info.index,
                        )?;
                    } else {
                        tx.set_multicast_if_v4(&local)?;
                    }
                    tx.set_multicast_loop_v4(false)?;
                    tx.set_multicast_ttl_v4(1)?;
                }
                IpAddr::V6(g) => {
                    rx.join_multicast_v6(g, info.index)?;
                    tx.set_multicast_if_v6(info.index)?;
                    tx.set_multicast_loop_v6(false)?;
                    tx.set_multicast_hops_v6(1)?;
                }
            }
            Io::Udp {
                rx: Async::new(UdpSocket::from(rx))?,
                tx: Async::new(UdpSocket::from(tx))?,
                dest: scoped(*group, *port, info.index),
                peer: None,
            }
        }
        Transport::Udp { local, dest, port } => {
            let dom = domain(dest);
            let rx = socket(dom, Type::DGRAM, c)?;
            rx.set_reuse_address(true)?;
            let bind = local.unwrap_or_else(|| unspecified(dest));
            rx.bind(&scoped(bind, *port, info.index).into())?;
            let tx = socket(dom, Type::DGRAM, c)?;
            no_check::apply(&tx, c.checksum)?;
            Io::Udp {
                rx: Async::new(UdpSocket::from(rx))?,
                tx: Async::new(UdpSocket::from(tx))?,
                dest: scoped(*dest, *port, info.index),
                peer: Some(*dest),
            }
        }
        Transport::Tcp { local, dest, port } => {
            let dom = domain(dest);
            let l = socket(dom, Type::STREAM, c)?;
            l.set_reuse_address(true)?;
            let bind = local.unwrap_or_else(|| unspecified(dest));
            l.bind(&scoped(bind, *port, info.index).into())?;
            l.listen(1)?;
            Io::Tcp(Box::new(Tcp {
                listener: Async::new(TcpListener::from(l))?,
                inbound: None,
                inbuf: Vec::new(),
                outbound: Outbound::Idle,
                last_attempt: None,
                queue: VecDeque::new(),
                written: 0,
                queue_max: error_queue.max(1),
                dropped: 0,
                dest: scoped(*dest, *port, info.index),
                interface: c.interface.to_string(),
                retry: None,
            }))
        }
    };
    Ok(Link {
        channel: c.clone(),
        info,
        stats: LinkStats::default(),
        io,
    })
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
        Io::Tcp(t) => {
            let errs = t.drive(cx);
            link.stats.err_send += errs.0;
            link.stats.err_recv += errs.1;
            t.next_frame(cx, buf, &mut link.stats)
        }
    }
}

impl Tcp {
    /// Queues a frame; false when it had to be dropped.
    fn enqueue(&mut self, frame: &[u8]) -> bool {
        let dropped = self.queue.len() >= self.queue_max;
        if dropped {
            self.dropped += 1;
            // Never drop a frame that is half written.
            let at = usize::from(self.written > 0);
            self.queue.remove(at);
        }
        self.queue.push_back(frame.to_vec());
        self.flush();
        !dropped && matches!(self.outbound, Outbound::Connected(_))
    }

    /// Writes queued frames until the socket would block.
    fn flush(&mut self) -> u64 {
        let Outbound::Connected(s) = &self.outbound else {
            return 0;
        };
        let mut stream = s.get_ref();
        while let Some(front) = self.queue.front() {
            match stream.write(&front[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    if self.written == front.len() {
                        self.queue.pop_front();
                        self.written = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return 0,
                Err(_) => {
                    // EPIPE/ECONNRESET: reconnect; the frame is resent whole.
                    self.outbound = Outbound::Idle;
                    self.written = 0;
                    return 1;
                }
            }
        }
        0
    }

    /// Accepts, connects and flushes as far as possible now. Returns
    /// (send errors, receive errors).
    fn drive(&mut self, cx: &mut Context<'_>) -> (u64, u64) {
        let mut errs = (0, 0);
        // Accept until the listener has nothing and its readiness poll is
        // Pending: a Ready poll does not register the waker, and ignoring
        // it would leave a connection waiting in the backlog forever.
        loop {
            while let Ok((s, _)) = self.listener.get_ref().accept() {
                if s.set_nonblocking(true).is_ok()
                    && let Ok(a) = Async::new(s)
                {
                    self.inbound = Some(a);
                    self.inbuf.clear();
                }
            }
            if self.listener.poll_readable(cx).is_pending() {
                break;
            }
        }
        if matches!(self.outbound, Outbound::Idle)
            && self.last_attempt.is_none_or(|t| t.elapsed() >= RECONNECT)
        {
            self.last_attempt = Some(Instant::now());
            match self.connect() {
                Ok(s) => self.outbound = Outbound::Connecting(s),
                Err(_) => errs.0 += 1,
            }
        }
        if let Outbound::Connecting(s) = &self.outbound
            && s.poll_writable(cx).is_ready()
        {
            // Writable is not the same as connected: a socket can report
            // writable before the handshake ends (then peer_addr says
            // ENOTCONN and we keep waiting), or because it failed.
            let failed = !matches!(s.get_ref().take_error(), Ok(None));
            let connected = !failed && s.get_ref().peer_addr().is_ok();
            if failed || connected {
                let old = std::mem::replace(&mut self.outbound, Outbound::Idle);
                if connected && let Outbound::Connecting(s) = old {
                    self.outbound = Outbound::Connected(s);
                } else {
                    errs.0 += 1;
                }
            } else if s.poll_writable(cx).is_ready() {
                // Still connecting but reported writable: look again soon.
                cx.waker().wake_by_ref();
            }
        }
        // Flush until done or the socket's writability poll is Pending
        // (which registers the waker; a Ready poll does not).
        loop {
            errs.0 += self.flush();
            match &self.outbound {
                Outbound::Connected(s) if !self.queue.is_empty() => {
                    if s.poll_writable(cx).is_pending() {
                        break;
                    }
                }
                _ => break,
            }
        }
        if matches!(self.outbound, Outbound::Idle) {
            // Come back for the next reconnect attempt.
            let due =
                self.last_attempt.map_or(Instant::now(), |t| t + RECONNECT);
            let timer = self.retry.get_or_insert_with(|| smol::Timer::at(due));
            timer.set_at(due);
            if std::pin::Pin::new(timer).poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        errs
    }

    fn connect(&self) -> io::Result<Async<TcpStream>> {
        let dom = if self.dest.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = Socket::new(dom, Type::STREAM, Some(Protocol::TCP))?;
        s.bind_device(Some(self.interface.as_bytes()))?;
        s.set_nonblocking(true)?;
        s.set_keepalive(true)?;
        s.set_tcp_nodelay(true)?;
        match s.connect(&self.dest.into()) {
            Ok(()) => {}
            Err(e)
                // By name: EINPROGRESS is 115 on x86 and ARM, 150 on MIPS.
                if e.raw_os_error()
                    == Some(rustix::io::Errno::INPROGRESS.raw_os_error())
                    || e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Async::new(TcpStream::from(s))
    }

    /// The next whole frame from the inbound stream, if any.
    fn next_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        stats: &mut LinkStats,
    ) -> Option<(usize, SocketAddr)> {
        loop {
            if let Some(len) = frame_len(&self.inbuf) {
                match len {
                    Some(len) if len <= buf.len() && len <= MAX_FRAME => {
                        if self.inbuf.len() >= len {
                            let len = ctd_run(&self.inbuf, len, buf.len());
                            buf[..len].copy_from_slice(&self.inbuf[..len]);
                            self.inbuf.drain(..len);
                            return Some((len, self.dest));
                        }
                    }
                    _ => {
                        // Not our framing: the stream cannot be resynchronised.
                        stats.err_recv += 1;
                        self.inbound = None;
                        self.inbuf.clear();
                        return None;
                    }
                }
            }
            let inbound = self.inbound.as_ref()?;
            let mut chunk = [0u8; 16 * 1024];
            match inbound.get_ref().read(&mut chunk) {
                Ok(0) => {
                    self.inbound = None;
                    self.inbuf.clear();
                    return None;
                }
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if inbound.poll_readable(cx).is_ready() {
                        continue;
                    }
                    return None;
                }
                Err(_) => {
                    stats.err_recv += 1;
                    self.inbound = None;
                    return None;
                }
            }
        }
    }
}

/// The length of the frame at the start of a stream buffer: None while the
/// header is incomplete, Some(None) when it is neither our header nor
/// conntrackd's.
fn frame_len(b: &[u8]) -> Option<Option<usize>> {
    if b.len() >= 2 && b[..2] != wire::MAGIC {
        // conntrackd's first byte: version 1, a data type or control.
        let (version, kind) = (b[0] >> 4, b[0] & 0x0f);
        if version != wire::ctd::VERSION || !(kind <= 5 || kind == 10) {
            return Some(None);
        }
        return match wire::ctd::stream_message_len(b)? {
            Ok(len) => Some(Some(len)),
            Err(_) => Some(None),
        };
    }
    let header = wire::Packet::new_unchecked(b);
    header.check_header_len().ok()?;
    if header.magic() != wire::MAGIC {
        return Some(None);
    }
    Some(Some(header.total_len()))
}

/// A conntrackd frame of `first` bytes at the start of `b`, extended by
/// the whole conntrackd messages after it, up to `room` bytes: one read
/// of the node for a run of messages (they are back to back in a
/// datagram too). Our frames stay one per read.
fn ctd_run(b: &[u8], first: usize, room: usize) -> usize {
    if b.len() < 2 || b[..2] == wire::MAGIC {
        return first;
    }
    let mut len = first;
    while let Some(Ok(n)) = wire::ctd::stream_message_len(&b[len..]) {
        if n == 0 || len + n > room || len + n > b.len() {
            break;
        }
        len += n;
    }
    len
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn stream_framing() {
        let mut d =
            vec![b'c', b'T', 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 3, 9, 9, 9];
        assert_eq!(frame_len(&d[..10]), None);
        assert_eq!(frame_len(&d), Some(Some(17)));
        // A sealed frame: its nonce and tag follow the body.
        d[2] = wire::SEALED_VERSION;
        assert_eq!(frame_len(&d), Some(Some(17 + 40)));
        d[0] = b'x';
        assert_eq!(frame_len(&d), Some(None));
    }

    #[test]
    fn conntrackd_stream_framing() {
        use crate::wire::ctd::{self, Body, Message};
        let mut stream = vec![0u8; 64];
        let mut len = 0;
        for (seq, body) in [(1, Body::Alive), (2, Body::Ack { from: 5, to: 9 })]
        {
            let m = Message {
                seq,
                hello: true,
                hello_back: false,
                body,
            };
            len += ctd::encode(&m, ctd::Options::default(), &mut stream[len..])
                .unwrap();
        }
        stream.truncate(len);
        assert_eq!(len, 8 + 16);
        assert_eq!(frame_len(&stream[..5]), None, "header incomplete");
        assert_eq!(frame_len(&stream), Some(Some(8)));
        // The whole messages after the first join it, as room allows.
        assert_eq!(ctd_run(&stream, 8, 1000), 24);
        assert_eq!(ctd_run(&stream, 8, 20), 8);
        assert_eq!(ctd_run(&stream[..20], 8, 1000), 8, "partial second");
        // Garbage that is neither framing ends the stream.
        assert_eq!(frame_len(&[0x70, 0, 0, 8, 0, 0, 0, 0]), Some(None));
    }
}
