//! ctnetlink messages ⇄ [`Conntrack`] / [`Expect`].
//!
//! Owns: the attribute numbers (named after the kernel's `CTA_*` /
//! `CTA_EXPECT_*`, include/uapi/linux/netfilter/nfnetlink_conntrack.h), the
//! decoding of events and dump replies, and the encoding of requests.
//!
//! Requests use netlink-packet-netfilter's types where they exist (the
//! nfgenmsg header, the conntrack dump); what it lacks (expectations, NAT,
//! helper, zone, labels, seq-adj, SCTP/DCCP protoinfo) is encoded here with
//! the kernel's attribute names. Decoding walks the netlink buffer with slice views
//! (`attr::nlas`): no `Vec` per attribute, nothing allocated for an
//! event. Unknown attributes are skipped, malformed ones are an error,
//! never a panic. Encoding appends to a caller-owned `Vec` that is reused
//! across requests, so many requests can be batched into one `sendmsg`.
//! Pure: no sockets.
//!
//! Layout: `uapi` holds the kernel's numbers; `message` the received
//! message types and the walk over a receive buffer; `attr` the attribute
//! readers; `ct_decode` and `exp` the object decoders; `encoder` the
//! header and attribute writer; `ct_encode`, `exp` and `dump` the requests.
//!
//! [`Conntrack`]: crate::model::Conntrack
//! [`Expect`]: crate::model::Expect

mod attr;
mod ct_decode;
mod ct_encode;
mod dump;
mod encoder;
mod exp;
mod message;
mod uapi;

pub use ct_encode::{
    encode_ct_create, encode_ct_delete, encode_ct_delete_by_reply,
    encode_ct_get, encode_ct_update,
};
pub(crate) use dump::{encode_dump, encode_exp_dump_of};
pub(crate) use exp::{encode_exp_create, encode_exp_delete, encode_exp_flush};
pub use message::{DecodeError, Kind, Message, Object, Received, messages};
pub use uapi::*;

// What test.rs reaches through `use super::*` besides the items above.
#[cfg(test)]
use {
    crate::model::{Conntrack, Expect, ExpectNat, L4, ProtoInfo, Tuple},
    attr::nlas,
    encoder::Encoder,
};

#[cfg(test)]
mod test;
