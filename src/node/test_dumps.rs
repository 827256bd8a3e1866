//! Dumps through the control socket: a live (kernel) dump as one JSON
//! array and in the kernel's line format, a large dump answered in parts
//! between other requests, and dumps paced by their readers (a client
//! that leaves frees its place).

use super::test::{Fw, cfg, event, ftp_master, node, status_of, tcp, text};
use super::*;
use crate::control::proto::{
    Cache as Which, Format, Reply, Request, StatsView, Status, Table,
};
use crate::kernel::codec::{Kind, Object};
use crate::kernel::origin::Origin;
use crate::model::Tuple;

#[test]
fn a_live_dump_in_json_is_one_array() {
    // NOTRACK without an internal cache: `-i --json` is a kernel dump that
    // comes in parts; the client must still get README's array.
    let c = cfg(
        "",
        "NOTRACK { DisableInternalCache On }",
        "ExpectationSync On",
    );
    let mut fw = node(c, 1);
    let now = Instant::from_millis(0);
    let o = fw.control(
        now,
        Request::Dump {
            cache: Which::Internal,
            table: Table::Ct,
            format: Format::Json,
        },
    );
    let purpose = o.actions[0].purpose;
    let ct = |port| {
        Object::Ct(Conntrack::new(tcp("10.0.0.1", "10.0.0.2", port, 80)))
    };
    let mut json = String::new();
    for (objects, last) in [(vec![ct(1), ct(2)], false), (vec![ct(3)], true)] {
        let done = Done::Dumped { objects, last };
        json.push_str(&text(&fw.job(now, purpose, done)));
    }
    assert!(json.starts_with("[{\"orig\":"), "{json}");
    assert!(json.ends_with("}]\n"), "{json}");
    assert_eq!(json.matches("},{\"orig\":").count(), 2, "{json}");
    // Nothing in the kernel: still an array.
    let o = fw.control(
        now,
        Request::Dump {
            cache: Which::Internal,
            table: Table::Expect,
            format: Format::Json,
        },
    );
    let purpose = o.actions[0].purpose;
    let done = Done::Dumped {
        objects: Vec::new(),
        last: true,
    };
    assert_eq!(text(&fw.job(now, purpose, done)), "[]\n");
    // No expectations synced: an empty array too (plain: no output).
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    let o = fw.control(
        now,
        Request::Dump {
            cache: Which::External,
            table: Table::Expect,
            format: Format::Json,
        },
    );
    assert_eq!(text(&o), "[]\n");
    assert_eq!(o.replies.last(), Some(&Reply::Done(Status::Ok)));
}

#[test]
fn a_live_dump_line_is_the_kernels_with_its_timeout_and_mark() {
    // conntrackd prints its bypass's `-i` as the kernel table
    // (NFCT_O_DEFAULT): the timeout after the protocol number, and the
    // mark, which the kernel always reports (reference 2.4.1).
    let c = cfg("", "NOTRACK { DisableInternalCache On }", "");
    let mut fw = node(c, 1);
    let now = Instant::from_millis(0);
    let o = fw.control(
        now,
        Request::Dump {
            cache: Which::Internal,
            table: Table::Ct,
            format: Format::Plain,
        },
    );
    let purpose = o.actions[0].purpose;
    let mut m = ftp_master();
    m.timeout = Some(431_997);
    let done = Done::Dumped {
        objects: vec![Object::Ct(m)],
        last: true,
    };
    assert_eq!(
        text(&fw.job(now, purpose, done)),
        "tcp      6 431997 ESTABLISHED src=192.168.0.2 dst=192.168.1.2 sport=40000 dport=21 src=192.168.1.2 dst=192.168.1.100 sport=21 dport=40000 [ASSURED] mark=0 helper=ftp\n"
    );
}

/// `n` UDP flows in the internal cache, as the start-up dump brings them.
fn cache_udp_flows(fw: &mut Fw, n: u32) {
    for p in 0..n {
        let mut ct = Conntrack::new(Tuple {
            proto: 17,
            ..tcp(
                "10.0.0.1",
                "10.0.0.2",
                (p % 60_000) as u16,
                53 + (p / 60_000) as u16,
            )
        });
        ct.reply = Some(ct.orig.inverse());
        fw.kernel(
            Instant::from_millis(0),
            event(Kind::New, Object::Ct(ct)),
            Origin::Flush,
        );
    }
}

/// `client`'s `-i`.
fn dump(client: ClientId) -> Input<'static> {
    Input::Control {
        client,
        request: Request::Dump {
            cache: Which::Internal,
            table: Table::Ct,
            format: Format::Plain,
        },
        links: &[],
        control: Default::default(),
    }
}

#[test]
fn a_large_dump_is_answered_in_parts_between_other_work() {
    let mut fw = node(cfg("HashLimit 20000", "FTFW { }", ""), 1);
    cache_udp_flows(&mut fw, 10_000);
    for (format, lines) in [(Format::Plain, 10_000), (Format::Json, 1)] {
        let dump = Request::Dump {
            cache: Which::Internal,
            table: Table::Ct,
            format,
        };
        let first = fw.control(Instant::from_millis(1), dump);
        assert!(status_of(&first).is_none(), "not complete in one part");
        let mut text = text(&first);
        // Each turn of the loop renders one more part; a -s in between is
        // answered at once.
        let mut turns = 0;
        loop {
            assert_eq!(fw.poll_at(), fw.started, "the next part is due now");
            let stats = Request::Stats {
                view: StatsView::General,
                format: Format::Plain,
            };
            assert_eq!(
                status_of(&fw.control(Instant::from_millis(2), stats)),
                Some(&Status::Ok)
            );
            let o = Fw::outcome(fw.feed(Instant::from_millis(2), Input::Timer));
            text.push_str(&self::text(&o));
            turns += 1;
            if status_of(&o) == Some(&Status::Ok) {
                break;
            }
            assert!(turns < 10);
        }
        assert_eq!(turns, 10_000 / dumps::DUMP_PART);
        assert_eq!(text.lines().count(), lines, "{format:?}");
        if format == Format::Json {
            assert!(text.starts_with("[{") && text.ends_with("}]\n"));
            assert_eq!(text.matches("{\"orig\":").count(), 10_000);
        }
    }
}

#[test]
fn a_dump_waits_for_its_reader_and_a_client_that_leaves_frees_its_place() {
    // Enough entries that no dump completes within this test.
    let mut fw = node(cfg("HashLimit 100000", "FTFW { }", ""), 1);
    cache_udp_flows(&mut fw, 40_000);
    // Clients 1..=4 take the four places; client 5 waits its turn.
    for c in 1..=5 {
        fw.feed(Instant::from_millis(1), dump(c));
    }
    assert_eq!(fw.dumps_pending(), 5);
    for c in 1..=4 {
        fw.dump_paced(c, true);
    }
    assert_ne!(fw.poll_at(), fw.started, "every reader is behind");
    let o = fw.feed(Instant::from_millis(2), Input::Timer);
    assert!(o.replies.is_empty(), "no part for a reader that is behind");
    fw.dump_paced(2, false);
    let o = fw.feed(Instant::from_millis(2), Input::Timer);
    assert!(o.replies.iter().all(|(c, _)| *c == 2), "{:?}", o.replies);
    assert_eq!(o.replies.len(), 1);
    // Client 1 leaves: client 5 is served at once, not after client 1's
    // dump was rendered for nobody.
    fw.client_gone(1);
    assert_eq!(fw.dumps_pending(), 4);
    let o = fw.feed(Instant::from_millis(3), Input::Timer);
    let to: Vec<ClientId> = o.replies.iter().map(|(c, _)| *c).collect();
    assert!(to == [2] || to == [5], "{to:?}");
    fw.dump_paced(2, true);
    let o = fw.feed(Instant::from_millis(3), Input::Timer);
    let to: Vec<ClientId> = o.replies.iter().map(|(c, _)| *c).collect();
    assert_eq!(to, [5]);
    fw.client_gone(5);
    assert_eq!(fw.dumps_pending(), 3);
}

#[test]
fn large_dumps_copies_go_back_to_the_system_once_no_dump_runs() {
    let mut fw = node(cfg("HashLimit 20000", "FTFW { }", ""), 1);
    cache_udp_flows(&mut fw, RELEASE_AFTER as u32);
    let t = Instant::from_millis(1);
    // Whatever the flows' arrival left to release goes first.
    for _ in 0..10 {
        fw.feed(t, Input::Timer);
    }
    assert!(!fw.feed(t, Input::Timer).release_memory);
    // Two dumps at once: the first to end hands nothing back (the other
    // still holds its copy), the last does.
    let mut released = Vec::new();
    let o = fw.feed(t, dump(1));
    released.push((o.replies.len(), o.release_memory));
    let o = fw.feed(t, dump(2));
    released.push((o.replies.len(), o.release_memory));
    for _ in 0..20 {
        if fw.dumps_pending() == 0 {
            break;
        }
        let o = fw.feed(t, Input::Timer);
        let ended = o
            .replies
            .iter()
            .filter(|(_, r)| matches!(r, Reply::Done(_)))
            .count();
        released.push((ended, o.release_memory));
    }
    assert_eq!(fw.dumps_pending(), 0);
    let releases: Vec<usize> = released
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.1.then_some(i))
        .collect();
    assert_eq!(releases, [released.len() - 1], "{released:?}");
    // A client that leaves its large dump: the same, once no dump runs.
    fw.feed(t, dump(3));
    fw.dump_paced(3, true);
    assert!(!fw.feed(t, Input::Timer).release_memory);
    fw.client_gone(3);
    assert!(fw.feed(t, Input::Timer).release_memory);
    // A small dump is not worth a trim.
    let mut fw = node(cfg("HashLimit 20000", "FTFW { }", ""), 1);
    cache_udp_flows(&mut fw, 100);
    for _ in 0..10 {
        fw.feed(t, Input::Timer);
    }
    let o = fw.feed(t, dump(1));
    assert_eq!(o.replies.last(), Some(&(1, Reply::Done(Status::Ok))));
    assert!(!o.release_memory);
}
