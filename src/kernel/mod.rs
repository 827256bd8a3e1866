//! The kernel's connection-tracking table over ctnetlink.
//!
//! `codec` (pure) turns ctnetlink messages into [`crate::model`] values
//! and back; `socket` (I/O) sends and receives them through netlink-sys.
//! Nothing above this module knows netlink.

pub mod codec;
pub mod commit;
pub mod events;
pub mod origin;
pub mod pacing;
pub mod socket;
#[cfg(test)]
pub(crate) mod test_netns;
