//! Real daemons in the test's namespaces: start one from configuration

//! text, talk to its control socket, read its `--json` statistics, and
//! create or delete flows in a namespace's kernel as traffic would.

#![allow(dead_code)]
// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ctsyncd::control::proto::{
    self, Format, MAX_REPLY, Reply, Request, StatsView, Status,
};
use ctsyncd::kernel::codec;
use ctsyncd::kernel::commit::{self, CommitRules};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::{Conntrack, L4, Tuple};

use super::{Bg, Netns};

/// The daemon under test: this build's, or `CTSYNCD_TEST_BIN` (to measure
/// a release build).
pub fn bin() -> String {
    std::env::var("CTSYNCD_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ctsyncd").to_string())
}

/// Whether the daemon under test is the release build (`make unit` sets
/// `CTSYNCD_TEST_BIN`); tests whose bounds are wall-clock times a router
/// must meet skip, and say so, on a debug build.
pub fn release_build(test: &str) -> bool {
    let release = std::env::var("CTSYNCD_TEST_BIN").is_ok();
    if !release {
        eprintln!(
            "SKIPPED {test}: its time bounds are for the release build; run it with CTSYNCD_TEST_BIN=target/release/ctsyncd (make unit does)"
        );
    }
    release
}

/// `n` UDP flows from `src` with a timeout that outlives the test.
pub fn flows(src: &str, n: u32) -> Vec<Conntrack> {
    (0..n)
        .map(|i| {
            let mut ct = Conntrack::new(Tuple {
                src: src.parse().unwrap(),
                dst: "10.200.0.1".parse().unwrap(),
                proto: 17,
                l4: L4::Ports {
                    src: (1024 + i % 60_000) as u16,
                    dst: (1 + i / 60_000) as u16,
                },
            });
            ct.timeout = Some(600);
            commit::prepare_ct(&ct, 0, &CommitRules::default())
        })
        .collect()
}

/// Creates the flows in the namespace's kernel through a socket that is
/// not the daemon's, so they are "traffic" to it.
pub fn create(ns: &Netns, cts: &[Conntrack]) {
    ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        for chunk in cts.chunks(5_000) {
            let errs = s.create_cts(chunk).unwrap();
            assert!(errs.iter().all(|&e| e == 0), "kernel refused a flow");
        }
    });
}

/// Deletes the flows from the namespace's kernel.
pub fn delete(ns: &Netns, cts: &[Conntrack]) {
    ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        // One batch is one netlink datagram: a few hundred deletes each.
        for chunk in cts.chunks(256) {
            let errs = s
                .batch(|buf, seq| {
                    for c in chunk {
                        codec::encode_ct_delete(buf, &c.orig, c.zone, seq());
                    }
                })
                .unwrap();
            assert!(errs.iter().all(|&e| e == 0), "kernel refused a delete");
        }
    });
}

/// A daemon alone with `n` flows already in its kernel: in the first
/// namespace of a new [`super::pair`], FT-FW over `s0` to a peer that runs
/// nothing, with a cache and an event buffer for a big table. None when
/// not root. Bind the namespaces first (`let Some((_a, _b, fw))`): the
/// daemon stops before they go.
pub fn alone_with_flows(tag: &str, n: u32) -> Option<(Netns, Netns, Fw)> {
    alone_with_flows_and(tag, n, "")
}

/// [`alone_with_flows`], with `sync` clauses added to the `Sync` section
/// (an `Options { … }` block).
pub fn alone_with_flows_and(
    tag: &str,
    n: u32,
    sync: &str,
) -> Option<(Netns, Netns, Fw)> {
    let (a, b) = super::pair(tag)?;
    create(&a, &flows("10.100.0.1", n));
    let general = "HashLimit 400000\n  NetlinkBufferSize 8388608\n  NetlinkBufferSizeMaxGrowth 67108864";
    let sync = format!(
        "Mode FTFW {{ }}\n{}\n{sync}",
        udp_link("10.9.0.1", "10.9.0.2")
    );
    let fw = Fw::start(&a, tag, general, &sync);
    Some((a, b, fw))
}

/// A UDP unicast link on the veth `s0` of [`super::pair`].
pub fn udp_link(me: &str, peer: &str) -> String {
    format!(
        "UDP {{ IPv4_address {me} IPv4_Destination_Address {peer} Port 3780 Interface s0 }}"
    )
}

/// The number after `key` (a line's first word) in a /proc status file.
fn status_number(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A daemon running in a namespace; stopped and cleaned up when dropped.
pub struct Fw {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub daemon: Bg,
}

impl Fw {
    /// fw-1 (`{tag}1`, 10.9.0.1) in `a` and fw-2 (`{tag}2`, 10.9.0.2) in
    /// `b`, on [`super::pair`]'s `s0`, with `general` clauses and the
    /// `Sync` section `sync(me, peer)` gives.
    pub fn start_pair(
        (a, b): (&Netns, &Netns),
        tag: &str,
        general: &str,
        sync: impl Fn(&str, &str) -> String,
    ) -> (Fw, Fw) {
        let fw1 = Fw::start(
            a,
            &format!("{tag}1"),
            general,
            &sync("10.9.0.1", "10.9.0.2"),
        );
        let fw2 = Fw::start(
            b,
            &format!("{tag}2"),
            general,
            &sync("10.9.0.2", "10.9.0.1"),
        );
        (fw1, fw2)
    }

    /// Starts a daemon with `general` clauses (beside the paths) and a
    /// `Sync` section; returns once its control socket answers.
    pub fn start(ns: &Netns, name: &str, general: &str, sync: &str) -> Fw {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-fw-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("ctsyncd.conf");
        std::fs::write(
            &conf,
            format!(
                "General {{\n  LogFile {d}/log\n  LockFile {d}/lock\n  UNIX {{ Path {d}/ctl }}\n  {general}\n}}\nSync {{\n{sync}\n}}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let daemon = ns.spawn(&[&bin(), "-C", conf.to_str().unwrap()]);
        let fw = Fw { dir, conf, daemon };
        let t0 = Instant::now();
        while ask(&fw.sock(), &stats(), Duration::from_secs(1)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{name} not up: {}",
                fw.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        fw
    }

    /// `kill -9` the daemon; a new one starts over the same files after
    /// `down` (its lock file removed first, as the notify script does).
    pub fn crash_and_restart(&mut self, ns: &Netns, down: Duration) {
        self.crash();
        std::thread::sleep(down);
        self.restart(ns);
    }

    /// Kills the daemon (SIGKILL: no goodbye to its peer).
    pub fn crash(&mut self) {
        let _ = self.daemon.0.kill();
        let _ = self.daemon.0.wait();
    }

    /// Starts the daemon again after [`Fw::crash`], and waits until it
    /// answers.
    pub fn restart(&mut self, ns: &Netns) {
        let _ = std::fs::remove_file(self.dir.join("lock"));
        self.daemon = ns.spawn(&[&bin(), "-C", self.conf.to_str().unwrap()]);
        let t0 = Instant::now();
        while ask(&self.sock(), &stats(), Duration::from_secs(1)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(60), "not up again");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(bin())
            .arg("-C")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// VmRSS in KiB (`ip netns exec` execs the daemon: same pid).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!(
            "/proc/{}/status",
            self.daemon.0.id()
        ))
        .unwrap();
        status_number(&status, "VmRSS:").unwrap()
    }

    /// Peak RSS in KiB (VmHWM) since the start or the last reset; with
    /// `reset`, first resets the peak to the current RSS.
    pub fn peak_kib(&self, reset: bool) -> u64 {
        let pid = self.daemon.0.id();
        if reset {
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        }
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status_number(&status, "VmHWM:").unwrap()
    }

    /// Context switches of all the daemon's threads so far (voluntary
    /// and not): each is a wake-up or a preemption, the loop's cost that
    /// its own counters do not show.
    pub fn context_switches(&self) -> u64 {
        let tasks = format!("/proc/{}/task", self.daemon.0.id());
        let mut total = 0;
        for task in std::fs::read_dir(tasks).unwrap().flatten() {
            // A thread that ended meanwhile has no status to read.
            if let Ok(status) =
                std::fs::read_to_string(task.path().join("status"))
            {
                for key in
                    ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"]
                {
                    total += status_number(&status, key).unwrap_or(0);
                }
            }
        }
        total
    }

    /// Every statistic (`-s --json`).
    pub fn stats(&self) -> String {
        ask(&self.sock(), &stats(), Duration::from_secs(5)).unwrap()
    }

    /// Entries in a cache: `internal`, `external`, `internal_expect` …
    pub fn cached(&self, cache: &str) -> u64 {
        json_number(&self.stats(), cache, "active")
    }

    /// Waits until `cache` holds `n` entries; how long that took, or None
    /// after `limit`.
    pub fn wait_cached(
        &self,
        cache: &str,
        n: u64,
        limit: Duration,
    ) -> Option<Duration> {
        super::until(limit, || self.cached(cache) == n)
    }
}

impl Drop for Fw {
    fn drop(&mut self) {
        let _ = self.cli(&["-k"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn stats() -> Request {
    Request::Stats {
        view: StatsView::General,
        format: Format::Json,
    }
}

/// One request on the control socket; the reply text, or why not.
pub fn ask(
    sock: &Path,
    req: &Request,
    deadline: Duration,
) -> Result<String, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(deadline)).unwrap();
    s.write_all(&proto::encode(req))
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut text = String::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before Done".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some((reply, used))) =
            proto::decode::<Reply>(&buf, MAX_REPLY)
        {
            buf.drain(..used);
            match reply {
                Reply::Data(t) => text.push_str(&t),
                Reply::Done(Status::Ok) => return Ok(text),
                Reply::Done(other) => return Err(format!("{other:?}")),
            }
        }
    }
}

/// A number in the `--json` statistics: `key` in the object `section`.
pub fn json_number(json: &str, section: &str, key: &str) -> u64 {
    let at = json.find(&format!("\"{section}\":{{")).expect(section);
    let rest = &json[at..];
    let k = rest.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
    rest[k..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}
