//! The daemon's lifecycle as a user sees it: start in the foreground and
//! with `-d`, answer the control socket, refuse a second instance, shut
//! down cleanly on `-k` and SIGTERM, and survive garbage on its socket.
//! Runs unprivileged: everything lives in a temporary directory.

// Deadlines here are wall-clock bounds on a real process, not logic.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ctsyncd::control::proto::{self, MAX_REPLY, Reply, Status};

const BIN: &str = env!("CARGO_BIN_EXE_ctsyncd");

struct Lab {
    dir: PathBuf,
    conf: PathBuf,
}

impl Lab {
    fn new(name: &str) -> Lab {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("ctsyncd.conf");
        std::fs::write(
            &conf,
            format!(
                "General {{\n  LogFile {d}/ctsyncd.log\n  LockFile {d}/lock\n  UNIX {{ Path {d}/ctl }}\n}}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        Lab { dir, conf }
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ctsyncd.log"))
            .unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("-C")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap()
    }

    fn foreground(&self) -> Child {
        let child = Command::new(BIN)
            .arg("-C")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(|| UnixStream::connect(self.sock()).is_ok());
        child
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Make sure no daemon outlives the test.
        let _ = self.cli(&["-k"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "daemon did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends raw bytes and returns the final status the daemon answers with.
fn raw_exchange(sock: &Path, bytes: &[u8]) -> Option<Status> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let mut at = 0;
    while let Ok(Some((reply, used))) =
        proto::decode::<Reply>(&buf[at..], MAX_REPLY)
    {
        at += used;
        if let Reply::Done(st) = reply {
            return Some(st);
        }
    }
    None
}

#[test]
fn foreground_answers_stats_and_stops_on_kill() {
    let lab = Lab::new("fg");
    let mut d = lab.foreground();
    let mode = std::fs::metadata(lab.sock()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "control socket must be root-only");
    let lock_mode = std::fs::metadata(lab.lock()).unwrap().permissions().mode();
    assert_eq!(lock_mode & 0o777, 0o600);

    let out = lab.cli(&["-s", "runtime"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.starts_with("daemon uptime: 0 min\n\nnetlink stats:\n"),
        "{s}"
    );
    let out = lab.cli(&["-s", "r", "--json"]);
    assert!(text(&out.stdout).starts_with("{\"uptime_seconds\":"));
    let out = lab.cli(&["-s", "process"]);
    assert!(out.status.success() && out.stdout.is_empty());

    // Every other request: an explicit "not supported", exit 1.
    for args in [
        &["-c"][..],
        &["-c", "ct"],
        &["-c", "exp"],
        &["-f"],
        &["-f", "internal"],
        &["-f", "external"],
        &["-F"],
        &["-F", "expect"],
        &["-i"],
        &["-i", "exp"],
        &["-e"],
        &["-e", "-x"],
        &["-i", "--json"],
        &["-R"],
        &["-B"],
        &["-n"],
        &["-t"],
        &["-s"],
        &["-s", "network"],
        &["-s", "cache"],
        &["-s", "link"],
        &["-s", "rsqueue"],
        &["-s", "queue"],
        &["-s", "expect"],
    ] {
        let out = lab.cli(args);
        // 2: the daemon answered "not supported" (1 means no answer).
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("not supported:"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // The refusals were counted.
    let s = text(&lab.cli(&["-s", "runtime"]).stdout);
    assert!(
        s.contains("\tlocal unknown request:\t\t          24\n"),
        "{s}"
    );

    let out = lab.cli(&["-k"]);
    assert!(out.status.success());
    assert!(wait_exit(&mut d).success());
    assert!(!lab.sock().exists() && !lab.lock().exists());
    let log = lab.log();
    for line in [
        "initialization completed",
        "-- starting in console mode --",
        "---- shutdown received ----",
    ] {
        assert!(log.contains(&format!("[notice] {line}\n")), "{log}");
    }
}

#[test]
fn background_start_reports_readiness_and_refuses_a_second_instance() {
    let lab = Lab::new("bg");
    let out = lab.cli(&["-d"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // -d returned only once the daemon was ready: the socket answers now.
    assert!(UnixStream::connect(lab.sock()).is_ok());
    assert!(lab.log().contains("-- starting in daemon mode --"));

    let out = lab.cli(&["-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exists, perhaps ctsyncd already running?"),
        "{}",
        text(&out.stderr)
    );
    // The refused start left the running daemon's files alone.
    assert!(lab.sock().exists() && lab.lock().exists());
    assert!(lab.cli(&["-s", "runtime"]).status.success());

    assert!(lab.cli(&["-k"]).status.success());
    wait_until(|| !lab.lock().exists());
    assert!(!lab.sock().exists());
    let out = lab.cli(&["-s", "runtime"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("can't connect: is ctsyncd running?"));
}

/// Once initialised the daemon leaves the directory it was started from,
/// as conntrackd does (`chdir("/")`): a daemon started from a script's
/// working directory kept it busy (a medium that then could not be
/// unmounted).
#[test]
fn the_daemon_leaves_its_start_directory() {
    let lab = Lab::new("cwd");
    let work = lab.dir.join("work");
    std::fs::create_dir(&work).unwrap();
    let cwd_of = |lock: &Path| {
        let pid = std::fs::read_to_string(lock).unwrap();
        std::fs::read_link(format!("/proc/{}/cwd", pid.trim())).unwrap()
    };
    // `-d`.
    let out = Command::new(BIN)
        .arg("-C")
        .arg(&lab.conf)
        .arg("-d")
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(cwd_of(&lab.lock()), Path::new("/"));
    assert!(lab.cli(&["-k"]).status.success());
    wait_until(|| !lab.lock().exists());

    // In the foreground.
    let mut d = Command::new(BIN)
        .arg("-C")
        .arg(&lab.conf)
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Answered: initialised (a connection alone may come before).
    wait_until(|| lab.cli(&["-s", "runtime"]).status.success());
    assert_eq!(cwd_of(&lab.lock()), Path::new("/"));
    assert!(lab.cli(&["-k"]).status.success());
    assert!(wait_exit(&mut d).success());
}

#[test]
fn background_start_failure_exits_1_with_the_reason() {
    let lab = Lab::new("bgfail");
    std::fs::write(lab.lock(), "1\n").unwrap();
    let out = lab.cli(&["-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("lockfile"),
        "{}",
        text(&out.stderr)
    );
    // A stale lock (its pid is gone) is reported as such.
    std::fs::write(lab.lock(), "2147483000\n").unwrap();
    let out = lab.cli(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is stale"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sigterm_removes_socket_and_lock() {
    let lab = Lab::new("term");
    let mut d = lab.foreground();
    let pid = rustix::process::Pid::from_child(&d);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(wait_exit(&mut d).success());
    assert!(!lab.sock().exists() && !lab.lock().exists());
    assert!(lab.log().contains("---- shutdown received ----"));
}

#[test]
fn garbage_on_the_control_socket_is_answered_and_counted() {
    let lab = Lab::new("garbage");
    let mut d = lab.foreground();
    let sock = lab.sock();
    // Random bytes: a length prefix that is far too large.
    assert!(matches!(
        raw_exchange(&sock, b"\xde\xad\xbe\xef garbage"),
        Some(Status::BadRequest(_))
    ));
    // Oversized frame announced.
    assert!(matches!(
        raw_exchange(&sock, &[0, 0, 0x10, 0]),
        Some(Status::BadRequest(_))
    ));
    // Truncated frame, then the client closes.
    assert!(matches!(
        raw_exchange(&sock, &[0, 0, 0, 9, proto::VERSION, 1]),
        Some(Status::BadRequest(_))
    ));
    // Wrong protocol version and an unknown request variant.
    assert!(matches!(
        raw_exchange(&sock, &[0, 0, 0, 2, 77, 0]),
        Some(Status::BadRequest(_))
    ));
    assert!(matches!(
        raw_exchange(&sock, &[0, 0, 0, 2, proto::VERSION, 120]),
        Some(Status::BadRequest(_))
    ));
    // Nothing at all.
    assert!(matches!(
        raw_exchange(&sock, &[]),
        Some(Status::BadRequest(_))
    ));
    // A client that connects and sends nothing does not block the others.
    let idle = UnixStream::connect(&sock).unwrap();
    let out = lab.cli(&["-s", "runtime"]);
    assert!(out.status.success());
    // Six bad requests, plus the readiness probe of `foreground()`, which
    // connected and closed without a request (conntrackd counts that too).
    assert!(
        text(&out.stdout).contains("\tlocal read failed:\t\t           7\n"),
        "{}",
        text(&out.stdout)
    );
    drop(idle);
    assert!(lab.cli(&["-k"]).status.success());
    assert!(wait_exit(&mut d).success());
}

#[test]
fn only_option_errors_come_with_the_usage() {
    // conntrackd 1.4.7 prints its usage before an unknown option, a bad
    // mix or a missing file name, and the bare error for a word `-f` or
    // `-s` does not know (`-s zz`: one line, the usage would bury it).
    let lab = Lab::new("usage");
    let cases: [(&[&str], &str, bool); 5] = [
        (
            &["-s", "zz"],
            "unknown parameter `zz' for option `-s'",
            false,
        ),
        (
            &["-f", "zz"],
            "unknown parameter `zz' for option `-f'",
            false,
        ),
        (&["-z"], "Unknown option: -z", true),
        (&["-x"], "Invalid parameters", true),
        (
            &["-c", "zz"],
            "unknown parameter `zz' for option `-c'",
            true,
        ),
    ];
    for (args, error, usage) in cases {
        let out = lab.cli(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(error), "{args:?}: {err}");
        assert_eq!(err.contains("Usage: ctsyncd"), usage, "{args:?}: {err}");
    }
}

#[test]
fn a_reader_that_leaves_is_not_called_a_control_socket_error() {
    // `ctsyncd -i | head -1`: the pipe closes under the client's output.
    // The daemon and its socket are fine, and the client must not say
    // otherwise (it said `control socket: Broken pipe`).
    let lab = Lab::new("epipe");
    let mut d = lab.foreground();
    let mut cli = Command::new(BIN)
        .arg("-C")
        .arg(&lab.conf)
        .args(["-s", "runtime"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(cli.stdout.take());
    let out = cli.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("control socket"), "{err}");
    assert!(lab.cli(&["-k"]).status.success());
    assert!(wait_exit(&mut d).success());
}

/// A connection closed to make room for newer ones (more than 32 waiting
/// for their request) sent nothing, as one that times out: it counts in
/// `local read failed` too. It was closed without a trace.
#[test]
fn idle_connections_closed_to_make_room_are_counted() {
    let lab = Lab::new("evict");
    let mut d = lab.foreground();
    // 40 connections that send nothing: 8 closed to make room, 32 after
    // their read deadline.
    let conns: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(lab.sock()).unwrap())
        .collect();
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // The daemon's end closed (after its answer, if any).
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    let out = lab.cli(&["-s", "runtime"]);
    // The 40, and the readiness probe of `foreground()`.
    assert!(
        text(&out.stdout).contains("\tlocal read failed:\t\t          41\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(lab.cli(&["-k"]).status.success());
    assert!(wait_exit(&mut d).success());
}

/// Keeps `n` idle connections to `sock` open until `stop`, reopening each
/// one the daemon closes and, round-robin, one more every round: the
/// connection-hoarding client of issue 13.
fn hoard_connections(
    sock: &Path,
    n: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> usize {
    use std::sync::atomic::Ordering;
    let open = || {
        let s = UnixStream::connect(sock).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut conns: Vec<Option<UnixStream>> = (0..n).map(|_| open()).collect();
    let (mut reopened, mut next) = (0, 0);
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed)
        && t0.elapsed() < Duration::from_secs(10)
    {
        for c in conns.iter_mut() {
            let mut b = [0u8; 64];
            let closed = match c {
                None => true,
                Some(s) => !matches!(
                    s.read(&mut b),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                ),
            };
            if closed {
                *c = open();
                reopened += 1;
            }
        }
        conns[next] = open();
        next = (next + 1) % n;
        reopened += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    reopened
}

#[test]
fn operator_is_served_while_a_client_hoards_idle_connections() {
    use ctsyncd::control::client;
    use ctsyncd::control::proto::{Format, Request, StatsView};
    use std::sync::atomic::{AtomicBool, Ordering};

    let lab = Lab::new("hoard");
    let mut d = lab.foreground();
    let sock = lab.sock();
    let stop = AtomicBool::new(false);
    let (worst, failures, polls, reopened) = std::thread::scope(|s| {
        let hoarder = s.spawn(|| hoard_connections(&sock, 40, &stop));
        // Let the hoarder fill the daemon's pending slots first.
        std::thread::sleep(Duration::from_millis(300));
        let (mut worst, mut failures, mut polls) = (Duration::ZERO, vec![], 0);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            let req = Request::Stats {
                view: StatsView::Runtime,
                format: Format::Plain,
            };
            let t = Instant::now();
            let got = client::request(&sock, &req, &mut std::io::sink());
            worst = worst.max(t.elapsed());
            polls += 1;
            if got.as_ref().ok() != Some(&Status::Ok) {
                failures.push(format!("{got:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        (worst, failures, polls, hoarder.join().unwrap())
    });
    eprintln!(
        "{polls} polls, worst -s latency {worst:?}, {reopened} hoarder (re)opens"
    );
    assert!(
        failures.is_empty(),
        "{} of {polls} failed: {failures:?}",
        failures.len()
    );
    assert!(worst < Duration::from_millis(100), "worst {worst:?}");
    assert!(lab.cli(&["-k"]).status.success());
    assert!(wait_exit(&mut d).success());
}

/// CPU ticks (user + system) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of file descriptors, `accept` fails at once while the connection
/// stays queued. The loop used to retry at once, forever: the daemon's
/// one thread spun at 100 % and never ran anything else again, not even
/// its signal handler or the readers' deadlines that would have freed
/// descriptors. Now it pauses, closes its oldest idle connection to make
/// room, says so in the log, and the operator is served.
#[test]
fn a_full_descriptor_table_neither_spins_nor_locks_the_operator_out() {
    use ctsyncd::control::client;
    use ctsyncd::control::proto::{Format, Request, StatsView};

    let lab = Lab::new("emfile");
    // About 13 descriptors at start: 20 leave room for 7 connections.
    let mut d = KillOnDrop(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n 20 && exec {BIN} -C {}",
                lab.conf.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(|| UnixStream::connect(lab.sock()).is_ok());
    let idle: Vec<UnixStream> = (0..30)
        .map(|_| UnixStream::connect(lab.sock()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(d.0.id());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(d.0.id()) - before;
    assert!(
        spent < 20,
        "{spent} ticks of CPU in 1 s: the accept loop spins"
    );
    let req = Request::Stats {
        view: StatsView::Runtime,
        format: Format::Plain,
    };
    let t = Instant::now();
    let got = client::request(&lab.sock(), &req, &mut std::io::sink());
    assert_eq!(got.ok(), Some(Status::Ok));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        lab.log()
            .contains("cannot accept on the UNIX socket: Too many open files"),
        "{}",
        lab.log()
    );
    drop(idle);
    assert!(lab.cli(&["-k"]).status.success());
    assert!(wait_exit(&mut d.0).success());
}

/// A daemon that a failed assertion must not leave running (one that
/// spins does not answer `-k`).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A second daemon with its own lock file but the running one's control
/// socket is refused (the socket answers), and must leave that socket
/// alone: its exit path unlinked it, cutting the notify script off from
/// the running daemon (as ctsyncd and as conntrackd the default lock
/// files differ, the socket path need not).
#[test]
fn a_refused_start_leaves_the_running_daemons_socket() {
    let lab = Lab::new("sock-a");
    let other = Lab::new("sock-b");
    std::fs::write(
        &other.conf,
        format!(
            "General {{\n  LogFile {d}/ctsyncd.log\n  LockFile {d}/lock\n  UNIX {{ Path {s} }}\n}}\n",
            d = other.dir.display(),
            s = lab.sock().display()
        ),
    )
    .unwrap();
    let mut d = lab.foreground();
    let out = other.cli(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("in use by a running daemon"),
        "{}",
        text(&out.stderr)
    );
    assert!(lab.sock().exists(), "the refused start unlinked the socket");
    assert!(lab.cli(&["-s", "runtime"]).status.success());
    assert!(lab.cli(&["-k"]).status.success());
    assert!(wait_exit(&mut d).success());
}

#[test]
fn check_config_reports_valid_and_invalid_files() {
    let lab = Lab::new("check");
    let ok = Command::new(BIN)
        .args(["-C", lab.conf.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("configuration is valid")
    );
    // Nothing was started: no lock file, no socket.
    assert!(!lab.dir.join("lock").exists() && !lab.dir.join("ctl").exists());

    let bad = lab.dir.join("bad.conf");
    std::fs::write(&bad, "General {\n  HashSize many\n}\n").unwrap();
    let out = Command::new(BIN)
        .args(["-C", bad.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:2:12: found `many'"), "{err}");
}

/// Started as a systemd `Type=notify` unit would start it: READY once the
/// control socket answers, watchdog pings at half WATCHDOG_USEC, STOPPING
/// on the way out.
#[test]
fn systemd_notify_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let lab = Lab::new("sdnotify");
    let notify_path = lab.dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut d = Command::new(BIN)
        .arg("-C")
        .arg(&lab.conf)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = notify.recv(&mut buf).expect("no sd_notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next();
    assert_eq!(first, format!("READY=1\nMAINPID={}", d.id()));
    // Ready means ready: the control socket answers now.
    let stats = lab.cli(&["-s", "runtime"]);
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    // Pings every 100 ms: several arrive within a second.
    let pings = (0..3).map(|_| next()).collect::<Vec<_>>();
    assert!(pings.iter().all(|m| m == "WATCHDOG=1"), "{pings:?}");
    assert!(lab.cli(&["-k"]).status.success());
    let last = (0..20).map(|_| next()).find(|m| m != "WATCHDOG=1");
    assert_eq!(last.as_deref(), Some("STOPPING=1"));
    assert!(wait_exit(&mut d).success());
}

#[test]
fn systemd_off_sends_nothing() {
    use std::os::unix::net::UnixDatagram;
    let lab = Lab::new("sdoff");
    let mut conf = std::fs::read_to_string(&lab.conf).unwrap();
    conf = conf.replacen("General {", "General {\n  Systemd off", 1);
    std::fs::write(&lab.conf, conf).unwrap();
    let notify_path = lab.dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let mut d = Command::new(BIN)
        .arg("-C")
        .arg(&lab.conf)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(|| UnixStream::connect(lab.sock()).is_ok());
    assert!(lab.cli(&["-k"]).status.success());
    assert!(wait_exit(&mut d).success());
    let mut buf = [0u8; 64];
    assert!(
        notify.recv(&mut buf).is_err(),
        "Systemd off must not notify"
    );
}

/// keepalived's notify script under a service manager: with CTSYNCD_START
/// set, `backup` starts the daemon through it and leaves the lock file to
/// the service manager (a stale-looking lock may be a daemon that is
/// still starting).
#[test]
fn notify_script_starts_the_daemon_through_the_service_manager() {
    let lab = Lab::new("notify");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/keepalived/primary-backup.sh"
    );
    std::fs::write(lab.lock(), "12345\n").unwrap();
    let marker = lab.dir.join("started");
    let run = |start: &str| {
        Command::new("sh")
            .arg(script)
            .arg("backup")
            .env("CTSYNCD_BIN", BIN)
            .env("CTSYNCD_CONFIG", &lab.conf)
            .env("CTSYNCD_LOCK", lab.lock())
            .env("CTSYNCD_START", start)
            .env("LOGGER", "echo")
            .output()
            .unwrap()
    };
    let out = run(&format!("touch {}", marker.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(marker.exists(), "CTSYNCD_START was not used");
    assert!(lab.lock().exists(), "the lock file was touched");
    assert!(!text(&out.stdout).contains("not cleanly stopped"));

    // A start command that fails makes the script fail, as `-d` does.
    let out = run("false");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("cannot launch ctsyncd"));
}

/// After a crash (a stale lock file), the notify script's `backup` step
/// starts the daemon again, finding the lock file where the configuration
/// puts it: its default (`/var/lock/ctsyncd.lock`) was not where the
/// shipped examples put theirs (`/run/ctsyncd.lock`), so the stale lock
/// stayed and the daemon could not start.
#[test]
fn notify_script_finds_the_configurations_lock_file_after_a_crash() {
    let lab = Lab::new("notifylock");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/keepalived/primary-backup.sh"
    );
    // The layout of the shipped examples: one clause per line.
    std::fs::write(
        &lab.conf,
        format!(
            "General {{\n\tLogFile {d}/ctsyncd.log\n\tLockFile {d}/lock\n\tUNIX {{ Path {d}/ctl }}\n}}\n",
            d = lab.dir.display()
        ),
    )
    .unwrap();
    std::fs::write(lab.lock(), "2147483000\n").unwrap();
    let out = Command::new("sh")
        .arg(script)
        .arg("backup")
        .env("CTSYNCD_BIN", BIN)
        .env("CTSYNCD_CONFIG", &lab.conf)
        .env_remove("CTSYNCD_LOCK")
        .env_remove("CTSYNCD_START")
        .env("LOGGER", "echo")
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("removing {}", lab.lock().display())),
        "{said}{}",
        text(&out.stderr)
    );
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(lab.cli(&["-s", "runtime"]).status.success());
    assert!(lab.cli(&["-k"]).status.success());
}

/// A `-d` daemon never speaks for the unit whose NOTIFY_SOCKET it
/// inherited (keepalived's, when its notify script starts the daemon).
#[test]
fn background_daemon_does_not_notify() {
    use std::os::unix::net::UnixDatagram;
    let lab = Lab::new("sdbg");
    let notify_path = lab.dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let out = Command::new(BIN)
        .arg("-C")
        .arg(&lab.conf)
        .arg("-d")
        .env("NOTIFY_SOCKET", &notify_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(lab.cli(&["-s", "runtime"]).status.success());
    assert!(lab.cli(&["-k"]).status.success());
    wait_until(|| !lab.sock().exists());
    let mut buf = [0u8; 64];
    assert!(notify.recv(&mut buf).is_err(), "a -d daemon notified");
}
