//! Why the daemon could not start or had to stop: one typed error whose
//! `Display` is the line the log gets (conntrackd's text where conntrackd
//! has one). Errnos are compared by name everywhere (`rustix::io::Errno`),
//! never by an x86 number.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A start-up or run-time failure of the daemon.
#[derive(Debug)]
pub enum Error {
    /// The lock file exists (`stale_pid`: its recorded owner is gone).
    LockHeld {
        path: PathBuf,
        stale_pid: Option<i32>,
        /// The program's name in the message (`ctsyncd`, `conntrackd`).
        program: &'static str,
    },
    /// The lock file could not be created.
    Lock {
        path: PathBuf,
        source: io::Error,
    },
    Signals(io::Error),
    /// The control socket could not be bound.
    UnixSocket {
        path: PathBuf,
        source: io::Error,
    },
    /// A ctnetlink socket could not be opened.
    Netlink(io::Error),
    /// The kernel worker thread could not be started, or died.
    Worker(Option<io::Error>),
    /// A dedicated link could not be opened.
    Link(io::Error),
    /// The start-up dump of the kernel table failed.
    KernelTable(String),
    /// The `Stats` section's log file could not be opened.
    LogFile {
        path: PathBuf,
        source: io::Error,
    },
    /// No `Sync` section where one is needed.
    NoSync,
    /// An `AuthenticationKeyFile` was refused.
    Key(super::keyfile::KeyFileError),
    /// The kernel's random source failed (no session, nonce or epoch).
    Random(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LockHeld {
                path,
                stale_pid: Some(pid),
                ..
            } => write!(
                f,
                "lockfile `{}' is stale: the daemon that created it (pid={pid}) is \
                 not running; it probably crashed. Remove the file to start",
                path.display()
            ),
            Error::LockHeld {
                path,
                stale_pid: None,
                program,
            } => write!(
                f,
                "lockfile `{}' exists, perhaps {program} already running?",
                path.display()
            ),
            Error::Lock { path, source } => {
                write!(
                    f,
                    "can't create lockfile `{}': {source}",
                    path.display()
                )
            }
            Error::Signals(e) => {
                write!(f, "can't install signal handlers: {e}")
            }
            Error::UnixSocket { path, source } => write!(
                f,
                "can't open unix socket! ({}: {source})",
                path.display()
            ),
            Error::Netlink(e) => write!(
                f,
                "can't open netlink handler: {e} (no ctnetlink kernel support?)"
            ),
            Error::Worker(Some(e)) => {
                write!(f, "can't start the kernel worker: {e}")
            }
            Error::Worker(None) => write!(f, "the kernel worker died"),
            Error::Link(e) => write!(f, "{e}"),
            Error::KernelTable(why) => {
                write!(f, "can't get kernel conntrack table: {why}")
            }
            // conntrackd's words for either log file.
            Error::LogFile { path, source } => write!(
                f,
                "can't open logfile `{}'.Reason: {source}",
                path.display()
            ),
            Error::NoSync => write!(f, "no Sync section"),
            Error::Key(e) => write!(f, "{e}"),
            Error::Random(e) => write!(f, "can't get random bytes: {e}"),
        }
    }
}

impl Error {
    /// Whether the failure is the mode's own start (kernel sockets, the
    /// worker, links, keys, the start-up dump), after which conntrackd
    /// logs `initialization failed` before `cannot start`; not the lock
    /// file, signals or control socket it sets up before.
    pub fn in_mode_init(&self) -> bool {
        !matches!(
            self,
            Error::LockHeld { .. }
                | Error::Lock { .. }
                | Error::Signals(_)
                | Error::UnixSocket { .. }
                | Error::Worker(None)
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Lock { source, .. }
            | Error::UnixSocket { source, .. }
            | Error::LogFile { source, .. } => Some(source),
            Error::Signals(e)
            | Error::Netlink(e)
            | Error::Link(e)
            | Error::Random(e)
            | Error::Worker(Some(e)) => Some(e),
            Error::Key(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn messages_keep_conntrackd_texts() {
        let e = Error::UnixSocket {
            path: "/var/run/x.ctl".into(),
            source: io::Error::from_raw_os_error(
                rustix::io::Errno::ACCESS.raw_os_error(),
            ),
        };
        assert!(
            e.to_string()
                .starts_with("can't open unix socket! (/var/run/x.ctl: ")
        );
        let e = Error::Netlink(io::Error::from_raw_os_error(
            rustix::io::Errno::PERM.raw_os_error(),
        ));
        assert!(e.to_string().starts_with("can't open netlink handler: "));
        assert!(e.to_string().ends_with("(no ctnetlink kernel support?)"));
    }
}
