//! systemd's readiness protocol (`Systemd On`, conntrackd 1.4.4+).
//!
//! Owns: the datagrams to `$NOTIFY_SOCKET` — `READY=1` with `MAINPID` once
//! the daemon answers on its control socket, `WATCHDOG=1` every half
//! `$WATCHDOG_USEC`, `STOPPING=1` on shutdown. In the foreground only: a
//! `-d` daemon may have inherited another unit's socket (keepalived's,
//! through its notify script). Without `$NOTIFY_SOCKET` (not started by
//! systemd as `Type=notify`) everything here is a no-op,
//! which is why `Systemd` defaults to on, as in Debian's conntrackd.
//! A unit's `ExecStart` can then be the plain foreground command and
//! keepalived's notify script can rely on `systemctl start` having
//! returned only once the daemon is ready.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where systemd listens, from the environment.
pub(crate) struct Notifier {
    addr: SocketAddr,
    sock: UnixDatagram,
}

impl Notifier {
    /// None when systemd did not ask for notifications (or the address is
    /// unusable: notification is best effort, never fatal).
    pub(crate) fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.first() {
            // "@name": Linux abstract namespace.
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]).ok()?,
            Some(b'/') => SocketAddr::from_pathname(&path).ok()?,
            _ => return None,
        };
        Notifier::to(addr)
    }

    /// A notifier for `addr`. Its socket never blocks: a `send_to` to a
    /// manager that does not read (a wedged PID 1, a full queue) waited
    /// for room, and it runs on the event loop.
    fn to(addr: SocketAddr) -> Option<Notifier> {
        let sock = UnixDatagram::unbound().ok()?;
        sock.set_nonblocking(true).ok()?;
        Some(Notifier { addr, sock })
    }

    /// Sends one state message once; a full queue drops it (the next
    /// `WATCHDOG=1` comes soon). Failures are logged at debug, never
    /// fatal.
    pub(crate) fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            log::debug!("sd_notify `{state}' failed: {e}");
        }
    }

    /// Sends a state message that comes only once (`READY=1`, whose loss
    /// fails the unit's start; `STOPPING=1`): while the queue is full it
    /// tries again, for at most [`ONCE_PATIENCE`].
    fn send_once(&self, state: &str) {
        for _ in 0..ONCE_TRIES {
            match self.sock.send_to_addr(state.as_bytes(), &self.addr) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(ONCE_PATIENCE / ONCE_TRIES);
                }
                Err(e) => {
                    return log::debug!("sd_notify `{state}' failed: {e}");
                }
                Ok(_) => return,
            }
        }
        log::debug!("sd_notify `{state}' dropped: the manager does not read");
    }

    pub(crate) fn ready(&self) {
        self.send_once(&format!("READY=1\nMAINPID={}", std::process::id()));
    }

    pub(crate) fn stopping(&self) {
        self.send_once("STOPPING=1");
    }

    /// How often to send `WATCHDOG=1`, from the environment.
    pub(crate) fn watchdog_interval() -> Option<Duration> {
        watchdog_interval_from(
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::process::id(),
        )
    }
}

/// How long a one-time message waits for room in all, and in how many
/// tries: a wedged manager holds the start or the stop this long, not
/// for good.
const ONCE_PATIENCE: Duration = Duration::from_secs(1);
const ONCE_TRIES: u32 = 20;

/// Never more often than this, whatever `WATCHDOG_USEC` says: a value of a
/// few microseconds must not turn the pings into a busy loop.
const MIN_WATCHDOG_PING: Duration = Duration::from_millis(10);

/// Half of `usec`, when the watchdog is meant for this process (`pid`
/// unset or ours); None when either variable is malformed or zero.
fn watchdog_interval_from(
    pid: Option<&str>,
    usec: Option<&str>,
    me: u32,
) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.parse::<u32>().ok()? != me
    {
        return None;
    }
    let usec: u64 = usec?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(MIN_WATCHDOG_PING))
}

#[cfg(test)]
mod test {
    use std::time::Instant;

    use super::*;

    /// A manager that never reads: its socket's queue fills.
    fn deaf_manager(dir: &std::path::Path) -> (UnixDatagram, Notifier) {
        let path = dir.join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let n =
            Notifier::to(SocketAddr::from_pathname(&path).unwrap()).unwrap();
        (manager, n)
    }

    fn fresh_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_manager_that_does_not_read_never_holds_the_loop() {
        let dir = fresh_dir("sdn-deaf");
        let (manager, n) = deaf_manager(&dir);
        // The watchdog's pings, far more than the queue holds
        // (net.unix.max_dgram_qlen): each returns at once. Then a
        // one-time message waits for room, but not for good. (A thread:
        // a blocking notifier would block the test.)
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            for _ in 0..2000 {
                n.send("WATCHDOG=1");
            }
            let pings = t0.elapsed();
            let t0 = Instant::now();
            n.stopping();
            let _ = tx.send((pings, t0.elapsed()));
        });
        let (pings, once) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the notifier blocked");
        // The manager got what fitted, the first ones.
        let mut buf = [0u8; 64];
        let got = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"WATCHDOG=1");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(pings < Duration::from_secs(5), "pings took {pings:?}");
        assert!(
            once >= ONCE_PATIENCE / 2 && once < ONCE_PATIENCE * 5,
            "STOPPING=1 waited {once:?}"
        );
    }

    #[test]
    fn a_one_time_message_gets_through_once_the_manager_reads() {
        let dir = fresh_dir("sdn-late");
        let (manager, n) = deaf_manager(&dir);
        let mut filled = 0;
        while n.sock.send_to_addr(b"x", &n.addr).is_ok() {
            filled += 1;
            assert!(filled < 1_000_000, "the queue never filled");
        }
        // The manager wakes up after a while and reads everything.
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            manager
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..=filled {
                let got = manager.recv(&mut buf).unwrap();
                if &buf[..got] == b"STOPPING=1" {
                    return true;
                }
            }
            false
        });
        n.stopping();
        assert!(reader.join().unwrap(), "STOPPING=1 never arrived");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn watchdog_interval_rules() {
        let ms = Duration::from_millis;
        assert_eq!(
            watchdog_interval_from(None, Some("2000000"), 7),
            Some(ms(1000))
        );
        assert_eq!(
            watchdog_interval_from(Some("7"), Some("200000"), 7),
            Some(ms(100))
        );
        // Meant for another process, malformed, zero or absent.
        assert_eq!(watchdog_interval_from(Some("8"), Some("200000"), 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), Some("200000"), 7), None);
        assert_eq!(watchdog_interval_from(None, Some("soon"), 7), None);
        assert_eq!(watchdog_interval_from(None, Some("0"), 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
        // A tiny value is clamped, never a busy loop.
        assert_eq!(
            watchdog_interval_from(None, Some("1"), 7),
            Some(MIN_WATCHDOG_PING)
        );
    }
}
