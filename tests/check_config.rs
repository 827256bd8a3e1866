//! `--check-config` tells the truth: it prints exactly the warnings the
//! daemon logs at start (each clause that is parsed but not acted on with
//! its `file:line:col`), and `--strict` fails on any of them. Runs the
//! binary on real files (the fixtures and the shipped examples); needs no
//! root: the daemon run stops at a held lock file, after its start-up
//! warnings and before anything privileged.

// Deadlines here are wall-clock bounds on a real process, not logic.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn binary() -> PathBuf {
    std::env::var_os("CTSYNCD_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ctsyncd")),
        PathBuf::from,
    )
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(binary()).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The messages of the `[warning]` lines, without time and pid.
fn warnings(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter_map(|l| l.split_once("[warning] ").map(|(_, m)| m.to_owned()))
        .collect()
}

/// A temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir()
            .join(format!("ctsyncd-check-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// `text` with `@DIR@` replaced by this directory, written as `name`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text.replace("@DIR@", self.0.to_str().unwrap()))
            .unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every clause the daemon parses but does not act on, in one file.
const UNIMPLEMENTED: &str = "General {
	HashSize 8192
	LockFile @DIR@/lock
	UNIX { Path @DIR@/ctl }
	PollSecs 15
	Filter From Kernelspace {
		Protocol Accept { TCP }
	}
}
Sync {
	Mode FTFW { }
	UDP {
		IPv4_address 127.0.0.1
		IPv4_Destination_Address 127.0.0.2
		Port 3780
		Interface lo
		Checksum off
	}
}
Helper {
	Type ftp inet tcp {
		QueueNum 0
	}
}
";

#[test]
fn check_config_lists_each_unimplemented_clause_with_its_place() {
    let d = Dir::new("unimpl");
    let conf = d.file("u.conf", UNIMPLEMENTED);
    let c = conf.to_str().unwrap();
    let out = run(&["-C", c, "--check-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let w = warnings(&out.stderr);
    // Which entries remain depends on what this build implements
    // (config::NOT_IMPLEMENTED); each that does must point at its clause.
    let places = [
        ("HashSize", format!("{c}:2:2: HashSize: ")),
        ("PollSecs", format!("{c}:5:2: PollSecs: ")),
        (
            "Filter From Kernelspace",
            format!("{c}:6:2: Filter From Kernelspace: "),
        ),
        ("Checksum off", format!("{c}:17:3: Checksum off: ")),
        ("Helper", format!("{c}:20:1: Helper: ")),
    ];
    let listed: Vec<&str> = ctsyncd::config::NOT_IMPLEMENTED
        .iter()
        .map(|n| n.name)
        .collect();
    for (name, place) in &places {
        let shown = w.iter().any(|l| l.starts_with(place.as_str()));
        assert_eq!(
            shown,
            listed.contains(name),
            "{name}: table says {:?}, output:\n{w:#?}",
            listed.contains(name)
        );
    }
    // Helper stays unimplemented (issue 16): --strict must refuse it.
    assert!(
        w.iter()
            .any(|l| l.contains("Helper: user-space conntrack helpers")),
        "{w:#?}"
    );
    assert!(text(&out.stdout).contains("configuration is valid, with"));

    let strict = run(&["-C", c, "--check-config", "--strict"]);
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(warnings(&strict.stderr), w);
    assert!(text(&strict.stderr).contains("refused by --strict"));
    assert!(!text(&strict.stdout).contains("configuration is valid"));
}

#[test]
fn a_helper_section_alone_fails_strict() {
    let d = Dir::new("helper");
    let conf = d.file(
        "h.conf",
        "General {\n\tUNIX { Path @DIR@/ctl }\n}\nHelper {\n\tType ftp inet tcp {\n\t\tQueueNum 0\n\t}\n}\n",
    );
    let out =
        run(&["-C", conf.to_str().unwrap(), "--check-config", "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(warnings(&out.stderr).len(), 1, "{}", text(&out.stderr));
}

#[test]
fn the_daemon_logs_the_same_warnings_at_start() {
    let d = Dir::new("same");
    let conf = d.file("u.conf", UNIMPLEMENTED);
    let c = conf.to_str().unwrap();
    let checked = warnings(&run(&["-C", c, "--check-config"]).stderr);
    assert!(!checked.is_empty());
    // A held lock stops the daemon right after its start-up warnings.
    std::fs::write(d.0.join("lock"), format!("{}\n", std::process::id()))
        .unwrap();
    let daemon = run(&["-C", c]);
    assert_eq!(daemon.status.code(), Some(1));
    assert!(
        text(&daemon.stderr).contains("already running?"),
        "{}",
        text(&daemon.stderr)
    );
    assert_eq!(warnings(&daemon.stderr), checked);
}

#[test]
fn parser_warnings_count_for_strict() {
    // The 1.4.2 file: deprecated and obsolete clauses, each warned.
    let legacy = fixture("legacy-142.conf");
    let out =
        run(&["-C", legacy.to_str().unwrap(), "--check-config", "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    let w = warnings(&out.stderr);
    assert!(
        w.iter()
            .any(|l| l.contains("legacy-142.conf:4:2: `Family' is deprecated")),
        "{w:#?}"
    );
    assert!(
        text(&out.stderr)
            .contains(&format!("{} warnings, refused by --strict", w.len()))
    );
}

#[test]
fn clean_files_pass_strict() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in [
        root.join("etc/ctsyncd.conf"),
        root.join("etc/ftfw-multicast.conf"),
        root.join("etc/notrack-tcp.conf"),
        root.join("etc/alarm.conf"),
        fixture("ftfw-udp.conf"),
        fixture("notrack-tcp.conf"),
    ] {
        let out =
            run(&["-C", f.to_str().unwrap(), "--check-config", "--strict"]);
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            text(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            f.display(),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).ends_with("configuration is valid\n"));
    }
}

#[test]
fn hash_size_is_named_not_ignored_silently() {
    let multicast = fixture("ftfw-multicast.conf");
    let m = multicast.to_str().unwrap();
    let out = run(&["-C", m, "--check-config"]);
    assert!(out.status.success());
    let line = format!(
        "{m}:3:2: HashSize: ignored: the caches grow as entries arrive, up to HashLimit"
    );
    let w = warnings(&out.stderr);
    assert!(w.contains(&line), "{w:#?}");
    let out = run(&["-C", m, "--check-config", "--strict"]);
    assert_eq!(out.status.code(), Some(1));
}

/// conntrackd's lexer reads bytes: a Latin-1 comment is no error (it was
/// "can't open config file … did not contain valid UTF-8", no position).
#[test]
fn a_latin1_comment_is_read_as_conntrackd_reads_it() {
    let d = Dir::new("latin1");
    let mut text = b"# Configuraci\xf3n del cortafuegos\n".to_vec();
    text.extend_from_slice(
        format!(
            "General {{ LockFile {0}/lock UNIX {{ Path {0}/ctl }} }}\n",
            d.0.display()
        )
        .as_bytes(),
    );
    let c = d.0.join("c.conf");
    std::fs::write(&c, text).unwrap();
    let out = run(&["-C", c.to_str().unwrap(), "--check-config", "--strict"]);
    assert!(out.status.success(), "{}", text_of(&out));
}

/// An argument that is not UTF-8 is refused with a message; it was a
/// panic (an abort, in a router build: no message at all).
#[test]
fn an_argument_that_is_not_utf8_is_refused_not_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(binary())
        .arg("-C")
        .arg(std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9.conf"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    let err = text(&out.stderr);
    assert!(err.contains("argument is not valid UTF-8"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A key file that is a FIFO (mode 0600) blocked the read, and
/// `--check-config` and the start with it; it is refused at once.
#[test]
fn a_key_file_that_is_not_a_regular_file_is_refused_at_once() {
    let d = Dir::new("fifo");
    let key = d.0.join("key");
    let made = Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let c = d.file(
        "c.conf",
        &format!(
            "General {{ LockFile @DIR@/lock UNIX {{ Path @DIR@/ctl }} }}\n\
             Sync {{\n Mode FTFW {{ }}\n UDP {{ IPv4_address 127.0.0.1 \
             IPv4_Destination_Address 127.0.0.2 Port 3780 Interface lo }}\n \
             Options {{ AuthenticationKeyFile {} }}\n}}\n",
            key.display()
        ),
    );
    let mut child = Command::new(binary())
        .args(["-C", c.to_str().unwrap(), "--check-config"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("--check-config blocked on the FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    assert!(
        text(&out.stderr).contains("not a regular file"),
        "{}",
        text_of(&out)
    );
}

fn text_of(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}
