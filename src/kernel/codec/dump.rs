//! Dump requests: the whole conntrack or expectation table, or the
//! expectations of one master.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
};

use super::encoder::{Encoder, family};
use super::uapi::*;
use crate::model::Tuple;

/// Appends a dump request for the whole conntrack or expectation table.
pub(crate) fn encode_dump(buf: &mut Vec<u8>, expectations: bool, seq: u32) {
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

/// Appends a dump request for the expectations of one master conntrack
/// (ctnetlink's per-master expectation dump: the kernel walks that
/// master's own list, not the whole table). It asks for an ACK as well:
/// a master without a helper has no list, and the kernel then answers
/// with an ACK instead of a dump; one it does not hold, with ENOENT.
pub(crate) fn encode_exp_dump_of(
    buf: &mut Vec<u8>,
    master: &Tuple,
    zone: u16,
    seq: u32,
) {
    let mut e = Encoder::new(buf);
    let at = e.begin_msg(
        NFNL_SUBSYS_CTNETLINK_EXP,
        IPCTNL_MSG_EXP_GET,
        NLM_F_REQUEST | NLM_F_DUMP | NLM_F_ACK,
        seq,
        family(master),
    );
    e.tuple(CTA_EXPECT_MASTER, master);
    if zone != 0 {
        e.put_be16(CTA_EXPECT_ZONE, zone);
    }
    e.finish_msg(at);
}
