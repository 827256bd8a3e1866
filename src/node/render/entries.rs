//! Text, XML and JSON renderings of conntracks and expectations: the
//! `-i`/`-e` dumps.
//!
//! Text follows conntrackd 1.4.7 exactly (reference §2.4: libnetfilter
//! conntrack's plain format, `[active since Ns]`) so that scripts that
//! parse conntrackd's output keep working. JSON (`--json`) is ctsyncd's
//! own stable schema, documented in README. Pure.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use super::digits::{push_ip, push_u64};
use crate::cache::Entry;
use crate::control::proto::Format;
use crate::model::{
    Conntrack, Expect, L4, ProtoInfo, Tuple, expect_flag, status,
};
use crate::time::Instant;

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

/// `name=N ` (the plain format's field).
fn field(out: &mut String, name: &str, n: u64) {
    out.push_str(name);
    push_u64(out, n);
    out.push(' ');
}

fn tuple_text(out: &mut String, t: &Tuple) {
    out.push_str("src=");
    push_ip(out, &t.src);
    out.push_str(" dst=");
    push_ip(out, &t.dst);
    out.push(' ');
    match t.l4 {
        L4::Ports { src, dst } => {
            field(out, "sport=", src.into());
            field(out, "dport=", dst.into());
        }
        L4::Icmp { kind, code, id } => {
            field(out, "type=", kind.into());
            field(out, "code=", code.into());
            field(out, "id=", id.into());
        }
        L4::None => {}
    }
}

/// One conntrack in libnetfilter_conntrack's plain format (no timeout,
/// as conntrackd prints cached entries). External entries have no reply
/// tuple in conntrackd, so none is printed for them.
pub fn ct_line(ct: &Conntrack, external: bool) -> String {
    ct_line_with(ct, external, false, false, false)
}

/// One conntrack of a live kernel dump (`-i` without internal cache), as
/// conntrackd prints the kernel's table there: with the timeout after the
/// protocol number and the mark, which the kernel always reports, even 0.
/// (conntrackd's `use=` is not kept.)
pub fn ct_line_kernel(ct: &Conntrack) -> String {
    ct_line_with(ct, false, false, true, true)
}

/// [`ct_line`] with each direction's `packets=… bytes=…` after its tuple
/// when the conntrack carries counters (`nf_conntrack_acct=1`) and
/// `delta-time=N` after `zone=` when it carries a timestamp
/// (`nf_conntrack_timestamp=1`), as conntrackd's stats log prints a
/// destroyed flow.
pub fn ct_line_counted(ct: &Conntrack) -> String {
    ct_line_with(ct, false, true, false, false)
}

/// How many whole seconds a flow lived, as libnetfilter_conntrack counts
/// them: the stop's seconds minus the start's (each truncated first, as
/// the model keeps them). Without a stop (the flow still lives) there is
/// nothing to count here: the stats log only sees ended flows.
fn lifetime_secs(start_s: u32, stop_s: u32) -> u32 {
    stop_s.saturating_sub(start_s)
}

fn ct_line_with(
    ct: &Conntrack,
    external: bool,
    counted: bool,
    mark_always: bool,
    timeout: bool,
) -> String {
    let mut s = String::with_capacity(200);
    ct_line_into(&mut s, ct, external, counted, mark_always, timeout);
    s
}

/// [`ct_line_with`], appended to `s` (a dump writes its lines into one
/// buffer).
fn ct_line_into(
    s: &mut String,
    ct: &Conntrack,
    external: bool,
    counted: bool,
    mark_always: bool,
    timeout: bool,
) {
    let counters = ct.counters.filter(|_| counted);
    let start = s.len();
    // The protocol's name padded to 8 columns, as `{:<8}` would.
    let name = proto_name(ct.orig.proto);
    s.push_str(name);
    for _ in name.len()..8 {
        s.push(' ');
    }
    s.push(' ');
    field(s, "", ct.orig.proto.into());
    if let Some(t) = ct.timeout.filter(|_| timeout) {
        field(s, "", t.into());
    }
    if let Some(name) = state_name(&ct.proto_info) {
        s.push_str(name);
        s.push(' ');
    }
    tuple_text(s, &ct.orig);
    if let Some(c) = counters {
        field(s, "packets=", c.orig_packets);
        field(s, "bytes=", c.orig_bytes);
    }
    if ct.status != 0 && ct.status & status::SEEN_REPLY == 0 {
        s.push_str("[UNREPLIED] ");
    }
    if !external {
        tuple_text(s, &ct.reply_tuple());
        if let Some(c) = counters {
            field(s, "packets=", c.reply_packets);
            field(s, "bytes=", c.reply_bytes);
        }
    }
    // One word, as libnetfilter_conntrack 1.0.9 (conntrackd 1.4.7's)
    // writes it: an offloaded flow's flowtable stands for its ASSURED.
    if ct.status & status::HW_OFFLOAD != 0 {
        s.push_str("[HW_OFFLOAD] ");
    } else if ct.status & status::OFFLOAD != 0 {
        s.push_str("[OFFLOAD] ");
    } else if ct.status & status::ASSURED != 0 {
        s.push_str("[ASSURED] ");
    }
    if ct.mark != 0 || mark_always {
        field(s, "mark=", ct.mark.into());
    }
    if ct.secmark != 0 {
        field(s, "secmark=", ct.secmark.into());
    }
    if ct.zone != 0 {
        field(s, "zone=", ct.zone.into());
    }
    if counted
        && let Some(ts) = ct.timestamp
        && ts.stop_s != 0
    {
        field(
            s,
            "delta-time=",
            lifetime_secs(ts.start_s, ts.stop_s).into(),
        );
    }
    if let Some(h) = &ct.helper {
        let _ = write!(s, "helper={h} ");
    }
    // The line's trailing space (never more: it starts with a name).
    let end = start + s[start..].trim_end().len();
    s.truncate(end);
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
    ct_xml_with(ct, external, false)
}

fn ct_xml_with(ct: &Conntrack, external: bool, mark_always: bool) -> String {
    let mut s = String::from("<flow>");
    xml_tuple(&mut s, "original", Some(&ct.orig));
    let reply = ct.reply_tuple();
    xml_tuple(&mut s, "reply", (!external).then_some(&reply));
    s.push_str("<meta direction=\"independent\">");
    if let Some(st) = state_name(&ct.proto_info) {
        let _ = write!(s, "<state>{st}</state>");
    }
    if ct.mark != 0 || mark_always {
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

pub(crate) fn json_str(s: &mut String, v: &str) {
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

/// A plain IPv4 TCP line with its times is about this long; XML and JSON
/// are longer and grow the buffer once or twice.
const LINE_GUESS: usize = 160;

/// How one cached value renders in each format.
struct Renderers<'a, V> {
    /// Appends the line (without its newline).
    plain: &'a dyn Fn(&mut String, &V),
    xml: &'a dyn Fn(&V) -> String,
    json: &'a dyn Fn(&V, u64) -> String,
}

/// Entries in one format: plain lines with `[expires in]` (ALARM) and
/// `[active since]`, one XML element per line, or JSON objects separated
/// by commas (`first`: no comma before the first; the caller writes the
/// array's brackets).
fn render_part<V>(
    entries: impl Iterator<Item = Entry<V>>,
    first: bool,
    now: Instant,
    f: Format,
    expiry: Option<Duration>,
    r: &Renderers<'_, V>,
) -> String {
    // About a line's length per entry, so that a part's text is not
    // copied each time it doubles.
    let mut out = String::with_capacity(
        entries
            .size_hint()
            .1
            .unwrap_or(0)
            .saturating_mul(LINE_GUESS),
    );
    for (i, e) in entries.enumerate() {
        let since = now.since(e.since).as_secs();
        match f {
            Format::Plain => {
                (r.plain)(&mut out, &e.value);
                if let Some(life) = expiry {
                    let left =
                        life.saturating_sub(now.since(e.updated)).as_secs();
                    out.push_str(" [expires in ");
                    push_u64(&mut out, left);
                    out.push_str("s]");
                }
                out.push_str(" [active since ");
                push_u64(&mut out, since);
                out.push_str("s]\n");
            }
            Format::Xml => {
                out.push_str(&(r.xml)(&e.value));
                out.push('\n');
            }
            Format::Json => {
                if i > 0 || !first {
                    out.push(',');
                }
                out.push_str(&(r.json)(&e.value, since));
            }
        }
    }
    out
}

/// A part of a `-i` / `-e` dump of conntracks (see [`render_part`]).
pub fn ct_part(
    entries: impl Iterator<Item = Entry<Conntrack>>,
    first: bool,
    now: Instant,
    f: Format,
    external: bool,
    expiry: Option<Duration>,
) -> String {
    let plain = |s: &mut String, ct: &Conntrack| {
        ct_line_into(s, ct, external, false, false, false)
    };
    let xml = |ct: &Conntrack| ct_xml(ct, external);
    let r = Renderers {
        plain: &plain,
        xml: &xml,
        json: &ct_json,
    };
    render_part(entries, first, now, f, expiry, &r)
}

/// A Stats-mode daemon's `-i` (see [`render_part`]): each flow as
/// [`ct_line`] prints it but with the mark even when it is 0 (conntrackd
/// keeps the mark every kernel event carries, and libnetfilter_conntrack
/// prints a mark that is set).
pub fn stats_part(
    entries: impl Iterator<Item = Entry<Conntrack>>,
    now: Instant,
    f: Format,
) -> String {
    let xml = |ct: &Conntrack| ct_xml_with(ct, false, true);
    let plain = |s: &mut String, ct: &Conntrack| {
        ct_line_into(s, ct, false, false, true, false)
    };
    let r = Renderers {
        plain: &plain,
        xml: &xml,
        json: &ct_json,
    };
    render_part(entries, true, now, f, None, &r)
}

/// A part of a `-i expect` / `-e expect` dump (see [`render_part`]).
pub fn exp_part(
    entries: impl Iterator<Item = Entry<Expect>>,
    first: bool,
    now: Instant,
    f: Format,
    expiry: Option<Duration>,
) -> String {
    let plain = |s: &mut String, x: &Expect| s.push_str(&exp_line(x));
    let r = Renderers {
        plain: &plain,
        xml: &exp_xml,
        json: &exp_json,
    };
    render_part(entries, first, now, f, expiry, &r)
}
