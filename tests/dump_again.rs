//! A finished or abandoned `-e` frees the reply budget at once: with a
//! large external cache, `ctsyncd -e | wc -l` run twice in a row was
//! refused with "too many pending replies" for seconds after the first
//! client had read everything and exited. Here a backup holds 120 000
//! replicated flows; `-e` runs to completion and again at once, several
//! times, and `-e | head -1` (a client leaving early) is followed at once
//! by a full `-e`: none may be refused. Real daemons in network
//! namespaces; needs root. Prints the timings.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fw::{Fw, bin, create, flows, udp_link};
use common::pair;

const FLOWS: u32 = 120_000;
const GENERAL: &str = "HashLimit 400000\n  NetlinkBufferSize 8388608\n  NetlinkBufferSizeMaxGrowth 67108864";

/// `ctsyncd -e` as an operator runs it: the exit status, the number of
/// lines printed and what went to stderr.
fn dump_external(fw: &Fw) -> (bool, usize, String) {
    let out = fw.cli(&["-e"]);
    let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ctsyncd -e | head -1`: the client is gone after the first line.
fn dump_external_head(fw: &Fw) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' -C '{}' -e | head -1",
            bin(),
            fw.conf.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn back_to_back_external_dumps_are_not_refused() {
    let Some((a, b)) = pair("rda") else {
        return;
    };
    let sync = |me, peer| format!("Mode FTFW {{ }}\n{}", udp_link(me, peer));
    let fw1 = Fw::start(&a, "rda1", GENERAL, &sync("10.9.0.1", "10.9.0.2"));
    let fw2 = Fw::start(&b, "rda2", GENERAL, &sync("10.9.0.2", "10.9.0.1"));
    create(&a, &flows("10.100.0.1", FLOWS));
    let n = u64::from(FLOWS);
    assert!(
        fw1.wait_cached("internal", n, Duration::from_secs(60))
            .is_some(),
        "internal cache not filled: {}",
        fw1.cached("internal")
    );
    // Whatever events the backup missed come with a bulk send.
    if fw2
        .wait_cached("external", n, Duration::from_secs(10))
        .is_none()
    {
        assert!(fw1.cli(&["-B"]).status.success());
    }
    assert!(
        fw2.wait_cached("external", n, Duration::from_secs(60))
            .is_some(),
        "external cache not filled: {}",
        fw2.cached("external")
    );

    for round in 0..6 {
        let t = Instant::now();
        let (ok, lines, err) = dump_external(&fw2);
        eprintln!("-e #{round}: {lines} lines in {:?}", t.elapsed());
        assert!(ok && err.is_empty(), "-e #{round} failed: {err}");
        assert_eq!(lines, FLOWS as usize, "-e #{round}");
    }
    for round in 0..4 {
        let first = dump_external_head(&fw2);
        assert!(first.contains("10.100.0.1"), "head -1 printed {first:?}");
        let t = Instant::now();
        let (ok, lines, err) = dump_external(&fw2);
        eprintln!(
            "-e after -e | head -1 #{round}: {lines} lines in {:?}",
            t.elapsed()
        );
        assert!(ok && err.is_empty(), "-e after head #{round} failed: {err}");
        assert_eq!(lines, FLOWS as usize, "-e after head #{round}");
    }
}
