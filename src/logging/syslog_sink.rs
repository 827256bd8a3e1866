//! A syslog connection that comes back. The `syslog` crate connects its
//! datagram socket once; a syslog daemon that owns `/dev/log` itself
//! (OpenWrt's logd, rsyslog without socket activation) makes a new socket
//! when it restarts, and every later line failed for the rest of the run.
//! glibc's syslog(3), which conntrackd uses, connects again; so does this:
//! at a line's failure, then at most once a second while it fails. A
//! syslog that is not there yet when the daemon starts (a router's logd
//! started after it) is waited for the same way: glibc connects at the
//! first line and at each one after until it succeeds.

// I/O layer: the retry pacing reads the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{GlibcLine, Syslog};

/// While connecting again fails, it is tried at most this often.
const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(super) struct SyslogSink {
    logger: Option<Syslog>,
    formatter: GlibcLine,
    /// None: the system's socket (`/dev/log`, else `/var/run/syslog`).
    path: Option<PathBuf>,
    /// When connecting again last failed (or its line did).
    failed_at: Option<Instant>,
}

impl SyslogSink {
    /// A sink for `path`, and why connecting failed if it did: the sink
    /// then connects at a later line (see the module header).
    pub(super) fn connect(
        formatter: GlibcLine,
        path: Option<PathBuf>,
    ) -> (SyslogSink, Option<syslog::Error>) {
        let (logger, why) = match open(&formatter, path.as_deref()) {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(e)),
        };
        let failed_at = why.is_some().then(Instant::now);
        let sink = SyslogSink {
            logger,
            formatter,
            path,
            failed_at,
        };
        (sink, why)
    }

    /// Sends a line with `send`; when that fails, connects again (see the
    /// module header) and sends it once more. False: it was not sent.
    pub(super) fn send(
        &mut self,
        send: impl Fn(&mut Syslog) -> syslog::Result<()>,
    ) -> bool {
        if let Some(l) = self.logger.as_mut()
            && send(l).is_ok()
        {
            return true;
        }
        self.logger = None;
        if self.failed_at.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return false;
        }
        match open(&self.formatter, self.path.as_deref()) {
            Ok(mut l) => {
                let sent = send(&mut l).is_ok();
                self.failed_at = (!sent).then(Instant::now);
                self.logger = Some(l);
                sent
            }
            Err(_) => {
                self.failed_at = Some(Instant::now());
                false
            }
        }
    }
}

fn open(f: &GlibcLine, path: Option<&Path>) -> syslog::Result<Syslog> {
    match path {
        Some(p) => syslog::unix_custom(f.clone(), p),
        None => syslog::unix(f.clone()),
    }
}

#[cfg(test)]
mod test {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn a_restarted_syslog_daemon_gets_the_next_line() {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let daemon = UnixDatagram::bind(&path).unwrap();
        let formatter = GlibcLine {
            facility: syslog::Facility::LOG_DAEMON,
            ident: "ctsyncd".into(),
            pid: 7,
        };
        let (mut sink, why) =
            SyslogSink::connect(formatter.clone(), Some(path.clone()));
        assert!(why.is_none(), "{why:?}");
        let mut buf = [0u8; 512];
        assert!(sink.send(|l| l.notice("one")));
        let n = daemon.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"ctsyncd[7]: one"));
        // The daemon restarts: a new socket at the same path.
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        let daemon = UnixDatagram::bind(&path).unwrap();
        assert!(sink.send(|l| l.notice("two")));
        let n = daemon.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"ctsyncd[7]: two"));
        // Gone: counted as not sent, and not tried again at once.
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        assert!(!sink.send(|l| l.notice("three")));
        assert!(sink.failed_at.is_some());
        // Not there at the start: said so, and connected at a later line.
        let (mut sink, why) =
            SyslogSink::connect(formatter, Some(path.clone()));
        assert!(why.is_some());
        assert!(!sink.send(|l| l.notice("four")));
        let daemon = UnixDatagram::bind(&path).unwrap();
        // The second between two tries has passed.
        sink.failed_at = sink.failed_at.map(|t| t - RETRY_EVERY);
        assert!(sink.send(|l| l.notice("five")));
        let n = daemon.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"ctsyncd[7]: five"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
