//! Stats mode's control requests against conntrackd 1.4.7: both
//! daemons in one network namespace with the same flows answer `-i`
//! (plain and XML), `-s`, `-s cache`, `-s runtime`, `-f internal`, `-R`
//! and `-F` alike, and show a flow's mark as the kernel reported it.
//! Needs root and /usr/sbin/conntrackd; skipped with a message otherwise.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::stats::{CONNTRACKD, Dirs, bin, client, flows, setup, start};

/// Every control request a Stats-mode daemon takes, against conntrackd
/// 1.4.7 in the same namespace with the same flows: `-i` (plain and XML;
/// the ages and conntrackd's kernel ids masked), `-s`, `-s cache`, `-s
/// runtime`, the requests that succeed silently, `-f internal`, `-R` and
/// `-F` (the flows it deletes logged by both), with the same notices in
/// both daemons' logs.
#[test]
fn control_requests_answer_as_conntrackds() {
    let Some((ns, dirs)) = setup("statsctl", "") else {
        return;
    };
    let Dirs {
        ours,
        theirs,
        our_conf,
        their_conf,
        ..
    } = &dirs;
    ns.sh("ip link set lo up");
    ns.sh("conntrack -I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 80 --state ESTABLISHED -t 100 -u ASSURED,SEEN_REPLY -m 5 2>/dev/null");
    let ours_d = start(&ns, &bin(), our_conf);
    let theirs_d = start(&ns, CONNTRACKD, their_conf);
    ns.sh("conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1001 --dport 53 -t 100 2>/dev/null");
    ns.sh("conntrack -I -p tcp -s fd00::1 -d fd00::2 --sport 1000 --dport 80 --state SYN_SENT -t 100 2>/dev/null");
    std::thread::sleep(Duration::from_millis(300));
    // One request to both; their outputs, ages and ids masked, sorted.
    let masked = |text: String| {
        let mut v: Vec<String> = text
            .lines()
            .map(|l| {
                let l = match (l.find("<id>"), l.find("</id>")) {
                    (Some(a), Some(b)) => format!("{}{}", &l[..a], &l[b + 5..]),
                    _ => l.to_string(),
                };
                match l.find("[active since ") {
                    Some(a) => format!("{}[active since N]", &l[..a]),
                    None => l,
                }
            })
            .collect();
        v.sort();
        v
    };
    let both = |arg: &str| {
        (
            masked(client(&ns, &bin(), our_conf, arg)),
            masked(client(&ns, CONNTRACKD, their_conf, arg)),
        )
    };
    let mut checked = Vec::new();
    let mut same = |arg: &str, nonempty: bool| {
        let (a, b) = both(arg);
        assert_eq!(a, b, "{arg}");
        assert_eq!(!b.is_empty(), nonempty, "{arg}: {b:?}");
        checked.push(format!("{arg}: {} lines", b.len()));
    };
    // The start-up dump's flow and the two created since.
    same("-i", true);
    same("-i -x", true);
    same("-s", true);
    same("-s cache", true);
    same("-s runtime", true);
    for silent in [
        "-s process",
        "-e",
        "-c",
        "-f",
        "-f external",
        "-n",
        "-B",
        "-t",
        "-s network",
        "-s queue",
        "-i expect",
    ] {
        same(silent, false);
    }
    same("-f internal", false);
    same("-s cache", true);
    same("-i", false);
    ns.sh("conntrack -I -p udp -s 10.0.0.7 -d 10.0.0.2 --sport 1001 --dport 53 -t 100 2>/dev/null");
    std::thread::sleep(Duration::from_millis(200));
    same("-R", false);
    same("-i", true);
    same("-s", true);
    same("-F", false);
    let t0 = Instant::now();
    while (flows(ours).len() < 3 || flows(theirs).len() < 3)
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (a, b) = (flows(ours), flows(theirs));
    same("-s runtime", true);
    let (our_s, their_s) = both("-s");
    drop((ours_d, theirs_d));
    let logs = |dir: &Path| {
        std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
    };
    let (our_log, their_log) = (logs(ours), logs(theirs));
    eprintln!(
        "checked: {checked:#?}\nconntrackd logged:\n{}",
        b.join("\n")
    );
    assert!(b.len() >= 3, "conntrackd's stats log: {b:#?}");
    assert_eq!(a, b);
    assert_eq!(our_s, their_s);
    for notice in [
        "[notice] flushing caches",
        "[notice] resync with master conntrack table",
        "[notice] flushing kernel conntrack table",
    ] {
        assert!(their_log.contains(notice), "{notice}: {their_log}");
        assert!(our_log.contains(notice), "{notice}: {our_log}");
    }
}

/// The mark is shown as the kernel reported it, as conntrackd shows it:
/// a flow of real traffic learned from its NEW event with mark 0 (the
/// kernel leaves CTA_MARK out of an event while the mark is 0 and
/// unchanged) is listed by `-i` without `mark=0`; one known from the
/// start-up dump (which always carries the mark) with it; a mark a
/// packet sets and a later one clears again is listed as `mark=0`, and
/// the flow's line in the stats log has no mark (its destroy event
/// carries none). ctsyncd showed `mark=0` for every flow, and kept a
/// cleared mark (`mark=5`) in `-i` and in the log.
#[test]
fn marks_are_shown_as_the_kernel_reported_them() {
    let Some((ns, dirs)) = setup("statsmark", "") else {
        return;
    };
    let Dirs {
        ours,
        theirs,
        our_conf,
        their_conf,
        ..
    } = &dirs;
    // Conntrack runs in a namespace only when its ruleset uses it; the
    // first byte of a datagram to port 9010 sets ('a') or clears ('b')
    // its flow's mark.
    ns.sh("ip link set lo up && nft -f - <<'EOF'
table inet t {
  chain o {
    type filter hook output priority 0;
    udp dport 9010 @th,64,8 0x61 ct mark set 5
    udp dport 9010 @th,64,8 0x62 ct mark set 0
    ct state new accept
  }
}
EOF");
    let send = |sport: u16, dport: u16, payload: &str| {
        ns.sh(&format!(
            "{} -c '{}'",
            common::PY,
            format_args!(
                "import socket\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((\"127.0.0.1\", {sport}))\n\
s.sendto(b\"{payload}\", (\"127.0.0.1\", {dport}))\n"
            )
        ));
    };
    // Known from the start-up dump.
    send(7001, 9001, "x");
    let ours_d = start(&ns, &bin(), our_conf);
    let theirs_d = start(&ns, CONNTRACKD, their_conf);
    // Learned from events: mark 0 all along; marked, then cleared.
    send(7002, 9002, "x");
    send(7010, 9010, "a");
    std::thread::sleep(Duration::from_millis(100));
    send(7010, 9010, "b");
    std::thread::sleep(Duration::from_millis(300));
    let masked = |text: String| {
        let mut v: Vec<String> = text
            .lines()
            .map(|l| {
                let l = match (l.find("<id>"), l.find("</id>")) {
                    (Some(a), Some(b)) => format!("{}{}", &l[..a], &l[b + 5..]),
                    _ => l.to_string(),
                };
                match l.find(" [active since ") {
                    Some(a) => l[..a].to_string(),
                    None => l,
                }
            })
            .collect();
        v.sort();
        v
    };
    let both = |arg: &str| {
        (
            masked(client(&ns, &bin(), our_conf, arg)),
            masked(client(&ns, CONNTRACKD, their_conf, arg)),
        )
    };
    let (our_i, their_i) = both("-i");
    let (our_x, their_x) = both("-i -x");
    ns.sh("conntrack -D -p udp --dport 9010 >/dev/null 2>&1");
    let t0 = Instant::now();
    while (flows(ours).is_empty() || flows(theirs).is_empty())
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let (a, b) = (flows(ours), flows(theirs));
    drop((ours_d, theirs_d));
    eprintln!(
        "conntrackd's -i:\n{}\nits log:\n{}",
        their_i.join("\n"),
        b.join("\n")
    );
    // conntrackd's own view, as the kernel reports marks: the dumped
    // flow with its mark, the unmarked one learned from an event without.
    let line = |port: u16| {
        their_i
            .iter()
            .find(|l| l.contains(&format!("dport={port} ")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(line(9001).ends_with(" mark=0"), "{their_i:#?}");
    assert!(!line(9002).contains("mark="), "{their_i:#?}");
    assert!(line(9010).ends_with(" mark=0"), "{their_i:#?}");
    assert_eq!(their_i.len(), 3, "{their_i:#?}");
    assert_eq!(our_i, their_i);
    assert_eq!(our_x, their_x);
    assert_eq!(b.len(), 1, "conntrackd's log: {b:#?}");
    assert_eq!(a, b);
}
