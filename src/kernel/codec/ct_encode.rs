//! Conntrack requests: create (with NAT, helper, protocol state,
//! sequence adjustment and labels), delete and get by original tuple.

use super::encoder::{Encoder, family};
use super::uapi::*;
use crate::model::{Conntrack, ProtoInfo, Tuple};

/// Appends a request that creates `ct` exactly as given (the caller
/// applies the commit rules first, see `kernel::commit`).
pub fn encode_ct_create(buf: &mut Vec<u8>, ct: &Conntrack, seq: u32) {
    encode_ct_new(buf, ct, seq, false);
}

/// Appends a request that changes the existing conntrack with `ct`'s
/// original tuple in place (ENOENT when there is none). Unlike a delete
/// and re-create, the entry keeps its expectations, its helper and its
/// NAT binding. Only what ctnetlink lets an update change is sent: the
/// NAT, the master tuple and the reply tuple can be set at creation only
/// (EOPNOTSUPP otherwise), and the helper is left out because an empty
/// or different name would detach it (dropping its expectations) or be
/// refused (EBUSY), as conntrackd's `nl_update_conntrack` does.
pub fn encode_ct_update(buf: &mut Vec<u8>, ct: &Conntrack, seq: u32) {
    encode_ct_new(buf, ct, seq, true);
}

fn encode_ct_new(buf: &mut Vec<u8>, ct: &Conntrack, seq: u32, update: bool) {
    let mut e = Encoder::new(buf);
    let at = e.begin_msg(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_NEW,
        if update {
            NLM_F_REQUEST | NLM_F_ACK
        } else {
            CREATE_NEW
        },
        seq,
        family(&ct.orig),
    );
    e.tuple(CTA_TUPLE_ORIG, &ct.orig);
    if !update {
        // The reply tuple without NAT: the kernel derives the translated
        // one from CTA_NAT_SRC/DST.
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
    }
    e.put_be32(CTA_STATUS, ct.status);
    e.put_be32(CTA_TIMEOUT, ct.timeout.unwrap_or(0));
    // An update sets the mark even to 0 (the peer's entry lost its mark).
    if ct.mark != 0 || update {
        e.put_be32(CTA_MARK, ct.mark);
    }
    if ct.zone != 0 {
        e.put_be16(CTA_ZONE, ct.zone);
    }
    if let (Some(h), false) = (&ct.helper, update) {
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

/// Appends a request that deletes the conntrack with this reply tuple
/// (as the kernel reports it, NAT applied): one whose original tuple is
/// in a zone of that direction only (CTA_TUPLE_ZONE, which the model
/// does not keep) is found by its reply tuple in zone 0.
pub fn encode_ct_delete_by_reply(
    buf: &mut Vec<u8>,
    reply: &Tuple,
    zone: u16,
    seq: u32,
) {
    let mut e = Encoder::new(buf);
    let flags = NLM_F_REQUEST | NLM_F_ACK;
    let op = IPCTNL_MSG_CT_DELETE;
    let at = e.begin_msg(NFNL_SUBSYS_CTNETLINK, op, flags, seq, family(reply));
    e.tuple(CTA_TUPLE_REPLY, reply);
    if zone != 0 {
        e.put_be16(CTA_ZONE, zone);
    }
    e.finish_msg(at);
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
