//! The control socket: `ctsyncd -c/-f/-s/…` talking to the running daemon.
//!
//! `proto` is the pure codec; `server` holds the daemon side's socket
//! helpers (async, smol); `client` is the blocking CLI side;
//! `conntrackd` serves conntrackd 1.4's own client beside ours.

pub mod client;
pub mod conntrackd;
pub mod proto;
pub mod server;
