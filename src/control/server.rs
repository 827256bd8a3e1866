//! Daemon side of the control socket (smol).
//!
//! Owns: binding the UNIX stream socket (mode 0600, refusing to steal the
//! path from a live daemon), reading one bounded request per connection
//! within a deadline, and writing reply frames within a deadline (which
//! a writer may waive for a slow reader while nobody needs the room: see
//! `write_replies_unless`). What a request *does* is decided by the
//! daemon, not here.

use std::io::{self, ErrorKind};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Timer, future};

use super::conntrackd;
use super::proto::{self, FrameError, MAX_REQUEST, Reply, Request};

/// How long a client may take to send its request.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// How long a first read of four bytes `0 0 0 n` (n a conntrackd request
/// code) waits for more before it is taken for conntrackd's client on a
/// big-endian host (MIPS routers): to us that is a header announcing `n`
/// bytes, but our client writes a request's header and body with one
/// `write`, so they arrive together.
pub const BIG_ENDIAN_GRACE: Duration = Duration::from_millis(50);
/// How long a client may take to read a reply frame.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(30);
/// How long a client may read nothing at all while a frame waits: one
/// that never reads must not hold its reply (and the memory budget) for
/// the whole [`WRITE_DEADLINE`].
pub const STALL_DEADLINE: Duration = Duration::from_secs(5);

/// Binds the control socket at `path`.
///
/// A leftover socket file from a crashed daemon is replaced, as conntrackd
/// does; a socket that still answers belongs to a running daemon and is
/// left alone.
pub fn bind(path: &Path) -> io::Result<Async<UnixListener>> {
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            ErrorKind::AddrInUse,
            format!("{} is in use by a running daemon", path.display()),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Async::new(listener)
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed before sending a whole frame.
    Closed,
    /// The client did not send a whole frame within [`READ_DEADLINE`].
    Timeout,
    Io(io::Error),
    Frame(FrameError),
    /// conntrackd 1.4's own client: a bare request code (a 4-byte
    /// host-endian int), served by `control::conntrackd`.
    Conntrackd(u8),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => f.write_str("connection closed mid-request"),
            ReadError::Timeout => f.write_str("request not received in time"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Frame(e) => write!(f, "{e}"),
            ReadError::Conntrackd(code)
                if conntrackd::request(*code).is_some() =>
            {
                write!(
                    f,
                    "conntrackd's client sent request {code} ({})",
                    conntrackd::command(*code)
                )
            }
            ReadError::Conntrackd(code) => write!(
                f,
                "conntrackd's client sent request {code} (unknown), which no conntrackd 1.4.7 command sends: ignored"
            ),
        }
    }
}

/// A conntrackd client's request as it comes from a little-endian host
/// (x86, arm, mipsel): its code, 0 to 48, then three zero bytes. Never a
/// frame of ours: read as our length prefix, it is 0 (an empty frame) or
/// more than [`MAX_REQUEST`].
fn conntrackd_code(buf: &[u8]) -> Option<u8> {
    match *buf.get(..proto::HEADER)? {
        [code @ 0..=48, 0, 0, 0] => Some(code),
        _ => None,
    }
}

/// What the bytes a control connection has sent so far amount to: the
/// decision [`read_request`] makes after each read, without the socket
/// and the clock (the fuzz target `control_proto` drives it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// One request frame of ours.
    Request(Request),
    /// conntrackd 1.4's own client: its request code.
    Conntrackd(u8),
    /// Neither: a bad frame.
    Frame(FrameError),
    /// Not yet decided: more bytes are needed. `Some(code)` when the
    /// bytes are also conntrackd's request `code` from a big-endian host
    /// (MIPS routers), which reads as a header of ours announcing its
    /// code's worth of bytes, which never come: taken for that after
    /// [`BIG_ENDIAN_GRACE`] without more.
    More { big_endian: Option<u8> },
}

/// Reads `buf`, everything a connection sent so far (see [`Received`]).
pub fn received(buf: &[u8]) -> Received {
    match proto::decode::<Request>(buf, MAX_REQUEST) {
        Ok(Some((req, _))) => Received::Request(req),
        Ok(None) => Received::More {
            big_endian: match *buf {
                [0, 0, 0, code @ 1..=48] => Some(code),
                _ => None,
            },
        },
        Err(e) => match conntrackd_code(buf) {
            Some(code) => Received::Conntrackd(code),
            None => Received::Frame(e),
        },
    }
}

/// Reads one request frame.
pub async fn read_request(
    stream: &mut Async<UnixStream>,
) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(64);
    let read = async {
        let mut chunk = [0u8; 256];
        loop {
            let big_endian = match received(&buf) {
                Received::Request(req) => return Ok(req),
                Received::Conntrackd(code) => {
                    return Err(ReadError::Conntrackd(code));
                }
                Received::Frame(e) => return Err(ReadError::Frame(e)),
                Received::More { big_endian } => big_endian,
            };
            let grace = async {
                match big_endian {
                    Some(code) => {
                        Timer::after(BIG_ENDIAN_GRACE).await;
                        Err(code)
                    }
                    None => future::pending().await,
                }
            };
            let more = async { Ok(stream.read(&mut chunk).await) };
            let n = match future::or(more, grace).await {
                Ok(n) => n.map_err(ReadError::Io)?,
                Err(code) => return Err(ReadError::Conntrackd(code)),
            };
            if n == 0 {
                return Err(ReadError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    future::or(read, async {
        Timer::after(READ_DEADLINE).await;
        Err(ReadError::Timeout)
    })
    .await
}

/// Largest text per frame: a long dump streams as many frames, each well
/// under the client's limit, cut at line ends.
const CHUNK: usize = 256 * 1024;

/// Writes reply frames; gives up on a client that stops reading.
pub async fn write_replies(
    stream: &mut Async<UnixStream>,
    replies: &[Reply],
) -> io::Result<()> {
    write_replies_unless(stream, replies, None).await
}

/// [`write_replies`]; with `patient`, a client that stalls past the
/// deadlines is given up on only if `patient()` then says no (a dump read
/// through `less`, or by a script that takes its time over each line,
/// stalls as long as its reader does; conntrackd waits for it).
pub(crate) async fn write_replies_unless(
    stream: &mut Async<UnixStream>,
    replies: &[Reply],
    patient: Option<&dyn Fn() -> bool>,
) -> io::Result<()> {
    let write =
        async |stream: &mut Async<UnixStream>, frame: &[u8]| match patient {
            None => write_frame(stream, frame).await,
            Some(p) => write_frame_patiently(stream, frame, p).await,
        };
    for r in replies {
        if let Reply::Data(text) = r
            && text.len() > CHUNK
        {
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut cut = rest.len().min(CHUNK);
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                if cut < rest.len()
                    && let Some(nl) = rest[..cut].rfind('\n')
                {
                    cut = nl + 1;
                }
                let frame =
                    proto::encode(&Reply::Data(rest[..cut].to_string()));
                write(stream, &frame).await?;
                rest = &rest[cut..];
            }
            continue;
        }
        let frame = proto::encode(r);
        write(stream, &frame).await?;
    }
    stream.flush().await
}

/// [`write_frame`] for a client that may read slowly: past
/// [`STALL_DEADLINE`] without progress, or [`WRITE_DEADLINE`] on one
/// frame, it is given up on only when `patient()` says no.
pub(crate) async fn write_frame_patiently(
    stream: &mut Async<UnixStream>,
    frame: &[u8],
    patient: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut deadline = Timer::after(WRITE_DEADLINE);
    let mut rest = frame;
    while !rest.is_empty() {
        let n = future::or(stream.write(rest), async {
            loop {
                Timer::after(STALL_DEADLINE).await;
                if !patient() {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        "client not reading",
                    ));
                }
            }
        })
        .await?;
        if n == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        rest = &rest[n..];
        if !patient() && future::poll_once(&mut deadline).await.is_some() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "client reading too slowly",
            ));
        }
    }
    Ok(())
}

pub(crate) async fn write_frame(
    stream: &mut Async<UnixStream>,
    frame: &[u8],
) -> io::Result<()> {
    let all = async {
        let mut rest = frame;
        while !rest.is_empty() {
            let n = future::or(stream.write(rest), async {
                Timer::after(STALL_DEADLINE).await;
                Err(io::Error::new(ErrorKind::TimedOut, "client not reading"))
            })
            .await?;
            if n == 0 {
                return Err(ErrorKind::WriteZero.into());
            }
            rest = &rest[n..];
        }
        Ok(())
    };
    future::or(all, async {
        Timer::after(WRITE_DEADLINE).await;
        Err(io::Error::new(
            ErrorKind::TimedOut,
            "client reading too slowly",
        ))
    })
    .await
}

#[cfg(test)]
mod test {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        let (ours, mut client) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut client, bytes).unwrap();
        let mut ours = Async::new(ours).unwrap();
        smol::block_on(read_request(&mut ours))
    }

    #[test]
    fn what_was_received_is_decided_without_the_socket() {
        // conntrackd's client from a little-endian host, whatever follows.
        for code in 0..=48u8 {
            let mut bytes = i32::from(code).to_le_bytes().to_vec();
            assert_eq!(received(&bytes), Received::Conntrackd(code));
            bytes.push(7);
            assert_eq!(received(&bytes), Received::Conntrackd(code));
        }
        // From a big-endian host: only four bytes, waiting for more.
        assert_eq!(
            received(&46i32.to_be_bytes()),
            Received::More {
                big_endian: Some(46)
            }
        );
        // A request of ours, and each of its prefixes.
        let frame = proto::encode(&Request::Kill);
        assert_eq!(received(&frame), Received::Request(Request::Kill));
        for cut in 0..frame.len() {
            let big_endian = (cut == proto::HEADER).then_some(frame[3]);
            assert_eq!(received(&frame[..cut]), Received::More { big_endian });
        }
        assert_eq!(
            received(&[0, 1, 0, 0]),
            Received::Frame(FrameError::TooLarge(65536))
        );
    }

    #[test]
    fn conntrackds_client_is_named_not_called_a_bad_frame() {
        // `conntrackd -c` against ctsyncd's socket (a notify script that
        // still calls conntrackd's binary): request 46, host-endian.
        let e = read(&46i32.to_le_bytes()).unwrap_err();
        assert!(matches!(e, ReadError::Conntrackd(46)), "{e:?}");
        let why = e.to_string();
        assert!(why.contains("conntrackd's client sent request 46 (-c)"));
        // -F ct is code 0: four zero bytes.
        assert!(matches!(read(&[0; 4]), Err(ReadError::Conntrackd(0))));
        // A big-endian host's -c: named after a short grace, not the
        // request's whole deadline (the commit of a takeover waits on it).
        let (ours, mut client) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut client, &46i32.to_be_bytes()).unwrap();
        let mut ours = Async::new(ours).unwrap();
        let got = smol::block_on(future::or(
            async { Some(read_request(&mut ours).await) },
            async {
                Timer::after(READ_DEADLINE / 2).await;
                None
            },
        ));
        assert!(
            matches!(got, Some(Err(ReadError::Conntrackd(46)))),
            "{got:?}"
        );
        // Half a frame of ours is still a timeout.
        assert!(matches!(
            read(&[0, 0, 0, 9, proto::VERSION, 1]),
            Err(ReadError::Timeout)
        ));
        // A header of ours whose body comes within the grace is ours.
        let frame = proto::encode(&Request::Kill);
        let (ours, mut client) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            std::io::Write::write_all(&mut client, &frame[..4]).unwrap();
            std::thread::sleep(BIG_ENDIAN_GRACE / 5);
            std::io::Write::write_all(&mut client, &frame[4..]).unwrap();
            client
        });
        let mut ours = Async::new(ours).unwrap();
        let got = smol::block_on(read_request(&mut ours));
        assert!(matches!(got, Ok(Request::Kill)), "{got:?}");
        drop(writer.join());
        // Our own frames and other garbage are as before.
        assert!(matches!(
            read(&proto::encode(&Request::Kill)),
            Ok(Request::Kill)
        ));
        assert!(matches!(
            read(&[0, 1, 0, 0]),
            Err(ReadError::Frame(FrameError::TooLarge(65536)))
        ));
    }
}
