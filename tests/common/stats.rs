//! Stats mode's tests against conntrackd 1.4.7: both daemons from
//! configuration text with every path in a directory of their own, in
//! one network namespace; their stats logs and client output read back.

#![allow(dead_code)]
// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::Netns;
#[allow(unused_imports)]
pub use super::ctd::CONNTRACKD;

pub fn bin() -> String {
    std::env::var("CTSYNCD_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ctsyncd").to_string())
}

/// A stats-mode configuration with every path inside `dir`.
pub fn conf(dir: &Path, extra_general: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let d = dir.display();
    let path = dir.join("stats.conf");
    std::fs::write(
        &path,
        format!(
            "General {{\n HashSize 1024\n HashLimit 4096\n LogFile {d}/daemon.log\n LockFile {d}/lock\n UNIX {{ Path {d}/ctl }}\n Systemd off\n{extra_general}\n}}\nStats {{\n LogFile {d}/flows.log\n}}\n"
        ),
    )
    .unwrap();
    path
}

/// The stats log's lines, each without its `ctime` stamp, sorted.
pub fn flows(dir: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(dir.join("flows.log")).unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .map(|l| {
            let (stamp, flow) = l.split_once('\t').expect("ctime TAB flow");
            assert_eq!(stamp.len(), 24, "a ctime stamp: {stamp}");
            flow.to_string()
        })
        .collect();
    v.sort();
    v
}

pub fn client(ns: &Netns, binary: &str, conf: &Path, arg: &str) -> String {
    ns.sh(&format!("{binary} -C {} {arg}", conf.display()))
}

/// A daemon started with `-d`; stopped with `-k` when dropped (before
/// its namespace, which is declared earlier).
pub struct Daemon<'a> {
    ns: &'a Netns,
    binary: String,
    conf: PathBuf,
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.ns.0, &self.binary, "-C"])
            .arg(&self.conf)
            .arg("-k")
            .output();
    }
}

/// Starts `binary` with `-d` in the namespace and waits for its socket.
pub fn start<'a>(ns: &'a Netns, binary: &str, conf: &Path) -> Daemon<'a> {
    start_in_zone(ns, None, binary, conf)
}

/// `start`, with `TZ` set to `zone` when given.
pub fn start_in_zone<'a>(
    ns: &'a Netns,
    zone: Option<&str>,
    binary: &str,
    conf: &Path,
) -> Daemon<'a> {
    let tz = zone.map(|z| format!("TZ='{z}' ")).unwrap_or_default();
    ns.sh(&format!(
        "{tz}{binary} -C {} -d >/dev/null 2>&1",
        conf.display()
    ));
    let t0 = Instant::now();
    while Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            binary,
            "-C",
            conf.to_str().unwrap(),
            "-s",
        ])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "{binary} not up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon {
        ns,
        binary: binary.to_string(),
        conf: conf.to_path_buf(),
    }
}

/// Both daemons' directories (`ours`, `theirs`) and stats-mode
/// configurations, with `general` clauses, under one directory of the
/// test's, removed when dropped (after the daemons, declared later).
pub struct Dirs {
    base: PathBuf,
    pub ours: PathBuf,
    pub theirs: PathBuf,
    pub our_conf: PathBuf,
    pub their_conf: PathBuf,
}

impl Dirs {
    pub fn new(tag: &str, general: &str) -> Dirs {
        let base = std::env::temp_dir()
            .join(format!("ctsyncd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (ours, theirs) = (base.join("ctsyncd"), base.join("conntrackd"));
        let (our_conf, their_conf) =
            (conf(&ours, general), conf(&theirs, general));
        Dirs {
            base,
            ours,
            theirs,
            our_conf,
            their_conf,
        }
    }
}

/// The namespace and directories of a test that compares both daemons,
/// named `tag`; None (the test skipped, and the output says why) without
/// conntrackd or root.
pub fn setup(tag: &str, general: &str) -> Option<(Netns, Dirs)> {
    if !super::ctd::installed(tag) {
        return None;
    }
    let ns = Netns::new(tag)?;
    Some((ns, Dirs::new(tag, general)))
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
