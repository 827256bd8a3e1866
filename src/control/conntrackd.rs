//! conntrackd 1.4's own control protocol, served beside ours.
//!
//! Owns: conntrackd's request codes (reference 2.2) and what each asks of
//! ctsyncd, and the relay that answers such a client the way conntrackd
//! does. conntrackd's client sends one host-endian 32-bit request code
//! and prints whatever text comes back until the daemon closes; there is
//! no status. A keepalived notify script that still runs conntrackd's
//! binary (`conntrackd -c` at takeover, while a firewall is half way
//! through its migration) and monitoring that speaks the socket directly
//! keep working against ctsyncd.
//!
//! The daemon handles such a request as any other: it writes its reply
//! frames into one end of a socket pair, and [`relay`] reads them from the
//! other, writing their text to the client unframed and closing it at the
//! last frame. Commits stay synchronous for the caller: the last frame
//! comes when the commit has finished, as conntrackd closes a commit's
//! connection only then.

use std::io::{self, Read as _};
use std::os::unix::net::UnixStream;

use smol::Async;

use super::proto::{
    self, Cache, CacheSel, Format, MAX_REPLY, Reply, Request, StatsView, Table,
    Target,
};
use super::server;

/// conntrackd 1.4.7's command line for each request code its client
/// sends (reference 2.2). 19 and 27 exist but no command sends them.
pub const COMMANDS: &[(u8, &str)] = &[
    (0, "-F ct"),
    (1, "-R ct"),
    (16, "-i"),
    (17, "-e"),
    (18, "-c ct"),
    (20, "-k"),
    (21, "-s"),
    (22, "-B"),
    (23, "-n"),
    (24, "-i -x"),
    (25, "-e -x"),
    (26, "-t"),
    (28, "-s network"),
    (29, "-s cache"),
    (30, "-s runtime"),
    (31, "-s link"),
    (32, "-s rsqueue"),
    (33, "-f internal"),
    (34, "-f external"),
    (35, "-s process"),
    (36, "-s queue"),
    (37, "-s expect"),
    (38, "-F expect"),
    (39, "-R expect"),
    (40, "-i expect"),
    (41, "-e expect"),
    (42, "-c expect"),
    (43, "-F"),
    (44, "-R"),
    (45, "-f"),
    (46, "-c"),
    (47, "-i expect -x"),
    (48, "-e expect -x"),
];

/// The command conntrackd's client sent `code` for, for log lines.
pub fn command(code: u8) -> &'static str {
    COMMANDS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unknown", |(_, cmd)| cmd)
}

/// What request `code` asks for: the request ctsyncd's own client sends
/// for the same command line (a test holds the two to each other). None
/// for a code no conntrackd command sends.
pub fn request(code: u8) -> Option<Request> {
    use Request::*;
    let dump = |cache, table, format| Dump {
        cache,
        table,
        format,
    };
    let stats = |view| Stats {
        view,
        format: Format::Plain,
    };
    Some(match code {
        0 => FlushKernel(Target::Ct),
        1 => ResyncKernel(Target::Ct),
        16 => dump(Cache::Internal, Table::Ct, Format::Plain),
        17 => dump(Cache::External, Table::Ct, Format::Plain),
        18 => Commit(Target::Ct),
        20 => Kill,
        21 => stats(StatsView::General),
        22 => BulkSend,
        23 => RequestResync,
        24 => dump(Cache::Internal, Table::Ct, Format::Xml),
        25 => dump(Cache::External, Table::Ct, Format::Xml),
        26 => ResetTimers,
        28 => stats(StatsView::Network),
        29 => stats(StatsView::Cache),
        30 => stats(StatsView::Runtime),
        31 => stats(StatsView::Link),
        32 => stats(StatsView::RsQueue),
        33 => FlushCache(CacheSel::Internal),
        34 => FlushCache(CacheSel::External),
        35 => stats(StatsView::Process),
        36 => stats(StatsView::Queue),
        37 => stats(StatsView::Expect),
        38 => FlushKernel(Target::Expect),
        39 => ResyncKernel(Target::Expect),
        40 => dump(Cache::Internal, Table::Expect, Format::Plain),
        41 => dump(Cache::External, Table::Expect, Format::Plain),
        42 => Commit(Target::Expect),
        43 => FlushKernel(Target::All),
        44 => ResyncKernel(Target::All),
        45 => FlushCache(CacheSel::All),
        46 => Commit(Target::All),
        47 => dump(Cache::Internal, Table::Expect, Format::Xml),
        48 => dump(Cache::External, Table::Expect, Format::Xml),
        _ => return None,
    })
}

/// The request code conntrackd's client sends for `req`; None for a
/// request of ctsyncd's own (`--json`, `-s ready`, …).
pub fn code(req: &Request) -> Option<u8> {
    COMMANDS
        .iter()
        .map(|(c, _)| *c)
        .find(|&c| request(c).as_ref() == Some(req))
}

/// Asks a conntrackd daemon at `path` for `code`, as its own client does
/// (one host-endian 32-bit code), and copies the text it answers to `out`
/// until it closes: conntrackd's protocol has no status.
///
/// # Errors
/// The connection's or the output's, or no end of the answer within
/// `timeout` of a read.
pub fn ask(
    path: &std::path::Path,
    code: u8,
    out: &mut dyn std::io::Write,
    timeout: std::time::Duration,
) -> Result<(), super::client::ClientError> {
    use super::client::{ClientError, read_some};
    use std::io::Write as _;
    let mut s = UnixStream::connect(path).map_err(ClientError::Connect)?;
    s.set_read_timeout(Some(timeout)).map_err(ClientError::Io)?;
    (&s).write_all(&i32::from(code).to_ne_bytes())
        .map_err(ClientError::Io)?;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match read_some(&mut s, &mut chunk, timeout)? {
            None => {}
            Some(0) => return Ok(()),
            Some(n) => {
                out.write_all(&chunk[..n]).map_err(ClientError::Output)?
            }
        }
    }
}

/// A conntrackd client's connection, ready for the daemon: the end of a
/// socket pair the daemon writes its reply frames to, in place of the
/// client's own socket, and the other end, for [`relay`].
pub fn pair() -> io::Result<(Async<UnixStream>, Async<UnixStream>)> {
    let (daemon_side, relay_side) = UnixStream::pair()?;
    Ok((Async::new(daemon_side)?, Async::new(relay_side)?))
}

/// The room the relay takes for a frame while conntrackd's client reads
/// it: the daemon's reply budget (`daemon::reply_budget`), seen from here.
pub trait Room {
    /// Given back when dropped.
    type Held;
    /// Takes `bytes`, or None when the budget has no room for them.
    fn hold(&self, bytes: usize) -> Option<Self::Held>;
    /// Whether the budget is needed: a client that stalls then gives way.
    fn pressed(&self) -> bool;
    /// The client's write failed with `failed` (counted when it stopped
    /// reading).
    fn gave_up(&self, failed: &std::io::Error);
}

/// Reads the daemon's reply frames from `frames` and writes their text to
/// conntrackd's `client`, unframed; closes the client at the last frame
/// (or when the daemon's side goes away). A refusal or failure has no
/// place in conntrackd's protocol: it goes to the log, where conntrackd
/// puts its own (a refusal is there already, from where it was made).
///
/// A client that stops reading (`conntrackd -i | less`, a script that
/// takes its time over each line) is waited for, as ctsyncd's own client
/// is (`daemon::reply_writer`): while a frame waits for it, the relay
/// holds what it has in memory (the frame, what it read past it, its read
/// buffer) in `room`, and the client is given up on past the write
/// deadlines only when the room is pressed, or was too full to take it.
/// (It used to be dropped after 5 s of not reading whatever, its dump cut
/// short.)
pub async fn relay<R: Room>(
    frames: Async<UnixStream>,
    mut client: Async<UnixStream>,
    code: u8,
    room: &R,
) {
    // What was read and not yet relayed; also the read buffer (see below).
    let mut buf = Vec::new();
    loop {
        match proto::decode::<Reply>(&buf, MAX_REPLY) {
            Ok(Some((reply, used))) => {
                buf.drain(..used);
                // Nothing read past the frame: no buffer is kept while
                // the client reads it or the next frame is waited for.
                if buf.is_empty() {
                    buf = Vec::new();
                } else {
                    buf.shrink_to(READ);
                }
                match reply {
                    Reply::Data(text) => {
                        // All this relay holds while its client reads:
                        // the frame's text and what it read past it.
                        let held = room.hold(text.len() + buf.capacity());
                        let counted = held.is_some();
                        let patient = || counted && !room.pressed();
                        let sent = server::write_frame_patiently(
                            &mut client,
                            text.as_bytes(),
                            &patient,
                        )
                        .await;
                        drop(held);
                        if let Err(e) = sent {
                            room.gave_up(&e);
                            return;
                        }
                    }
                    Reply::Done(status) => {
                        // A refusal was logged where it was made (the
                        // reply budget at most once a minute, a commit
                        // under way by the node): logged again here, a
                        // script polling `conntrackd -i` while the budget
                        // was full wrote a line per call.
                        let level = match status {
                            proto::Status::Ok => return,
                            proto::Status::Refused(_) => log::Level::Debug,
                            _ => log::Level::Warn,
                        };
                        log::log!(
                            level,
                            "control: conntrackd's client's {} (request {code}): {status}",
                            command(code)
                        );
                        return;
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                log::error!("control: cannot relay a reply frame: {e}");
                return;
            }
        }
        // The read buffer is taken once there is something to read: a
        // relay waiting for its answer (a -R behind a dump, a notify
        // script's request behind a commit) held 64 KiB for nothing,
        // outside the reply budget, for as long as it waited.
        if frames.readable().await.is_err() {
            return;
        }
        let start = buf.len();
        buf.resize(start + READ, 0);
        let got = (&mut frames.get_ref()).read(&mut buf[start..]);
        buf.truncate(start + *got.as_ref().unwrap_or(&0));
        if buf.is_empty() {
            buf = Vec::new();
        }
        match got {
            Ok(0) => return,
            Ok(_) => {}
            // Readiness another read used up: wait again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Most the relay reads from the daemon's side at once.
const READ: usize = 64 * 1024;

#[cfg(test)]
mod test {
    use std::io::Read as _;

    use super::*;
    use crate::cli::{Invocation, RunMode};
    use crate::control::proto::Status;

    #[test]
    fn every_code_asks_what_our_client_asks_for_the_same_command() {
        for &(code, cmd) in COMMANDS {
            let mut args = vec!["-C", "/x.conf"];
            args.extend(cmd.split(' '));
            let parsed = crate::cli::parse(&args).unwrap();
            let Invocation::Run {
                mode: RunMode::Client(ours),
                ..
            } = parsed.invocation
            else {
                panic!("{cmd}: not a client command");
            };
            assert_eq!(request(code), Some(ours), "request {code} ({cmd})");
        }
        assert_eq!(request(19), None);
        assert_eq!(request(27), None);
        assert_eq!(request(49), None);
        assert_eq!(command(46), "-c");
        assert_eq!(command(19), "unknown");
    }

    /// Room for every frame, noting the most asked for at once (the
    /// daemon's budget and its pressure are `daemon::reply_writer`'s
    /// tests').
    #[derive(Default)]
    struct Ample(std::cell::Cell<usize>);

    impl Room for Ample {
        type Held = ();
        fn hold(&self, bytes: usize) -> Option<()> {
            self.0.set(self.0.get().max(bytes));
            Some(())
        }
        fn pressed(&self) -> bool {
            false
        }
        fn gave_up(&self, _: &std::io::Error) {}
    }

    /// What conntrackd's client reads, up to the end of its answer, when
    /// the daemon answers `replies` (written in `cuts` pieces).
    fn relayed(replies: &[Reply], cuts: usize) -> String {
        relayed_in(replies, cuts, &Ample::default())
    }

    fn relayed_in(replies: &[Reply], cuts: usize, room: &Ample) -> String {
        let (daemon, relay_side) = pair().unwrap();
        let (ours, mut client) = UnixStream::pair().unwrap();
        let ours = Async::new(ours).unwrap();
        let bytes: Vec<u8> = replies.iter().flat_map(proto::encode).collect();
        let writer = std::thread::spawn(move || {
            let mut d = daemon.into_inner().unwrap();
            d.set_nonblocking(false).unwrap();
            let step = bytes.len().div_ceil(cuts);
            for piece in bytes.chunks(step) {
                std::io::Write::write_all(&mut d, piece).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // The daemon keeps its end open: only the last frame ends the
            // client's answer.
            std::thread::sleep(std::time::Duration::from_millis(300));
        });
        smol::block_on(relay(relay_side, ours, 21, room));
        let mut got = String::new();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        // Ends only when the relay closed the client's socket.
        client
            .read_to_string(&mut got)
            .expect("the client's socket closed");
        writer.join().unwrap();
        got
    }

    #[test]
    fn the_text_goes_out_unframed_and_the_last_frame_closes() {
        let stats = "cache internal:\ncurrent active connections:\t 3\n";
        let replies = [
            Reply::Data(stats.into()),
            Reply::Data("more\n".into()),
            Reply::Done(Status::Ok),
        ];
        for cuts in [1, 3, 40] {
            assert_eq!(relayed(&replies, cuts), format!("{stats}more\n"));
        }
        // A refusal: nothing for the client (conntrackd logs its own).
        let refused = [Reply::Done(Status::Refused("busy".into()))];
        assert_eq!(relayed(&refused, 1), "");
    }

    #[test]
    fn a_frame_waiting_for_its_client_holds_all_the_relay_has_read() {
        // Not just the frame's text: what was read past the frame (here
        // the last frame, in the 64 KiB read buffer) is memory a stalled
        // relay keeps.
        let room = Ample::default();
        let text = "x".repeat(1000);
        let replies = [Reply::Data(text.clone()), Reply::Done(Status::Ok)];
        assert_eq!(relayed_in(&replies, 1, &room), text);
        assert!(room.0.get() >= 64 * 1024 + text.len(), "{}", room.0.get());
    }
}
