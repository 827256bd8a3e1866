//! Decoding a conntrack: its tuples, protocol state (TCP, SCTP, DCCP),
//! helper, sequence adjustment, labels, counters and timestamps. Two
//! passes over the
//! same attribute view; unknown attributes are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::attr::{be16, be32, be64, name, nlas, u8_of};
use super::message::{DecodeError, Result};
use super::uapi::*;
use crate::model::{
    Conntrack, Counters, L4, ProtoInfo, SeqAdj, Timestamp, Tuple,
};

pub(super) fn decode_tuple(buf: &[u8]) -> Result<Tuple> {
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

/// Kernel nanoseconds as whole seconds (saturating past 2106).
fn whole_secs(ns: u64) -> u32 {
    u32::try_from(ns / 1_000_000_000).unwrap_or(u32::MAX)
}

/// Decodes the attributes of a conntrack message.
pub(super) fn decode_ct(attrs: &[u8]) -> Result<Conntrack> {
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
        CTA_TIMESTAMP => {
            let mut ts = Timestamp::default();
            for a in nlas(v) {
                let (t, v) = a?;
                match t {
                    CTA_TIMESTAMP_START => {
                        ts.start_s = whole_secs(be64(v, "CTA_TIMESTAMP_START")?)
                    }
                    CTA_TIMESTAMP_STOP => {
                        ts.stop_s = whole_secs(be64(v, "CTA_TIMESTAMP_STOP")?)
                    }
                    _ => {}
                }
            }
            ct.timestamp = Some(ts);
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
