//! ctsyncd: connection-tracking state synchronisation for Linux firewalls.
//!
//! A drop-in replacement for netfilter's `conntrackd` (conntrack-tools
//! 1.4.x): same configuration syntax, same command line, same sync modes;
//! its own compact wire format (postcard), bounded caches and a smol event
//! loop.
//!
//! # Layers
//!
//! ```text
//! L4  daemon            the only async code: event loop, sockets, clock,
//!                       signals, lock file; owns all state
//! L3  control::server   control::client   kernel::socket   channel
//!     logging           (sockets; channel paces TCP reconnects by clock)
//! L2  sync              (the FT-FW/NOTRACK/ALARM engine, sans-IO)
//!     control::proto    kernel::codec  kernel::commit  cli (pure codecs)
//! L1  config            (pure parser)
//! L0  model  wire  time (values, the replication format, time as input)
//! ```
//!
//! A module may use only modules in lower layers. Layers L0–L2 never touch
//! sockets, files or clocks: they take input (and time) as parameters and
//! return what to do, which is what makes the deterministic tests possible.
//! `clippy.toml` forbids reading the clock outside `daemon`.

pub mod cache;
pub mod channel;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod filter;
pub mod kernel;
pub mod logging;
pub mod model;
pub mod node;
pub mod sync;
pub mod time;
pub mod wire;

/// The version printed by `-v` and reported in `-s runtime`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
