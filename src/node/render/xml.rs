//! conntrackd 1.4.7's `-x` XML of conntracks and expectations
//! (reference §2.4.1: libnetfilter_conntrack's XML, one element per line,
//! no wrapper). Pure.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::digits::Ntop;
use super::entries::{Shown, proto_name, shown, state_name};
use crate::model::{Conntrack, Expect, ProtoInfo, Tuple, expect_flag, status};

fn l3(ip: &IpAddr) -> (u8, &'static str) {
    if ip.is_ipv4() {
        (2, "ipv4")
    } else {
        (10, "ipv6")
    }
}

/// A tuple's layer-4 elements, by its protocol number (ICMP has none).
fn l4_xml(s: &mut String, t: &Tuple) {
    match shown(t) {
        Shown::Ports(a, b) => {
            let _ = write!(s, "<sport>{a}</sport><dport>{b}</dport>");
        }
        Shown::Keys(a, b) => {
            let _ = write!(s, "<srckey>{a:#x}</srckey><dstkey>{b:#x}</dstkey>");
        }
        Shown::Icmp(..) | Shown::Nothing => {}
    }
}

fn xml_tuple(s: &mut String, dir: &str, t: Option<&Tuple>) {
    let _ = write!(s, "<meta direction=\"{dir}\">");
    match t {
        Some(t) => {
            let (n, name) = l3(&t.src);
            let _ = write!(s, "<layer3 protonum=\"{n}\" protoname=\"{name}\"><src>{}</src><dst>{}</dst></layer3>", Ntop(t.src), Ntop(t.dst));
            let _ = write!(s, "<layer4 protonum=\"{}\" protoname=\"{}\">", t.proto, proto_name(t.proto));
            l4_xml(s, t);
            s.push_str("</layer4>");
        }
        None => s.push_str("<layer3 protonum=\"0\" protoname=\"unknown\"><src></src><dst></dst></layer3><layer4 protonum=\"0\" protoname=\"unknown\"></layer4>"),
    }
    s.push_str("</meta>");
}

/// The `<state>` libnetfilter_conntrack 1.0.9 writes: the TCP state
/// names whatever the protocol (an SCTP or DCCP state is looked up among
/// them: SCTP's ESTABLISHED, 4, reads FIN_WAIT), NONE past their end. The
/// plain line names each protocol's own ([`state_name`]).
fn xml_state_name(p: &ProtoInfo) -> Option<&'static str> {
    let s = match *p {
        ProtoInfo::Tcp { state, .. }
        | ProtoInfo::Sctp { state, .. }
        | ProtoInfo::Dccp { state, .. } => state,
        ProtoInfo::None => return None,
    };
    let tcp = ProtoInfo::Tcp {
        state: s,
        wscale_orig: 0,
        wscale_reply: 0,
        flags_orig: 0,
        flags_reply: 0,
    };
    state_name(&tcp)
}

/// One conntrack in conntrackd's `-x` XML.
pub fn ct_xml(ct: &Conntrack, external: bool) -> String {
    ct_xml_with(ct, external, false)
}

pub(super) fn ct_xml_with(
    ct: &Conntrack,
    external: bool,
    mark_always: bool,
) -> String {
    let mut s = String::from("<flow>");
    xml_tuple(&mut s, "original", Some(&ct.orig));
    let reply = ct.reply_tuple();
    xml_tuple(&mut s, "reply", (!external).then_some(&reply));
    s.push_str("<meta direction=\"independent\">");
    if let Some(st) = xml_state_name(&ct.proto_info) {
        let _ = write!(s, "<state>{st}</state>");
    }
    if ct.mark != 0 || mark_always {
        let _ = write!(s, "<mark>{}</mark>", ct.mark);
    }
    if ct.secmark != 0 {
        let _ = write!(s, "<secmark>{}</secmark>", ct.secmark);
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
        Ntop(x.tuple.src),
        Ntop(x.tuple.dst)
    );
    let _ = write!(
        s,
        "<mask><src>{}</src><dst>{}</dst></mask>",
        Ntop(x.mask.src),
        Ntop(x.mask.dst)
    );
    let _ = write!(
        s,
        "<master><src>{}</src><dst>{}</dst></master></layer3>",
        Ntop(x.master.src),
        Ntop(x.master.dst)
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
        let _ = write!(s, "<{tag}>");
        l4_xml(&mut s, t);
        let _ = write!(s, "</{tag}>");
    }
    s.push_str("</layer4><meta>");
    if let Some(h) = &x.helper {
        let _ = write!(s, "<helper-name>{h}</helper-name>");
    }
    let _ = write!(s, "<class>{}</class>", x.class);
    if x.zone != 0 {
        let _ = write!(s, "<zone>{}</zone>", x.zone);
    }
    for (bit, tag) in [
        (expect_flag::PERMANENT, "<permanent/>"),
        (expect_flag::INACTIVE, "<inactive/>"),
        (expect_flag::USERSPACE, "<userspace/>"),
    ] {
        if x.flags & bit != 0 {
            s.push_str(tag);
        }
    }
    s.push_str("</meta></flow>");
    s
}
