//! Reading attribute TLVs: the iterator over one (nested) attribute block
//! (views into the buffer, nothing allocated), and the readers of
//! fixed-size values. Short or malformed input is a [`DecodeError`],
//! never a panic.

use super::message::{DecodeError, Result};
use super::uapi::*;

/// The attributes of one block, as (type without its flags, value).
///
/// Each is a header (length including it, then type; both u16 in host
/// order), the value, and padding to 4 bytes (absent after the last).
/// netlink-packet-core's `NlasIterator` reads the same, with the same
/// checks; this one is a plain walk over a slice, without the generic
/// buffer views: the sender walks about forty attributes per event, and
/// that walk was a tenth of its CPU.
pub(super) fn nlas(buf: &[u8]) -> Nlas<'_> {
    Nlas { rest: buf }
}

pub(super) struct Nlas<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Nlas<'a> {
    type Item = Result<(u16, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let attr = match self.rest {
            [l0, l1, t0, t1, ..] => {
                let len = usize::from(u16::from_ne_bytes([*l0, *l1]));
                let kind = u16::from_ne_bytes([*t0, *t1]) & NLA_TYPE_MASK;
                (len >= 4)
                    .then(|| self.rest.get(4..len))
                    .flatten()
                    .map(|value| (kind, value, len))
            }
            _ => None,
        };
        let Some((kind, value, len)) = attr else {
            // Nothing after a malformed attribute can be trusted.
            self.rest = &[];
            return Some(Err(DecodeError::Truncated));
        };
        self.rest = self.rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok((kind, value)))
    }
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

#[cfg(test)]
mod test {
    use super::*;

    /// One attribute: header, value, padding.
    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = u16::try_from(4 + value.len()).unwrap();
        let mut out = len.to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align4(out.len()), 0);
        out
    }

    fn all(buf: &[u8]) -> Vec<Result<(u16, Vec<u8>)>> {
        nlas(buf).map(|r| r.map(|(k, v)| (k, v.to_vec()))).collect()
    }

    #[test]
    fn attributes_are_walked_with_their_padding_and_flags_dropped() {
        let mut buf = attr(1, b"abc");
        buf.extend(attr(0x8002, &[7; 8])); // NLA_F_NESTED
        buf.extend(attr(3, b""));
        // The last attribute without its padding.
        let mut last = attr(4, b"x");
        last.truncate(5);
        buf.extend(last);
        assert_eq!(
            all(&buf),
            [
                Ok((1, b"abc".to_vec())),
                Ok((2, vec![7; 8])),
                Ok((3, vec![])),
                Ok((4, b"x".to_vec())),
            ]
        );
        assert!(all(&[]).is_empty());
    }

    #[test]
    fn a_malformed_attribute_ends_the_walk_with_an_error() {
        let good = attr(1, b"abcd");
        // A header cut short; a length below the header's; a length past
        // the buffer.
        let short = [&good[..], &[8, 0]].concat();
        let tiny = [&good[..], &attr(2, b"")[..2], &[0, 0]].concat();
        let tiny = {
            let mut t = tiny;
            t[8..10].copy_from_slice(&3u16.to_ne_bytes());
            t
        };
        let long = {
            let mut l = [&good[..], &attr(2, b"yz")[..]].concat();
            l[8..10].copy_from_slice(&40u16.to_ne_bytes());
            l
        };
        for buf in [short, tiny, long] {
            assert_eq!(
                all(&buf),
                [Ok((1, b"abcd".to_vec())), Err(DecodeError::Truncated)],
                "{buf:?}"
            );
        }
    }
}
