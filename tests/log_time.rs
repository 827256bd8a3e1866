//! The log's local time follows a time zone changed while the daemon
//! runs (`timedatectl set-timezone` replaces `/etc/localtime`), as
//! conntrackd's `ctime(3)` does: glibc looks at `/etc/localtime` again at
//! every call when `TZ` is unset. The daemon runs in a mount namespace of
//! its own, where a file of the test's is bound over `/etc/localtime`.
//! Needs root (skipped without it).

// Waiting for a daemon is a wall-clock matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::until;

const BIN: &str = env!("CARGO_BIN_EXE_ctsyncd");

/// The `HH:MM` of the log line that contains `text`, in minutes.
fn minutes_of(log: &str, text: &str) -> Option<i64> {
    let line = log.lines().find(|l| l.contains(text))?;
    // `[Mon Dec  7 18:20:00 2026] (pid=…`: the time is the 4th field.
    let time = line.trim_start_matches('[').split_whitespace().nth(3)?;
    let mut hm = time.split(':').map(|x| x.parse::<i64>().ok());
    Some(hm.next()?? * 60 + hm.next()??)
}

/// Minutes of the day now, in UTC.
fn utc_minutes() -> i64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (s / 60) % (24 * 60)
}

/// Offset of `local` from `utc`, both minutes of the day, in -12h..12h.
fn offset(local: i64, utc: i64) -> i64 {
    (local - utc + 36 * 60) % (24 * 60) - 12 * 60
}

#[test]
fn a_time_zone_changed_at_run_time_is_followed() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: a mount namespace needs root");
        return;
    }
    let zones = Path::new("/usr/share/zoneinfo");
    let (utc, kolkata) = (zones.join("UTC"), zones.join("Asia/Kolkata"));
    if !utc.exists() || !kolkata.exists() {
        eprintln!("SKIPPED: no tzdata");
        return;
    }
    let dir = std::env::temp_dir()
        .join(format!("ctsyncd-logtime-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let zone = dir.join("localtime");
    std::fs::copy(&utc, &zone).unwrap();
    let conf = dir.join("ctsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "General {{\n  LogFile {d}/log\n  LockFile {d}/lock\n  UNIX {{ Path {d}/ctl }}\n}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let script = format!(
        "mount --bind {} /etc/localtime && exec {BIN} -C {}",
        zone.display(),
        conf.display()
    );
    let mut daemon = common::Bg(
        Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "sh", "-c"])
            .arg(&script)
            .env_remove("TZ")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let up = until(Duration::from_secs(20), || {
        log().contains("initialization completed")
    });
    assert!(up.is_some(), "not up: {}", log());
    let at_start = minutes_of(&log(), "initialization completed").unwrap();
    assert!(offset(at_start, utc_minutes()).abs() <= 1, "{}", log());
    // The zone changes (UTC+5:30, never on the hour whatever the
    // minute), then a line is logged: the shutdown's.
    std::fs::write(&zone, std::fs::read(&kolkata).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let pid = rustix::process::Pid::from_child(&daemon.0);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let _ = daemon.0.wait();
    let at_stop = minutes_of(&log(), "shutdown received").unwrap();
    let off = offset(at_stop, utc_minutes());
    assert!((329..=331).contains(&off), "offset {off} min:\n{}", log());
    let _ = std::fs::remove_dir_all(&dir);
}
