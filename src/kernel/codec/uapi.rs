//! The kernel's numbers: nfnetlink subsystems and message types, the
//! conntrack multicast groups, netlink flags and message types, and the
//! ctnetlink attribute ids, named after the kernel's `CTA_*` /
//! `CTA_EXPECT_*` (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
//! Only what callers outside the codec use is public.

pub(crate) const NFNL_SUBSYS_CTNETLINK: u8 = 1;
pub(crate) const NFNL_SUBSYS_CTNETLINK_EXP: u8 = 2;
pub(crate) const IPCTNL_MSG_CT_NEW: u8 = 0;
pub const IPCTNL_MSG_CT_GET: u8 = 1;
pub(crate) const IPCTNL_MSG_CT_DELETE: u8 = 2;
pub(crate) const IPCTNL_MSG_EXP_NEW: u8 = 0;
pub(crate) const IPCTNL_MSG_EXP_GET: u8 = 1;
pub(crate) const IPCTNL_MSG_EXP_DELETE: u8 = 2;

/// Multicast groups (`enum nfnetlink_groups`).
pub(crate) const NFNLGRP_CONNTRACK_NEW: u32 = 1;
pub(crate) const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
pub(crate) const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
pub(crate) const NFNLGRP_CONNTRACK_EXP_NEW: u32 = 4;
pub(crate) const NFNLGRP_CONNTRACK_EXP_UPDATE: u32 = 5;
pub(crate) const NFNLGRP_CONNTRACK_EXP_DESTROY: u32 = 6;

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
/// A create that must not replace an existing entry (EEXIST instead).
pub(super) const CREATE_NEW: u16 =
    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(super) const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NLA_TYPE_MASK: u16 = 0x3fff;

pub(super) const CTA_TUPLE_ORIG: u16 = 1;
pub(super) const CTA_TUPLE_REPLY: u16 = 2;
pub(super) const CTA_STATUS: u16 = 3;
pub(super) const CTA_PROTOINFO: u16 = 4;
pub(super) const CTA_HELP: u16 = 5;
pub(super) const CTA_NAT_SRC: u16 = 6;
pub(super) const CTA_TIMEOUT: u16 = 7;
pub(super) const CTA_MARK: u16 = 8;
pub(super) const CTA_COUNTERS_ORIG: u16 = 9;
pub(super) const CTA_COUNTERS_REPLY: u16 = 10;
pub(super) const CTA_ID: u16 = 12;
pub(super) const CTA_NAT_DST: u16 = 13;
pub(super) const CTA_TUPLE_MASTER: u16 = 14;
pub(super) const CTA_SEQ_ADJ_ORIG: u16 = 15;
pub(super) const CTA_SEQ_ADJ_REPLY: u16 = 16;
pub(super) const CTA_SECMARK: u16 = 17;
pub(super) const CTA_ZONE: u16 = 18;
pub(super) const CTA_TIMESTAMP: u16 = 20;
pub(super) const CTA_LABELS: u16 = 22;
pub(super) const CTA_LABELS_MASK: u16 = 23;

pub(super) const CTA_TUPLE_IP: u16 = 1;
pub(super) const CTA_TUPLE_PROTO: u16 = 2;
pub(super) const CTA_IP_V4_SRC: u16 = 1;
pub(super) const CTA_IP_V4_DST: u16 = 2;
pub(super) const CTA_IP_V6_SRC: u16 = 3;
pub(super) const CTA_IP_V6_DST: u16 = 4;
pub(super) const CTA_PROTO_NUM: u16 = 1;
pub(super) const CTA_PROTO_SRC_PORT: u16 = 2;
pub(super) const CTA_PROTO_DST_PORT: u16 = 3;
pub(super) const CTA_PROTO_ICMP_ID: u16 = 4;
pub(super) const CTA_PROTO_ICMP_TYPE: u16 = 5;
pub(super) const CTA_PROTO_ICMP_CODE: u16 = 6;
pub(super) const CTA_PROTO_ICMPV6_ID: u16 = 7;
pub(super) const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
pub(super) const CTA_PROTO_ICMPV6_CODE: u16 = 9;

pub(super) const CTA_PROTOINFO_TCP: u16 = 1;
pub(super) const CTA_PROTOINFO_DCCP: u16 = 2;
pub(super) const CTA_PROTOINFO_SCTP: u16 = 3;
pub(super) const CTA_PROTOINFO_TCP_STATE: u16 = 1;
pub(super) const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
pub(super) const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
pub(super) const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
pub(super) const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
pub(super) const CTA_PROTOINFO_DCCP_STATE: u16 = 1;
pub(super) const CTA_PROTOINFO_DCCP_ROLE: u16 = 2;
pub(super) const CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ: u16 = 3;
pub(super) const CTA_PROTOINFO_SCTP_STATE: u16 = 1;
pub(super) const CTA_PROTOINFO_SCTP_VTAG_ORIGINAL: u16 = 2;
pub(super) const CTA_PROTOINFO_SCTP_VTAG_REPLY: u16 = 3;

pub(super) const CTA_HELP_NAME: u16 = 1;
pub(super) const CTA_COUNTERS_PACKETS: u16 = 1;
pub(super) const CTA_COUNTERS_BYTES: u16 = 2;
pub(super) const CTA_TIMESTAMP_START: u16 = 1;
pub(super) const CTA_TIMESTAMP_STOP: u16 = 2;
pub(super) const CTA_SEQADJ_CORRECTION_POS: u16 = 1;
pub(super) const CTA_SEQADJ_OFFSET_BEFORE: u16 = 2;
pub(super) const CTA_SEQADJ_OFFSET_AFTER: u16 = 3;
pub(super) const CTA_NAT_V4_MINIP: u16 = 1;
pub(super) const CTA_NAT_V4_MAXIP: u16 = 2;
pub(super) const CTA_NAT_PROTO: u16 = 3;
pub(super) const CTA_NAT_V6_MINIP: u16 = 4;
pub(super) const CTA_NAT_V6_MAXIP: u16 = 5;
pub(super) const CTA_PROTONAT_PORT_MIN: u16 = 1;
pub(super) const CTA_PROTONAT_PORT_MAX: u16 = 2;

pub(super) const CTA_EXPECT_MASTER: u16 = 1;
pub(super) const CTA_EXPECT_TUPLE: u16 = 2;
pub(super) const CTA_EXPECT_MASK: u16 = 3;
pub(super) const CTA_EXPECT_TIMEOUT: u16 = 4;
pub(super) const CTA_EXPECT_ID: u16 = 5;
pub(super) const CTA_EXPECT_HELP_NAME: u16 = 6;
pub(super) const CTA_EXPECT_ZONE: u16 = 7;
pub(super) const CTA_EXPECT_FLAGS: u16 = 8;
pub(super) const CTA_EXPECT_CLASS: u16 = 9;
pub(super) const CTA_EXPECT_NAT: u16 = 10;
pub(super) const CTA_EXPECT_FN: u16 = 11;
pub(super) const CTA_EXPECT_NAT_DIR: u16 = 1;
pub(super) const CTA_EXPECT_NAT_TUPLE: u16 = 2;

pub(super) const NETLINK_HEADER: usize = 16;
pub(super) const NFGEN_HEADER: usize = 4;
pub(super) const AF_INET: u8 = 2;
pub(super) const AF_INET6: u8 = 10;
