//! conntrackd 1.4's sync protocol on the wire, sans-IO: framing, the
//! message header and the attribute payloads of conntracks and
//! expectations (facts in the conntrackd reference, §4.2–4.6).
//!
//! Spoken to a conntrackd peer during a rolling upgrade; ctsyncd's own
//! format ([`crate::wire`]) stays the default between two ctsyncd nodes.
//! Datagrams of the two never look alike: ours start with `b"cT"`, whose
//! version nibble (6) conntrackd does not have ([`is_conntrackd`]).
//!
//! * [`messages`] walks one datagram the way conntrackd's receiver does:
//!   a message it would skip (wrong version, bad type, malformed header or
//!   payload) is one `Err` and the walk goes on; a framing error (cut
//!   short, bad size) is one `Err` and the end.
//! * [`stream_message_len`] frames the same messages on a TCP stream.
//! * [`append_mark`] / [`carries_mark`]: ctsyncd's [`MARK`] on the
//!   control messages it sends in conntrackd's protocol (`mark`).
//! * [`encode`] writes one message byte-identical to what an x86
//!   conntrackd 1.4.7 sends for the same state, whatever our host's
//!   endianness: every field is written byte by byte, including the
//!   little-endian quirks of SPAT/DPAT/ICMP_ID (§4.4.4). Two choices
//!   where conntrackd's bytes depend on its history: an UPD always says
//!   the mark, a DEL built from a key leaves out the expectation flags
//!   and class it cannot know (conntrackd keeps what an UPD leaves out,
//!   and finds what a DEL names by what it carries).
//!
//! Pure: no allocation on the decode path, encoding into caller buffers,
//! never panics on any input.

mod attr;
mod ct;
mod exp;
mod header;
mod mark;

use std::fmt;

use crate::model::{Conntrack, Expect};
use header::{Frame, Raw, TYPE_CTL, TYPE_DATA_MAX};
pub use mark::{MARK, append as append_mark, carries_mark};

/// `CONNTRACKD_PROTOCOL_VERSION`.
pub const VERSION: u8 = 1;
/// `struct nethdr`.
pub const HEADER_LEN: usize = 8;
/// `struct nethdr_ack`: ACK, NACK and RESYNC.
pub const CTL_LEN: usize = 16;

/// Header flag bits (`NET_F_*`).
pub mod flag {
    pub const RESYNC: u8 = 0x02;
    pub const NACK: u8 = 0x04;
    pub const ACK: u8 = 0x08;
    pub const ALIVE: u8 = 0x10;
    pub const HELLO: u8 = 0x20;
    pub const HELLO_BACK: u8 = 0x40;
}

/// How NTA_SNAT_IPV4/NTA_DNAT_IPV4 are laid out (§4.4.4): 1.4.7 sends
/// network order; 1.4.2 on x86 sends the address byte-reversed. With
/// `V142` the IPv6 NAT attributes (29, 30), which 1.4.2 cannot parse, are
/// neither sent nor read, nor is a conntrack's zone (32, which 1.4.2
/// refuses the whole message for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatByteOrder {
    #[default]
    V147,
    V142,
}

/// Per-peer choices of the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub nat_order: NatByteOrder,
    /// Send NTA_TIMEOUT / NTA_EXP_TIMEOUT; false when this node has
    /// `CommitTimeout` (conntrackd then leaves it out).
    pub send_timeout: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nat_order: NatByteOrder::V147,
            send_timeout: true,
        }
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    CtNew(Conntrack),
    CtUpd(Conntrack),
    CtDel(Conntrack),
    ExpNew(Expect),
    ExpUpd(Expect),
    ExpDel(Expect),
    /// "I received all your messages from `from` to `to`" (inclusive).
    Ack {
        from: u32,
        to: u32,
    },
    /// "Send again from `from` to `to`".
    Nack {
        from: u32,
        to: u32,
    },
    /// "Send me your whole internal cache".
    Resync,
    /// Keep-alive.
    Alive,
}

impl Body {
    /// A conntrack or an expectation (not a control message).
    pub fn is_data(&self) -> bool {
        !matches!(
            self,
            Body::Ack { .. } | Body::Nack { .. } | Body::Resync | Body::Alive
        )
    }
}

/// One conntrackd message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub seq: u32,
    /// NET_F_HELLO: the sender (re)started and waits for a HELLO_BACK.
    pub hello: bool,
    /// NET_F_HELLO_BACK: the answer to a HELLO.
    pub hello_back: bool,
    pub body: Body,
}

/// Why a message (or the rest of a datagram) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than a header (or a ranged control message) needs.
    Truncated,
    /// A length of 0, shorter than its kind, or past the end.
    BadSize,
    /// Not protocol version 1.
    Version(u8),
    /// A message type conntrackd does not know (its FT-FW and NOTRACK
    /// receivers count these under "Malformed header": only a DATA type
    /// reaches their type check).
    BadType(u8),
    /// Flags that make no message: a data type with control flags, a
    /// control message without a control flag.
    BadHeader,
    /// A payload conntrackd would refuse (§4.4.3).
    Malformed,
    /// The message does not fit the output buffer (or 65535 bytes).
    TooBig,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // conntrackd's `-s network` counter names.
        match self {
            Error::Truncated => f.write_str("Truncated message"),
            Error::BadSize => f.write_str("Bad message size"),
            Error::Version(v) => write!(f, "Wrong protocol version ({v})"),
            Error::BadType(t) => write!(f, "Bad message type ({t})"),
            Error::BadHeader => f.write_str("Malformed header"),
            Error::Malformed => f.write_str("Malformed payload"),
            Error::TooBig => f.write_str("message too big for the buffer"),
        }
    }
}

impl std::error::Error for Error {}

/// A cheap sniff: does the datagram start with a plausible conntrackd
/// header (version 1, a known type, a length from 8 to the datagram's)?
/// ctsyncd's own datagrams (`b"cT"`, version nibble 6) never match.
pub fn is_conntrackd(datagram: &[u8]) -> bool {
    Raw::read(datagram).is_some_and(|h| {
        h.version == VERSION
            && (h.kind <= TYPE_DATA_MAX || h.kind == TYPE_CTL)
            && (HEADER_LEN..=datagram.len()).contains(&h.len)
    })
}

/// The messages of one datagram, in order (see the module header for
/// which errors end the walk).
pub fn messages(datagram: &[u8], opts: Options) -> Messages<'_> {
    Messages {
        rest: datagram,
        opts,
        unreadable: None,
    }
}

/// Iterator returned by [`messages`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
    opts: Options,
    unreadable: Option<Unreadable>,
}

/// A data message whose header was sound but whose payload did not
/// decode: its number and flags, which conntrackd tracks before it
/// decodes the payload (and then drops the payload only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable {
    pub seq: u32,
    pub hello: bool,
    pub hello_back: bool,
}

impl Messages<'_> {
    /// After an `Err`: the refused message's number and flags when only
    /// its payload was at fault (see [`Unreadable`]), else None.
    pub fn unreadable(&self) -> Option<Unreadable> {
        self.unreadable
    }
}

impl Iterator for Messages<'_> {
    type Item = Result<Message, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match header::frame(self.rest) {
            Frame::End => None,
            Frame::Short(e) | Frame::Broken(e) => {
                self.rest = &[];
                // Its header is what is at fault: no number to track (and
                // not the one of a message refused before it).
                self.unreadable = None;
                Some(Err(e))
            }
            Frame::Message(h) => {
                let (msg, rest) = self.rest.split_at(h.len);
                self.rest = rest;
                let header_sound = h.version == VERSION
                    && h.kind <= TYPE_DATA_MAX
                    && h.flags & !(flag::HELLO | flag::HELLO_BACK) == 0;
                let r = decode_one(h, msg, self.opts);
                self.unreadable =
                    (r.is_err() && header_sound).then_some(Unreadable {
                        seq: h.seq,
                        hello: h.flags & flag::HELLO != 0,
                        hello_back: h.flags & flag::HELLO_BACK != 0,
                    });
                Some(r)
            }
        }
    }
}

/// TCP framing: `None` = need more bytes; `Some(Ok(n))` = a whole
/// message of `n` bytes at the front of `buf`; `Some(Err)` = the stream
/// cannot be framed (conntrackd would drop what it has).
pub fn stream_message_len(buf: &[u8]) -> Option<Result<usize, Error>> {
    match header::frame(buf) {
        Frame::End | Frame::Short(_) => None,
        Frame::Broken(e) => Some(Err(e)),
        Frame::Message(h) => Some(Ok(h.len)),
    }
}

/// Decodes one framed message (`msg` is exactly `h.len` bytes).
fn decode_one(h: Raw, msg: &[u8], opts: Options) -> Result<Message, Error> {
    if h.version != VERSION {
        return Err(Error::Version(h.version));
    }
    let hello = h.flags & flag::HELLO != 0;
    let hello_back = h.flags & flag::HELLO_BACK != 0;
    let control = h.flags & !(flag::HELLO | flag::HELLO_BACK);
    let body = match h.kind {
        0..=TYPE_DATA_MAX if control != 0 => return Err(Error::BadHeader),
        0..=TYPE_DATA_MAX => {
            let payload = &msg[HEADER_LEN..];
            match h.kind {
                0 => Body::CtNew(ct::decode(payload, opts)?),
                1 => Body::CtUpd(ct::decode(payload, opts)?),
                2 => Body::CtDel(ct::decode(payload, opts)?),
                3 => Body::ExpNew(exp::decode(payload)?),
                4 => Body::ExpUpd(exp::decode(payload)?),
                _ => Body::ExpDel(exp::decode(payload)?),
            }
        }
        TYPE_CTL => {
            // framing made sure ranged messages have their 16 bytes.
            let range = || {
                let w = |i: usize| {
                    u32::from_be_bytes([
                        msg[i],
                        msg[i + 1],
                        msg[i + 2],
                        msg[i + 3],
                    ])
                };
                (w(8), w(12))
            };
            // conntrackd tests the bits in this order.
            if control & flag::ACK != 0 {
                let (from, to) = range();
                Body::Ack { from, to }
            } else if control & flag::NACK != 0 {
                let (from, to) = range();
                Body::Nack { from, to }
            } else if control & flag::RESYNC != 0 {
                Body::Resync
            } else if control & flag::ALIVE != 0 {
                Body::Alive
            } else {
                return Err(Error::BadHeader);
            }
        }
        other => return Err(Error::BadType(other)),
    };
    Ok(Message {
        seq: h.seq,
        hello,
        hello_back,
        body,
    })
}

/// Encodes one message into the front of `out` and returns its length
/// (a multiple of 4). A DEL carries the full description, as conntrackd
/// sends it; a conntrack built from only its key (original tuple and zone)
/// is enough for conntrackd to find the entry.
///
/// # Errors
/// [`Error::TooBig`] when `out` is too small (or the message would pass
/// 65535 bytes).
pub fn encode(
    msg: &Message,
    opts: Options,
    out: &mut [u8],
) -> Result<usize, Error> {
    let mut flags = 0;
    if msg.hello {
        flags |= flag::HELLO;
    }
    if msg.hello_back {
        flags |= flag::HELLO_BACK;
    }
    let (kind, range) = match &msg.body {
        Body::CtNew(_) => (0, None),
        Body::CtUpd(_) => (1, None),
        Body::CtDel(_) => (2, None),
        Body::ExpNew(_) => (3, None),
        Body::ExpUpd(_) => (4, None),
        Body::ExpDel(_) => (5, None),
        Body::Ack { from, to } => {
            flags |= flag::ACK;
            (TYPE_CTL, Some((*from, *to)))
        }
        Body::Nack { from, to } => {
            flags |= flag::NACK;
            (TYPE_CTL, Some((*from, *to)))
        }
        Body::Resync => {
            flags |= flag::RESYNC;
            (TYPE_CTL, Some((0, 0)))
        }
        Body::Alive => {
            flags |= flag::ALIVE;
            (TYPE_CTL, None)
        }
    };
    let len = if kind == TYPE_CTL {
        let len = if range.is_some() { CTL_LEN } else { HEADER_LEN };
        let at = out.get_mut(..len).ok_or(Error::TooBig)?;
        if let Some((from, to)) = range {
            at[8..12].copy_from_slice(&from.to_be_bytes());
            at[12..16].copy_from_slice(&to.to_be_bytes());
        }
        len
    } else {
        let mut w = attr::Writer::new(out, HEADER_LEN);
        match &msg.body {
            Body::CtNew(c) | Body::CtDel(c) => {
                ct::encode(c, opts, false, &mut w)
            }
            Body::CtUpd(c) => ct::encode(c, opts, true, &mut w),
            Body::ExpNew(x) | Body::ExpUpd(x) => {
                exp::encode(x, opts.send_timeout, false, &mut w)
            }
            Body::ExpDel(x) => exp::encode(x, opts.send_timeout, true, &mut w),
            _ => {}
        }
        w.finish()?
    };
    if len > usize::from(u16::MAX) {
        return Err(Error::TooBig);
    }
    header::write(out, kind, flags, len, msg.seq);
    Ok(len)
}

#[cfg(test)]
mod test;
