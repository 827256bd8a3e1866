//! Log lines that the LogFile does not take (a full disk) are counted,
//! and the count is shown: `-s runtime --json`'s `log_write_errors`. The
//! daemon keeps running and answering. `/dev/full` is the full disk: it
//! opens for append and refuses every write with ENOSPC. Runs
//! unprivileged: everything else lives in a temporary directory.

// Waiting for a daemon is a wall-clock matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::until;

const BIN: &str = env!("CARGO_BIN_EXE_ctsyncd");

fn cli(conf: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("-C")
        .arg(conf)
        .args(args)
        .output()
        .unwrap()
}

/// The `log_write_errors` of `-s runtime --json`.
fn log_write_errors(conf: &Path) -> u64 {
    let out = cli(conf, &["-s", "runtime", "--json"]);
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{json}");
    let (_, rest) = json
        .split_once("\"log_write_errors\":")
        .unwrap_or_else(|| panic!("no log_write_errors: {json}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {json}"))
}

/// Runs a General-only daemon logging to `log` until the test ends.
struct Daemon {
    dir: PathBuf,
    conf: PathBuf,
    child: std::process::Child,
}

impl Daemon {
    fn start(name: &str, log: Option<&Path>) -> Daemon {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-logerr-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = log.map_or_else(|| dir.join("log"), Path::to_path_buf);
        let conf = dir.join("ctsyncd.conf");
        std::fs::write(
            &conf,
            format!(
                "General {{\n  LogFile {}\n  LockFile {d}/lock\n  UNIX {{ Path {d}/ctl }}\n}}\n",
                log.display(),
                d = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .arg("-C")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sock = dir.join("ctl");
        let up = until(Duration::from_secs(10), || {
            UnixStream::connect(&sock).is_ok()
        });
        assert!(up.is_some(), "the daemon never opened its control socket");
        Daemon { dir, conf, child }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = cli(&self.conf, &["-k"]);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn log_lines_a_full_disk_refused_are_counted_and_shown() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        eprintln!("SKIPPED: no /dev/full");
        return;
    }
    let d = Daemon::start("full", Some(full));
    // "initialization completed" and "-- starting in console mode --"
    // were refused at least, and the daemon answers on.
    let refused = log_write_errors(&d.conf);
    assert!(refused >= 2, "{refused}");
    drop(d);

    // The control: a log file that takes every line counts nothing.
    let ok = Daemon::start("ok", None);
    assert_eq!(log_write_errors(&ok.conf), 0);
}
