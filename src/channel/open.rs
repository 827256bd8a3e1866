//! Opening a link's sockets: bound to the link's interface, with the
//! configured (or a burst-sized) buffer, joined to the multicast group
//! with our own datagrams not looped back, and, for TCP, listening for
//! the peer's connection.
//!
//! In two steps: [`open_sockets`] opens plain sockets and may wait on the
//! kernel (any thread may run it: the link check's does when an interface
//! was created again), then [`Opened::into_link`] registers them with the
//! reactor on the loop's thread.

use std::io;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener,
    UdpSocket,
};

use smol::Async;
use socket2::{Domain, Protocol, Socket, Type};

use super::tcp::Tcp;
use super::{Io, Link, LinkInfo, LinkStats, link_info, no_check};
use crate::config::{Channel, Transport};

fn domain(ip: &IpAddr) -> Domain {
    if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// Sizes `s`'s buffers: `SndSocketBuffer`, `RcvSocketBuffer` (`sizes`).
pub(super) fn buffers(s: &Socket, sizes: (u32, u32)) {
    // Unset, the buffers hold a burst rather than the system's ~200 KiB: a
    // bulk of 20 000 changes leaves as ~400 datagrams at once, and a tail
    // dropped by a full receive buffer waits for the next ALIVE to be
    // noticed. Memory is only used while a burst is in flight.
    let or_default = |n: u32| if n > 0 { n as usize } else { DEFAULT_BUFFER };
    let (snd, rcv) = (or_default(sizes.0), or_default(sizes.1));
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
    buffers(&s, (c.snd_buffer, c.rcv_buffer));
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

/// A link's sockets, opened but not yet handed to the event loop's
/// reactor: plain sockets, so that another thread may open them (a
/// multicast join waits while the kernel holds RTNL) and give them to the
/// loop.
pub struct Opened {
    info: LinkInfo,
    sockets: Sockets,
}

enum Sockets {
    Udp {
        rx: UdpSocket,
        tx: UdpSocket,
        dest: SocketAddr,
        /// Unicast: the only source accepted.
        peer: Option<IpAddr>,
    },
    Tcp {
        listener: TcpListener,
        dest: SocketAddr,
        /// Where our connections come from (the configured address).
        from: Option<SocketAddr>,
    },
}

pub(super) fn open_link(c: &Channel, error_queue: usize) -> io::Result<Link> {
    open_sockets(c)?.into_link(c, error_queue)
}

/// Opens the sockets of link `c` on its interface as it is now. Waits on
/// rtnetlink (the interface's index) and, for multicast, on the group
/// join.
pub fn open_sockets(c: &Channel) -> io::Result<Opened> {
    let info = link_info(&c.interface)?;
    let sockets = match &c.transport {
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
            Sockets::Udp {
                rx: rx.into(),
                tx: tx.into(),
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
            // From the configured address: the peer accepts only its
            // destination as source, and the route's choice may be
            // another address of the interface.
            if let Some(l) = local {
                tx.bind(&scoped(*l, 0, info.index).into())?;
            }
            no_check::apply(&tx, c.checksum)?;
            Sockets::Udp {
                rx: rx.into(),
                tx: tx.into(),
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
            Sockets::Tcp {
                listener: l.into(),
                dest: scoped(*dest, *port, info.index),
                from: local.map(|l| scoped(l, 0, info.index)),
            }
        }
    };
    Ok(Opened { info, sockets })
}

impl Opened {
    /// The link, its sockets registered with the reactor (no waiting).
    pub(super) fn into_link(
        self,
        c: &Channel,
        error_queue: usize,
    ) -> io::Result<Link> {
        let io = match self.sockets {
            Sockets::Udp { rx, tx, dest, peer } => Io::Udp {
                rx: Async::new(rx)?,
                tx: Async::new(tx)?,
                dest,
                peer,
            },
            Sockets::Tcp {
                listener,
                dest,
                from,
            } => Io::Tcp(Box::new(Tcp::new(
                Async::new(listener)?,
                (from, dest),
                (c.interface.to_string(), self.info.index),
                (c.snd_buffer, c.rcv_buffer),
                error_queue,
            ))),
        };
        Ok(Link {
            channel: c.clone(),
            info: self.info,
            stats: LinkStats::default(),
            io,
            reopening: false,
            reopen_failed: false,
        })
    }
}

#[cfg(test)]
mod test {
    use crate::channel::Channels;

    /// conntrackd's `can't open channel socket: %s` carries strerror's
    /// text; Rust's error adds " (os error N)".
    #[test]
    fn a_link_that_does_not_open_says_why_in_strerrors_words() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: binding to a device needs root");
            return;
        }
        let text = "General { UNIX { Path /tmp/co.sock } } \
             Sync { Mode FTFW { } \
             UDP { IPv4_address 10.99.99.1 IPv4_Destination_Address 10.99.99.2 Port 37953 Interface lo } }";
        let cfg = crate::config::parse(text, "t.conf").unwrap().config;
        let Err(e) = Channels::open(cfg.sync.as_ref().unwrap()) else {
            panic!("lo has no 10.99.99.1");
        };
        assert_eq!(
            e.to_string(),
            "can't open channel socket: UDP link on lo: \
             Cannot assign requested address"
        );
    }
}
