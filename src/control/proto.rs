//! Control-socket protocol: requests from `ctsyncd -c/-f/-s/…` to the
//! daemon, and the replies.
//!
//! Framing: every frame is a 4-byte big-endian length, then that many bytes:
//! one protocol-version byte followed by a postcard-encoded value. The
//! client sends exactly one [`Request`]; the daemon answers with any number
//! of [`Reply::Data`] frames (long dumps stream) and one final
//! [`Reply::Done`] carrying the outcome, then closes.
//!
//! Versioning: [`VERSION`] is checked before the body is decoded; enum
//! variants are only ever appended. Pure: no I/O; never panics on input.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bumped only when an existing variant changes shape.
pub const VERSION: u8 = 1;
/// Largest request frame the daemon accepts (body bytes).
pub const MAX_REQUEST: usize = 1024;
/// Largest reply frame the client accepts (body bytes).
pub const MAX_REPLY: usize = 1 << 20;
/// Length prefix size.
pub const HEADER: usize = 4;

/// ct, expect, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    All,
    Ct,
    Expect,
}

/// Which cache(s) `-f` flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheSel {
    All,
    Internal,
    External,
}

/// Internal (this node's) or external (the peer's) cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cache {
    Internal,
    External,
}

/// Conntracks or expectations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Table {
    Ct,
    Expect,
}

/// How a dump or a statistics view is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// conntrackd's text layout.
    Plain,
    /// conntrackd's `-x` XML (dumps only).
    Xml,
    /// Our stable JSON schema (`--json`).
    Json,
}

/// The views of `-s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatsView {
    /// `-s` and `-s ct`.
    General,
    Network,
    Cache,
    Runtime,
    Link,
    RsQueue,
    Process,
    Queue,
    Expect,
    /// `-s ready` (ctsyncd's): whether a resync asked for is complete.
    Ready,
}

/// One control request. conntrackd's request code for each is noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// `-c` (46), `-c ct` (18), `-c expect` (42).
    Commit(Target),
    /// `-f` (45), `-f internal` (33), `-f external` (34).
    FlushCache(CacheSel),
    /// `-F` (43), `-F ct` (0), `-F expect` (38).
    FlushKernel(Target),
    /// `-i`/`-e` [ct|expect] [-x].
    Dump {
        cache: Cache,
        table: Table,
        format: Format,
    },
    /// `-k` (20).
    Kill,
    /// `-s [view]`.
    Stats { view: StatsView, format: Format },
    /// `-R` (44), `-R ct` (1), `-R expect` (39).
    ResyncKernel(Target),
    /// `-B` (22).
    BulkSend,
    /// `-n` (23).
    RequestResync,
    /// `-t` (26).
    ResetTimers,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Ok,
    /// The daemon understood the request but could not do it.
    Failed(String),
    /// Refused in the current state (e.g. a commit is running).
    Refused(String),
    /// This build or this configuration does not provide it.
    NotSupported(String),
    /// The request could not be decoded.
    BadRequest(String),
}

impl Status {
    pub fn is_ok(&self) -> bool {
        matches!(self, Status::Ok)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ok => f.write_str("done"),
            Status::Failed(m) => write!(f, "failed: {m}"),
            Status::Refused(m) => write!(f, "refused: {m}"),
            Status::NotSupported(m) => write!(f, "not supported: {m}"),
            Status::BadRequest(m) => write!(f, "bad request: {m}"),
        }
    }
}

/// One reply frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Output text for the client's stdout.
    Data(String),
    /// The last frame.
    Done(Status),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the receiver accepts.
    TooLarge(usize),
    /// The frame is shorter than a version byte.
    Empty,
    /// The peer speaks another protocol version.
    Version(u8),
    /// The body is not a valid value.
    Body,
    /// The body names a request, reply or value this build does not know:
    /// the peer is a newer build (variants are only ever appended).
    Unknown,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes is too large")
            }
            FrameError::Empty => f.write_str("empty frame"),
            FrameError::Version(v) => write!(
                f,
                "control protocol version {v}, this build speaks {VERSION} \
                 (client and daemon from different builds?)"
            ),
            FrameError::Body => f.write_str("malformed frame body"),
            FrameError::Unknown => f.write_str(
                "a request or reply this build does not know \
                 (client and daemon from different builds? a daemon not \
                 restarted since an upgrade?)",
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes one value as a complete frame.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![0u8; HEADER];
    out.push(VERSION);
    // Serialising our own enums into a Vec cannot fail.
    let body = postcard::to_allocvec(value).unwrap_or_default();
    out.extend_from_slice(&body);
    let len = (out.len() - HEADER) as u32;
    out[..HEADER].copy_from_slice(&len.to_be_bytes());
    out
}

/// Tries to decode one frame from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, else the value and the
/// number of bytes it used. A length over `max` is an error before any
/// body byte arrives, so an oversized frame never gets buffered.
pub fn decode<T: for<'de> Deserialize<'de>>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(len) = buf.get(..HEADER) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    let Some(body) = buf.get(HEADER..HEADER + len) else {
        return Ok(None);
    };
    let (&version, body) = body.split_first().ok_or(FrameError::Empty)?;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let value = postcard::from_bytes(body).map_err(|e| match e {
        // What serde's derive reports for a variant index past the last
        // one (an appended variant); other damage fails in postcard.
        postcard::Error::SerdeDeCustom => FrameError::Unknown,
        _ => FrameError::Body,
    })?;
    Ok(Some((value, HEADER + len)))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn request_fixture_bytes() {
        // Byte fixtures pin the wire format: a change here breaks old clients.
        assert_eq!(
            encode(&Request::Commit(Target::All)),
            [0, 0, 0, 3, VERSION, 0, 0]
        );
        assert_eq!(
            encode(&Request::Dump {
                cache: Cache::External,
                table: Table::Expect,
                format: Format::Xml,
            }),
            [0, 0, 0, 5, VERSION, 3, 1, 1, 1]
        );
        assert_eq!(
            encode(&Request::Stats {
                view: StatsView::Runtime,
                format: Format::Json
            }),
            [0, 0, 0, 4, VERSION, 5, 3, 2]
        );
        assert_eq!(encode(&Request::ResetTimers), [0, 0, 0, 2, VERSION, 9]);
    }

    #[test]
    fn every_request_round_trips() {
        let all = [
            Request::Commit(Target::Expect),
            Request::FlushCache(CacheSel::External),
            Request::FlushKernel(Target::Ct),
            Request::Dump {
                cache: Cache::Internal,
                table: Table::Ct,
                format: Format::Plain,
            },
            Request::Kill,
            Request::Stats {
                view: StatsView::Queue,
                format: Format::Plain,
            },
            Request::ResyncKernel(Target::All),
            Request::BulkSend,
            Request::RequestResync,
            Request::ResetTimers,
        ];
        for r in all {
            let bytes = encode(&r);
            let (back, used) =
                decode::<Request>(&bytes, MAX_REQUEST).unwrap().unwrap();
            assert_eq!(back, r);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn reply_round_trip_and_fixture() {
        let r = Reply::Done(Status::Refused("busy".into()));
        let bytes = encode(&r);
        assert_eq!(
            bytes,
            [0, 0, 0, 8, VERSION, 1, 2, 4, b'b', b'u', b's', b'y']
        );
        let (back, _) = decode::<Reply>(&bytes, MAX_REPLY).unwrap().unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn incomplete_frames_ask_for_more() {
        let bytes = encode(&Request::Kill);
        for cut in 0..bytes.len() {
            assert_eq!(decode::<Request>(&bytes[..cut], MAX_REQUEST), Ok(None));
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(
            decode::<Request>(&[0, 1, 0, 0], MAX_REQUEST),
            Err(FrameError::TooLarge(65536))
        );
        assert_eq!(
            decode::<Request>(&[0, 0, 0, 0], MAX_REQUEST),
            Err(FrameError::Empty)
        );
        assert_eq!(
            decode::<Request>(&[0, 0, 0, 2, 99, 0], MAX_REQUEST),
            Err(FrameError::Version(99))
        );
        assert_eq!(
            decode::<Request>(&[0, 0, 0, 2, VERSION, 200], MAX_REQUEST),
            Err(FrameError::Body)
        );
    }

    #[test]
    fn a_request_this_build_does_not_know_is_named_as_such() {
        // A newer client's request to a daemon not yet restarted after an
        // upgrade: a variant appended after this build's last (variants
        // are only ever appended, so VERSION stays), or a known request
        // with a value appended later (a view of `-s`).
        for bytes in [
            &[0, 0, 0, 2, VERSION, 10][..],
            &[0, 0, 0, 4, VERSION, 5, 10, 0][..],
        ] {
            let e = decode::<Request>(bytes, MAX_REQUEST).unwrap_err();
            let why = e.to_string();
            assert!(why.contains("different builds"), "{bytes:?}: {why}");
        }
        // Garbage is still garbage.
        assert_eq!(
            decode::<Request>(&[0, 0, 0, 2, VERSION, 200], MAX_REQUEST),
            Err(FrameError::Body)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small xorshift keeps this deterministic without a dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 12) as usize;
            let bytes: Vec<u8> =
                (0..len).map(|i| (x >> (i * 5)) as u8).collect();
            let _ = decode::<Request>(&bytes, MAX_REQUEST);
            let _ = decode::<Reply>(&bytes, MAX_REPLY);
        }
    }
}
