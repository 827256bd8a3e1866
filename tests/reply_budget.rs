//! Clients that ask for a dump and never read cannot make the daemon hold
//! their replies without bound (issue 13): with 50 000 flows in the
//! internal cache, 100 clients send `-i` and read nothing; the daemon's
//! RSS stays within a stated bound above its size before, `-s` answers
//! every poll made each 100 ms, and the clients that did not fit in the
//! reply budget are told so. A real daemon in a network namespace; needs
//! root. Prints the numbers.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::fw::{alone_with_flows, ask, json_number, stats};
use ctsyncd::control::proto::{
    self, Cache, Format, MAX_REPLY, Reply, Request, Status, Table,
};

const FLOWS: u32 = 50_000;
const CLIENTS: usize = 100;
/// What the attack may add to the daemon's RSS: the 16 MiB reply budget,
/// one dump being built beside it, and allocator slack. Without the
/// budget, each of the 100 clients held a whole dump (about 7 MB here).
const RSS_BOUND_KIB: u64 = 64 * 1024;

fn dump() -> Request {
    Request::Dump {
        cache: Cache::Internal,
        table: Table::Ct,
        format: Format::Plain,
    }
}

/// The first frame a silent client finds waiting: `Some(true)` for the
/// refusal, `Some(false)` for data, `None` when nothing (yet).
fn first_frame_is_refusal(s: &mut UnixStream) -> Option<bool> {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    match proto::decode::<Reply>(&buf[..n], MAX_REPLY) {
        Ok(Some((Reply::Done(Status::Refused(m)), _))) => {
            Some(m == "too many pending replies")
        }
        // A data frame is larger than what was read: undecodable here.
        _ => Some(false),
    }
}

#[test]
fn silent_dump_clients_hold_bounded_memory() {
    let Some((_a, _b, fw)) = alone_with_flows("rb", FLOWS) else {
        return;
    };
    let t0 = Instant::now();
    loop {
        let s = ask(&fw.sock(), &stats(), Duration::from_secs(5)).unwrap();
        if s.contains(&format!("\"active\":{FLOWS}")) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "cache not filled");
        std::thread::sleep(Duration::from_millis(100));
    }
    // One dump read in full: the size of what each client asks for.
    let dump_len = ask(&fw.sock(), &dump(), Duration::from_secs(30))
        .unwrap()
        .len();
    std::thread::sleep(Duration::from_millis(200));
    let before = fw.rss_kib();

    let mut silent: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = UnixStream::connect(fw.sock()).unwrap();
            s.write_all(&proto::encode(&dump())).unwrap();
            s
        })
        .collect();
    // `-s` every 100 ms and the RSS sampled for 4 s: well within the
    // time the silent clients' replies are held.
    let (mut worst, mut peak, mut polls) = (Duration::ZERO, before, 0);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        let got = ask(&fw.sock(), &stats(), Duration::from_secs(5));
        worst = worst.max(t.elapsed());
        assert!(got.is_ok(), "poll {polls}: {got:?}");
        polls += 1;
        peak = peak.max(fw.rss_kib());
        std::thread::sleep(
            Duration::from_millis(100).saturating_sub(t.elapsed()),
        );
    }
    let refused = silent
        .iter_mut()
        .map(first_frame_is_refusal)
        .filter(|r| *r == Some(true))
        .count();
    eprintln!(
        "dump {dump_len} bytes; RSS {before} KiB before, peak {peak} KiB (+{} KiB) with {CLIENTS} silent dump clients; {refused} refused; {polls} polls of -s, worst {worst:?}",
        peak - before
    );
    assert!(
        peak - before < RSS_BOUND_KIB,
        "RSS grew by {} KiB",
        peak - before
    );
    assert!(refused >= CLIENTS / 2, "only {refused} refused");
    // The node renders admitted dumps a part at a time between other
    // work: the release build (make unit) answers every poll within the
    // 100 ms it is made at; a debug build gets a looser bound.
    let bound = if std::env::var("CTSYNCD_TEST_BIN").is_ok() {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(3)
    };
    assert!(worst < bound, "-s waited {worst:?}");
    assert!(
        fw.log().contains("control: refusing replies"),
        "{}",
        fw.log()
    );
    // `-s --json` says the same: the refusals, the bytes held for the
    // silent clients within the budget...
    let control = |key| json_number(&fw.stats(), "control", key);
    assert!(control("replies_refused") >= refused as u64);
    let (held, budget) = (control("pending_bytes"), control("budget_bytes"));
    assert!(held > 0 && held <= budget, "{held} of {budget} bytes held");
    // ...the silent clients given up on once stalled past the stall
    // deadline (5 s) with the budget pressed...
    let t0 = Instant::now();
    while control("clients_dropped") == 0 {
        assert!(t0.elapsed() < Duration::from_secs(15), "none dropped");
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...and, once the rest hang up, every byte given back.
    drop(silent);
    let t0 = Instant::now();
    while control("pending_bytes") > 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "bytes still held");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// conntrackd's clients refused for want of budget: each refusal is
/// logged once by the budget (at most once a minute), not again by the
/// relay for every client. 40 conntrackd `-i` asked while silent dump
/// clients hold the budget logged 40 warnings (a script polling
/// `conntrackd -i` flooded syslog on the router's flash).
#[test]
fn conntrackds_refused_clients_are_not_logged_one_by_one() {
    let Some((_a, _b, fw)) = alone_with_flows("rc", FLOWS) else {
        return;
    };
    let t0 = Instant::now();
    while !ask(&fw.sock(), &stats(), Duration::from_secs(5))
        .unwrap()
        .contains(&format!("\"active\":{FLOWS}"))
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "cache not filled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _silent: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = UnixStream::connect(fw.sock()).unwrap();
            s.write_all(&proto::encode(&dump())).unwrap();
            s
        })
        .collect();
    let control = |key| json_number(&fw.stats(), "control", key);
    let t0 = Instant::now();
    while control("replies_refused") == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "budget not full");
        std::thread::sleep(Duration::from_millis(50));
    }
    // conntrackd's `-i` (request 16, host-endian), read to the end.
    let before = control("replies_refused");
    for _ in 0..40 {
        let mut s = UnixStream::connect(fw.sock()).unwrap();
        s.write_all(&16i32.to_ne_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert!(got.is_empty(), "a refused conntrackd client reads nothing");
    }
    let refused = control("replies_refused") - before;
    assert!(refused >= 40, "only {refused} refused");
    let log = fw.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("conntrackd's client"))
        .count();
    assert!(lines <= 1, "{lines} lines for {refused} refusals:\n{log}");
}
