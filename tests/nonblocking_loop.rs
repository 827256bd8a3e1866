//! The event loop never waits on the kernel: while fw-2 resyncs (`-R`)
//! with and then flushes (`-F`) a 200 000-entry kernel table, fw-1
//! replicates 10 000 new flows to it with none lost, and `-s` on fw-2
//! answers every poll made each 100 ms. Real daemons in two network
//! namespaces joined by a veth pair; the kernel work runs in fw-2's
//! kernel worker. Prints the worst `-s` latency. Needs root.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Bg, Netns, pair};
use ctsyncd::control::proto::{
    self, Format, MAX_REPLY, Reply, Request, StatsView, Status,
};
use ctsyncd::kernel::commit::{self, CommitRules};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::{Conntrack, L4, Tuple};

/// The daemon under test: this build's, or `CTSYNCD_TEST_BIN` (to measure
/// a release build).
fn bin() -> String {
    std::env::var("CTSYNCD_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ctsyncd").to_string())
}
const BIG_TABLE: u32 = 200_000;
const NEW_FLOWS: u32 = 10_000;

/// `n` UDP flows from `src`, with a timeout long enough to outlive the
/// test.
fn flows(src: &str, n: u32) -> Vec<Conntrack> {
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
fn create(ns: &Netns, cts: &[Conntrack]) {
    ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        for chunk in cts.chunks(5_000) {
            let errs = s.create_cts(chunk).unwrap();
            assert!(errs.iter().all(|&e| e == 0), "kernel refused a flow");
        }
    });
}

struct Fw {
    dir: PathBuf,
    conf: PathBuf,
    _daemon: Bg,
}

impl Fw {
    fn start(ns: &Netns, name: &str, me: &str, peer: &str) -> Fw {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-nbl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("ctsyncd.conf");
        std::fs::write(
            &conf,
            format!(
                "General {{\n  HashLimit 400000\n  NetlinkBufferSize 8388608\n  NetlinkBufferSizeMaxGrowth 67108864\n  LogFile {d}/log\n  LockFile {d}/lock\n  UNIX {{ Path {d}/ctl }}\n  Filter {{ Address Ignore {{ IPv4_address 10.9.0.0/24 }} }}\n}}\nSync {{\n  Mode FTFW {{ }}\n  UDP {{ IPv4_address {me} IPv4_Destination_Address {peer} Port 3780 Interface s0 }}\n}}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let daemon = ns.spawn(&[&bin(), "-C", conf.to_str().unwrap()]);
        let fw = Fw {
            dir,
            conf,
            _daemon: daemon,
        };
        let t0 = Instant::now();
        while ask(&fw.sock(), &stats(), Duration::from_secs(1)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(60), "{name} not up");
            std::thread::sleep(Duration::from_millis(50));
        }
        fw
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(bin())
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

impl Drop for Fw {
    fn drop(&mut self) {
        let _ = self.cli(&["-k"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stats() -> Request {
    Request::Stats {
        view: StatsView::General,
        format: Format::Json,
    }
}

/// One request on the control socket; the reply text, or why not.
fn ask(
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

/// A number from the `--json` statistics, by its path's last two keys.
fn json_number(json: &str, section: &str, key: &str) -> u64 {
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

#[test]
fn kernel_work_never_stalls_replication_or_the_control_socket() {
    let Some((a, b)) = pair("nbl") else {
        return;
    };
    create(&b, &flows("10.100.0.1", BIG_TABLE));
    let fw1 = Fw::start(&a, "fw1", "10.9.0.1", "10.9.0.2");
    let fw2 = Fw::start(&b, "fw2", "10.9.0.2", "10.9.0.1");
    let s = ask(&fw2.sock(), &stats(), Duration::from_secs(5)).unwrap();
    assert_eq!(json_number(&s, "internal", "active"), u64::from(BIG_TABLE));

    // `-s` on fw-2 every 100 ms for as long as the work runs.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (sock, stop) = (fw2.sock(), stop.clone());
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut polls = 0u32;
            while !stop.load(Ordering::Relaxed) && polls < 1_200 {
                let t = Instant::now();
                if let Err(e) = ask(&sock, &stats(), Duration::from_secs(5)) {
                    return Err(format!("poll {polls} failed: {e}"));
                }
                worst = worst.max(t.elapsed());
                polls += 1;
                std::thread::sleep(
                    Duration::from_millis(100).saturating_sub(t.elapsed()),
                );
            }
            Ok((polls, worst))
        })
    };

    // fw-2: a resync with its 200 000-entry table, then a kernel flush;
    // meanwhile fw-1's kernel gets 10 000 new flows to replicate.
    let heavy = {
        let conf = fw2.conf.clone();
        std::thread::spawn(move || {
            let run = |arg: &str| {
                let t = Instant::now();
                let out = std::process::Command::new(bin())
                    .arg("-C")
                    .arg(&conf)
                    .arg(arg)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{arg}: {out:?}");
                t.elapsed()
            };
            (run("-R"), run("-F"))
        })
    };
    let t0 = Instant::now();
    create(&a, &flows("10.101.0.1", NEW_FLOWS));
    let (resync, flush) = heavy.join().unwrap();
    // Every new flow reaches fw-2's external cache.
    let mut external = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        let s = ask(&fw2.sock(), &stats(), Duration::from_secs(5)).unwrap();
        external = json_number(&s, "external", "active");
        if external >= u64::from(NEW_FLOWS) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let (polls, worst) = poller.join().unwrap().unwrap();
    let s = ask(&fw2.sock(), &stats(), Duration::from_secs(5)).unwrap();
    eprintln!(
        "fw-2: -R {resync:?}, -F {flush:?}; {external} of {NEW_FLOWS} flows replicated after {:?}; {polls} polls of -s, worst {worst:?}",
        t0.elapsed()
    );
    assert_eq!(external, u64::from(NEW_FLOWS), "{}", fw2.log());
    assert_eq!(json_number(&s, "sync", "lost"), 0);
    // The flush emptied fw-2's kernel, and its internal cache with it.
    let left = b.sh("conntrack -C 2>/dev/null || true");
    assert!(left.trim().parse::<u64>().unwrap_or(0) < 100, "{left}");
    assert!(polls >= 5, "the work ended too soon to prove anything");
    assert!(
        worst < Duration::from_secs(1),
        "-s waited {worst:?} while the kernel worked"
    );
    drop(fw1);
}
