//! The replication wire format: one UDP datagram (or TCP frame) carries a
//! fixed header and a batch of postcard-encoded messages.
//!
//! ```text
//!  0       1       2       3       4       5       6       7
//! +-------+-------+-------+-------+-------+-------+-------+-------+
//! |  'c'  |  'T'  |version| flags |          session (u32)        |
//! +-------+-------+-------+-------+-------+-------+-------+-------+
//! |        first seq (u32)        |  body length  |  body …       |
//! +-------+-------+-------+-------+-------+-------+---------------+
//! | body: postcard Msg, Msg, …  | [auth tag, 16 bytes, if AUTH]   |
//! +-----------------------------+---------------------------------+
//! ```
//!
//! All header fields are big-endian. The header is read by hand (never by
//! postcard), so the version is checked before anything else.
//!
//! * `session`: random per daemon start. A new session from a peer means
//!   the peer restarted (conntrackd's HELLO), whatever its flags say.
//! * `first seq`: the sequence number of the first *data* message in the
//!   body; each further data message is one more. Control messages (ACK,
//!   NACK, ALIVE) carry no sequence number.
//! * flags: [`flag::HELLO`] (sender has not yet heard our HELLO_BACK),
//!   [`flag::HELLO_BACK`], [`flag::AUTH`] (a 16-byte tag follows the body;
//!   see [`Authenticator`]).
//!
//! Versioning rule: [`VERSION`] changes only if the header changes or an
//! existing message variant changes shape. New message kinds are appended
//! to [`Msg`]; a receiver counts an unknown kind as malformed and drops
//! the rest of that datagram.
//!
//! Pure: encoding goes into caller-owned buffers; decoding never panics.

mod msg;
mod seq;
mod stored;

pub use msg::{
    CtKey, ExpKey, Msg, WireCt, WireExp, ct_key_of, exp_key_of, from_wire_ct,
    from_wire_exp, to_wire_ct, to_wire_exp,
};
pub use seq::Seq;

use std::fmt;

/// The first two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"cT";
/// This build's wire version.
pub const VERSION: u8 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 14;
/// Authentication tag size in bytes.
pub const TAG_LEN: usize = 16;

/// Header flag bits.
pub mod flag {
    /// The sender has (re)started and not yet been answered.
    pub const HELLO: u8 = 0x01;
    /// Answer to a HELLO.
    pub const HELLO_BACK: u8 = 0x02;
    /// A 16-byte authentication tag follows the body.
    pub const AUTH: u8 = 0x04;
}

/// The fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub session: u32,
    pub first_seq: Seq,
}

/// Why a datagram or message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header, or the body is shorter than announced.
    Truncated,
    /// Not our magic.
    BadMagic,
    /// Another protocol version.
    Version(u8),
    /// A message could not be decoded.
    Malformed,
    /// Bytes left after the body.
    TrailingBytes,
    /// The authentication tag is missing or does not verify.
    Auth,
    /// A message does not fit into the datagram buffer.
    TooBig,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated datagram"),
            Error::BadMagic => f.write_str("not a ctsyncd datagram"),
            Error::Version(v) => {
                write!(f, "wire version {v}, this build speaks {VERSION}")
            }
            Error::Malformed => f.write_str("malformed message"),
            Error::TrailingBytes => f.write_str("bytes after the body"),
            Error::Auth => f.write_str("authentication failed"),
            Error::TooBig => f.write_str("message larger than a datagram"),
        }
    }
}

impl std::error::Error for Error {}

/// Computes and checks authentication tags. The protocol only reserves
/// the room; a keyed MAC with replay protection plugs in here.
pub trait Authenticator {
    fn tag(&self, data: &[u8]) -> [u8; TAG_LEN];
    fn verify(&self, data: &[u8], tag: &[u8; TAG_LEN]) -> bool;
}

/// Builds one datagram in a caller-owned buffer.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    data_msgs: u32,
    msgs: u32,
}

impl<'a> Writer<'a> {
    /// Starts a datagram. The buffer's length is the datagram limit
    /// (link MTU minus IP/UDP headers).
    ///
    /// # Errors
    /// [`Error::TooBig`] when the buffer cannot hold a header and a tag.
    pub fn new(buf: &'a mut [u8], header: Header) -> Result<Self, Error> {
        if buf.len() < HEADER_LEN + TAG_LEN + 1 {
            return Err(Error::TooBig);
        }
        buf[0..2].copy_from_slice(&MAGIC);
        buf[2] = VERSION;
        buf[3] = header.flags & !flag::AUTH;
        buf[4..8].copy_from_slice(&header.session.to_be_bytes());
        buf[8..12].copy_from_slice(&header.first_seq.0.to_be_bytes());
        Ok(Writer {
            buf,
            len: HEADER_LEN,
            data_msgs: 0,
            msgs: 0,
        })
    }

    /// Appends a message if it fits (leaving room for a tag).
    ///
    /// # Errors
    /// [`Error::TooBig`]: it does not fit; the datagram is unchanged. The
    /// caller sends what it has and retries in a fresh datagram; if it
    /// does not fit an empty one either, the message can never be sent.
    pub fn push(&mut self, msg: &Msg) -> Result<(), Error> {
        let room = self.buf.len() - TAG_LEN;
        let used = postcard::to_slice(msg, &mut self.buf[self.len..room])
            .map_err(|_| Error::TooBig)?
            .len();
        self.len += used;
        self.msgs += 1;
        if msg.is_data() {
            self.data_msgs += 1;
        }
        Ok(())
    }

    /// Messages pushed so far, and how many of them are data messages.
    pub fn counts(&self) -> (u32, u32) {
        (self.msgs, self.data_msgs)
    }

    /// Finishes the datagram (and its tag) and returns its length.
    pub fn finish(self, auth: Option<&dyn Authenticator>) -> usize {
        let body = (self.len - HEADER_LEN) as u16;
        self.buf[12..14].copy_from_slice(&body.to_be_bytes());
        match auth {
            Some(a) => {
                self.buf[3] |= flag::AUTH;
                let tag = a.tag(&self.buf[..self.len]);
                self.buf[self.len..self.len + TAG_LEN].copy_from_slice(&tag);
                self.len + TAG_LEN
            }
            None => self.len,
        }
    }
}

/// Reads a datagram's header and checks framing (and the tag, when an
/// authenticator is configured: then untagged datagrams are rejected).
/// Returns the header and the body.
pub fn read<'b>(
    datagram: &'b [u8],
    auth: Option<&dyn Authenticator>,
) -> Result<(Header, &'b [u8]), Error> {
    if datagram.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    if datagram[0..2] != MAGIC {
        return Err(Error::BadMagic);
    }
    if datagram[2] != VERSION {
        return Err(Error::Version(datagram[2]));
    }
    let flags = datagram[3];
    let be32 = |i: usize| {
        u32::from_be_bytes([
            datagram[i],
            datagram[i + 1],
            datagram[i + 2],
            datagram[i + 3],
        ])
    };
    let header = Header {
        flags,
        session: be32(4),
        first_seq: Seq(be32(8)),
    };
    let body_len =
        usize::from(u16::from_be_bytes([datagram[12], datagram[13]]));
    let end = HEADER_LEN + body_len;
    let body = datagram.get(HEADER_LEN..end).ok_or(Error::Truncated)?;
    let tagged = flags & flag::AUTH != 0;
    let expected_len = if tagged { end + TAG_LEN } else { end };
    if datagram.len() < expected_len {
        return Err(Error::Truncated);
    }
    if datagram.len() > expected_len {
        return Err(Error::TrailingBytes);
    }
    match (auth, tagged) {
        (Some(a), true) => {
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&datagram[end..end + TAG_LEN]);
            if !a.verify(&datagram[..end], &tag) {
                return Err(Error::Auth);
            }
        }
        (Some(_), false) => return Err(Error::Auth),
        (None, _) => {}
    }
    Ok((header, body))
}

/// Iterates over the messages of a body. Stops at the first malformed
/// message (which it yields as an error): nothing after it can be framed.
pub fn messages(body: &[u8]) -> impl Iterator<Item = Result<Msg, Error>> + '_ {
    let mut rest = body;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        match postcard::take_from_bytes::<Msg>(rest) {
            Ok((msg, tail)) => {
                rest = tail;
                Some(Ok(msg))
            }
            Err(_) => {
                failed = true;
                Some(Err(Error::Malformed))
            }
        }
    })
}

#[cfg(test)]
mod test;
