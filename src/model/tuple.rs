//! A tuple: one direction of a connection (addresses, protocol, ports
//! or ICMP fields), hashed through its packed bytes, and its inverse (the
//! other direction when nothing is translated, the ICMP request and reply
//! types swapped as the kernel swaps them). Pure data; never panics.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Layer-4 part of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum L4 {
    /// Protocols without ports.
    None,
    /// TCP, UDP, UDP-Lite, SCTP, DCCP; GRE's keys too (ctnetlink sends
    /// them as the tuple's ports).
    Ports { src: u16, dst: u16 },
    /// ICMP and ICMPv6.
    Icmp { kind: u8, code: u8, id: u16 },
}

/// One direction of a connection. Hashed through [`Tuple::packed`]
/// (see there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    pub l4: L4,
}

/// A packed tuple's size at most: two tagged IPv6 addresses, the
/// protocol, and the tagged ICMP fields.
pub const TUPLE_PACKED_MAX: usize = 2 * 17 + 1 + 5;

impl std::hash::Hash for Tuple {
    /// One `write` of the packed bytes. The derived hash made a dozen
    /// small writes (each address's tag and octets, each port), and
    /// SipHash pays per write: the sender hashes every key three times on
    /// its way through the transmit queue.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (b, n) = self.packed();
        state.write(&b[..n]);
    }
}

impl Tuple {
    /// The tuple's fields as bytes, each variant behind a tag, and how
    /// many of them are used: two tuples pack alike only when they are
    /// equal (what `Hash` needs from it).
    pub fn packed(&self) -> ([u8; TUPLE_PACKED_MAX], usize) {
        let mut out = [0u8; TUPLE_PACKED_MAX];
        fn addr(a: &IpAddr, out: &mut [u8], n: &mut usize) {
            match a {
                IpAddr::V4(v4) => {
                    out[*n] = 4;
                    out[*n + 1..*n + 5].copy_from_slice(&v4.octets());
                    *n += 5;
                }
                IpAddr::V6(v6) => {
                    out[*n] = 6;
                    out[*n + 1..*n + 17].copy_from_slice(&v6.octets());
                    *n += 17;
                }
            }
        }
        let mut n = 0;
        addr(&self.src, &mut out, &mut n);
        addr(&self.dst, &mut out, &mut n);
        out[n] = self.proto;
        n += 1;
        let l4: &[u8] = match self.l4 {
            L4::None => &[0],
            L4::Ports { src, dst } => {
                let (s, d) = (src.to_be_bytes(), dst.to_be_bytes());
                &[1, s[0], s[1], d[0], d[1]]
            }
            L4::Icmp { kind, code, id } => {
                let i = id.to_be_bytes();
                &[2, kind, code, i[0], i[1]]
            }
        };
        out[n..n + l4.len()].copy_from_slice(l4);
        (out, n + l4.len())
    }

    /// The tuple of the other direction when nothing is translated.
    pub fn inverse(&self) -> Tuple {
        let l4 = match self.l4 {
            L4::Ports { src, dst } => L4::Ports { src: dst, dst: src },
            L4::Icmp { kind, code, id } => L4::Icmp {
                kind: icmp_reply_type(self.src.is_ipv6(), kind),
                code,
                id,
            },
            L4::None => L4::None,
        };
        Tuple {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            l4,
        }
    }
}

/// The kernel inverts echo/timestamp/info/mask requests (ICMPv6: echo and
/// node information, the `invmap` of nf_conntrack_proto_icmpv6.c); others
/// keep the type.
fn icmp_reply_type(v6: bool, kind: u8) -> u8 {
    if v6 {
        match kind {
            128 => 129,
            129 => 128,
            139 => 140,
            140 => 139,
            other => other,
        }
    } else {
        match kind {
            8 => 0,
            0 => 8,
            13 => 14,
            14 => 13,
            15 => 16,
            16 => 15,
            17 => 18,
            18 => 17,
            other => other,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn tuples_pack_alike_only_when_equal() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let v4: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let mapped: IpAddr = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into();
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        let mut all = Vec::new();
        for src in [v4, mapped, v6] {
            for dst in [v4, v6] {
                for proto in [1, 6, 17] {
                    for l4 in [
                        L4::None,
                        L4::Ports { src: 1, dst: 2 },
                        L4::Ports { src: 2, dst: 1 },
                        // The same bytes as the ports, behind another tag.
                        L4::Icmp {
                            kind: 0,
                            code: 1,
                            id: 2,
                        },
                        L4::Icmp {
                            kind: 8,
                            code: 0,
                            id: 2,
                        },
                    ] {
                        all.push(Tuple {
                            src,
                            dst,
                            proto,
                            l4,
                        });
                    }
                }
            }
        }
        let packed = |t: &Tuple| {
            let (b, n) = t.packed();
            b[..n].to_vec()
        };
        for a in &all {
            for b in &all {
                assert_eq!(a == b, packed(a) == packed(b), "{a:?} {b:?}");
            }
        }
        // The longest fits.
        let long = Tuple {
            src: v6,
            dst: v6,
            proto: 1,
            l4: L4::Icmp {
                kind: 1,
                code: 2,
                id: 3,
            },
        };
        assert_eq!(long.packed().1, TUPLE_PACKED_MAX);
    }

    #[test]
    fn icmp_inverse_swaps_request_and_reply() {
        let echo = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 1,
            l4: L4::Icmp {
                kind: 8,
                code: 0,
                id: 7,
            },
        };
        assert_eq!(
            echo.inverse().l4,
            L4::Icmp {
                kind: 0,
                code: 0,
                id: 7
            }
        );
        let v6 = Tuple {
            src: "::1".parse().unwrap(),
            dst: "::2".parse().unwrap(),
            proto: 58,
            l4: L4::Icmp {
                kind: 128,
                code: 0,
                id: 1,
            },
        };
        assert_eq!(
            v6.inverse().l4,
            L4::Icmp {
                kind: 129,
                code: 0,
                id: 1
            }
        );
    }
}
