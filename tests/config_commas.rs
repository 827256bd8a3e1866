//! Commas in the configuration, case by case, against conntrackd 1.4.7.
//!
//! conntrackd's lexer reads a comma as a token of its own wherever it is
//! not part of a path (`/run/a,b`) or a comment, and no rule of its
//! grammar takes that token (nor did any since 2007, 1.4.2 included): a
//! comma anywhere else stops it with `parsing config file in line (N),
//! symbol ',': syntax error`, exit 1, in every list (Protocol, State,
//! Address, ExpectationSync, Helper) and after any value. ctsyncd refuses
//! the same commas, at the comma, and takes the same files.
//!
//! Each case also runs through conntrackd when it is installed: its client
//! mode (`-C FILE -s`) reads the whole file before it tries the control
//! socket, so a file it refuses gives its syntax error, one it takes
//! `can't connect` (the socket's directory does not exist; no daemon
//! starts, no network is touched). The same cases were run through
//! `conntrackd -C FILE` in a network namespace (the daemon starting for
//! each file taken) with the same verdicts.

mod common;

use std::process::Command;

use common::ctd::{CONNTRACKD, installed};
use ctsyncd::config::{self, Logic};

/// What follows every comma refusal.
const HINT: &str =
    " (items are separated by spaces: conntrackd refuses commas)";

/// A configuration with `body` inside `General`, after a control socket
/// conntrackd's client cannot reach.
fn general(body: &str) -> String {
    format!(
        "General {{\n  UNIX {{ Path /nonexistent-ctsyncd-commas/ctl }}\n  {body}\n}}\n"
    )
}

/// The 1-based line and column of the first comma of `text`.
fn first_comma(text: &str) -> (usize, usize) {
    for (i, l) in text.lines().enumerate() {
        if let Some(c) = l.find(',') {
            return (i + 1, c + 1);
        }
    }
    panic!("no comma in {text}");
}

/// conntrackd's verdict on `text` (client mode): `Err(line)` for its
/// syntax error at a comma, `Ok(())` when it read the file. None when it
/// is not installed.
fn conntrackd(name: &str, text: &str) -> Option<Result<(), usize>> {
    if !installed(name) {
        return None;
    }
    let dir = std::env::temp_dir()
        .join(format!("ctsyncd-commas-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("conntrackd.conf");
    std::fs::write(&conf, text).unwrap();
    let out = Command::new(CONNTRACKD)
        .arg("-C")
        .arg(&conf)
        .arg("-s")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if err.contains("can't connect") {
        assert!(!err.contains("parsing config file"), "{name}: {err}");
        return Some(Ok(()));
    }
    let line = err
        .split("parsing config file in line (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}: conntrackd said {err}"));
    assert!(
        err.contains("symbol ',': syntax error"),
        "{name}: conntrackd said {err}"
    );
    Some(Err(line))
}

/// Both refuse `text` at its first comma; ctsyncd says what it expected
/// there (`expected` is the start of that).
fn refused(name: &str, text: &str, expected: &str) {
    let (line, col) = first_comma(text);
    match config::parse(text, "c.conf") {
        Ok(p) => panic!(
            "{name}: parsed, warnings {:?}",
            p.warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
        Err(e) => {
            let msg = e.to_string();
            let head = format!("c.conf:{line}:{col}: found `,', expected ");
            assert!(
                msg.starts_with(&format!("{head}{expected}"))
                    && msg.ends_with(HINT),
                "{name}: {msg}\n  wanted {head}{expected}…{HINT}"
            );
        }
    }
    if let Some(verdict) = conntrackd(name, text) {
        assert_eq!(verdict, Err(line), "{name}: conntrackd");
    }
}

/// Both take `text`, ctsyncd without a warning.
fn taken(name: &str, text: &str) -> config::Parsed {
    let p =
        config::parse(text, "c.conf").unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(p.warnings.is_empty(), "{name}: {:?}", p.warnings);
    if let Some(verdict) = conntrackd(name, text) {
        assert_eq!(verdict, Ok(()), "{name}: conntrackd");
    }
    p
}

fn protocols(items: &str) -> String {
    general(&format!("Filter {{ Protocol Accept {{ {items} }} }}"))
}

fn states(items: &str) -> String {
    general(&format!("Filter {{ State Accept {{ {items} }} }}"))
}

fn addresses(items: &str) -> String {
    general(&format!("Filter {{ Address Ignore {{ {items} }} }}"))
}

fn options(body: &str) -> String {
    format!(
        "{}Sync {{\n  Mode NOTRACK {{ }}\n  UDP {{ IPv4_address 127.0.0.1 IPv4_Destination_Address 127.0.0.2 Port 3780 Interface lo }}\n  Options {{ {body} }}\n}}\n",
        general("")
    )
}

/// The old parser took `TCP, UDP` for `TCP UDP` (it cut a comma off the
/// end of each name).
#[test]
fn protocols_separated_by_a_comma_and_a_space_are_refused() {
    refused(
        "proto-comma-space",
        &protocols("TCP, UDP"),
        "a protocol name or `}' closing the list opened at 3:28",
    );
}

/// The old parser warned `unknown protocol `TCP,UDP'' and replicated
/// neither (an Accept list) or both (an Ignore list).
#[test]
fn protocols_joined_by_a_comma_are_refused() {
    refused(
        "proto-comma",
        &protocols("tcp,udp"),
        "a protocol name or `}' closing the list opened at 3:28",
    );
}

/// The old parser warned `unknown protocol `''.
#[test]
fn a_comma_standing_alone_in_a_protocol_list_is_refused() {
    refused(
        "proto-space-comma",
        &protocols("TCP , UDP"),
        "a protocol name or `}' closing the list opened at 3:28",
    );
}

/// The old parser took it without a word.
#[test]
fn a_trailing_comma_in_a_protocol_list_is_refused() {
    refused(
        "proto-trailing",
        &protocols("TCP UDP,"),
        "a protocol name or `}' closing the list opened at 3:28",
    );
}

/// The old parser took `ESTABLISHED, CLOSED` for `ESTABLISHED CLOSED`.
#[test]
fn states_separated_by_a_comma_and_a_space_are_refused() {
    refused(
        "state-comma-space",
        &states("ESTABLISHED, CLOSED for TCP"),
        "a TCP state or `}' closing the list opened at 3:25",
    );
}

/// The old parser refused it at the word, as no state.
#[test]
fn states_joined_by_a_comma_are_refused_at_the_comma() {
    refused(
        "state-comma",
        &states("ESTABLISHED,CLOSED for TCP"),
        "a TCP state or `}' closing the list opened at 3:25",
    );
}

/// The old parser took the comma before `for` without a word, and
/// refused the one after `TCP` at the word.
#[test]
fn a_trailing_comma_in_a_state_list_is_refused() {
    refused(
        "state-trailing",
        &states("ESTABLISHED, CLOSED, for TCP"),
        "a TCP state or `}' closing the list opened at 3:25",
    );
    refused(
        "state-after-for",
        &states("ESTABLISHED for TCP, CLOSED for TCP"),
        "a TCP state or `}' closing the list opened at 3:25",
    );
}

/// conntrackd's Address lists take one address a clause; the old parser
/// refused `1.2.3.4,` at the word, as no address (a link's
/// `127.0.0.2,` too).
#[test]
fn a_comma_between_addresses_is_refused_at_the_comma() {
    refused(
        "address-comma",
        &addresses("IPv4_address 1.2.3.4, 5.6.7.8"),
        "a clause of Address (IPv4_address, IPv6_address)",
    );
    refused(
        "address-clauses-comma",
        &addresses("IPv4_address 10.0.0.0/8, IPv6_address fd00::1"),
        "a clause of Address (IPv4_address, IPv6_address)",
    );
    refused(
        "address-v4-trailing",
        &addresses("IPv4_address 10.0.0.1,"),
        "a clause of Address (IPv4_address, IPv6_address)",
    );
    refused(
        "address-v6-trailing",
        &addresses("IPv6_address fd00::1,"),
        "a clause of Address (IPv4_address, IPv6_address)",
    );
    let link = options("").replace("127.0.0.2", "127.0.0.2,");
    refused("link-address-trailing", &link, "a clause of UDP (");
}

/// The old parser took `ftp,` as a helper name (one no helper has).
#[test]
fn a_comma_in_the_expectation_helper_list_is_refused() {
    refused(
        "expect-comma",
        &options("ExpectationSync { ftp, sip }"),
        "a helper name or `}' closing the list opened at 8:29",
    );
}

/// After a value: the old parser warned `'on,' is not a known syslog
/// facility`, took `lo,` for an interface name, and refused `8192,` at
/// the word.
#[test]
fn a_comma_after_a_value_is_refused() {
    refused(
        "syslog-comma",
        &general("Syslog on,"),
        "a clause of General (",
    );
    refused(
        "hashsize-comma",
        &general("HashSize 8192,"),
        "a clause of General (",
    );
    let udp = options("").replace("Interface lo", "Interface lo,");
    refused("interface-comma", &udp, "a clause of UDP (");
}

/// ctsyncd skips the Helper section (user-space helpers are not
/// implemented); the old parser skipped a comma in it too.
#[test]
fn a_comma_in_the_helper_section_is_refused() {
    refused(
        "helper-comma",
        &format!(
            "{}Helper {{ Type ftp inet tcp {{ QueueNum 5, }} }}\n",
            general("")
        ),
        "a clause or `}' of the Helper section",
    );
}

/// A comma in a path is part of the path, and one in a comment is
/// nothing, for both.
#[test]
fn a_comma_in_a_path_or_a_comment_is_taken() {
    let p = taken(
        "path-comment",
        &general("LockFile /run/ctsyncd,1.lock # a, b, c"),
    );
    assert_eq!(
        p.config.general.lock_file.to_str(),
        Some("/run/ctsyncd,1.lock")
    );
}

/// The same lists without commas, for both.
#[test]
fn lists_separated_by_spaces_are_taken() {
    let p = taken(
        "lists",
        &general(
            "Filter {\n    Protocol Accept { TCP udp }\n    State Accept { ESTABLISHED CLOSED for TCP }\n    Address Ignore { IPv4_address 1.2.3.4 IPv4_address 5.6.7.8 }\n  }",
        ),
    );
    let f = &p.config.general.filter;
    let proto = f.protocol.as_ref().unwrap();
    assert_eq!(
        (proto.logic, proto.items.clone()),
        (Logic::Accept, vec![6, 17])
    );
    assert_eq!(f.state.as_ref().unwrap().items.len(), 2);
    assert_eq!(f.address.as_ref().unwrap().items.iter().count(), 2);
    taken("expect-list", &options("ExpectationSync { ftp sip }"));
}
