//! Polling mode (`PollSecs N`, reference §7.3): no event subscription;
//! every N seconds the kernel table is dumped and diffed against the
//! internal cache. The dump goes through the resync path, which already
//! adds what is new, updates what it carries and drops (and announces)
//! what the kernel no longer has; this module schedules the dumps and
//! decides which dumped entries changed. Unlike conntrackd, which sends
//! every entry at every poll, only entries whose state changed are sent:
//! a timeout that only counted down is no change.

use std::time::Duration;

use super::Node;
use crate::model::Conntrack;
use crate::time::Instant;

/// Whether a dumped entry differs from the cached one in anything the
/// peer keeps (the timeout counts down between dumps; counters and
/// timestamps are not replicated).
pub(super) fn changed(cached: &Conntrack, dumped: &Conntrack) -> bool {
    let strip = |c: &Conntrack| {
        let mut c = c.clone();
        c.timeout = None;
        c.counters = None;
        c.timestamp = None;
        c.id = 0;
        c
    };
    strip(cached) != strip(dumped)
}

impl Node {
    /// The polling period, when polling replaces events.
    pub(super) fn poll_period(&self) -> Option<Duration> {
        self.cfg
            .general
            .poll_secs
            .map(|s| Duration::from_secs(u64::from(s)))
    }

    /// When polling is due, asks for a dump whose differences are sent,
    /// unless the previous one is still arriving (a slow dump must not
    /// pile up behind itself).
    pub(super) fn polling_timer(&mut self, now: Instant) {
        let (Some(due), Some(period)) = (self.next_poll, self.poll_period())
        else {
            return;
        };
        if now < due {
            return;
        }
        self.next_poll = Some(now + period);
        if self.resync.is_some() {
            return;
        }
        let exp = self.expectations();
        self.resync_kernel(None, true, exp, true);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config;
    use crate::model::{L4, Tuple};
    use crate::node::{Input, Purpose};

    fn flow(port: u16) -> Conntrack {
        let mut c = Conntrack::new(Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 17,
            l4: L4::Ports { src: port, dst: 53 },
        });
        c.reply = Some(c.orig.inverse());
        c.timeout = Some(30);
        c
    }

    fn polling_node(t0: Instant) -> Node {
        let text = "General { UNIX { Path /x } PollSecs 5 }\nSync { Mode NOTRACK { }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo } }";
        let cfg = config::parse(text, "t.conf").unwrap().config;
        Node::new(cfg, 1, 1, 1400, 0, t0)
    }

    /// A resync dump (`send`: its differences go to the peer), handed in
    /// as the worker would: the data messages sent.
    fn dumped(
        node: &mut Node,
        now: Instant,
        cts: &[Conntrack],
        send: bool,
    ) -> usize {
        let purpose = Purpose::Resync {
            client: None,
            conntracks: true,
            expectations: false,
            send,
            announce_new: false,
        };
        crate::node::test_support::dumped(node, now, purpose, cts)
    }

    /// The polls a timer at `now` asks for.
    fn polls(node: &mut Node, now: Instant) -> usize {
        node.handle(now, Input::Timer)
            .jobs
            .iter()
            .filter(|j| matches!(j.purpose, Purpose::Resync { send: true, .. }))
            .count()
    }

    #[test]
    fn every_period_a_dump_whose_differences_alone_are_sent() {
        let t0 = Instant::from_millis(0);
        let mut n = polling_node(t0);
        n.start(t0);
        assert_eq!(dumped(&mut n, t0, &[flow(1), flow(2)], false), 0);
        let t = |s: u64| t0 + Duration::from_secs(s);
        assert!(n.poll_at() <= t(5));
        assert_eq!(polls(&mut n, t(4)), 0);
        assert_eq!(polls(&mut n, t(5)), 1);
        // Only the timeouts counted down: nothing to send.
        let (mut a, mut b) = (flow(1), flow(2));
        a.timeout = Some(25);
        b.timeout = Some(24);
        assert_eq!(dumped(&mut n, t(5), &[a.clone(), b.clone()], true), 0);
        // While a dump is under way the next one waits.
        assert_eq!(polls(&mut n, t(10)), 1);
        assert_eq!(polls(&mut n, t(15)), 0, "the t(10) dump is still out");
        // Updated (a mark) and new (port 3): sent.
        a.mark = 7;
        let sent =
            dumped(&mut n, t(16), &[a.clone(), b.clone(), flow(3)], true);
        assert_eq!(sent, 2, "the update and the new entry");
        assert_eq!(n.internal_ct.len(), 3);
        // Destroyed (b gone from the kernel): sent, and uncached.
        assert_eq!(polls(&mut n, t(21)), 1);
        assert_eq!(dumped(&mut n, t(21), &[a.clone(), flow(3)], true), 1);
        assert_eq!(n.internal_ct.len(), 2);
        assert!(
            n.internal_ct
                .get(&crate::wire::ct_key_of(&a))
                .is_some_and(|e| e.value.mark == 7)
        );
    }

    /// A `-R` between polls: what it finds new or gone reaches the peer
    /// (by the `-R` itself or the next poll). It cached a new flow and
    /// dropped a gone one silently, and since a poll sends only what
    /// differs from the cache and no DESTROY event comes while polling,
    /// the peer never heard of either: a long-lived flow that changed no
    /// more was missing at the failover, a dead one committed.
    #[test]
    fn a_resync_between_polls_loses_neither_a_new_nor_a_gone_flow() {
        use crate::control::proto::{Request, Target};
        let t0 = Instant::from_millis(0);
        let mut n = polling_node(t0);
        n.start(t0);
        let t = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(dumped(&mut n, t0, &[flow(1), flow(2)], true), 2);
        let out = n.handle(
            t(1),
            Input::Control {
                client: 9,
                request: Request::ResyncKernel(Target::All),
                links: &[],
                control: Default::default(),
            },
        );
        let [job] = &out.jobs[..] else {
            panic!("one dump: {:?}", out.jobs)
        };
        // Port 1 ended, port 3 began.
        let mut sent = crate::node::test_support::dumped(
            &mut n,
            t(1),
            job.purpose,
            &[flow(2), flow(3)],
        );
        assert_eq!(polls(&mut n, t(5)), 1);
        sent += dumped(&mut n, t(5), &[flow(2), flow(3)], true);
        assert_eq!(sent, 2, "the new flow and the gone one, once each");
    }

    #[test]
    fn changed_ignores_what_counts_down() {
        let (a, mut b) = (flow(1), flow(1));
        b.timeout = Some(1);
        b.id = 99;
        assert!(!changed(&a, &b));
        b.status |= crate::model::status::ASSURED;
        assert!(changed(&a, &b));
    }

    /// A poll that only counts timeouts down sends nothing, and leaves
    /// the internal entries as the peer holds them: their digest (what
    /// anti-entropy compares with the peer's) does not move. It did, and
    /// every period resent the whole table.
    #[test]
    fn a_poll_that_only_counts_down_leaves_the_digest_as_the_peer_holds_it() {
        use crate::sync::digest::Digest;
        let digest = |n: &Node| {
            Digest::of(
                n.internal_ct
                    .raw_entries()
                    .map(|(b, kl, _)| (&b[..kl], b))
                    .collect::<Vec<_>>(),
            )
            .top()
        };
        let t0 = Instant::from_millis(0);
        let mut n = polling_node(t0);
        n.start(t0);
        let t = |s: u64| t0 + Duration::from_secs(s);
        // Everything sent: the peer's external cache now equals this.
        assert_eq!(dumped(&mut n, t0, &[flow(1), flow(2)], true), 2);
        let peer_view = digest(&n);
        let (mut a, mut b) = (flow(1), flow(2));
        a.timeout = Some(25);
        b.timeout = Some(24);
        assert_eq!(polls(&mut n, t(5)), 1);
        assert_eq!(dumped(&mut n, t(5), &[a, b], true), 0, "nothing sent");
        assert_eq!(digest(&n), peer_view, "the digest drifted from the peer's");
        // A real change is sent, and stored whole.
        let mut c = flow(1);
        c.timeout = Some(20);
        c.mark = 7;
        assert_eq!(polls(&mut n, t(10)), 1);
        assert_eq!(dumped(&mut n, t(10), &[c, flow(2)], true), 1);
        assert_ne!(digest(&n), peer_view);
    }
}
