//! Installed as `conntrackd` (a symlink), the binary takes conntrackd
//! 1.4.7's names and default paths; under its own name nothing changes.
//! Runs the binary (`CTSYNCD_TEST_BIN`, the release build in CI, else
//! cargo's) through a `conntrackd` symlink in a temporary directory. Only
//! the default-paths test needs root (a private mount namespace hides the
//! real /var/lock and /var/log); the others run as any user.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn binary() -> PathBuf {
    std::env::var_os("CTSYNCD_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ctsyncd")),
        PathBuf::from,
    )
}

/// A temporary directory with `conntrackd` and `ctsyncd` symlinks to the
/// binary under test; removed on drop.
struct Install {
    dir: PathBuf,
}

impl Install {
    fn new(tag: &str) -> Install {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-personality-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bin = std::fs::canonicalize(binary()).unwrap();
        std::os::unix::fs::symlink(&bin, dir.join("conntrackd")).unwrap();
        std::os::unix::fs::symlink(&bin, dir.join("ctsyncd")).unwrap();
        Install { dir }
    }

    fn run(&self, name: &str, args: &[&str]) -> Output {
        Command::new(self.dir.join(name))
            .args(args)
            .output()
            .unwrap()
    }

    /// A minimal configuration whose control socket and lock file are in
    /// the temporary directory (never the shared defaults).
    fn config(&self, extra: &str) -> PathBuf {
        let path = self.dir.join("test.conf");
        let text = format!(
            "General {{\n\tLockFile {}\n\tUNIX {{ Path {} }}\n{extra}}}\n",
            self.dir.join("lock").display(),
            self.dir.join("ctl").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn usage_names_the_program_and_its_default_config() {
    let i = Install::new("usage");
    let out = i.run("conntrackd", &["-h"]);
    assert!(out.status.success());
    let usage = text(&out.stdout);
    assert!(
        usage.contains("Usage: conntrackd [commands] [options]"),
        "{usage}"
    );
    assert!(
        usage.contains("(default /etc/conntrackd/conntrackd.conf)"),
        "{usage}"
    );
    assert!(usage.contains("-k, kill conntrackd"), "{usage}");

    let out = i.run("ctsyncd", &["-h"]);
    let usage = text(&out.stdout);
    assert!(
        usage.contains("Usage: ctsyncd [commands] [options]"),
        "{usage}"
    );
    assert!(
        usage.contains("(default /etc/ctsyncd/ctsyncd.conf)"),
        "{usage}"
    );
    assert!(!usage.contains("conntrackd.conf"), "{usage}");
}

#[test]
fn missing_config_message_names_the_path() {
    let i = Install::new("missing");
    let missing = i.dir.join("nope.conf");
    let out = i.run("conntrackd", &["-C", p(&missing), "-s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "[ERROR] can't open config file `{}'",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn default_config_is_conntrackds_when_it_is_absent() {
    // The real default path may exist on this machine (Debian's conntrackd
    // package installs it): then a private mount namespace hides it.
    let i = Install::new("default");
    let conntrackd = i.dir.join("conntrackd");
    let out = if Path::new("/etc/conntrackd/conntrackd.conf").exists() {
        if !rustix::process::geteuid().is_root() {
            eprintln!(
                "SKIPPED: /etc/conntrackd/conntrackd.conf exists and hiding it needs root"
            );
            return;
        }
        Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg("mount --make-rprivate / && mount -t tmpfs none /etc/conntrackd && exec \"$0\" -s")
            .arg(&conntrackd)
            .output()
            .unwrap()
    } else {
        Command::new(&conntrackd).arg("-s").output().unwrap()
    };
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "can't open config file `/etc/conntrackd/conntrackd.conf'"
        ),
        "{err}"
    );
}

#[test]
fn client_without_daemon_asks_for_conntrackd() {
    let i = Install::new("client");
    let conf = i.config("");
    let out = i.run("conntrackd", &["-C", p(&conf), "-s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("[ERROR] can't connect: is conntrackd running? appropriate permissions?"),
        "{err}"
    );
    let out = i.run("ctsyncd", &["-C", p(&conf), "-s"]);
    assert!(text(&out.stderr).contains("is ctsyncd running?"));
}

#[test]
fn check_config_through_the_link() {
    let i = Install::new("check");
    let conf = i.config("");
    let out = i.run(
        "conntrackd",
        &["-C", p(&conf), "--check-config", "--strict"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration is valid"));
    let conf = i.config("\tHashSize 8192\n");
    let out = i.run(
        "conntrackd",
        &["-C", p(&conf), "--check-config", "--strict"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("test.conf:4:2: HashSize: ignored"));
}

#[test]
fn held_lock_names_conntrackd() {
    // The lock file is checked before anything privileged, so this runs
    // the daemon as any user: it must stop at the lock.
    let i = Install::new("lock");
    let conf = i.config("");
    std::fs::write(i.dir.join("lock"), format!("{}\n", std::process::id()))
        .unwrap();
    let out = i.run("conntrackd", &["-C", p(&conf)]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "lockfile `{}' exists, perhaps conntrackd already running?",
            i.dir.join("lock").display()
        )),
        "{err}"
    );
}

/// The default lock and log paths, observed on a real daemon run in a
/// private mount namespace (tmpfs over /run/lock and /var/log, so nothing
/// of the machine's own is touched), through the symlink and under the
/// daemon's own name. The `-d` child must keep the name it was invoked as.
#[test]
fn daemon_uses_the_default_lock_and_log_of_its_name() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: mounting over /var/lock and /var/log needs root");
        return;
    }
    let i = Install::new("paths");
    let conf = i.dir.join("paths.conf");
    std::fs::write(
        &conf,
        format!(
            "General {{\n\tLogFile on\n\tUNIX {{ Path {} }}\n}}\n",
            i.dir.join("ctl").display()
        ),
    )
    .unwrap();
    for (name, lock, log) in [
        (
            "conntrackd",
            "/var/lock/conntrackd.lock",
            "/var/log/conntrackd.log",
        ),
        ("ctsyncd", "/var/lock/ctsyncd.lock", "/var/log/ctsyncd.log"),
    ] {
        let script = format!(
            "mount --make-rprivate / && mount -t tmpfs none /run/lock && mount -t tmpfs none /var/log && \
             \"$0\" -C {conf} -d && ls /run/lock /var/log && cat {log} && \"$0\" -C {conf} -k && \
             for n in 1 2 3 4 5 6 7 8 9 10; do [ -e {lock} ] || break; sleep 0.2; done; \
             [ ! -e {lock} ] && echo LOCK-REMOVED",
            conf = conf.display()
        );
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .arg(i.dir.join(name))
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}{}",
            text(&out.stderr)
        );
        let file = |p: &str| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert!(stdout.contains(&file(lock)), "{name}: {stdout}");
        assert!(stdout.contains(&file(log)), "{name}: {stdout}");
        assert!(
            stdout.contains("[notice] -- starting in daemon mode --"),
            "{name}: {stdout}"
        );
        assert!(stdout.contains("LOCK-REMOVED"), "{name}: {stdout}");
    }
}

/// What `program` (given `-C conf -d`, then `-k`) sends to syslog, one
/// datagram a line, received on a `/dev/log` of the test's own (see
/// `common::devlog`), so the machine's syslog sees nothing. Needs root.
fn syslog_datagrams(dir: &Path, conf: &Path, program: &Path) -> String {
    let steps = format!(
        "\"$0\" -C {conf} -d; \"$0\" -C {conf} -k",
        conf = conf.display()
    );
    common::devlog::capture(dir, program, &steps, 50, 2)
}

/// A configuration with syslog on and the lock and control socket in `dir`.
fn syslog_config(dir: &Path) -> PathBuf {
    let conf = dir.join("syslog.conf");
    std::fs::write(
        &conf,
        format!(
            "General {{\n\tSyslog on\n\tLockFile {}\n\tUNIX {{ Path {} }}\n}}\n\
             Stats {{\n}}\n",
            dir.join("lock").display(),
            dir.join("ctl").display()
        ),
    )
    .unwrap();
    conf
}

/// The syslog ident.
#[test]
fn syslog_ident_is_conntrack_tools_as_conntrackd() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: a private /dev/log needs root");
        return;
    }
    let i = Install::new("syslog");
    let conf = syslog_config(&i.dir);
    for (name, tag) in
        [("conntrackd", "conntrack-tools["), ("ctsyncd", "ctsyncd[")]
    {
        let got = syslog_datagrams(&i.dir, &conf, &i.dir.join(name));
        let started: Vec<&str> = got
            .lines()
            .filter(|l| l.contains("starting in daemon mode"))
            .collect();
        assert_eq!(started.len(), 1, "{name}: {got}");
        assert!(
            started[0].contains(&format!(": {tag}"))
                || started[0].contains(&format!(" {tag}")),
            "{name}: {got}"
        );
    }
}

/// A syslog line with its digits masked: what stays is the shape
/// (`<NN>Dec  N NN:NN:NN conntrack-tools[NNNN]: msg`), including the
/// space padding of the day.
fn shape(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_ascii_digit() { 'N' } else { c })
        .collect()
}

/// ctsyncd installed as conntrackd sends the same syslog lines as the real
/// conntrackd 1.4.7, byte for byte once digits are masked (the day of the
/// month is space-padded below 10, as glibc's syslog(3) does).
#[test]
fn syslog_lines_have_conntrackds_shape() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: a private /dev/log needs root");
        return;
    }
    let real = Path::new("/usr/sbin/conntrackd");
    if !real.exists() {
        eprintln!("SKIPPED: no conntrackd at /usr/sbin/conntrackd");
        return;
    }
    let i = Install::new("syslogshape");
    let conf = syslog_config(&i.dir);
    let theirs = syslog_datagrams(&i.dir, &conf, real);
    let ours = syslog_datagrams(&i.dir, &conf, &i.dir.join("conntrackd"));
    let first = |got: &str, what: &str| -> String {
        got.lines()
            .find(|l| l.contains(what))
            .map(shape)
            .unwrap_or_else(|| panic!("no {what:?} in {got}"))
    };
    for what in ["starting in daemon mode", "---- shutdown received ----"] {
        let (a, b) = (first(&theirs, what), first(&ours, what));
        // The pid's digit count may differ: compare with it replaced.
        let norm = |s: &str| {
            let open = s.find('[').unwrap();
            let close = s.find("]: ").unwrap();
            format!("{}[pid{}", &s[..open], &s[close..])
        };
        assert_eq!(norm(&b), norm(&a), "ours:\n{ours}\ntheirs:\n{theirs}");
    }
}

/// A syslog that comes up after the daemon (a router's logd started later,
/// rsyslog restarted with its socket) gets the daemon's later lines, as
/// conntrackd's glibc syslog(3) connects again at each line until it
/// succeeds. The daemon starts with no `/dev/log`; the receiver binds it
/// after, and `-k`'s `---- shutdown received ----` must reach it (after
/// the one second the sink waits between two tries). The sink was once
/// dropped for good when the first connection failed.
#[test]
fn a_syslog_that_starts_later_gets_the_later_lines() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: a private /dev/log needs root");
        return;
    }
    let i = Install::new("syslate");
    let conf = syslog_config(&i.dir);
    let conf = conf.display();
    let got = common::devlog::capture_from(
        &i.dir,
        &i.dir.join("ctsyncd"),
        &format!("\"$0\" -C {conf} -d"),
        &format!("sleep 1.2; \"$0\" -C {conf} -k"),
        50,
        2,
    );
    assert!(got.contains("---- shutdown received ----"), "{got:?}");
}
