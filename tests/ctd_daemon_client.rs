//! ctsyncd's client against a conntrackd daemon: during a migration the
//! binary is replaced (ctsyncd installed as `conntrackd`) while the old
//! conntrackd daemon still runs until its restart, and the keepalived
//! notify script's `conntrackd -c` at a takeover is then ctsyncd's
//! client. conntrackd closes a connection whose request it does not know
//! without a byte, and the client said "closed the connection without an
//! answer" and exited 1: no commit. It now asks again in conntrackd's
//! protocol. Debian's conntrackd 1.4.7 in a network namespace; needs root.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::ctd::{Ctd, Peer, installed};
use common::fw::{create, flows, udp_link};

const BIN: &str = env!("CARGO_BIN_EXE_ctsyncd");

fn ours(ctd: &Ctd, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("-C")
        .arg(&ctd.conf)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ctsyncds_client_asks_a_conntrackd_daemon_in_its_protocol() {
    if !installed("ctd_daemon_client") {
        return;
    }
    let Some((a, _b)) = common::pair("cdc") else {
        return;
    };
    let ctd = Ctd::start(
        &a,
        "cdc",
        "HashSize 8192\n HashLimit 65535\n Syslog off",
        &format!("Mode FTFW {{ }}\n{}", udp_link("10.9.0.1", "10.9.0.2")),
    );
    create(&a, &flows("10.100.0.1", 5));
    let cached = common::until(Duration::from_secs(10), || {
        ctd.run(&["-i"]).matches("src=10.100.0.1").count() == 5
    });
    assert!(cached.is_some(), "conntrackd never cached the flows");

    // The same text as conntrackd's own client prints.
    for args in [&["-i"][..], &["-s", "cache"], &["-s", "network"]] {
        let theirs = ctd.run(args);
        let out = ours(&ctd, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), theirs, "{args:?}");
    }
    // A takeover's commit: done, exit 0, in conntrackd's log.
    let out = ours(&ctd, &["-c"]);
    assert!(out.status.success(), "-c: {}", text(&out.stderr));
    let logged = common::until(Duration::from_secs(5), || {
        ctd.log().contains("committing all external caches")
    });
    assert!(
        logged.is_some(),
        "no commit in conntrackd's log:\n{}",
        ctd.log()
    );
    // A request conntrackd has no code for: no answer, said so (exit 1).
    let out = ours(&ctd, &["-s", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("a conntrackd daemon?"),
        "{}",
        text(&out.stderr)
    );
}
