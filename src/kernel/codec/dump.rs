//! Dump requests for the whole conntrack or expectation table.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
};

use super::encoder::Encoder;
use super::uapi::*;

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
