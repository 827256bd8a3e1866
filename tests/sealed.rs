//! Sealed sync links with real daemons (`AuthenticationKeyFile`): a wrong
//! key delivers nothing and is counted; a capture of a real session,
//! replayed with a plain UDP socket from the primary's namespace at the
//! live backup and at a restarted one, changes nothing; both nodes rotate
//! from key A to key B one at a time without losing an entry. And the
//! key file rules of `--check-config` and `--genkey` (these need no root).
//!
//! The capture is taken in the backup's namespace with a raw IPv4 socket
//! for UDP, which the kernel hands a copy of every UDP datagram arriving
//! there.

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::Read as _;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::fw::{Fw, bin, create, delete, flows, json_number, udp_link};
use common::{Netns, pair};

const IGNORE_LINK: &str =
    "Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }";

/// A directory of key files, removed when dropped.
struct Keys(PathBuf);

impl Keys {
    fn new(tag: &str) -> Keys {
        let d = std::env::temp_dir()
            .join(format!("ctsyncd-keys-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Keys(d)
    }

    /// A fresh key (from `ctsyncd --genkey`) in a file of `mode`.
    fn make(&self, name: &str, mode: u32) -> PathBuf {
        let out = std::process::Command::new(bin())
            .arg("--genkey")
            .output()
            .unwrap();
        assert!(out.status.success());
        let p = self.0.join(name);
        std::fs::write(&p, &out.stdout).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .unwrap();
        p
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sync(me: &str, peer: &str, keys: &[&Path]) -> String {
    sync_mode("FTFW", me, peer, keys)
}

/// NOTRACK applies old messages as they come (no sequence tracking drops
/// them): only the anti-replay window stands between a replay and the
/// cache.
fn sync_mode(mode: &str, me: &str, peer: &str, keys: &[&Path]) -> String {
    let clauses: Vec<String> = keys
        .iter()
        .map(|k| format!("  AuthenticationKeyFile {}", k.display()))
        .collect();
    format!(
        "Mode {mode} {{ StartupResync On }}\n{}\nOptions {{\n{}\n}}",
        udp_link(me, peer),
        clauses.join("\n")
    )
}

/// The root tests run one at a time: each builds the same veth pair.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn primary(ns: &Netns, keys: &[&Path]) -> Fw {
    let name = format!("{}1", ns.0);
    Fw::start(ns, &name, IGNORE_LINK, &sync("10.9.0.1", "10.9.0.2", keys))
}

fn backup(ns: &Netns, keys: &[&Path]) -> Fw {
    let name = format!("{}2", ns.0);
    Fw::start(ns, &name, IGNORE_LINK, &sync("10.9.0.2", "10.9.0.1", keys))
}

/// A counter of the first link in the `--json` statistics.
fn link_number(json: &str, key: &str) -> u64 {
    let links = &json[json.find("\"links\":[").expect("links")..];
    let k = links.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
    links[k..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn wait(fw: &Fw, n: u64, what: &str) {
    if fw
        .wait_cached("external", n, Duration::from_secs(20))
        .is_none()
    {
        panic!(
            "{what}: {} of {n} in the external cache\n{}",
            fw.cached("external"),
            fw.log()
        );
    }
}

#[test]
fn a_wrong_key_reaches_nothing_and_is_counted() {
    let _one = one_at_a_time();
    let Some((a, b)) = pair("slw") else {
        return;
    };
    let keys = Keys::new("slw");
    let (ka, kb) = (keys.make("a", 0o600), keys.make("b", 0o600));
    let fw1 = primary(&a, &[&ka]);
    let fw2 = backup(&b, &[&kb]);
    create(&a, &flows("10.120.0.1", 50));
    let t0 = Instant::now();
    let mut s = fw2.stats();
    while json_number(&s, "sync", "auth_failed") < 3 {
        assert!(t0.elapsed() < Duration::from_secs(20), "{s}");
        std::thread::sleep(Duration::from_millis(100));
        s = fw2.stats();
    }
    assert_eq!(fw2.cached("external"), 0);
    assert!(link_number(&s, "auth_failed") >= 3, "{s}");
    assert_eq!(json_number(&s, "sync", "msgs_recv"), 0, "{s}");
    // Logged, once (the next report waits a minute).
    let log = fw2.log();
    assert_eq!(log.matches("refused sync datagrams").count(), 1, "{log}");
    assert_eq!(fw1.cached("internal"), 50);
}

/// Collects the UDP payloads sent from 10.9.0.1 to port 3780 arriving in
/// `ns`, until `stop`.
fn capture(ns: &Netns, stop: Arc<AtomicBool>) -> Vec<Vec<u8>> {
    ns.enter(move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut s = s;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        let t0 = Instant::now();
        while !stop.load(Ordering::Relaxed)
            && t0.elapsed() < Duration::from_secs(120)
        {
            let Ok(n) = s.read(&mut buf) else {
                continue;
            };
            let ip = &buf[..n];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if n < ihl + 8 || ip[12..16] != [10, 9, 0, 1] {
                continue;
            }
            let udp = &ip[ihl..];
            if u16::from_be_bytes([udp[2], udp[3]]) == 3780 {
                got.push(udp[8..].to_vec());
            }
        }
        got
    })
}

/// What arrives from the primary in `ns` while `f` runs.
fn captured_while(ns: &Netns, f: impl FnOnce()) -> Vec<Vec<u8>> {
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|sc| {
        let stop2 = stop.clone();
        let cap = sc.spawn(move || capture(ns, stop2));
        std::thread::sleep(Duration::from_millis(300));
        f();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        cap.join().unwrap()
    })
}

/// Sends `datagrams` from the primary's address to the backup's sync
/// port, as a replaying attacker on the link would.
fn replay(ns: &Netns, datagrams: &[Vec<u8>]) {
    ns.enter(|| {
        let s = UdpSocket::bind("10.9.0.1:0").unwrap();
        for d in datagrams {
            s.send_to(d, "10.9.0.2:3780").unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
}

/// The external cache stays at `n` for `long`.
fn stays(fw: &Fw, n: u64, long: Duration, what: &str) {
    let t0 = Instant::now();
    while t0.elapsed() < long {
        let got = fw.cached("external");
        assert_eq!(got, n, "{what}\n{}", fw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replayed_capture_changes_nothing() {
    let _one = one_at_a_time();
    let Some((a, b)) = pair("slr") else {
        return;
    };
    let keys = Keys::new("slr");
    let k = keys.make("k", 0o600);
    let notrack = |ns: &Netns, n: &str, me: &str, peer: &str| {
        let conf = sync_mode("NOTRACK", me, peer, &[&k]);
        Fw::start(ns, &format!("{}{n}", ns.0), IGNORE_LINK, &conf)
    };
    let fw1 = notrack(&a, "1", "10.9.0.1", "10.9.0.2");
    let mut fw2 = notrack(&b, "2", "10.9.0.2", "10.9.0.1");
    // The capture holds the session's start and the 200 flows' creation,
    // not their deletion: replayed, it would re-create them.
    let burst = flows("10.121.0.1", 200);
    let captured = captured_while(&b, || {
        create(&a, &burst);
        wait(&fw2, 200, "created");
    });
    delete(&a, &burst);
    wait(&fw2, 0, "deleted");
    let created = |fw: &Fw| json_number(&fw.stats(), "external", "created");
    let created_before = created(&fw2);
    eprintln!("captured {} sealed datagrams", captured.len());
    assert!(captured.len() >= 3, "captured {}", captured.len());
    assert!(captured.iter().all(|d| d.len() > 2 && d[2] == 2), "sealed");

    // (a) At the live backup.
    let before = json_number(&fw2.stats(), "sync", "replayed");
    replay(&a, &captured);
    stays(
        &fw2,
        0,
        Duration::from_secs(2),
        "replayed at the live backup",
    );
    let s = fw2.stats();
    assert_eq!(created(&fw2), created_before, "{s}");
    let replayed = json_number(&s, "sync", "replayed") - before;
    assert_eq!(replayed, captured.len() as u64, "{s}");
    assert!(link_number(&s, "replayed") >= replayed);

    // (b) At a restarted backup with the same key: before, while and
    // after the live primary proves its session to it.
    drop(fw2);
    fw2 = notrack(&b, "2", "10.9.0.2", "10.9.0.1");
    replay(&a, &captured);
    stays(
        &fw2,
        0,
        Duration::from_secs(3),
        "replayed at a restarted backup",
    );
    replay(&a, &captured);
    stays(
        &fw2,
        0,
        Duration::from_secs(2),
        "replayed again after the proof",
    );
    assert_eq!(created(&fw2), 0, "nothing created from the capture");
    // The link still works: a new flow arrives.
    create(&a, &flows("10.122.0.1", 5));
    wait(&fw2, 5, "after the replays");
    let s = fw2.stats();
    assert!(json_number(&s, "sync", "replayed") > 0, "{s}");
    assert!(json_number(&s, "sync", "challenges_answered") >= 1, "{s}");
    drop(fw1);
}

#[test]
fn keys_rotate_one_node_at_a_time_without_losing_an_entry() {
    let _one = one_at_a_time();
    let Some((a, b)) = pair("slk") else {
        return;
    };
    let keys = Keys::new("slk");
    let (ka, kb) = (keys.make("a", 0o600), keys.make("b", 0o400));
    let mut fw1 = primary(&a, &[&ka]);
    let mut fw2 = backup(&b, &[&ka]);
    let mut total = 0u64;
    let mut step = |fw1: &Fw, fw2: &Fw, what: &str| {
        create(&a, &flows(&format!("10.123.{total}.1"), 20));
        total += 20;
        wait(fw2, total, what);
        for fw in [fw1, fw2] {
            let s = fw.stats();
            assert_eq!(
                json_number(&s, "sync", "auth_failed"),
                0,
                "{what}: {s}"
            );
        }
    };
    step(&fw1, &fw2, "A, A");
    // Each restart: the restarted node asks for a resync (StartupResync)
    // and is sent a bulk; nothing may be lost on the way.
    fw2 = {
        drop(fw2);
        backup(&b, &[&ka, &kb])
    };
    step(&fw1, &fw2, "A, A+B");
    fw1 = {
        drop(fw1);
        primary(&a, &[&ka, &kb])
    };
    step(&fw1, &fw2, "A+B, A+B");
    fw1 = {
        drop(fw1);
        primary(&a, &[&kb, &ka])
    };
    step(&fw1, &fw2, "B+A, A+B");
    fw2 = {
        drop(fw2);
        backup(&b, &[&kb, &ka])
    };
    step(&fw1, &fw2, "B+A, B+A");
    fw1 = {
        drop(fw1);
        primary(&a, &[&kb])
    };
    step(&fw1, &fw2, "B, B+A");
    fw2 = {
        drop(fw2);
        backup(&b, &[&kb])
    };
    step(&fw1, &fw2, "B, B");
}

#[test]
fn sealed_frames_cross_tcp_and_multicast_links() {
    let _one = one_at_a_time();
    let Some((a, b)) = pair("slt") else {
        return;
    };
    let keys = Keys::new("slt");
    let k = keys.make("k", 0o600);
    let link = |kind: &str, me: u8, peer: u8| match kind {
        "TCP" => format!(
            "TCP {{ IPv4_address 10.9.0.{me} IPv4_Destination_Address 10.9.0.{peer} Port 3790 Interface s0 }}"
        ),
        _ => format!(
            "Multicast {{ IPv4_address 225.0.0.50 IPv4_interface 10.9.0.{me} Group 3780 Interface s0 }}"
        ),
    };
    for (i, kind) in ["TCP", "Multicast"].into_iter().enumerate() {
        let conf = |me, peer| {
            format!(
                "Mode FTFW {{ }}\n{}\nOptions {{ AuthenticationKeyFile {} }}",
                link(kind, me, peer),
                k.display()
            )
        };
        let fw1 =
            Fw::start(&a, &format!("{}t1", a.0), IGNORE_LINK, &conf(1, 2));
        let fw2 =
            Fw::start(&b, &format!("{}t2", b.0), IGNORE_LINK, &conf(2, 1));
        let burst = flows(&format!("10.124.{i}.1"), 300);
        create(&a, &burst);
        wait(&fw2, 300, kind);
        delete(&a, &burst);
        wait(&fw2, 0, kind);
        let s = fw2.stats();
        for refused in ["auth_failed", "replayed", "unsealed", "malformed"] {
            assert_eq!(json_number(&s, "sync", refused), 0, "{kind}: {s}");
        }
        drop((fw1, fw2));
    }
}

// ===== no root needed =====

fn check_config(conf: &Path) -> std::process::Output {
    std::process::Command::new(bin())
        .args(["-C", conf.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap()
}

#[test]
fn check_config_refuses_key_files_others_may_read() {
    let keys = Keys::new("slc");
    let k = keys.make("k", 0o640);
    let conf = keys.0.join("ctsyncd.conf");
    let text = |key: &Path| {
        format!(
            "General {{ UNIX {{ Path /run/x.ctl }} }}\nSync {{\n  Mode FTFW {{ }}\n  UDP {{ IPv4_address 10.9.0.1 IPv4_Destination_Address 10.9.0.2 Port 3780 Interface s0 }}\n  Options {{\n    AuthenticationKeyFile {}\n  }}\n}}\n",
            key.display()
        )
    };
    std::fs::write(&conf, text(&k)).unwrap();
    let out = check_config(&conf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{}:6:27", conf.display())), "{err}");
    assert!(err.contains(k.to_str().unwrap()), "{err}");
    assert!(err.contains("group or others (mode 0640)"), "{err}");
    for mode in [0o604, 0o660, 0o666] {
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(mode))
            .unwrap();
        assert!(!check_config(&conf).status.success(), "{mode:o}");
    }
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))
        .unwrap();
    let out = check_config(&conf);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    // Not a key.
    std::fs::write(&k, "c2hvcnQ=\n").unwrap();
    let out = check_config(&conf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("decodes to 5 bytes"),
        "{err}"
    );
    // A credential that exists only in the running unit: a note on
    // stdout, no warning (the NixOS build-time check).
    let missing = keys.0.join("absent");
    std::fs::write(&conf, text(&missing)).unwrap();
    let out = check_config(&conf);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("read at start"));
}

#[test]
fn genkey_prints_fresh_keys() {
    let run = || {
        let out = std::process::Command::new(bin())
            .arg("--genkey")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let (k1, k2) = (run(), run());
    assert_ne!(k1, k2);
    assert_eq!(k1.len(), 45, "44 base64 characters and a newline");
    assert!(ctsyncd::wire::seal::Key::from_base64(&k1).is_ok());
}
