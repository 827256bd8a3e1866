//! conntrackd 1.4.7's own client binary drives a ctsyncd daemon: a
//! notify script that still runs `conntrackd -c` at takeover, half way
//! through a migration, commits, and its dumps and statistics read as
//! ctsyncd's client prints them. Two ctsyncd nodes in namespaces, the
//! real `/usr/sbin/conntrackd` as the client. Root only; skipped without
//! conntrackd.

// Bounded waits for real daemons (wall clock), not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::Netns;
use common::fw::{self, Fw};
use ctsyncd::control::proto::{Request, Target};

const CONNTRACKD: &str = "/usr/sbin/conntrackd";

/// conntrackd's client run in `ns` with `fw`'s configuration.
fn conntrackd(ns: &Netns, fw: &Fw, args: &[&str]) -> Output {
    std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, CONNTRACKD, "-C"])
        .arg(&fw.conf)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every run of digits as one `#`: counters move between two asks.
fn digits_masked(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.lines().collect();
    v.sort_unstable();
    v
}

/// Flows in the namespace's kernel from `src`.
fn kernel_flows_from(ns: &Netns, src: &str) -> usize {
    ns.sh("conntrack -L 2>/dev/null")
        .lines()
        .filter(|l| l.contains(&format!("src={src} ")))
        .count()
}

#[test]
fn conntrackds_client_commits_dumps_and_reads_statistics() {
    let Some((a, b)) = common::pair("ccl") else {
        return;
    };
    if !Path::new(CONNTRACKD).exists() {
        eprintln!(
            "SKIPPED: {CONNTRACKD} is not installed (apt-get install conntrackd)"
        );
        return;
    }
    let general = "HashLimit 65536";
    let fw1 = Fw::start(
        &a,
        "ccl1",
        general,
        &format!("Mode FTFW {{ }}\n{}", fw::udp_link("10.9.0.1", "10.9.0.2")),
    );
    let fw2 = Fw::start(
        &b,
        "ccl2",
        general,
        &format!("Mode FTFW {{ }}\n{}", fw::udp_link("10.9.0.2", "10.9.0.1")),
    );
    const N: usize = 40;
    fw::create(&a, &fw::flows("10.100.0.1", N as u32));
    assert!(
        fw2.wait_cached("external", N as u64, Duration::from_secs(20))
            .is_some(),
        "fw-2 never held fw-1's {N} flows"
    );

    // Dumps: the same lines as ctsyncd's own client prints.
    let theirs = conntrackd(&b, &fw2, &["-e"]);
    assert!(theirs.status.success(), "{theirs:?}");
    let ours = fw2.cli(&["-e"]);
    assert_eq!(sorted_lines(&stdout(&theirs)).len(), N, "{theirs:?}");
    assert_eq!(sorted_lines(&stdout(&theirs)), sorted_lines(&stdout(&ours)));
    let xml = stdout(&conntrackd(&b, &fw2, &["-e", "-x"]));
    assert_eq!(xml, stdout(&fw2.cli(&["-e", "-x"])));
    assert!(xml.contains("<flow>"), "{xml}");

    // Statistics, each view conntrackd's client can ask for.
    for view in ["", "cache", "runtime", "network", "link", "queue"] {
        let args: Vec<&str> =
            ["-s", view].into_iter().filter(|w| !w.is_empty()).collect();
        let theirs = stdout(&conntrackd(&b, &fw2, &args));
        let ours = stdout(&fw2.cli(&args));
        assert!(!theirs.is_empty(), "-s {view}: nothing");
        assert_eq!(digits_masked(&theirs), digits_masked(&ours), "-s {view}");
    }

    // The takeover: conntrackd's `-c` returns once the flows are in the
    // kernel, as conntrackd's own commit does.
    assert_eq!(kernel_flows_from(&b, "10.100.0.1"), 0);
    let t = Instant::now();
    let commit = conntrackd(&b, &fw2, &["-c"]);
    assert!(commit.status.success(), "{commit:?}");
    assert_eq!(
        kernel_flows_from(&b, "10.100.0.1"),
        N,
        "not committed when conntrackd's -c returned ({:?})",
        t.elapsed()
    );
    assert!(fw2.log().contains("committing all external caches"));

    // A code no conntrackd command sends: closed without a word, named in
    // the log; the daemon goes on.
    let mut s = UnixStream::connect(fw2.sock()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&19i32.to_ne_bytes()).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        fw2.log().contains("sent request 19 (unknown)"),
        "{}",
        fw2.log()
    );
    assert!(fw2.cli(&["-s"]).status.success());

    // -k: the daemon stops.
    assert!(conntrackd(&a, &fw1, &["-k"]).status.success());
    let t = Instant::now();
    while fw1.cli(&["-s"]).status.success() {
        assert!(t.elapsed() < Duration::from_secs(10), "-k: still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// conntrackd's `-i` piped into a reader that pauses longer than the
/// control socket's stall deadline (a monitoring script busy elsewhere,
/// `| less` on its first page): the dump still comes whole, as it does
/// from conntrackd and from ctsyncd's own client. The relay used to drop
/// such a client after 5 s, and the reader found its dump cut short.
#[test]
fn conntrackds_client_that_pauses_gets_its_whole_dump() {
    const N: u32 = 20_000;
    let Some((a, _b, fw)) = fw::alone_with_flows("ccp", N) else {
        return;
    };
    if !Path::new(CONNTRACKD).exists() {
        eprintln!(
            "SKIPPED: {CONNTRACKD} is not installed (apt-get install conntrackd)"
        );
        return;
    }
    assert!(
        fw.wait_cached("internal", u64::from(N), Duration::from_secs(20))
            .is_some(),
        "the daemon never held the {N} flows"
    );
    // About 3 MB of text: far more than the pipe and the sockets hold
    // while the reader sleeps. Past two stall deadlines: a write retried
    // when the first deadline wakes it may still find a little room (a
    // UNIX socket polls writable only once three quarters of its buffer
    // are free), and that counts as the client reading.
    let pause =
        ctsyncd::control::server::STALL_DEADLINE * 2 + Duration::from_secs(2);
    let out = a.sh(&format!(
        "{CONNTRACKD} -C {} -i | (sleep {}; grep -c 'src=10.100.0.1 ')",
        fw.conf.display(),
        pause.as_secs()
    ));
    assert_eq!(
        out.trim(),
        N.to_string(),
        "lines read after a {pause:?} pause; log:\n{}",
        fw.log()
    );
}

/// conntrackd's clients waiting for their answer (`-R` behind a kernel
/// dump, a notify script's request behind a commit) cost what ours cost:
/// each relay took its 64 KiB read buffer at once and kept it while it
/// waited, outside the reply budget; 300 such `-R` grew the daemon by
/// 19 MB (ctsyncd's own 300 `-R`: under 2 MB). The dump the clients
/// wait behind is held a couple of parts at a time (`worker::DONE_QUEUE`),
/// or its pile-up, up to the whole table, is what this measures instead.
#[test]
fn conntrackds_waiting_clients_hold_no_read_buffers() {
    const CLIENTS: usize = 300;
    let Some((_a, _b, fw)) = fw::alone_with_flows("ccw", 50_000) else {
        return;
    };
    assert!(
        fw.wait_cached("internal", 50_000, Duration::from_secs(20))
            .is_some()
    );
    // One -R first: the heap grows to what a resync takes, and the
    // clients' cost is measured beyond it.
    let resync = Request::ResyncKernel(Target::All);
    fw::ask(&fw.sock(), &resync, Duration::from_secs(30)).unwrap();
    let before = fw.peak_kib(true);
    // conntrackd's -R (request 44, host-endian), all asked before any
    // is answered (the dump of 50 000 flows takes a while).
    let mut clients: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = UnixStream::connect(fw.sock()).unwrap();
            s.write_all(&44i32.to_ne_bytes()).unwrap();
            s
        })
        .collect();
    for s in &mut clients {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
    }
    let grew = fw.peak_kib(false).saturating_sub(before);
    eprintln!("{CLIENTS} waiting conntrackd clients: peak RSS +{grew} KiB");
    assert!(grew < 8 * 1024, "peak RSS grew by {grew} KiB");
}
