//! The plain-text lines of conntracks and expectations in the `-i`/`-e`
//! dumps, as conntrackd 1.4.7 prints them (reference §2.4: libnetfilter
//! conntrack's plain format; the dump adds `[active since Ns]`, see
//! [`super::dumps`]), so that scripts that parse conntrackd's output keep
//! working. Pure.

use std::fmt::Write as _;

use super::digits::{Ntop, push_ip, push_u64};
use crate::model::{
    Conntrack, Expect, L4, ProtoInfo, Tuple, expect_flag, status,
};

pub(super) fn proto_name(p: u8) -> &'static str {
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

pub(super) fn state_name(p: &ProtoInfo) -> Option<&'static str> {
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
    // Past the table's end: its first name, as libnetfilter_conntrack
    // writes it.
    Some(names.get(usize::from(s)).copied().unwrap_or("NONE"))
}

/// `name=N ` (the plain format's field).
fn field(out: &mut String, name: &str, n: u64) {
    out.push_str(name);
    push_u64(out, n);
    out.push(' ');
}

/// A tuple's layer-4 fields as libnetfilter_conntrack prints them: by
/// the protocol number, not by what the tuple carries (a field it lacks
/// is 0), and a GRE tuple's "ports" are its keys.
pub(super) enum Shown {
    Ports(u16, u16),
    Keys(u16, u16),
    Icmp(u8, u8, u16),
    Nothing,
}

pub(super) fn shown(t: &Tuple) -> Shown {
    let (a, b) = match t.l4 {
        L4::Ports { src, dst } => (src, dst),
        _ => (0, 0),
    };
    match t.proto {
        6 | 17 | 33 | 132 | 136 => Shown::Ports(a, b),
        47 => Shown::Keys(a, b),
        1 | 58 => match t.l4 {
            L4::Icmp { kind, code, id } => Shown::Icmp(kind, code, id),
            _ => Shown::Icmp(0, 0, 0),
        },
        _ => Shown::Nothing,
    }
}

/// A tuple's layer-4 fields in the plain format, each followed by a
/// space.
fn l4_text(out: &mut String, t: &Tuple) {
    match shown(t) {
        Shown::Ports(a, b) => {
            field(out, "sport=", a.into());
            field(out, "dport=", b.into());
        }
        Shown::Keys(a, b) => {
            let _ = write!(out, "srckey={a:#x} dstkey={b:#x} ");
        }
        Shown::Icmp(kind, code, id) => {
            field(out, "type=", kind.into());
            field(out, "code=", code.into());
            field(out, "id=", id.into());
        }
        Shown::Nothing => {}
    }
}

fn tuple_text(out: &mut String, t: &Tuple) {
    out.push_str("src=");
    push_ip(out, &t.src);
    out.push_str(" dst=");
    push_ip(out, &t.dst);
    out.push(' ');
    l4_text(out, t);
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

/// A cached conntrack as conntrackd logs it when a commit could not
/// create it (after the time and a tab, see `logging`): [`ct_line`] with
/// the cached timeout after the protocol number (observed: conntrackd
/// 1.4.7, `tcp      6 600 ESTABLISHED src=… [ASSURED] mark=9 helper=…`).
pub fn ct_line_refused(ct: &Conntrack) -> String {
    ct_line_with(ct, true, false, false, true)
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
pub(super) fn ct_line_into(
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

/// A cached expectation as conntrackd logs it when a commit could not
/// create it: [`exp_line`] after its timeout (observed: conntrackd 1.4.7,
/// `300 proto=6 src=…`).
pub fn exp_line_refused(x: &Expect) -> String {
    match x.timeout {
        Some(t) => format!("{t} {}", exp_line(x)),
        None => exp_line(x),
    }
}

/// One expectation in libnetfilter_conntrack's plain format.
pub fn exp_line(x: &Expect) -> String {
    let mut s = String::with_capacity(240);
    let ports = l4_text;
    let _ = write!(
        s,
        "proto={} src={} dst={} ",
        x.tuple.proto,
        Ntop(x.tuple.src),
        Ntop(x.tuple.dst)
    );
    ports(&mut s, &x.tuple);
    let _ = write!(
        s,
        "mask-src={} mask-dst={} ",
        Ntop(x.mask.src),
        Ntop(x.mask.dst)
    );
    ports(&mut s, &x.mask);
    let _ = write!(
        s,
        "master-src={} master-dst={} ",
        Ntop(x.master.src),
        Ntop(x.master.dst)
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
