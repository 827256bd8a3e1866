//! What a conntrack and an expectation are, for failover purposes.
//!
//! Owns: compact, owned, fixed-size types (no heap: addresses are
//! `IpAddr`, helper names `heapless::String`), shared by the kernel codec,
//! the caches and the wire format. Pure data plus small derivations
//! (inverse tuple, NAT, cache key). Never panics.
//!
//! Field meanings follow the kernel's ctnetlink attributes
//! (include/uapi/linux/netfilter/nfnetlink_conntrack.h).

mod tuple;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use self::tuple::{L4, TUPLE_PACKED_MAX, Tuple};

/// Kernel conntrack helper names are at most NF_CT_HELPER_NAME_LEN-1 = 15.
pub type HelperName = heapless::String<15>;

/// The synchronisation protocol (`Mode …` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    FtFw,
    NoTrack,
    Alarm,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::FtFw => "FTFW",
            Mode::NoTrack => "NOTRACK",
            Mode::Alarm => "ALARM",
        })
    }
}

/// `IPS_*` status bits (include/uapi/linux/netfilter/nf_conntrack_common.h).
pub mod status {
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const CONFIRMED: u32 = 1 << 3;
    pub const SRC_NAT: u32 = 1 << 4;
    pub const DST_NAT: u32 = 1 << 5;
    pub const SEQ_ADJUST: u32 = 1 << 6;
    pub const SRC_NAT_DONE: u32 = 1 << 7;
    pub const DST_NAT_DONE: u32 = 1 << 8;
    pub const DYING: u32 = 1 << 9;
    pub const FIXED_TIMEOUT: u32 = 1 << 10;
    pub const HELPER: u32 = 1 << 13;
    pub const OFFLOAD: u32 = 1 << 14;
    pub const HW_OFFLOAD: u32 = 1 << 15;
    /// In a flowtable (software or hardware): its packets bypass
    /// conntrack, and the kernel holds its timeout at a placeholder (about
    /// a day, renewed) until the flow leaves the flowtable.
    pub const OFFLOADED: u32 = OFFLOAD | HW_OFFLOAD;
}

/// `IP_CT_TCP_FLAG_*` (nf_conntrack_tcp.h).
pub mod tcp_flag {
    pub const WINDOW_SCALE: u8 = 0x01;
    pub const SACK_PERM: u8 = 0x02;
    pub const CLOSE_INIT: u8 = 0x04;
    pub const BE_LIBERAL: u8 = 0x08;
}

/// Protocol state the kernel keeps per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtoInfo {
    None,
    Tcp {
        state: u8,
        wscale_orig: u8,
        wscale_reply: u8,
        flags_orig: u8,
        flags_reply: u8,
    },
    Sctp {
        state: u8,
        vtag_orig: u32,
        vtag_reply: u32,
    },
    Dccp {
        state: u8,
        role: u8,
        handshake_seq: u64,
    },
}

/// NAT sequence adjustment of one direction (FTP/SIP with NAT).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize,
)]
pub struct SeqAdj {
    pub correction_pos: u32,
    pub offset_before: u32,
    pub offset_after: u32,
}

/// Packet and byte counters of both directions (only with
/// `nf_conntrack_acct=1`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize,
)]
pub struct Counters {
    pub orig_packets: u64,
    pub orig_bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

/// A source or destination NAT binding: the translated address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat {
    pub addr: IpAddr,
    /// None when the port is not translated.
    pub port: Option<u16>,
}

/// A conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conntrack {
    pub orig: Tuple,
    /// As the kernel reports it (NAT applied). None in messages that do
    /// not carry it; then it is the inverse of `orig`.
    pub reply: Option<Tuple>,
    pub zone: u16,
    pub status: u32,
    /// Seconds left; None when not reported (e.g. DESTROY events).
    pub timeout: Option<u32>,
    pub mark: u32,
    pub secmark: u32,
    pub proto_info: ProtoInfo,
    pub helper: Option<HelperName>,
    /// The master connection of a RELATED flow (e.g. FTP data).
    pub master: Option<Tuple>,
    pub seq_adj: Option<[SeqAdj; 2]>,
    /// Connection labels bitmap (128 bits).
    pub labels: Option<[u8; 16]>,
    pub counters: Option<Counters>,
    /// When the flow started and (in its destroy event) stopped, with
    /// `nf_conntrack_timestamp=1`; informational, never synced.
    pub timestamp: Option<Timestamp>,
    /// The kernel's id; informational, never part of the identity.
    pub id: u32,
}

/// A flow's `CTA_TIMESTAMP`, in whole wall-clock seconds since the epoch
/// (the kernel's nanoseconds truncated, which is all conntrackd prints;
/// u32 keeps entries small and lasts until 2106); stop is 0 until the
/// flow ends.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize,
)]
pub struct Timestamp {
    pub start_s: u32,
    pub stop_s: u32,
}

impl Conntrack {
    /// A new entry with the given original tuple and nothing else set.
    pub fn new(orig: Tuple) -> Conntrack {
        Conntrack {
            orig,
            reply: None,
            zone: 0,
            status: 0,
            timeout: None,
            mark: 0,
            secmark: 0,
            proto_info: ProtoInfo::None,
            helper: None,
            master: None,
            seq_adj: None,
            labels: None,
            counters: None,
            timestamp: None,
            id: 0,
        }
    }

    /// Identity in caches: original tuple and zone (never the kernel id).
    pub fn key(&self) -> (Tuple, u16) {
        (self.orig, self.zone)
    }

    /// The reply tuple, derived when not carried.
    pub fn reply_tuple(&self) -> Tuple {
        self.reply.unwrap_or_else(|| self.orig.inverse())
    }

    /// Source NAT: the reply goes to another address/port than the
    /// original source. An ICMP id the kernel remapped (masquerading two
    /// hosts' pings with one id) counts as the port: ctnetlink takes it
    /// as the NAT range's, and the kernel keeps one id for both
    /// directions, so it is given with the source translation.
    pub fn snat(&self) -> Option<Nat> {
        let (o, r) = (self.orig, self.reply?);
        let port = match (o.l4, r.l4) {
            (L4::Ports { src, .. }, L4::Ports { dst, .. }) if src != dst => {
                Some(dst)
            }
            (L4::Icmp { id: a, .. }, L4::Icmp { id: b, .. }) if a != b => {
                Some(b)
            }
            _ => None,
        };
        (r.dst != o.src || port.is_some()).then_some(Nat { addr: r.dst, port })
    }

    /// Destination NAT: the reply comes from another address/port than the
    /// original destination.
    pub fn dnat(&self) -> Option<Nat> {
        let (o, r) = (self.orig, self.reply?);
        let port = match (o.l4, r.l4) {
            (L4::Ports { dst, .. }, L4::Ports { src, .. }) if src != dst => {
                Some(src)
            }
            _ => None,
        };
        (r.src != o.dst || port.is_some()).then_some(Nat { addr: r.src, port })
    }

    /// TCP state, if this is a TCP entry that reports one.
    pub fn tcp_state(&self) -> Option<u8> {
        match self.proto_info {
            ProtoInfo::Tcp { state, .. } => Some(state),
            _ => None,
        }
    }
}

/// NAT information of an expectation (`CTA_EXPECT_NAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectNat {
    pub dir: u32,
    pub tuple: Tuple,
}

/// Expectation function names are short (`nat-follow-master`).
pub type ExpectFn = heapless::String<31>;

/// An expectation: a RELATED connection a helper announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expect {
    pub master: Tuple,
    pub tuple: Tuple,
    /// Which bits of `tuple` must match (0 = wildcard).
    pub mask: Tuple,
    pub timeout: Option<u32>,
    pub zone: u16,
    pub flags: u32,
    pub class: u32,
    pub helper: Option<HelperName>,
    pub nat: Option<ExpectNat>,
    pub func: Option<ExpectFn>,
    pub id: u32,
}

/// `NF_CT_EXPECT_*` flags.
pub mod expect_flag {
    pub const PERMANENT: u32 = 1;
    pub const INACTIVE: u32 = 2;
    pub const USERSPACE: u32 = 4;
}

impl Expect {
    /// An expectation with the given identity (zone 0) and nothing else
    /// set.
    pub fn new(master: Tuple, tuple: Tuple, mask: Tuple) -> Expect {
        Expect {
            master,
            tuple,
            mask,
            timeout: None,
            zone: 0,
            flags: 0,
            class: 0,
            helper: None,
            nat: None,
            func: None,
            id: 0,
        }
    }

    /// Identity in caches: master, expected tuple, mask and zone.
    pub fn key(&self) -> (Tuple, Tuple, Tuple, u16) {
        (self.master, self.tuple, self.mask, self.zone)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn t(src: &str, dst: &str, sp: u16, dp: u16) -> Tuple {
        Tuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: 6,
            l4: L4::Ports { src: sp, dst: dp },
        }
    }

    #[test]
    fn inverse_and_nat_derivation() {
        let orig = t("192.168.0.2", "192.168.1.2", 40000, 21);
        assert_eq!(orig.inverse(), t("192.168.1.2", "192.168.0.2", 21, 40000));
        let mut ct = Conntrack::new(orig);
        assert_eq!((ct.snat(), ct.dnat()), (None, None));
        ct.reply = Some(orig.inverse());
        assert_eq!((ct.snat(), ct.dnat()), (None, None));
        // SNAT to 192.168.1.100, port kept.
        ct.reply = Some(t("192.168.1.2", "192.168.1.100", 21, 40000));
        assert_eq!(
            ct.snat(),
            Some(Nat {
                addr: "192.168.1.100".parse().unwrap(),
                port: None
            })
        );
        assert_eq!(ct.dnat(), None);
        // DNAT with port change.
        ct.reply = Some(t("10.0.0.5", "192.168.0.2", 8021, 40000));
        assert_eq!(
            ct.dnat(),
            Some(Nat {
                addr: "10.0.0.5".parse().unwrap(),
                port: Some(8021)
            })
        );
    }

    #[test]
    fn entries_have_no_heap_and_a_known_size() {
        // Fixed-size fields only: the size is a compile-time fact, and a
        // cache of N entries costs N times this (plus the index).
        // The names are `heapless::String`s, whose length is a `usize`:
        // 32-bit targets (armv7, mips) store them, and so the entries,
        // smaller.
        let wide = cfg!(target_pointer_width = "64");
        assert_eq!(std::mem::size_of::<Tuple>(), 42);
        // The timestamp (two u32 seconds) added 16 bytes (64-bit) and 16
        // (powerpc, measured with `cargo check --target`).
        assert_eq!(
            std::mem::size_of::<Conntrack>(),
            if wide { 304 } else { 296 }
        );
        assert_eq!(std::mem::size_of::<Expect>(), if wide { 280 } else { 260 });
    }
}
