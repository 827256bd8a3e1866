//! The daemon's kernel handles (conntrackd's resync/dump, flush, commit,
//! inject and event sockets), each registered for origin tracking. The
//! event socket stays with the loop; the others go to the
//! [`super::worker`].

use crate::config::{Config, Filter};
use crate::filter::bpf;
use crate::kernel::commit::CommitRules;
use crate::kernel::events::EventSocket;
use crate::kernel::origin::{Origin, Origins};
use crate::kernel::socket::CtSocket;

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
    let socket = if g.poll_secs.is_some() {
        log::info!("running in polling mode");
        EventSocket::unsubscribed().map_err(err)?
    } else {
        let s = EventSocket::open(
            sync.expectation_sync.enabled(),
            g.netlink_buffer_size as usize,
            g.netlink_buffer_size_max_growth as usize,
            g.netlink_events_reliable,
        )
        .map_err(err)?;
        event_filter(&s, &g.filter);
        s
    };
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
            commit_sched: super::sched::below(
                g.scheduler.unwrap_or(super::sched::DEFAULT),
            ),
            rules: CommitRules {
                commit_timeout: sync.commit_timeout,
                tcp_window_tracking: sync.tcp_window_tracking,
            },
        },
    ))
}

/// Logs where events are filtered (only for a Filter with a clause, as
/// conntrackd) and, for `From Kernelspace`, attaches the compiled program
/// to the event socket. A failure only costs the kernel-side saving: the
/// user-space filter runs on every event anyway.
pub(crate) fn event_filter(socket: &EventSocket, f: &Filter) {
    if !f.is_active() {
        return;
    }
    if !f.from_kernelspace {
        log::info!("using user-space event filtering");
        return;
    }
    let attached = bpf::attach(f, bpf::Endian::host(), |insns| {
        socket.attach_filter(insns)
    })
    .map_err(|e| match e {
        bpf::AttachError::Compile(bpf::Error::TooLarge(n)) => format!(
            "the filter needs {n} BPF instructions (limit {})",
            bpf::MAX_INSNS
        ),
        bpf::AttachError::Kernel(e) => e.to_string(),
    });
    match attached {
        Ok(p) => {
            log::info!("using kernel-space event filtering");
            if p.without_address {
                log::warn!(
                    "the Address filter has too many entries for the kernel \
                     ({} BPF instructions at most, fewer where \
                     net.core.optmem_max is small): it runs in user space",
                    bpf::MAX_INSNS
                );
            }
        }
        Err(e) => {
            log::error!("cannot set event filtering: {e}");
            log::info!("using user-space event filtering");
        }
    }
}
