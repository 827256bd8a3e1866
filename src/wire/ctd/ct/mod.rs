//! Conntrack payloads (`NTA_*`, reference §4.4.2): a [`crate::model::Conntrack`] to
//! attributes in conntrackd 1.4.7's emission order, and back.
//!
//! conntrackd never sends the reply tuple. The decoder rebuilds it as the
//! inverse of the original tuple with the SNAT/DNAT/SPAT/DPAT attributes
//! applied, which is what the kernel commit path turns into a NAT binding;
//! the encoder derives those attributes from the reply tuple. Fields the
//! format cannot carry (secmark, counters, TCP flags, the DCCP handshake
//! sequence, the kernel id) decode as their defaults.
//!
//! Decoding is canonical: whatever it returns, [`encode()`] writes in a form
//! that decodes to the same value (the fuzz target checks this).
//!
//! This module holds the attribute numbers and sizes and the address
//! helpers both directions (and the expectation codec) share.

mod decode;
mod encode;

pub(super) use decode::decode;
pub(super) use encode::encode;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::attr::{Size, be16};

pub(super) const IPV4: u16 = 0;
pub(super) const IPV6: u16 = 1;
pub(super) const L4PROTO: u16 = 2;
pub(super) const PORT: u16 = 3;
pub(super) const TCP_STATE: u16 = 4;
pub(super) const STATUS: u16 = 5;
pub(super) const TIMEOUT: u16 = 6;
pub(super) const MARK: u16 = 7;
pub(super) const MASTER_IPV4: u16 = 8;
pub(super) const MASTER_IPV6: u16 = 9;
pub(super) const MASTER_L4PROTO: u16 = 10;
pub(super) const MASTER_PORT: u16 = 11;
pub(super) const SNAT_IPV4: u16 = 12;
pub(super) const DNAT_IPV4: u16 = 13;
pub(super) const SPAT_PORT: u16 = 14;
pub(super) const DPAT_PORT: u16 = 15;
pub(super) const NAT_SEQ_ADJ: u16 = 16;
pub(super) const SCTP_STATE: u16 = 17;
pub(super) const SCTP_VTAG_ORIG: u16 = 18;
pub(super) const SCTP_VTAG_REPL: u16 = 19;
pub(super) const DCCP_STATE: u16 = 20;
pub(super) const DCCP_ROLE: u16 = 21;
pub(super) const ICMP_TYPE: u16 = 22;
pub(super) const ICMP_CODE: u16 = 23;
pub(super) const ICMP_ID: u16 = 24;
pub(super) const TCP_WSCALE_ORIG: u16 = 25;
pub(super) const TCP_WSCALE_REPL: u16 = 26;
pub(super) const HELPER_NAME: u16 = 27;
pub(super) const LABELS: u16 = 28;
pub(super) const SNAT_IPV6: u16 = 29;
pub(super) const DNAT_IPV6: u16 = 30;
pub(super) const SYNPROXY: u16 = 31;
pub(super) const ZONE: u16 = 32;

/// Payload sizes by attribute number (conntrackd 1.4.7, NTA_MAX = 33).
pub(super) static TABLE: [Size; 33] = {
    use Size::{Fixed, MaxLen};
    [
        Fixed(8),     // IPV4
        Fixed(32),    // IPV6
        Fixed(1),     // L4PROTO
        Fixed(4),     // PORT
        Fixed(1),     // TCP_STATE
        Fixed(4),     // STATUS
        Fixed(4),     // TIMEOUT
        Fixed(4),     // MARK
        Fixed(8),     // MASTER_IPV4
        Fixed(32),    // MASTER_IPV6
        Fixed(1),     // MASTER_L4PROTO
        Fixed(4),     // MASTER_PORT
        Fixed(4),     // SNAT_IPV4
        Fixed(4),     // DNAT_IPV4
        Fixed(2),     // SPAT_PORT
        Fixed(2),     // DPAT_PORT
        Fixed(24),    // NAT_SEQ_ADJ
        Fixed(1),     // SCTP_STATE
        Fixed(4),     // SCTP_VTAG_ORIG
        Fixed(4),     // SCTP_VTAG_REPL
        Fixed(1),     // DCCP_STATE
        Fixed(1),     // DCCP_ROLE
        Fixed(1),     // ICMP_TYPE
        Fixed(1),     // ICMP_CODE
        Fixed(2),     // ICMP_ID
        Fixed(1),     // TCP_WSCALE_ORIG
        Fixed(1),     // TCP_WSCALE_REPL
        MaxLen(16),   // HELPER_NAME
        MaxLen(1028), // LABELS
        Fixed(16),    // SNAT_IPV6
        Fixed(16),    // DNAT_IPV6
        Fixed(12),    // SYNPROXY
        Fixed(2),     // ZONE
    ]
};

/// conntrackd rejects helper names whose attribute is longer than 16
/// bytes: at most 11 characters and the NUL.
pub(super) const HELPER_MAX_CHARS: usize = 11;

/// Protocols whose original ports conntrackd replicates (NTA_PORT).
pub(super) fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 33)
}

pub(super) fn is_icmp(proto: u8) -> bool {
    matches!(proto, 1 | 58)
}

/// An address group: source then destination, network order.
pub(super) fn addr_pair(v: &[u8]) -> (IpAddr, IpAddr) {
    if v.len() == 8 {
        let a: [u8; 4] = [v[0], v[1], v[2], v[3]];
        let b: [u8; 4] = [v[4], v[5], v[6], v[7]];
        (Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into())
    } else {
        (v6_addr(v), v6_addr(&v[16..]))
    }
}

pub(super) fn v6_addr(v: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&v[..16]);
    Ipv6Addr::from(a).into()
}

pub(super) fn port_pair(v: &[u8]) -> (u16, u16) {
    (be16(v), be16(&v[2..]))
}

/// A mixed pair (never produced by the kernel) goes out as IPv6 with the
/// IPv4 address mapped.
pub(super) fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}
