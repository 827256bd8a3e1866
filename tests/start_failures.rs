//! A start that fails logs what conntrackd 1.4.7 logs, line for line:
//! the reason, then `initialization failed` when the mode's own start
//! failed (a sync link that does not open), then `… cannot start, please
//! review your configuration`; a control socket that cannot be bound is
//! not the mode's start, and has no `initialization failed`. Both daemons
//! run the same configuration in a network namespace of the test's; the
//! ERROR lines are compared (the daemon's name and the reason's detail
//! after the reason's first words aside). Needs root and conntrackd.

// Waiting for a process is a wall-clock matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Netns;

const CONNTRACKD: &str = "/usr/sbin/conntrackd";

/// The ERROR lines `bin` logs starting with `sync` (its log file), with
/// its exit status: each line's text after the level, up to the first
/// `:` or `(` (the reason's detail is each daemon's own) and with the
/// daemon's name as `NAME`.
fn start(
    ns: &Netns,
    bin: &str,
    tag: &str,
    unix: Option<&str>,
    sync: &str,
) -> (Option<i32>, Vec<String>) {
    let dir = std::env::temp_dir()
        .join(format!("ctsyncd-sf-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let unix = unix.map_or(format!("{d}/ctl"), str::to_string);
    let conf = dir.join("c.conf");
    std::fs::write(
        &conf,
        format!("General {{\n  LogFile {d}/log\n  LockFile {d}/lock\n  UNIX {{ Path {unix} }}\n  Syslog off\n}}\nSync {{\n{sync}\n}}\n"),
    )
    .unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, bin, "-C"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let errors = log
        // conntrackd ends its last line without a newline, and the next
        // run's line follows on it.
        .split("[ERROR] ")
        .skip(1)
        .map(|rest| {
            let text = rest.split(['\n', '[']).next().unwrap_or("").trim_end();
            let text = text.split([':', '(']).next().unwrap_or("").trim_end();
            text.replace("conntrackd cannot", "NAME cannot")
                .replace("ctsyncd cannot", "NAME cannot")
        })
        .collect();
    (status, errors)
}

#[test]
fn failed_starts_log_conntrackds_lines() {
    if !std::path::Path::new(CONNTRACKD).exists() {
        eprintln!(
            "SKIPPED failed_starts_log_conntrackds_lines: {CONNTRACKD} is not installed"
        );
        return;
    }
    let Some(ns) = Netns::new("startfail") else {
        return;
    };
    let ours = common::fw::bin();
    let link = |iface: &str| {
        format!(
            "Mode FTFW {{ }}\nUDP {{ IPv4_address 10.99.99.1 IPv4_Destination_Address 10.99.99.2 Port 3780 Interface {iface} }}"
        )
    };
    let cases = [
        ("nodev", None, link("nosuch0")),
        ("nounix", Some("/nonexistent/ctsyncd-test/ctl"), link("lo")),
    ];
    for (tag, unix, sync) in cases {
        let theirs = start(&ns, CONNTRACKD, &format!("{tag}-c"), unix, &sync);
        let ours = start(&ns, &ours, &format!("{tag}-s"), unix, &sync);
        assert_eq!(theirs.0, Some(1), "{tag}: conntrackd {theirs:?}");
        assert_eq!(ours, theirs, "{tag}: ctsyncd's (left) and conntrackd's");
    }
}
