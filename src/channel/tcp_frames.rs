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

/// How many bytes at the front of `inbuf` are whole frames, as [`cut`]
/// would hand them on one by one.
pub fn whole(inbuf: &[u8], room: usize) -> usize {
    let mut at = 0;
    // Never a frame of 0 bytes (a length is at least a header), but a
    // loop must not depend on it.
    while let Cut::Frame(len @ 1..) = cut(&inbuf[at..], room) {
        at += len;
    }
    at
}

/// The length of the frame at the start of a stream buffer: None while the
/// header is incomplete, Some(None) when it is neither our header nor
/// conntrackd's.
fn frame_len(b: &[u8]) -> Option<Option<usize>> {
    if b.len() >= 2 && b[..2] != wire::MAGIC {
        if !conntrackd_first_byte(b[0]) {
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

/// conntrackd's first byte of a message: version 1, a data type or
/// control.
fn conntrackd_first_byte(b: u8) -> bool {
    let (version, kind) = (b >> 4, b & 0x0f);
    version == wire::ctd::VERSION && (kind <= 5 || kind == 10)
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
    // Only what [`frame_len`] would take at the front of a frame joins:
    // else whether the bytes after a message are refused or handed on
    // would depend on whether they came in the same read.
    while let Some(&next) = b.get(len)
        && conntrackd_first_byte(next)
        && let Some(Ok(n)) = wire::ctd::stream_message_len(&b[len..])
    {
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
    use crate::wire::ctd::{self, Body, Message};

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

    /// A plain ctsyncd frame with a body of `body_len` bytes of 9.
    fn ctsyncd_frame(body_len: u16) -> Vec<u8> {
        let mut f = vec![b'c', b'T', wire::VERSION, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        f.extend_from_slice(&body_len.to_be_bytes());
        f.resize(wire::HEADER_LEN + usize::from(body_len), 9);
        f
    }

    /// conntrackd messages back to back: ALIVE (8 bytes), ACK (16),
    /// ALIVE (8).
    fn ctd_messages() -> Vec<u8> {
        let mut stream = vec![0u8; 64];
        let mut len = 0;
        for (seq, body) in [
            (1, Body::Alive),
            (2, Body::Ack { from: 5, to: 9 }),
            (3, Body::Alive),
        ] {
            let m = Message {
                seq,
                hello: false,
                hello_back: false,
                body,
            };
            len += ctd::encode(&m, ctd::Options::default(), &mut stream[len..])
                .unwrap();
        }
        stream.truncate(len);
        assert_eq!(len, 8 + 16 + 8);
        stream
    }

    #[test]
    fn a_ctsyncd_frame_split_over_reads_is_cut_once_whole() {
        let first = ctsyncd_frame(3);
        assert_eq!(first.len(), 17);
        let mut stream = first.clone();
        // Read as conntrackd's, its header would announce a message of
        // 0x0100 bytes (version and flags): long enough to be whole here.
        stream.extend_from_slice(&ctsyncd_frame(300));
        // Each read's worth: the header, then the body, arrives in pieces.
        for read_to in [1, 2, 13, 14, 16] {
            assert_eq!(
                cut(&stream[..read_to], 1000),
                Cut::NeedMore,
                "{read_to}"
            );
        }
        assert_eq!(cut(&stream[..17], 1000), Cut::Frame(17));
        // A whole second frame behind it does not join it: ours are one
        // per frame.
        assert_eq!(cut(&stream, 1000), Cut::Frame(17));
        assert_eq!(cut(&stream[17..], 1000), Cut::Frame(314));
    }

    #[test]
    fn conntrackd_messages_join_into_one_frame_up_to_room() {
        let stream = ctd_messages();
        assert_eq!(cut(&stream[..7], 1000), Cut::NeedMore, "header short");
        assert_eq!(cut(&stream, 1000), Cut::Frame(32), "all three");
        assert_eq!(cut(&stream, 32), Cut::Frame(32), "exactly room");
        assert_eq!(cut(&stream, 31), Cut::Frame(24), "the third would not fit");
        assert_eq!(cut(&stream, 23), Cut::Frame(8), "the second would not fit");
        // Only whole messages join: the second has 12 of its 16 bytes.
        assert_eq!(cut(&stream[..20], 1000), Cut::Frame(8));
        assert_eq!(cut(&stream[..24], 1000), Cut::Frame(24));
        // The first message itself larger than room.
        assert_eq!(cut(&stream, 7), Cut::Unframeable);
    }

    #[test]
    fn only_conntrackd_messages_join_a_run() {
        let alive = &ctd_messages()[..8];
        // Found by the tcp_stream fuzz target: a message of version 7
        // joined the run when it came in the same read, and ended the
        // stream when it came in a read of its own.
        let mut stream = alive.to_vec();
        stream.extend_from_slice(&[0x7a, 0x10, 0, 8, 0, 0, 0, 2]);
        assert_eq!(cut(&stream, 1000), Cut::Frame(8));
        assert_eq!(cut(&stream[8..], 1000), Cut::Unframeable);
        // A frame of ours after conntrackd's: its own frame, not 0x0100
        // bytes of a conntrackd message (its version and flags).
        let mut stream = alive.to_vec();
        stream.extend_from_slice(&ctsyncd_frame(300));
        assert_eq!(cut(&stream, 1000), Cut::Frame(8));
        assert_eq!(cut(&stream[8..], 1000), Cut::Frame(314));
    }

    #[test]
    fn a_foreign_first_byte_is_unframeable() {
        let mut frame = ctsyncd_frame(3);
        frame[0] = b'x';
        assert_eq!(cut(&frame, 1000), Cut::Unframeable, "our magic, broken");
        // conntrackd's version 7, and its version 1 with an unknown type.
        for first in [0x70, 0x17] {
            let msg = [first, 0, 0, 8, 0, 0, 0, 1];
            assert_eq!(cut(&msg, 1000), Cut::Unframeable, "{first:#x}");
        }
        // One byte cannot tell ours (two bytes of magic) from theirs.
        assert_eq!(cut(&[0x70], 1000), Cut::NeedMore);
        assert_eq!(cut(&[0x70, 0], 1000), Cut::Unframeable);
    }

    #[test]
    fn an_oversized_length_is_unframeable() {
        // Ours: as soon as the header is in, before the body arrives.
        let header = &ctsyncd_frame(1000)[..wire::HEADER_LEN];
        assert_eq!(cut(header, 1014), Cut::NeedMore, "fits room exactly");
        assert_eq!(cut(header, 1013), Cut::Unframeable, "one byte over room");
        // The largest length a header can announce (sealed, a full body)
        // is MAX_FRAME, accepted when room allows it.
        let mut sealed = ctsyncd_frame(0xffff)[..wire::HEADER_LEN].to_vec();
        sealed[2] = wire::SEALED_VERSION;
        assert_eq!(cut(&sealed, MAX_FRAME), Cut::NeedMore);
        assert_eq!(cut(&sealed, MAX_FRAME - 1), Cut::Unframeable);
        // conntrackd's: a length of 0, or shorter than a header.
        assert_eq!(
            cut(&[0x1a, 0x10, 0, 0, 0, 0, 0, 1], 1000),
            Cut::Unframeable
        );
        assert_eq!(
            cut(&[0x1a, 0x10, 0, 4, 0, 0, 0, 1], 1000),
            Cut::Unframeable
        );
        // A whole 100-byte message, one byte over room, or exactly room.
        let mut msg = vec![0x1a, 0x10, 0, 100, 0, 0, 0, 1];
        msg.resize(100, 0);
        assert_eq!(cut(&msg, 99), Cut::Unframeable);
        assert_eq!(cut(&msg, 100), Cut::Frame(100));
    }
}
