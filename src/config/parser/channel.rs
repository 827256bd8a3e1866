//! One dedicated link: `Multicast|UDP|TCP [Default] { … }`, its clauses
//! per transport and the checks that make it a usable [`Transport`].

use std::net::{IpAddr, Ipv4Addr};

use super::values::is_address_token;
use super::{Parser, Result};
use crate::config::lexer::{Pos, Tok};
use crate::config::{Channel, IfName, Transport};

const MCAST: &[&str] = &[
    "IPv4_address",
    "IPv6_address",
    "IPv4_interface",
    "IPv6_interface",
    "Interface",
    "Group",
    "SndSocketBuffer",
    "RcvSocketBuffer",
    "Checksum",
];
const UDP: &[&str] = &[
    "IPv4_address",
    "IPv6_address",
    "IPv4_Destination_Address",
    "IPv6_Destination_Address",
    "Port",
    "Interface",
    "SndSocketBuffer",
    "RcvSocketBuffer",
    "Checksum",
];
const TCP: &[&str] = &[
    "IPv4_address",
    "IPv6_address",
    "IPv4_Destination_Address",
    "IPv6_Destination_Address",
    "Port",
    "Interface",
    "SndSocketBuffer",
    "RcvSocketBuffer",
    "Checksum",
    "ErrorQueueLength",
];

/// Where a Multicast block's address clauses were first given, for
/// conntrackd's family rule ([`Parser::multicast_group`]).
#[derive(Default)]
struct Families {
    v4_group: Option<Pos>,
    v6_group: Option<Pos>,
    v4_interface: Option<Pos>,
}

impl<'a> Parser<'a> {
    /// A Multicast group clause at `at`: refused where conntrackd cannot
    /// open the link. conntrackd takes the family of the block's first
    /// address clause; a later group of the other family is written over
    /// the first one's bytes (with a warning), and the link fails to open
    /// at start (`can't open channel socket: Invalid argument`, exit 1).
    fn multicast_group(
        &mut self,
        families: &mut Families,
        v6: bool,
        at: Pos,
    ) -> Result<()> {
        let (other, name, other_name) = if v6 {
            (families.v4_group, "IPv6", "IPv4")
        } else {
            (families.v6_group, "IPv4", "IPv6")
        };
        if let Some(first) = other {
            return Err(self.err(at, format!("the Multicast block has an {other_name} group ({other_name}_address at {first}) and an {name} one: conntrackd cannot open such a link; give one group")));
        }
        if v6 && let Some(first) = families.v4_interface {
            return Err(self.err(at, format!("an IPv6 group after `IPv4_interface' (at {first}): conntrackd takes the link as IPv4 and cannot open it; drop IPv4_interface (an IPv6 group is joined on Interface)")));
        }
        if v6 {
            families.v6_group.get_or_insert(at);
        } else {
            families.v4_group.get_or_insert(at);
        }
        Ok(())
    }

    pub(super) fn channel(
        &mut self,
        kind: &'static str,
        pos: Pos,
    ) -> Result<()> {
        let mut default = false;
        if let (Tok::Word("Default"), _) = self.peek() {
            self.next();
            default = true;
        }
        let keywords = match kind {
            "Multicast" => MCAST,
            "UDP" => UDP,
            _ => TCP,
        };
        let mut interface: Option<IfName> = None;
        let mut addr: Option<IpAddr> = None;
        let mut dest: Option<IpAddr> = None;
        let mut mcast_if: Option<Ipv4Addr> = None;
        let mut port: Option<u16> = None;
        let mut snd = 0;
        let mut rcv = 0;
        let mut checksum = true;
        let mut error_queue = None;
        let mut families = Families::default();
        self.block(kind, keywords, |p, kw, kpos| {
            match (kind, kw) {
                ("Multicast", "IPv4_address") => {
                    let group = p.ipv4()?;
                    p.multicast_group(&mut families, false, kpos)?;
                    addr = Some(IpAddr::V4(group));
                }
                ("Multicast", "IPv6_address") => {
                    let group = p.ipv6()?;
                    p.multicast_group(&mut families, true, kpos)?;
                    addr = Some(IpAddr::V6(group));
                }
                (_, "IPv4_address") => addr = Some(IpAddr::V4(p.ipv4()?)),
                (_, "IPv6_address") => addr = Some(IpAddr::V6(p.ipv6()?)),
                ("Multicast", "IPv4_interface") => {
                    let local = p.ipv4()?;
                    // After an IPv6 group conntrackd warns and keeps
                    // the link IPv6 (joined on Interface): it works.
                    if families.v6_group.is_some() {
                        p.warn(kpos, "your multicast interface is IPv4 but is binded to an IPv6 interface? Surely, this is not what you want");
                    } else {
                        families.v4_interface.get_or_insert(kpos);
                        mcast_if = Some(local);
                    }
                }
                ("Multicast", "IPv6_interface") => {
                    // conntrackd drops the value unread: any address
                    // token passes, even an IPv4 or a bad one; only a
                    // word its lexer has no token for stops it.
                    let expected = "an address (the clause is ignored)";
                    let (w, wp) = p.word(expected)?;
                    if !is_address_token(w) {
                        return Err(p.found(Tok::Word(w), wp, expected));
                    }
                    p.warn(kpos, "`IPv6_interface' not required, ignoring");
                }
                ("Multicast", "Group") => port = Some(p.port()?),
                ("Multicast", "Backlog") => {
                    p.number()?;
                    p.warn(kpos, "`Backlog' option inside Multicast clause is obsolete. Please, remove it from conntrackd.conf");
                }
                ("Multicast", "McastSndSocketBuffer") => snd = p.number()?,
                ("Multicast", "McastRcvSocketBuffer") => rcv = p.number()?,
                ("UDP" | "TCP", "IPv4_Destination_Address") => {
                    dest = Some(IpAddr::V4(p.ipv4()?));
                }
                ("UDP" | "TCP", "IPv6_Destination_Address") => {
                    dest = Some(IpAddr::V6(p.ipv6()?));
                }
                ("UDP" | "TCP", "Port") => port = Some(p.port()?),
                ("TCP", "ErrorQueueLength") => error_queue = Some(p.number()?),
                (_, "Interface") => interface = Some(p.ifname()?),
                (_, "SndSocketBuffer") => snd = p.number()?,
                (_, "RcvSocketBuffer") => rcv = p.number()?,
                (_, "Checksum") => checksum = p.boolean()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;

        let need = |p: &Self, what: &str| {
            p.err(pos, format!("the {kind} block needs `{what}'"))
        };
        let interface = interface.ok_or_else(|| need(self, "Interface"))?;
        let port = match port {
            Some(n) if n > 0 => n,
            _ => {
                return Err(need(
                    self,
                    if kind == "Multicast" { "Group" } else { "Port" },
                ));
            }
        };
        let transport = if kind == "Multicast" {
            let group =
                addr.ok_or_else(|| need(self, "IPv4_address or IPv6_address"))?;
            if !group.is_multicast() {
                return Err(self.err(pos, format!("the Multicast block's address {group} is not a multicast group")));
            }
            Transport::Multicast {
                group,
                ipv4_interface: mcast_if,
                port,
            }
        } else {
            let dest = dest.ok_or_else(|| {
                need(
                    self,
                    "IPv4_Destination_Address or IPv6_Destination_Address",
                )
            })?;
            if let Some(local) = addr
                && local.is_ipv4() != dest.is_ipv4()
            {
                return Err(self.err(pos, format!("the {kind} block mixes an IPv4 and an IPv6 address ({local}, {dest})")));
            }
            if kind == "UDP" {
                Transport::Udp {
                    local: addr,
                    dest,
                    port,
                }
            } else {
                Transport::Tcp {
                    local: addr,
                    dest,
                    port,
                }
            }
        };
        let s = self.sync_mut();
        if let Some(n) = error_queue {
            s.error_queue_length = if n == 0 { 128 } else { n };
        }
        s.channels.push(Channel {
            transport,
            default,
            interface,
            snd_buffer: snd,
            rcv_buffer: rcv,
            checksum,
        });
        self.channel_pos.push(pos);
        Ok(())
    }
}
