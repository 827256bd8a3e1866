//! conntrackd's message header (`struct nethdr`, reference §4.2) and the
//! framing rules its receiver applies before looking at a payload (§4.6).
//!
//! ```text
//! byte 0: version << 4 | type   byte 1: flags   bytes 2-3: len (BE)
//! bytes 4-7: seq (BE)           ACK/NACK/RESYNC: from, to (BE u32)
//! ```

use super::{CTL_LEN, Error, HEADER_LEN, flag};

/// `NET_T_CTL`: control messages (ACK, NACK, RESYNC, ALIVE).
pub(super) const TYPE_CTL: u8 = 10;
/// `NET_T_STATE_EXP_DEL`: the last data message type.
pub(super) const TYPE_DATA_MAX: u8 = 5;

/// A header as read from the wire, before any check.
#[derive(Debug, Clone, Copy)]
pub(super) struct Raw {
    pub version: u8,
    pub kind: u8,
    pub flags: u8,
    pub len: usize,
    pub seq: u32,
}

impl Raw {
    /// Reads the first 8 bytes; `None` when there are fewer.
    pub(super) fn read(buf: &[u8]) -> Option<Raw> {
        let h = buf.get(..HEADER_LEN)?;
        Some(Raw {
            version: h[0] >> 4,
            kind: h[0] & 0x0f,
            flags: h[1],
            len: usize::from(u16::from_be_bytes([h[2], h[3]])),
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        })
    }

    /// ACK, NACK and RESYNC carry a sequence range: 16 bytes.
    pub(super) fn has_range(&self) -> bool {
        self.kind == TYPE_CTL
            && self.flags & (flag::ACK | flag::NACK | flag::RESYNC) != 0
    }

    /// The smallest `len` this header may announce.
    fn min_len(&self) -> usize {
        if self.has_range() {
            CTL_LEN
        } else {
            HEADER_LEN
        }
    }
}

/// What framing decided about the bytes at the front of a buffer.
pub(super) enum Frame {
    /// Nothing left.
    End,
    /// A whole message of this many bytes (its header already read).
    Message(Raw),
    /// More bytes are needed (a stream keeps them for the next read; a
    /// datagram is cut short).
    Short(Error),
    /// The stream or datagram cannot be framed any further.
    Broken(Error),
}

/// Frames the message at the front of `buf` as conntrackd does: header,
/// size, and for ranged control messages their 16 bytes.
pub(super) fn frame(buf: &[u8]) -> Frame {
    if buf.is_empty() {
        return Frame::End;
    }
    let Some(h) = Raw::read(buf) else {
        return Frame::Short(Error::Truncated);
    };
    if h.len == 0 {
        return Frame::Broken(Error::BadSize);
    }
    if h.len > buf.len() {
        return Frame::Short(Error::BadSize);
    }
    if h.has_range() && buf.len() < CTL_LEN {
        return Frame::Short(Error::Truncated);
    }
    if h.len < h.min_len() {
        return Frame::Broken(Error::BadSize);
    }
    Frame::Message(h)
}

/// Writes a header (and the range of a ranged control message).
pub(super) fn write(out: &mut [u8], kind: u8, flags: u8, len: usize, seq: u32) {
    out[0] = (super::VERSION << 4) | kind;
    out[1] = flags;
    // Callers check len <= 0xffff.
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[4..8].copy_from_slice(&seq.to_be_bytes());
}
