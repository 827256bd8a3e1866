//! Typed configuration in conntrackd.conf syntax (conntrack-tools 1.4.x).
//!
//! Owns: the [`Config`] value with conntrackd 1.4.7's defaults, the parser
//! entry point [`parse`], and the diagnostics it produces (the grammar is
//! in `parser`; the `Sync { }` section's types, in `sync_section`; what is
//! accepted but not acted on yet, in `unsupported`).
//! Pure: the caller reads the file and passes its text in; nothing here
//! touches the file system, sockets or clocks.
//!
//! Grammar and defaults follow conntrackd 1.4.7's actual parser where its
//! man page is wrong (e.g. `DisableExternalCache` is not accepted inside
//! `Mode ALARM`). Quirks that users rely on are accepted (`Nice 5` as well as
//! `Nice -5`, `yes`/`no` booleans, deprecated aliases) with a warning where
//! conntrackd warns.

mod lexer;
mod parser;
mod prefixes;
mod sync_section;
mod unsupported;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

pub use lexer::Pos;
pub use parser::{parse, parse_as};
pub use prefixes::Prefixes;
pub use sync_section::{
    Channel, ExpectationSync, KeyFile, NatByteOrder, PeerProtocol,
    RESEND_QUEUE_MAX, Sync, Transport,
};
pub use unsupported::{
    NOT_IMPLEMENTED, NotImplemented, not_implemented, startup_warnings,
};

/// Interface names are at most IFNAMSIZ-1 = 15 bytes on Linux.
pub type IfName = heapless::String<15>;
pub use crate::model::{HelperName, Mode};
use crate::personality::CTSYNCD;

/// The default configuration file path (under the name ctsyncd; the
/// defaults of each name are in [`crate::personality`]).
pub const DEFAULT_CONFIG_PATH: &str = CTSYNCD.config_path;
/// The default lock file (`LockFile`).
pub const DEFAULT_LOCK_FILE: &str = CTSYNCD.lock_file;
/// `LogFile on` writes here.
pub const DEFAULT_LOG_FILE: &str = CTSYNCD.log_file;
/// `Stats { LogFile on }` writes here.
pub const DEFAULT_STATS_LOG_FILE: &str = CTSYNCD.stats_log_file;
/// Longest UNIX socket path (sun_path is 108 bytes with the NUL).
pub const UNIX_PATH_MAX: usize = 107;
/// Most dedicated links conntrackd supports.
pub const MAX_CHANNELS: usize = 4;

/// A message about the configuration, with the place it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub msg: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.pos, self.msg)
    }
}

impl std::error::Error for Diagnostic {}

/// A successfully parsed configuration plus its warnings.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
    /// Where each clause was first written.
    pub clauses: Clauses,
}

/// Where each clause keyword first appears in the file, so that a message
/// about a clause can point at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clauses {
    pub file: String,
    pub first_seen: BTreeMap<String, Pos>,
}

impl Clauses {
    /// `file:line:col` of the first `keyword` clause, if it was written.
    pub fn place(&self, keyword: &str) -> Option<String> {
        self.first_seen
            .get(keyword)
            .map(|pos| format!("{}:{pos}", self.file))
    }

    /// Whether the file has a `keyword` clause at all (as opposed to the
    /// value being a default).
    pub fn written(&self, keyword: &str) -> bool {
        self.first_seen.contains_key(keyword)
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub general: General,
    /// `Sync { }`: the synchronisation daemon. Exclusive with `stats`.
    pub sync: Option<Sync>,
    /// `Stats { }`: the flow logger. Exclusive with `sync`.
    pub stats: Option<Stats>,
    /// A `Helper { }` section was present (user-space helpers).
    pub helper_section: bool,
}

/// Where a log goes: nowhere, or a file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogTarget {
    #[default]
    Off,
    File(PathBuf),
}

/// Syslog facilities that conntrackd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facility {
    Daemon,
    Local(u8),
}

impl Facility {
    fn parse(word: &str) -> Option<Facility> {
        match word.as_bytes() {
            b"daemon" => Some(Facility::Daemon),
            [b'l', b'o', b'c', b'a', b'l', d @ b'0'..=b'7'] => {
                Some(Facility::Local(d - b'0'))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Facility::Daemon => f.write_str("daemon"),
            Facility::Local(n) => write!(f, "local{n}"),
        }
    }
}

/// `Scheduler { Type … Priority … }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduler {
    pub policy: SchedPolicy,
    pub priority: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedPolicy {
    Rr,
    Fifo,
}

/// `NetlinkOverrunResync`: when the internal cache is resynchronised with
/// the kernel after the event socket lost events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrunResync {
    /// As soon as the burst that overran the socket is over (no event for
    /// a short quiet time), at most 30 s after the overrun: the default,
    /// and `On` or `0`.
    AfterBurst,
    /// This many seconds after the last overrun (an explicit number, as
    /// in conntrackd).
    After(u32),
    /// Never (`Off`).
    Off,
}

/// The `General { }` section.
#[derive(Debug, Clone, PartialEq)]
pub struct General {
    pub hash_size: u32,
    pub hash_limit: u32,
    pub log_file: LogTarget,
    pub syslog: Option<Facility>,
    pub lock_file: PathBuf,
    /// `UNIX { Path }`: the control socket. Mandatory.
    pub unix_path: PathBuf,
    /// 0 = keep the system's default receive buffer.
    pub netlink_buffer_size: u32,
    pub netlink_buffer_size_max_growth: u32,
    /// When the kernel resync follows an event overrun.
    pub netlink_overrun_resync: OverrunResync,
    pub netlink_events_reliable: bool,
    /// Polling mode period in seconds; None = event mode.
    pub poll_secs: Option<u32>,
    pub event_iteration_limit: u32,
    pub scheduler: Option<Scheduler>,
    /// `Nice`: the daemon's nice value (0 = unchanged). The real-time
    /// event loop is not affected by it; its other threads are.
    pub nice: i32,
    pub systemd: bool,
    pub filter: Filter,
}

impl Default for General {
    fn default() -> Self {
        General {
            hash_size: 65536,
            hash_limit: 262144,
            log_file: LogTarget::Off,
            syslog: None,
            lock_file: PathBuf::from(DEFAULT_LOCK_FILE),
            unix_path: PathBuf::new(),
            netlink_buffer_size: 0,
            netlink_buffer_size_max_growth: 0,
            netlink_overrun_resync: OverrunResync::AfterBurst,
            netlink_events_reliable: false,
            poll_secs: None,
            event_iteration_limit: 100,
            scheduler: None,
            nice: 0,
            // As Debian's conntrackd (built with systemd); a no-op unless
            // systemd passes $NOTIFY_SOCKET.
            systemd: true,
            filter: Filter::default(),
        }
    }
}

/// Accept = only listed items pass; Ignore = listed items are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    Accept,
    Ignore,
}

/// One filter type: its logic (the last clause wins) and its items (all
/// clauses of that type accumulate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<T> {
    pub logic: Logic,
    pub items: Vec<T>,
}

/// The `Address` filter type: like [`Rule`], with its items indexed for
/// O(log n) lookups (a Filter may list 100 000 addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRule {
    pub logic: Logic,
    pub items: Prefixes,
}

/// An address with a prefix length (32/128 for a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// TCP conntrack states as numbered by the kernel (`enum tcp_conntrack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TcpState {
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    Listen = 9,
}

/// `Filter [From Userspace|Kernelspace] { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    pub from_kernelspace: bool,
    pub protocol: Option<Rule<u8>>,
    pub address: Option<AddressRule>,
    pub state: Option<Rule<TcpState>>,
}

impl Filter {
    /// True when at least one clause was given (conntrackd treats an empty
    /// `Filter {}` as no filter).
    pub fn is_active(&self) -> bool {
        self.protocol.is_some()
            || self.address.is_some()
            || self.state.is_some()
    }
}

/// The `Stats { }` section (flow logger).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub log_file: LogTarget,
    pub syslog: Option<Facility>,
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn facility_names() {
        assert_eq!(Facility::parse("daemon"), Some(Facility::Daemon));
        assert_eq!(Facility::parse("local0"), Some(Facility::Local(0)));
        assert_eq!(Facility::parse("local7"), Some(Facility::Local(7)));
        assert_eq!(Facility::parse("local8"), None);
        assert_eq!(Facility::parse("local07"), None);
        assert_eq!(Facility::parse("user"), None);
        assert_eq!(Facility::Local(3).to_string(), "local3");
    }

    #[test]
    fn a_resend_queue_larger_than_the_window_is_clamped_with_a_warning() {
        let text = |n: u32| {
            format!(
                "General {{ UNIX {{ Path /run/t.ctl }} }}\nSync {{\n\tMode FTFW {{\n\t\tResendQueueSize {n}\n\t}}\n\tMulticast {{ IPv4_address 225.0.0.50 Group 3780 IPv4_interface 192.168.100.100 Interface eth2 }}\n}}\n"
            )
        };
        let p = parse(&text(300_000), "r.conf").unwrap();
        let sync = p.config.sync.as_ref().unwrap();
        assert_eq!(sync.resend_queue_size, RESEND_QUEUE_MAX);
        let w: Vec<String> =
            p.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            w,
            [
                "r.conf:4:3: ResendQueueSize 300000 is more than the 262144 \
              messages a receiver tracks, using 262144"
            ]
        );
        let p = parse(&text(RESEND_QUEUE_MAX), "r.conf").unwrap();
        let sync = p.config.sync.as_ref().unwrap();
        assert_eq!(sync.resend_queue_size, RESEND_QUEUE_MAX);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }
}
