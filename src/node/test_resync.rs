//! Resynchronisations: a resync request (`-n`) answered with a bulk, and
//! `-B` (neither in ALARM); a kernel resync adding and purging without
//! sending; the resync after a netlink overrun, once the burst is over,
//! after thirty seconds of a burst that never ends, or after
//! NetlinkOverrunResync; a failed overrun resync tried again.

use super::test::{self, cfg, event, flow, ftp_master, node, status_of, tcp};
use super::*;
use crate::control::proto::{CacheSel, Request, Status};
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::Tuple;
use crate::wire::ct_key_of;

/// 20 conntracks in `fw`'s internal cache, as a kernel dump brings them
/// (nothing queued for the peer).
fn twenty_flows(fw: &mut test::Fw) {
    for p in 1..=20 {
        let mut ct = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", p, 80));
        ct.reply = Some(ct.orig.inverse());
        fw.kernel(
            Instant::from_millis(0),
            event(Kind::New, Object::Ct(ct)),
            Origin::Flush,
        );
    }
}

#[test]
fn resync_request_and_bulk() {
    let c = cfg("", "NOTRACK { }", "");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    twenty_flows(&mut fw1);
    assert_eq!(
        fw1.engine.queue_lengths().0,
        0,
        "-R style population sends nothing"
    );
    assert_eq!(
        status_of(
            &fw2.control(Instant::from_millis(0), Request::RequestResync)
        ),
        Some(&Status::Ok)
    );
    flow(&mut fw2, &mut fw1, Instant::from_millis(0));
    flow(&mut fw1, &mut fw2, Instant::from_millis(0));
    assert_eq!(fw2.external_ct.len(), 20);
    fw2.control(
        Instant::from_millis(0),
        Request::FlushCache(CacheSel::External),
    );
    assert_eq!(
        status_of(&fw1.control(Instant::from_millis(0), Request::BulkSend)),
        Some(&Status::Ok)
    );
    flow(&mut fw1, &mut fw2, Instant::from_millis(0));
    assert_eq!(fw2.external_ct.len(), 20);
    // ALARM: -n and -B do nothing, and say so.
    let mut alarm = node(cfg("", "ALARM { }", ""), 3);
    assert!(matches!(
        status_of(
            &alarm.control(Instant::from_millis(0), Request::RequestResync)
        ),
        Some(Status::NotSupported(_))
    ));
    assert!(matches!(
        status_of(&alarm.control(Instant::from_millis(0), Request::BulkSend)),
        Some(Status::NotSupported(_))
    ));
}

#[test]
fn kernel_resync_adds_and_purges_without_sending() {
    let c = cfg("", "FTFW { }", "");
    let mut fw = node(c, 1);
    let old = ftp_master();
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(old)),
        Origin::Flush,
    );
    let mut fresh = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", 1, 2));
    fresh.reply = Some(fresh.orig.inverse());
    fw.resync_kernel(
        Instant::from_millis(0),
        vec![Object::Ct(fresh.clone())],
        true,
        false,
        false,
    );
    assert_eq!(fw.internal_ct.len(), 1);
    assert!(fw.internal_ct.contains(&ct_key_of(&fresh)));
    assert_eq!(fw.engine.queue_lengths().0, 0);
    // Overrun resync sends.
    fw.resync_kernel(Instant::from_millis(0), vec![], true, false, true);
    assert_eq!(
        fw.engine.queue_lengths().0,
        1,
        "the vanished entry is sent as a DEL"
    );
}

fn resync_jobs(jobs: &[Job]) -> usize {
    jobs.iter()
        .filter(|j| {
            matches!(
                j.purpose,
                Purpose::Resync {
                    send: true,
                    client: None,
                    ..
                }
            )
        })
        .count()
}

fn udp_event(port: u16) -> Message {
    let mut ct = Conntrack::new(Tuple {
        proto: 17,
        ..tcp("10.0.0.1", "10.0.0.2", port, 53)
    });
    ct.reply = Some(ct.orig.inverse());
    event(Kind::New, Object::Ct(ct))
}

#[test]
fn overrun_resyncs_as_soon_as_the_burst_is_over() {
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    fw.feed(Instant::from_millis(0), Input::Overrun { buffer: 1 << 20 });
    // Events keep coming: the burst is not over.
    for t in [100, 250, 400] {
        assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(t))), 0);
        fw.kernel(Instant::from_millis(t), udp_event(t as u16), Origin::NotMe);
    }
    // 200 ms without an event: the resync runs, and only once.
    assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(599))), 0);
    assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(600))), 1);
    assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(5_000))), 0);
    assert_eq!(fw.counters.kernel_resyncs, 1);
}

#[test]
fn a_burst_that_never_ends_is_resynced_after_thirty_seconds() {
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    fw.feed(Instant::from_millis(0), Input::Overrun { buffer: 1 << 20 });
    let mut jobs = 0;
    for t in (100..=31_000).step_by(100) {
        fw.kernel(
            Instant::from_millis(t),
            udp_event((t / 100) as u16),
            Origin::NotMe,
        );
        jobs += resync_jobs(&fw.tick(Instant::from_millis(t)));
        if jobs > 0 {
            assert_eq!(t, 30_000);
            break;
        }
    }
    assert_eq!(jobs, 1);
}

#[test]
fn an_explicit_overrun_resync_delay_wins() {
    let mut fw = node(cfg("NetlinkOverrunResync 5", "FTFW { }", ""), 1);
    fw.feed(Instant::from_millis(0), Input::Overrun { buffer: 1 << 20 });
    assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(1_000))), 0);
    assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(5_000))), 1);
    let mut off = node(cfg("NetlinkOverrunResync Off", "FTFW { }", ""), 1);
    off.feed(Instant::from_millis(0), Input::Overrun { buffer: 1 << 20 });
    assert_eq!(resync_jobs(&off.tick(Instant::from_millis(60_000))), 0);
}

/// `-s ready`: ready until `-n`, not ready (exit status 2) until the
/// peer said its bulk was delivered, and a commit (`-c`, a takeover)
/// ends the wait.
#[test]
fn ready_follows_the_resync_and_a_commit_ends_the_wait() {
    use crate::control::proto::{Format, StatsView, Target};
    let ready = |fw: &mut test::Fw, at: u64, format| {
        let o = fw.control(
            Instant::from_millis(at),
            Request::Stats {
                view: StatsView::Ready,
                format,
            },
        );
        (test::text(&o), status_of(&o).cloned())
    };
    let c = cfg("", "FTFW { }", "");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    twenty_flows(&mut fw1);
    assert_eq!(
        ready(&mut fw2, 0, Format::Plain),
        ("ready\n".into(), Some(Status::Ok))
    );
    fw2.control(Instant::from_millis(1000), Request::RequestResync);
    let (text, status) = ready(&mut fw2, 4000, Format::Plain);
    assert_eq!(
        text,
        "not ready: waiting for the other node's resync (asked 3 s ago)\n"
    );
    assert_eq!(status, Some(Status::Failed("not ready".into())));
    let (json, _) = ready(&mut fw2, 4000, Format::Json);
    assert_eq!(
        json,
        "{\"ready\":false,\"asked_secs_ago\":3,\"peer_says_when_complete\":true}\n"
    );
    let mut at = 4000;
    while ready(&mut fw2, at, Format::Plain).1 != Some(Status::Ok) {
        assert!(at < 20_000, "never ready");
        flow(&mut fw2, &mut fw1, Instant::from_millis(at));
        flow(&mut fw1, &mut fw2, Instant::from_millis(at));
        at += 250;
    }
    assert_eq!(fw2.external_ct.len(), 20);
    assert_eq!(fw2.engine.stats().resyncs_complete, 1);
    // Asked again, then the node takes over: it waits for nothing.
    fw2.control(Instant::from_millis(at), Request::RequestResync);
    assert_eq!(
        ready(&mut fw2, at, Format::Plain).1,
        Some(Status::Failed("not ready".into()))
    );
    fw2.control(Instant::from_millis(at), Request::Commit(Target::All));
    assert_eq!(
        ready(&mut fw2, at, Format::Plain),
        ("ready\n".into(), Some(Status::Ok))
    );
}

/// An overrun's resync whose dump fails is tried again: until one
/// succeeds the internal cache is known to miss what the overrun lost,
/// and the peer has not heard of it. At most one dump per retry delay,
/// and none once a later resync succeeded.
#[test]
fn a_failed_overrun_resync_is_tried_again() {
    let mut fw = node(cfg("NetlinkOverrunResync 7", "FTFW { }", ""), 1);
    fw.feed(Instant::from_millis(0), Input::Overrun { buffer: 1 << 20 });
    let jobs = fw.tick(Instant::from_millis(7_000));
    let failed = jobs
        .into_iter()
        .find(|j| matches!(j.purpose, Purpose::Resync { .. }))
        .expect("the overrun's resync");
    fw.job(
        Instant::from_millis(7_010),
        failed.purpose,
        Done::Failed("Cannot allocate memory".into()),
    );
    assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(14_000))), 0);
    let again = fw.tick(Instant::from_millis(14_010));
    assert_eq!(resync_jobs(&again), 1, "retried after the delay");
    let retry = again
        .into_iter()
        .find(|j| matches!(j.purpose, Purpose::Resync { .. }))
        .unwrap();
    fw.job(
        Instant::from_millis(14_020),
        retry.purpose,
        Done::Dumped {
            objects: vec![],
            last: true,
        },
    );
    assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(60_000))), 0);
    assert_eq!(fw.counters.jobs_failed, 1);
}

/// Without an explicit delay the retry comes five seconds after the
/// failure; with `NetlinkOverrunResync Off` there is none.
#[test]
fn a_failed_overrun_resync_retries_by_default_not_when_off() {
    for (general, retried) in [("", 1), ("NetlinkOverrunResync Off", 0)] {
        let mut fw = node(cfg(general, "FTFW { }", ""), 1);
        fw.feed(Instant::from_millis(0), Input::Overrun { buffer: 1 << 20 });
        // Off never dumps on its own: a -R stands in for it.
        let jobs = if retried == 0 {
            fw.control(
                Instant::from_millis(300),
                Request::ResyncKernel(crate::control::proto::Target::All),
            )
            .actions
        } else {
            fw.tick(Instant::from_millis(300))
        };
        let dump = jobs
            .into_iter()
            .find(|j| matches!(j.purpose, Purpose::Resync { .. }))
            .expect("a resync");
        fw.job(
            Instant::from_millis(310),
            dump.purpose,
            Done::Failed("x".into()),
        );
        assert_eq!(resync_jobs(&fw.tick(Instant::from_millis(5_300))), 0);
        let n = resync_jobs(&fw.tick(Instant::from_millis(5_310)));
        assert_eq!(n, retried, "{general:?}");
    }
}
