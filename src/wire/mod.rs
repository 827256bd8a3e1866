//! The replication wire format: one UDP datagram (or TCP frame) carries a
//! fixed header and a batch of postcard-encoded messages.
//!
//! The header's layout lives with [`Packet`], the view that reader, writer
//! and TCP framing all read it through; nothing else knows its offsets.
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
//!   [`flag::HELLO_BACK`].
//!
//! Versioning rule: [`VERSION`] changes only if the header changes or an
//! existing message variant changes shape. New message kinds are appended
//! to [`Msg`]; a receiver counts an unknown kind as malformed and drops
//! the rest of that datagram, so a kind that an older build cannot do
//! without is sent only to a peer whose header flags say it reads it (a
//! capability bit, such as [`flag::PRUNE_FOR`]).
//!
//! Sealed datagrams ([`seal`], with `AuthenticationKeyFile`) are another
//! framing (a nonce and a tag after an encrypted body), so they carry their
//! own version number, [`SEALED_VERSION`]; plain datagrams keep
//! [`VERSION`], byte for byte, so an unkeyed pair still upgrades one node
//! at a time. A build that predates sealing refuses a sealed datagram at
//! the version check, before it could misframe it or read ciphertext as
//! messages. A node with a key accepts sealed datagrams only.
//!
//! Pure: encoding goes into caller-owned buffers; decoding never panics.

pub mod ctd;
mod digest;
mod header;
mod msg;
pub mod replay;
pub mod seal;
mod seq;

pub use digest::{
    FANOUT, KEEP_MAX, KeyHashes, PRUNE_FIXED_MAX, SUMS_MAX_LEN, Sums, Table,
    prune_keep_max,
};
pub use header::{HEADER_LEN, Header, Packet};
pub use msg::{
    CtKey, ExpKey, Msg, Prune, WireCt, WireExp, ct_key_of, exp_key_of,
    from_wire_ct, from_wire_exp, to_wire_ct, to_wire_exp,
};
pub use seq::Seq;

use std::fmt;

/// The first two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"cT";
/// This build's wire version (plain datagrams).
pub const VERSION: u8 = 1;
/// The version byte of a sealed datagram (see [`seal`]).
pub const SEALED_VERSION: u8 = 2;
/// Authentication tag size in bytes.
pub const TAG_LEN: usize = 16;

/// Header flag bits.
pub mod flag {
    /// The sender has (re)started and not yet been answered.
    pub const HELLO: u8 = 0x01;
    /// Answer to a HELLO.
    pub const HELLO_BACK: u8 = 0x02;
    // 0x04 was AUTH, a tag hook only tests ever set; sealing replaced it
    // (a version of its own). Left unused so no old capture means anything.
    /// The sender reads [`super::Msg::PruneFor`]: its Prunes may name the
    /// DigestSub they answer. A capability, on every datagram of a build
    /// that has it; a build without it ignores the bit (flags it does not
    /// know mean nothing to it), and is sent the plain `Prune` it reads.
    pub const PRUNE_FOR: u8 = 0x08;
    /// The sender reads [`super::Msg::DigestSubFor`] (and so `PruneFor`):
    /// a capability like [`PRUNE_FOR`], for the asks that name themselves.
    pub const DIGEST_SUB_FOR: u8 = 0x10;
}

/// Why a datagram or message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header, or the body is shorter than announced.
    Truncated,
    /// Not our magic.
    BadMagic,
    /// Another protocol version ([`SEALED_VERSION`] read without a key:
    /// the peer seals).
    Version(u8),
    /// A message could not be decoded.
    Malformed,
    /// Bytes left after the body.
    TrailingBytes,
    /// No key opens the sealed datagram (wrong key, or altered).
    Auth,
    /// A message does not fit into the datagram buffer.
    TooBig,
    /// A sealed datagram already seen, or older than the anti-replay
    /// window.
    Replayed,
    /// Not sealed, and a key is set: a plain ctsyncd datagram, or
    /// another protocol's (conntrackd's cannot be authenticated).
    Unsealed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated datagram"),
            Error::BadMagic => f.write_str("not a ctsyncd datagram"),
            Error::Version(SEALED_VERSION) => {
                f.write_str("sealed datagram, and no key is set")
            }
            Error::Version(v) => {
                write!(f, "wire version {v}, this build speaks {VERSION}")
            }
            Error::Malformed => f.write_str("malformed message"),
            Error::TrailingBytes => f.write_str("bytes after the body"),
            Error::Auth => f.write_str("authentication failed"),
            Error::TooBig => f.write_str("message larger than a datagram"),
            Error::Replayed => f.write_str("replayed datagram"),
            Error::Unsealed => {
                f.write_str("datagram not sealed, and a key is set")
            }
        }
    }
}

impl std::error::Error for Error {}

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
    /// [`Error::TooBig`] when the buffer cannot hold a header and a
    /// message. (A sealing caller leaves [`seal::SEAL_OVERHEAD`] bytes
    /// out of `buf`.)
    pub fn new(buf: &'a mut [u8], header: Header) -> Result<Self, Error> {
        if buf.len() < HEADER_LEN + 1 {
            return Err(Error::TooBig);
        }
        let mut packet = Packet::new_unchecked(&mut *buf);
        packet.set_magic(MAGIC);
        packet.set_version(VERSION);
        header.emit(&mut packet);
        Ok(Writer {
            buf,
            len: HEADER_LEN,
            data_msgs: 0,
            msgs: 0,
        })
    }

    /// Appends a message if it fits.
    ///
    /// # Errors
    /// [`Error::TooBig`]: it does not fit; the datagram is unchanged. The
    /// caller sends what it has and retries in a fresh datagram; if it
    /// does not fit an empty one either, the message can never be sent.
    pub fn push(&mut self, msg: &Msg) -> Result<(), Error> {
        let used = postcard::to_slice(msg, &mut self.buf[self.len..])
            .map_err(|_| Error::TooBig)?
            .len();
        self.len += used;
        self.msgs += 1;
        if msg.is_data() {
            self.data_msgs += 1;
        }
        Ok(())
    }

    /// Pushes a conntrack or expectation message whose body (the
    /// postcard encoding of its [`WireCt`] or [`WireExp`]) is already
    /// encoded, as a cache holds it: the same bytes [`Writer::push`]
    /// writes for the decoded message, without decoding and re-encoding.
    ///
    /// # Errors
    /// [`Error::TooBig`] when the datagram has no room for it.
    pub fn push_encoded(
        &mut self,
        kind: Encoded,
        body: &[u8],
    ) -> Result<(), Error> {
        let need = 1 + body.len();
        let Some(room) = self.buf.get_mut(self.len..self.len + need) else {
            return Err(Error::TooBig);
        };
        room[0] = kind.tag();
        room[1..].copy_from_slice(body);
        self.len += need;
        self.msgs += 1;
        self.data_msgs += 1;
        Ok(())
    }

    /// Messages pushed so far, and how many of them are data messages.
    pub fn counts(&self) -> (u32, u32) {
        (self.msgs, self.data_msgs)
    }

    /// Finishes the datagram and returns its length.
    pub fn finish(self) -> usize {
        // The buffer is at most 65535 bytes past the header (a datagram).
        let body = (self.len - HEADER_LEN) as u16;
        Packet::new_unchecked(&mut *self.buf).set_body_len(body);
        self.len
    }
}

/// The data messages [`Writer::push_encoded`] writes from encoded bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    CtNew,
    CtUpd,
    ExpNew,
    ExpUpd,
}

impl Encoded {
    /// The message's variant number as postcard writes it (one byte:
    /// [`Msg`] has fewer than 128 variants), its place in [`Msg`]; the
    /// wire tests check it against `push`.
    fn tag(self) -> u8 {
        match self {
            Encoded::CtNew => 0,
            Encoded::CtUpd => 1,
            Encoded::ExpNew => 3,
            Encoded::ExpUpd => 4,
        }
    }
}

/// Reads a plain datagram's header and checks framing (a sealed one is
/// first opened by [`seal::Sealer::open`]). Returns the header and the
/// body.
pub fn read(datagram: &[u8]) -> Result<(Header, &[u8]), Error> {
    let packet = Packet::new_unchecked(datagram);
    packet.check_header_len()?;
    // Magic and version before the lengths: another version may frame
    // its datagrams differently.
    if packet.magic() != MAGIC {
        return Err(Error::BadMagic);
    }
    if packet.version() != VERSION {
        return Err(Error::Version(packet.version()));
    }
    packet.check_len()?;
    Ok((Header::parse(&packet), packet.into_body()))
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
