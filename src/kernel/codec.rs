//! ctnetlink messages ⇄ [`Conntrack`] / [`Expect`].
//!
//! Owns: the attribute numbers (named after the kernel's `CTA_*` /
//! `CTA_EXPECT_*`, include/uapi/linux/netfilter/nfnetlink_conntrack.h), the
//! decoding of events and dump replies, and the encoding of requests.
//!
//! Requests use netlink-packet-netfilter's types where they exist (the
//! nfgenmsg header, the conntrack dump); what it lacks (expectations, NAT,
//! helper, zone, labels, seq-adj, SCTP/DCCP protoinfo) is encoded here with
//! the kernel's attribute names. Decoding walks the netlink buffer with netlink-packet-core's
//! `NlasIterator` views: no `Vec` per attribute, nothing allocated for an
//! event. Unknown attributes are skipped, malformed ones are an error,
//! never a panic. Encoding appends to a caller-owned `Vec` that is reused
//! across requests, so many requests can be batched into one `sendmsg`.
//! Pure: no sockets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    Emitable, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NlaBuffer, NlasIterator,
};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
};

use crate::model::{
    Conntrack, Counters, Expect, ExpectNat, L4, ProtoInfo, SeqAdj, Tuple,
};

// ===== constants (kernel uapi) =====

pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
pub const NFNL_SUBSYS_CTNETLINK_EXP: u8 = 2;
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
pub const IPCTNL_MSG_CT_GET: u8 = 1;
pub const IPCTNL_MSG_CT_DELETE: u8 = 2;
pub const IPCTNL_MSG_EXP_NEW: u8 = 0;
pub const IPCTNL_MSG_EXP_GET: u8 = 1;
pub const IPCTNL_MSG_EXP_DELETE: u8 = 2;

/// Multicast groups (`enum nfnetlink_groups`).
pub const NFNLGRP_CONNTRACK_NEW: u32 = 1;
pub const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
pub const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
pub const NFNLGRP_CONNTRACK_EXP_NEW: u32 = 4;
pub const NFNLGRP_CONNTRACK_EXP_UPDATE: u32 = 5;
pub const NFNLGRP_CONNTRACK_EXP_DESTROY: u32 = 6;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// A create that must not replace an existing entry (EEXIST instead).
const CREATE_NEW: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_HELP: u16 = 5;
const CTA_NAT_SRC: u16 = 6;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_NAT_DST: u16 = 13;
const CTA_TUPLE_MASTER: u16 = 14;
const CTA_SEQ_ADJ_ORIG: u16 = 15;
const CTA_SEQ_ADJ_REPLY: u16 = 16;
const CTA_SECMARK: u16 = 17;
const CTA_ZONE: u16 = 18;
const CTA_LABELS: u16 = 22;
const CTA_LABELS_MASK: u16 = 23;

const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;

const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_DCCP: u16 = 2;
const CTA_PROTOINFO_SCTP: u16 = 3;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
const CTA_PROTOINFO_DCCP_STATE: u16 = 1;
const CTA_PROTOINFO_DCCP_ROLE: u16 = 2;
const CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ: u16 = 3;
const CTA_PROTOINFO_SCTP_STATE: u16 = 1;
const CTA_PROTOINFO_SCTP_VTAG_ORIGINAL: u16 = 2;
const CTA_PROTOINFO_SCTP_VTAG_REPLY: u16 = 3;

const CTA_HELP_NAME: u16 = 1;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_SEQADJ_CORRECTION_POS: u16 = 1;
const CTA_SEQADJ_OFFSET_BEFORE: u16 = 2;
const CTA_SEQADJ_OFFSET_AFTER: u16 = 3;
const CTA_NAT_V4_MINIP: u16 = 1;
const CTA_NAT_V4_MAXIP: u16 = 2;
const CTA_NAT_PROTO: u16 = 3;
const CTA_NAT_V6_MINIP: u16 = 4;
const CTA_NAT_V6_MAXIP: u16 = 5;
const CTA_PROTONAT_PORT_MIN: u16 = 1;
const CTA_PROTONAT_PORT_MAX: u16 = 2;

const CTA_EXPECT_MASTER: u16 = 1;
const CTA_EXPECT_TUPLE: u16 = 2;
const CTA_EXPECT_MASK: u16 = 3;
const CTA_EXPECT_TIMEOUT: u16 = 4;
const CTA_EXPECT_ID: u16 = 5;
const CTA_EXPECT_HELP_NAME: u16 = 6;
const CTA_EXPECT_ZONE: u16 = 7;
const CTA_EXPECT_FLAGS: u16 = 8;
const CTA_EXPECT_CLASS: u16 = 9;
const CTA_EXPECT_NAT: u16 = 10;
const CTA_EXPECT_FN: u16 = 11;
const CTA_EXPECT_NAT_DIR: u16 = 1;
const CTA_EXPECT_NAT_TUPLE: u16 = 2;

const NETLINK_HEADER: usize = 16;
const NFGEN_HEADER: usize = 4;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

// ===== decoded messages =====

/// What a ctnetlink message announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    New,
    Update,
    Destroy,
}

/// The object a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Ct(Conntrack),
    Exp(Expect),
}

/// One decoded ctnetlink message (event or dump reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub object: Object,
    /// The sender's netlink port id: identifies events our own sockets
    /// caused (origin tracking).
    pub port: u32,
    pub seq: u32,
}

/// Any netlink message in a receive buffer.
// Decoded one at a time on the stack and moved into a cache; boxing the
// large variant would allocate once per kernel event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Msg(Message),
    /// `NLMSG_ERROR`: errno 0 is an acknowledgement.
    Ack {
        seq: u32,
        errno: i32,
    },
    Done {
        seq: u32,
    },
    /// A message type we do not handle (counted by the caller).
    Other {
        msg_type: u16,
    },
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    /// A required attribute is missing.
    Missing(&'static str),
    /// An attribute has the wrong size or an impossible value.
    Bad(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated netlink message"),
            DecodeError::Missing(a) => write!(f, "missing attribute {a}"),
            DecodeError::Bad(a) => write!(f, "malformed attribute {a}"),
        }
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

/// Iterates over the netlink messages of one receive buffer.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Received>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let nl = match NetlinkBuffer::new_checked(&buf[at..]) {
            Ok(nl) => nl,
            Err(_) => {
                at = buf.len();
                return Some(Err(DecodeError::Truncated));
            }
        };
        let len = nl.length() as usize;
        at += align4(len.max(NETLINK_HEADER));
        Some(decode_one(&nl))
    })
}

fn decode_one(nl: &NetlinkBuffer<&[u8]>) -> Result<Received> {
    let msg_type = nl.message_type();
    let seq = nl.sequence_number();
    let payload = nl.payload();
    match msg_type {
        NLMSG_ERROR => {
            let errno = payload
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(DecodeError::Truncated)?;
            // The echoed request header carries the failed request's seq.
            let seq = payload
                .get(12..16)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(seq);
            // A hostile i32::MIN must not overflow.
            return Ok(Received::Ack {
                seq,
                errno: errno.saturating_neg(),
            });
        }
        NLMSG_DONE => return Ok(Received::Done { seq }),
        _ => {}
    }
    let (subsys, op) = ((msg_type >> 8) as u8, msg_type as u8);
    let attrs = payload.get(NFGEN_HEADER..).ok_or(DecodeError::Truncated)?;
    let flags = nl.flags();
    let kind = match op {
        IPCTNL_MSG_CT_NEW if flags & (NLM_F_CREATE | NLM_F_EXCL) != 0 => {
            Kind::New
        }
        IPCTNL_MSG_CT_NEW => Kind::Update,
        IPCTNL_MSG_CT_DELETE => Kind::Destroy,
        _ => return Ok(Received::Other { msg_type }),
    };
    let object = match subsys {
        NFNL_SUBSYS_CTNETLINK => Object::Ct(decode_ct(attrs)?),
        NFNL_SUBSYS_CTNETLINK_EXP => Object::Exp(decode_exp(attrs)?),
        _ => return Ok(Received::Other { msg_type }),
    };
    Ok(Received::Msg(Message {
        kind,
        object,
        port: nl.port_number(),
        seq,
    }))
}

// ===== attribute helpers =====

fn nlas(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8])>> {
    NlasIterator::new(buf).map(|r| {
        let n: NlaBuffer<&[u8]> = r.map_err(|_| DecodeError::Truncated)?;
        let (kind, len) = (n.kind() & NLA_TYPE_MASK, usize::from(n.length()));
        // new_checked() verified 4 <= length <= buffer length.
        let value = n.into_inner().get(4..len).ok_or(DecodeError::Truncated)?;
        Ok((kind, value))
    })
}

fn u8_of(v: &[u8], what: &'static str) -> Result<u8> {
    v.first().copied().ok_or(DecodeError::Bad(what))
}

fn be16(v: &[u8], what: &'static str) -> Result<u16> {
    v.get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DecodeError::Bad(what))
}

fn be32(v: &[u8], what: &'static str) -> Result<u32> {
    v.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(DecodeError::Bad(what))
}

fn be64(v: &[u8], what: &'static str) -> Result<u64> {
    let b: [u8; 8] = v
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::Bad(what))?;
    Ok(u64::from_be_bytes(b))
}

fn name<const N: usize>(
    v: &[u8],
    what: &'static str,
) -> Result<heapless::String<N>> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    let s =
        std::str::from_utf8(&v[..end]).map_err(|_| DecodeError::Bad(what))?;
    let mut out = heapless::String::new();
    out.push_str(s).map_err(|_| DecodeError::Bad(what))?;
    Ok(out)
}

fn decode_tuple(buf: &[u8]) -> Result<Tuple> {
    let (mut src, mut dst) = (None, None);
    let mut proto = None;
    let (mut sport, mut dport) = (None, None);
    let (mut id, mut kind, mut code) = (None, None, None);
    for a in nlas(buf) {
        let (t, v) = a?;
        match t {
            CTA_TUPLE_IP => {
                for a in nlas(v) {
                    let (t, v) = a?;
                    let ip = match t {
                        CTA_IP_V4_SRC | CTA_IP_V4_DST => {
                            let b: [u8; 4] = v
                                .get(..4)
                                .and_then(|b| b.try_into().ok())
                                .ok_or(DecodeError::Bad("CTA_IP_V4"))?;
                            IpAddr::V4(Ipv4Addr::from(b))
                        }
                        CTA_IP_V6_SRC | CTA_IP_V6_DST => {
                            let b: [u8; 16] = v
                                .get(..16)
                                .and_then(|b| b.try_into().ok())
                                .ok_or(DecodeError::Bad("CTA_IP_V6"))?;
                            IpAddr::V6(Ipv6Addr::from(b))
                        }
                        _ => continue,
                    };
                    if matches!(t, CTA_IP_V4_SRC | CTA_IP_V6_SRC) {
                        src = Some(ip);
                    } else {
                        dst = Some(ip);
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for a in nlas(v) {
                    let (t, v) = a?;
                    match t {
                        CTA_PROTO_NUM => {
                            proto = Some(u8_of(v, "CTA_PROTO_NUM")?)
                        }
                        CTA_PROTO_SRC_PORT => {
                            sport = Some(be16(v, "CTA_PROTO_SRC_PORT")?)
                        }
                        CTA_PROTO_DST_PORT => {
                            dport = Some(be16(v, "CTA_PROTO_DST_PORT")?)
                        }
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                            id = Some(be16(v, "CTA_PROTO_ICMP_ID")?)
                        }
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            kind = Some(u8_of(v, "CTA_PROTO_ICMP_TYPE")?)
                        }
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                            code = Some(u8_of(v, "CTA_PROTO_ICMP_CODE")?)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let src = src.ok_or(DecodeError::Missing("CTA_IP_*_SRC"))?;
    let dst = dst.ok_or(DecodeError::Missing("CTA_IP_*_DST"))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(DecodeError::Bad("CTA_TUPLE_IP"));
    }
    let proto = proto.ok_or(DecodeError::Missing("CTA_PROTO_NUM"))?;
    let l4 = match (sport, dport, kind) {
        (Some(src), Some(dst), _) => L4::Ports { src, dst },
        (_, _, Some(kind)) => L4::Icmp {
            kind,
            code: code.unwrap_or(0),
            id: id.unwrap_or(0),
        },
        _ => L4::None,
    };
    Ok(Tuple {
        src,
        dst,
        proto,
        l4,
    })
}

fn decode_protoinfo(buf: &[u8]) -> Result<ProtoInfo> {
    const WHAT: &str = "CTA_PROTOINFO";
    for a in nlas(buf) {
        let (t, v) = a?;
        let mut p = match t {
            CTA_PROTOINFO_TCP => ProtoInfo::Tcp {
                state: 0,
                wscale_orig: 0,
                wscale_reply: 0,
                flags_orig: 0,
                flags_reply: 0,
            },
            CTA_PROTOINFO_SCTP => ProtoInfo::Sctp {
                state: 0,
                vtag_orig: 0,
                vtag_reply: 0,
            },
            CTA_PROTOINFO_DCCP => ProtoInfo::Dccp {
                state: 0,
                role: 0,
                handshake_seq: 0,
            },
            _ => continue,
        };
        for a in nlas(v) {
            let (k, v) = a?;
            match &mut p {
                ProtoInfo::Tcp {
                    state,
                    wscale_orig,
                    wscale_reply,
                    flags_orig,
                    flags_reply,
                } => match k {
                    CTA_PROTOINFO_TCP_STATE => *state = u8_of(v, WHAT)?,
                    CTA_PROTOINFO_TCP_WSCALE_ORIGINAL => {
                        *wscale_orig = u8_of(v, WHAT)?
                    }
                    CTA_PROTOINFO_TCP_WSCALE_REPLY => {
                        *wscale_reply = u8_of(v, WHAT)?
                    }
                    // struct nf_ct_tcp_flags { flags, mask }
                    CTA_PROTOINFO_TCP_FLAGS_ORIGINAL => {
                        *flags_orig = u8_of(v, WHAT)?
                    }
                    CTA_PROTOINFO_TCP_FLAGS_REPLY => {
                        *flags_reply = u8_of(v, WHAT)?
                    }
                    _ => {}
                },
                ProtoInfo::Sctp {
                    state,
                    vtag_orig,
                    vtag_reply,
                } => match k {
                    CTA_PROTOINFO_SCTP_STATE => *state = u8_of(v, WHAT)?,
                    CTA_PROTOINFO_SCTP_VTAG_ORIGINAL => {
                        *vtag_orig = be32(v, WHAT)?
                    }
                    CTA_PROTOINFO_SCTP_VTAG_REPLY => {
                        *vtag_reply = be32(v, WHAT)?
                    }
                    _ => {}
                },
                ProtoInfo::Dccp {
                    state,
                    role,
                    handshake_seq,
                } => match k {
                    CTA_PROTOINFO_DCCP_STATE => *state = u8_of(v, WHAT)?,
                    CTA_PROTOINFO_DCCP_ROLE => *role = u8_of(v, WHAT)?,
                    CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ => {
                        *handshake_seq = be64(v, WHAT)?
                    }
                    _ => {}
                },
                ProtoInfo::None => {}
            }
        }
        return Ok(p);
    }
    Ok(ProtoInfo::None)
}

fn decode_seq_adj(buf: &[u8]) -> Result<SeqAdj> {
    let mut s = SeqAdj::default();
    for a in nlas(buf) {
        let (t, v) = a?;
        match t {
            CTA_SEQADJ_CORRECTION_POS => {
                s.correction_pos = be32(v, "CTA_SEQADJ")?
            }
            CTA_SEQADJ_OFFSET_BEFORE => {
                s.offset_before = be32(v, "CTA_SEQADJ")?
            }
            CTA_SEQADJ_OFFSET_AFTER => s.offset_after = be32(v, "CTA_SEQADJ")?,
            _ => {}
        }
    }
    Ok(s)
}

fn decode_counters(buf: &[u8]) -> Result<(u64, u64)> {
    let (mut p, mut b) = (0, 0);
    for a in nlas(buf) {
        let (t, v) = a?;
        match t {
            CTA_COUNTERS_PACKETS => p = be64(v, "CTA_COUNTERS_PACKETS")?,
            CTA_COUNTERS_BYTES => b = be64(v, "CTA_COUNTERS_BYTES")?,
            _ => {}
        }
    }
    Ok((p, b))
}

/// Decodes the attributes of a conntrack message.
pub fn decode_ct(attrs: &[u8]) -> Result<Conntrack> {
    // Two passes over the same view: find the identity, then the rest.
    // Kernel messages put CTA_TUPLE_ORIG first, but nothing relies on it.
    let mut orig = None;
    for a in nlas(attrs) {
        let (t, v) = a?;
        if t == CTA_TUPLE_ORIG {
            orig = Some(decode_tuple(v)?);
        }
    }
    let mut ct =
        Conntrack::new(orig.ok_or(DecodeError::Missing("CTA_TUPLE_ORIG"))?);
    for a in nlas(attrs) {
        let (t, v) = a?;
        match t {
            CTA_TUPLE_ORIG => {}
            CTA_TUPLE_REPLY => ct.reply = Some(decode_tuple(v)?),
            _ => apply_ct_attr(&mut ct, t, v)?,
        }
    }
    Ok(ct)
}

fn apply_ct_attr(ct: &mut Conntrack, t: u16, v: &[u8]) -> Result<()> {
    match t {
        CTA_STATUS => ct.status = be32(v, "CTA_STATUS")?,
        CTA_TIMEOUT => ct.timeout = Some(be32(v, "CTA_TIMEOUT")?),
        CTA_MARK => ct.mark = be32(v, "CTA_MARK")?,
        CTA_SECMARK => ct.secmark = be32(v, "CTA_SECMARK")?,
        CTA_ID => ct.id = be32(v, "CTA_ID")?,
        CTA_ZONE => ct.zone = be16(v, "CTA_ZONE")?,
        CTA_PROTOINFO => ct.proto_info = decode_protoinfo(v)?,
        CTA_HELP => {
            for a in nlas(v) {
                let (t, v) = a?;
                if t == CTA_HELP_NAME {
                    ct.helper = Some(name::<15>(v, "CTA_HELP_NAME")?);
                }
            }
        }
        CTA_TUPLE_MASTER => ct.master = Some(decode_tuple(v)?),
        CTA_SEQ_ADJ_ORIG | CTA_SEQ_ADJ_REPLY => {
            let s = decode_seq_adj(v)?;
            let adj = ct.seq_adj.get_or_insert([SeqAdj::default(); 2]);
            adj[usize::from(t == CTA_SEQ_ADJ_REPLY)] = s;
        }
        CTA_LABELS => {
            let mut l = [0u8; 16];
            let n = v.len().min(16);
            l[..n].copy_from_slice(&v[..n]);
            if l != [0; 16] {
                ct.labels = Some(l);
            }
        }
        CTA_COUNTERS_ORIG | CTA_COUNTERS_REPLY => {
            let (p, b) = decode_counters(v)?;
            let c = ct.counters.get_or_insert(Counters::default());
            if t == CTA_COUNTERS_ORIG {
                (c.orig_packets, c.orig_bytes) = (p, b);
            } else {
                (c.reply_packets, c.reply_bytes) = (p, b);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Decodes the attributes of an expectation message.
pub fn decode_exp(attrs: &[u8]) -> Result<Expect> {
    let (mut master, mut tuple, mut mask) = (None, None, None);
    let mut e = Expect::new(
        placeholder_tuple(),
        placeholder_tuple(),
        placeholder_tuple(),
    );
    for a in nlas(attrs) {
        let (t, v) = a?;
        match t {
            CTA_EXPECT_MASTER => master = Some(decode_tuple(v)?),
            CTA_EXPECT_TUPLE => tuple = Some(decode_tuple(v)?),
            CTA_EXPECT_MASK => mask = Some(decode_tuple(v)?),
            CTA_EXPECT_TIMEOUT => {
                e.timeout = Some(be32(v, "CTA_EXPECT_TIMEOUT")?)
            }
            CTA_EXPECT_ID => e.id = be32(v, "CTA_EXPECT_ID")?,
            CTA_EXPECT_HELP_NAME => {
                e.helper = Some(name::<15>(v, "CTA_EXPECT_HELP_NAME")?)
            }
            CTA_EXPECT_ZONE => e.zone = be16(v, "CTA_EXPECT_ZONE")?,
            CTA_EXPECT_FLAGS => e.flags = be32(v, "CTA_EXPECT_FLAGS")?,
            CTA_EXPECT_CLASS => e.class = be32(v, "CTA_EXPECT_CLASS")?,
            CTA_EXPECT_FN => e.func = Some(name::<31>(v, "CTA_EXPECT_FN")?),
            CTA_EXPECT_NAT => {
                let (mut dir, mut nt) = (0, None);
                for a in nlas(v) {
                    let (t, v) = a?;
                    match t {
                        CTA_EXPECT_NAT_DIR => {
                            dir = be32(v, "CTA_EXPECT_NAT_DIR")?
                        }
                        CTA_EXPECT_NAT_TUPLE => nt = Some(decode_tuple(v)?),
                        _ => {}
                    }
                }
                if let Some(tuple) = nt {
                    e.nat = Some(ExpectNat { dir, tuple });
                }
            }
            _ => {}
        }
    }
    e.master = master.ok_or(DecodeError::Missing("CTA_EXPECT_MASTER"))?;
    e.tuple = tuple.ok_or(DecodeError::Missing("CTA_EXPECT_TUPLE"))?;
    e.mask = mask.ok_or(DecodeError::Missing("CTA_EXPECT_MASK"))?;
    Ok(e)
}

fn placeholder_tuple() -> Tuple {
    Tuple {
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        proto: 0,
        l4: L4::None,
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

// ===== encoding =====

/// Appends netlink messages and attributes to a caller-owned buffer.
pub struct Encoder<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Encoder<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Encoder { buf }
    }

    /// Starts a netlink + nfgenmsg header; returns its offset for
    /// [`Encoder::finish_msg`].
    pub fn begin_msg(
        &mut self,
        subsys: u8,
        op: u8,
        flags: u16,
        seq: u32,
        family: u8,
    ) -> usize {
        let at = self.buf.len();
        let msg_type = (u16::from(subsys) << 8) | u16::from(op);
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched
        self.buf.extend_from_slice(&msg_type.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port: kernel fills
        // nfgenmsg: family, NFNETLINK_V0, res_id 0.
        let nfgen =
            NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0);
        let start = self.buf.len();
        self.buf.resize(start + nfgen.buffer_len(), 0);
        nfgen.emit(&mut self.buf[start..]);
        at
    }

    pub fn finish_msg(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn put(&mut self, kind: u16, value: &[u8]) {
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn put_u8(&mut self, kind: u16, v: u8) {
        self.put(kind, &[v]);
    }

    fn put_be16(&mut self, kind: u16, v: u16) {
        self.put(kind, &v.to_be_bytes());
    }

    fn put_be32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_be_bytes());
    }

    fn put_str(&mut self, kind: u16, s: &str) {
        let mut v = [0u8; 64];
        let n = s.len().min(63);
        v[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.put(kind, &v[..=n]);
    }

    fn put_ip(&mut self, v4: u16, v6: u16, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.put(v4, &a.octets()),
            IpAddr::V6(a) => self.put(v6, &a.octets()),
        }
    }

    fn tuple(&mut self, kind: u16, t: &Tuple) {
        let outer = self.begin(kind);
        let ip = self.begin(CTA_TUPLE_IP);
        self.put_ip(CTA_IP_V4_SRC, CTA_IP_V6_SRC, t.src);
        self.put_ip(CTA_IP_V4_DST, CTA_IP_V6_DST, t.dst);
        self.end(ip);
        let p = self.begin(CTA_TUPLE_PROTO);
        self.put_u8(CTA_PROTO_NUM, t.proto);
        match t.l4 {
            L4::Ports { src, dst } => {
                self.put_be16(CTA_PROTO_SRC_PORT, src);
                self.put_be16(CTA_PROTO_DST_PORT, dst);
            }
            L4::Icmp { kind, code, id } => {
                let (i, ty, c) = if t.src.is_ipv6() {
                    (
                        CTA_PROTO_ICMPV6_ID,
                        CTA_PROTO_ICMPV6_TYPE,
                        CTA_PROTO_ICMPV6_CODE,
                    )
                } else {
                    (
                        CTA_PROTO_ICMP_ID,
                        CTA_PROTO_ICMP_TYPE,
                        CTA_PROTO_ICMP_CODE,
                    )
                };
                self.put_be16(i, id);
                self.put_u8(ty, kind);
                self.put_u8(c, code);
            }
            L4::None => {}
        }
        self.end(p);
        self.end(outer);
    }

    fn nat(&mut self, kind: u16, addr: IpAddr, port: Option<u16>) {
        let at = self.begin(kind);
        self.put_ip(CTA_NAT_V4_MINIP, CTA_NAT_V6_MINIP, addr);
        self.put_ip(CTA_NAT_V4_MAXIP, CTA_NAT_V6_MAXIP, addr);
        if let Some(p) = port {
            let pa = self.begin(CTA_NAT_PROTO);
            self.put_be16(CTA_PROTONAT_PORT_MIN, p);
            self.put_be16(CTA_PROTONAT_PORT_MAX, p);
            self.end(pa);
        }
        self.end(at);
    }
}

fn family(t: &Tuple) -> u8 {
    if t.src.is_ipv4() { AF_INET } else { AF_INET6 }
}

/// Appends a request that creates `ct` exactly as given (the caller
/// applies the commit rules first, see `kernel::commit`).
pub fn encode_ct_create(buf: &mut Vec<u8>, ct: &Conntrack, seq: u32) {
    let mut e = Encoder::new(buf);
    let at = e.begin_msg(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_NEW,
        CREATE_NEW,
        seq,
        family(&ct.orig),
    );
    e.tuple(CTA_TUPLE_ORIG, &ct.orig);
    // The reply tuple without NAT: the kernel derives the translated one
    // from CTA_NAT_SRC/DST.
    e.tuple(CTA_TUPLE_REPLY, &ct.orig.inverse());
    if let Some(m) = &ct.master {
        e.tuple(CTA_TUPLE_MASTER, m);
    }
    if let Some(n) = ct.snat() {
        e.nat(CTA_NAT_SRC, n.addr, n.port);
    }
    if let Some(n) = ct.dnat() {
        e.nat(CTA_NAT_DST, n.addr, n.port);
    }
    e.put_be32(CTA_STATUS, ct.status);
    e.put_be32(CTA_TIMEOUT, ct.timeout.unwrap_or(0));
    if ct.mark != 0 {
        e.put_be32(CTA_MARK, ct.mark);
    }
    if ct.zone != 0 {
        e.put_be16(CTA_ZONE, ct.zone);
    }
    if let Some(h) = &ct.helper {
        let at = e.begin(CTA_HELP);
        e.put_str(CTA_HELP_NAME, h);
        e.end(at);
    }
    encode_protoinfo(&mut e, &ct.proto_info);
    if let Some(adj) = &ct.seq_adj {
        for (kind, s) in
            [(CTA_SEQ_ADJ_ORIG, adj[0]), (CTA_SEQ_ADJ_REPLY, adj[1])]
        {
            let at = e.begin(kind);
            e.put_be32(CTA_SEQADJ_CORRECTION_POS, s.correction_pos);
            e.put_be32(CTA_SEQADJ_OFFSET_BEFORE, s.offset_before);
            e.put_be32(CTA_SEQADJ_OFFSET_AFTER, s.offset_after);
            e.end(at);
        }
    }
    if let Some(l) = &ct.labels {
        e.put(CTA_LABELS, l);
        e.put(CTA_LABELS_MASK, &[0xff; 16]);
    }
    e.finish_msg(at);
}

fn encode_protoinfo(e: &mut Encoder<'_>, p: &ProtoInfo) {
    match *p {
        ProtoInfo::Tcp {
            state,
            wscale_orig,
            wscale_reply,
            flags_orig,
            flags_reply,
        } => {
            let at = e.begin(CTA_PROTOINFO);
            let tcp = e.begin(CTA_PROTOINFO_TCP);
            e.put_u8(CTA_PROTOINFO_TCP_STATE, state);
            e.put_u8(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, wscale_orig);
            e.put_u8(CTA_PROTOINFO_TCP_WSCALE_REPLY, wscale_reply);
            // struct nf_ct_tcp_flags { flags, mask }: set exactly these.
            e.put(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &[flags_orig, flags_orig]);
            e.put(CTA_PROTOINFO_TCP_FLAGS_REPLY, &[flags_reply, flags_reply]);
            e.end(tcp);
            e.end(at);
        }
        ProtoInfo::Sctp {
            state,
            vtag_orig,
            vtag_reply,
        } => {
            let at = e.begin(CTA_PROTOINFO);
            let s = e.begin(CTA_PROTOINFO_SCTP);
            e.put_u8(CTA_PROTOINFO_SCTP_STATE, state);
            e.put_be32(CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, vtag_orig);
            e.put_be32(CTA_PROTOINFO_SCTP_VTAG_REPLY, vtag_reply);
            e.end(s);
            e.end(at);
        }
        ProtoInfo::Dccp {
            state,
            role,
            handshake_seq,
        } => {
            let at = e.begin(CTA_PROTOINFO);
            let d = e.begin(CTA_PROTOINFO_DCCP);
            e.put_u8(CTA_PROTOINFO_DCCP_STATE, state);
            e.put_u8(CTA_PROTOINFO_DCCP_ROLE, role);
            e.put(
                CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ,
                &handshake_seq.to_be_bytes(),
            );
            e.end(d);
            e.end(at);
        }
        ProtoInfo::None => {}
    }
}

/// Appends a request that deletes the conntrack with this original tuple.
pub fn encode_ct_delete(buf: &mut Vec<u8>, orig: &Tuple, zone: u16, seq: u32) {
    encode_ct_by_tuple(buf, IPCTNL_MSG_CT_DELETE, orig, zone, seq);
}

/// Appends a request for one conntrack by original tuple.
pub fn encode_ct_get(buf: &mut Vec<u8>, orig: &Tuple, zone: u16, seq: u32) {
    encode_ct_by_tuple(buf, IPCTNL_MSG_CT_GET, orig, zone, seq);
}

fn encode_ct_by_tuple(
    buf: &mut Vec<u8>,
    op: u8,
    orig: &Tuple,
    zone: u16,
    seq: u32,
) {
    let mut e = Encoder::new(buf);
    let flags = NLM_F_REQUEST | NLM_F_ACK;
    let at = e.begin_msg(NFNL_SUBSYS_CTNETLINK, op, flags, seq, family(orig));
    e.tuple(CTA_TUPLE_ORIG, orig);
    if zone != 0 {
        e.put_be16(CTA_ZONE, zone);
    }
    e.finish_msg(at);
}

/// Appends a dump request for the whole conntrack or expectation table.
pub fn encode_dump(buf: &mut Vec<u8>, expectations: bool, seq: u32) {
    if expectations {
        // netlink-packet-netfilter has no expectation subsystem (yet).
        let mut e = Encoder::new(buf);
        let flags = NLM_F_REQUEST | NLM_F_DUMP;
        let at = e.begin_msg(
            NFNL_SUBSYS_CTNETLINK_EXP,
            IPCTNL_MSG_EXP_GET,
            flags,
            seq,
            0,
        );
        e.finish_msg(at);
        return;
    }
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
            ConntrackMessage::Get(Vec::new()),
        )),
    );
    msg.finalize();
    let start = buf.len();
    buf.resize(start + msg.buffer_len(), 0);
    msg.serialize(&mut buf[start..]);
}

/// Appends a request that creates an expectation.
pub fn encode_exp_create(buf: &mut Vec<u8>, x: &Expect, seq: u32) {
    let mut e = Encoder::new(buf);
    let at = e.begin_msg(
        NFNL_SUBSYS_CTNETLINK_EXP,
        IPCTNL_MSG_EXP_NEW,
        CREATE_NEW,
        seq,
        family(&x.tuple),
    );
    e.tuple(CTA_EXPECT_MASTER, &x.master);
    e.tuple(CTA_EXPECT_TUPLE, &x.tuple);
    e.tuple(CTA_EXPECT_MASK, &x.mask);
    e.put_be32(CTA_EXPECT_TIMEOUT, x.timeout.unwrap_or(0));
    if x.zone != 0 {
        e.put_be16(CTA_EXPECT_ZONE, x.zone);
    }
    e.put_be32(CTA_EXPECT_FLAGS, x.flags);
    e.put_be32(CTA_EXPECT_CLASS, x.class);
    if let Some(h) = &x.helper {
        e.put_str(CTA_EXPECT_HELP_NAME, h);
    }
    if let Some(n) = &x.nat {
        let at = e.begin(CTA_EXPECT_NAT);
        e.put_be32(CTA_EXPECT_NAT_DIR, n.dir);
        e.tuple(CTA_EXPECT_NAT_TUPLE, &n.tuple);
        e.end(at);
    }
    if let Some(f) = &x.func {
        e.put_str(CTA_EXPECT_FN, f);
    }
    e.finish_msg(at);
}

/// Appends a request that deletes the expectation with this tuple.
pub fn encode_exp_delete(buf: &mut Vec<u8>, x: &Expect, seq: u32) {
    let mut e = Encoder::new(buf);
    let at = e.begin_msg(
        NFNL_SUBSYS_CTNETLINK_EXP,
        IPCTNL_MSG_EXP_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family(&x.tuple),
    );
    e.tuple(CTA_EXPECT_TUPLE, &x.tuple);
    if x.zone != 0 {
        e.put_be16(CTA_EXPECT_ZONE, x.zone);
    }
    e.finish_msg(at);
}

#[cfg(test)]
mod test;
