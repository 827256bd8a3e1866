//! `Filter [From Userspace|Kernelspace] { Protocol … Address … State … }`:
//! the protocol, address and TCP state lists, and how repeated clauses
//! accumulate into one rule per type (also used by the obsolete
//! top-level `IgnoreProtocol` and `IgnoreTrafficFor`).

use super::values::{is_address_token, parse_cidr, protocol_number, tcp_state};
use super::{Parser, Result};
use crate::config::lexer::Tok;
use crate::config::{AddressRule, Logic, Prefixes, Rule, TcpState};

const FILTER: &[&str] = &["Protocol", "Address", "State"];

impl<'a> Parser<'a> {
    pub(super) fn filter(&mut self) -> Result<()> {
        // Every block sets where events are filtered, as conntrackd's
        // grammar does: a block without `From` is `From Userspace`, even
        // after a `From Kernelspace` one.
        self.cfg.general.filter.from_kernelspace = false;
        if let (Tok::Word("From"), _) = self.peek() {
            self.next();
            self.cfg.general.filter.from_kernelspace =
                match self.word("Userspace or Kernelspace")? {
                    ("Userspace", _) => false,
                    ("Kernelspace", _) => true,
                    (w, p) => {
                        return Err(self.found(
                            Tok::Word(w),
                            p,
                            "Userspace or Kernelspace",
                        ));
                    }
                };
        }
        self.block("Filter", FILTER, |p, kw, _| {
            match kw {
                "Protocol" => {
                    let logic = p.logic()?;
                    let items = p.protocol_list("Protocol")?;
                    add_rule(&mut p.cfg.general.filter.protocol, logic, items);
                }
                "Address" => {
                    let logic = p.logic()?;
                    let items = p.address_list("Address")?;
                    add_addresses(
                        &mut p.cfg.general.filter.address,
                        logic,
                        items,
                    );
                }
                "State" => {
                    let logic = p.logic()?;
                    let items = p.state_list()?;
                    add_rule(&mut p.cfg.general.filter.state, logic, items);
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    /// `{ tcp udp 132 … }`: names from a built-in /etc/protocols subset, or
    /// numbers. Unknown names warn and are ignored, as in conntrackd.
    pub(super) fn protocol_list(&mut self, name: &str) -> Result<Vec<u8>> {
        let open = self.open(&format!("the {name} list"))?;
        let mut out = Vec::new();
        loop {
            match self.next() {
                (Tok::Close, _) => return Ok(out),
                (Tok::Word(w), p) => match protocol_number(w) {
                    Some(n) if !out.contains(&n) => out.push(n),
                    Some(_) => {}
                    None => self
                        .warn(p, format!("unknown protocol `{w}', ignoring")),
                },
                (t, p) => {
                    return Err(self.found(t, p, &format!("a protocol name or `}}' closing the list opened at {open}")));
                }
            }
        }
    }

    /// `{ IPv4_address 10.0.0.0/8 IPv6_address ::1 … }`.
    pub(super) fn address_list(&mut self, name: &str) -> Result<Prefixes> {
        let mut out = Prefixes::default();
        self.block(name, &["IPv4_address", "IPv6_address"], |p, kw, _| {
            let v6 = match kw {
                "IPv4_address" => false,
                "IPv6_address" => true,
                _ => return Ok(false),
            };
            let expected = if v6 {
                "an IPv6 address or network in hexadecimal groups (such as fd00::1 or fd00::/8; no dotted or %zone form)"
            } else {
                "an IPv4 address or network (such as 192.0.2.1 or 10.0.0.0/8)"
            };
            let (w, wp) = p.word(expected)?;
            // A word conntrackd cannot read as an address stops it (a
            // syntax error); one it reads but rejects is warned about
            // and dropped, as there.
            if !is_address_token(w) {
                return Err(p.found(Tok::Word(w), wp, expected));
            }
            match parse_cidr(w, v6) {
                Ok(c) => {
                    // conntrackd keeps one pool for every Filter block,
                    // and says so only of an IPv4 network it holds as
                    // written (observed: a repeated host, /32 or IPv6
                    // item passes in silence).
                    let earlier = p
                        .cfg
                        .general
                        .filter
                        .address
                        .as_ref()
                        .is_some_and(|r| r.items.has(&c));
                    let repeated = !out.insert(c) || earlier;
                    if let Some((net, _)) = w.split_once('/')
                        && repeated
                        && !v6
                        && c.prefix < 32
                    {
                        p.warn(
                            wp,
                            format!(
                                "netmask {net} is repeated in the ignore pool"
                            ),
                        );
                    }
                }
                Err(msg) => p.warn(wp, msg),
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// `{ ESTABLISHED CLOSED … for TCP … }`.
    fn state_list(&mut self) -> Result<Vec<TcpState>> {
        let open = self.open("the State list")?;
        let mut out = Vec::new();
        let mut pending = false;
        loop {
            match self.next() {
                (Tok::Close, p) => {
                    if pending {
                        return Err(self.found(
                            Tok::Close,
                            p,
                            "`for TCP' after the states",
                        ));
                    }
                    return Ok(out);
                }
                (Tok::Word("for"), _) => {
                    match self.word("TCP")? {
                        (w, _) if w.eq_ignore_ascii_case("tcp") => {}
                        (w, p) => {
                            return Err(self.found(
                                Tok::Word(w),
                                p,
                                "TCP (states exist for TCP only)",
                            ));
                        }
                    }
                    pending = false;
                }
                (Tok::Word(w), p) => {
                    let s = tcp_state(w).ok_or_else(|| {
                        self.found(Tok::Word(w), p, "a TCP state (SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSED, LISTEN) or `for'")
                    })?;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                    pending = true;
                }
                (t, p) => {
                    return Err(self.found(t, p, &format!("a TCP state or `}}' closing the list opened at {open}")));
                }
            }
        }
    }
}

pub(super) fn add_rule<T: PartialEq>(
    slot: &mut Option<Rule<T>>,
    logic: Logic,
    items: Vec<T>,
) {
    let rule = slot.get_or_insert(Rule {
        logic,
        items: Vec::new(),
    });
    rule.logic = logic;
    for i in items {
        if !rule.items.contains(&i) {
            rule.items.push(i);
        }
    }
}

/// [`add_rule`] for addresses: hashed and indexed, since an `Address`
/// rule may hold 100 000 items (a linear `contains` made parsing
/// quadratic).
pub(super) fn add_addresses(
    slot: &mut Option<AddressRule>,
    logic: Logic,
    items: Prefixes,
) {
    let rule = slot.get_or_insert_with(|| AddressRule {
        logic,
        items: Prefixes::default(),
    });
    rule.logic = logic;
    for c in items.iter() {
        rule.items.insert(*c);
    }
}

#[cfg(test)]
mod test {
    /// What conntrackd 1.4.7 says of repeated Address items (observed):
    /// only an IPv4 network with a prefix below 32 that the pool already
    /// holds as written, in any earlier Filter block, draws `netmask <address>
    /// is repeated in the ignore pool'; a repeated host, a /32 or an
    /// IPv6 item, nothing.
    #[test]
    fn only_a_repeated_ipv4_network_is_warned_about_as_conntrackd_does() {
        let text = "General { UNIX { Path /run/s.ctl }\n\
            Filter { Address Ignore { IPv4_address 10.0.0.0/8 \
            IPv4_address 1.1.1.1 IPv4_address 1.1.1.1 \
            IPv4_address 1.1.1.1/32 IPv4_address 1.1.1.1/32 \
            IPv6_address ::1 IPv6_address ::1 \
            IPv6_address fe80::/10 IPv6_address fe80::/10 \
            IPv4_address 10.1.0.0/8 } }\n\
            Filter { Address Accept { IPv4_address 10.0.0.0/8 } }\n}\n";
        let p = crate::config::parse(text, "r.conf").unwrap();
        let w: Vec<String> = p.warnings.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            w,
            ["r.conf:3:40: netmask 10.0.0.0 is repeated in the ignore pool"]
        );
        let rule = p.config.general.filter.address.unwrap();
        assert_eq!(rule.items.len(), 5);
    }
}
