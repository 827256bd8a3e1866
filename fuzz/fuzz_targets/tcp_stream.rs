//! A TCP link's inbound stream cut into frames
//! (`channel::tcp_frames::cut`) as `Tcp::next_frame` cuts it: each read
//! appended to what is buffered, then frames cut until more is needed or
//! the stream is unframeable (then it is abandoned). The stream is the
//! peer's, so anything: no input may panic the cutter; every frame must
//! be 1 to `room` bytes of what is buffered, ours exactly as long as
//! their header says, conntrackd's whole conntrackd messages back to
//! back; and where the reads end must not matter: the stream read whole
//! and read in pieces must give the same frames of ours, the same
//! conntrackd messages (how many join into one frame depends on how many
//! have arrived: that is the only difference allowed), the same verdict
//! and, when abandoned, at the same point.
//! The first byte picks `room`; the second says how many read sizes
//! follow (1 to 8), each a byte, used in turn; the rest is the stream.
#![no_main]

use ctsyncd::channel::tcp_frames::{Cut, MAX_FRAME, cut};
use ctsyncd::wire;

/// What a stream was cut into.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// The frames of ours and the conntrackd messages handed on, in
    /// order, as (offset in the stream, length).
    units: Vec<(usize, usize)>,
    /// Bytes handed on: where the stream was abandoned, if it was.
    handed_on: usize,
    abandoned: bool,
}

/// A read size from its byte: 1 to 255 bytes, or (255) the 16 KiB the
/// link reads at once.
fn read_size(b: u8) -> usize {
    if b == u8::MAX {
        16 * 1024
    } else {
        usize::from(b) + 1
    }
}

/// `room` from its byte: the daemon's receive buffer, the limits around
/// MAX_FRAME, a datagram's size, or small enough for joins and refusals.
fn room(b: u8) -> usize {
    match b {
        0 => 65_536,
        1 => MAX_FRAME,
        2 => MAX_FRAME - 1,
        3 => 1472,
        n => usize::from(n),
    }
}

/// conntrackd's first byte of a message: version 1, a data type or
/// control (what the cutter accepts at the front of a frame).
fn conntrackd_first_byte(b: u8) -> bool {
    let (version, kind) = (b >> 4, b & 0x0f);
    version == wire::ctd::VERSION && (kind <= 5 || kind == 10)
}

/// Checks one frame (`at` its offset in the stream) and records its
/// units: itself if ours, else its conntrackd messages.
fn check_frame(
    frame: &[u8],
    at: usize,
    buffered: usize,
    room: usize,
    units: &mut Vec<(usize, usize)>,
) {
    let len = frame.len();
    assert!(len >= 1, "an empty frame would never drain the buffer");
    assert!(len <= room, "frame of {len} bytes, room {room}");
    assert!(len <= buffered, "frame of {len} bytes, {buffered} buffered");
    assert!(len <= MAX_FRAME);
    if frame[..2.min(len)] == wire::MAGIC {
        assert!(len >= wire::HEADER_LEN, "our frame shorter than a header");
        let total = wire::Packet::new_unchecked(frame).total_len();
        assert_eq!(
            len, total,
            "our frame cut at another length than its header's"
        );
        units.push((at, len));
        return;
    }
    let mut off = 0;
    while off < len {
        let msg = &frame[off..];
        assert!(
            conntrackd_first_byte(msg[0]),
            "message at {off} of a {len}-byte conntrackd frame starts with {:#04x}: {frame:02x?}",
            msg[0]
        );
        match wire::ctd::stream_message_len(msg) {
            Some(Ok(n)) if n >= 1 => {
                units.push((at + off, n));
                off += n;
            }
            other => panic!(
                "conntrackd frame of {len} bytes not whole messages at {off}: {other:?}"
            ),
        }
    }
}

/// Feeds `stream` in reads of the sizes given, in turn, as next_frame does.
fn feed(stream: &[u8], read_sizes: &[usize], room: usize) -> Outcome {
    let mut inbuf = Vec::new();
    let mut out = Outcome {
        units: Vec::new(),
        handed_on: 0,
        abandoned: false,
    };
    let mut read = 0;
    for &size in read_sizes.iter().cycle() {
        if read == stream.len() {
            break;
        }
        let end = (read + size).min(stream.len());
        inbuf.extend_from_slice(&stream[read..end]);
        read = end;
        loop {
            match cut(&inbuf, room) {
                Cut::NeedMore => break,
                Cut::Unframeable => {
                    out.abandoned = true;
                    return out;
                }
                Cut::Frame(len) => {
                    // Checked before the frame is drained: a frame of 0
                    // bytes would loop here forever.
                    let frame = &inbuf[..len.min(inbuf.len())];
                    assert_eq!(frame.len(), len, "frame beyond the buffer");
                    check_frame(
                        frame,
                        out.handed_on,
                        inbuf.len(),
                        room,
                        &mut out.units,
                    );
                    inbuf.drain(..len);
                    out.handed_on += len;
                }
            }
        }
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [room_byte, reads_byte, rest @ ..] = data else {
        return;
    };
    let reads = usize::from(reads_byte % 8) + 1;
    if rest.len() < reads {
        return;
    }
    let (sizes, stream) = rest.split_at(reads);
    let read_sizes: Vec<usize> = sizes.iter().map(|&b| read_size(b)).collect();
    let room = room(*room_byte);
    let whole = feed(stream, &[stream.len().max(1)], room);
    let pieces = feed(stream, &read_sizes, room);
    assert_eq!(
        whole, pieces,
        "cut differently read whole and in reads of {read_sizes:?} (room {room})"
    );
});
