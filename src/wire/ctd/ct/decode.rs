//! Conntrack attributes to a [`Conntrack`]: validation by the attribute
//! table, then the checks conntrackd cannot hash without (§4.4.3).

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::model::{Conntrack, HelperName, L4, ProtoInfo, SeqAdj, Tuple};
use crate::wire::ctd::attr::{be16, be32, name, walk};
use crate::wire::ctd::{Error, NatByteOrder, Options};

/// conntrackd (x86) puts SPAT/DPAT/ICMP_ID on the wire least significant
/// byte first (`htons` of a value already in network order, §4.4.4).
fn le16(v: &[u8]) -> u16 {
    u16::from_le_bytes([v[0], v[1]])
}

/// Everything a conntrack message said, before it is checked and shaped.
#[derive(Default)]
struct Seen {
    addrs: Option<(IpAddr, IpAddr)>,
    proto: Option<u8>,
    ports: Option<(u16, u16)>,
    status: u32,
    timeout: Option<u32>,
    mark: u32,
    tcp_state: Option<u8>,
    wscale: (u8, u8),
    sctp_state: Option<u8>,
    vtags: (u32, u32),
    dccp_state: Option<u8>,
    dccp_role: u8,
    icmp_type: Option<u8>,
    icmp_code: u8,
    icmp_id: u16,
    master_addrs: Option<(IpAddr, IpAddr)>,
    master_proto: Option<u8>,
    master_ports: Option<(u16, u16)>,
    snat: Option<IpAddr>,
    dnat: Option<IpAddr>,
    spat: Option<u16>,
    dpat: Option<u16>,
    seq_adj: Option<[SeqAdj; 2]>,
    helper: Option<HelperName>,
    labels: Option<[u8; 16]>,
    zone: u16,
}

fn nat_v4(v: &[u8], order: NatByteOrder) -> IpAddr {
    let mut b = [v[0], v[1], v[2], v[3]];
    if order == NatByteOrder::V142 {
        b.reverse();
    }
    Ipv4Addr::from(b).into()
}

fn seq_adj(v: &[u8]) -> [SeqAdj; 2] {
    let w = |i: usize| be32(&v[4 * i..]);
    [
        SeqAdj {
            correction_pos: w(0),
            offset_before: w(1),
            offset_after: w(2),
        },
        SeqAdj {
            correction_pos: w(3),
            offset_before: w(4),
            offset_after: w(5),
        },
    ]
}

/// NTA_LABELS: n big-endian words, word i bit b = label 32i+b. The model
/// keeps the kernel's 128-bit bitmap as bytes, label n = bit n%8 of byte
/// n/8; labels past 127 cannot exist in the kernel and are dropped.
fn labels(v: &[u8]) -> Result<Option<[u8; 16]>, Error> {
    if v.len() % 4 != 0 {
        return Err(Error::Malformed);
    }
    let mut l = [0u8; 16];
    for (i, word) in v.chunks_exact(4).take(4).enumerate() {
        let w = be32(word).to_le_bytes();
        l[4 * i..4 * i + 4].copy_from_slice(&w);
    }
    Ok((l != [0; 16]).then_some(l))
}

fn read(payload: &[u8], opts: Options) -> Result<Seen, Error> {
    let mut s = Seen::default();
    for a in walk(payload, &TABLE) {
        let (kind, v) = a?;
        match kind {
            IPV4 | IPV6 => s.addrs = Some(addr_pair(v)),
            L4PROTO => s.proto = Some(v[0]),
            PORT => s.ports = Some(port_pair(v)),
            TCP_STATE => s.tcp_state = Some(v[0]),
            STATUS => s.status = be32(v),
            TIMEOUT => s.timeout = Some(be32(v)),
            MARK => s.mark = be32(v),
            MASTER_IPV4 | MASTER_IPV6 => s.master_addrs = Some(addr_pair(v)),
            MASTER_L4PROTO => s.master_proto = Some(v[0]),
            MASTER_PORT => s.master_ports = Some(port_pair(v)),
            SNAT_IPV4 => s.snat = Some(nat_v4(v, opts.nat_order)),
            DNAT_IPV4 => s.dnat = Some(nat_v4(v, opts.nat_order)),
            // 1.4.2 knows no IPv6 NAT (its parser table ends at 29, and
            // reads past it for 29): a V142 peer neither sends nor gets
            // them.
            SNAT_IPV6 | DNAT_IPV6 if opts.nat_order == NatByteOrder::V142 => {}
            SNAT_IPV6 | DNAT_IPV6 => {
                let addr = v6_addr(v);
                if kind == SNAT_IPV6 {
                    s.snat = Some(addr);
                } else {
                    s.dnat = Some(addr);
                }
            }
            SPAT_PORT => s.spat = Some(le16(v)),
            DPAT_PORT => s.dpat = Some(le16(v)),
            NAT_SEQ_ADJ => s.seq_adj = Some(seq_adj(v)),
            SCTP_STATE => s.sctp_state = Some(v[0]),
            SCTP_VTAG_ORIG => s.vtags.0 = be32(v),
            SCTP_VTAG_REPL => s.vtags.1 = be32(v),
            DCCP_STATE => s.dccp_state = Some(v[0]),
            DCCP_ROLE => s.dccp_role = v[0],
            ICMP_TYPE => s.icmp_type = Some(v[0]),
            ICMP_CODE => s.icmp_code = v[0],
            ICMP_ID => s.icmp_id = le16(v),
            TCP_WSCALE_ORIG => s.wscale.0 = v[0],
            TCP_WSCALE_REPL => s.wscale.1 = v[0],
            HELPER_NAME => s.helper = name(v)?,
            LABELS => s.labels = labels(v)?,
            // Nor zones (1.4.7's 32): what we send it carries none.
            ZONE if opts.nat_order == NatByteOrder::V142 => {}
            ZONE => s.zone = be16(v),
            // The model has no synproxy state: size-checked, ignored.
            SYNPROXY => {}
            _ => {}
        }
    }
    Ok(s)
}

/// Decodes the attributes of a CT_NEW/UPD/DEL message.
///
/// # Errors
/// [`Error::Malformed`]: an invalid attribute, no address group or no
/// protocol (conntrackd could not hash it), or a NAT address of the other
/// family.
pub(in crate::wire::ctd) fn decode(
    payload: &[u8],
    opts: Options,
) -> Result<Conntrack, Error> {
    let s = read(payload, opts)?;
    let (src, dst) = s.addrs.ok_or(Error::Malformed)?;
    let proto = s.proto.ok_or(Error::Malformed)?;
    let l4 = match (s.ports, s.icmp_type) {
        (Some((sp, dp)), _) if has_ports(proto) => {
            L4::Ports { src: sp, dst: dp }
        }
        (_, Some(kind)) if is_icmp(proto) => L4::Icmp {
            kind,
            code: s.icmp_code,
            id: s.icmp_id,
        },
        _ => L4::None,
    };
    let orig = Tuple {
        src,
        dst,
        proto,
        l4,
    };
    let mut ct = Conntrack::new(orig);
    ct.status = s.status;
    ct.timeout = s.timeout;
    ct.mark = s.mark;
    ct.zone = s.zone;
    ct.helper = s.helper;
    ct.labels = s.labels;
    ct.seq_adj = s.seq_adj;
    ct.proto_info = match proto {
        6 => s.tcp_state.map(|state| ProtoInfo::Tcp {
            state,
            wscale_orig: s.wscale.0,
            wscale_reply: s.wscale.1,
            flags_orig: 0,
            flags_reply: 0,
        }),
        132 => s.sctp_state.map(|state| ProtoInfo::Sctp {
            state,
            vtag_orig: s.vtags.0,
            vtag_reply: s.vtags.1,
        }),
        33 => s.dccp_state.map(|state| ProtoInfo::Dccp {
            state,
            role: s.dccp_role,
            handshake_seq: 0,
        }),
        _ => None,
    }
    .unwrap_or(ProtoInfo::None);
    if let Some((msrc, mdst)) = s.master_addrs {
        let mproto = s.master_proto.ok_or(Error::Malformed)?;
        ct.master = Some(Tuple {
            src: msrc,
            dst: mdst,
            proto: mproto,
            l4: match s.master_ports {
                Some((sp, dp)) => L4::Ports { src: sp, dst: dp },
                None => L4::None,
            },
        });
    }
    let mut reply = orig.inverse();
    for (nat, is_src) in [(s.snat, true), (s.dnat, false)] {
        let Some(addr) = nat else { continue };
        if addr.is_ipv4() != src.is_ipv4() {
            return Err(Error::Malformed);
        }
        if is_src {
            reply.dst = addr;
        } else {
            reply.src = addr;
        }
    }
    if let L4::Ports { src: rsp, dst: rdp } = &mut reply.l4 {
        *rdp = s.spat.unwrap_or(*rdp);
        *rsp = s.dpat.unwrap_or(*rsp);
    }
    ct.reply = Some(reply);
    Ok(ct)
}
