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
        self.utf8_path(w, p)?;
        Ok((PathBuf::from(w), p))
    }

    /// Refuses a path holding U+FFFD, which is what a byte of the file
    /// that is not UTF-8 reads as: taken, the path named another file
    /// than the one conntrackd opens (it takes the byte as it is), and
    /// the daemon wrote its log, lock or socket where nobody looks.
    fn utf8_path(&self, w: &str, p: Pos) -> Result<()> {
        if w.contains(char::REPLACEMENT_CHARACTER) {
            return Err(self.found(
                Tok::Word(w),
                p,
                "an absolute path in UTF-8 (a byte of this one is not \
                 UTF-8, shown as U+FFFD)",
            ));
        }
        Ok(())
    }

    pub(super) fn log_target(
        &mut self,
        default: &str,
    ) -> Result<(LogTarget, Pos)> {
        let (w, p) = self.word("On, Off or an absolute path")?;
        let target = match parse_bool(w) {
            Some(true) => LogTarget::File(PathBuf::from(default)),
            Some(false) => LogTarget::Off,
            None if w.starts_with('/') => {
                self.utf8_path(w, p)?;
                LogTarget::File(PathBuf::from(w))
            }
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

    /// `Syslog`'s value; an unknown facility keeps `current`, with
    /// conntrackd's warning, whose Stats text ends in a period (`stats`).
    pub(super) fn syslog(
        &mut self,
        current: Option<Facility>,
        stats: bool,
    ) -> Result<Option<Facility>> {
        let (w, p) = self.word("On, Off or a syslog facility")?;
        Ok(match parse_bool(w) {
            Some(true) => Some(Facility::Daemon),
            Some(false) => None,
            None => match Facility::parse(w) {
                Some(f) => Some(f),
                None => {
                    let end = if stats { "." } else { "" };
                    self.warn(
                        p,
                        format!(
                            "'{w}' is not a known syslog facility, ignoring{end}"
                        ),
                    );
                    current
                }
            },
        })
    }

    pub(super) fn ipv4(&mut self) -> Result<Ipv4Addr> {
        let (w, p) = self.word("an IPv4 address")?;
        parse_ipv4(w)
            .ok_or_else(|| self.found(Tok::Word(w), p, "an IPv4 address"))
    }

    /// A link's IPv6 address. The standard library also reads the dotted
    /// form (`::ffff:192.0.2.2`), which conntrackd's lexer cannot: there
    /// it is a syntax error, so here too.
    pub(super) fn ipv6(&mut self) -> Result<Ipv6Addr> {
        const EXPECTED: &str =
            "an IPv6 address in hexadecimal groups (no dotted or %zone form)";
        let (w, p) = self.word(EXPECTED)?;
        match w.parse() {
            Ok(a) if is_address_token(w) => Ok(a),
            _ => Err(self.found(Tok::Word(w), p, EXPECTED)),
        }
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
        a.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        parse_ipv4(a).map(IpAddr::V4)
    }
    .ok_or_else(|| format!("{a} is not a valid {family}, ignoring"))?;
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

/// Four dotted numbers as conntrackd's inet_aton() reads them, where a
/// reader agrees: a part padded with zeros (`001`) is octal there, taken
/// when its value is below 8 (the same in both bases). A padded part of
/// 8 or more (`010`: 8 to conntrackd, 10 to whoever wrote it) is refused
/// rather than guessed, as the standard library refuses any padding.
pub(super) fn parse_ipv4(w: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = w.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = part.trim_start_matches('0');
        let n: u8 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        if digits.len() < part.len() && n >= 8 {
            return None;
        }
        *octet = n;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// Whether conntrackd's lexer reads `w` whole as one address token (its
/// T_IP rule): four dot-separated decimal numbers, or hexadecimal groups
/// of one to four digits joined by colons (at most eight, or seven on
/// each side of one `::`), with an optional `/digits` either way; digits
/// alone are a number. After an address keyword conntrackd exits on any
/// other word (`syntax error`), while a token that is no valid address of
/// the clause's family only draws a warning. Checked against conntrackd
/// 1.4.7: `1.2.3`, `zz::1`, `fe80::1%eth0`, `::ffff:10.0.0.1`, `1234`,
/// `10.0.0.0/-1` and `10.0.0.1,` exit 1; `abcd`, `1:::2`, `1234/64` warn.
pub(super) fn is_address_token(w: &str) -> bool {
    let digits =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let body = match w.split_once('/') {
        Some((body, prefix)) if digits(prefix) => body,
        Some(_) => return false,
        None if digits(w) => return false,
        None => w,
    };
    let mut quad = body.split('.');
    let dotted = quad.clone().count() == 4 && quad.all(digits);
    dotted || hex_groups(body)
}

/// conntrackd's IPv6 token without its prefix: up to eight groups joined
/// by single colons, or two sides of a `::` (see [`hex_side`]).
fn hex_groups(s: &str) -> bool {
    let group = |g: &str| {
        (1..=4).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit())
    };
    // Seven pieces of five characters each side of `::`: no token is
    // longer, and the bound keeps a long garbage word's scan linear.
    if s.len() > 72 {
        return false;
    }
    let plain = s.split(':').count() <= 8 && s.split(':').all(group);
    // Every `::`, overlapping ones too: `1:::2` splits as `1:` and `2`.
    // A colon byte is never inside a multi-byte character, so the slices
    // fall on character boundaries.
    let b = s.as_bytes();
    plain
        || (0..b.len().saturating_sub(1)).any(|i| {
            b[i] == b':'
                && b[i + 1] == b':'
                && hex_side(&s[..i])
                && hex_side(&s[i + 2..])
        })
}

/// One side of a `::` in conntrackd's IPv6 token: at most seven pieces of
/// one to four hexadecimal digits, each optionally followed by one colon
/// (so a run of digits may be longer than a group, and a side may end in
/// a colon: `1:::2` is a token, which inet_pton then refuses).
fn hex_side(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let runs: Vec<&str> = s.split(':').collect();
    let last = runs.len() - 1;
    let well_formed = runs.iter().enumerate().all(|(i, r)| {
        (i == last || !r.is_empty()) && r.bytes().all(|b| b.is_ascii_hexdigit())
    });
    well_formed && runs.iter().map(|r| r.len().div_ceil(4)).sum::<usize>() <= 7
}

/// The protocol names conntrackd resolves through /etc/protocols (the
/// names and aliases of Debian's netbase, that is IANA's keywords), any
/// case, plus `icmpv6`/`icmp6`; or a number. A partial list left out
/// names routers filter (VRRP, OSPF, PIM, IPIP, L2TP): warned about and
/// dropped, they were replicated by an Ignore list and lost by an Accept.
pub(super) fn protocol_number(w: &str) -> Option<u8> {
    if let Some(n) = parse_u32(w) {
        return u8::try_from(n).ok();
    }
    PROTOCOLS.iter().find_map(|(n, names)| {
        names
            .iter()
            .any(|x| x.eq_ignore_ascii_case(w))
            .then_some(*n)
    })
}

/// Protocol numbers and their names (IANA's registry as /etc/protocols
/// lists it; MPTCP's 262 is no IP protocol number and is left out).
const PROTOCOLS: &[(u8, &[&str])] = &[
    (0, &["ip", "hopopt"]),
    (1, &["icmp"]),
    (2, &["igmp"]),
    (3, &["ggp"]),
    (4, &["ipencap", "ip-encap"]),
    (5, &["st"]),
    (6, &["tcp"]),
    (8, &["egp"]),
    (9, &["igp"]),
    (12, &["pup"]),
    (17, &["udp"]),
    (20, &["hmp"]),
    (22, &["xns-idp"]),
    (27, &["rdp"]),
    (29, &["iso-tp4"]),
    (33, &["dccp"]),
    (36, &["xtp"]),
    (37, &["ddp"]),
    (38, &["idpr-cmtp"]),
    (41, &["ipv6"]),
    (43, &["ipv6-route"]),
    (44, &["ipv6-frag"]),
    (45, &["idrp"]),
    (46, &["rsvp"]),
    (47, &["gre"]),
    (50, &["esp", "ipsec-esp"]),
    (51, &["ah", "ipsec-ah"]),
    (57, &["skip"]),
    (58, &["ipv6-icmp", "icmpv6", "icmp6"]),
    (59, &["ipv6-nonxt"]),
    (60, &["ipv6-opts"]),
    (73, &["rspf", "cphb"]),
    (81, &["vmtp"]),
    (88, &["eigrp"]),
    (89, &["ospf", "ospfigp"]),
    (93, &["ax.25"]),
    (94, &["ipip"]),
    (97, &["etherip"]),
    (98, &["encap"]),
    (103, &["pim"]),
    (108, &["ipcomp"]),
    (112, &["vrrp"]),
    (115, &["l2tp"]),
    (124, &["isis"]),
    (132, &["sctp"]),
    (133, &["fc"]),
    (135, &["mobility-header"]),
    (136, &["udplite"]),
    (137, &["mpls-in-ip"]),
    (138, &["manet"]),
    (139, &["hip"]),
    (140, &["shim6"]),
    (141, &["wesp"]),
    (142, &["rohc"]),
    (143, &["ethernet"]),
];

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

#[cfg(test)]
mod test {
    use std::net::Ipv4Addr;

    use super::{parse_ipv4, protocol_number};

    /// conntrackd's two texts: General's without a final period, Stats'
    /// with one.
    #[test]
    fn an_unknown_facility_warns_in_each_sections_words() {
        let text = "General { UNIX { Path /run/s.ctl } Syslog user }\n\
                    Stats { Syslog kern }\n";
        let p = crate::config::parse(text, "s.conf").unwrap();
        let w: Vec<String> = p.warnings.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            w,
            [
                "s.conf:1:43: 'user' is not a known syslog facility, ignoring",
                "s.conf:2:16: 'kern' is not a known syslog facility, ignoring.",
            ]
        );
    }

    #[test]
    fn ipv4_parts_padded_below_8_only() {
        let v4 = |w: &str| parse_ipv4(w).map(|a| a.to_string());
        let some = |a: &str| Some(a.to_string());
        assert_eq!(v4("0.0.0.0"), some("0.0.0.0"));
        assert_eq!(v4("255.255.255.255"), some("255.255.255.255"));
        assert_eq!(v4("000.00.0.007"), some("0.0.0.7"));
        assert_eq!(v4("00000000001.2.3.4"), some("1.2.3.4"));
        for bad in [
            "256.0.0.0",
            "08.0.0.0",
            "010.0.0.0",
            "0255.0.0.0",
            "1.2.3",
            "1.2.3.4.5",
            "",
            "1..2.3",
            "1.2.3.4/8",
            "+1.2.3.4",
            "1.2.3.x",
            "99999999999.0.0.0",
        ] {
            assert_eq!(parse_ipv4(bad), None::<Ipv4Addr>, "{bad}");
        }
    }

    /// Every name and alias of this host's /etc/protocols (where there is
    /// one) resolves to its number, as conntrackd's getprotobyname() does
    /// there; numbers past 255 (MPTCP's 262) are no IP protocol.
    #[test]
    fn every_name_of_etc_protocols_is_known() {
        let Ok(text) = std::fs::read_to_string("/etc/protocols") else {
            eprintln!("SKIPPED: no /etc/protocols here (Debian's netbase)");
            return;
        };
        let mut missing = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let (Some(name), Some(number)) = (fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(n) = number.parse::<u8>() else {
                continue;
            };
            for w in std::iter::once(name).chain(fields) {
                if protocol_number(w) != Some(n) {
                    missing.push(format!("{w} {n}"));
                }
            }
        }
        assert_eq!(missing, Vec::<String>::new());
    }
}
