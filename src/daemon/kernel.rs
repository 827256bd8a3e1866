//! The daemon's kernel handles (conntrackd's resync/dump, flush, commit,
//! inject and event sockets), each registered for origin tracking. The
//! event socket stays with the loop; the others go to the
//! [`super::worker`].

use crate::config::Config;
use crate::kernel::commit::CommitRules;
use crate::kernel::origin::{Origin, Origins};
use crate::kernel::socket::{CtSocket, EventSocket};

use super::Error;
use super::worker::JobSockets;

/// What the loop keeps: the event socket and who is who among our ports.
pub(crate) struct Events {
    pub socket: EventSocket,
    pub origins: Origins,
}

/// Opens every handle.
///
/// # Errors
/// [`Error::Netlink`] (conntrackd's "can't open netlink handler").
pub(crate) fn open(cfg: &Config) -> Result<(Events, JobSockets), Error> {
    let err = Error::Netlink;
    let sync = cfg.sync.clone().unwrap_or_default();
    let g = &cfg.general;
    let socket = EventSocket::open(
        sync.expectation_sync.enabled(),
        g.netlink_buffer_size as usize,
        g.netlink_buffer_size_max_growth as usize,
        g.netlink_events_reliable,
    )
    .map_err(err)?;
    let (dump, flush, commit, inject) = (
        CtSocket::open().map_err(err)?,
        CtSocket::open().map_err(err)?,
        CtSocket::open().map_err(err)?,
        CtSocket::open().map_err(err)?,
    );
    let mut origins = Origins::default();
    origins.register(flush.port(), Origin::Flush);
    origins.register(commit.port(), Origin::Commit);
    origins.register(inject.port(), Origin::Inject);
    Ok((
        Events { socket, origins },
        JobSockets {
            dump,
            flush,
            commit,
            inject,
            filter: g.filter.clone(),
            rules: CommitRules {
                commit_timeout: sync.commit_timeout,
                tcp_window_tracking: sync.tcp_window_tracking,
            },
        },
    ))
}
