//! Expectations and their masters between two nodes: an FTP master and
//! its PASV expectation replicated and dumped as conntrackd dumps them;
//! the expectations that stay home (no replicated master, a helper not
//! synced, a master the filter ignores or the kernel no longer has); a
//! master's DESTROY taking its expectations on both sides; a NAT helper's
//! expectation reading its master back for the sequence adjustment.

use super::test::{
    cfg, event, flow, ftp_master, ftp_session, node, pasv, send_now, tcp, text,
};
use super::*;
use crate::control::proto::{Cache as Which, Format, Request, Table};
use crate::kernel::codec::{Kind, Object};
use crate::kernel::origin::Origin;
use crate::model::Tuple;
use crate::wire::ct_key_of;

#[test]
fn ftp_master_and_expectation_replicate_and_dump_like_conntrackd() {
    let c = cfg("", "FTFW { }", "ExpectationSync { ftp }");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let m = ftp_master();
    ftp_session(&mut fw1, &m);
    flow(&mut fw1, &mut fw2, Instant::from_millis(1000));
    let now = Instant::from_millis(4000);
    let i = fw1.control(
        now,
        Request::Dump {
            cache: Which::Internal,
            table: Table::Ct,
            format: Format::Plain,
        },
    );
    assert_eq!(
        text(&i),
        "tcp      6 ESTABLISHED src=192.168.0.2 dst=192.168.1.2 sport=40000 dport=21 src=192.168.1.2 dst=192.168.1.100 sport=21 dport=40000 [ASSURED] helper=ftp [active since 4s]\n"
    );
    let e = fw2.control(
        now,
        Request::Dump {
            cache: Which::External,
            table: Table::Ct,
            format: Format::Plain,
        },
    );
    assert_eq!(
        text(&e),
        "tcp      6 ESTABLISHED src=192.168.0.2 dst=192.168.1.2 sport=40000 dport=21 [ASSURED] helper=ftp [active since 3s]\n"
    );
    let x = fw2.control(
        now,
        Request::Dump {
            cache: Which::External,
            table: Table::Expect,
            format: Format::Plain,
        },
    );
    assert_eq!(
        text(&x),
        "proto=6 src=192.168.0.2 dst=192.168.1.2 sport=0 dport=50000 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=192.168.0.2 master-dst=192.168.1.2 sport=40000 dport=21 class=0 helper=ftp [active since 3s]\n"
    );
    // The NAT binding survives the trip (it is what commit will restore).
    let got = &fw2.external_ct.iter().next().unwrap().value;
    assert_eq!(got.reply, m.reply);
    // XML and JSON.
    let xml = text(&fw2.control(
        now,
        Request::Dump {
            cache: Which::External,
            table: Table::Ct,
            format: Format::Xml,
        },
    ));
    assert!(xml.starts_with("<flow><meta direction=\"original\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>192.168.0.2</src>"), "{xml}");
    assert!(xml.contains("<meta direction=\"reply\"><layer3 protonum=\"0\" protoname=\"unknown\">"));
    assert!(xml.ends_with("<assured/></meta><helper>ftp</helper></flow>\n"));
    let json = text(&fw2.control(
        now,
        Request::Dump {
            cache: Which::External,
            table: Table::Expect,
            format: Format::Json,
        },
    ));
    assert!(json.starts_with("[{\"master\":{\"src\":\"192.168.0.2\",\"dst\":\"192.168.1.2\",\"proto\":6,\"sport\":40000,\"dport\":21},"), "{json}");
    assert!(json.ends_with("\"helper\":\"ftp\",\"active_since\":3}]\n"));
}

#[test]
fn expectation_without_replicated_master_or_wanted_helper_stays_home() {
    let c = cfg("", "FTFW { }", "ExpectationSync { sip }");
    let mut fw1 = node(c, 1);
    let m = ftp_master();
    ftp_session(&mut fw1, &m);
    assert!(fw1.internal_exp.is_empty());
    assert_eq!(fw1.counters.events_filtered, 1);
    let c = cfg("", "FTFW { }", "ExpectationSync On");
    let mut fw1 = node(c, 1);
    fw1.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Exp(pasv(&m))),
        Origin::NotMe,
    );
    assert!(fw1.internal_exp.is_empty(), "master not cached");
}

#[test]
fn destroying_the_master_removes_its_expectations_everywhere() {
    let c = cfg("", "FTFW { }", "ExpectationSync On");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let m = ftp_master();
    ftp_session(&mut fw1, &m);
    flow(&mut fw1, &mut fw2, Instant::from_millis(10));
    assert_eq!((fw2.external_ct.len(), fw2.external_exp.len()), (1, 1));
    fw1.kernel(
        Instant::from_millis(20),
        event(Kind::Destroy, Object::Ct(m)),
        Origin::NotMe,
    );
    assert!(fw1.internal_exp.is_empty());
    flow(&mut fw1, &mut fw2, Instant::from_millis(30));
    assert_eq!((fw2.external_ct.len(), fw2.external_exp.len()), (0, 0));
}

/// The Get jobs among `jobs`, with their purpose.
fn gets(jobs: &[Job]) -> Vec<(Purpose, Tuple)> {
    jobs.iter()
        .filter_map(|j| match j.work {
            Work::Get { orig, .. } => Some((j.purpose, orig)),
            _ => None,
        })
        .collect()
}

#[test]
fn without_internal_cache_an_expectation_goes_only_with_a_master_the_filter_accepts()
 {
    // The FTP client is ignored: its control connection is not
    // replicated, so neither is the expectation it announced.
    let c = cfg(
        "Filter { Address Ignore { IPv4_address 192.168.0.2 } }",
        "NOTRACK { DisableInternalCache On }",
        "ExpectationSync On",
    );
    let mut fw1 = node(c, 1);
    let m = ftp_master();
    let o = fw1.feed(
        Instant::from_millis(0),
        Input::Kernel(event(Kind::New, Object::Exp(pasv(&m))), Origin::NotMe),
    );
    assert_eq!(gets(&o.jobs), [(Purpose::MasterCheck { id: 0 }, m.orig)]);
    fw1.job(
        Instant::from_millis(1),
        Purpose::MasterCheck { id: 0 },
        Done::Dumped {
            objects: vec![Object::Ct(m.clone())],
            last: true,
        },
    );
    assert!(
        send_now(&mut fw1, Instant::from_millis(2)).is_empty(),
        "nothing sent"
    );

    // Without the Filter the same expectation goes.
    let c = cfg(
        "",
        "NOTRACK { DisableInternalCache On }",
        "ExpectationSync On",
    );
    let mut fw1 = node(c, 1);
    fw1.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Exp(pasv(&m))),
        Origin::NotMe,
    );
    fw1.job(
        Instant::from_millis(1),
        Purpose::MasterCheck { id: 0 },
        Done::Dumped {
            objects: vec![Object::Ct(m.clone())],
            last: true,
        },
    );
    assert_eq!(send_now(&mut fw1, Instant::from_millis(2)).len(), 1);
    // A master the kernel no longer has: the expectation went with it.
    fw1.kernel(
        Instant::from_millis(3),
        event(Kind::New, Object::Exp(pasv(&m))),
        Origin::NotMe,
    );
    fw1.job(
        Instant::from_millis(4),
        Purpose::MasterCheck { id: 1 },
        Done::Dumped {
            objects: Vec::new(),
            last: true,
        },
    );
    assert!(send_now(&mut fw1, Instant::from_millis(5)).is_empty());
    // Completions matched by id: a check refused at once (full job
    // queue) may complete before one asked for earlier.
    let mut other = pasv(&m);
    other.tuple = tcp("192.168.0.2", "192.168.1.2", 0, 50001);
    for x in [pasv(&m), other] {
        fw1.kernel(
            Instant::from_millis(6),
            event(Kind::New, Object::Exp(x)),
            Origin::NotMe,
        );
    }
    fw1.job(
        Instant::from_millis(7),
        Purpose::MasterCheck { id: 3 },
        Done::Failed("kernel job queue full".into()),
    );
    fw1.job(
        Instant::from_millis(7),
        Purpose::MasterCheck { id: 2 },
        Done::Dumped {
            objects: vec![Object::Ct(m.clone())],
            last: true,
        },
    );
    assert_eq!(fw1.internal_exp.len(), 1);
    assert!(
        fw1.internal_exp
            .contains(&crate::wire::exp_key_of(&pasv(&m)))
    );
}

#[test]
fn a_nat_helpers_expectation_reads_its_master_back_and_sends_the_seq_adjustment()
 {
    let c = cfg("", "FTFW { }", "ExpectationSync On");
    let mut fw1 = node(c.clone(), 1);
    let mut fw2 = node(c, 2);
    let m = ftp_master();
    fw1.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(m.clone())),
        Origin::NotMe,
    );
    let mut x = pasv(&m);
    x.nat = Some(crate::model::ExpectNat {
        dir: 1,
        tuple: tcp("0.0.0.0", "192.168.1.2", 0, 50000),
    });
    let o = fw1.feed(
        Instant::from_millis(0),
        Input::Kernel(event(Kind::New, Object::Exp(x)), Origin::NotMe),
    );
    assert_eq!(gets(&o.jobs), [(Purpose::Refresh { id: 0 }, m.orig)]);
    // The kernel's master now carries the PASV rewrite's adjustment.
    let mut now = m.clone();
    let adj = crate::model::SeqAdj {
        correction_pos: 1000,
        offset_before: 0,
        offset_after: 2,
    };
    now.seq_adj = Some([crate::model::SeqAdj::default(), adj]);
    fw1.job(
        Instant::from_millis(1),
        Purpose::Refresh { id: 0 },
        Done::Dumped {
            objects: vec![Object::Ct(now)],
            last: true,
        },
    );
    flow(&mut fw1, &mut fw2, Instant::from_millis(2));
    let got = fw2.external_ct.get(&ct_key_of(&m)).map(|e| e.value.clone());
    assert_eq!(got.and_then(|c| c.seq_adj).map(|a| a[1]), Some(adj));
    // Without NAT nothing is read back.
    let o = fw1.feed(
        Instant::from_millis(3),
        Input::Kernel(event(Kind::New, Object::Exp(pasv(&m))), Origin::NotMe),
    );
    assert!(gets(&o.jobs).is_empty());
}

/// A master read back for its sequence adjustment that ends before the
/// read's answer is handled (the worker read it, then the FTP session
/// closed and its DESTROY came first) stays ended: the answer, older
/// than the DESTROY, cached it again and sent it as an update after the
/// deletion, so both the internal cache and the peer's external cache
/// kept a flow the kernel no longer had (anti-entropy sees both agree),
/// and a failover committed it. With or without an internal cache.
#[test]
fn a_master_that_ends_while_read_back_is_not_brought_back() {
    for mode in ["FTFW { }", "NOTRACK { DisableInternalCache On }"] {
        let c = cfg("", mode, "ExpectationSync On");
        let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
        let t = Instant::from_millis;
        let m = ftp_master();
        let key = ct_key_of(&m);
        fw1.kernel(
            t(0),
            event(Kind::New, Object::Ct(m.clone())),
            Origin::NotMe,
        );
        let mut x = pasv(&m);
        x.nat = Some(crate::model::ExpectNat {
            dir: 1,
            tuple: tcp("0.0.0.0", "192.168.1.2", 0, 50000),
        });
        let o = fw1.feed(
            t(0),
            Input::Kernel(event(Kind::New, Object::Exp(x)), Origin::NotMe),
        );
        let mut jobs: Vec<_> = o.jobs;
        // Without internal cache the master is read for the Filter first.
        for j in gets(&jobs) {
            if let Purpose::MasterCheck { .. } = j.0 {
                let read = Done::Dumped {
                    objects: vec![Object::Ct(m.clone())],
                    last: true,
                };
                jobs.extend(fw1.job(t(0), j.0, read).actions);
            }
        }
        let refresh = gets(&jobs)
            .into_iter()
            .find(|(p, _)| !matches!(p, Purpose::MasterCheck { .. }))
            .expect("the master is read back")
            .0;
        flow(&mut fw1, &mut fw2, t(1));
        assert!(fw2.external_ct.contains(&key), "{mode}");
        fw1.kernel(
            t(2),
            event(Kind::Destroy, Object::Ct(m.clone())),
            Origin::NotMe,
        );
        let read = Done::Dumped {
            objects: vec![Object::Ct(m.clone())],
            last: true,
        };
        fw1.job(t(3), refresh, read);
        for ms in (100..=3_000).step_by(100) {
            flow(&mut fw1, &mut fw2, t(ms));
        }
        assert!(!fw1.internal_ct.contains(&key), "{mode}: cached again");
        assert!(!fw2.external_ct.contains(&key), "{mode}: the peer keeps it");
    }
}

/// Without internal cache an expectation waits for its master's read
/// (for the Filter); one destroyed meanwhile, by itself or with its
/// master, is not sent after its deletion went: the peer kept it in its
/// external cache for good (nothing there expires it, and anti-entropy
/// is off without an internal cache), and a failover's commit failed on
/// it.
#[test]
fn an_expectation_destroyed_during_its_master_check_is_not_sent_after() {
    for master_too in [false, true] {
        let mode = "NOTRACK { DisableInternalCache On }";
        let c = cfg("", mode, "ExpectationSync On");
        let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
        let t = Instant::from_millis;
        let m = ftp_master();
        let x = pasv(&m);
        fw1.kernel(
            t(0),
            event(Kind::New, Object::Ct(m.clone())),
            Origin::NotMe,
        );
        let o = fw1.feed(
            t(0),
            Input::Kernel(
                event(Kind::New, Object::Exp(x.clone())),
                Origin::NotMe,
            ),
        );
        let [(check, _)] = gets(&o.jobs)[..] else {
            panic!("{:?}", o.jobs)
        };
        flow(&mut fw1, &mut fw2, t(1));
        // The worker read the master; then the expectation ended.
        if master_too {
            fw1.kernel(
                t(2),
                event(Kind::Destroy, Object::Ct(m.clone())),
                Origin::NotMe,
            );
        }
        fw1.kernel(
            t(2),
            event(Kind::Destroy, Object::Exp(x.clone())),
            Origin::NotMe,
        );
        flow(&mut fw1, &mut fw2, t(3));
        let read = Done::Dumped {
            objects: vec![Object::Ct(m.clone())],
            last: true,
        };
        fw1.job(t(4), check, read);
        for ms in (100..=3_000).step_by(100) {
            flow(&mut fw1, &mut fw2, t(ms));
        }
        assert_eq!(fw2.external_exp.len(), 0, "master destroyed: {master_too}");
    }
}

/// The notify script's `-f; -R` on a new primary: while the `-R`'s dump
/// arrives, the FTP control connection it carries is not cached yet, and
/// the PASV expectation announced meanwhile (after the kernel was read)
/// found no master and was dropped; the dump, older, never brought it
/// back, so neither `-B` nor the peer ever had it. It now waits for the
/// dump's end and is taken, and sent, once its master is cached.
#[test]
fn an_expectation_announced_during_a_resync_is_kept_once_its_master_is_dumped()
{
    use crate::control::proto::{CacheSel, Target};
    let c = cfg("", "FTFW { }", "ExpectationSync On");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let t = Instant::from_millis;
    let m = ftp_master();
    fw1.control(t(0), Request::FlushCache(CacheSel::All));
    let out = fw1.control(t(0), Request::ResyncKernel(Target::All));
    let [job] = &out.actions[..] else {
        panic!("{:?}", out.actions)
    };
    let purpose = job.purpose;
    let x = pasv(&m);
    fw1.kernel(
        t(1),
        event(Kind::New, Object::Exp(x.clone())),
        Origin::NotMe,
    );
    let done = Done::Dumped {
        objects: vec![Object::Ct(m.clone())],
        last: true,
    };
    fw1.job(t(2), purpose, done);
    assert!(fw1.internal_ct.contains(&ct_key_of(&m)));
    assert_eq!(fw1.internal_exp.len(), 1, "the expectation was dropped");
    // The peer hears of it (the `-R` sends no dumped entry).
    flow(&mut fw1, &mut fw2, t(3));
    assert_eq!(fw2.external_exp.len(), 1);
}
