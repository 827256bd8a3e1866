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
//! L5  daemon            the only async code: event loop, kernel worker,
//!                       clock, signals, lock file; owns all state
//! L4  kernel::{socket,events}  channel  control::{server,client}
//!     logging           (sockets and files; channel paces TCP reconnects)
//! L3  node              one firewall, sans-IO: Input in, Outbox out
//! L2  cache  filter  sync  kernel::{codec,commit,origin}  cli
//!                       (bounded caches, the FT-FW/NOTRACK/ALARM engine,
//!                       the ctnetlink codec, pure)
//! L1  wire  config  control::proto   (formats and the parser, pure)
//!     kernel::pacing    (when the event socket is read: the loop's rule,
//!                       which the lossy-link simulation in sync runs too)
//! L0  model  time  personality  strerror   (values, time as input)
//! ```
//!
//! A module may use only modules in lower layers (and its own
//! submodules); `tests/layers.rs` checks every `crate::` path in `src/`
//! against this map. Layers L0–L3 never touch sockets, files or clocks:
//! they take input (and time) as parameters and return what to do, which
//! is what makes the deterministic tests possible. `clippy.toml` forbids
//! reading the clock outside `daemon`.

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
pub mod personality;
pub mod strerror;
pub mod sync;
pub mod time;
pub mod wire;

/// The version printed by `-v` and reported in `-s runtime`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
