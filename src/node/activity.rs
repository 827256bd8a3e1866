//! The activity scan: which flows carry traffic now.
//!
//! The kernel raises no event while an established flow carries data, so
//! a long-lived busy stream looks as old to the peer as a flow idle since
//! its handshake, and a commit ordered by recency would restore it last.
//! Every `ActivityScan` seconds the primary dumps its table (on the kernel
//! worker). A flow whose remaining timeout is above what its last event's
//! timeout has counted down to was refreshed by the kernel since: a packet
//! passed. Up to [`ACTIVE_MAX`] of the most recently active are sent again
//! as updates, so the peer's cache marks them recent and its commit
//! restores them in the first stage. The bytes this costs are bounded by
//! [`ACTIVE_MAX`] entries per scan; flows that had an event since the last
//! scan are recent at the peer already and are not sent again.
//!
//! A flow in a flowtable (`IPS_OFFLOAD`: software or hardware flow
//! offloading, which routers turn on for their busiest flows) shows no
//! refresh: its packets bypass conntrack, and the kernel holds its
//! timeout at a placeholder of about a day. A TCP stream's placeholder is
//! below what its ESTABLISHED timeout (five days) counted down to, so by
//! timeouts alone it looked idle for as long as it was offloaded. The
//! flowtable lets a flow go after it carried no packet for its own
//! timeout (`nf_flowtable_*_timeout`, 30 s by default), so one still in
//! it is active, and counts as refreshed at the scan. Among flows equally
//! recent, those the peer heard of longest ago go first: with more
//! candidates than [`ACTIVE_MAX`] each is sent in its turn.

use std::time::Duration;

use super::Node;
use crate::kernel::codec::{Kind, Object};
use crate::model::{Conntrack, Mode, status};
use crate::time::Instant;
use crate::wire::ct_key_of;

/// Most flows one scan sends again.
pub(super) const ACTIVE_MAX: usize = 256;
/// Seconds of rounding the kernel's and the node's clocks may differ by.
const SLACK_S: u64 = 2;

/// The scan's schedule, and the candidates of the one running.
#[derive(Debug, Default)]
pub(super) struct Activity {
    period: Option<Duration>,
    due: Option<Instant>,
    /// A scan's dump is arriving: its candidates.
    running: Option<Vec<Candidate>>,
}

impl Activity {
    /// On for a node whose kernel table is its own state (internal cache,
    /// events rather than polling) in a mode that keeps state (ALARM
    /// resends everything anyway).
    pub(super) fn new(
        period_s: u32,
        mode: Mode,
        internal_cache: bool,
        polling: bool,
        now: Instant,
    ) -> Activity {
        let on =
            period_s > 0 && internal_cache && !polling && mode != Mode::Alarm;
        let period = on.then(|| Duration::from_secs(u64::from(period_s)));
        Activity {
            period,
            due: period.map(|p| now + p),
            running: None,
        }
    }

    pub(super) fn poll_at(&self) -> Option<Instant> {
        self.due
    }
}

/// Seconds since the flow's last packet when a packet refreshed it after
/// the event the cache holds: that event left `cached_timeout` seconds at
/// `cached_at`; the dump shows `dumped_timeout` at `now`.
pub(super) fn quiet_secs(
    cached_timeout: u32,
    cached_at: Instant,
    dumped_timeout: u32,
    now: Instant,
) -> Option<u32> {
    let elapsed = now.since(cached_at).as_secs();
    let counted_down = u64::from(cached_timeout).saturating_sub(elapsed);
    (u64::from(dumped_timeout) > counted_down + SLACK_S)
        .then(|| cached_timeout.saturating_sub(dumped_timeout))
}

/// A flow a scan found refreshed: seconds since its last packet, when the
/// peer was last sent it, when its part of the dump was read, and the flow
/// as dumped.
type Candidate = (u32, Instant, Instant, Conntrack);

/// Keeps the `ACTIVE_MAX` most recently active (fewest quiet seconds;
/// among equals, the peer's oldest news first).
fn keep_most_recent(c: &mut Vec<Candidate>) {
    if c.len() > ACTIVE_MAX {
        c.select_nth_unstable_by_key(ACTIVE_MAX - 1, |(q, sent, _, _)| {
            (*q, *sent)
        });
        c.truncate(ACTIVE_MAX);
    }
}

impl Node {
    /// When a scan is due, asks for a dump, unless the previous one is
    /// still arriving.
    pub(super) fn activity_timer(&mut self, now: Instant) {
        let (Some(due), Some(period)) =
            (self.activity.due, self.activity.period)
        else {
            return;
        };
        if now < due {
            return;
        }
        self.activity.due = Some(now + period);
        if self.activity.running.is_some() {
            return;
        }
        self.activity.running = Some(Vec::new());
        self.out.jobs.push(super::Job {
            purpose: super::Purpose::ActivityScan,
            work: super::Work::Dump {
                conntracks: true,
                expectations: false,
            },
        });
    }

    /// One part of the scan's dump; at the last, the most recently active
    /// flows go through the event path as updates (cached with the dump's
    /// timeout, and sent).
    pub(super) fn activity_part(
        &mut self,
        now: Instant,
        objects: Vec<Object>,
        last: bool,
    ) {
        let Some(mut found) = self.activity.running.take() else {
            return;
        };
        for o in objects {
            let Object::Ct(ct) = o else { continue };
            let Some(dumped) = ct.timeout else { continue };
            let Some(e) = self.internal_ct.get(&ct_key_of(&ct)) else {
                continue;
            };
            let Some(cached) = e.value.timeout else {
                continue;
            };
            let quiet = if ct.status & status::OFFLOADED != 0 {
                Some(0)
            } else {
                quiet_secs(cached, e.updated, dumped, now)
            };
            if let Some(q) = quiet {
                found.push((q, e.updated, now, ct));
                if found.len() >= 4 * ACTIVE_MAX {
                    keep_most_recent(&mut found);
                }
            }
        }
        if !last {
            self.activity.running = Some(found);
            return;
        }
        keep_most_recent(&mut found);
        self.counters.activity_scans += 1;
        for (_, _, seen_at, ct) in found {
            // An event since its part was read (a DESTROY above all) is
            // newer than the dump: sending the dumped state would bring
            // back a flow the kernel ended.
            let unchanged = self
                .internal_ct
                .get(&ct_key_of(&ct))
                .is_some_and(|e| e.updated < seen_at);
            if unchanged {
                // Counted as sent only when it is: `activity_resent`
                // counted the candidates, a flow ended meanwhile too.
                self.counters.activity_resent += 1;
                self.kernel_ct(now, Kind::Update, ct, true, false);
            }
        }
    }

    /// The scan's dump failed: the next one comes at its time.
    pub(super) fn activity_failed(&mut self) {
        self.activity.running = None;
        self.counters.jobs_failed += 1;
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config;
    use crate::kernel::origin::Origin;
    use crate::model::{L4, Tuple};
    use crate::node::test_support::dumped;
    use crate::node::{Completion, Done, Input, Purpose};

    fn flow(port: u16, timeout: u32) -> Conntrack {
        let mut c = Conntrack::new(Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 17,
            l4: L4::Ports { src: port, dst: 53 },
        });
        c.reply = Some(c.orig.inverse());
        c.timeout = Some(timeout);
        c
    }

    fn scans(n: &mut Node, now: Instant) -> usize {
        let o = n.handle(now, Input::Timer);
        o.jobs
            .iter()
            .filter(|j| j.purpose == Purpose::ActivityScan)
            .count()
    }

    /// The start-up resync that fills the internal cache.
    const STARTUP: Purpose = Purpose::Resync {
        client: None,
        conntracks: true,
        expectations: false,
        send: false,
        announce_new: false,
    };

    /// A NOTRACK node scanning every 10 s, started at `T0`.
    fn node() -> Node {
        let text = "General { UNIX { Path /x } }\nSync { Mode NOTRACK { }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }\nOptions { ActivityScan 10 } }";
        let cfg = config::parse(text, "t.conf").unwrap().config;
        let mut n = Node::new(cfg, 1, 1, 1400, 0, T0);
        n.start(T0);
        n
    }

    /// A flow that carried packets since its event is sent again at the
    /// next scan (and at every scan while it stays busy); an idle one
    /// never is.
    #[test]
    fn busy_flows_are_sent_again_idle_ones_are_not() {
        let t = |s: u64| T0 + Duration::from_secs(s);
        let mut n = node();
        dumped(&mut n, T0, STARTUP, &[flow(1, 120), flow(2, 120)]);
        assert_eq!(scans(&mut n, t(9)), 0);
        assert_eq!(scans(&mut n, t(10)), 1);
        // Port 1 refreshed 1 s ago; port 2 counted down.
        let scan = Purpose::ActivityScan;
        let sent = dumped(&mut n, t(10), scan, &[flow(1, 119), flow(2, 110)]);
        assert_eq!(sent, 1);
        assert_eq!(
            (n.counters.activity_scans, n.counters.activity_resent),
            (1, 1)
        );
        let e = n.internal_ct.get(&ct_key_of(&flow(1, 0))).unwrap();
        assert_eq!((e.value.timeout, e.updated), (Some(119), t(10)));
        // Still busy at the next scan: sent again; port 2 still idle.
        assert_eq!(scans(&mut n, t(20)), 1);
        let sent = dumped(&mut n, t(20), scan, &[flow(1, 118), flow(2, 100)]);
        assert_eq!(sent, 1);
        // Quiet now: nothing.
        assert_eq!(scans(&mut n, t(30)), 1);
        let sent = dumped(&mut n, t(30), scan, &[flow(1, 108), flow(2, 90)]);
        assert_eq!(sent, 0);
    }

    /// Found by the chaos test: a flow read in an early part of the dump
    /// and destroyed before the last part came back with the scan's
    /// updates, and stayed in the internal cache with no kernel entry.
    #[test]
    fn a_flow_that_ends_during_the_scan_is_not_brought_back() {
        let mut n = node();
        let t = |s: u64| T0 + Duration::from_secs(s);
        dumped(&mut n, T0, STARTUP, &[flow(1, 120), flow(2, 120)]);
        assert_eq!(scans(&mut n, t(10)), 1);
        let scan = Purpose::ActivityScan;
        // Both busy; the first part has port 1, the last port 2.
        let part = |cts: &[Conntrack], last| Done::Dumped {
            objects: cts.iter().cloned().map(Object::Ct).collect(),
            last,
        };
        let job = |purpose, done| Input::Job(Completion { purpose, done });
        n.handle(t(10), job(scan, part(&[flow(1, 119)], false)));
        let destroyed = crate::kernel::codec::Message {
            kind: Kind::Destroy,
            object: Object::Ct(flow(1, 0)),
            port: 0,
            seq: 0,
        };
        n.handle(
            t(10) + Duration::from_millis(5),
            Input::Kernel(destroyed, Origin::NotMe),
        );
        let later = t(10) + Duration::from_millis(10);
        n.handle(later, job(scan, part(&[flow(2, 119)], true)));
        assert!(
            n.internal_ct.get(&ct_key_of(&flow(1, 0))).is_none(),
            "the ended flow stays ended"
        );
        let e = n.internal_ct.get(&ct_key_of(&flow(2, 0))).unwrap();
        assert_eq!(e.value.timeout, Some(119), "the other is refreshed");
        assert_eq!(
            n.counters.activity_resent, 1,
            "only the flow sent again: the ended one was a candidate, not sent"
        );
    }

    /// ALARM, polling and a node without internal cache never scan.
    #[test]
    fn off_where_it_cannot_help() {
        let now = Instant::ZERO;
        assert!(
            Activity::new(10, Mode::FtFw, true, false, now)
                .poll_at()
                .is_some()
        );
        assert!(
            Activity::new(0, Mode::FtFw, true, false, now)
                .poll_at()
                .is_none()
        );
        assert!(
            Activity::new(10, Mode::Alarm, true, false, now)
                .poll_at()
                .is_none()
        );
        assert!(
            Activity::new(10, Mode::FtFw, false, false, now)
                .poll_at()
                .is_none()
        );
        assert!(
            Activity::new(10, Mode::FtFw, true, true, now)
                .poll_at()
                .is_none()
        );
    }

    const T0: Instant = Instant::from_millis(1_000_000);

    #[test]
    fn a_refreshed_timeout_means_a_packet_passed() {
        let later = |s| T0 + Duration::from_secs(s);
        // An ESTABLISHED flow's event left 432 000 s; 30 s later the
        // kernel shows it refreshed 3 s ago.
        assert_eq!(quiet_secs(432_000, T0, 431_997, later(30)), Some(3));
        // Idle since the event: the timeout only counted down.
        assert_eq!(quiet_secs(432_000, T0, 431_970, later(30)), None);
        // Within the clocks' rounding: not evidence.
        assert_eq!(quiet_secs(120, T0, 92, later(30)), None);
        assert_eq!(quiet_secs(120, T0, 93, later(30)), Some(27));
        // Just after the event, nothing can be told.
        assert_eq!(quiet_secs(120, T0, 120, T0), None);
    }

    #[test]
    fn only_the_most_recently_active_are_kept() {
        let ct = Conntrack::new(crate::model::Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 17,
            l4: crate::model::L4::Ports { src: 1, dst: 2 },
        });
        let mut v: Vec<Candidate> =
            (0..1000).rev().map(|q| (q, T0, T0, ct.clone())).collect();
        keep_most_recent(&mut v);
        assert_eq!(v.len(), ACTIVE_MAX);
        assert!(v.iter().all(|(q, _, _, _)| (*q as usize) < ACTIVE_MAX));
        // Equally quiet: the peer's oldest news first.
        let at = |s: u64| T0 + Duration::from_secs(s);
        let mut v: Vec<Candidate> =
            (0..1000).map(|s| (0, at(s), T0, ct.clone())).collect();
        keep_most_recent(&mut v);
        assert!(v.iter().all(|(_, sent, _, _)| *sent < at(256)));
    }

    /// A TCP stream in a flowtable: the kernel shows its timeout at the
    /// flowtable's placeholder (a day), below what the ESTABLISHED event's
    /// five days counted down to.
    fn stream(port: u16, timeout: u32, offloaded: bool) -> Conntrack {
        let mut c = flow(port, timeout);
        c.orig.proto = 6;
        c.reply = Some(c.orig.inverse());
        c.status = status::SEEN_REPLY | status::ASSURED;
        if offloaded {
            c.status |= status::OFFLOAD;
        }
        c
    }

    /// Offloaded, a busy stream is sent again at every scan, with the
    /// timeout of its last real state, not the placeholder; once the
    /// flowtable let it go (idle 30 s: the kernel put its own timeout
    /// back, minus those 30 s) it is not.
    #[test]
    fn a_stream_in_a_flowtable_counts_as_active() {
        let t = |s: u64| T0 + Duration::from_secs(s);
        let est = 432_000;
        let mut n = node();
        dumped(&mut n, T0, STARTUP, &[stream(1, est, false)]);
        let scan = Purpose::ActivityScan;
        for at in [10, 20, 30] {
            assert_eq!(scans(&mut n, t(at)), 1);
            let day = 86_400 - at as u32;
            let sent = dumped(&mut n, t(at), scan, &[stream(1, day, true)]);
            assert_eq!(sent, 1, "scan at {at} s");
            let e = n.internal_ct.get(&ct_key_of(&stream(1, 0, true))).unwrap();
            assert_eq!((e.value.timeout, e.updated), (Some(est), t(at)));
            assert_ne!(e.value.status & status::OFFLOAD, 0);
        }
        assert_eq!(scans(&mut n, t(40)), 1);
        let torn_down = stream(1, est - 30, false);
        assert_eq!(dumped(&mut n, t(40), scan, &[torn_down]), 0);
        assert_eq!(n.counters.activity_resent, 3);
    }

    /// More offloaded flows than one scan sends: the next scan sends
    /// those the last one left out first.
    #[test]
    fn offloaded_flows_take_their_turns() {
        let t = |s: u64| T0 + Duration::from_secs(s);
        let mut n = node();
        let flows = |timeout, offloaded| -> Vec<Conntrack> {
            (1..=300).map(|p| stream(p, timeout, offloaded)).collect()
        };
        dumped(&mut n, T0, STARTUP, &flows(432_000, false));
        let scan = Purpose::ActivityScan;
        assert_eq!(scans(&mut n, t(10)), 1);
        assert_eq!(dumped(&mut n, t(10), scan, &flows(86_390, true)), 256);
        assert_eq!(scans(&mut n, t(20)), 1);
        assert_eq!(dumped(&mut n, t(20), scan, &flows(86_380, true)), 256);
        let unsent = flows(0, true)
            .iter()
            .filter(|c| n.internal_ct.get(&ct_key_of(c)).unwrap().updated == T0)
            .count();
        assert_eq!(unsent, 0, "every flow was sent in two scans");
    }
}
