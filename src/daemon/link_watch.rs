//! The link check's thread: it reads the sync links' interfaces once a
//! second and opens a link's sockets again when its interface was created
//! again, and reports both to the event loop, which acts on them
//! ([`Channels::update`], [`Channels::reopened`]).
//!
//! ```text
//!  loop ──reopen link i──► [unbounded, at most one per link] ──► thread
//!  loop ◄──Facts / Reopened── [bounded, REPORTS] ◄────────────────┘
//!                                  (rtnetlink requests, socket opening)
//! ```
//!
//! Why a thread: an rtnetlink request is answered while the kernel holds
//! RTNL, and a multicast group join takes it too. During an interface
//! storm (a bond or VLANs set up anew while keepalived moves the
//! addresses) that is up to seconds in which a loop that asked would
//! neither read the peer nor the kernel's events. Here only this thread
//! waits.
//!
//! [`Channels::update`]: crate::channel::Channels::update
//! [`Channels::reopened`]: crate::channel::Channels::reopened

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smol::channel::{self, Receiver, Sender};

use super::sched;
use crate::channel::{LinkFacts, Opened, open_sockets, read_links};
use crate::config::Channel;

/// How often the interfaces are read (conntrackd: once a second).
pub(crate) const LINK_CHECK: Duration = Duration::from_secs(1);
/// Reports waiting for the loop: the thread waits when the loop is this
/// far behind (its next facts are then fresher than a queue of old ones).
const REPORTS: usize = 2;

/// What the thread found.
pub(crate) enum Report {
    /// Every link's interface, in the links' order.
    Facts(LinkFacts),
    /// Link `.0`'s sockets, opened on its interface's new index.
    Reopened(usize, io::Result<Opened>),
}

pub(crate) struct LinkWatch {
    reopen: mpsc::Sender<(usize, Channel)>,
    pub reports: Receiver<Report>,
    _thread: JoinHandle<()>,
}

impl LinkWatch {
    /// Starts the thread for these interfaces (one per link, in order).
    pub(crate) fn start(interfaces: Vec<String>) -> io::Result<LinkWatch> {
        let (reopen, requests) = mpsc::channel();
        let (tx, reports) = channel::bounded(REPORTS);
        let thread = std::thread::Builder::new().name("links".into()).spawn(
            move || {
                // Started by the real-time loop: back to the normal policy
                // (see `sched`), as the kernel worker.
                sched::normal();
                run(&interfaces, &requests, &tx);
            },
        )?;
        Ok(LinkWatch {
            reopen,
            reports,
            _thread: thread,
        })
    }

    /// Asks for link `i` to be opened again (answered by a
    /// [`Report::Reopened`]). A dead thread shows as the end of
    /// `reports`.
    pub(crate) fn reopen(&self, i: usize, c: Channel) {
        let _ = self.reopen.send((i, c));
    }
}

fn run(
    interfaces: &[String],
    requests: &mpsc::Receiver<(usize, Channel)>,
    reports: &Sender<Report>,
) {
    let mut next_check = Instant::now() + LINK_CHECK;
    loop {
        let wait = next_check.saturating_duration_since(Instant::now());
        let report = match requests.recv_timeout(wait) {
            // At once: the link sends nothing until it is open again.
            Ok((i, c)) => Report::Reopened(i, open_sockets(&c)),
            Err(RecvTimeoutError::Timeout) => {
                let facts = read_links(interfaces);
                next_check = Instant::now() + LINK_CHECK;
                Report::Facts(facts)
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if reports.send_blocking(report).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_interfaces_are_reported_once_a_second_in_order() {
        // Every network namespace has lo (index 1).
        let watch =
            LinkWatch::start(vec!["lo".into(), "no-such-if0".into()]).unwrap();
        let started = Instant::now();
        let Ok(Report::Facts(facts)) = watch.reports.recv_blocking() else {
            panic!("the first report is not the interfaces' facts");
        };
        let waited = started.elapsed();
        assert!(
            waited >= LINK_CHECK - Duration::from_millis(50)
                && waited < 3 * LINK_CHECK,
            "first facts after {waited:?}"
        );
        assert_eq!(facts.len(), 2);
        assert_eq!(facts[0].as_ref().unwrap().index, 1);
        assert_eq!(
            facts[1].as_ref().unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_link_asked_to_be_opened_again_is_answered_before_the_next_facts() {
        let text = "General { UNIX { Path /tmp/lw.sock } } \
             Sync { Mode FTFW { } UDP { IPv4_address 127.0.0.1 \
             IPv4_Destination_Address 127.0.0.1 Port 37931 Interface lo } }";
        let cfg = crate::config::parse(text, "t.conf").unwrap().config;
        let channel = cfg.sync.unwrap().channels[0].clone();
        let watch = LinkWatch::start(vec!["lo".into()]).unwrap();
        let asked = Instant::now();
        watch.reopen(0, channel);
        let Ok(Report::Reopened(0, opened)) = watch.reports.recv_blocking()
        else {
            panic!("the first report is not link 0 opened again");
        };
        assert!(opened.is_ok(), "{:?}", opened.err());
        assert!(asked.elapsed() < LINK_CHECK / 2, "{:?}", asked.elapsed());
        drop(watch);
    }
}
