//! ctsyncd's mark inside conntrackd's protocol: a ctsyncd that speaks
//! conntrackd's protocol says so in its control messages, in a way a
//! real conntrackd ignores, so that two ctsyncd nodes that met in
//! conntrackd's protocol (a TCP link during a rolling upgrade) can find
//! each other and return to ctsyncd's format.
//!
//! The mark is [`MARK`], appended to a control message (ACK, NACK,
//! RESYNC, ALIVE) after its own bytes, the header's `len` counting it.
//! conntrackd frames a message by its `len` and asks a control message
//! only for `len >= 8` (16 for ranged ones; reference §4.6 step 3); it
//! reads nothing past the range (§4.7 digest), so the trailer is skipped
//! silently, and on a stream the next message starts after it. Data
//! messages are never marked (their payload is attributes, which
//! conntrackd would parse).

use super::header::{self, Frame, TYPE_CTL};
use super::{CTL_LEN, Error, HEADER_LEN};

/// The trailer: a multiple of 4, like every conntrackd length.
pub const MARK: [u8; 8] = *b"ctsyncd\x01";

/// Appends [`MARK`] to the control message of `len` bytes encoded at the
/// front of `out` and returns its new length. A data message is left
/// alone (its length is returned).
///
/// # Errors
/// [`Error::TooBig`] when `out` has no room for the trailer; [`Error::Truncated`]
/// when `out` holds no header of `len` bytes.
pub fn append(out: &mut [u8], len: usize) -> Result<usize, Error> {
    let Some(h) = out.get(..len).and_then(header::Raw::read) else {
        return Err(Error::Truncated);
    };
    if h.kind != TYPE_CTL || h.len != len {
        return Ok(len);
    }
    let marked = len + MARK.len();
    out.get_mut(len..marked)
        .ok_or(Error::TooBig)?
        .copy_from_slice(&MARK);
    let wire_len = u16::try_from(marked).map_err(|_| Error::TooBig)?;
    out[2..4].copy_from_slice(&wire_len.to_be_bytes());
    Ok(marked)
}

/// Does a control message of `datagram` (a datagram, or a run of whole
/// messages from a stream) carry [`MARK`]?
pub fn carries_mark(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while let Frame::Message(h) = header::frame(rest) {
        let (msg, next) = rest.split_at(h.len);
        if h.kind == TYPE_CTL {
            let own = if h.has_range() { CTL_LEN } else { HEADER_LEN };
            if msg.len() == own + MARK.len() && msg[own..] == MARK {
                return true;
            }
        }
        rest = next;
    }
    false
}
