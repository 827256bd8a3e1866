//! Address values in the configuration, case by case, against what
//! conntrackd 1.4.7 does with each (run in a network namespace, its exit
//! status and messages recorded in the commit that added the case).
//!
//! conntrackd's lexer reads an address as one token (four dotted decimal
//! numbers, or hexadecimal groups with colons, either with `/digits`).
//! A word it cannot read so is a syntax error after an address keyword,
//! and conntrackd exits 1; a word it reads but which is no valid address
//! of the clause's family draws a warning, and the value is dropped.

use std::net::IpAddr;

use ctsyncd::config::{self, Logic, Parsed};

const GENERAL: &str = "General {\n  UNIX { Path /x }\n";

/// A configuration whose Filter has one `Address` list of `items`.
fn filter(logic: &str, items: &str) -> String {
    format!("{GENERAL}  Filter {{ Address {logic} {{ {items} }} }}\n}}\n")
}

fn warnings(p: &Parsed) -> Vec<String> {
    p.warnings.iter().map(ToString::to_string).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The 1-based column of the first `needle` after `after` on line `line`.
fn col(text: &str, line: usize, after: &str, needle: &str) -> usize {
    let l = text.lines().nth(line - 1).unwrap();
    let from = l.find(after).unwrap() + after.len();
    from + l[from..].find(needle).unwrap() + 1
}

/// Every word conntrackd refuses (`parsing config file in line (N),
/// symbol 'S': syntax error`, exit 1), refused here too, at the word,
/// in both logics. The old parser warned and started without the
/// address. (A comma after an address, `10.0.0.1,`, is refused at the
/// comma, as everywhere: tests/config_commas.rs.)
#[test]
fn a_filter_address_conntrackd_cannot_read_is_refused() {
    let v4 = "an IPv4 address or network (such as 192.0.2.1 or 10.0.0.0/8)";
    let v6 = "an IPv6 address or network in hexadecimal groups (such as fd00::1 or fd00::/8; no dotted or %zone form)";
    // (clause, word, conntrackd's symbol in its message)
    let cases = [
        ("IPv4_address", "10.0.0.0/-1", "/-1"),
        ("IPv4_address", "1.2.3", "1"),
        ("IPv4_address", "\"\"", "\""),
        ("IPv4_address", "1.2.3.4/", "/"),
        ("IPv4_address", "10.0.0.0/24/8", "/8"),
        ("IPv4_address", "1.2.3.4.5", "."),
        ("IPv4_address", "nope", "nope"),
        ("IPv6_address", "zz::1", "zz"),
        ("IPv6_address", "fe80::1%eth0", "%"),
        ("IPv6_address", "::ffff:10.0.0.1", "."),
        ("IPv6_address", "1234", "1234"),
        ("IPv6_address", "1:2:3:4:5:6:7:8:9", ":"),
        ("IPv6_address", "1:2:3:4:5:6:7:8::", "::"),
        ("IPv6_address", "::1:2:3:4:5:6:7:8", "8"),
        ("IPv6_address", "1::/", "/"),
    ];
    for logic in ["Ignore", "Accept"] {
        for (clause, word, _symbol) in cases {
            let text = filter(logic, &format!("{clause} {word}"));
            let expected = if clause == "IPv4_address" { v4 } else { v6 };
            let col = col(&text, 3, clause, word);
            match config::parse(&text, "a.conf") {
                Ok(p) => panic!(
                    "{logic} {clause} {word}: parsed, warnings {:?}",
                    warnings(&p)
                ),
                Err(e) => assert_eq!(
                    e.to_string(),
                    format!(
                        "a.conf:3:{col}: found `{word}', expected {expected}"
                    ),
                ),
            }
        }
    }
    // The obsolete IgnoreTrafficFor reads its list the same way.
    let text =
        format!("{GENERAL}}}\nIgnoreTrafficFor {{ IPv4_address 1.2.3 }}\n");
    let e = config::parse(&text, "o.conf").unwrap_err();
    let c = col(&text, 4, "IPv4_address", "1.2.3");
    assert_eq!(
        e.to_string(),
        format!("o.conf:4:{c}: found `1.2.3', expected {v4}")
    );
    // An empty value: the list's `}' where the address should be.
    let text = filter("Ignore", "IPv4_address");
    let e = config::parse(&text, "e.conf").unwrap_err();
    let c = col(&text, 3, "IPv4_address", "}");
    assert_eq!(
        e.to_string(),
        format!("e.conf:3:{c}: found `}}', expected {v4}")
    );
}

/// Words conntrackd reads as an address but rejects only warn, with its
/// text, and the daemon starts without them, as conntrackd does; the
/// others are taken as conntrackd takes them.
#[test]
fn a_filter_address_conntrackd_reads_but_rejects_is_a_warning() {
    let cases = [
        (
            "IPv4_address 300.1.1.1",
            "300.1.1.1 is not a valid IPv4, ignoring",
        ),
        (
            "IPv4_address 10.0.0.0/33",
            "10.0.0.0/33 is not a valid network, ignoring",
        ),
        (
            "IPv4_address 1.2.3.4/64",
            "1.2.3.4/64 is not a valid network, ignoring",
        ),
        ("IPv4_address ::1", "::1 is not a valid IPv4, ignoring"),
        // Read as a hexadecimal group by conntrackd's lexer.
        ("IPv4_address abcd", "abcd is not a valid IPv4, ignoring"),
        // conntrackd reads 08 as a bad octal number.
        (
            "IPv4_address 10.0.0.08",
            "10.0.0.08 is not a valid IPv4, ignoring",
        ),
        (
            "IPv6_address 10.0.0.1",
            "10.0.0.1 is not a valid IPv6, ignoring",
        ),
        (
            "IPv6_address ::1/129",
            "::1/129 is not a valid network, ignoring",
        ),
        ("IPv6_address abcd", "abcd is not a valid IPv6, ignoring"),
        ("IPv6_address 1234/64", "1234 is not a valid IPv6, ignoring"),
        ("IPv6_address 1:::2", "1:::2 is not a valid IPv6, ignoring"),
        (
            "IPv6_address 12345::1",
            "12345::1 is not a valid IPv6, ignoring",
        ),
        (
            "IPv6_address dead:beef",
            "dead:beef is not a valid IPv6, ignoring",
        ),
        (
            "IPv6_address 1:2:3:4:5:6::7:8",
            "1:2:3:4:5:6::7:8 is not a valid IPv6, ignoring",
        ),
    ];
    for (item, warning) in cases {
        let text = filter("Ignore", item);
        let p = config::parse(&text, "w.conf")
            .unwrap_or_else(|e| panic!("{item}: {e}"));
        let (clause, word) = item.split_once(' ').unwrap();
        let col = col(&text, 3, clause, word);
        assert_eq!(warnings(&p), [format!("w.conf:3:{col}: {warning}")]);
        let rule = p.config.general.filter.address.unwrap();
        assert_eq!(rule.logic, Logic::Ignore);
        assert!(rule.items.is_empty(), "{item}: {:?}", rule.items);
    }

    // Taken without a word, as by conntrackd.
    let text = filter(
        "Accept",
        "IPv4_address 10.0.0.1/24 IPv4_address 10.0.0.0/0 IPv6_address :: \
         IPv6_address 1:2:3:4:5:6:7:: IPv6_address FE80::ABCD \
         IPv6_address 1:2:3:4:5:6:7:8 IPv6_address ::/0",
    );
    let p = config::parse(&text, "ok.conf").unwrap();
    assert_eq!(warnings(&p), Vec::<String>::new());
    let rule = p.config.general.filter.address.unwrap();
    assert_eq!(rule.items.len(), 7);
    // Host bits under a prefix are masked off, as conntrackd compares
    // (address & mask) on both sides.
    let host_bits =
        config::parse(&filter("Ignore", "IPv4_address 10.0.0.1/24"), "h.conf")
            .unwrap();
    let items = &host_bits.config.general.filter.address.unwrap().items;
    assert!(items.contains(ip("10.0.0.77")));
    assert!(!items.contains(ip("10.0.1.1")));
}

/// The dedicated links' addresses: every word conntrackd refuses is
/// refused, and so is every one it only warns about. There conntrackd
/// starts with the address left at 0.0.0.0 (or ::): it sends the peer's
/// datagrams to this host, or binds the sync socket to every interface,
/// or (octal) to another address than the one written: a guard for
/// that deliberate difference.
#[test]
fn a_link_address_conntrackd_only_warns_about_is_refused() {
    let cases = [
        // conntrackd: syntax error, exit 1.
        ("UDP", "IPv4_Destination_Address", "1.2.3"),
        ("UDP", "IPv6_Destination_Address", "zz::1"),
        ("UDP", "IPv6_Destination_Address", "fe80::1%veth0"),
        ("TCP", "IPv6_address", "zz::1"),
        ("Multicast", "IPv4_address", "225.0.0"),
        ("Multicast", "IPv6_address", "ff02::50%veth0"),
        // conntrackd: `… is not a valid IPv4 address', starts.
        ("UDP", "IPv4_Destination_Address", "300.1.1.1"),
        ("UDP", "IPv4_Destination_Address", "192.0.2.2/24"),
        ("UDP", "IPv4_Destination_Address", "::1"),
        ("UDP", "IPv4_address", "300.1.1.1"),
        ("TCP", "IPv4_Destination_Address", "300.1.1.1"),
        ("UDP", "IPv6_Destination_Address", "fd00::2/64"),
        // conntrackd: silently 192.0.2.8 (inet_aton's octal).
        ("UDP", "IPv4_Destination_Address", "192.0.2.010"),
    ];
    for (kind, clause, word) in cases {
        let text = format!(
            "{GENERAL}}}\nSync {{\n  {kind} {{ {clause} {word} }}\n}}\n"
        );
        let e = config::parse(&text, "l.conf").unwrap_err().to_string();
        let col = col(&text, 5, clause, word);
        assert!(
            e.starts_with(&format!(
                "l.conf:5:{col}: found `{word}', expected an IPv"
            )),
            "{kind} {clause} {word}: {e}"
        );
    }
}

/// An IPv6 link address in dotted form (`::ffff:192.0.2.2`) or with a
/// zone is a syntax error in conntrackd (`symbol '.'`, `symbol '%'`,
/// exit 1): its lexer has no such token. The old parser took the
/// dotted form (the standard library reads it) and started.
#[test]
fn a_link_ipv6_address_in_dotted_form_is_refused() {
    let v6 = "an IPv6 address in hexadecimal groups (no dotted or %zone form)";
    let cases = [
        ("UDP", "IPv6_Destination_Address", "::ffff:192.0.2.2"),
        ("UDP", "IPv6_address", "::ffff:192.0.2.1"),
        ("TCP", "IPv6_Destination_Address", "64:ff9b::192.0.2.2"),
        ("Multicast", "IPv6_address", "ff02::1.2.3.4"),
        ("UDP", "IPv6_Destination_Address", "fe80::2%veth0"),
    ];
    for (kind, clause, word) in cases {
        let text = format!(
            "{GENERAL}}}\nSync {{\n  {kind} {{ {clause} {word} }}\n}}\n"
        );
        let col = col(&text, 5, clause, word);
        match config::parse(&text, "d.conf") {
            Ok(p) => panic!(
                "{kind} {clause} {word}: parsed, warnings {:?}",
                warnings(&p)
            ),
            Err(e) => assert_eq!(
                e.to_string(),
                format!("d.conf:5:{col}: found `{word}', expected {v6}"),
            ),
        }
    }
}

/// conntrackd ignores `IPv6_interface` whatever address token it holds
/// (`` `IPv6_interface' not required, ignoring``, and it starts), even
/// an IPv4 one or a bad one; only a word that is no token stops it. The
/// old parser refused every value but a valid IPv6 address.
#[test]
fn ipv6_interface_takes_any_address_token_with_the_warning() {
    for word in ["fd00::1", "10.0.0.1", "abcd", "300.1.1.1", "1:::2"] {
        let text = format!(
            "{GENERAL}}}\nSync {{\n  Mode FTFW {{ }}\n  Multicast {{ IPv6_address ff02::50 Group 3780 IPv6_interface {word} Interface s0 }}\n}}\n"
        );
        let p = config::parse(&text, "i.conf")
            .unwrap_or_else(|e| panic!("{word}: {e}"));
        let c = col(&text, 6, "3780 ", "IPv6_interface");
        assert_eq!(
            warnings(&p),
            [format!(
                "i.conf:6:{c}: `IPv6_interface' not required, ignoring"
            )],
            "{word}"
        );
    }
    for word in ["zz::1", "1234", "fe80::1%eth0", "::ffff:1.2.3.4"] {
        let text = format!(
            "{GENERAL}}}\nSync {{\n  Multicast {{ IPv6_interface {word} }}\n}}\n"
        );
        let e = config::parse(&text, "i.conf").unwrap_err().to_string();
        let c = col(&text, 5, "IPv6_interface", word);
        assert_eq!(
            e,
            format!(
                "i.conf:5:{c}: found `{word}', expected an address (the clause is ignored)"
            ),
        );
    }
}

/// A Multicast block that mixes families as conntrackd cannot open:
/// conntrackd takes the family of the first address clause, writes a
/// later group of the other family over the first one's bytes, warns,
/// and exits 1 at start (`can't open channel socket: Invalid
/// argument`). An IPv4_interface after an IPv6 group is only warned
/// about there, and the link works: so here. The old parser started
/// with the last group in all three refused cases.
#[test]
fn a_multicast_block_mixing_families_as_conntrackd_cannot_is_refused() {
    let block = |clauses: &str| {
        format!(
            "{GENERAL}}}\nSync {{\n  Mode FTFW {{ }}\n  Multicast {{ {clauses} Group 3780 Interface s0 }}\n}}\n"
        )
    };
    let refused = [
        (
            "IPv4_address 225.0.0.50 IPv6_address ff02::50",
            "IPv6_address",
            "the Multicast block has an IPv4 group (IPv4_address at 6:15) and an IPv6 one: conntrackd cannot open such a link; give one group",
        ),
        (
            "IPv6_address ff02::50 IPv4_address 225.0.0.50",
            "IPv4_address",
            "the Multicast block has an IPv6 group (IPv6_address at 6:15) and an IPv4 one: conntrackd cannot open such a link; give one group",
        ),
        (
            "IPv4_interface 192.0.2.1 IPv6_address ff02::50",
            "IPv6_address",
            "an IPv6 group after `IPv4_interface' (at 6:15): conntrackd takes the link as IPv4 and cannot open it; drop IPv4_interface (an IPv6 group is joined on Interface)",
        ),
    ];
    for (clauses, at, msg) in refused {
        let text = block(clauses);
        let c = col(&text, 6, "Multicast", at);
        match config::parse(&text, "m.conf") {
            Ok(p) => panic!("{clauses}: parsed, warnings {:?}", warnings(&p)),
            Err(e) => {
                assert_eq!(e.to_string(), format!("m.conf:6:{c}: {msg}"))
            }
        }
    }

    // After the group, as in conntrackd: a warning, with its text.
    let text = block("IPv6_address ff02::50 IPv4_interface 192.0.2.1");
    let p = config::parse(&text, "m.conf").unwrap();
    let c = col(&text, 6, "Multicast", "IPv4_interface");
    assert_eq!(
        warnings(&p),
        [format!(
            "m.conf:6:{c}: your multicast interface is IPv4 but is binded to an IPv6 interface? Surely, this is not what you want"
        )]
    );
    let sync = p.config.sync.unwrap();
    assert!(matches!(
        sync.channels[0].transport,
        config::Transport::Multicast { group, ipv4_interface: None, .. }
            if group == ip("ff02::50")
    ));
    // One family, in either order: no word.
    for clauses in [
        "IPv4_interface 192.0.2.1 IPv4_address 225.0.0.50",
        "IPv4_address 225.0.0.50 IPv4_interface 192.0.2.1",
        "IPv6_address ff02::50 IPv6_address ff02::51",
    ] {
        let p = config::parse(&block(clauses), "m.conf").unwrap();
        assert_eq!(warnings(&p), Vec::<String>::new(), "{clauses}");
    }
}

/// A part of an IPv4 address padded with zeros, `001`, is octal to
/// conntrackd (inet_aton) and decimal to a reader: below 8 the two agree,
/// and conntrackd takes it without a word (`IPv4_address 10.9.001.001`
/// in a UDP block bound its socket to 10.9.1.1; `01.2.3.4` in a Filter
/// drew no warning). ctsyncd refused such a link address and dropped such
/// a Filter address with a warning. A padded part of 8 or more (`010`,
/// 8 to conntrackd) stays refused above.
#[test]
fn zero_padded_ipv4_parts_below_8_are_taken() {
    let text = filter(
        "Ignore",
        "IPv4_address 192.168.001.001 IPv4_address 010.0.0.0/8 \
         IPv4_address 000.00.0.007/32",
    );
    let p = config::parse(&text, "z.conf").unwrap();
    let col = col(&text, 3, "IPv4_address 192.168.001.001 ", "010");
    assert_eq!(
        warnings(&p),
        [format!(
            "z.conf:3:{col}: 010.0.0.0 is not a valid IPv4, ignoring"
        )]
    );
    let items = p.config.general.filter.address.unwrap().items;
    assert!(items.contains(ip("192.168.1.1")));
    assert!(items.contains(ip("0.0.0.7")));
    assert_eq!(items.len(), 2);

    let text = format!(
        "{GENERAL}}}\nSync {{\n  UDP {{ IPv4_address 10.9.001.001 \
         IPv4_Destination_Address 10.9.001.002 Port 3780 Interface s1 }}\n}}\n"
    );
    let p = config::parse(&text, "l.conf").unwrap_or_else(|e| panic!("{e}"));
    let sync = p.config.sync.unwrap();
    assert_eq!(
        sync.channels[0].transport,
        config::Transport::Udp {
            local: Some(ip("10.9.1.1")),
            dest: ip("10.9.1.2"),
            port: 3780,
        }
    );
}
