//! A private `/dev/log` for tests that compare syslog datagrams: the
//! daemon under test logs to it and nothing reaches the machine's syslog.

use std::path::Path;
use std::process::Command;

/// Runs the shell `steps` (with `"$0"` standing for `program`) inside a
/// private mount and network namespace whose `/dev` is a tmpfs (with
/// /dev/null and the random devices bound back), while a receiver bound
/// to that `/dev/log` writes each datagram as a line. The receiver stops
/// after `max` datagrams or `quiet_secs` without one. Returns the lines.
/// Panics if the steps fail. Needs root.
pub fn capture(
    dir: &Path,
    program: &Path,
    steps: &str,
    max: usize,
    quiet_secs: u32,
) -> String {
    capture_from(dir, program, "true", steps, max, quiet_secs)
}

/// [`capture`], with the shell `before` run first, while that `/dev/log`
/// does not exist yet (a syslog daemon that starts after ours).
pub fn capture_from(
    dir: &Path,
    program: &Path,
    before: &str,
    steps: &str,
    max: usize,
    quiet_secs: u32,
) -> String {
    let receiver = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.bind('/dev/log')\n\
         open(sys.argv[1], 'w').close()\n\
         s.settimeout({quiet_secs})\n\
         with open(sys.argv[2], 'w') as out:\n\
         \x20   try:\n\
         \x20       for _ in range({max}):\n\
         \x20           out.write(s.recv(4096).decode(errors='replace') + '\\n')\n\
         \x20           out.flush()\n\
         \x20   except OSError:\n\
         \x20       pass\n"
    );
    std::fs::write(dir.join("recv.py"), receiver).unwrap();
    let d = dir.display();
    let script = format!(
        "set -e; mount --make-rprivate /; mkdir -p {d}/dev; mount --rbind /dev {d}/dev; \
         mount -t tmpfs none /dev; for n in null zero random urandom; do \
         touch /dev/$n; mount --bind {d}/dev/$n /dev/$n; done; \
         {before}; rm -f {d}/ready; python3 {d}/recv.py {d}/ready {d}/syslog.out & \
         for n in $(seq 50); do [ -e {d}/ready ] && break; sleep 0.1; done; \
         {steps}; wait"
    );
    let out = Command::new("unshare")
        .args(["-m", "-n", "sh", "-c", &script])
        .arg(program)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("syslog.out")).unwrap()
}
