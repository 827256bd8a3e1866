//! `-F` flushes conntracks in every zone, directional ones too: a zone
//! set for the original direction only (`ct original zone set N`) puts
//! the original tuple in zone N and the reply tuple in zone 0, and the
//! kernel reports it as CTA_TUPLE_ZONE inside CTA_TUPLE_ORIG, without
//! CTA_ZONE. conntrackd 1.4.7's `-F` deletes it (checked). Needs root;
//! skipped otherwise.

mod common;

use common::fw::{Fw, udp_link};

#[test]
fn flush_deletes_conntracks_in_directional_zones() {
    let Some((a, _b)) = common::pair("zf") else {
        return;
    };
    let sync = format!("Mode FTFW {{ }}\n{}", udp_link("10.9.0.1", "10.9.0.2"));
    let fw = Fw::start(&a, "zf", "", &sync);
    for (src, zone) in [
        ("10.1.0.1", "--orig-zone 5"),
        ("10.1.0.2", "--reply-zone 6"),
        ("10.1.0.3", "--zone 7"),
        ("10.1.0.4", ""),
    ] {
        a.sh(&format!(
            "conntrack -I -p udp -s {src} -d 10.2.0.1 --sport 1000 --dport 53 -t 300 {zone} 2>/dev/null"
        ));
    }
    let flushed = fw.cli(&["-F"]);
    assert!(flushed.status.success(), "{flushed:?}");
    let left = a.sh("conntrack -L 2>/dev/null");
    assert_eq!(left, "", "left after -F: {left}");
}
