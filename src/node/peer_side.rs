//! The peer side of a node: datagrams in (into the external cache, or
//! straight into the kernel with DisableExternalCache) and datagrams out
//! (when [`crate::sync::tx_timing`] says); per link, what was refused and
//! which protocol the peer speaks (the switch between ctsyncd's and
//! conntrackd's is
//! [`crate::sync::Switch`]'s; its one notice line is written here, where
//! the link is known).

use super::kernel_side::master_zone;
use super::{
    Injection, Internal, Job, LinkView, Node, Purpose, RELEASE_AFTER, Work,
};
use crate::config::{NatByteOrder, Transport};
use crate::sync::{Apply, CtdRefused, Protocol, Received};
use crate::time::Instant;
use crate::wire::{self, CtKey, ctd};

/// What one link refused, and the protocol its peer last spoke.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct LinkRefused {
    auth_failed: u64,
    replayed: u64,
    unsealed: u64,
    ctd: CtdRefused,
    protocol: Option<Protocol>,
}

/// conntrackd's encoding options for a `Sync` section: its NAT byte
/// order, and no timeouts when we have CommitTimeout (conntrackd omits
/// them then).
pub(super) fn ctd_options(sync: &crate::config::Sync) -> ctd::Options {
    ctd::Options {
        nat_order: match sync.peer_nat_byte_order {
            NatByteOrder::V147 => ctd::NatByteOrder::V147,
            NatByteOrder::V142 => ctd::NatByteOrder::V142,
        },
        send_timeout: sync.commit_timeout.is_none(),
    }
}

/// Links are few (the configured ones); an index beyond this is not one.
const MAX_LINKS: usize = 64;
/// Resend-queue length below which a burst counts as acknowledged (see
/// `transmit`): above a silent peer's hold (`ftfw::SILENT_HOLD`, 4096),
/// below the smallest burst whose memory is handed back
/// ([`RELEASE_AFTER`]).
const SETTLED: usize = RELEASE_AFTER / 2;

impl Node {
    fn link_counts(&mut self, link: usize) -> Option<&mut LinkRefused> {
        if link >= MAX_LINKS {
            return None;
        }
        if self.refused.len() <= link {
            self.refused.resize(link + 1, LinkRefused::default());
        }
        self.refused.get_mut(link)
    }

    fn count_received(&mut self, link: usize, got: &Received) {
        let Some(r) = self.link_counts(link) else {
            return;
        };
        r.ctd.add(&got.refused);
        if got.protocol.is_some() {
            r.protocol = got.protocol;
        }
        match got.result {
            Err(wire::Error::Auth) => r.auth_failed += 1,
            Err(wire::Error::Replayed) => r.replayed += 1,
            Err(wire::Error::Unsealed) => r.unsealed += 1,
            _ => {}
        }
    }

    /// The link as the switch's log line names it:
    /// `eth1 (udp 192.168.100.2:3780)`.
    fn link_name(&self, link: usize) -> String {
        let Some(c) = self.sync().channels.get(link) else {
            return format!("#{link}");
        };
        let (kind, addr, port) = match &c.transport {
            Transport::Multicast { group, port, .. } => {
                ("multicast", group, port)
            }
            Transport::Udp { dest, port, .. } => ("udp", dest, port),
            Transport::Tcp { dest, port, .. } => ("tcp", dest, port),
        };
        let to = std::net::SocketAddr::new(*addr, *port);
        format!("{} ({kind} {to})", c.interface)
    }

    /// The loop's link views with this node's refusal counts.
    pub(super) fn with_refusals(&self, links: &[LinkView]) -> Vec<LinkView> {
        let mut v = links.to_vec();
        for (l, r) in v.iter_mut().zip(&self.refused) {
            l.auth_failed = r.auth_failed;
            l.replayed = r.replayed;
            l.unsealed = r.unsealed;
            l.ctd_refused = r.ctd;
            l.peer_protocol = r.protocol.map(Protocol::name);
        }
        v
    }

    /// One datagram from the peer on `link`. A bad one is counted by the
    /// engine (`-s network`).
    pub(super) fn datagram(
        &mut self,
        now: Instant,
        link: usize,
        peer: u64,
        bytes: &[u8],
    ) {
        let src = Internal {
            ct: &self.internal_ct,
            exp: &self.internal_exp,
            bypass: self.cache_not_kernel(),
        };
        let got = self.engine.recv(now, peer, bytes, &src);
        self.count_received(link, &got);
        if let Some(p) = got.switched {
            let text = format!(
                "sync link {}: peer speaks {} protocol",
                self.link_name(link),
                p.name()
            );
            self.out.log(log::Level::Info, text);
        }
        match got.result {
            Err(e) => {
                if log::log_enabled!(log::Level::Debug) {
                    self.out.log(log::Level::Debug, format!("datagram: {e}"));
                }
            }
            // Replies follow the peer onto the link it used.
            Ok(()) => self.out.follow_link = Some(link),
        }
        // A datagram cut short by a message we cannot read (a newer
        // peer's kind, corruption) still gave what came before it: the
        // engine took (and, in FT-FW, acknowledged) those messages.
        self.digests_received(now);
        let mut inject = Vec::new();
        while let Some(a) = self.engine.pop_apply() {
            if self.external_disabled() {
                inject.push(a);
            } else {
                self.apply_external(now, a);
            }
        }
        if !inject.is_empty() {
            let mut changes = [0u32; Injection::KINDS];
            for a in &inject {
                changes[Injection::of(a) as usize] += 1;
            }
            self.out.jobs.push(Job {
                purpose: Purpose::Inject { changes },
                work: Work::Inject(inject),
            });
        }
    }

    /// Removes a peer's conntrack from the external cache, and with it
    /// its expectations (the kernel would drop them with their master).
    /// One that is not there is no failure: conntrackd's external cache
    /// drops such a DEL unseen (a NEW lost for good, either side's
    /// restart).
    pub(super) fn forget_external_ct(&mut self, k: &CtKey) {
        if self.external_ct.take(k).is_some() {
            self.external_exp.take_group(k);
        }
    }

    fn apply_external(&mut self, now: Instant, a: Apply) {
        match a {
            Apply::Ct { ct, new } => {
                let _ = self.external_ct.upsert(&ct, now, new);
            }
            Apply::CtDel(k) => self.forget_external_ct(&k),
            // conntrackd's protocol carries no expectation zone: one of
            // a master in a zone takes the zone of the master held.
            Apply::Exp { mut exp, new } => {
                exp.zone = master_zone(&self.external_ct, exp.master, exp.zone);
                let _ = self.external_exp.upsert(&exp, now, new);
            }
            Apply::ExpDel(mut k) => {
                k.zone = master_zone(&self.external_ct, k.master, k.zone);
                self.external_exp.take(&k);
            }
        }
    }

    /// Sends what the engine has when [`crate::sync::tx_timing`] says so, and
    /// tells the engine when the inputs paused.
    pub(super) fn transmit(&mut self, now: Instant) {
        let step = self.tx.step(now, self.engine.tx_state());
        if step.paused {
            self.engine.paused(now);
        }
        let (tx, resend) = self.engine.queue_lengths();
        self.tx_peak = self.tx_peak.max(tx + resend);
        if step.flush {
            loop {
                let src = Internal {
                    ct: &self.internal_ct,
                    exp: &self.internal_exp,
                    bypass: self.cache_not_kernel(),
                };
                let Some(n) =
                    self.engine.poll_transmit(now, &src, &mut self.tx_buf)
                else {
                    break;
                };
                self.out.datagrams.push(self.tx_buf[..n].to_vec());
            }
        }
        let (tx, resend) = self.engine.queue_lengths();
        let drained = tx == 0;
        // A burst (a bulk send, a resync's changes) was freed once it is
        // sent and acknowledged: a live peer's ACKs free its resend queue
        // after the send queue drained (a bulk of 100 000 left the daemon
        // 7.6 MB larger when only the send queue was waited for). Not
        // asked of it to be empty: with traffic, some are always in
        // flight.
        if drained && resend < SETTLED {
            self.out.release_memory |= self.tx_peak >= RELEASE_AFTER;
            self.tx_peak = 0;
        }
        if !step.flush {
            return;
        }
        if self.internal_disabled() && drained {
            // Bypass: everything staged has been sent.
            self.internal_ct.flush();
            self.internal_exp.flush();
        }
    }
}
