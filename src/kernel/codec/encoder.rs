//! Writing: [`Encoder`] appends netlink + nfgenmsg headers and (nested)
//! attributes to a caller-owned `Vec` that is reused across requests, so
//! many requests can be batched into one `sendmsg`. The tuple and NAT
//! nests are here because conntrack and expectation requests share them.

use std::net::IpAddr;

use netlink_packet_core::Emitable;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterProtoFamily};

use super::attr::align4;
use super::uapi::*;
use crate::model::{L4, Tuple};

/// Appends netlink messages and attributes to a caller-owned buffer.
pub(super) struct Encoder<'a> {
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

    pub(super) fn put(&mut self, kind: u16, value: &[u8]) {
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    pub(super) fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub(super) fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    pub(super) fn put_u8(&mut self, kind: u16, v: u8) {
        self.put(kind, &[v]);
    }

    pub(super) fn put_be16(&mut self, kind: u16, v: u16) {
        self.put(kind, &v.to_be_bytes());
    }

    pub(super) fn put_be32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_be_bytes());
    }

    pub(super) fn put_str(&mut self, kind: u16, s: &str) {
        let mut v = [0u8; 64];
        let n = s.len().min(63);
        v[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.put(kind, &v[..=n]);
    }

    pub(super) fn put_ip(&mut self, v4: u16, v6: u16, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.put(v4, &a.octets()),
            IpAddr::V6(a) => self.put(v6, &a.octets()),
        }
    }

    pub(super) fn tuple(&mut self, kind: u16, t: &Tuple) {
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

    pub(super) fn nat(&mut self, kind: u16, addr: IpAddr, port: Option<u16>) {
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

pub(super) fn family(t: &Tuple) -> u8 {
    if t.src.is_ipv4() { AF_INET } else { AF_INET6 }
}
