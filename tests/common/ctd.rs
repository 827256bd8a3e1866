//! conntrackd 1.4.7 (Debian's `/usr/sbin/conntrackd`) as a peer of the
//! daemon under test, in the test's namespaces: started from
//! configuration text with its own lock file, control socket and log (the
//! defaults are shared by everything on the machine), talked to through
//! its own client, killed when dropped. [`Peer`] lets a test drive either
//! daemon through the commands both share (`-s`, `-e`, `-c`, …).

#![allow(dead_code)]
// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ctsyncd::wire::ctd::{self, Body, Message, Options};

use super::fw::Fw;
use super::{Bg, Netns};

pub const CONNTRACKD: &str = "/usr/sbin/conntrackd";

/// Whether conntrackd is installed (`make ci-deps` installs it); says
/// "SKIPPED" for `test` when not.
pub fn installed(test: &str) -> bool {
    let ok = std::path::Path::new(CONNTRACKD).exists();
    if !ok {
        eprintln!(
            "SKIPPED {test}: {CONNTRACKD} is not installed (make ci-deps installs conntrackd)"
        );
    }
    ok
}

/// A conntrackd running in a namespace (console mode, so that dropping
/// the value kills it even when `-k` cannot reach it).
pub struct Ctd {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub daemon: Bg,
}

impl Ctd {
    /// Starts conntrackd with `general` clauses (beside the paths) and a
    /// `Sync` section; returns once its control socket answers.
    pub fn start(ns: &Netns, name: &str, general: &str, sync: &str) -> Ctd {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-ctd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("conntrackd.conf");
        std::fs::write(
            &conf,
            format!(
                "General {{\n  LogFile {d}/log\n  LockFile {d}/lock\n  UNIX {{ Path {d}/ctl }}\n  {general}\n}}\nSync {{\n{sync}\n}}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        // Its console output goes nowhere: a pipe nobody reads would
        // block it once full.
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0, CONNTRACKD, "-C"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ctd = Ctd {
            dir,
            conf,
            daemon: Bg(child),
        };
        let t0 = Instant::now();
        while !ctd.cli(&["-s"]).status.success() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "conntrackd {name} not up: {}",
                ctd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ctd
    }
}

impl Drop for Ctd {
    fn drop(&mut self) {
        let _ = self.cli(&["-k"]);
        let _ = self.daemon.0.kill();
        let _ = self.daemon.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a test asks of either daemon: the client commands conntrackd and
/// ctsyncd share, and the log.
pub trait Peer {
    fn name(&self) -> &'static str;
    fn cli(&self, args: &[&str]) -> Output;
    fn log(&self) -> String;

    /// The client's output; panics when the command fails.
    fn run(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `current active connections` of a cache (`internal`/`external`)
    /// in `-s` (the text both daemons print).
    fn active(&self, cache: &str) -> u64 {
        let s = self.run(&["-s"]);
        s.split(&format!("cache {cache}:"))
            .nth(1)
            .and_then(|b| b.split("current active connections:").nth(1))
            .and_then(|b| b.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Lines of a dump (`-e`, `-e expect`, …) containing `pattern`.
    /// ctsyncd refuses a dump that does not fit in its reply budget beside
    /// replies it still holds ("too many pending replies"), which can be
    /// the previous command's (issue: after a 100 000-line `-e` a second
    /// one is refused for seconds although the first client read all and
    /// left): asked again for up to a minute, and each refusal said.
    fn count(&self, args: &[&str], pattern: &str) -> u64 {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            let out = self.cli(args);
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout);
                return text.lines().filter(|l| l.contains(pattern)).count()
                    as u64;
            }
            assert!(
                err.contains("too many pending replies"),
                "{} {args:?}: {err}",
                self.name()
            );
            eprintln!(
                "{} {args:?} refused ({}); again in 0.5 s",
                self.name(),
                err.trim()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = self.log();
        panic!(
            "{} {args:?} refused for a minute; its log:\n{}",
            self.name(),
            &log[log.len().saturating_sub(3000)..]
        );
    }
}

impl Peer for Ctd {
    fn name(&self) -> &'static str {
        "conntrackd"
    }
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(CONNTRACKD)
            .arg("-C")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap()
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Peer for Fw {
    fn name(&self) -> &'static str {
        "ctsyncd"
    }
    fn cli(&self, args: &[&str]) -> Output {
        Fw::cli(self, args)
    }
    fn log(&self) -> String {
        Fw::log(self)
    }
}

/// `bodies` as conntrackd's protocol sends them: messages numbered from
/// `first_seq`, the first one saying HELLO (a new sender, so the receiver
/// takes the number as it comes), packed in order into datagrams of at
/// most 1 400 bytes.
pub fn datagrams(bodies: Vec<Body>, first_seq: u32) -> Vec<Vec<u8>> {
    const MTU: usize = 1400;
    let mut out = vec![Vec::new()];
    for (i, body) in bodies.into_iter().enumerate() {
        let msg = Message {
            seq: first_seq.wrapping_add(i as u32),
            hello: i == 0,
            hello_back: false,
            body,
        };
        let mut buf = [0u8; MTU];
        let n = ctd::encode(&msg, Options::default(), &mut buf)
            .expect("a message fits a datagram");
        if out.last().is_some_and(|d| d.len() + n > MTU) {
            out.push(Vec::new());
        }
        out.last_mut()
            .expect("one datagram at least")
            .extend_from_slice(&buf[..n]);
    }
    out
}
