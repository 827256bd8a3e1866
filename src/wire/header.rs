//! The datagram header as a zero-copy view ([`Packet`]) and as plain data
//! ([`Header`]). This is the only place that knows the header's offsets:
//! the reader, the writer and the TCP framing all go through [`Packet`].
//!
//! ```text
//!  0       1       2       3       4       5       6       7
//! +-------+-------+-------+-------+-------+-------+-------+-------+
//! |  'c'  |  'T'  |version| flags |          session (u32)        |
//! +-------+-------+-------+-------+-------+-------+-------+-------+
//! |        first seq (u32)        | body length   |  body …       |
//! +-------+-------+-------+-------+-------+-------+---------------+
//! | … body                        | [nonce and tag, 40 bytes, if  |
//! |                               |  version 2: sealed; see seal] |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! Contract (smoltcp's): once [`Packet::check_header_len`] has passed, no
//! header accessor panics; once [`Packet::check_len`] has passed, neither
//! do [`Packet::body`] and [`Packet::trailer`]. Setters assume a buffer at
//! least [`HEADER_LEN`] long (the writer checks that).

use super::seal::SEAL_OVERHEAD;
use super::{Error, SEALED_VERSION, Seq};

/// Header size in bytes.
pub const HEADER_LEN: usize = field::BODY_LEN.end;

mod field {
    /// A byte range of the header.
    pub(super) type Field = core::ops::Range<usize>;

    pub(super) const MAGIC: Field = 0..2;
    pub(super) const VERSION: usize = 2;
    pub(super) const FLAGS: usize = 3;
    pub(super) const SESSION: Field = 4..8;
    pub(super) const FIRST_SEQ: Field = 8..12;
    pub(super) const BODY_LEN: Field = 12..14;
}

/// A datagram (or TCP frame) read or written in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking anything.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer holding exactly one whole datagram.
    ///
    /// # Errors
    /// As [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header fits; then its accessors cannot panic.
    ///
    /// # Errors
    /// [`Error::Truncated`] when the buffer is shorter than a header.
    pub fn check_header_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Checks that the buffer is exactly the datagram its header
    /// announces (header, body and, when sealed, nonce and tag).
    ///
    /// # Errors
    /// [`Error::Truncated`] when it is shorter, [`Error::TrailingBytes`]
    /// when it is longer.
    pub fn check_len(&self) -> Result<(), Error> {
        self.check_header_len()?;
        let len = self.buffer.as_ref().len();
        let total = self.total_len();
        if len < total {
            return Err(Error::Truncated);
        }
        if len > total {
            return Err(Error::TrailingBytes);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn magic(&self) -> [u8; 2] {
        let b = self.buffer.as_ref();
        [b[field::MAGIC.start], b[field::MAGIC.start + 1]]
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn session(&self) -> u32 {
        self.be32(field::SESSION)
    }

    pub fn first_seq(&self) -> Seq {
        Seq(self.be32(field::FIRST_SEQ))
    }

    /// Length of the body (the messages), without header and tag.
    pub fn body_len(&self) -> usize {
        let b = &self.buffer.as_ref()[field::BODY_LEN];
        usize::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Length of the whole datagram as the header announces it.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.body_len() + self.trailer_len()
    }

    /// The messages.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.body_end()]
    }

    /// What follows the body: a sealed datagram's nonce and tag (empty
    /// for a plain one).
    pub fn trailer(&self) -> &[u8] {
        let end = self.body_end();
        &self.buffer.as_ref()[end..end + self.trailer_len()]
    }

    fn body_end(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// Sealing is a framing of its own, so the version says it (the
    /// flags belong to the protocol inside).
    fn trailer_len(&self) -> usize {
        if self.version() == SEALED_VERSION {
            SEAL_OVERHEAD
        } else {
            0
        }
    }

    fn be32(&self, f: field::Field) -> u32 {
        let b = &self.buffer.as_ref()[f];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_magic(&mut self, magic: [u8; 2]) {
        self.buffer.as_mut()[field::MAGIC].copy_from_slice(&magic);
    }

    pub fn set_version(&mut self, version: u8) {
        self.buffer.as_mut()[field::VERSION] = version;
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    pub fn set_session(&mut self, session: u32) {
        self.buffer.as_mut()[field::SESSION]
            .copy_from_slice(&session.to_be_bytes());
    }

    pub fn set_first_seq(&mut self, seq: Seq) {
        self.buffer.as_mut()[field::FIRST_SEQ]
            .copy_from_slice(&seq.0.to_be_bytes());
    }

    pub fn set_body_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::BODY_LEN]
            .copy_from_slice(&len.to_be_bytes());
    }

    /// Everything after the header: where the body (and tag) go.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The messages, borrowed for as long as the datagram is.
    ///
    /// # Panics
    /// Unless [`Packet::check_len`] has passed.
    pub fn into_body(self) -> &'a [u8] {
        &self.buffer[HEADER_LEN..self.body_end()]
    }
}

/// The header fields a sender chooses (magic, version and body length are
/// the writer's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub session: u32,
    pub first_seq: Seq,
}

impl Header {
    /// Reads the fields of a header-checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Header {
        Header {
            flags: packet.flags(),
            session: packet.session(),
            first_seq: packet.first_seq(),
        }
    }

    /// Writes the fields into a packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(self.flags);
        packet.set_session(self.session);
        packet.set_first_seq(self.first_seq);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    static HEADER_BYTES: [u8; 17] = [
        b'c', b'T', 2, 0x01, 0, 0, 0x01, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 3, 7,
        8, 9,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_unchecked(&HEADER_BYTES[..]);
        assert_eq!(p.magic(), *b"cT");
        assert_eq!(p.version(), 2);
        assert_eq!(p.flags(), 0x01);
        assert_eq!(p.session(), 0x0102);
        assert_eq!(p.first_seq(), Seq(u32::MAX));
        assert_eq!(p.body_len(), 3);
        assert_eq!(p.total_len(), 3 + HEADER_LEN + SEAL_OVERHEAD, "sealed");
        assert_eq!(p.check_len(), Err(Error::Truncated));
        let mut plain = HEADER_BYTES;
        plain[2] = 1;
        let p = Packet::new_checked(&plain[..]).unwrap();
        assert_eq!(p.body(), [7, 8, 9]);
        assert!(p.trailer().is_empty());
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 17];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_magic(*b"cT");
        p.set_version(2);
        Header {
            flags: 0x01,
            session: 0x0102,
            first_seq: Seq(u32::MAX),
        }
        .emit(&mut p);
        p.set_body_len(3);
        p.payload_mut().copy_from_slice(&[7, 8, 9]);
        assert_eq!(buf, HEADER_BYTES);
    }

    #[test]
    fn lengths_are_checked() {
        assert_eq!(
            Packet::new_checked(&HEADER_BYTES[..5]),
            Err(Error::Truncated)
        );
        let mut long = HEADER_BYTES.to_vec();
        long[2] = 1;
        long.push(0);
        assert_eq!(Packet::new_checked(&long[..]), Err(Error::TrailingBytes));
        assert!(Packet::new_checked(&long[..17]).is_ok());
    }
}
