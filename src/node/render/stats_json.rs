//! The one JSON object `-s --json` prints, whatever the view: every
//! counter the text views show, under the names README documents, from a
//! [`Snapshot`]. Pure.

use std::fmt::Write as _;
use std::time::Duration;

use super::json::json_str;
use crate::node::snapshot::{
    CacheView, ControlView, Counters, Injected, Snapshot,
};
use crate::sync::RoundTrip;

fn json_cache(s: &mut String, name: &str, c: &CacheView) {
    let st = &c.stats;
    let _ = write!(
        s,
        "\"{name}\":{{\"active\":{},\"limit\":{},\"bytes\":{},\"created\":{},\"create_failed\":{},\"full\":{},\"updated\":{},\"destroyed\":{},\"destroy_not_found\":{}}}",
        c.len,
        c.limit,
        c.bytes,
        st.add_ok,
        st.add_fail,
        st.add_fail_enospc,
        st.upd_ok,
        st.del_ok,
        st.del_enoent
    );
}

fn json_sync(s: &mut String, snap: &Snapshot) {
    let (e, tx, rs) = (&snap.sync, snap.tx_queue, snap.resend_queue);
    let _ = write!(
        s,
        "\"sync\":{{\"datagrams_sent\":{},\"datagrams_recv\":{},\"msgs_sent\":{},\"msgs_recv\":{},\"malformed\":{},\"bad_version\":{},\"auth_failed\":{},\"replayed\":{},\"unsealed\":{},\"lost\":{},\"before\":{},\"retransmitted\":{},\"resend_queue_dropped\":{},\"tx_queue_full\":{},\"background_dropped\":{},\"peer_restarts\":{},\"out_of_window\":{},\"unconfirmed\":{},\"challenges_sent\":{},\"challenges_answered\":{},\"challenges_held\":{},\"answers_held\":{},\"probes_sent\":{},\"tail_resent\":{},\"tail_queries\":{},\"given_up_silent\":{},\"bulks_on_return\":{},\"synced_sent\":{},\"resyncs_complete\":{},\"tx_queue\":{tx},\"resend_queue\":{rs},",
        e.datagrams_sent,
        e.datagrams_recv,
        e.msgs_sent,
        e.msgs_recv,
        e.malformed,
        e.bad_version,
        e.auth_failed,
        e.replayed,
        e.unsealed,
        e.lost,
        e.before,
        e.retransmitted,
        e.resend_queue_dropped,
        e.tx_queue_full,
        e.background_dropped,
        e.peer_restarts,
        e.out_of_window,
        e.unconfirmed,
        e.challenges_sent,
        e.challenges_answered,
        e.challenges_held,
        e.answers_held,
        e.probes_sent,
        e.tail_resent,
        e.tail_queries,
        e.given_up_silent,
        e.bulks_on_return,
        e.synced_sent,
        e.resyncs_complete
    );
    json_round_trip(s, snap.round_trip);
    s.push('}');
}

/// `"srtt_us":…,"rto_us":…`, null before the first measure.
fn json_round_trip(s: &mut String, r: Option<RoundTrip>) {
    let us = |d: Duration| d.as_micros();
    let _ = match r {
        Some(r) => write!(
            s,
            "\"srtt_us\":{},\"rto_us\":{}",
            us(r.smoothed),
            us(r.timeout)
        ),
        None => write!(s, "\"srtt_us\":null,\"rto_us\":null"),
    };
}

fn json_counters(
    s: &mut String,
    c: &Counters,
    uptime: u64,
    buffer: usize,
    log_write_errors: u64,
) {
    let _ = write!(
        s,
        "\"runtime\":{{\"uptime_seconds\":{uptime},\"events_received\":{},\"events_filtered\":{},\"netlink_overruns\":{},\"kernel_flushes\":{},\"kernel_resyncs\":{},\"netlink_buffer\":{buffer},\"local_read_failed\":{},\"local_unknown_request\":{},\"commit_ok\":{},\"commit_failed\":{},\"inject_ok\":{},\"inject_failed\":{},\"traffic_bytes\":{},\"traffic_packets\":{},\"activity_scans\":{},\"activity_resent\":{},\"jobs_failed\":{},\"log_write_errors\":{log_write_errors}}}",
        c.events_received,
        c.events_filtered,
        c.overruns,
        c.kernel_flushes,
        c.kernel_resyncs,
        c.local_read_failed,
        c.local_unknown_request,
        c.commit_ok,
        c.commit_fail,
        c.inject_ok,
        c.inject_fail,
        c.traffic_bytes,
        c.traffic_packets,
        c.activity_scans,
        c.activity_resent,
        c.jobs_failed
    );
}

/// DisableExternalCache's `external inject:` counters, conntracks and
/// expectations apart, each kind done and failed.
fn json_inject(s: &mut String, ct: &Injected, exp: &Injected) {
    s.push_str("\"inject\":{");
    for (i, (name, c)) in [("ct", ct), ("expect", exp)].into_iter().enumerate()
    {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "\"{name}\":{{\"created\":{},\"create_failed\":{},\"updated\":{},\"update_failed\":{},\"destroyed\":{},\"destroy_failed\":{}}}",
            c.created[0],
            c.created[1],
            c.updated[0],
            c.updated[1],
            c.destroyed[0],
            c.destroyed[1]
        );
    }
    s.push_str("},");
}

/// The control socket's replies (`control`), the same for a flow logger.
pub fn json_control(s: &mut String, c: &ControlView) {
    let _ = write!(
        s,
        "\"control\":{{\"pending_bytes\":{},\"budget_bytes\":{},\"replies_refused\":{},\"clients_dropped\":{}}}",
        c.pending_bytes, c.budget_bytes, c.replies_refused, c.clients_dropped
    );
}

/// Every statistic as one JSON object (the same for every `-s` view).
pub fn stats_json(snap: &Snapshot) -> String {
    let mut s = String::from("{\"caches\":{");
    json_cache(&mut s, "internal", &snap.internal_ct);
    s.push(',');
    json_cache(&mut s, "external", &snap.external_ct);
    s.push(',');
    json_cache(&mut s, "internal_expect", &snap.internal_exp);
    s.push(',');
    json_cache(&mut s, "external_expect", &snap.external_exp);
    s.push_str("},");
    json_sync(&mut s, snap);
    s.push_str(",\"links\":[");
    for (i, l) in snap.links.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{{\"kind\":");
        json_str(&mut s, l.kind);
        s.push_str(",\"interface\":");
        json_str(&mut s, &l.interface);
        let _ = write!(
            s,
            ",\"status\":\"{}\",\"active\":{},\"bytes_sent\":{},\"bytes_recv\":{},\"pkts_sent\":{},\"pkts_recv\":{},\"err_send\":{},\"err_recv\":{},\"foreign\":{},\"auth_failed\":{},\"replayed\":{},\"unsealed\":{}",
            l.status,
            l.active,
            l.bytes_sent,
            l.bytes_recv,
            l.pkts_sent,
            l.pkts_recv,
            l.err_send,
            l.err_recv,
            l.foreign,
            l.auth_failed,
            l.replayed,
            l.unsealed
        );
        s.push_str(",\"peer_protocol\":");
        match l.peer_protocol {
            Some(p) => json_str(&mut s, p),
            None => s.push_str("null"),
        }
        let r = &l.ctd_refused;
        let _ = write!(
            s,
            ",\"conntrackd_refused\":{{\"truncated\":{},\"bad_size\":{},\"bad_version\":{},\"bad_type\":{},\"bad_header\":{},\"malformed\":{},\"before_switch\":{}}}}}",
            r.truncated,
            r.bad_size,
            r.version,
            r.bad_type,
            r.bad_header,
            r.malformed,
            r.before_switch
        );
    }
    s.push_str("],");
    if let Some(a) = &snap.anti_entropy {
        let _ = write!(
            s,
            "\"anti_entropy\":{{\"rounds\":{},\"buckets_compared\":{},\"buckets_differing\":{},\"leaves_repaired\":{},\"entries_resent\":{},\"entries_pruned\":{},\"cut_short\":{},\"ignored\":{}}},",
            a.rounds,
            a.buckets_compared,
            a.buckets_differing,
            a.leaves_repaired,
            a.entries_resent,
            a.entries_pruned,
            a.cut_short,
            a.ignored
        );
    }
    if snap.external_disabled {
        json_inject(
            &mut s,
            &snap.counters.inject_ct,
            &snap.counters.inject_exp,
        );
    }
    json_control(&mut s, &snap.control);
    s.push(',');
    json_counters(
        &mut s,
        &snap.counters,
        snap.uptime.as_secs(),
        snap.netlink_buffer,
        snap.control.log_write_errors,
    );
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_round_trip_is_in_microseconds_or_null() {
        let mut s = String::new();
        json_round_trip(&mut s, None);
        assert_eq!(s, "\"srtt_us\":null,\"rto_us\":null");
        s.clear();
        let r = RoundTrip {
            smoothed: Duration::from_micros(180),
            timeout: Duration::from_micros(930),
        };
        json_round_trip(&mut s, Some(r));
        assert_eq!(s, "\"srtt_us\":180,\"rto_us\":930");
    }
}
