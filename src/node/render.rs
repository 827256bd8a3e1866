//! Text, XML and JSON renderings of the caches and statistics.
//!
//! Text follows conntrackd 1.4.7 exactly (reference §2.4: libnetfilter
//! conntrack's plain format, `[active since Ns]`, the `-s` layouts) so that
//! scripts and monitoring that parse conntrackd's output keep working.
//! JSON (`--json`) is ctsyncd's own stable schema, documented in README.
//! Pure.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use super::{Counters, Node};
use crate::cache::{Cache, CacheStats, Stored};
use crate::control::proto::{Format, StatsView};
use crate::model::{
    Conntrack, Expect, L4, ProtoInfo, Tuple, expect_flag, status,
};
use crate::sync::Stats as SyncStats;
use crate::time::Instant;

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
}

/// Runtime facts the daemon owns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeView {
    pub netlink_buffer: usize,
}

fn proto_name(p: u8) -> &'static str {
    match p {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        47 => "gre",
        58 => "icmpv6",
        132 => "sctp",
        136 => "udplite",
        _ => "unknown",
    }
}

fn state_name(p: &ProtoInfo) -> Option<&'static str> {
    const TCP: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];
    const SCTP: [&str; 10] = [
        "NONE",
        "CLOSED",
        "COOKIE_WAIT",
        "COOKIE_ECHOED",
        "ESTABLISHED",
        "SHUTDOWN_SENT",
        "SHUTDOWN_RECD",
        "SHUTDOWN_ACK_SENT",
        "HEARTBEAT_SENT",
        "HEARTBEAT_ACKED",
    ];
    const DCCP: [&str; 10] = [
        "NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ",
        "CLOSING", "TIMEWAIT", "IGNORE", "INVALID",
    ];
    let (names, s) = match *p {
        ProtoInfo::Tcp { state, .. } => (&TCP, state),
        ProtoInfo::Sctp { state, .. } => (&SCTP, state),
        ProtoInfo::Dccp { state, .. } => (&DCCP, state),
        ProtoInfo::None => return None,
    };
    Some(names.get(usize::from(s)).copied().unwrap_or("UNKNOWN"))
}

fn tuple_text(out: &mut String, t: &Tuple) {
    let _ = write!(out, "src={} dst={} ", t.src, t.dst);
    match t.l4 {
        L4::Ports { src, dst } => {
            let _ = write!(out, "sport={src} dport={dst} ");
        }
        L4::Icmp { kind, code, id } => {
            let _ = write!(out, "type={kind} code={code} id={id} ");
        }
        L4::None => {}
    }
}

/// One conntrack in libnetfilter_conntrack's plain format (no timeout,
/// as conntrackd prints cached entries). External entries have no reply
/// tuple in conntrackd, so none is printed for them.
pub fn ct_line(ct: &Conntrack, external: bool) -> String {
    let mut s = String::with_capacity(200);
    let _ = write!(s, "{:<8} {} ", proto_name(ct.orig.proto), ct.orig.proto);
    if let Some(name) = state_name(&ct.proto_info) {
        s.push_str(name);
        s.push(' ');
    }
    tuple_text(&mut s, &ct.orig);
    if ct.status != 0 && ct.status & status::SEEN_REPLY == 0 {
        s.push_str("[UNREPLIED] ");
    }
    if !external {
        tuple_text(&mut s, &ct.reply_tuple());
    }
    if ct.status & status::ASSURED != 0 {
        s.push_str("[ASSURED] ");
    }
    if ct.mark != 0 {
        let _ = write!(s, "mark={} ", ct.mark);
    }
    if ct.secmark != 0 {
        let _ = write!(s, "secmark={} ", ct.secmark);
    }
    if ct.zone != 0 {
        let _ = write!(s, "zone={} ", ct.zone);
    }
    if let Some(h) = &ct.helper {
        let _ = write!(s, "helper={h} ");
    }
    s.truncate(s.trim_end().len());
    s
}

/// One expectation in libnetfilter_conntrack's plain format.
pub fn exp_line(x: &Expect) -> String {
    let mut s = String::with_capacity(240);
    let ports = |s: &mut String, t: &Tuple| match t.l4 {
        L4::Ports { src, dst } => {
            let _ = write!(s, "sport={src} dport={dst} ");
        }
        L4::Icmp { kind, code, id } => {
            let _ = write!(s, "type={kind} code={code} id={id} ");
        }
        L4::None => {}
    };
    let _ = write!(
        s,
        "proto={} src={} dst={} ",
        x.tuple.proto, x.tuple.src, x.tuple.dst
    );
    ports(&mut s, &x.tuple);
    let _ = write!(s, "mask-src={} mask-dst={} ", x.mask.src, x.mask.dst);
    ports(&mut s, &x.mask);
    let _ = write!(
        s,
        "master-src={} master-dst={} ",
        x.master.src, x.master.dst
    );
    ports(&mut s, &x.master);
    if x.zone != 0 {
        let _ = write!(s, "zone={} ", x.zone);
    }
    let mut flags = Vec::new();
    for (bit, name) in [
        (expect_flag::PERMANENT, "PERMANENT"),
        (expect_flag::INACTIVE, "INACTIVE"),
        (expect_flag::USERSPACE, "USERSPACE"),
    ] {
        if x.flags & bit != 0 {
            flags.push(name);
        }
    }
    if !flags.is_empty() {
        let _ = write!(s, "{} ", flags.join(","));
    }
    let _ = write!(s, "class={} ", x.class);
    if let Some(h) = &x.helper {
        let _ = write!(s, "helper={h} ");
    }
    s.truncate(s.trim_end().len());
    s
}

fn l3(ip: &IpAddr) -> (u8, &'static str) {
    if ip.is_ipv4() {
        (2, "ipv4")
    } else {
        (10, "ipv6")
    }
}

fn xml_tuple(s: &mut String, dir: &str, t: Option<&Tuple>) {
    let _ = write!(s, "<meta direction=\"{dir}\">");
    match t {
        Some(t) => {
            let (n, name) = l3(&t.src);
            let _ = write!(s, "<layer3 protonum=\"{n}\" protoname=\"{name}\"><src>{}</src><dst>{}</dst></layer3>", t.src, t.dst);
            let _ = write!(s, "<layer4 protonum=\"{}\" protoname=\"{}\">", t.proto, proto_name(t.proto));
            if let L4::Ports { src, dst } = t.l4 {
                let _ = write!(s, "<sport>{src}</sport><dport>{dst}</dport>");
            }
            s.push_str("</layer4>");
        }
        None => s.push_str("<layer3 protonum=\"0\" protoname=\"unknown\"><src></src><dst></dst></layer3><layer4 protonum=\"0\" protoname=\"unknown\"></layer4>"),
    }
    s.push_str("</meta>");
}

/// One conntrack in conntrackd's `-x` XML.
pub fn ct_xml(ct: &Conntrack, external: bool) -> String {
    let mut s = String::from("<flow>");
    xml_tuple(&mut s, "original", Some(&ct.orig));
    let reply = ct.reply_tuple();
    xml_tuple(&mut s, "reply", (!external).then_some(&reply));
    s.push_str("<meta direction=\"independent\">");
    if let Some(st) = state_name(&ct.proto_info) {
        let _ = write!(s, "<state>{st}</state>");
    }
    if ct.mark != 0 {
        let _ = write!(s, "<mark>{}</mark>", ct.mark);
    }
    if ct.zone != 0 {
        let _ = write!(s, "<zone>{}</zone>", ct.zone);
    }
    if ct.status & status::ASSURED != 0 {
        s.push_str("<assured/>");
    }
    if ct.status != 0 && ct.status & status::SEEN_REPLY == 0 {
        s.push_str("<unreplied/>");
    }
    s.push_str("</meta>");
    if let Some(h) = &ct.helper {
        let _ = write!(s, "<helper>{h}</helper>");
    }
    s.push_str("</flow>");
    s
}

/// One expectation in conntrackd's `-x` XML.
pub fn exp_xml(x: &Expect) -> String {
    let (n, name) = l3(&x.tuple.src);
    let mut s = format!("<flow><layer3 protonum=\"{n}\" protoname=\"{name}\">");
    let _ = write!(
        s,
        "<expected><src>{}</src><dst>{}</dst></expected>",
        x.tuple.src, x.tuple.dst
    );
    let _ = write!(
        s,
        "<mask><src>{}</src><dst>{}</dst></mask>",
        x.mask.src, x.mask.dst
    );
    let _ = write!(
        s,
        "<master><src>{}</src><dst>{}</dst></master></layer3>",
        x.master.src, x.master.dst
    );
    let _ = write!(
        s,
        "<layer4 protonum=\"{}\" protoname=\"{}\">",
        x.tuple.proto,
        proto_name(x.tuple.proto)
    );
    for (tag, t) in [
        ("expected", &x.tuple),
        ("mask", &x.mask),
        ("master", &x.master),
    ] {
        if let L4::Ports { src, dst } = t.l4 {
            let _ = write!(
                s,
                "<{tag}><sport>{src}</sport><dport>{dst}</dport></{tag}>"
            );
        }
    }
    s.push_str("</layer4><meta>");
    if let Some(h) = &x.helper {
        let _ = write!(s, "<helper-name>{h}</helper-name>");
    }
    let _ = write!(s, "<class>{}</class>", x.class);
    if x.zone != 0 {
        let _ = write!(s, "<zone>{}</zone>", x.zone);
    }
    s.push_str("</meta></flow>");
    s
}

// ===== JSON =====

fn json_str(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

fn json_tuple(s: &mut String, t: &Tuple) {
    let _ = write!(
        s,
        "{{\"src\":\"{}\",\"dst\":\"{}\",\"proto\":{}",
        t.src, t.dst, t.proto
    );
    match t.l4 {
        L4::Ports { src, dst } => {
            let _ = write!(s, ",\"sport\":{src},\"dport\":{dst}");
        }
        L4::Icmp { kind, code, id } => {
            let _ = write!(s, ",\"type\":{kind},\"code\":{code},\"id\":{id}");
        }
        L4::None => {}
    }
    s.push('}');
}

fn json_opt_str(s: &mut String, v: Option<&str>) {
    match v {
        Some(v) => json_str(s, v),
        None => s.push_str("null"),
    }
}

/// One conntrack as a JSON object (schema in README).
pub fn ct_json(ct: &Conntrack, active_since: u64) -> String {
    let mut s = String::from("{\"orig\":");
    json_tuple(&mut s, &ct.orig);
    s.push_str(",\"reply\":");
    json_tuple(&mut s, &ct.reply_tuple());
    let _ = write!(
        s,
        ",\"zone\":{},\"status\":{},\"state\":",
        ct.zone, ct.status
    );
    json_opt_str(&mut s, state_name(&ct.proto_info));
    let _ = write!(s, ",\"mark\":{},\"helper\":", ct.mark);
    json_opt_str(&mut s, ct.helper.as_deref());
    s.push_str(",\"master\":");
    match &ct.master {
        Some(m) => json_tuple(&mut s, m),
        None => s.push_str("null"),
    }
    let _ = write!(s, ",\"active_since\":{active_since}}}");
    s
}

/// One expectation as a JSON object (schema in README).
pub fn exp_json(x: &Expect, active_since: u64) -> String {
    let mut s = String::from("{\"master\":");
    json_tuple(&mut s, &x.master);
    s.push_str(",\"tuple\":");
    json_tuple(&mut s, &x.tuple);
    s.push_str(",\"mask\":");
    json_tuple(&mut s, &x.mask);
    let _ = write!(
        s,
        ",\"zone\":{},\"flags\":{},\"class\":{},\"helper\":",
        x.zone, x.flags, x.class
    );
    json_opt_str(&mut s, x.helper.as_deref());
    let _ = write!(s, ",\"active_since\":{active_since}}}");
    s
}

// ===== dumps =====

/// How one cached value renders in each format.
struct Renderers<'a, V> {
    plain: &'a dyn Fn(&V) -> String,
    xml: &'a dyn Fn(&V) -> String,
    json: &'a dyn Fn(&V, u64) -> String,
}

/// A whole cache in one format: plain lines with `[expires in]` (ALARM)
/// and `[active since]`, one XML element per line, or a JSON array.
fn dump<V: Stored>(
    c: &Cache<V>,
    now: Instant,
    f: Format,
    expiry: Option<Duration>,
    r: Renderers<'_, V>,
) -> String {
    let mut out = String::new();
    if f == Format::Json {
        out.push('[');
    }
    for (i, e) in c.iter().enumerate() {
        let since = now.since(e.since).as_secs();
        match f {
            Format::Plain => {
                out.push_str(&(r.plain)(&e.value));
                if let Some(life) = expiry {
                    let left =
                        life.saturating_sub(now.since(e.updated)).as_secs();
                    let _ = write!(out, " [expires in {left}s]");
                }
                let _ = writeln!(out, " [active since {since}s]");
            }
            Format::Xml => {
                out.push_str(&(r.xml)(&e.value));
                out.push('\n');
            }
            Format::Json => {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&(r.json)(&e.value, since));
            }
        }
    }
    if f == Format::Json {
        out.push_str("]\n");
    }
    out
}

/// `-i` / `-e` for conntracks.
pub fn ct_dump(
    c: &Cache<Conntrack>,
    now: Instant,
    f: Format,
    external: bool,
    expiry: Option<Duration>,
) -> String {
    let plain = |ct: &Conntrack| ct_line(ct, external);
    let xml = |ct: &Conntrack| ct_xml(ct, external);
    dump(
        c,
        now,
        f,
        expiry,
        Renderers {
            plain: &plain,
            xml: &xml,
            json: &ct_json,
        },
    )
}

/// `-i expect` / `-e expect`.
pub fn exp_dump(
    c: &Cache<Expect>,
    now: Instant,
    f: Format,
    expiry: Option<Duration>,
) -> String {
    dump(
        c,
        now,
        f,
        expiry,
        Renderers {
            plain: &exp_line,
            xml: &exp_xml,
            json: &exp_json,
        },
    )
}

// ===== statistics =====

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

fn cache_extended(
    s: &mut String,
    name: &str,
    len: usize,
    bytes: usize,
    limit: usize,
    st: &CacheStats,
) {
    let _ = write!(
        s,
        "cache:{name}\tactive objects:\t\t{len:12}\n\tactive/total entries:\t\t{len:12}/{len:12}\n\tcreation OK/failed:\t\t{:12}/{:12}\n\t\tno memory available:\t{:12}\n\t\tno space left in cache:\t{:12}\n\tupdate OK/failed:\t\t{:12}/{:12}\n\t\tentry not found:\t{:12}\n\tdeletion created/failed:\t{:12}/{:12}\n\t\tentry not found:\t{:12}\n\tmemory (bytes)/limit (entries):\t{bytes:12}/{limit:12}\n\n",
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

fn general(s: &mut String, node: &Node, expect: bool) {
    let (ict, iexp, ect, eexp) = (
        &node.internal_ct,
        &node.internal_exp,
        &node.external_ct,
        &node.external_exp,
    );
    let c = &node.counters;
    if node.internal_disabled() {
        let st = if expect { &iexp.stats } else { &ict.stats };
        let _ = write!(
            s,
            "internal bypass:\nconnections new:\t\t{:12}\nconnections updated:\t\t{:12}\nconnections destroyed:\t\t{:12}\n\n",
            st.add_ok, st.upd_ok, st.del_ok
        );
    } else if expect {
        cache_block(s, "internal", iexp.len(), &iexp.stats);
    } else {
        cache_block(s, "internal", ict.len(), &ict.stats);
    }
    if node.external_disabled() {
        let _ = write!(
            s,
            "external inject:\nconnections created:\t\t{:12}\tfailed:\t{:12}\nconnections updated:\t\t{:12}\tfailed:\t{:12}\nconnections destroyed:\t\t{:12}\tfailed:\t{:12}\n\n",
            c.inject_ok, c.inject_fail, 0, 0, 0, 0
        );
    } else if expect {
        cache_block(s, "external", eexp.len(), &eexp.stats);
    } else {
        cache_block(s, "external", ect.len(), &ect.stats);
    }
    let _ = write!(
        s,
        "traffic processed:\n{:20} Bytes      {:20} Pckts\n\n",
        c.traffic_bytes, c.traffic_packets
    );
    if let Some(l) = node.links.iter().find(|l| l.active) {
        s.push_str(&link_header(l));
        link_counters(s, l);
    }
    let e = node.engine.stats();
    let _ = write!(
        s,
        "message tracking:\n{:20} Malformed msgs {:20} Lost msgs\n\n",
        e.malformed, e.lost
    );
}

fn network(s: &mut String, node: &Node) {
    let e = node.engine.stats();
    let _ = write!(
        s,
        "network statistics:\n\trecv:\n\t\tMalformed messages:\t{:20}\n\t\tWrong protocol version:\t{:20}\n\t\tMalformed header:\t{:20}\n\t\tMalformed payload:\t{:20}\n\t\tBad message type:\t{:20}\n\t\tTruncated message:\t{:20}\n\t\tBad message size:\t{:20}\n\t\tAuthentication failed:\t{:20}\n\tsend:\n\t\tMalformed messages:\t{:20}\n\nsequence tracking statistics:\n\trecv:\n\t\tPackets lost:\t\t{:20}\n\t\tPackets before:\t\t{:20}\n\n",
        e.malformed,
        e.bad_version,
        e.bad_header,
        e.malformed - e.bad_version - e.bad_header - e.auth_failed,
        0,
        0,
        0,
        e.auth_failed,
        e.too_big,
        e.lost,
        e.before
    );
    if let Some(l) = node.links.iter().find(|l| l.active) {
        s.push_str(&link_header(l));
        link_counters(s, l);
    }
}

/// `-s runtime` (with the daemon's own counters).
pub fn runtime(s: &mut String, node: &Node, now: Instant) {
    runtime_text(
        s,
        now.since(node.started),
        &node.counters,
        node.runtime.netlink_buffer,
    );
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

fn queues(s: &mut String, node: &Node) {
    let (tx, rs) = node.engine.queue_lengths();
    let e = node.engine.stats();
    let _ = write!(s, "allocated queue nodes:\t\t{:12}\n\n", tx + rs);
    let limit = node.cfg.general.hash_limit as usize * 2;
    let _ = write!(
        s,
        "queue txqueue:\ncurrent elements:\t\t{tx:12}\nmaximum elements:\t\t{limit:12}\nnot enough space errors:\t{:12}\n\n",
        e.tx_queue_full
    );
    if node.engine.mode() == crate::config::Mode::FtFw {
        let max = node.cfg.sync.as_ref().map_or(0, |s| s.resend_queue_size);
        let _ = write!(
            s,
            "queue rsqueue:\ncurrent elements:\t\t{rs:12}\nmaximum elements:\t\t{max:12}\nnot enough space errors:\t{:12}\n\n",
            e.resend_queue_dropped
        );
    }
}

fn json_cache<V: Stored>(s: &mut String, name: &str, c: &Cache<V>) {
    let st = &c.stats;
    let _ = write!(
        s,
        "\"{name}\":{{\"active\":{},\"limit\":{},\"bytes\":{},\"created\":{},\"create_failed\":{},\"full\":{},\"updated\":{},\"destroyed\":{},\"destroy_not_found\":{}}}",
        c.len(),
        c.limit(),
        c.bytes(),
        st.add_ok,
        st.add_fail,
        st.add_fail_enospc,
        st.upd_ok,
        st.del_ok,
        st.del_enoent
    );
}

fn json_sync(s: &mut String, e: &SyncStats, tx: usize, rs: usize) {
    let _ = write!(
        s,
        "\"sync\":{{\"datagrams_sent\":{},\"datagrams_recv\":{},\"msgs_sent\":{},\"msgs_recv\":{},\"malformed\":{},\"bad_version\":{},\"auth_failed\":{},\"lost\":{},\"before\":{},\"retransmitted\":{},\"resend_queue_dropped\":{},\"tx_queue_full\":{},\"peer_restarts\":{},\"tx_queue\":{tx},\"resend_queue\":{rs}}}",
        e.datagrams_sent,
        e.datagrams_recv,
        e.msgs_sent,
        e.msgs_recv,
        e.malformed,
        e.bad_version,
        e.auth_failed,
        e.lost,
        e.before,
        e.retransmitted,
        e.resend_queue_dropped,
        e.tx_queue_full,
        e.peer_restarts
    );
}

fn json_counters(s: &mut String, c: &Counters, uptime: u64, buffer: usize) {
    let _ = write!(
        s,
        "\"runtime\":{{\"uptime_seconds\":{uptime},\"events_received\":{},\"events_filtered\":{},\"netlink_overruns\":{},\"kernel_flushes\":{},\"kernel_resyncs\":{},\"netlink_buffer\":{buffer},\"local_read_failed\":{},\"local_unknown_request\":{},\"commit_ok\":{},\"commit_failed\":{},\"inject_ok\":{},\"inject_failed\":{},\"traffic_bytes\":{},\"traffic_packets\":{}}}",
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
        c.traffic_packets
    );
}

/// Every statistic as one JSON object (the same for every `-s` view).
pub fn stats_json(node: &Node, now: Instant) -> String {
    let mut s = String::from("{\"caches\":{");
    json_cache(&mut s, "internal", &node.internal_ct);
    s.push(',');
    json_cache(&mut s, "external", &node.external_ct);
    s.push(',');
    json_cache(&mut s, "internal_expect", &node.internal_exp);
    s.push(',');
    json_cache(&mut s, "external_expect", &node.external_exp);
    s.push_str("},");
    let (tx, rs) = node.engine.queue_lengths();
    json_sync(&mut s, node.engine.stats(), tx, rs);
    s.push_str(",\"links\":[");
    for (i, l) in node.links.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{{\"kind\":");
        json_str(&mut s, l.kind);
        s.push_str(",\"interface\":");
        json_str(&mut s, &l.interface);
        let _ = write!(
            s,
            ",\"status\":\"{}\",\"active\":{},\"bytes_sent\":{},\"bytes_recv\":{},\"pkts_sent\":{},\"pkts_recv\":{},\"err_send\":{},\"err_recv\":{},\"foreign\":{}}}",
            l.status,
            l.active,
            l.bytes_sent,
            l.bytes_recv,
            l.pkts_sent,
            l.pkts_recv,
            l.err_send,
            l.err_recv,
            l.foreign
        );
    }
    s.push_str("],");
    json_counters(
        &mut s,
        &node.counters,
        now.since(node.started).as_secs(),
        node.runtime.netlink_buffer,
    );
    s.push_str("}\n");
    s
}

/// Any `-s` view.
pub fn stats(
    node: &Node,
    now: Instant,
    view: StatsView,
    format: Format,
) -> String {
    if format == Format::Json {
        return stats_json(node, now);
    }
    let mut s = String::new();
    match view {
        StatsView::General => general(&mut s, node, false),
        StatsView::Expect => {
            if node.expectation_sync().enabled() {
                general(&mut s, node, true);
            }
        }
        StatsView::Network => network(&mut s, node),
        StatsView::Cache => {
            for (name, c) in [
                ("internal", &node.internal_ct),
                ("external", &node.external_ct),
            ] {
                cache_extended(
                    &mut s,
                    name,
                    c.len(),
                    c.bytes(),
                    c.limit(),
                    &c.stats,
                );
            }
        }
        StatsView::Runtime => runtime(&mut s, node, now),
        StatsView::Link => {
            for l in &node.links {
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
            }
        }
        StatsView::RsQueue => {
            if node.engine.mode() == crate::config::Mode::FtFw {
                let (_, rs) = node.engine.queue_lengths();
                let _ = writeln!(s, "resent queue (len={rs})");
                for (seq, control) in node.engine.resend_queue() {
                    if control {
                        let _ = writeln!(s, "control -> seq:{seq} flags:2");
                    } else {
                        let _ = writeln!(s, "object -> seq:{seq}");
                    }
                }
            }
        }
        StatsView::Process => {}
        StatsView::Queue => queues(&mut s, node),
    }
    s
}
