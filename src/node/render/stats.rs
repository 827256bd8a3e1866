//! The `-s` views, in conntrackd 1.4.7's layouts (reference §2.4),
//! rendered from a [`Snapshot`]; `--json` asks [`super::stats_json`] for
//! its one object instead. Pure.

use std::fmt::Write as _;
use std::time::Duration;

use super::stats_json::stats_json;
use crate::cache::CacheStats;
use crate::control::proto::{Format, StatsView};
use crate::node::snapshot::{Bypassed, Counters, Injected, Snapshot};
use crate::sync::ResendEntry;

/// One dedicated link as the statistics show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkView {
    /// `multicast`, `UDP` or `TCP`.
    pub kind: &'static str,
    pub interface: String,
    /// DOWN, NO-CARRIER or RUNNING.
    pub status: &'static str,
    pub active: bool,
    /// TCP: (server side connected, client side connected).
    pub tcp: Option<(bool, bool)>,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub pkts_sent: u64,
    pub pkts_recv: u64,
    pub err_send: u64,
    pub err_recv: u64,
    pub foreign: u64,
    /// TCP: frames waiting for the connection (`ErrorQueueLength`), and
    /// those dropped because it was full (`-s queue`: errorq).
    pub error_queue: usize,
    pub error_queue_full: u64,
    /// With a key: datagrams refused on this link (the node counts them;
    /// the loop leaves them 0).
    pub auth_failed: u64,
    pub replayed: u64,
    pub unsealed: u64,
    /// conntrackd messages refused on this link, by why (the node counts
    /// them).
    pub ctd_refused: crate::sync::CtdRefused,
    /// The protocol the peer last spoke on this link (None: not heard).
    pub peer_protocol: Option<&'static str>,
}

/// conntrackd's uptime text: `[N day[s] ]H h M min` or `M min`.
pub fn uptime(up: Duration) -> String {
    let mins = up.as_secs() / 60;
    let (days, hours, mins) = (mins / 1440, mins / 60 % 24, mins % 60);
    let mut s = String::new();
    if days > 0 {
        let plural = if days == 1 { "" } else { "s" };
        let _ = write!(s, "{days} day{plural} ");
    }
    if hours != 0 {
        let _ = write!(s, "{hours} h {mins} min");
    } else {
        let _ = write!(s, "{mins} min");
    }
    s
}

fn cache_block(s: &mut String, name: &str, len: usize, st: &CacheStats) {
    let _ = write!(
        s,
        "cache {name}:\ncurrent active connections:\t{len:12}\nconnections created:\t\t{:12}\tfailed:\t{:12}\nconnections updated:\t\t{:12}\tfailed:\t{:12}\nconnections destroyed:\t\t{:12}\tfailed:\t{:12}\n\n",
        st.add_ok, st.add_fail, st.upd_ok, st.upd_fail, st.del_ok, st.del_fail
    );
}

/// `-s cache`: conntrackd's block exactly (the memory use and the limit
/// are in `--json` only: monitoring parses this one).
pub fn cache_extended(s: &mut String, name: &str, len: usize, st: &CacheStats) {
    let _ = write!(
        s,
        "cache:{name}\tactive objects:\t\t{len:12}\n\tactive/total entries:\t\t{len:12}/{len:12}\n\tcreation OK/failed:\t\t{:12}/{:12}\n\t\tno memory available:\t{:12}\n\t\tno space left in cache:\t{:12}\n\tupdate OK/failed:\t\t{:12}/{:12}\n\t\tentry not found:\t{:12}\n\tdeletion created/failed:\t{:12}/{:12}\n\t\tentry not found:\t{:12}\n\n",
        st.add_ok,
        st.add_fail,
        0,
        st.add_fail_enospc,
        st.upd_ok,
        st.upd_fail,
        st.upd_enoent,
        st.del_ok,
        st.del_fail,
        st.del_enoent
    );
}

fn link_header(l: &LinkView) -> String {
    let kind = if l.kind == "Multicast" {
        "multicast"
    } else {
        l.kind
    };
    match l.tcp {
        Some((server, client)) => {
            let c = |b: bool| if b { "connected" } else { "disconnected" };
            format!(
                "TCP traffic (active device={}) server={} client={}:\n",
                l.interface,
                c(server),
                c(client)
            )
        }
        None => format!("{kind} traffic (active device={}):\n", l.interface),
    }
}

fn link_counters(s: &mut String, l: &LinkView) {
    let _ = write!(
        s,
        "{:20} Bytes sent {:20} Bytes recv\n{:20} Pckts sent {:20} Pckts recv\n{:20} Error send {:20} Error recv\n\n",
        l.bytes_sent,
        l.bytes_recv,
        l.pkts_sent,
        l.pkts_recv,
        l.err_send,
        l.err_recv
    );
}

/// `-s link`: the protocol the peer speaks on the link, and the
/// conntrackd messages refused there, by why.
fn peer_protocol_text(s: &mut String, l: &LinkView) {
    let r = &l.ctd_refused;
    let _ = write!(
        s,
        "peer protocol: {}\nconntrackd messages refused:\n{:20} Truncated  {:20} Bad size\n{:20} Bad version{:20} Bad type\n{:20} Bad header {:20} Malformed\n{:20} Before the switch\n\n",
        l.peer_protocol.unwrap_or("unknown (nothing read yet)"),
        r.truncated,
        r.bad_size,
        r.version,
        r.bad_type,
        r.bad_header,
        r.malformed,
        r.before_switch
    );
}

/// DisableInternalCache's block in place of the internal cache's (in
/// `-s` and `-s cache` alike, as conntrackd's bypass answers both).
fn bypass_block(s: &mut String, b: &Bypassed) {
    let _ = write!(
        s,
        "internal bypass:\nconnections new:\t\t{:12}\nconnections updated:\t\t{:12}\nconnections destroyed:\t\t{:12}\n\n",
        b.new, b.updated, b.destroyed
    );
}

/// DisableExternalCache's block in place of the external cache's.
fn inject_block(s: &mut String, i: &Injected) {
    let _ = write!(
        s,
        "external inject:\nconnections created:\t\t{:12}\tfailed:\t{:12}\nconnections updated:\t\t{:12}\tfailed:\t{:12}\nconnections destroyed:\t\t{:12}\tfailed:\t{:12}\n\n",
        i.created[0],
        i.created[1],
        i.updated[0],
        i.updated[1],
        i.destroyed[0],
        i.destroyed[1]
    );
}

fn general(s: &mut String, snap: &Snapshot, expect: bool) {
    let (ict, iexp, ect, eexp) = (
        &snap.internal_ct,
        &snap.internal_exp,
        &snap.external_ct,
        &snap.external_exp,
    );
    let c = &snap.counters;
    if snap.internal_disabled {
        bypass_block(s, if expect { &c.bypass_exp } else { &c.bypass_ct });
    } else if expect {
        cache_block(s, "internal", iexp.len, &iexp.stats);
    } else {
        cache_block(s, "internal", ict.len, &ict.stats);
    }
    if snap.external_disabled {
        inject_block(s, if expect { &c.inject_exp } else { &c.inject_ct });
    } else if expect {
        cache_block(s, "external", eexp.len, &eexp.stats);
    } else {
        cache_block(s, "external", ect.len, &ect.stats);
    }
    let _ = write!(
        s,
        "traffic processed:\n{:20} Bytes      {:20} Pckts\n\n",
        c.traffic_bytes, c.traffic_packets
    );
    if let Some(l) = snap.links.iter().find(|l| l.active) {
        s.push_str(&link_header(l));
        link_counters(s, l);
    }
    let e = &snap.sync;
    let _ = write!(
        s,
        "message tracking:\n{:20} Malformed msgs {:20} Lost msgs\n\n",
        e.malformed, e.lost
    );
}

fn network(s: &mut String, snap: &Snapshot) {
    let e = &snap.sync;
    let _ = write!(
        s,
        "network statistics:\n\trecv:\n\t\tMalformed messages:\t{:20}\n\t\tWrong protocol version:\t{:20}\n\t\tMalformed header:\t{:20}\n\t\tMalformed payload:\t{:20}\n\t\tBad message type:\t{:20}\n\t\tTruncated message:\t{:20}\n\t\tBad message size:\t{:20}\n\tsend:\n\t\tMalformed messages:\t{:20}\n\nsequence tracking statistics:\n\trecv:\n\t\tPackets lost:\t\t{:20}\n\t\tPackets before:\t\t{:20}\n\n",
        e.malformed,
        e.bad_version,
        e.bad_header,
        // Datagrams a key refused count here (`--json`: auth_failed).
        e.malformed - e.bad_version - e.bad_header,
        0,
        0,
        0,
        e.too_big,
        e.lost,
        e.before
    );
    if let Some(l) = snap.links.iter().find(|l| l.active) {
        s.push_str(&link_header(l));
        link_counters(s, l);
    }
}

/// `-s runtime` from its inputs (also used by a daemon without `Sync`).
pub fn runtime_text(
    s: &mut String,
    up: Duration,
    c: &Counters,
    netlink_buffer: usize,
) {
    let _ = write!(s, "daemon uptime: {}\n\n", uptime(up));
    let _ = write!(
        s,
        "netlink stats:\n\tevents received:\t{:20}\n\tevents filtered:\t{:20}\n\tevents unknown type:\t\t{:12}\n\tcatch event failed:\t\t{:12}\n\tdump unknown type:\t\t{:12}\n\tnetlink overrun:\t\t{:12}\n\tflush kernel table:\t\t{:12}\n\tresync with kernel table:\t{:12}\n\tcurrent buffer size (in bytes):\t{:12}\n\n",
        c.events_received,
        c.events_filtered,
        c.events_unknown,
        c.catch_event_failed,
        0,
        c.overruns,
        c.kernel_flushes,
        c.kernel_resyncs,
        netlink_buffer
    );
    let _ = write!(
        s,
        "runtime stats:\n\tchild process failed:\t\t{:12}\n\t\tchild process segfault:\t{:12}\n\t\tchild process termsig:\t{:12}\n\tselect failed:\t\t\t{:12}\n\twait failed:\t\t\t{:12}\n\tlocal read failed:\t\t{:12}\n\tlocal unknown request:\t\t{:12}\n\n",
        0, 0, 0, 0, 0, c.local_read_failed, c.local_unknown_request
    );
}

/// One `-s rsqueue` line, as conntrackd prints it (flags in decimal).
fn rsqueue_line(s: &mut String, e: ResendEntry) {
    let _ = match e {
        ResendEntry::Control(seq, flags) => {
            writeln!(s, "control -> seq:{seq} flags:{flags}")
        }
        ResendEntry::Object(seq) => writeln!(s, "object -> seq:{seq}"),
    };
}

fn queues(s: &mut String, snap: &Snapshot) {
    let (tx, rs) = (snap.tx_queue, snap.resend_queue);
    let e = &snap.sync;
    let _ = write!(s, "allocated queue nodes:\t\t{:12}\n\n", tx + rs);
    let limit = snap.tx_queue_limit;
    let _ = write!(
        s,
        "queue txqueue:\ncurrent elements:\t\t{tx:12}\nmaximum elements:\t\t{limit:12}\nnot enough space errors:\t{:12}\n\n",
        e.tx_queue_full
    );
    // conntrackd's errorq: what TCP links hold while they (re)connect.
    let (errq, errq_full) = snap.links.iter().fold((0, 0), |(n, f), l| {
        (n + l.error_queue, f + l.error_queue_full)
    });
    let max = snap.error_queue_limit;
    let _ = write!(
        s,
        "queue errorq:\ncurrent elements:\t\t{errq:12}\nmaximum elements:\t\t{max:12}\nnot enough space errors:\t{errq_full:12}\n\n"
    );
    if snap.mode == crate::config::Mode::FtFw {
        let max = snap.resend_queue_limit;
        let _ = write!(
            s,
            "queue rsqueue:\ncurrent elements:\t\t{rs:12}\nmaximum elements:\t\t{max:12}\nnot enough space errors:\t{:12}\n\n",
            e.resend_queue_dropped
        );
    }
}

/// Any `-s` view.
pub fn stats(snap: &Snapshot, view: StatsView, format: Format) -> String {
    if format == Format::Json {
        return stats_json(snap);
    }
    let mut s = String::new();
    match view {
        StatsView::General => general(&mut s, snap, false),
        StatsView::Expect => {
            if snap.expectations {
                general(&mut s, snap, true);
            }
        }
        StatsView::Network => network(&mut s, snap),
        StatsView::Cache => {
            let (i, e) = (&snap.internal_ct, &snap.external_ct);
            if snap.internal_disabled {
                bypass_block(&mut s, &snap.counters.bypass_ct);
            } else {
                cache_extended(&mut s, "internal", i.len, &i.stats);
            }
            if snap.external_disabled {
                inject_block(&mut s, &snap.counters.inject_ct);
            } else {
                cache_extended(&mut s, "external", e.len, &e.stats);
            }
        }
        StatsView::Runtime => runtime_text(
            &mut s,
            snap.uptime,
            &snap.counters,
            snap.netlink_buffer,
        ),
        StatsView::Link => {
            for l in &snap.links {
                let kind = if l.kind == "Multicast" {
                    "multicast"
                } else {
                    l.kind
                };
                let role = if l.active { "ACTIVE" } else { "BACKUP" };
                let _ = writeln!(
                    s,
                    "{kind} traffic device={} status={} role={role}:",
                    l.interface, l.status
                );
                link_counters(&mut s, l);
                // ctsyncd's own: what the link refused, and why.
                let _ = write!(
                    s,
                    "{:20} Foreign    {:20} Auth failed\n{:20} Replayed   {:20} Unsealed\n\n",
                    l.foreign, l.auth_failed, l.replayed, l.unsealed
                );
                peer_protocol_text(&mut s, l);
            }
            let e = &snap.sync;
            let _ = write!(
                s,
                "refused by the sync engine:\n{:20} Out of window {:17} Unproven session\n{:20} Peer restarts {:17} Challenges sent\n{:20} Challenges held {:15} Answers held\n\n",
                e.out_of_window,
                e.unconfirmed,
                e.peer_restarts,
                e.challenges_sent,
                e.challenges_held,
                e.answers_held
            );
            // ctsyncd's own too: kernel jobs (commits, dumps, flushes,
            // injections) that failed as a whole or that the worker's
            // full queue refused.
            let _ = write!(
                s,
                "kernel jobs:\n{:20} Failed or refused\n\n",
                snap.counters.jobs_failed
            );
        }
        StatsView::RsQueue => {
            if snap.mode == crate::config::Mode::FtFw {
                let rs = snap.resend_queue;
                let _ = writeln!(s, "resent queue (len={rs})");
                for e in &snap.resend_entries {
                    rsqueue_line(&mut s, *e);
                }
            }
        }
        // -s ready is the node's own answer (`control`).
        StatsView::Process | StatsView::Ready => {}
        StatsView::Queue => queues(&mut s, snap),
    }
    s
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sync::Seq;

    #[test]
    fn rsqueue_lines_carry_the_control_kinds_flags() {
        let mut s = String::new();
        for e in [
            ResendEntry::Control(Seq(1795768562), 0x08),
            ResendEntry::Control(Seq(7), 0x04),
            ResendEntry::Control(Seq(8), 0x02),
            ResendEntry::Object(Seq(9)),
        ] {
            rsqueue_line(&mut s, e);
        }
        assert_eq!(
            s,
            "control -> seq:1795768562 flags:8\ncontrol -> seq:7 flags:4\n\
             control -> seq:8 flags:2\nobject -> seq:9\n"
        );
    }
}
