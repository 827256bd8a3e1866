//! The plain dump lines, written digit by digit, are byte for byte what
//! the `std::fmt` rendering they replaced wrote (kept here as the
//! reference), for every field a line can carry.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use super::{ct_line, ct_line_counted, ct_part};
use crate::cache::Entry;
use crate::control::proto::Format;
use crate::model::{
    Conntrack, Counters, L4, ProtoInfo, Timestamp, Tuple, status,
};
use crate::time::Instant;

fn reference_tuple(out: &mut String, t: &Tuple) {
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

/// The `std::fmt` rendering (names and states as the renderer has them).
fn reference(ct: &Conntrack, external: bool, counted: bool) -> String {
    let name = match ct.orig.proto {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        132 => "sctp",
        _ => "unknown",
    };
    let counters = ct.counters.filter(|_| counted);
    let mut s = String::new();
    let _ = write!(s, "{:<8} {} ", name, ct.orig.proto);
    if let ProtoInfo::Tcp { state: 3, .. } = ct.proto_info {
        s.push_str("ESTABLISHED ");
    }
    reference_tuple(&mut s, &ct.orig);
    if let Some(c) = counters {
        let _ = write!(s, "packets={} bytes={} ", c.orig_packets, c.orig_bytes);
    }
    if ct.status != 0 && ct.status & status::SEEN_REPLY == 0 {
        s.push_str("[UNREPLIED] ");
    }
    if !external {
        reference_tuple(&mut s, &ct.reply_tuple());
        if let Some(c) = counters {
            let _ = write!(
                s,
                "packets={} bytes={} ",
                c.reply_packets, c.reply_bytes
            );
        }
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
    if counted
        && let Some(ts) = ct.timestamp
        && ts.stop_s != 0
    {
        let _ = write!(s, "delta-time={} ", ts.stop_s - ts.start_s);
    }
    if let Some(h) = &ct.helper {
        let _ = write!(s, "helper={h} ");
    }
    s.truncate(s.trim_end().len());
    s
}

fn tuple(src: &str, dst: &str, proto: u8, l4: L4) -> Tuple {
    Tuple {
        src: src.parse::<IpAddr>().unwrap(),
        dst: dst.parse::<IpAddr>().unwrap(),
        proto,
        l4,
    }
}

fn samples() -> Vec<Conntrack> {
    let ports = |s, d| L4::Ports { src: s, dst: d };
    let mut v = Vec::new();
    let mut tcp = Conntrack::new(tuple(
        "192.168.0.2",
        "192.168.1.2",
        6,
        ports(40_000, 21),
    ));
    tcp.reply =
        Some(tuple("192.168.1.2", "192.168.1.100", 6, ports(21, 40_000)));
    tcp.status = status::SEEN_REPLY | status::ASSURED;
    tcp.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 7,
        flags_orig: 0,
        flags_reply: 0,
    };
    tcp.helper = Some("ftp".try_into().unwrap());
    v.push(tcp.clone());
    tcp.mark = 4_294_967_295;
    tcp.secmark = 7;
    tcp.zone = 65_535;
    tcp.counters = Some(Counters {
        orig_packets: 0,
        orig_bytes: u64::MAX,
        reply_packets: 12,
        reply_bytes: 1_000_000,
    });
    tcp.timestamp = Some(Timestamp {
        start_s: 1_700_000_000,
        stop_s: 1_700_000_042,
    });
    v.push(tcp);
    let mut udp =
        Conntrack::new(tuple("10.0.0.1", "10.200.0.1", 17, ports(1024, 53)));
    udp.status = 8;
    v.push(udp);
    v.push(Conntrack::new(tuple(
        "0.0.0.0",
        "255.255.255.255",
        1,
        L4::Icmp {
            kind: 8,
            code: 0,
            id: 65_535,
        },
    )));
    v.push(Conntrack::new(tuple(
        "fd72:1::1",
        "::ffff:10.1.2.3",
        58,
        L4::Icmp {
            kind: 128,
            code: 0,
            id: 1,
        },
    )));
    v.push(Conntrack::new(tuple(
        "2001:db8::1",
        "::1",
        132,
        ports(0, 9),
    )));
    v.push(Conntrack::new(tuple("10.9.8.7", "10.6.5.4", 250, L4::None)));
    v
}

#[test]
fn plain_lines_match_the_fmt_rendering() {
    for ct in samples() {
        for external in [false, true] {
            assert_eq!(ct_line(&ct, external), reference(&ct, external, false));
        }
        assert_eq!(ct_line_counted(&ct), reference(&ct, false, true));
    }
}

#[test]
fn a_plain_part_is_the_lines_with_their_times() {
    let now = Instant::from_millis(3_600_000);
    let entries: Vec<Entry<Conntrack>> = samples()
        .into_iter()
        .enumerate()
        .map(|(i, value)| Entry {
            value,
            since: Instant::from_millis(i as u64 * 1000),
            updated: Instant::from_millis(3_000_000 + i as u64),
        })
        .collect();
    let life = Duration::from_secs(700);
    for expiry in [None, Some(life)] {
        let mut want = String::new();
        for e in &entries {
            want.push_str(&reference(&e.value, true, false));
            if expiry.is_some() {
                let left = life.saturating_sub(now.since(e.updated)).as_secs();
                let _ = write!(want, " [expires in {left}s]");
            }
            let since = now.since(e.since).as_secs();
            let _ = writeln!(want, " [active since {since}s]");
        }
        let got = ct_part(
            entries.iter().cloned(),
            true,
            now,
            Format::Plain,
            true,
            expiry,
        );
        assert_eq!(got, want);
    }
}

/// An offloaded flow's word stands where ASSURED would, hardware before
/// software, as libnetfilter_conntrack 1.0.9 writes them.
#[test]
fn an_offloaded_flow_says_so_instead_of_assured() {
    let tcp = samples().remove(0);
    let word = |status| {
        let mut c = tcp.clone();
        c.status = status;
        let line = ct_line(&c, false);
        let words: Vec<&str> =
            line.split(' ').filter(|w| w.starts_with('[')).collect();
        words.join(" ")
    };
    let assured = status::SEEN_REPLY | status::ASSURED;
    assert_eq!(word(assured), "[ASSURED]");
    assert_eq!(word(assured | status::OFFLOAD), "[OFFLOAD]");
    assert_eq!(word(assured | status::OFFLOADED), "[HW_OFFLOAD]");
    assert_eq!(
        ct_line(&tcp, false).replace("[ASSURED]", "[OFFLOAD]"),
        ct_line(
            &Conntrack {
                status: assured | status::OFFLOAD,
                ..tcp.clone()
            },
            false
        )
    );
}
