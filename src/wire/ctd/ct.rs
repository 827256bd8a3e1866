//! Conntrack payloads (`NTA_*`, reference §4.4.2): a [`Conntrack`] to
//! attributes in conntrackd 1.4.7's emission order, and back.
//!
//! conntrackd never sends the reply tuple. The decoder rebuilds it as the
//! inverse of the original tuple with the SNAT/DNAT/SPAT/DPAT attributes
//! applied, which is what the kernel commit path turns into a NAT binding;
//! the encoder derives those attributes from the reply tuple. Fields the
//! format cannot carry (secmark, counters, TCP flags, the DCCP handshake
//! sequence, the kernel id) decode as their defaults.
//!
//! Decoding is canonical: whatever it returns, [`encode`] writes in a form
//! that decodes to the same value (the fuzz target checks this).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::attr::{Size, Writer, be16, be32, name, walk};
use super::{Error, NatByteOrder, Options};
use crate::model::{Conntrack, HelperName, L4, ProtoInfo, SeqAdj, Tuple};

const IPV4: u16 = 0;
const IPV6: u16 = 1;
const L4PROTO: u16 = 2;
const PORT: u16 = 3;
const TCP_STATE: u16 = 4;
const STATUS: u16 = 5;
const TIMEOUT: u16 = 6;
const MARK: u16 = 7;
const MASTER_IPV4: u16 = 8;
const MASTER_IPV6: u16 = 9;
const MASTER_L4PROTO: u16 = 10;
const MASTER_PORT: u16 = 11;
const SNAT_IPV4: u16 = 12;
const DNAT_IPV4: u16 = 13;
const SPAT_PORT: u16 = 14;
const DPAT_PORT: u16 = 15;
const NAT_SEQ_ADJ: u16 = 16;
const SCTP_STATE: u16 = 17;
const SCTP_VTAG_ORIG: u16 = 18;
const SCTP_VTAG_REPL: u16 = 19;
const DCCP_STATE: u16 = 20;
const DCCP_ROLE: u16 = 21;
const ICMP_TYPE: u16 = 22;
const ICMP_CODE: u16 = 23;
const ICMP_ID: u16 = 24;
const TCP_WSCALE_ORIG: u16 = 25;
const TCP_WSCALE_REPL: u16 = 26;
const HELPER_NAME: u16 = 27;
const LABELS: u16 = 28;
const SNAT_IPV6: u16 = 29;
const DNAT_IPV6: u16 = 30;
const SYNPROXY: u16 = 31;
const ZONE: u16 = 32;

/// Payload sizes by attribute number (conntrackd 1.4.7, NTA_MAX = 33).
static TABLE: [Size; 33] = {
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
const HELPER_MAX_CHARS: usize = 11;

/// Protocols whose original ports conntrackd replicates (NTA_PORT).
pub(super) fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 33)
}

fn is_icmp(proto: u8) -> bool {
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

fn v6_addr(v: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&v[..16]);
    Ipv6Addr::from(a).into()
}

pub(super) fn port_pair(v: &[u8]) -> (u16, u16) {
    (be16(v), be16(&v[2..]))
}

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
pub(super) fn decode(
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

fn addrs(w: &mut Writer<'_>, v4: u16, v6: u16, src: IpAddr, dst: IpAddr) {
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            w.put(v4, &[&a.octets(), &b.octets()])
        }
        _ => w.put(v6, &[&v6_octets(src), &v6_octets(dst)]),
    }
}

/// A mixed pair (never produced by the kernel) goes out as IPv6 with the
/// IPv4 address mapped.
pub(super) fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

fn ports(w: &mut Writer<'_>, kind: u16, l4: L4) {
    let (sp, dp) = match l4 {
        L4::Ports { src, dst } => (src, dst),
        _ => (0, 0),
    };
    w.put(kind, &[&sp.to_be_bytes(), &dp.to_be_bytes()]);
}

/// Writes the attributes of `ct` in conntrackd's order (§4.4.2).
pub(super) fn encode(ct: &Conntrack, opts: Options, w: &mut Writer<'_>) {
    let o = ct.orig;
    addrs(w, IPV4, IPV6, o.src, o.dst);
    w.be32(STATUS, ct.status);
    w.u8(L4PROTO, o.proto);
    if has_ports(o.proto) {
        // conntrackd 1.4.7 sends the ports even without protocol state,
        // so that a DEL built from a key still matches.
        if let L4::Ports { .. } = o.l4 {
            ports(w, PORT, o.l4);
        }
    }
    match (o.proto, ct.proto_info) {
        (
            6,
            ProtoInfo::Tcp {
                state,
                wscale_orig,
                wscale_reply,
                ..
            },
        ) => {
            w.u8(TCP_STATE, state);
            // Only TCPWindowTracking senders have them; zero means
            // "not known" to our model either way.
            if wscale_orig != 0 || wscale_reply != 0 {
                w.u8(TCP_WSCALE_ORIG, wscale_orig);
                w.u8(TCP_WSCALE_REPL, wscale_reply);
            }
        }
        (
            132,
            ProtoInfo::Sctp {
                state,
                vtag_orig,
                vtag_reply,
            },
        ) => {
            w.u8(SCTP_STATE, state);
            w.be32(SCTP_VTAG_ORIG, vtag_orig);
            w.be32(SCTP_VTAG_REPL, vtag_reply);
        }
        (33, ProtoInfo::Dccp { state, role, .. }) => {
            w.u8(DCCP_STATE, state);
            w.u8(DCCP_ROLE, role);
        }
        _ => {}
    }
    if let (true, L4::Icmp { kind, code, id }) = (is_icmp(o.proto), o.l4) {
        w.u8(ICMP_TYPE, kind);
        w.u8(ICMP_CODE, code);
        w.put(ICMP_ID, &[&id.to_le_bytes()]);
    }
    if let (true, Some(t)) = (opts.send_timeout, ct.timeout) {
        w.be32(TIMEOUT, t);
    }
    if ct.mark != 0 {
        w.be32(MARK, ct.mark);
    }
    if let Some(m) = ct.master {
        addrs(w, MASTER_IPV4, MASTER_IPV6, m.src, m.dst);
        w.u8(MASTER_L4PROTO, m.proto);
        if let L4::Ports { .. } = m.l4 {
            ports(w, MASTER_PORT, m.l4);
        }
    }
    nat(ct, opts, w);
    if let Some(adj) = ct.seq_adj {
        let mut b = [0u8; 24];
        let words = [
            adj[0].correction_pos,
            adj[0].offset_before,
            adj[0].offset_after,
            adj[1].correction_pos,
            adj[1].offset_before,
            adj[1].offset_after,
        ];
        for (chunk, word) in b.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        w.put(NAT_SEQ_ADJ, &[&b]);
    }
    // A longer name would make conntrackd drop the whole message; the
    // entry is worth more than its helper.
    if let Some(h) = ct.helper.as_ref().filter(|h| {
        !h.is_empty() && h.len() <= HELPER_MAX_CHARS && !h.contains('\0')
    }) {
        w.put(HELPER_NAME, &[h.as_bytes(), &[0]]);
    }
    if let Some(l) = ct.labels.filter(|l| *l != [0; 16]) {
        let mut b = [0u8; 16];
        for (i, chunk) in b.chunks_exact_mut(4).enumerate() {
            let word = u32::from_le_bytes([
                l[4 * i],
                l[4 * i + 1],
                l[4 * i + 2],
                l[4 * i + 3],
            ]);
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        w.put(LABELS, &[&b]);
    }
    if ct.zone != 0 {
        w.be16(ZONE, ct.zone);
    }
}

/// SNAT/DNAT/SPAT/DPAT from the reply tuple: an attribute for each part
/// of the reply that is not the inverse of the original.
fn nat(ct: &Conntrack, opts: Options, w: &mut Writer<'_>) {
    let (o, r) = (ct.orig, ct.reply_tuple());
    for (kind4, kind6, addr, differs) in [
        (SNAT_IPV4, SNAT_IPV6, r.dst, r.dst != o.src),
        (DNAT_IPV4, DNAT_IPV6, r.src, r.src != o.dst),
    ] {
        if !differs {
            continue;
        }
        match addr {
            IpAddr::V4(a) if o.src.is_ipv4() => {
                let mut b = a.octets();
                if opts.nat_order == NatByteOrder::V142 {
                    b.reverse();
                }
                w.put(kind4, &[&b]);
            }
            IpAddr::V6(a) if o.src.is_ipv6() => w.put(kind6, &[&a.octets()]),
            // A reply of the other family cannot be said.
            _ => {}
        }
    }
    if let (L4::Ports { src: os, dst: od }, L4::Ports { src: rs, dst: rd }) =
        (o.l4, r.l4)
        && has_ports(o.proto)
    {
        if rd != os {
            w.put(SPAT_PORT, &[&rd.to_le_bytes()]);
        }
        if rs != od {
            w.put(DPAT_PORT, &[&rs.to_le_bytes()]);
        }
    }
}
