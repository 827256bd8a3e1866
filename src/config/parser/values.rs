//! Value parsers: the words a clause takes (numbers, ports, booleans,
//! paths, log targets, syslog facilities, addresses, interface names,
//! CIDR networks, protocol names, TCP states), both as parser methods that
//! report `found X, expected Y` and as plain functions on a word.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::{Parser, Result};
use crate::config::lexer::{Pos, Tok};
use crate::config::{Cidr, Facility, IfName, LogTarget, Logic, TcpState};

impl<'a> Parser<'a> {
    // ===== value helpers =====

    pub(super) fn number(&mut self) -> Result<u32> {
        let (w, p) = self.word("a number")?;
        parse_u32(w).ok_or_else(|| {
            self.found(Tok::Word(w), p, "a number (0 to 4294967295)")
        })
    }

    pub(super) fn port(&mut self) -> Result<u16> {
        let (w, p) = self.word("a port number")?;
        parse_u32(w)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| {
                self.found(Tok::Word(w), p, "a port number (0 to 65535)")
            })
    }

    pub(super) fn boolean(&mut self) -> Result<bool> {
        let (w, p) = self.word("On or Off")?;
        parse_bool(w).ok_or_else(|| self.found(Tok::Word(w), p, "On or Off"))
    }

    pub(super) fn path(&mut self) -> Result<(PathBuf, Pos)> {
        let (w, p) = self.word("an absolute path")?;
        if !w.starts_with('/') {
            return Err(self.found(Tok::Word(w), p, "an absolute path"));
        }
        Ok((PathBuf::from(w), p))
    }

    pub(super) fn log_target(
        &mut self,
        default: &str,
    ) -> Result<(LogTarget, Pos)> {
        let (w, p) = self.word("On, Off or an absolute path")?;
        let target = match parse_bool(w) {
            Some(true) => LogTarget::File(PathBuf::from(default)),
            Some(false) => LogTarget::Off,
            None if w.starts_with('/') => LogTarget::File(PathBuf::from(w)),
            None => {
                return Err(self.found(
                    Tok::Word(w),
                    p,
                    "On, Off or an absolute path",
                ));
            }
        };
        Ok((target, p))
    }

    pub(super) fn syslog(
        &mut self,
        current: Option<Facility>,
    ) -> Result<Option<Facility>> {
        let (w, p) = self.word("On, Off or a syslog facility")?;
        Ok(match parse_bool(w) {
            Some(true) => Some(Facility::Daemon),
            Some(false) => None,
            None => match Facility::parse(w) {
                Some(f) => Some(f),
                None => {
                    self.warn(
                        p,
                        format!(
                            "'{w}' is not a known syslog facility, ignoring"
                        ),
                    );
                    current
                }
            },
        })
    }

    pub(super) fn ipv4(&mut self) -> Result<Ipv4Addr> {
        let (w, p) = self.word("an IPv4 address")?;
        w.parse()
            .map_err(|_| self.found(Tok::Word(w), p, "an IPv4 address"))
    }

    pub(super) fn ipv6(&mut self) -> Result<Ipv6Addr> {
        let (w, p) = self.word("an IPv6 address")?;
        w.parse()
            .map_err(|_| self.found(Tok::Word(w), p, "an IPv6 address"))
    }

    pub(super) fn ifname(&mut self) -> Result<IfName> {
        let (w, p) = self.word("an interface name")?;
        let mut name = IfName::new();
        if w.is_empty() || name.push_str(w).is_err() {
            return Err(self.found(
                Tok::Word(w),
                p,
                "an interface name of at most 15 characters",
            ));
        }
        Ok(name)
    }

    /// `Accept` or `Ignore`.
    pub(super) fn logic(&mut self) -> Result<Logic> {
        match self.word("Accept or Ignore")? {
            ("Accept", _) => Ok(Logic::Accept),
            ("Ignore", _) => Ok(Logic::Ignore),
            (w, p) => Err(self.found(Tok::Word(w), p, "Accept or Ignore")),
        }
    }

    /// Consumes the optional value of an obsolete clause.
    pub(super) fn skip_obsolete_value(&mut self) {
        if let (Tok::Word(w), _) = self.peek()
            && (parse_bool(w).is_some()
                || parse_u32(w).is_some()
                || w.parse::<IpAddr>().is_ok())
        {
            self.next();
        }
    }
}

// ===== helper functions =====

pub(super) fn parse_u32(w: &str) -> Option<u32> {
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    w.parse().ok()
}

/// conntrackd accepts on/off in any case, and (1.4.7) yes/no.
pub(super) fn parse_bool(w: &str) -> Option<bool> {
    match w.to_ascii_lowercase().as_str() {
        "on" | "yes" => Some(true),
        "off" | "no" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_cidr(
    w: &str,
    v6: bool,
) -> std::result::Result<Cidr, String> {
    let (a, prefix) = match w.split_once('/') {
        Some((a, n)) => (a, Some(n)),
        None => (w, None),
    };
    let family = if v6 { "IPv6" } else { "IPv4" };
    let addr: IpAddr = if v6 {
        a.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        a.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| format!("{a} is not a valid {family}, ignoring"))?;
    let max = if v6 { 128 } else { 32 };
    let prefix = match prefix {
        None => max,
        Some(n) => match parse_u32(n) {
            Some(n) if n <= max as u32 => n as u8,
            _ => {
                return Err(format!(
                    "{a}/{n} is not a valid network, ignoring"
                ));
            }
        },
    };
    Ok(Cidr { addr, prefix })
}

/// The protocol names conntrackd users write (resolved by conntrackd through
/// /etc/protocols, whose names and aliases these are), or a number.
pub(super) fn protocol_number(w: &str) -> Option<u8> {
    if let Some(n) = parse_u32(w) {
        return u8::try_from(n).ok();
    }
    Some(match w.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" | "icmp6" => 58,
        "dccp" => 33,
        "sctp" => 132,
        "udplite" => 136,
        _ => return None,
    })
}

pub(super) fn tcp_state(w: &str) -> Option<TcpState> {
    Some(match w {
        "SYN_SENT" => TcpState::SynSent,
        "SYN_RECV" => TcpState::SynRecv,
        "ESTABLISHED" => TcpState::Established,
        "FIN_WAIT" => TcpState::FinWait,
        "CLOSE_WAIT" => TcpState::CloseWait,
        "LAST_ACK" => TcpState::LastAck,
        "TIME_WAIT" => TcpState::TimeWait,
        "CLOSED" | "CLOSE" => TcpState::Close,
        "LISTEN" => TcpState::Listen,
        _ => return None,
    })
}
