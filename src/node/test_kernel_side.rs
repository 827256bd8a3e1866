//! The kernel side against conntrackd's event handling: an UPDATE merged
//! into the cached entry (what it leaves out is kept), a NEW replacing it
//! whole, DESTROYs without an internal cache, and the counters events
//! move (traffic processed, events received and filtered, the bypass's,
//! failed deletions).

use super::*;
use crate::config;
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::{L4, ProtoInfo, Tuple, status};
use crate::wire::ct_key_of;

fn node() -> Node {
    node_with("")
}

fn node_with(general: &str) -> Node {
    let text = format!(
        "General {{ UNIX {{ Path /x }} {general} }}\nSync {{ Mode FTFW {{ }}\nUDP {{ IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }} }}"
    );
    let cfg = config::parse(&text, "t.conf").unwrap().config;
    Node::new(cfg, 1, 1, 1472, 212_992, Instant::from_millis(0))
}

fn event(kind: Kind, ct: &Conntrack) -> Input<'static> {
    let msg = Message {
        kind,
        object: Object::Ct(ct.clone()),
        port: 0,
        seq: 0,
    };
    Input::Kernel(msg, Origin::NotMe)
}

/// An established TCP flow with window scaling, as its NEW event has it.
fn established() -> Conntrack {
    let mut ct = Conntrack::new(Tuple {
        src: "192.168.0.2".parse().unwrap(),
        dst: "192.168.1.2".parse().unwrap(),
        proto: 6,
        l4: L4::Ports {
            src: 40000,
            dst: 443,
        },
    });
    ct.reply = Some(ct.orig.inverse());
    ct.status = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;
    ct.timeout = Some(432_000);
    ct.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 7,
        flags_orig: 0x23,
        flags_reply: 0x23,
    };
    ct
}

/// The kernel puts CTA_PROTOINFO in an UPDATE event only when the TCP
/// state changed (IPCT_PROTOINFO): a CONNMARK or label change, an ASSURED
/// bit of a picked-up flow come without it. The cached state, and the
/// window scaling the peer needs to carry the flow after a failover,
/// stay.
#[test]
fn an_update_without_protocol_state_keeps_the_cached_one() {
    let mut n = node();
    let t0 = Instant::from_millis(0);
    n.handle(t0, event(Kind::New, &established()));
    let mut marked = established();
    marked.proto_info = ProtoInfo::None;
    marked.mark = 5;
    n.handle(Instant::from_millis(10), event(Kind::Update, &marked));
    let e = n.internal_ct.get(&ct_key_of(&marked)).unwrap();
    assert_eq!(e.value.mark, 5);
    assert_eq!(e.value.proto_info, established().proto_info);
}

/// conntrackd adds a DESTROY's counters to "traffic processed" only when
/// the flow was cached (reference §5.2: not cached, no traffic stats): a
/// flow the Filter ignores (the router's own traffic, say) is not counted.
#[test]
fn traffic_processed_counts_only_cached_flows() {
    let mut n =
        node_with("Filter { Address Ignore { IPv4_address 192.168.0.2 } }");
    let t0 = Instant::from_millis(0);
    let mut ignored = established();
    n.handle(t0, event(Kind::New, &ignored));
    assert!(n.internal_ct.is_empty());
    ignored.counters = Some(crate::model::Counters {
        orig_packets: 3,
        orig_bytes: 300,
        reply_packets: 2,
        reply_bytes: 200,
    });
    n.handle(t0, event(Kind::Destroy, &ignored));
    assert_eq!(
        (n.counters.traffic_bytes, n.counters.traffic_packets),
        (0, 0)
    );
    // A cached flow's are.
    let mut cached = ignored.clone();
    cached.orig.src = "192.168.0.3".parse().unwrap();
    cached.reply = Some(cached.orig.inverse());
    let fresh = Conntrack {
        counters: None,
        ..cached.clone()
    };
    n.handle(t0, event(Kind::New, &fresh));
    n.handle(t0, event(Kind::Destroy, &cached));
    assert_eq!(
        (n.counters.traffic_bytes, n.counters.traffic_packets),
        (500, 5)
    );
}

/// A NEW event is a new flow (its tuple reused after a DESTROY the
/// overrun lost): it carries all its state, and what the old flow had
/// (an FTP helper's sequence adjustment, its labels) is not its own.
/// conntrackd deletes the old entry and inserts the new one.
#[test]
fn a_new_event_replaces_the_cached_flow_whole() {
    let mut n = node();
    let mut old = established();
    old.helper = Some("ftp".try_into().unwrap());
    old.seq_adj = Some(
        [crate::model::SeqAdj {
            correction_pos: 1000,
            offset_before: 0,
            offset_after: 4,
        }; 2],
    );
    old.labels = Some([1; 16]);
    n.handle(Instant::from_millis(0), event(Kind::New, &old));
    let reused = established();
    n.handle(Instant::from_millis(10), event(Kind::New, &reused));
    let e = n.internal_ct.get(&ct_key_of(&reused)).unwrap();
    assert_eq!(e.value, reused);
    assert_eq!(e.since, Instant::from_millis(10));
}

/// `events received` and `events filtered` count the event socket's
/// messages, as conntrackd's event handler does; the entries of a dump
/// (start-up, -R, an overrun's resync, every PollSecs period) are not
/// events, and its dump handler counts none of them.
#[test]
fn dumped_entries_are_not_counted_as_events() {
    let mut n =
        node_with("Filter { Address Ignore { IPv4_address 192.168.0.2 } }");
    let t0 = Instant::from_millis(0);
    let ignored = established();
    let mut kept = established();
    kept.orig.src = "192.168.0.3".parse().unwrap();
    kept.reply = Some(kept.orig.inverse());
    let startup = Purpose::Resync {
        client: None,
        conntracks: true,
        expectations: false,
        send: false,
        announce_new: false,
    };
    n.handle(t0, Input::Timer);
    super::test_support::dumped(&mut n, t0, startup, &[ignored.clone(), kept]);
    assert_eq!(n.internal_ct.len(), 1);
    assert_eq!(
        (n.counters.events_received, n.counters.events_filtered),
        (0, 0)
    );
    n.handle(t0, event(Kind::Update, &ignored));
    assert_eq!(
        (n.counters.events_received, n.counters.events_filtered),
        (1, 1)
    );
}

/// Without an internal cache (NOTRACK's DisableInternalCache) nothing
/// stays staged once sent, so a DESTROY cannot be checked against a
/// cache: every one is sent, as conntrackd's bypass sends them (it was
/// for conntracks; an expectation's went only while its NEW waited to be
/// sent, and the peer kept it, to commit after a failover). A conntrack's
/// must still get through the Filter (see the last test).
#[test]
fn without_internal_cache_an_expectations_destroy_is_sent() {
    use crate::model::Expect;
    use crate::wire::{Msg, exp_key_of};
    let text = "General { UNIX { Path /x } }\nSync { Mode NOTRACK { DisableInternalCache On }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }\nOptions { ExpectationSync On } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    let mut n = Node::new(cfg, 1, 1, 1472, 212_992, Instant::from_millis(0));
    let master = established();
    let x = Expect::new(
        master.orig,
        Tuple {
            l4: L4::Ports { src: 0, dst: 50000 },
            ..master.orig
        },
        Tuple {
            src: "255.255.255.255".parse().unwrap(),
            dst: "255.255.255.255".parse().unwrap(),
            proto: 6,
            l4: L4::Ports {
                src: 0,
                dst: 0xffff,
            },
        },
    );
    let exp = |kind| Message {
        kind,
        object: Object::Exp(x.clone()),
        port: 0,
        seq: 0,
    };
    let t = Instant::from_millis;
    n.handle(t(0), Input::Kernel(exp(Kind::New), Origin::NotMe));
    let out = n.handle(
        t(1),
        Input::Job(Completion {
            purpose: Purpose::MasterCheck { id: 0 },
            done: Done::Dumped {
                objects: vec![Object::Ct(master)],
                last: true,
            },
        }),
    );
    let sent = super::test_support::sent_from(&mut n, t(1), &out);
    assert!(matches!(sent[..], [Msg::ExpNew(_)]), "{sent:?}");
    let out =
        n.handle(t(2000), Input::Kernel(exp(Kind::Destroy), Origin::NotMe));
    let sent = super::test_support::sent_from(&mut n, t(2000), &out);
    assert_eq!(sent, [Msg::ExpDel(exp_key_of(&x))]);
}

/// `internal bypass:` (-s without an internal cache) counts the events
/// sent, as conntrackd's bypass does: one NEW, one UPDATE, one DESTROY of
/// a flow, each after the previous was sent.
#[test]
fn the_bypass_counts_each_event_sent() {
    use crate::control::proto::{Format, StatsView};
    let text = "General { UNIX { Path /x } }\nSync { Mode NOTRACK { DisableInternalCache On }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    let mut n = Node::new(cfg, 1, 1, 1472, 212_992, Instant::from_millis(0));
    let ct = established();
    for (i, kind) in [Kind::New, Kind::Update, Kind::Destroy]
        .into_iter()
        .enumerate()
    {
        let now = Instant::from_millis(1000 * i as u64);
        let out = n.handle(now, event(kind, &ct));
        let sent = super::test_support::sent_from(&mut n, now, &out);
        assert_eq!(sent.len(), 1, "{kind:?}: {sent:?}");
    }
    let snap = n.snapshot(Instant::from_millis(5000), &[], false);
    let s = super::render::stats(&snap, StatsView::General, Format::Plain);
    assert!(
        s.starts_with("internal bypass:\nconnections new:\t\t           1\nconnections updated:\t\t           1\nconnections destroyed:\t\t           1\n"),
        "{s}"
    );
}

/// A DESTROY of a flow this node never cached (the Filter ignores it; the
/// kernel side does not filter DESTROYs, so that no cached flow misses
/// its end) is no failed deletion: conntrackd's event handler drops it
/// unseen, and its `-s` never counts a failed one.
#[test]
fn a_destroy_of_a_flow_never_cached_is_no_failed_deletion() {
    let mut n =
        node_with("Filter { Address Ignore { IPv4_address 192.168.0.2 } }");
    let t0 = Instant::from_millis(0);
    n.handle(t0, event(Kind::New, &established()));
    n.handle(t0, event(Kind::Destroy, &established()));
    let st = n.internal_ct.stats;
    assert_eq!((st.del_ok, st.del_fail, st.del_enoent), (0, 0, 0));
}

/// Without an internal cache, a DESTROY goes only for a flow the Filter
/// could have let through: its protocol and addresses never change, so one
/// they reject was never sent (conntrackd's event handler filters every
/// event before its bypass). Its state is not judged: the flow may have
/// been sent while in another one.
#[test]
fn without_internal_cache_a_destroy_of_an_ignored_flow_is_not_sent() {
    let text = "General { UNIX { Path /x } Filter { Protocol Accept { TCP } State Accept { ESTABLISHED for TCP } } }\nSync { Mode NOTRACK { DisableInternalCache On }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    let mut n = Node::new(cfg, 1, 1, 1472, 212_992, Instant::from_millis(0));
    let mut udp = established();
    udp.orig.proto = 17;
    udp.reply = Some(udp.orig.inverse());
    udp.proto_info = ProtoInfo::None;
    let mut time_wait = established();
    if let ProtoInfo::Tcp { state, .. } = &mut time_wait.proto_info {
        *state = 7;
    }
    for (i, (ct, sends)) in
        [(&udp, false), (&time_wait, true)].into_iter().enumerate()
    {
        let now = Instant::from_millis(1000 * i as u64);
        let out = n.handle(now, event(Kind::Destroy, ct));
        let sent = super::test_support::sent_from(&mut n, now, &out);
        assert_eq!(sent.len(), usize::from(sends), "{ct:?}: {sent:?}");
    }
}

/// Without an internal cache, `-f` (the notify script's, right after its
/// `-c`) and the `-t` purge leave what waits to be sent: the staged
/// changes are the kernel's events, not a cache. Flushed before the
/// transmit, each went to the peer as a deletion (a key no longer staged
/// reads as gone): the peer dropped flows that live on.
#[test]
fn without_internal_cache_a_flush_leaves_the_staged_events_to_be_sent() {
    use crate::control::proto::{CacheSel, Request};
    use crate::wire::Msg;
    let text = "General { UNIX { Path /x } }\nSync { Mode NOTRACK { DisableInternalCache On PurgeTimeout 1 }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    let control = |n: &mut Node, now, request| {
        let input = Input::Control {
            client: 1,
            request,
            links: &[],
            control: Default::default(),
        };
        n.handle(now, input)
    };
    for flush in ["-f", "-f internal", "-t"] {
        let mut n = Node::new(
            cfg.clone(),
            1,
            1,
            1472,
            212_992,
            Instant::from_millis(0),
        );
        let t0 = Instant::from_millis(0);
        if flush == "-t" {
            control(&mut n, t0, Request::ResetTimers);
        }
        // Staged by the event; the transmit waits for the coalescing.
        let now = Instant::from_millis(1000);
        let out = n.handle(now, event(Kind::New, &established()));
        assert!(out.datagrams.is_empty(), "{flush}: sent at once");
        let out = match flush {
            "-f" => control(&mut n, now, Request::FlushCache(CacheSel::All)),
            "-f internal" => {
                control(&mut n, now, Request::FlushCache(CacheSel::Internal))
            }
            _ => n.handle(now, Input::Timer),
        };
        let sent = super::test_support::sent_from(&mut n, now, &out);
        assert!(matches!(sent[..], [Msg::CtNew(_)]), "{flush}: {sent:?}");
    }
}

/// With an internal cache, `-f` and `-f internal` right after an event
/// (inside the transmit's coalescing, 2 ms at most) sent the waiting
/// change as a deletion: the flushed key read as gone. conntrackd sends
/// each event as it comes, so its `-f` never turns one into a DEL. The
/// change now leaves before the flush.
#[test]
fn a_cache_flush_sends_what_waits_before_it() {
    use crate::control::proto::{CacheSel, Request};
    use crate::wire::Msg;
    for sel in [CacheSel::All, CacheSel::Internal] {
        let mut n = node();
        let now = Instant::from_millis(1000);
        let out = n.handle(now, event(Kind::New, &established()));
        assert!(out.datagrams.is_empty(), "coalesced");
        let input = Input::Control {
            client: 1,
            request: Request::FlushCache(sel),
            links: &[],
            control: Default::default(),
        };
        let out = n.handle(now, input);
        let sent = super::test_support::sent_from(&mut n, now, &out);
        assert!(matches!(sent[..], [Msg::CtNew(_)]), "{sel:?}: {sent:?}");
        assert!(n.internal_ct.is_empty(), "{sel:?}: flushed all the same");
    }
}
