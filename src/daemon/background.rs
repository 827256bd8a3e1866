//! `-d`: run in the background, but only report success once the daemon is
//! really up.
//!
//! The parent re-executes itself with [`CHILD_ENV`] set and waits. The
//! child starts a new session, initialises (config, lock file, sockets),
//! and only then tells the parent "ready" through its stdout pipe and
//! detaches stdout/stderr. The parent exits 0 on "ready", or 1 with the
//! child's error output when initialisation failed. Re-executing instead of
//! fork() keeps the crate free of `unsafe`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Set in the environment of the background child.
pub const CHILD_ENV: &str = "CTSYNCD_BACKGROUND_CHILD";
/// The line the child prints when it is ready.
const READY: &str = "CTSYNCD-READY";
/// How long the parent waits before it says the start takes long (it
/// goes on waiting: the start-up dump of a large kernel table on a slow
/// router can take minutes, and conntrackd's `-d` returns once its own
/// has finished, however long that is).
const SLOW_START_NOTICE: Duration = Duration::from_secs(60);

/// True in the re-executed background child.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Child side, first thing: leave the terminal's session so that a ^C
/// aimed at the parent does not reach the daemon.
pub fn new_session() {
    let _ = rustix::process::setsid();
}

/// Child side, once initialised: tell the parent, then point stdout and
/// stderr at /dev/null so the daemon never blocks on a dead pipe.
pub fn notify_ready() -> io::Result<()> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // stderr first: the parent waits for it to close before exiting, so
    // every error line written so far reaches the user.
    rustix::stdio::dup2_stderr(&null)?;
    let mut out = io::stdout();
    writeln!(out, "{READY}")?;
    out.flush()?;
    rustix::stdio::dup2_stdout(&null)?;
    Ok(())
}

/// Parent side: start the child and wait for its verdict. The child gets
/// the parent's `argv0`, so that it keeps the name it was invoked as (its
/// personality: the executable itself may be a `conntrackd` symlink).
pub fn spawn_and_wait(argv0: &str, args: &[String]) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            log::error!("fork has failed: cannot find own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut child = match Command::new(exe)
        .arg0(argv0)
        .args(args)
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            log::error!("fork has failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The child closes stderr when ready or when it exits; print what it
    // wrote (warnings, or the reason it failed) then.
    let mut err = child.stderr.take().map(BufReader::new);
    let forward = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        let _ = io::stderr().write_all(&buf);
    });
    let out = child.stdout.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let ready = out.is_some_and(|o| {
            BufReader::new(o)
                .lines()
                .map_while(Result::ok)
                .any(|l| l == READY)
        });
        let _ = tx.send(ready);
    });
    let ready = wait_for_child(&rx, SLOW_START_NOTICE, |waited| {
        log::warn!(
            "the daemon (pid {}) is still initialising after {}s; waiting",
            child.id(),
            waited.as_secs()
        );
    });
    if !ready {
        let _ = child.wait();
    }
    let _ = forward.join();
    if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Waits for the child's verdict on `rx` (true: ready; false or the
/// sender gone: it failed), for as long as it takes, calling `slow` each
/// `notice` with the time waited so far. The child was once killed after
/// 60 s: a start-up dump that took longer left the router without its
/// daemon.
fn wait_for_child(
    rx: &mpsc::Receiver<bool>,
    notice: Duration,
    mut slow: impl FnMut(Duration),
) -> bool {
    let mut waited = Duration::ZERO;
    loop {
        match rx.recv_timeout(notice) {
            Ok(ready) => return ready,
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                waited += notice;
                slow(waited);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_slow_start_is_waited_for_and_said_to_be_slow() {
        let notice = Duration::from_millis(20);
        let (tx, rx) = mpsc::channel();
        // Ready only after the third notice, not after a fixed sleep: on
        // a loaded machine (qemu in CI run 98) the waiter started after
        // the sleep had ended and saw no notice at all.
        let (said_tx, said_rx) = mpsc::channel();
        let late = std::thread::spawn(move || {
            for _ in 0..3 {
                said_rx.recv().unwrap();
            }
            tx.send(true).unwrap();
        });
        let mut notices = Vec::new();
        assert!(wait_for_child(&rx, notice, |w| {
            notices.push(w);
            let _ = said_tx.send(());
        }));
        late.join().unwrap();
        assert!(notices.len() >= 3, "{notices:?}");
        assert_eq!(notices[0], notice);
        assert_eq!(notices[2], notice * 3);
    }

    #[test]
    fn a_failed_or_vanished_child_is_not_ready() {
        let (tx, rx) = mpsc::channel();
        tx.send(false).unwrap();
        assert!(!wait_for_child(&rx, Duration::from_secs(5), |_| {}));
        let (tx, rx) = mpsc::channel::<bool>();
        drop(tx);
        assert!(!wait_for_child(&rx, Duration::from_secs(5), |_| {}));
    }
}
