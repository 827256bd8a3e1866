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
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { addr, sock })
    }

    /// Sends one state message; failures are logged once by the caller's
    /// choice of level, never fatal.
    pub(crate) fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            log::debug!("sd_notify `{state}' failed: {e}");
        }
    }

    pub(crate) fn ready(&self) {
        self.send(&format!("READY=1\nMAINPID={}", std::process::id()));
    }

    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
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
    use super::*;

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
