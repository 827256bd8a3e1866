//! Which link sends (reference §4.1): the links' interface facts taken
//! in ([`Channels::update`]), a link whose interface was created again
//! opened again ([`Channels::reopened`]), and the move off a link that
//! went down or lost its carrier ([`Channels::failover`]). The facts are
//! read, and the sockets opened, where waiting on the kernel does no
//! harm: the daemon's link check thread, or [`Channels::check_links`]
//! for tools and tests.

use std::io::{self, ErrorKind};

use super::{Channels, Io, Link, LinkInfo, LinkStatus, Opened};
use super::{link_info, link_info_by_index, open_sockets};

/// Puts `new` (opened on the interface's new index) in `l`'s place,
/// keeping its counters and a TCP link's queue; when opening failed the
/// link is down, and the next check asks again.
fn reopened(l: &mut Link, new: io::Result<Opened>, error_queue: usize) {
    l.reopening = false;
    let iface = &l.channel.interface;
    match new.and_then(|o| o.into_link(&l.channel, error_queue)) {
        Ok(mut new) => {
            log::warn!("{iface}: interface created again, link opened again");
            new.stats = l.stats;
            // Its queue goes to the same peer over the new connection.
            if let (Io::Tcp(t), Io::Tcp(old)) = (&mut new.io, &mut l.io) {
                t.carry_over(old);
            }
            *l = new;
        }
        Err(e) => {
            if !std::mem::replace(&mut l.reopen_failed, true) {
                log::warn!(
                    "{iface}: interface created again, link not opened: {e}"
                );
            }
            l.info.status = LinkStatus::Down;
        }
    }
}

/// What a link check read, link by link in the links' order (see
/// [`read_links`]).
pub type LinkFacts = Vec<io::Result<LinkInfo>>;

/// Reads the interfaces' facts: one rtnetlink request each (two for an
/// interface gone), which waits while the kernel holds RTNL (up to 2 s):
/// the daemon reads them on a thread of their own, never on the loop's.
/// Each is read by the index it was last found at (`links`: name and
/// index, 0 when not known), so a renamed interface is followed, as
/// conntrackd's link monitor follows it: the sockets are tied to the
/// index, not the name. By name when that index is gone or not known: an
/// interface deleted and created again under the name has a new index.
pub fn read_links(links: &[(String, u32)]) -> LinkFacts {
    links
        .iter()
        .map(|(name, index)| match *index {
            0 => link_info(name),
            i => match link_info_by_index(i) {
                Err(e) if e.kind() == ErrorKind::NotFound => link_info(name),
                found => found,
            },
        })
        .collect()
}

/// What [`Channels::check_links`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failover {
    /// Sending moved to this link.
    To(usize),
    /// No usable link is left.
    NoneUsable,
}

impl Channels {
    /// The links' interfaces and the indexes they are open on, in the
    /// links' order (for [`read_links`]).
    pub fn interfaces(&self) -> Vec<(String, u32)> {
        self.links
            .iter()
            .map(|l| (l.channel.interface.to_string(), l.info.index))
            .collect()
    }

    /// Re-reads every link's interface and acts on it, waiting for the
    /// kernel: [`Channels::update`], the links opened again at once, then
    /// [`Channels::failover`]. For tools and tests; the daemon reads and
    /// opens on another thread.
    pub fn check_links(&mut self) -> Option<Failover> {
        for i in self.update(read_links(&self.interfaces())) {
            let opened = open_sockets(&self.links[i].channel);
            self.reopened(i, opened);
        }
        self.failover()
    }

    /// Takes in the interfaces' facts (from [`read_links`]; one per link,
    /// in order). Returns the indexes of the links whose interface was
    /// created again: the caller opens each (its `channel`) with
    /// [`open_sockets`] and hands the result
    /// to [`Channels::reopened`]; until then the link is not asked for
    /// again. Call [`Channels::failover`] after.
    pub fn update(&mut self, facts: LinkFacts) -> Vec<usize> {
        let mut reopen = Vec::new();
        for (i, (l, fact)) in self.links.iter_mut().zip(facts).enumerate() {
            match fact {
                // Deleted and created again (a VLAN or a bond set up
                // anew): the sockets are tied to the old index (bound to
                // the device, joined and sending on it). Sending failed
                // and nothing came while the link looked running.
                // Its status stays as it was until it is open again: the
                // new interface's said RUNNING while sending still went
                // to the old sockets, and a reopen that kept failing
                // (its address not there yet) moved sending onto it and
                // off again at every read.
                Ok(info) if info.index != l.info.index => {
                    if !std::mem::replace(&mut l.reopening, true) {
                        if let Io::Tcp(t) = &mut l.io {
                            // Its port, for the new listener.
                            t.close_listener();
                        }
                        reopen.push(i);
                    }
                }
                Ok(info) => {
                    l.info.status = info.status;
                    l.info.mtu = info.mtu;
                    l.info.name = info.name;
                }
                // Gone: the kernel says there is no such interface.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    l.info.status = LinkStatus::Down;
                }
                // Not asked (out of descriptors, no answer): the link is
                // as it was. Taking it for down moved sending off a
                // working link, or stopped it, whenever the daemon was
                // at its descriptor limit.
                Err(_) => {}
            }
        }
        reopen
    }

    /// Link `i` opened again (see [`Channels::update`]), or not.
    pub fn reopened(&mut self, i: usize, new: io::Result<Opened>) {
        if let Some(l) = self.links.get_mut(i)
            && l.reopening
        {
            reopened(l, new, self.error_queue);
        }
    }

    /// Moves sending off a link that went down or lost its carrier (see
    /// `next_link`), as the links' status now says.
    pub fn failover(&mut self) -> Option<Failover> {
        let status: Vec<LinkStatus> =
            self.links.iter().map(|l| l.info.status).collect();
        match next_link(self.current, &status) {
            Step::Stay => {
                self.none_usable = false;
                None
            }
            Step::To(i) => {
                self.current = i;
                log::info!(
                    "device `{}' becomes dedicated link",
                    self.links[i].channel.interface
                );
                Some(Failover::To(i))
            }
            Step::NoneUsable => {
                if !self.none_usable {
                    self.none_usable = true;
                    log::error!("no dedicated links available!");
                }
                Some(Failover::NoneUsable)
            }
        }
    }
}

/// What the links' status asks of the sending link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Stay,
    To(usize),
    NoneUsable,
}

/// Where sending goes, from link `current`, given every link's status.
/// As conntrackd, sending leaves a link that is not RUNNING (DOWN, or UP
/// without carrier), for the next link that is UP or RUNNING: a running
/// one first (polled each second, a move between two links without
/// carrier would be made every second), one only UP in place of one that
/// is DOWN (its carrier may come back first).
fn next_link(current: usize, status: &[LinkStatus]) -> Step {
    let here = status[current];
    if here == LinkStatus::Running {
        return Step::Stay;
    }
    let n = status.len();
    let others = || (1..n).map(move |k| (current + k) % n);
    let running = others().find(|&i| status[i] == LinkStatus::Running);
    let up = others().find(|&i| status[i].usable());
    match (running, up) {
        (Some(i), _) => Step::To(i),
        (None, Some(i)) if here == LinkStatus::Down => Step::To(i),
        (None, Some(_)) => Step::Stay,
        (None, None) => Step::NoneUsable,
    }
}

#[cfg(test)]
mod test {
    use super::LinkStatus::{Down, NoCarrier, Running};
    use super::*;

    /// Two UDP links on `lo` (binding to a device needs root: None, and
    /// said, without it).
    fn two_links_on_lo(test: &str) -> Option<Channels> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED {test}: binding to a device needs root");
            return None;
        }
        let text = "General { UNIX { Path /tmp/cm.sock } } \
             Sync { Mode FTFW { } \
             UDP { IPv4_address 127.0.0.1 IPv4_Destination_Address 127.0.0.1 Port 37951 Interface lo } \
             UDP { IPv4_address 127.0.0.1 IPv4_Destination_Address 127.0.0.1 Port 37952 Interface lo } }";
        let cfg = crate::config::parse(text, "t.conf").unwrap().config;
        Some(Channels::open(cfg.sync.as_ref().unwrap()).unwrap())
    }

    /// Link 0 sends and has lost its carrier; link 1's interface was
    /// created again and opening it keeps failing (its address is not
    /// there yet). Link 1 is no place to send until it is open: its new
    /// interface's RUNNING moved sending onto its dead sockets and off
    /// again at every read (found by review). Once open, it takes over.
    #[test]
    fn a_link_waiting_to_be_opened_again_takes_no_sending() {
        let Some(mut ch) = two_links_on_lo("a_link_waiting_to_be_opened_again")
        else {
            return;
        };
        let lo = |status| {
            Ok(LinkInfo {
                index: 1,
                mtu: 65536,
                status,
                name: Some("lo".try_into().unwrap()),
            })
        };
        let recreated = || {
            Ok(LinkInfo {
                index: 999,
                mtu: 1500,
                status: Running,
                name: Some("lo".try_into().unwrap()),
            })
        };
        ch.links[1].info.status = Down;
        for _ in 0..3 {
            let asked = ch.update(vec![lo(NoCarrier), recreated()]);
            assert_eq!(asked.len(), 1);
            // Link 0 is only up, link 1 down: nothing better to move to.
            assert_eq!(ch.failover(), Some(Failover::NoneUsable));
            let refused = io::Error::from(ErrorKind::AddrNotAvailable);
            ch.reopened(1, Err(refused));
            assert_eq!(ch.failover(), Some(Failover::NoneUsable));
        }
        assert_eq!(ch.current(), 0);
        // Opened at last (on lo here: what the kernel gives it).
        let asked = ch.update(vec![lo(NoCarrier), recreated()]);
        assert_eq!(asked.len(), 1);
        ch.reopened(1, open_sockets(&ch.links[1].channel));
        assert_eq!(ch.failover(), Some(Failover::To(1)));
    }

    #[test]
    fn a_link_that_lost_its_carrier_hands_sending_to_a_running_one() {
        // conntrackd moves off a link that is not both UP and RUNNING
        // (sync-mode.c: a cable pulled, the switch port or the peer's NIC
        // down), not only off one that is DOWN.
        assert_eq!(next_link(0, &[NoCarrier, Running]), Step::To(1));
        assert_eq!(next_link(1, &[Running, Down, NoCarrier]), Step::To(0));
        assert_eq!(next_link(0, &[Down, Running]), Step::To(1));
        assert_eq!(next_link(0, &[Running, Running]), Step::Stay);
        // A running link before one that is only up, whatever the order.
        assert_eq!(next_link(0, &[Down, NoCarrier, Running]), Step::To(2));
        // Only up, it may get its carrier: better than one that is down.
        assert_eq!(next_link(0, &[Down, NoCarrier]), Step::To(1));
        // Without carrier everywhere, sending stays (no move every
        // second between links that carry nothing).
        assert_eq!(next_link(0, &[NoCarrier, NoCarrier]), Step::Stay);
        // Nothing else up at all: said once by the caller.
        assert_eq!(next_link(0, &[NoCarrier, Down]), Step::NoneUsable);
        assert_eq!(next_link(0, &[Down, Down]), Step::NoneUsable);
        assert_eq!(next_link(0, &[NoCarrier]), Step::NoneUsable);
    }
}
