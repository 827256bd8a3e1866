//! Shared helpers for the privileged tests: throw-away network namespaces.

#![allow(dead_code)]

pub mod ctd;
pub mod devlog;
pub mod ftp;
pub mod fw;
pub mod sniff;
pub mod stats;

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it holds; how long that took, or None
/// after `limit` (a wall-clock bound on real processes, not logic).
#[allow(clippy::disallowed_methods)]
pub fn until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A network namespace that exists for the lifetime of the value.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Option<Netns> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: kernel tests need root (CI runs them as root)");
            return None;
        }
        let name = format!("ctsyncd-k{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Some(Netns(name))
    }

    /// Runs `f` on a thread that lives in the namespace: sockets it opens
    /// belong there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).unwrap();
                rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    pub fn sh(&self, cmd: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Packets the counters of nftables table `inet <table>` counted, all
    /// of them together.
    pub fn nft_counted(&self, table: &str) -> u64 {
        self.sh(&format!("nft list table inet {table}"))
            .split("counter packets ")
            .skip(1)
            .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

/// A process running inside a namespace; killed when dropped.
pub struct Bg(pub std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Netns {
    pub fn spawn(&self, args: &[&str]) -> Bg {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            // Not a pipe nobody reads: a daemon in console mode writes its
            // log lines there too, and its loop stopped once 64 KiB of
            // them had filled it (900 `-R`, each logged, in one test).
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Bg(child)
    }

    /// Loopback up, and the FTP helper assigned to connections to port 21
    /// (since Linux 6.0 helpers are never assigned automatically).
    pub fn ftp_helper(&self) {
        self.sh("ip link set lo up");
        self.sh(
            "nft -f - <<'EOF'
table inet ctsyncd_test {
    ct helper ftp-standard { type \"ftp\" protocol tcp; }
    chain out { type filter hook output priority 0; tcp dport 21 ct helper set \"ftp-standard\"; }
}
EOF",
        );
    }
}

impl Netns {
    /// A real FTP server (pyftpdlib) on 127.0.0.1:21, serving the temporary
    /// directory; returns once it accepts connections.
    pub fn ftp_server(&self) -> Bg {
        let root = std::env::temp_dir();
        let bg = self.spawn(&[
            PY,
            "-m",
            "pyftpdlib",
            "-i",
            "127.0.0.1",
            "-p",
            "21",
            "-d",
            root.to_str().unwrap(),
        ]);
        self.sh(&format!(
            "for i in $(seq 100); do {PY} -c 'import socket; socket.create_connection((\"127.0.0.1\", 21), 1)' 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
        ));
        bg
    }

    /// A real FTP client: login, PASV, then keep the control connection
    /// open for 20 s.
    pub fn ftp_pasv_client(&self) -> Bg {
        self.spawn(&[PY, "-c", "import ftplib, time\nf = ftplib.FTP()\nf.connect('127.0.0.1', 21)\nf.login()\nprint(f.sendcmd('PASV'), flush=True)\ntime.sleep(20)"])
    }
}

/// Debian's python, where python3-pyftpdlib is installed.
pub const PY: &str = "/usr/bin/python3";

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Two namespaces joined by veth pairs `s0` (10.9.0.1 — 10.9.0.2,
/// fd09::1 — fd09::2) and `s1` (10.9.1.1 — 10.9.1.2).
pub fn pair(tag: &str) -> Option<(Netns, Netns)> {
    let a = Netns::new(&format!("{tag}a"))?;
    let b = Netns::new(&format!("{tag}b"))?;
    for (i, net) in [(0, "10.9.0"), (1, "10.9.1")] {
        let tmp = format!("ct{}{i}", std::process::id() % 100_000);
        let ok = Command::new("ip")
            .args([
                "link",
                "add",
                &format!("{tmp}a"),
                "netns",
                &a.0,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{tmp}b"),
                "netns",
                &b.0,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "veth");
        for (ns, side, host) in [(&a, "a", 1), (&b, "b", 2)] {
            ns.sh(&format!(
                "ip link set {tmp}{side} name s{i} && ip addr add {net}.{host}/24 dev s{i} && ip -6 addr add fd09:{i}::{host}/64 dev s{i} nodad && ip link set s{i} up && ip link set lo up"
            ));
        }
    }
    Some((a, b))
}
