//! conntrackd's attribute TLVs (`struct netattr`): the walk that validates
//! them on receive and the writer that lays them out on send.
//!
//! A TLV is `nta_len: u16 BE, nta_attr: u16 BE, payload`; `nta_len`
//! counts the 4-byte header and the payload but not the zero padding that
//! brings the next attribute to a 4-byte boundary. Validation follows what
//! conntrackd 1.4.7 checks before it accepts a message (reference §4.4.3):
//! a length shorter than the header or past the end, an unknown attribute
//! number, a fixed-size attribute of another size or a variable one past
//! its maximum rejects the whole message.

use super::Error;

/// How long an attribute's payload may be.
#[derive(Debug, Clone, Copy)]
pub(super) enum Size {
    /// Exactly this many payload bytes.
    Fixed(usize),
    /// At most this `nta_len` (header included), as conntrackd limits
    /// strings and bitmaps.
    MaxLen(usize),
}

/// The TLV header length.
const NTA_HEADER: usize = 4;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Iterates over the attributes of one message payload, checking each
/// against `table` (indexed by attribute number; numbers past its end are
/// unknown). Yields `(number, payload)`; the first bad attribute yields
/// `Err(Malformed)` and ends the walk.
pub(super) fn walk<'a>(
    payload: &'a [u8],
    table: &'static [Size],
) -> impl Iterator<Item = Result<(u16, &'a [u8]), Error>> + 'a {
    let mut rest = payload;
    let mut failed = false;
    std::iter::from_fn(move || {
        // conntrackd walks while more than a bare header remains; up to
        // four trailing bytes are ignored.
        if failed || rest.len() <= NTA_HEADER {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let kind = u16::from_be_bytes([rest[2], rest[3]]);
        let ok = len >= NTA_HEADER
            && len <= rest.len()
            && match table.get(usize::from(kind)) {
                Some(Size::Fixed(n)) => len == NTA_HEADER + n,
                Some(Size::MaxLen(max)) => len <= *max,
                None => false,
            };
        if !ok {
            failed = true;
            return Some(Err(Error::Malformed));
        }
        let value = &rest[NTA_HEADER..len];
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok((kind, value)))
    })
}

/// Lays attributes out into a caller-owned buffer. A write past the end
/// is remembered and reported once by [`Writer::finish`], so the encoders
/// read as a flat list of `put`s.
pub(super) struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    /// Starts writing at `start` (after the message header).
    pub(super) fn new(out: &'a mut [u8], start: usize) -> Self {
        let overflow = out.len() < start;
        Writer {
            out,
            len: start,
            overflow,
        }
    }

    /// One attribute with its payload and zero padding.
    pub(super) fn put(&mut self, kind: u16, parts: &[&[u8]]) {
        let payload: usize = parts.iter().map(|p| p.len()).sum();
        let nta_len = NTA_HEADER + payload;
        let end = self.len + align4(nta_len);
        if self.overflow || end > self.out.len() || nta_len > 0xffff {
            self.overflow = true;
            return;
        }
        let at = &mut self.out[self.len..end];
        // nta_len <= 0xffff was checked above.
        at[0..2].copy_from_slice(&(nta_len as u16).to_be_bytes());
        at[2..4].copy_from_slice(&kind.to_be_bytes());
        let mut i = NTA_HEADER;
        for p in parts {
            at[i..i + p.len()].copy_from_slice(p);
            i += p.len();
        }
        at[i..].fill(0);
        self.len = end;
    }

    pub(super) fn u8(&mut self, kind: u16, v: u8) {
        self.put(kind, &[&[v]]);
    }

    pub(super) fn be16(&mut self, kind: u16, v: u16) {
        self.put(kind, &[&v.to_be_bytes()]);
    }

    pub(super) fn be32(&mut self, kind: u16, v: u32) {
        self.put(kind, &[&v.to_be_bytes()]);
    }

    /// The bytes written so far, including the start offset.
    ///
    /// # Errors
    /// [`Error::TooBig`] when something did not fit.
    pub(super) fn finish(self) -> Result<usize, Error> {
        if self.overflow {
            Err(Error::TooBig)
        } else {
            Ok(self.len)
        }
    }
}

/// Payload readers for attributes whose size the walk already checked.
pub(super) fn be16(v: &[u8]) -> u16 {
    u16::from_be_bytes([v[0], v[1]])
}

pub(super) fn be32(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

/// A NUL-terminated name (helper, expectation function). `Ok(None)` for
/// an empty one.
///
/// # Errors
/// [`Error::Malformed`] without a NUL, or when not UTF-8, or too long for
/// `N`.
pub(super) fn name<const N: usize>(
    v: &[u8],
) -> Result<Option<heapless::String<N>>, Error> {
    let end = v.iter().position(|b| *b == 0).ok_or(Error::Malformed)?;
    let s = std::str::from_utf8(&v[..end]).map_err(|_| Error::Malformed)?;
    if s.is_empty() {
        return Ok(None);
    }
    heapless::String::try_from(s)
        .map(Some)
        .map_err(|_| Error::Malformed)
}
