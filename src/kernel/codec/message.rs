//! Receiving: the decoded message types, [`DecodeError`], and the walk over
//! one receive buffer that reads each netlink header (ACK/error, DONE,
//! nfgenmsg) and hands the attributes to the conntrack or expectation
//! decoder. A malformed message is an error, never a panic.

use std::fmt;

use netlink_packet_core::NetlinkBuffer;

use super::attr::align4;
use super::ct_decode::decode_ct;
use super::exp::decode_exp;
use super::uapi::*;
use crate::model::{Conntrack, Expect};

/// What a ctnetlink message announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    New,
    Update,
    Destroy,
}

/// The object a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Ct(Conntrack),
    Exp(Expect),
}

/// One decoded ctnetlink message (event or dump reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub object: Object,
    /// The sender's netlink port id: identifies events our own sockets
    /// caused (origin tracking).
    pub port: u32,
    pub seq: u32,
}

/// Any netlink message in a receive buffer.
// Decoded one at a time on the stack and moved into a cache; boxing the
// large variant would allocate once per kernel event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Msg(Message),
    /// `NLMSG_ERROR`: errno 0 is an acknowledgement.
    Ack {
        seq: u32,
        errno: i32,
    },
    /// `NLMSG_DONE`: a dump's end. `errno` (positive, 0 for none) is the
    /// error the kernel's dump ended with (the int the message carries:
    /// `netlink_dump` puts the dump callback's result there), so a dump
    /// that stopped early on an error is not taken for a whole table.
    Done {
        seq: u32,
        errno: i32,
    },
    /// A message type we do not handle (counted by the caller).
    Other {
        msg_type: u16,
    },
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    /// A required attribute is missing.
    Missing(&'static str),
    /// An attribute has the wrong size or an impossible value.
    Bad(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated netlink message"),
            DecodeError::Missing(a) => write!(f, "missing attribute {a}"),
            DecodeError::Bad(a) => write!(f, "malformed attribute {a}"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub(super) type Result<T> = std::result::Result<T, DecodeError>;

/// Iterates over the netlink messages of one receive buffer.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Received>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let nl = match NetlinkBuffer::new_checked(&buf[at..]) {
            Ok(nl) => nl,
            Err(_) => {
                at = buf.len();
                return Some(Err(DecodeError::Truncated));
            }
        };
        let len = nl.length() as usize;
        at += align4(len.max(NETLINK_HEADER));
        Some(decode_one(&nl))
    })
}

fn decode_one(nl: &NetlinkBuffer<&[u8]>) -> Result<Received> {
    let msg_type = nl.message_type();
    let seq = nl.sequence_number();
    let payload = nl.payload();
    match msg_type {
        NLMSG_ERROR => {
            let errno = payload
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(DecodeError::Truncated)?;
            // The echoed request header carries the failed request's seq.
            let seq = payload
                .get(12..16)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(seq);
            // A hostile i32::MIN must not overflow.
            return Ok(Received::Ack {
                seq,
                errno: errno.saturating_neg(),
            });
        }
        NLMSG_DONE => {
            // Before Linux 4.14 the payload could be absent or garbage
            // (no error then); only a negative int is an error.
            let errno = payload
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .filter(|&e| e < 0)
                .map_or(0, i32::saturating_neg);
            return Ok(Received::Done { seq, errno });
        }
        _ => {}
    }
    let (subsys, op) = ((msg_type >> 8) as u8, msg_type as u8);
    let attrs = payload.get(NFGEN_HEADER..).ok_or(DecodeError::Truncated)?;
    let flags = nl.flags();
    let kind = match op {
        IPCTNL_MSG_CT_NEW if flags & (NLM_F_CREATE | NLM_F_EXCL) != 0 => {
            Kind::New
        }
        IPCTNL_MSG_CT_NEW => Kind::Update,
        IPCTNL_MSG_CT_DELETE => Kind::Destroy,
        _ => return Ok(Received::Other { msg_type }),
    };
    let object = match subsys {
        NFNL_SUBSYS_CTNETLINK => Object::Ct(decode_ct(attrs)?),
        NFNL_SUBSYS_CTNETLINK_EXP => Object::Exp(decode_exp(attrs)?),
        _ => return Ok(Received::Other { msg_type }),
    };
    Ok(Received::Msg(Message {
        kind,
        object,
        port: nl.port_number(),
        seq,
    }))
}
