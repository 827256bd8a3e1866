//! Interoperability smoke test with the real conntrackd 1.4.7 (root only:
//! two network namespaces): conntrackd in one, ctsyncd in the other, FT-FW
//! over UDP with an unchanged conntrackd.conf. ctsyncd notices its peer
//! speaks conntrackd's protocol (one notice line), and a few hundred
//! flows created in each kernel, their deletions and an FTP expectation
//! reach the other side (conntrackd's `-e`, ctsyncd's statistics).

// Deadlines here are wall-clock bounds on real processes, not logic.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Netns;
use common::ctd::{CONNTRACKD, Ctd, Peer};
use common::fw::{Fw, create, delete, flows, json_number, udp_link};

/// A real conntrackd in a namespace, with its own lock file, control
/// socket and log (never the system's defaults).
struct Conntrackd(Ctd);

impl Conntrackd {
    /// conntrackd with this test's General clauses (beside the harness's
    /// paths) and `sync`.
    fn start(ns: &Netns, tag: &str, sync: &str) -> Conntrackd {
        Conntrackd(Ctd::start(
            ns,
            tag,
            "HashSize 8192\n HashLimit 65535\n Syslog off\n NetlinkBufferSize 2097152\n NetlinkBufferSizeMaxGrowth 8388608",
            sync,
        ))
    }

    fn cli(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&Peer::cli(&self.0, args).stdout).into_owned()
    }

    /// Entries its `-e` (external cache) lists, of `table` (`""` for
    /// conntracks, `"expect"`).
    fn external(&self, table: &str) -> usize {
        let mut args = vec!["-e"];
        if !table.is_empty() {
            args.push(table);
        }
        self.cli(&args)
            .lines()
            .filter(|l| l.contains("src="))
            .count()
    }

    fn wait_external(&self, table: &str, n: usize, limit: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.external(table) == n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn log(&self) -> String {
        Peer::log(&self.0)
    }
}

/// A TCP link on the veth `s0` of [`common::pair`].
fn tcp_link(me: &str, peer: &str) -> String {
    udp_link(me, peer).replacen("UDP", "TCP", 1)
}

/// `mode` is the whole `Mode …` clause.
fn sync(mode: &str, link: &str) -> String {
    format!("{mode}\n{link}\nOptions {{ ExpectationSync On }}")
}

const FTFW: &str = "Mode FTFW { }";

#[test]
fn conntrackd_and_ctsyncd_replicate_both_ways_over_udp_ftfw() {
    both_ways(FTFW, udp_link, "udp", "cu");
}

#[test]
fn conntrackd_and_ctsyncd_replicate_both_ways_over_tcp_ftfw() {
    both_ways(FTFW, tcp_link, "tcp", "ct");
}

/// conntrackd's NOTRACK says ALIVE every second: found as in FT-FW.
#[test]
fn conntrackd_and_ctsyncd_replicate_both_ways_over_udp_notrack() {
    both_ways("Mode NOTRACK { }", udp_link, "udp", "cn");
}

/// conntrackd's ALARM is found by its first refresh.
#[test]
fn conntrackd_and_ctsyncd_replicate_both_ways_over_udp_alarm() {
    both_ways(
        "Mode ALARM { RefreshTime 3 CacheTimeout 60 }",
        udp_link,
        "udp",
        "ca",
    );
}

/// One scenario at a time: `common::pair` names its veths after the
/// process.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn both_ways(
    mode: &str,
    link: fn(&str, &str) -> String,
    kind: &str,
    tag: &str,
) {
    both_ways_on(mode, link, kind, tag, ("10.9.0.1", "10.9.0.2"));
}

/// An IPv6 UDP link on the veth `s0` of [`common::pair`].
fn udp6_link(me: &str, peer: &str) -> String {
    format!(
        "UDP {{ IPv6_address {me} IPv6_Destination_Address {peer} Port 3780 Interface s0 }}"
    )
}

#[test]
fn conntrackd_and_ctsyncd_replicate_both_ways_over_udp_ipv6_ftfw() {
    both_ways_on(FTFW, udp6_link, "udp", "c6", ("fd09::1", "fd09::2"));
}

/// An IPv4 multicast link on the veth `s0` of [`common::pair`].
fn mcast4_link(me: &str, _peer: &str) -> String {
    format!(
        "Multicast {{ IPv4_address 225.0.0.50 IPv4_interface {me} Group 3780 Interface s0 }}"
    )
}

/// An IPv6 multicast link on the veth `s0` of [`common::pair`].
fn mcast6_link(_me: &str, _peer: &str) -> String {
    "Multicast { IPv6_address ff02::fc Group 3780 Interface s0 }".to_string()
}

#[test]
fn conntrackd_and_ctsyncd_replicate_both_ways_over_ipv4_multicast_ftfw() {
    both_ways_on(
        FTFW,
        mcast4_link,
        "multicast",
        "cm",
        ("10.9.0.1", "10.9.0.2"),
    );
}

#[test]
fn conntrackd_and_ctsyncd_replicate_both_ways_over_ipv6_multicast_ftfw() {
    both_ways_on(FTFW, mcast6_link, "multicast", "c7", ("fd09::1", "fd09::2"));
}

/// `addrs`: the link addresses of conntrackd's side and ctsyncd's.
fn both_ways_on(
    mode: &str,
    link: fn(&str, &str) -> String,
    kind: &str,
    tag: &str,
    (ctd_addr, cts_addr): (&str, &str),
) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !Path::new(CONNTRACKD).exists() {
        eprintln!("SKIPPED: {CONNTRACKD} is not installed");
        return;
    }
    let Some((a, b)) = common::pair(tag) else {
        return;
    };
    let ctd =
        Conntrackd::start(&a, tag, &sync(mode, &link(ctd_addr, cts_addr)));
    let fw = Fw::start(
        &b,
        &format!("ctd-{tag}"),
        "",
        &sync(mode, &link(cts_addr, ctd_addr)),
    );
    // The switch's log line names a unicast link by the peer's address
    // and a multicast one by its group.
    let peer = match kind {
        "multicast" => link(ctd_addr, cts_addr)
            .split_whitespace()
            .skip_while(|w| !w.ends_with("_address"))
            .nth(1)
            .map(|g| std::net::SocketAddr::new(g.parse().unwrap(), 3780))
            .unwrap(),
        _ => std::net::SocketAddr::new(ctd_addr.parse().unwrap(), 3780),
    };
    let (from_ctd, from_cts) =
        (flows("10.50.0.1", 300), flows("10.60.0.1", 300));
    create(&a, &from_ctd);
    create(&b, &from_cts);
    let limit = Duration::from_secs(30);
    assert!(
        fw.wait_cached("external", 300, limit).is_some(),
        "ctsyncd learnt {} of conntrackd's 300: {}",
        fw.cached("external"),
        fw.log()
    );
    assert!(
        ctd.wait_external("", 300, limit),
        "conntrackd learnt {} of ctsyncd's 300: {}\n{}\n{}\n{}",
        ctd.external(""),
        ctd.log(),
        ctd.cli(&["-s"]),
        String::from_utf8_lossy(&fw.cli(&["-s", "link"]).stdout),
        fw.log()
    );
    // One notice line, naming the link and the protocol.
    let switched: Vec<_> = fw
        .log()
        .lines()
        .filter(|l| l.contains("peer speaks"))
        .map(str::to_string)
        .collect();
    assert_eq!(switched.len(), 1, "{switched:?}");
    assert!(
        switched[0].ends_with(
            &format!("[notice] sync link s0 ({kind} {peer}): peer speaks conntrackd 1.4 protocol")
        ),
        "{switched:?}"
    );
    let json = fw.stats();
    assert!(
        json.contains("\"peer_protocol\":\"conntrackd 1.4\""),
        "{json}"
    );
    // conntrackd refused nothing we sent in its protocol (over UDP it
    // counts our own format's datagrams sent before the switch; over TCP
    // none may reach it: they would break its framing).
    refused_nothing(&ctd, kind);

    // Deletions, both ways.
    delete(&a, &from_ctd[..100]);
    delete(&b, &from_cts[..100]);
    assert!(
        fw.wait_cached("external", 200, limit).is_some(),
        "ctsyncd kept {}",
        fw.cached("external")
    );
    assert!(
        ctd.wait_external("", 200, limit),
        "conntrackd kept {}",
        ctd.external("")
    );

    // An FTP passive-mode expectation on conntrackd's side reaches
    // ctsyncd, and one on ctsyncd's side reaches conntrackd.
    a.ftp_helper();
    b.ftp_helper();
    let _srv = a.ftp_server();
    let _cli = a.ftp_pasv_client();
    let t0 = Instant::now();
    while json_number(&fw.stats(), "external_expect", "active") < 1 {
        assert!(
            t0.elapsed() < limit,
            "no expectation from conntrackd: {}",
            fw.stats()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _srv_b = b.ftp_server();
    let _cli_b = b.ftp_pasv_client();
    assert!(
        ctd.wait_external("expect", 1, limit),
        "conntrackd -e expect: {}",
        ctd.cli(&["-e", "expect"])
    );
    refused_nothing(&ctd, kind);
}

/// conntrackd's `-s network` receive counters: no payload it could not
/// read, no bad type or size; on TCP nothing malformed at all.
fn refused_nothing(ctd: &Conntrackd, kind: &str) {
    let net = ctd.cli(&["-s", "network"]);
    let recv = net.split("send:").next().unwrap();
    let count = |what: &str| -> u64 {
        let line = recv.lines().find(|l| l.contains(what)).expect(what);
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    for what in ["Malformed payload:", "Bad message type:"] {
        assert_eq!(count(what), 0, "{what} {net}");
    }
    if kind == "tcp" {
        assert_eq!(count("Malformed messages:"), 0, "{net}");
    }
}

/// The rolling upgrade's last step: the conntrackd is replaced by ctsyncd.
/// The ctsyncd that spoke conntrackd's protocol hears ctsyncd's format,
/// switches back (one notice line), and the new node learns its state.
#[test]
fn a_conntrackd_replaced_by_ctsyncd_switches_back() {
    replaced_by_ctsyncd(udp_link, "udp", "cr");
}

/// The same over TCP, where neither ctsyncd writes its format first: the
/// mark on the control messages of the one speaking conntrackd's
/// protocol (which the real conntrackd took without counting an error)
/// brings both back.
#[test]
fn a_conntrackd_replaced_by_ctsyncd_switches_back_over_tcp() {
    replaced_by_ctsyncd(tcp_link, "tcp", "crt");
}

fn replaced_by_ctsyncd(link: fn(&str, &str) -> String, kind: &str, tag: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !Path::new(CONNTRACKD).exists() {
        eprintln!("SKIPPED: {CONNTRACKD} is not installed");
        return;
    }
    let Some((a, b)) = common::pair(tag) else {
        return;
    };
    let ctd =
        Conntrackd::start(&a, tag, &sync(FTFW, &link("10.9.0.1", "10.9.0.2")));
    let fw = Fw::start(
        &b,
        &format!("{tag}-b"),
        "",
        &sync(FTFW, &link("10.9.0.2", "10.9.0.1")),
    );
    let from_cts = flows("10.60.0.1", 200);
    create(&b, &from_cts);
    let limit = Duration::from_secs(30);
    assert!(ctd.wait_external("", 200, limit), "{}", fw.log());
    // Several seconds of our marked ACKs and ALIVEs: nothing refused.
    std::thread::sleep(Duration::from_secs(3));
    refused_nothing(&ctd, kind);
    drop(ctd);
    let fw_a = Fw::start(
        &a,
        &format!("{tag}-a"),
        "",
        &sync(FTFW, &link("10.9.0.1", "10.9.0.2")),
    );
    assert!(
        fw_a.wait_cached("external", 200, limit).is_some(),
        "the new ctsyncd learnt {}: {}\n{}",
        fw_a.cached("external"),
        fw_a.log(),
        fw.log()
    );
    let t0 = Instant::now();
    while !fw.log().contains("peer speaks ctsyncd protocol") {
        assert!(t0.elapsed() < limit, "{}", fw.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let notices: Vec<_> = fw
        .log()
        .lines()
        .filter(|l| l.contains("peer speaks"))
        .map(|l| l.split("[notice] ").nth(1).unwrap_or(l).to_string())
        .collect();
    assert_eq!(
        notices,
        [
            format!(
                "sync link s0 ({kind} 10.9.0.1:3780): peer speaks conntrackd 1.4 protocol"
            ),
            format!(
                "sync link s0 ({kind} 10.9.0.1:3780): peer speaks ctsyncd protocol"
            )
        ]
    );
    assert!(!fw_a.log().contains("peer speaks"), "{}", fw_a.log());
    // And new flows replicate in ctsyncd's format.
    create(&a, &flows("10.70.0.1", 50));
    assert!(fw.wait_cached("external", 50, limit).is_some());
}

/// FT-FW with conntrackd over a link that loses 5 % of the packets each
/// way (nftables, at each receiver): 20 000 flows each way and the deletion of a third of them
/// arrive, none lost.
#[test]
fn ftfw_over_a_lossy_link_loses_nothing() {
    const FLOWS: u32 = 20_000;
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !Path::new(CONNTRACKD).exists() {
        eprintln!("SKIPPED: {CONNTRACKD} is not installed");
        return;
    }
    let Some((a, b)) = common::pair("cl") else {
        return;
    };
    let ctd = Conntrackd::start(
        &a,
        "cl",
        &sync(FTFW, &udp_link("10.9.0.1", "10.9.0.2")),
    );
    let fw = Fw::start(
        &b,
        "cl-b",
        "",
        &sync(FTFW, &udp_link("10.9.0.2", "10.9.0.1")),
    );
    for ns in [&a, &b] {
        // This kernel has no netem: nftables drops at random.
        ns.sh(
            "nft -f - <<'EOF'
table inet ctd_loss {
    chain in { type filter hook input priority -300; udp dport 3780 numgen random mod 100 < 5 drop; }
}
EOF",
        );
    }
    let (from_ctd, from_cts) =
        (flows("10.50.0.1", FLOWS), flows("10.60.0.1", FLOWS));
    create(&a, &from_ctd);
    create(&b, &from_cts);
    let limit = Duration::from_secs(60);
    let report = |fw: &Fw, ctd: &Conntrackd| {
        format!(
            "ctsyncd has {}, conntrackd has {}\n{}\n{}",
            fw.cached("external"),
            ctd.external(""),
            ctd.cli(&["-s"]),
            fw.stats()
        )
    };
    assert!(
        fw.wait_cached("external", u64::from(FLOWS), limit)
            .is_some(),
        "{}",
        report(&fw, &ctd)
    );
    assert!(
        ctd.wait_external("", FLOWS as usize, limit),
        "{}",
        report(&fw, &ctd)
    );
    let gone = FLOWS as usize / 3;
    delete(&a, &from_ctd[..gone]);
    delete(&b, &from_cts[..gone]);
    let left = u64::from(FLOWS) - gone as u64;
    assert!(
        fw.wait_cached("external", left, limit).is_some(),
        "{}",
        report(&fw, &ctd)
    );
    assert!(
        ctd.wait_external("", left as usize, limit),
        "{}",
        report(&fw, &ctd)
    );
    let json = fw.stats();
    assert!(
        json_number(&json, "sync", "lost") > 0,
        "the link lost nothing? {json}"
    );
}
