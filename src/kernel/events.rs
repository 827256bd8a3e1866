//! The kernel's event socket for the daemon's loop (smol).
//!
//! Owns: reading NEW/UPDATE/DESTROY events of conntracks (and of
//! expectations when enabled), leaving and joining the NEW group around a
//! commit, overrun (`ENOBUFS`) reporting with the buffer's growth up to
//! `NetlinkBufferSizeMaxGrowth`, and the pacing of reads (during a burst
//! the socket is read on a short timer instead of at each event; the rule
//! is [`super::pacing`]). The daemon waits the pause out on a timer,
//! serving the sync link meanwhile: a peer's ACK or NACK is not held for
//! it, nor measured into the round trip the retransmission timeout is
//! taken from (a capture of the bench's sync link showed a repair's probe
//! 1.6 ms after a lost answer when the pause held the whole loop). The
//! socket itself is a [`CtSocket`] subscribed by [`CtSocket::events`].

use std::io::{self, ErrorKind};

use super::codec;
use super::pacing::{AfterDrain, ReadPacing};
use super::socket::{CtSocket, RX_BUF, recv_into};
use crate::filter::bpf;

const ENOBUFS: i32 = rustix::io::Errno::NOBUFS.raw_os_error();

/// The receive buffer size after an overrun: doubled while that stays
/// within `max` (`NetlinkBufferSizeMaxGrowth`), else None.
pub fn grown_buffer(current: usize, max: usize) -> Option<usize> {
    let next = current.checked_mul(2)?;
    (next <= max).then_some(next)
}

/// What one read from the event socket gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRead {
    /// A datagram of this many bytes, see [`EventSocket::received`].
    Data(usize),
    /// The kernel dropped events (ENOBUFS): the caller must resync with
    /// the kernel table. The buffer was doubled to `grown_to`, or was at
    /// its limit already (None).
    Overrun { grown_to: Option<usize> },
}

/// Kernel events (NEW/UPDATE/DESTROY of conntracks, and of expectations
/// when enabled) for the daemon's event loop.
pub struct EventSocket {
    sock: smol::Async<CtSocket>,
    port: u32,
    size: usize,
    max: usize,
    warned_at_limit: bool,
    rx: Vec<u8>,
    /// The last read found nothing queued: the next [`EventSocket::recv`]
    /// waits for readiness before it reads, instead of trying a read that
    /// would only fail with EAGAIN (one system call per loop turn saved).
    empty: bool,
    /// Reads since the socket was last found empty: when to read next
    /// ([`EventSocket::drained`]).
    pacing: ReadPacing,
    /// Whether the socket is in the conntrack NEW group (None: it was
    /// never subscribed, see [`EventSocket::unsubscribed`]).
    new_events: Option<bool>,
}

impl EventSocket {
    /// Subscribes, sizing the buffer as conntrackd does: `NetlinkBufferSize`
    /// is applied only when it is within `NetlinkBufferSizeMaxGrowth`.
    pub fn open(
        expectations: bool,
        buffer_size: usize,
        max_growth: usize,
        reliable: bool,
    ) -> io::Result<EventSocket> {
        let use_size = buffer_size > 0 && buffer_size <= max_growth;
        let (s, size) = CtSocket::events(
            expectations,
            if use_size { buffer_size } else { 0 },
        )?;
        if !use_size {
            log::info!(
                "NetlinkBufferSize is either not set or is greater than \
                 NetlinkBufferSizeMaxGrowth. Using current system buffer size"
            );
        }
        if reliable {
            s.set_reliable()?;
            log::info!("reliable ctnetlink event delivery is ENABLED.");
        }
        log::info!(
            "netlink event socket buffer size has been set to {size} bytes"
        );
        let port = s.port();
        Ok(EventSocket {
            sock: smol::Async::new(s)?,
            port,
            size,
            max: max_growth,
            warned_at_limit: false,
            rx: vec![0; RX_BUF],
            empty: false,
            pacing: ReadPacing::default(),
            new_events: Some(true),
        })
    }

    /// A socket subscribed to nothing (`PollSecs`: the table is dumped
    /// instead): the loop keeps its shape and no event ever arrives.
    pub fn unsubscribed() -> io::Result<EventSocket> {
        let s = CtSocket::unsubscribed()?;
        let size = s.rcvbuf()?;
        let port = s.port();
        Ok(EventSocket {
            sock: smol::Async::new(s)?,
            port,
            size,
            max: 0,
            warned_at_limit: true,
            rx: vec![0; RX_BUF],
            empty: false,
            pacing: ReadPacing::default(),
            new_events: None,
        })
    }

    /// Joins (`on`) or leaves the conntrack NEW event group; UPDATE,
    /// DESTROY and the expectation groups are left as they are. ctnetlink
    /// builds no NEW event when nobody listens on the group, and during a
    /// commit almost every NEW would be the echo of our own create: about
    /// 40 % of the kernel's cost per created entry, and the loop's CPU to
    /// read it (results/wave4-commit.md). Asking for the state the socket
    /// is in already does nothing; so does any request on a socket that
    /// was never subscribed.
    pub fn set_new_events(&mut self, on: bool) -> io::Result<()> {
        if self.new_events.is_none_or(|joined| joined == on) {
            return Ok(());
        }
        let sock = &self.sock.get_ref().sock;
        if on {
            sock.add_membership(codec::NFNLGRP_CONNTRACK_NEW)?;
        } else {
            sock.drop_membership(codec::NFNLGRP_CONNTRACK_NEW)?;
        }
        self.new_events = Some(on);
        Ok(())
    }

    /// Whether the socket is in the conntrack NEW group now.
    pub fn new_events(&self) -> bool {
        self.new_events == Some(true)
    }

    /// Waits for the next datagram or overrun.
    ///
    /// Not `Async::read_with`: that tries the read first, and again each
    /// time its future is polled, woken or not. The event loop builds this
    /// future anew every turn (and polls it beside others), right after a
    /// read that found the socket empty: each turn then paid a `recvfrom`
    /// that could only fail. Readiness is awaited first when the socket
    /// is known to be empty; epoll reports data queued before the wait.
    /// During a burst the next read comes on a timer instead (see
    /// [`super::pacing`]).
    /// `now` reads the loop's clock (the pacing rule's time).
    pub async fn recv(
        &mut self,
        now: impl Fn() -> crate::time::Instant,
    ) -> io::Result<EventRead> {
        loop {
            if self.empty {
                match self.pacing.drained(now()) {
                    AfterDrain::Pause(pause) => {
                        smol::Timer::after(pause).await;
                    }
                    AfterDrain::Paused | AfterDrain::Backlog => {
                        self.readable().await?
                    }
                }
            }
            match recv_into(&self.sock.get_ref().sock, &mut self.rx) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.empty = true;
                }
                r => {
                    self.empty = false;
                    self.pacing.read();
                    return self.classify(r);
                }
            }
        }
    }

    /// Waits until a datagram (or an error) is queued, without reading
    /// it: the daemon reads with [`EventSocket::try_recv`], which it does
    /// first on every turn anyway. During a burst the daemon reads on a
    /// timer instead: see [`EventSocket::drained`].
    pub async fn readable(&mut self) -> io::Result<()> {
        self.sock.readable().await?;
        Ok(())
    }

    /// A read found the socket empty at `now`: whether to let more gather
    /// before the next read, without waiting for readiness, or to wait
    /// (see [`super::pacing`]). Waited out on a timer, never slept: a
    /// thread that blocks lets async-io's helper thread take the reactor,
    /// and every later wake-up then crosses both threads (see the
    /// daemon's `Replicator::gather`).
    pub fn drained(&mut self, now: crate::time::Instant) -> AfterDrain {
        self.pacing.drained(now)
    }

    /// Reads without waiting: None when nothing is queued. The daemon uses
    /// it to handle up to `EventIterationLimit` datagrams per wake-up.
    pub fn try_recv(&mut self) -> io::Result<Option<EventRead>> {
        match recv_into(&self.sock.get_ref().sock, &mut self.rx) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.empty = true;
                Ok(None)
            }
            r => {
                self.empty = false;
                self.pacing.read();
                self.classify(r).map(Some)
            }
        }
    }

    fn classify(&mut self, r: io::Result<usize>) -> io::Result<EventRead> {
        match r {
            Ok(n) => Ok(EventRead::Data(n)),
            Err(e) if e.raw_os_error() == Some(ENOBUFS) => {
                let mut grown_to = grown_buffer(self.size, self.max);
                match grown_to {
                    Some(size) => match self.sock.get_ref().set_rcvbuf(size) {
                        Ok(()) => {
                            self.size = size;
                            log::info!(
                                "netlink event socket buffer size has been doubled to {size} bytes"
                            );
                        }
                        // Forcing the size takes CAP_NET_ADMIN in the
                        // initial user namespace (a container may lack
                        // it). The events are lost all the same: still an
                        // overrun, so a resync follows (as a read error it
                        // was only counted, and the node stayed out of
                        // step for good). Not tried again.
                        Err(err) => {
                            log::warn!(
                                "netlink event socket buffer size could not be doubled to {size} bytes: {err}"
                            );
                            grown_to = None;
                            self.max = self.size;
                            self.warned_at_limit = true;
                        }
                    },
                    None if !self.warned_at_limit => {
                        self.warned_at_limit = true;
                        log::warn!(
                            "netlink event socket buffer size cannot be doubled further since it \
                             will exceed NetlinkBufferSizeMaxGrowth. We are likely to be losing \
                             events, this may lead to unsynchronized replicas. Please, consider \
                             increasing netlink socket buffer size via NetlinkBufferSize and \
                             NetlinkBufferSizeMaxGrowth clauses in the configuration"
                        );
                    }
                    None => {}
                }
                Ok(EventRead::Overrun { grown_to })
            }
            Err(e) => Err(e),
        }
    }

    /// The bytes of the last datagram.
    pub fn received(&self, n: usize) -> &[u8] {
        &self.rx[..n]
    }

    /// See [`CtSocket::attach_filter`].
    pub fn attach_filter(&self, prog: &[bpf::Insn]) -> io::Result<()> {
        self.sock.get_ref().attach_filter(prog)
    }

    /// The current receive buffer size (bytes).
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// The port id of this socket (not of the sockets that cause events).
    pub fn port(&self) -> u32 {
        self.port
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// Without CAP_NET_ADMIN (a container) the buffer cannot be forced
    /// larger; the overrun must still be one, for the resync it brings.
    /// Capabilities are per thread: this one drops it for itself.
    #[test]
    fn an_overrun_whose_buffer_cannot_grow_is_still_an_overrun() {
        std::thread::spawn(|| {
            use rustix::thread::{
                CapabilitySet, capabilities, set_capabilities,
            };
            let mut caps = capabilities(None).unwrap();
            caps.effective.remove(CapabilitySet::NET_ADMIN);
            set_capabilities(None, caps).unwrap();
            let mut s = EventSocket::unsubscribed().unwrap();
            let size = s.size;
            s.max = size * 4;
            s.warned_at_limit = false;
            for _ in 0..2 {
                let r = s.classify(Err(io::Error::from_raw_os_error(ENOBUFS)));
                assert!(
                    matches!(r, Ok(EventRead::Overrun { grown_to: None })),
                    "{r:?}"
                );
                assert_eq!(s.size, size);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn buffer_doubles_up_to_the_limit() {
        assert_eq!(grown_buffer(65536, 262144), Some(131072));
        assert_eq!(grown_buffer(131072, 262144), Some(262144));
        assert_eq!(grown_buffer(262144, 262144), None);
        // No MaxGrowth configured: never grow (conntrackd's behaviour).
        assert_eq!(grown_buffer(212992, 0), None);
        assert_eq!(grown_buffer(usize::MAX, usize::MAX), None);
    }
}
