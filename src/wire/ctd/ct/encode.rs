//! A [`Conntrack`] to attributes, in conntrackd 1.4.7's order (§4.4.2),
//! with x86 conntrackd's byte order for every field.

use std::net::IpAddr;

use super::*;
use crate::model::{Conntrack, L4, ProtoInfo, status};
use crate::wire::ctd::attr::Writer;
use crate::wire::ctd::{NatByteOrder, Options};

fn addrs(w: &mut Writer<'_>, v4: u16, v6: u16, src: IpAddr, dst: IpAddr) {
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            w.put(v4, &[&a.octets(), &b.octets()])
        }
        _ => w.put(v6, &[&v6_octets(src), &v6_octets(dst)]),
    }
}

fn ports(w: &mut Writer<'_>, kind: u16, l4: L4) {
    let (sp, dp) = match l4 {
        L4::Ports { src, dst } => (src, dst),
        _ => (0, 0),
    };
    w.put(kind, &[&sp.to_be_bytes(), &dp.to_be_bytes()]);
}

/// Writes the attributes of `ct` in conntrackd's order (§4.4.2); `upd`:
/// for a CT_UPD.
pub(in crate::wire::ctd) fn encode(
    ct: &Conntrack,
    opts: Options,
    upd: bool,
    w: &mut Writer<'_>,
) {
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
    // conntrackd updates an entry with what a CT_UPD carries and keeps the
    // rest: an UPD without the mark left a mark since set back to 0 on the
    // peer, and its failover committed the old one. (A NEW replaces the
    // entry: no mark there is 0.)
    if ct.mark != 0 || upd {
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
    // 1.4.2 refuses a whole message that carries an attribute past its
    // last (29), and still acknowledges its number: the flow would never
    // arrive. It goes without its zone, as a 1.4.2 primary sends it.
    if ct.zone != 0 && opts.nat_order != NatByteOrder::V142 {
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
            // Not for a 1.4.2 peer: see the decoder.
            IpAddr::V6(a)
                if o.src.is_ipv6() && opts.nat_order == NatByteOrder::V147 =>
            {
                w.put(kind6, &[&a.octets()])
            }
            // A reply of the other family cannot be said.
            _ => {}
        }
    }
    match (o.l4, r.l4) {
        (L4::Ports { src: os, dst: od }, L4::Ports { src: rs, dst: rd }) => {
            if rd != os {
                w.put(SPAT_PORT, &[&rd.to_le_bytes()]);
            }
            if rs != od {
                w.put(DPAT_PORT, &[&rs.to_le_bytes()]);
            }
        }
        (L4::Icmp { kind, code, id }, _) => {
            // What x86 conntrackd 1.4.7 sends for ICMP (captured): its
            // library compares the ports of a reply tuple it holds no
            // ICMP fields of (zeros) with the original's id (SPAT) and
            // type/code (DPAT), under the NAT_DONE bits, and sends the
            // zeros. Receivers ignore them for ICMP.
            if ct.status & status::SRC_NAT_DONE != 0 && id != 0 {
                w.put(SPAT_PORT, &[&[0, 0]]);
            }
            if ct.status & status::DST_NAT_DONE != 0 && (kind, code) != (0, 0) {
                w.put(DPAT_PORT, &[&[0, 0]]);
            }
        }
        _ => {}
    }
}
