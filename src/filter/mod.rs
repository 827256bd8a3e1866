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
//! same filter decides what `-F` and `-t` delete. [`bpf`] compiles the
//! conntrack part into a kernel-side pre-filter (`From Kernelspace`). Pure.

pub mod bpf;

use crate::config::{ExpectationSync, Filter, Logic, Rule};
use crate::model::{Conntrack, Expect};

fn passes<T>(rule: &Option<Rule<T>>, matches: impl Fn(&T) -> bool) -> bool {
    match rule {
        None => true,
        Some(r) => r.items.iter().any(matches) == (r.logic == Logic::Accept),
    }
}

/// Whether a conntrack is replicated (and may be deleted by `-F`/`-t`).
pub fn conntrack(f: &Filter, ct: &Conntrack) -> bool {
    let state = match (ct.tcp_state(), &f.state) {
        (Some(s), Some(_)) if ct.orig.proto == 6 => {
            passes(&f.state, |x| *x as u8 == s)
        }
        _ => true,
    };
    conntrack_end(f, ct) && state
}

/// Whether a flow's DESTROY may end a flow that was replicated: its
/// protocol and addresses never change during its life, so they decide;
/// its state does change, and the one it died in says nothing of those it
/// was replicated in.
pub fn conntrack_end(f: &Filter, ct: &Conntrack) -> bool {
    let proto = passes(&f.protocol, |p| *p == ct.orig.proto);
    let reply_src = ct.reply_tuple().src;
    // Either source inside any prefix: two O(log n) lookups, the same
    // answer as asking each prefix about both.
    let addr = match &f.address {
        None => true,
        Some(r) => {
            let hit =
                r.items.contains(ct.orig.src) || r.items.contains(reply_src);
            hit == (r.logic == Logic::Accept)
        }
    };
    proto && addr
}

/// Whether an expectation's helper is wanted.
pub fn expectation_helper(sync: &ExpectationSync, x: &Expect) -> bool {
    match sync {
        ExpectationSync::Off => false,
        ExpectationSync::All => true,
        ExpectationSync::Helpers(list) => x.helper.as_ref().is_some_and(|h| {
            // Bytes: a prefix's length may end inside a character of a
            // name that is not ASCII.
            list.iter().any(|n| {
                h.as_bytes()
                    .get(..n.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(n.as_bytes()))
            })
        }),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::{AddressRule, Cidr, HelperName, TcpState};
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
        f.address = Some(AddressRule {
            logic: Logic::Ignore,
            items: vec![cidr("127.0.0.1", 32), cidr("192.168.100.0", 24)]
                .into(),
        });
        assert!(!conntrack(&f, &ct("127.0.0.1", "10.0.0.2", 6)));
        // The reply source (here: the original destination) counts too.
        assert!(!conntrack(&f, &ct("10.0.0.1", "192.168.100.7", 6)));
        assert!(conntrack(&f, &ct("10.0.0.1", "10.0.0.2", 6)));
        // Accept with host addresses only works (conntrackd < 1.4.6 bug).
        f.address = Some(AddressRule {
            logic: Logic::Accept,
            items: vec![cidr("10.0.0.1", 32)].into(),
        });
        assert!(conntrack(&f, &ct("10.0.0.1", "10.0.0.2", 6)));
        assert!(!conntrack(&f, &ct("10.0.0.9", "10.0.0.2", 6)));
        // /0 matches everything.
        f.address = Some(AddressRule {
            logic: Logic::Accept,
            items: vec![cidr("0.0.0.0", 0), cidr("::", 0)].into(),
        });
        assert!(conntrack(&f, &ct("1.2.3.4", "5.6.7.8", 6)));
        assert!(conntrack(&f, &ct("fd00::1", "fd00::2", 6)));
    }

    /// The linear scan the prefix index replaced: each prefix asked
    /// about both sources.
    fn address_passes_linear(f: &Filter, ct: &Conntrack) -> bool {
        let in_prefix = |a: std::net::IpAddr, c: &Cidr| match (a, c.addr) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => {
                let host = 32 - u32::from(c.prefix.min(32));
                let mask = u32::MAX.checked_shl(host).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) => {
                let host = 128 - u32::from(c.prefix.min(128));
                let mask = u128::MAX.checked_shl(host).unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        };
        let reply_src = ct.reply_tuple().src;
        match &f.address {
            None => true,
            Some(r) => {
                r.items.iter().any(|c| {
                    in_prefix(ct.orig.src, c) || in_prefix(reply_src, c)
                }) == (r.logic == Logic::Accept)
            }
        }
    }

    #[test]
    fn address_rule_agrees_with_the_linear_scan() {
        // A small LCG is enough to vary filters and flows reproducibly.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..200 {
            let v6 = next(4) == 0;
            let addr = |x: u64| -> String {
                if v6 {
                    format!("fd00::{:x}", x)
                } else {
                    format!("10.0.{}.{}", x >> 8, x & 255)
                }
            };
            let width = if v6 { 128 } else { 32 };
            let items: Vec<Cidr> = (0..next(30))
                .map(|_| cidr(&addr(next(1024)), (width - next(12)) as u8))
                .collect();
            let logic = if next(2) == 0 {
                Logic::Accept
            } else {
                Logic::Ignore
            };
            let f = Filter {
                address: Some(AddressRule {
                    logic,
                    items: items.into(),
                }),
                ..Filter::default()
            };
            for _ in 0..100 {
                let mut c = ct(&addr(next(1024)), &addr(next(1024)), 6);
                // A NATed reply source now and then (or another family).
                if next(3) == 0 {
                    let mut r = c.orig.inverse();
                    r.src = if next(4) == 0 {
                        "192.0.2.1".parse().unwrap()
                    } else {
                        addr(next(1024)).parse().unwrap()
                    };
                    c.reply = Some(r);
                }
                assert_eq!(
                    conntrack(&f, &c),
                    address_passes_linear(&f, &c),
                    "{c:?} through {f:?}"
                );
            }
        }
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
        // The end of a flow is not judged by the state it died in.
        assert!(conntrack_end(&f, &c));
        let udp_only = Filter {
            protocol: Some(Rule {
                logic: Logic::Accept,
                items: vec![17],
            }),
            ..f
        };
        assert!(!conntrack_end(&udp_only, &c), "its protocol still counts");
    }

    /// An expectation of helper `helper`.
    fn expectation_of(helper: &str) -> Expect {
        let t = ct("10.0.0.1", "10.0.0.2", 6).orig;
        Expect {
            master: t,
            tuple: t,
            mask: t,
            timeout: None,
            zone: 0,
            flags: 0,
            class: 0,
            helper: Some(helper.try_into().unwrap()),
            nat: None,
            func: None,
            id: 0,
        }
    }

    #[test]
    fn helper_prefix_list() {
        let mut x = expectation_of("sip-5060");
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

    #[test]
    fn a_helper_name_that_is_not_ascii_is_compared_without_a_panic() {
        // A user-space helper (nfnetlink_cthelper) may carry any UTF-8
        // name; the configured prefix's length can end inside one of its
        // characters.
        let x = expectation_of("s\u{e9}p");
        let list = |n: &str| {
            ExpectationSync::Helpers(vec![HelperName::try_from(n).unwrap()])
        };
        assert!(!expectation_helper(&list("sx"), &x));
        assert!(expectation_helper(&list("S\u{e9}"), &x));
        assert!(!expectation_helper(&list("s\u{e9}px"), &x));
    }
}
