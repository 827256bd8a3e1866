//! Cutting a TCP link's inbound byte stream into frames, sans-IO: ours by
//! their header's length, conntrackd's by its message lengths, as many
//! whole messages per frame as fit. The stream is the peer's, so
//! untrusted; `tcp` reads it and hands what [`cut`] decides to the node.
//! Public for the `tcp_stream` fuzz target.

use crate::wire;

/// Largest frame accepted on a TCP stream.
pub const MAX_FRAME: usize =
    65_535 + wire::HEADER_LEN + wire::seal::SEAL_OVERHEAD;

/// What the bytes buffered so far allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The frame at the front is not whole yet: read more.
    NeedMore,
    /// A whole frame of this many bytes is at the front: hand it on and
    /// drain it.
    Frame(usize),
    /// The front is neither framing, or announces a frame larger than
    /// `room` or [`MAX_FRAME`]: the stream cannot be resynchronised.
    Unframeable,
}

/// Cuts the frame at the front of `inbuf`, the bytes received and not yet
/// handed on; `room` is the size of the buffer the frame is handed in.
pub fn cut(inbuf: &[u8], room: usize) -> Cut {
    match frame_len(inbuf) {
        None => Cut::NeedMore,
        Some(Some(len)) if len <= room && len <= MAX_FRAME => {
            if inbuf.len() >= len {
                Cut::Frame(ctd_run(inbuf, len, room))
            } else {
                Cut::NeedMore
            }
        }
        Some(_) => Cut::Unframeable,
    }
}

/// The length of the frame at the start of a stream buffer: None while the
/// header is incomplete, Some(None) when it is neither our header nor
/// conntrackd's.
fn frame_len(b: &[u8]) -> Option<Option<usize>> {
    if b.len() >= 2 && b[..2] != wire::MAGIC {
        // conntrackd's first byte: version 1, a data type or control.
        let (version, kind) = (b[0] >> 4, b[0] & 0x0f);
        if version != wire::ctd::VERSION || !(kind <= 5 || kind == 10) {
            return Some(None);
        }
        return match wire::ctd::stream_message_len(b)? {
            Ok(len) => Some(Some(len)),
            Err(_) => Some(None),
        };
    }
    let header = wire::Packet::new_unchecked(b);
    header.check_header_len().ok()?;
    if header.magic() != wire::MAGIC {
        return Some(None);
    }
    Some(Some(header.total_len()))
}

/// A conntrackd frame of `first` bytes at the start of `b`, extended by
/// the whole conntrackd messages after it, up to `room` bytes: one read
/// of the node for a run of messages (they are back to back in a
/// datagram too). Our frames stay one per read.
fn ctd_run(b: &[u8], first: usize, room: usize) -> usize {
    if b.len() < 2 || b[..2] == wire::MAGIC {
        return first;
    }
    let mut len = first;
    while let Some(Ok(n)) = wire::ctd::stream_message_len(&b[len..]) {
        if n == 0 || len + n > room || len + n > b.len() {
            break;
        }
        len += n;
    }
    len
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn stream_framing() {
        let mut d =
            vec![b'c', b'T', 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 3, 9, 9, 9];
        assert_eq!(frame_len(&d[..10]), None);
        assert_eq!(frame_len(&d), Some(Some(17)));
        // A sealed frame: its nonce and tag follow the body.
        d[2] = wire::SEALED_VERSION;
        assert_eq!(frame_len(&d), Some(Some(17 + 40)));
        d[0] = b'x';
        assert_eq!(frame_len(&d), Some(None));
    }

    #[test]
    fn conntrackd_stream_framing() {
        use crate::wire::ctd::{self, Body, Message};
        let mut stream = vec![0u8; 64];
        let mut len = 0;
        for (seq, body) in [(1, Body::Alive), (2, Body::Ack { from: 5, to: 9 })]
        {
            let m = Message {
                seq,
                hello: true,
                hello_back: false,
                body,
            };
            len += ctd::encode(&m, ctd::Options::default(), &mut stream[len..])
                .unwrap();
        }
        stream.truncate(len);
        assert_eq!(len, 8 + 16);
        assert_eq!(frame_len(&stream[..5]), None, "header incomplete");
        assert_eq!(frame_len(&stream), Some(Some(8)));
        // The whole messages after the first join it, as room allows.
        assert_eq!(ctd_run(&stream, 8, 1000), 24);
        assert_eq!(ctd_run(&stream, 8, 20), 8);
        assert_eq!(ctd_run(&stream[..20], 8, 1000), 8, "partial second");
        // Garbage that is neither framing ends the stream.
        assert_eq!(frame_len(&[0x70, 0, 0, 8, 0, 0, 0, 0]), Some(None));
    }
}
