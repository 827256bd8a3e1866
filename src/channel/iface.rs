//! Interface facts the channels need (index, MTU, up/running), read with
//! one rtnetlink request in the caller's network namespace; and the
//! kernel's link notifications, which say when to read them again.

use std::io;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::config::IfName;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
/// The rtnetlink group of link notifications (`RTNLGRP_LINK`).
const RTNLGRP_LINK: u32 = 1;

/// What `-s link` calls status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Down,
    NoCarrier,
    Running,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Down => "DOWN",
            LinkStatus::NoCarrier => "NO-CARRIER",
            LinkStatus::Running => "RUNNING",
        }
    }

    /// conntrackd fails over to a link that is UP or RUNNING.
    pub fn usable(self) -> bool {
        self != LinkStatus::Down
    }
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub mtu: u32,
    pub status: LinkStatus,
    /// Its name now (renamed, it differs from the configured one); None
    /// when the kernel's answer had none that fits.
    pub name: Option<IfName>,
}

/// Looks an interface up by name.
pub fn link_info(name: &str) -> io::Result<LinkInfo> {
    get_link(0, Some(name), name)
}

/// Looks an interface up by index, which it keeps when renamed (NotFound
/// once it is deleted).
pub fn link_info_by_index(index: u32) -> io::Result<LinkInfo> {
    get_link(index, None, &format!("interface {index}"))
}

/// One RTM_GETLINK for the interface with this index, or with this name
/// (index 0); `what` names it in the errors.
fn get_link(
    index: u32,
    name: Option<&str>,
    what: &str,
) -> io::Result<LinkInfo> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    let mut req = Vec::with_capacity(64);
    let name_attr_len = name.map_or(0, |n| 4 + n.len() + 1);
    let total = 16 + 16 + align4(name_attr_len);
    req.extend_from_slice(&(total as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: any family, pad, type, the index (0: by name), flags,
    // change mask.
    req.extend_from_slice(&[0u8; 4]);
    req.extend_from_slice(&index.to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]);
    if let Some(name) = name {
        req.extend_from_slice(&(name_attr_len as u16).to_ne_bytes());
        req.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        req.extend_from_slice(name.as_bytes());
        req.push(0);
    }
    req.resize(total, 0);
    sock.send_to(&req, &SocketAddr::new(0, 0), 0)?;

    let fd = std::os::fd::AsFd::as_fd(&sock);
    let mut pfd = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::time::Timespec {
        tv_sec: Duration::from_secs(2).as_secs() as i64,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut pfd, Some(&ts)).map_err(io::Error::from)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer from rtnetlink",
        ));
    }
    let mut buf = vec![0u8; 16 * 1024];
    let n = {
        let mut slice = &mut buf[..];
        sock.recv(&mut slice, 0)?
    }
    .min(buf.len());
    parse_newlink(&buf[..n], what)
}

/// A socket subscribed to the kernel's link notifications in the caller's
/// network namespace: it becomes readable when an interface is created,
/// deleted, or changes state (conntrackd learns of a link going down the
/// same way, at once).
pub struct LinkEvents {
    sock: Socket,
}

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.add_membership(RTNLGRP_LINK)?;
        sock.set_non_blocking(true)?;
        Ok(LinkEvents { sock })
    }

    /// Reads every notification queued (at most `MAX_DRAIN`, the rest
    /// waits for the next call): whether there was any. An overrun
    /// (ENOBUFS: notifications lost) counts as one.
    pub fn drain(&mut self) -> bool {
        /// A storm of notifications is read in parts.
        const MAX_DRAIN: usize = 256;
        let mut buf = vec![0u8; 16 * 1024];
        let mut any = false;
        for _ in 0..MAX_DRAIN {
            let mut slice = &mut buf[..];
            match self.sock.recv(&mut slice, 0) {
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ENOBUFS: the kernel dropped notifications for us (said
                // once; the next read goes on).
                Err(_) => return true,
            }
        }
        any
    }
}

impl std::os::fd::AsFd for LinkEvents {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

fn parse_newlink(buf: &[u8], name: &str) -> io::Result<LinkInfo> {
    let bad = || {
        io::Error::new(io::ErrorKind::InvalidData, "malformed rtnetlink answer")
    };
    let u16_at = |b: &[u8], i: usize| {
        b.get(i..i + 2).map(|x| u16::from_ne_bytes([x[0], x[1]]))
    };
    let u32_at = |b: &[u8], i: usize| {
        b.get(i..i + 4)
            .map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
    };
    let msg_type = u16_at(buf, 4).ok_or_else(bad)?;
    if msg_type == NLMSG_ERROR {
        let errno = u32_at(buf, 16).ok_or_else(bad)? as i32;
        return Err(if errno == -rustix::io::Errno::NODEV.raw_os_error() {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name}: no such interface"),
            )
        } else {
            // Saturating: a forged i32::MIN must not overflow.
            io::Error::from_raw_os_error(errno.saturating_neg())
        });
    }
    if msg_type != RTM_NEWLINK {
        return Err(bad());
    }
    let len = (u32_at(buf, 0).ok_or_else(bad)? as usize).min(buf.len());
    let index = u32_at(buf, 16 + 4).ok_or_else(bad)?;
    let flags = u32_at(buf, 16 + 8).ok_or_else(bad)?;
    let mut mtu = 1500;
    let mut name = None;
    let mut at = 32;
    while at + 4 <= len {
        let alen = usize::from(u16_at(buf, at).ok_or_else(bad)?);
        let kind = u16_at(buf, at + 2).ok_or_else(bad)? & 0x3fff;
        if alen < 4 {
            break;
        }
        if kind == IFLA_MTU {
            mtu = u32_at(buf, at + 4).ok_or_else(bad)?;
        }
        if kind == IFLA_IFNAME {
            let value =
                buf.get(at + 4..(at + alen).min(len)).ok_or_else(bad)?;
            let value = value.split(|&b| b == 0).next().unwrap_or_default();
            name = std::str::from_utf8(value)
                .ok()
                .and_then(|n| IfName::try_from(n).ok());
        }
        at += align4(alen);
    }
    let status = if flags & IFF_UP == 0 {
        LinkStatus::Down
    } else if flags & IFF_RUNNING == 0 {
        LinkStatus::NoCarrier
    } else {
        LinkStatus::Running
    };
    Ok(LinkInfo {
        index,
        mtu,
        status,
        name,
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn loopback_is_up_and_has_an_mtu() {
        // Every network namespace has lo; this one's may be down.
        let lo = link_info("lo").unwrap();
        assert_eq!(lo.index, 1);
        assert!(lo.mtu >= 1280);
        let err = link_info("no-such-if0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(lo.name.as_deref(), Some("lo"));
        assert_eq!(link_info_by_index(1).unwrap(), lo);
        let err = link_info_by_index(0x7fff_fff0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn an_error_code_of_i32_min_is_an_error_not_an_overflow() {
        // nlmsghdr (16 bytes), then the error code and the request's
        // header; a kernel never sends i32::MIN, a forger might.
        let mut buf = [0u8; 36];
        buf[0..4].copy_from_slice(&36u32.to_ne_bytes());
        buf[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        let err = parse_newlink(&buf, "sync0").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(i32::MAX));
    }
}
