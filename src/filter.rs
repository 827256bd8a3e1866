//! The user-space `Filter` (reference §7.1, conntrackd 1.4.6+ semantics)
//! and the expectation filters.
//!
//! An entry passes when every configured filter type passes:
//! - Protocol: its L4 protocol is in the set (Accept) / not in it (Ignore);
//! - Address: its original source **or** its reply source (the real
//!   destination after DNAT) matches an address or prefix of the set;
//! - State: TCP entries that carry a state are checked; others pass.
//!
//! Expectations are replicated when their helper is wanted
//! (`ExpectationSync On`, or a helper-name prefix list, case-insensitive)
//! and their master conntrack is replicated (in the internal cache). The
//! same filter decides what `-F` and `-t` delete. Pure.

use std::net::IpAddr;

use crate::config::{Cidr, ExpectationSync, Filter, Logic, Rule};
use crate::model::{Conntrack, Expect};

fn in_prefix(addr: IpAddr, c: &Cidr) -> bool {
    match (addr, c.addr) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = u32::from(c.prefix.min(32));
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = u32::from(c.prefix.min(128));
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn passes<T>(rule: &Option<Rule<T>>, matches: impl Fn(&T) -> bool) -> bool {
    match rule {
        None => true,
        Some(r) => r.items.iter().any(matches) == (r.logic == Logic::Accept),
    }
}

/// Whether a conntrack is replicated (and may be deleted by `-F`/`-t`).
pub fn conntrack(f: &Filter, ct: &Conntrack) -> bool {
    let proto = passes(&f.protocol, |p| *p == ct.orig.proto);
    let reply_src = ct.reply_tuple().src;
    let addr = passes(&f.address, |c| {
        in_prefix(ct.orig.src, c) || in_prefix(reply_src, c)
    });
    let state = match (ct.tcp_state(), &f.state) {
        (Some(s), Some(_)) if ct.orig.proto == 6 => {
            passes(&f.state, |x| *x as u8 == s)
        }
        _ => true,
    };
    proto && addr && state
}

/// Whether an expectation's helper is wanted.
pub fn expectation_helper(sync: &ExpectationSync, x: &Expect) -> bool {
    match sync {
        ExpectationSync::Off => false,
        ExpectationSync::All => true,
        ExpectationSync::Helpers(list) => x.helper.as_ref().is_some_and(|h| {
            list.iter().any(|n| {
                h.len() >= n.len() && h[..n.len()].eq_ignore_ascii_case(n)
            })
        }),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::{HelperName, TcpState};
    use crate::model::{L4, ProtoInfo, Tuple};

    fn ct(src: &str, dst: &str, proto: u8) -> Conntrack {
        let mut c = Conntrack::new(Tuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            l4: L4::Ports { src: 1, dst: 2 },
        });
        c.reply = Some(c.orig.inverse());
        c
    }

    fn cidr(s: &str, prefix: u8) -> Cidr {
        Cidr {
            addr: s.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn protocol_and_address() {
        let mut f = Filter::default();
        assert!(conntrack(&f, &ct("10.0.0.1", "10.0.0.2", 17)));
        f.protocol = Some(Rule {
            logic: Logic::Accept,
            items: vec![6],
        });
        assert!(!conntrack(&f, &ct("10.0.0.1", "10.0.0.2", 17)));
        assert!(conntrack(&f, &ct("10.0.0.1", "10.0.0.2", 6)));
        f.address = Some(Rule {
            logic: Logic::Ignore,
            items: vec![cidr("127.0.0.1", 32), cidr("192.168.100.0", 24)],
        });
        assert!(!conntrack(&f, &ct("127.0.0.1", "10.0.0.2", 6)));
        // The reply source (here: the original destination) counts too.
        assert!(!conntrack(&f, &ct("10.0.0.1", "192.168.100.7", 6)));
        assert!(conntrack(&f, &ct("10.0.0.1", "10.0.0.2", 6)));
        // Accept with host addresses only works (conntrackd < 1.4.6 bug).
        f.address = Some(Rule {
            logic: Logic::Accept,
            items: vec![cidr("10.0.0.1", 32)],
        });
        assert!(conntrack(&f, &ct("10.0.0.1", "10.0.0.2", 6)));
        assert!(!conntrack(&f, &ct("10.0.0.9", "10.0.0.2", 6)));
        // /0 matches everything.
        f.address = Some(Rule {
            logic: Logic::Accept,
            items: vec![cidr("0.0.0.0", 0), cidr("::", 0)],
        });
        assert!(conntrack(&f, &ct("1.2.3.4", "5.6.7.8", 6)));
        assert!(conntrack(&f, &ct("fd00::1", "fd00::2", 6)));
    }

    #[test]
    fn tcp_state() {
        let f = Filter {
            state: Some(Rule {
                logic: Logic::Accept,
                items: vec![TcpState::Established],
            }),
            ..Filter::default()
        };
        let mut c = ct("10.0.0.1", "10.0.0.2", 6);
        c.proto_info = ProtoInfo::Tcp {
            state: 3,
            wscale_orig: 0,
            wscale_reply: 0,
            flags_orig: 0,
            flags_reply: 0,
        };
        assert!(conntrack(&f, &c));
        c.proto_info = ProtoInfo::Tcp {
            state: 1,
            wscale_orig: 0,
            wscale_reply: 0,
            flags_orig: 0,
            flags_reply: 0,
        };
        assert!(!conntrack(&f, &c));
        assert!(
            conntrack(&f, &ct("10.0.0.1", "10.0.0.2", 17)),
            "non-TCP passes"
        );
    }

    #[test]
    fn helper_prefix_list() {
        let t = ct("10.0.0.1", "10.0.0.2", 6).orig;
        let mut x = Expect {
            master: t,
            tuple: t,
            mask: t,
            timeout: None,
            zone: 0,
            flags: 0,
            class: 0,
            helper: Some("sip-5060".try_into().unwrap()),
            nat: None,
            func: None,
            id: 0,
        };
        let list = |names: &[&str]| {
            ExpectationSync::Helpers(
                names
                    .iter()
                    .map(|n| HelperName::try_from(*n).unwrap())
                    .collect(),
            )
        };
        assert!(expectation_helper(&list(&["SIP"]), &x));
        assert!(!expectation_helper(&list(&["ftp"]), &x));
        assert!(expectation_helper(&ExpectationSync::All, &x));
        assert!(!expectation_helper(&ExpectationSync::Off, &x));
        x.helper = None;
        assert!(!expectation_helper(&list(&["sip"]), &x));
    }
}
