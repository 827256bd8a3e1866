//! The `--json` objects of conntracks and expectations: ctsyncd's own
//! stable schema, documented in README, and the string escaping every
//! JSON view shares. Pure.

use std::fmt::Write as _;

use super::entries::state_name;
use crate::model::{Conntrack, Expect, L4, Tuple};

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
