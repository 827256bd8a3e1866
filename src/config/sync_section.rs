//! The `Sync { }` section's types: the mode's settings, the dedicated
//! links (`Multicast`/`UDP`/`TCP` blocks), expectation sync, and the
//! peer-protocol and authentication options, with conntrackd 1.4.7's
//! defaults. Parsed by `parser`; re-exported by the `config` module.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::{HelperName, IfName, Mode};

/// Which expectations are replicated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExpectationSync {
    #[default]
    Off,
    All,
    /// Only expectations whose helper name starts (case-insensitively) with
    /// one of these.
    Helpers(Vec<HelperName>),
}

impl ExpectationSync {
    pub fn enabled(&self) -> bool {
        !matches!(self, ExpectationSync::Off)
    }
}

/// The transport of a dedicated link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Multicast {
        group: IpAddr,
        /// Local address used for IP_MULTICAST_IF / membership (IPv4).
        ipv4_interface: Option<Ipv4Addr>,
        port: u16,
    },
    Udp {
        local: Option<IpAddr>,
        dest: IpAddr,
        port: u16,
    },
    Tcp {
        local: Option<IpAddr>,
        dest: IpAddr,
        port: u16,
    },
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Multicast { .. } => "Multicast",
            Transport::Udp { .. } => "UDP",
            Transport::Tcp { .. } => "TCP",
        }
    }
}

/// One `Multicast|UDP|TCP [Default] { … }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub transport: Transport,
    pub default: bool,
    pub interface: IfName,
    /// 0 = not set: the link's own default (`channel::open`, 4 MiB).
    pub snd_buffer: u32,
    pub rcv_buffer: u32,
    pub checksum: bool,
}

/// The largest `ResendQueueSize` used: the receiver's sequence window
/// (`sync::rx::WINDOW`, which checks that the two agree). A receiver
/// tracks a peer's numbers within this distance of the next one, so a
/// sender never needs more unacknowledged messages than that; a larger
/// value is clamped with a warning.
pub const RESEND_QUEUE_MAX: u32 = 1 << 18;

/// The `Sync { }` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    pub mode: Mode,
    pub resend_queue_size: u32,
    pub ack_window_size: u32,
    /// Fixed timeout for committed entries; None = estimate from the age.
    pub commit_timeout: Option<u32>,
    pub purge_timeout: u32,
    pub refresh_time: u32,
    pub cache_timeout: u32,
    pub disable_external_cache: bool,
    pub disable_internal_cache: bool,
    pub startup_resync: bool,
    pub channels: Vec<Channel>,
    pub expectation_sync: ExpectationSync,
    pub tcp_window_tracking: bool,
    pub error_queue_length: u32,
    /// `AntiEntropyPeriod`: seconds between digest comparisons with the
    /// peer (0: off).
    pub anti_entropy_period: u32,
    /// `ActivityScan`: seconds between the primary's scans of its kernel
    /// table for flows that carry traffic without events (0: off).
    pub activity_scan: u32,
    /// `Options { AuthenticationKeyFile … }`: the first seals, every one
    /// opens (at most two). Empty: datagrams are plain.
    pub authentication_keys: Vec<KeyFile>,
    /// `Options { PeerProtocol … }`: the sync protocol the peer speaks
    /// (ctsyncd's own, or conntrackd 1.4's), or `Auto` (detected).
    pub peer_protocol: PeerProtocol,
    /// `Options { PeerNATByteOrder … }`: how a conntrackd peer writes
    /// IPv4 NAT addresses (1.4.2 byte-reverses them on x86).
    pub peer_nat_byte_order: NatByteOrder,
}

/// Which sync protocol the peer speaks (`PeerProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerProtocol {
    /// ctsyncd's format until a conntrackd datagram arrives (and back when
    /// a ctsyncd peer proves itself).
    #[default]
    Auto,
    /// ctsyncd's format only; conntrackd's datagrams are refused.
    Ctsyncd,
    /// conntrackd 1.4's protocol from the start (a NOTRACK or ALARM peer
    /// that never sends cannot be detected).
    Conntrackd,
}

/// How a conntrackd peer writes `NTA_SNAT_IPV4`/`NTA_DNAT_IPV4`
/// (reference §4.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatByteOrder {
    /// conntrackd 1.4.3 and later: network order.
    #[default]
    V147,
    /// conntrackd 1.4.2 on a little-endian host: byte-reversed.
    V142,
}

/// An `AuthenticationKeyFile` clause: the file, and where it was named
/// (`file:line:col`, for the messages about the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub path: PathBuf,
    pub at: String,
}

impl Default for Sync {
    fn default() -> Self {
        Sync {
            mode: Mode::FtFw,
            resend_queue_size: 131072,
            ack_window_size: 300,
            commit_timeout: None,
            purge_timeout: 60,
            refresh_time: 60,
            cache_timeout: 180,
            disable_external_cache: false,
            disable_internal_cache: false,
            startup_resync: false,
            channels: Vec::new(),
            expectation_sync: ExpectationSync::Off,
            tcp_window_tracking: false,
            error_queue_length: 128,
            anti_entropy_period: 30,
            activity_scan: 10,
            authentication_keys: Vec::new(),
            peer_protocol: PeerProtocol::Auto,
            peer_nat_byte_order: NatByteOrder::V147,
        }
    }
}

impl Sync {
    /// The link used for sending at start: the `Default` one, else the first.
    pub fn default_channel(&self) -> usize {
        self.channels.iter().position(|c| c.default).unwrap_or(0)
    }
}
