//! The link check's thread: it reads the sync links' interfaces when the
//! kernel says an interface changed, and once a second in any case, and
//! opens a link's sockets again when its interface was created again. It
//! reports both to the event loop, which acts on them
//! ([`Channels::update`], [`Channels::reopened`]).
//!
//! ```text
//!  loop ──link i to open again (one byte)──► wake socket ──► thread
//!  kernel ──link notifications (RTNLGRP_LINK)──────────────►  │
//!  loop ◄──Facts / Reopened── [bounded, REPORTS] ◄─────────────┘
//!                                  (rtnetlink requests, socket opening)
//! ```
//!
//! Why a thread: an rtnetlink request is answered in the sender's system
//! call, and on kernels where RTM_GETLINK takes RTNL it waits while
//! another task holds it; a multicast group join takes RTNL on every
//! kernel. During an interface storm (a bond or VLANs set up anew while
//! keepalived moves the addresses) only this thread waits, never the loop
//! that reads the peer and the kernel's events.
//!
//! Why notifications: a link that goes down is left within milliseconds,
//! as conntrackd's link monitor leaves it, not at the next second's read.
//! A storm of them costs at most one read of the interfaces per
//! [`MIN_GAP`].
//!
//! [`Channels::update`]: crate::channel::Channels::update
//! [`Channels::reopened`]: crate::channel::Channels::reopened

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use smol::channel::{self, Receiver, Sender};

use crate::channel::{
    LinkEvents, LinkFacts, Opened, link_info, open_sockets, read_links,
};
use crate::config::Channel;

/// How often the interfaces are read without a notification (conntrackd
/// polls nothing; this catches a notification lost to an overrun).
pub const LINK_CHECK: Duration = Duration::from_secs(1);
/// Least time between two reads that notifications asked for.
pub const MIN_GAP: Duration = Duration::from_millis(20);
/// Reports waiting for the loop: the thread waits when the loop is this
/// far behind (its next facts are then fresher than a queue of old ones).
const REPORTS: usize = 2;

/// What the thread found.
pub enum Report {
    /// Every link's interface, in the links' order.
    Facts(LinkFacts),
    /// Link `.0`'s sockets, opened on its interface's new index.
    Reopened(usize, io::Result<Opened>),
}

pub struct LinkWatch {
    /// The loop's end: a byte per link to open again.
    wake: UnixStream,
    pub reports: Receiver<Report>,
    _thread: JoinHandle<()>,
}

impl LinkWatch {
    /// Starts the thread for these links (in the links' order), in the
    /// caller's network namespace.
    pub fn start(links: Vec<Channel>) -> io::Result<LinkWatch> {
        let (wake, wakes) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wakes.set_nonblocking(true)?;
        // Without notifications the once-a-second read still fails over.
        let events = LinkEvents::open()
            .map_err(|e| {
                log::warn!(
                    "no link notifications ({e}): links are checked once a second"
                );
            })
            .ok();
        let (tx, reports) = channel::bounded(REPORTS);
        let thread = std::thread::Builder::new().name("links".into()).spawn(
            move || {
                // At the loop's policy (real-time by default), unlike the
                // kernel worker: its work is a few system calls at a time,
                // and a link that went down is left as soon as the kernel
                // says so, as conntrackd's real-time loop leaves it, not
                // after a real-time commit or the loop's burst.
                Watch {
                    links,
                    events,
                    wakes,
                    reports: tx,
                }
                .run();
            },
        )?;
        Ok(LinkWatch {
            wake,
            reports,
            _thread: thread,
        })
    }

    /// Asks for link `i` to be opened again (answered by a
    /// [`Report::Reopened`]; a link whose last reopen failed is tried at
    /// most once per [`LINK_CHECK`]). A dead thread shows as the end of
    /// `reports`. The error of a request that could not be written (no
    /// memory): the caller takes it as a reopen that failed, and asks
    /// again at the next facts.
    pub fn reopen(&self, i: usize) -> io::Result<()> {
        // Never blocks: at most one byte per link waits (`update` asks
        // once per link until it is answered).
        (&self.wake).write_all(&[i as u8])
    }
}

struct Watch {
    links: Vec<Channel>,
    events: Option<LinkEvents>,
    /// The thread's end of the wake socket (EOF: the loop is gone).
    wakes: UnixStream,
    reports: Sender<Report>,
}

impl Watch {
    fn run(mut self) {
        // Each link's interface and the index it was last found at, so
        // that a renamed one is followed (see `read_links`). Read now: the
        // links were opened on these a moment ago.
        let mut interfaces: Vec<(String, u32)> = self
            .links
            .iter()
            .map(|c| {
                let name = c.interface.to_string();
                let index = link_info(&name).map_or(0, |i| i.index);
                (name, index)
            })
            .collect();
        let mut last_read = Instant::now();
        let mut next_read = last_read + LINK_CHECK;
        // Per link: when a reopen that failed may be tried again, and
        // whether one was asked for meanwhile. A recreated interface
        // whose address comes later (keepalived, DHCP, IPv6 DAD) failed
        // its reopen at every read: up to 50 a second, two sockets and a
        // group join each, while notifications came (found by review).
        let mut retry_at: Vec<Option<Instant>> = vec![None; self.links.len()];
        let mut deferred = vec![false; self.links.len()];
        loop {
            let due = retry_at
                .iter()
                .zip(&deferred)
                .filter_map(|(t, &d)| t.filter(|_| d))
                .min();
            let (woken, notified) =
                self.wait(due.map_or(next_read, |t| t.min(next_read)));
            if woken {
                let Some(asked) = self.asked() else {
                    return;
                };
                for i in asked {
                    if let Some(d) = deferred.get_mut(i) {
                        *d = true;
                    }
                }
            }
            let now = Instant::now();
            for i in 0..self.links.len() {
                if !deferred[i] || retry_at[i].is_some_and(|t| now < t) {
                    continue;
                }
                deferred[i] = false;
                let opened = open_sockets(&self.links[i]);
                retry_at[i] = opened.is_err().then(|| now + LINK_CHECK);
                let report = Report::Reopened(i, opened);
                if self.reports.send_blocking(report).is_err() {
                    return;
                }
            }
            if notified && self.events.as_mut().is_some_and(LinkEvents::drain) {
                next_read = next_read.min(last_read + MIN_GAP);
            }
            if Instant::now() >= next_read {
                let facts = read_links(&interfaces);
                for ((_, index), fact) in interfaces.iter_mut().zip(&facts) {
                    match fact {
                        Ok(info) => *index = info.index,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            *index = 0
                        }
                        Err(_) => {}
                    }
                }
                last_read = Instant::now();
                next_read = last_read + LINK_CHECK;
                if self.reports.send_blocking(Report::Facts(facts)).is_err() {
                    return;
                }
            }
        }
    }

    /// Waits until `until`, a wake or a notification: which of the last
    /// two came.
    fn wait(&self, until: Instant) -> (bool, bool) {
        let left = until.saturating_duration_since(Instant::now());
        // `tv_nsec` is a C long on 32-bit targets: rustix converts (a
        // second at most here, never out of range).
        let timeout = rustix::time::Timespec::try_from(left).unwrap_or(
            rustix::time::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
        );
        let wakes = self.wakes.as_fd();
        let mut fds = vec![PollFd::new(&wakes, PollFlags::IN)];
        if let Some(e) = &self.events {
            fds.push(PollFd::new(e, PollFlags::IN));
        }
        if rustix::event::poll(&mut fds, Some(&timeout)).is_err() {
            // EINTR: the caller looks at the clock and waits again.
            return (false, false);
        }
        let ready = |f: &PollFd<'_>| !f.revents().is_empty();
        (ready(&fds[0]), fds.get(1).is_some_and(ready))
    }

    /// The links the loop asked to open again; None once the loop is gone.
    fn asked(&mut self) -> Option<Vec<usize>> {
        let mut buf = [0u8; 16];
        let mut asked = Vec::new();
        loop {
            match self.wakes.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => asked.extend(buf[..n].iter().map(|&i| usize::from(i))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Some(asked);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A UDP link on `interface` (which need not exist).
    fn channel_on(interface: &str, port: u16) -> Channel {
        channel_from("127.0.0.1", interface, port)
    }

    /// A UDP link bound to `local` on `interface`.
    fn channel_from(local: &str, interface: &str, port: u16) -> Channel {
        let text = format!(
            "General {{ UNIX {{ Path /tmp/lw.sock }} }} \
             Sync {{ Mode FTFW {{ }} UDP {{ IPv4_address {local} \
             IPv4_Destination_Address 127.0.0.1 Port {port} \
             Interface {interface} }} }}"
        );
        let cfg = crate::config::parse(&text, "t.conf").unwrap().config;
        cfg.sync.unwrap().channels[0].clone()
    }

    #[test]
    fn the_interfaces_are_reported_within_a_second_in_order() {
        // Every network namespace has lo (index 1).
        let watch = LinkWatch::start(vec![
            channel_on("lo", 37930),
            channel_on("no-such-if0", 37930),
        ])
        .unwrap();
        let started = Instant::now();
        let Ok(Report::Facts(facts)) = watch.reports.recv_blocking() else {
            panic!("the first report is not the interfaces' facts");
        };
        let waited = started.elapsed();
        // A notification (another test's interface) may bring it forward.
        assert!(waited < 3 * LINK_CHECK, "first facts after {waited:?}");
        assert_eq!(facts.len(), 2);
        assert_eq!(facts[0].as_ref().unwrap().index, 1);
        assert_eq!(
            facts[1].as_ref().unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_link_asked_to_be_opened_again_is_answered_before_the_next_facts() {
        if !rustix::process::geteuid().is_root() {
            eprintln!(
                "SKIPPED a_link_asked_to_be_opened_again: binding to a device needs root"
            );
            return;
        }
        let watch = LinkWatch::start(vec![channel_on("lo", 37931)]).unwrap();
        let asked = Instant::now();
        watch.reopen(0).unwrap();
        let Ok(Report::Reopened(0, opened)) = watch.reports.recv_blocking()
        else {
            panic!("the first report is not link 0 opened again");
        };
        assert!(opened.is_ok(), "{:?}", opened.err());
        assert!(asked.elapsed() < LINK_CHECK / 2, "{:?}", asked.elapsed());
        drop(watch);
    }

    /// A reopen that failed (here: an address lo does not have, or no root
    /// to bind to a device) is tried again at most once per LINK_CHECK,
    /// however often the loop asks: it asks at every read of the interfaces,
    /// up to 50 a second while notifications come (found by review).
    #[test]
    fn a_reopen_that_failed_is_tried_again_a_second_later() {
        let unassigned = channel_from("10.99.99.1", "lo", 37932);
        let watch = LinkWatch::start(vec![unassigned]).unwrap();
        let reopened = |watch: &LinkWatch| loop {
            match watch.reports.recv_blocking() {
                Ok(Report::Reopened(0, r)) => return r,
                Ok(_) => {}
                Err(_) => panic!("the link check's thread died"),
            }
        };
        // Timed from before the first ask: the failure (and the pacing's
        // start) comes after it, whenever its report is read (under qemu
        // on a loaded machine reading it took 37 ms: CI run 102, ARMv7).
        let asked = Instant::now();
        watch.reopen(0).unwrap();
        assert!(reopened(&watch).is_err(), "lo has no 10.99.99.1");
        watch.reopen(0).unwrap();
        assert!(reopened(&watch).is_err());
        let again = asked.elapsed();
        assert!(
            again >= LINK_CHECK - Duration::from_millis(20),
            "tried again after {again:?}"
        );
    }
}
