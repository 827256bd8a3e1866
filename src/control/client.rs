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
    /// The daemon closed without a byte, and conntrackd's protocol has no
    /// such request either (a conntrackd daemon would have been asked in
    /// its own).
    Unanswered,
    /// No answer within the time allowed (the daemon may still be at it).
    Timeout(Duration),
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
            ClientError::Unanswered => f.write_str(
                "the daemon closed the connection without an answer (a \
                 conntrackd daemon? it has no such request)",
            ),
            ClientError::Timeout(t) => write!(
                f,
                "no answer from the daemon within {} s; it may still be at it",
                t.as_secs()
            ),
            ClientError::Frame(e) => write!(f, "control socket: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// How long to wait for the daemon. A commit may legitimately take long
/// (hundreds of thousands of entries on a slow router), and a `-B` asked
/// during one is answered after it; so are `-R` and `-F`, kernel jobs
/// that the one kernel worker runs after the commit (and `-R`, after the
/// dump that follows it), and `-i`, a kernel dump with
/// `DisableInternalCache`.
fn reply_timeout(req: &Request) -> Duration {
    match req {
        Request::Commit(_)
        | Request::BulkSend
        | Request::ResyncKernel(_)
        | Request::FlushKernel(_)
        | Request::Dump {
            cache: proto::Cache::Internal,
            ..
        } => Duration::from_secs(600),
        _ => Duration::from_secs(120),
    }
}

/// Sends `req` and copies the daemon's output to `out`.
///
/// A daemon that closes the connection without a byte of answer is taken
/// for conntrackd (the binary was replaced during a migration, its daemon
/// not yet restarted: a takeover's `conntrackd -c` must still commit), and
/// asked again in conntrackd's protocol when it has such a request. Our
/// frame cost it nothing: it read its first four bytes as a request code
/// it does not know (a frame's length, below 16, on a big-endian host).
pub fn request(
    path: &Path,
    req: &Request,
    out: &mut dyn Write,
) -> Result<Status, ClientError> {
    let timeout = reply_timeout(req);
    match request_within(path, req, out, timeout) {
        Err(ClientError::Unanswered) => {
            let code =
                super::conntrackd::code(req).ok_or(ClientError::Unanswered)?;
            super::conntrackd::ask(path, code, out, timeout)?;
            Ok(Status::Ok)
        }
        r => r,
    }
}

fn request_within(
    path: &Path,
    req: &Request,
    out: &mut dyn Write,
    timeout: Duration,
) -> Result<Status, ClientError> {
    let mut s = UnixStream::connect(path).map_err(ClientError::Connect)?;
    s.set_read_timeout(Some(timeout)).map_err(ClientError::Io)?;
    s.write_all(&proto::encode(req)).map_err(ClientError::Io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut answered = false;
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
        let n = match read_some(&mut s, &mut chunk, timeout) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            // conntrackd closes on a request it does not know with the
            // rest of our frame unread: a reset, not an end.
            Err(ClientError::Io(e))
                if !answered && e.kind() == io::ErrorKind::ConnectionReset =>
            {
                return Err(ClientError::Unanswered);
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(if answered {
                ClientError::Truncated
            } else {
                ClientError::Unanswered
            });
        }
        answered = true;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One read of the daemon's answer; None when it was interrupted and
/// must be made again.
pub(super) fn read_some(
    s: &mut UnixStream,
    chunk: &mut [u8],
    timeout: Duration,
) -> Result<Option<usize>, ClientError> {
    match s.read(chunk) {
        Ok(n) => Ok(Some(n)),
        // A socket with a receive timeout fails its read with EINTR when
        // the process is stopped and continued (Ctrl-Z, `fg`), with no
        // handler installed (signal(7)): the answer still comes, so the
        // read is made again.
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        // What a read timeout returns.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(ClientError::Timeout(timeout))
        }
        Err(e) => Err(ClientError::Io(e)),
    }
}

#[cfg(test)]
mod test {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn a_daemon_that_does_not_answer_in_time_is_named_as_such() {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl");
        let _ = std::fs::remove_file(&path);
        // Accepts and reads, never answers (a daemon busy elsewhere).
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::time::Duration::from_millis(100);
        let mut out = Vec::new();
        let e =
            request_within(&path, &Request::BulkSend, &mut out, t).unwrap_err();
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(e, ClientError::Timeout(_)), "{e:?}");
        assert!(e.to_string().starts_with("no answer from the daemon"));
        // A -B asked during a commit is answered after it.
        let commit = reply_timeout(&Request::Commit(proto::Target::All));
        assert_eq!(reply_timeout(&Request::BulkSend), commit);
        // So are -R and -F: the one kernel worker runs jobs in order, and
        // the notify script's -R after -c also waits for the dump that
        // follows the commit. With 120 s they timed out (exit 1) while
        // the daemon was still at them.
        for t in [proto::Target::All, proto::Target::Ct, proto::Target::Expect]
        {
            assert_eq!(reply_timeout(&Request::ResyncKernel(t)), commit);
            assert_eq!(reply_timeout(&Request::FlushKernel(t)), commit);
        }
        // And -i with DisableInternalCache: a live kernel dump, a job too.
        let live = Request::Dump {
            cache: proto::Cache::Internal,
            table: proto::Table::Ct,
            format: proto::Format::Plain,
        };
        assert_eq!(reply_timeout(&live), commit);
    }

    #[test]
    fn a_client_stopped_and_continued_still_gets_its_answer() {
        // Ctrl-Z and `fg` during a long `-c`: on Linux a read of a socket
        // with a receive timeout fails with EINTR once the process is
        // continued (signal(7)), even without a signal handler.
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-client-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        // Answers a while after the request, as a commit would.
        let daemon = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 7];
            s.read_exact(&mut req).unwrap();
            std::thread::sleep(Duration::from_millis(800));
            // A client that gave up has closed: not this thread's failure.
            let _ = s.write_all(&proto::encode(&Reply::Data("done\n".into())));
            let _ = s.write_all(&proto::encode(&Reply::Done(Status::Ok)));
        });
        // Stops this process while the client waits, then continues it.
        let pid = std::process::id();
        let mut stopper = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep 0.3; kill -STOP {pid}; sleep 0.1; kill -CONT {pid}"
            ))
            .spawn()
            .unwrap();
        let mut out = Vec::new();
        let got = request_within(
            &path,
            &Request::Commit(proto::Target::All),
            &mut out,
            Duration::from_secs(10),
        );
        let _ = stopper.wait();
        daemon.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(got, Ok(Status::Ok)), "{got:?}");
        assert_eq!(out, b"done\n");
    }
}
