//! Reading attribute TLVs: the iterator over one (nested) attribute block,
//! built on netlink-packet-core's `NlasIterator` view (nothing allocated),
//! and the readers of fixed-size values. Short or malformed input is a
//! [`DecodeError`], never a panic.

use netlink_packet_core::{NlaBuffer, NlasIterator};

use super::message::{DecodeError, Result};
use super::uapi::*;

pub(super) fn nlas(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8])>> {
    NlasIterator::new(buf).map(|r| {
        let n: NlaBuffer<&[u8]> = r.map_err(|_| DecodeError::Truncated)?;
        let (kind, len) = (n.kind() & NLA_TYPE_MASK, usize::from(n.length()));
        // new_checked() verified 4 <= length <= buffer length.
        let value = n.into_inner().get(4..len).ok_or(DecodeError::Truncated)?;
        Ok((kind, value))
    })
}

pub(super) fn u8_of(v: &[u8], what: &'static str) -> Result<u8> {
    v.first().copied().ok_or(DecodeError::Bad(what))
}

pub(super) fn be16(v: &[u8], what: &'static str) -> Result<u16> {
    v.get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DecodeError::Bad(what))
}

pub(super) fn be32(v: &[u8], what: &'static str) -> Result<u32> {
    v.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(DecodeError::Bad(what))
}

pub(super) fn be64(v: &[u8], what: &'static str) -> Result<u64> {
    let b: [u8; 8] = v
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::Bad(what))?;
    Ok(u64::from_be_bytes(b))
}

pub(super) fn name<const N: usize>(
    v: &[u8],
    what: &'static str,
) -> Result<heapless::String<N>> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    let s =
        std::str::from_utf8(&v[..end]).map_err(|_| DecodeError::Bad(what))?;
    let mut out = heapless::String::new();
    out.push_str(s).map_err(|_| DecodeError::Bad(what))?;
    Ok(out)
}

pub(super) fn align4(n: usize) -> usize {
    (n + 3) & !3
}
