//! CLI side of the control socket (blocking std I/O: one request, then
//! print the replies).
//!
//! Owns: the exit status contract. Unlike conntrackd, whose client exits 0
//! whenever it could connect, the status reflects the daemon's answer:
//! 0 done, [`DAEMON_SAID_NO`] (2) refused, failed or not supported, with
//! the reason on stderr; 1, as conntrackd, when there was no answer (no
//! daemon, or a bad command line or configuration) or when the answer
//! could not be written out (a reader that left is not reported: `-i |
//! head`). Scripts written for conntrackd test `$? -eq 1` for "failed to
//! invoke", so they see the same thing from both.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::proto::{self, MAX_REPLY, Reply, Request, Status};

/// The exit status of a request the daemon answered with anything but
/// done.
pub const DAEMON_SAID_NO: u8 = 2;

/// Why the exchange failed before the daemon gave an outcome.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon listens at the path.
    Connect(io::Error),
    Io(io::Error),
    /// The output could not be written (stdout: a pipe whose reader
    /// left, a full disk); the daemon and its socket are not at fault.
    Output(io::Error),
    /// The daemon closed without a final status.
    Truncated,
    Frame(proto::FrameError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(_) => f.write_str(
                "can't connect: is ctsyncd running? appropriate permissions?",
            ),
            ClientError::Io(e) => write!(f, "control socket: {e}"),
            ClientError::Output(e) => write!(f, "can't write the output: {e}"),
            ClientError::Truncated => f.write_str(
                "the daemon closed the connection without an answer",
            ),
            ClientError::Frame(e) => write!(f, "control socket: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// How long to wait for the daemon. A commit may legitimately take long
/// (hundreds of thousands of entries on a slow router).
fn reply_timeout(req: &Request) -> Duration {
    match req {
        Request::Commit(_) => Duration::from_secs(600),
        _ => Duration::from_secs(120),
    }
}

/// Sends `req` and copies the daemon's output to `out`.
pub fn request(
    path: &Path,
    req: &Request,
    out: &mut dyn Write,
) -> Result<Status, ClientError> {
    let mut s = UnixStream::connect(path).map_err(ClientError::Connect)?;
    s.set_read_timeout(Some(reply_timeout(req)))
        .map_err(ClientError::Io)?;
    s.write_all(&proto::encode(req)).map_err(ClientError::Io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((reply, used)) = proto::decode::<Reply>(&buf, MAX_REPLY)
            .map_err(ClientError::Frame)?
        {
            buf.drain(..used);
            match reply {
                Reply::Data(text) => {
                    out.write_all(text.as_bytes())
                        .map_err(ClientError::Output)?;
                }
                Reply::Done(status) => return Ok(status),
            }
        }
        let n = s.read(&mut chunk).map_err(ClientError::Io)?;
        if n == 0 {
            return Err(ClientError::Truncated);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
