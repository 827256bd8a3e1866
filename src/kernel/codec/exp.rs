//! Expectations: decoding one, and the create and delete requests
//! (netlink-packet-netfilter has no expectation subsystem, so all of it
//! is written here with the kernel's attribute names).

use std::net::{IpAddr, Ipv4Addr};

use super::attr::{be16, be32, name, nlas};
use super::ct_decode::decode_tuple;
use super::encoder::{Encoder, family};
use super::message::{DecodeError, Result};
use super::uapi::*;
use crate::model::{Expect, ExpectNat, L4, Tuple};

/// Decodes the attributes of an expectation message.
pub(super) fn decode_exp(attrs: &[u8]) -> Result<Expect> {
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

/// Appends a request that creates an expectation.
pub(crate) fn encode_exp_create(buf: &mut Vec<u8>, x: &Expect, seq: u32) {
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
pub(crate) fn encode_exp_delete(buf: &mut Vec<u8>, x: &Expect, seq: u32) {
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

/// Appends a request that deletes every expectation of the network
/// namespace (ctnetlink's expectation delete without a tuple). The kernel
/// reports no zone in an expectation, so one read from a dump and deleted
/// by its tuple is looked for in zone 0: those of masters in other zones
/// are only reached this way.
pub(crate) fn encode_exp_flush(buf: &mut Vec<u8>, seq: u32) {
    let mut e = Encoder::new(buf);
    let at = e.begin_msg(
        NFNL_SUBSYS_CTNETLINK_EXP,
        IPCTNL_MSG_EXP_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        0,
    );
    e.finish_msg(at);
}
