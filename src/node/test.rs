//! Two nodes wired together in memory: replication, dumps, commit rules,
//! flush/purge semantics, bounds, injection.

use super::*;
use crate::config;
use crate::control::proto::{
    Cache as Which, CacheSel, Format, Reply, Request, StatsView, Status, Table,
    Target,
};
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::Expect;
use crate::model::{L4, ProtoInfo, Tuple, status};
use crate::sync::Apply;
use crate::wire::ct_key_of;

fn cfg(extra_general: &str, mode_body: &str, options: &str) -> Config {
    let text = format!(
        "General {{ UNIX {{ Path /x }} {extra_general} }}\nSync {{ Mode {mode_body}\nUDP {{ IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }}\nOptions {{ {options} }} }}"
    );
    config::parse(&text, "t.conf").unwrap().config
}

/// A node with the loop's part played by the test: what it sends is
/// kept on `wire` until [`flow`] delivers it.
struct Fw {
    node: Node,
    wire: Vec<Vec<u8>>,
    links: Vec<LinkView>,
}

impl std::ops::Deref for Fw {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl std::ops::DerefMut for Fw {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

/// What one control request (or job completion) caused.
#[derive(Debug)]
struct Outcome {
    replies: Vec<Reply>,
    actions: Vec<Job>,
}

/// The control client every test request comes from.
const CLIENT: ClientId = 7;

impl Fw {
    fn feed(&mut self, now: Instant, input: Input<'_>) -> Outbox {
        let mut o = self.node.handle(now, input);
        self.wire.append(&mut o.datagrams);
        o
    }

    fn outcome(o: Outbox) -> Outcome {
        Outcome {
            replies: o.replies.into_iter().map(|(_, r)| r).collect(),
            actions: o.jobs,
        }
    }

    fn kernel(&mut self, now: Instant, msg: Message, origin: Origin) {
        self.feed(now, Input::Kernel(msg, origin));
    }

    fn control(&mut self, now: Instant, request: Request) -> Outcome {
        let links = self.links.clone();
        let o = self.feed(
            now,
            Input::Control {
                client: CLIENT,
                request,
                links: &links,
            },
        );
        Fw::outcome(o)
    }

    fn tick(&mut self, now: Instant) -> Vec<Job> {
        self.feed(now, Input::Timer).jobs
    }

    fn job(&mut self, now: Instant, purpose: Purpose, done: Done) -> Outcome {
        let o = self.feed(now, Input::Job(Completion { purpose, done }));
        Fw::outcome(o)
    }

    fn commit_done(
        &mut self,
        now: Instant,
        cts: &[i32],
        exps: &[i32],
    ) -> Vec<Reply> {
        let done = Done::Committed {
            cts: cts.to_vec(),
            exps: exps.to_vec(),
            failed: Vec::new(),
            took_us: [147, 76],
        };
        self.job(now, Purpose::Commit { client: CLIENT }, done)
            .replies
    }

    fn resync_kernel(
        &mut self,
        now: Instant,
        objects: Vec<Object>,
        conntracks: bool,
        expectations: bool,
        send: bool,
    ) {
        let purpose = Purpose::Resync {
            client: None,
            conntracks,
            expectations,
            send,
            announce_new: false,
        };
        self.job(
            now,
            purpose,
            Done::Dumped {
                objects,
                last: true,
            },
        );
    }
}

fn node(c: Config, session: u32) -> Fw {
    Fw {
        node: Node::new(
            c,
            session,
            u64::from(session),
            1472,
            212_992,
            Instant::from_millis(0),
        ),
        wire: Vec::new(),
        links: Vec::new(),
    }
}

fn tcp(src: &str, dst: &str, sp: u16, dp: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

fn ftp_master() -> Conntrack {
    let mut c = Conntrack::new(tcp("192.168.0.2", "192.168.1.2", 40000, 21));
    c.reply = Some(tcp("192.168.1.2", "192.168.1.100", 21, 40000));
    c.status = status::SEEN_REPLY
        | status::ASSURED
        | status::CONFIRMED
        | status::SRC_NAT
        | status::SRC_NAT_DONE;
    c.timeout = Some(432000);
    c.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 7,
        flags_orig: 0,
        flags_reply: 0,
    };
    c.helper = Some("ftp".try_into().unwrap());
    c
}

pub(super) fn pasv(master: &Conntrack) -> Expect {
    Expect {
        master: master.orig,
        tuple: tcp("192.168.0.2", "192.168.1.2", 0, 50000),
        mask: Tuple {
            src: "255.255.255.255".parse().unwrap(),
            dst: "255.255.255.255".parse().unwrap(),
            proto: 6,
            l4: L4::Ports {
                src: 0,
                dst: 0xffff,
            },
        },
        timeout: Some(300),
        zone: 0,
        flags: 0,
        class: 0,
        helper: Some("ftp".try_into().unwrap()),
        nat: None,
        func: None,
        id: 0,
    }
}

fn event(kind: Kind, object: Object) -> Message {
    Message {
        kind,
        object,
        port: 0,
        seq: 0,
    }
}

/// Sends what `a` has (without waiting for the transmit coalescing).
fn send_now(a: &mut Fw, now: Instant) -> Vec<Vec<u8>> {
    a.node.tx.due_now(now);
    a.feed(now, Input::Timer);
    std::mem::take(&mut a.wire)
}

/// Moves everything `a` has to send to `b`, and `b`'s answers back (the
/// session challenge, NACKs), until both are quiet; returns b's jobs.
fn flow(a: &mut Fw, b: &mut Fw, now: Instant) -> Vec<Job> {
    let mut jobs = Vec::new();
    for _ in 0..8 {
        let to_b = send_now(a, now);
        for d in &to_b {
            let input = Input::Datagram {
                link: 0,
                peer: 1,
                bytes: d,
            };
            jobs.extend(b.feed(now, input).jobs);
        }
        let to_a = send_now(b, now);
        for d in &to_a {
            let input = Input::Datagram {
                link: 0,
                peer: 2,
                bytes: d,
            };
            a.feed(now, input);
        }
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
    }
    jobs
}

fn text(o: &Outcome) -> String {
    o.replies
        .iter()
        .filter_map(|r| match r {
            Reply::Data(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// The kernel announces an FTP control connection and its PASV
/// expectation, both new, at time 0.
fn ftp_session(fw: &mut Fw, master: &Conntrack) {
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(master.clone())),
        Origin::NotMe,
    );
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Exp(pasv(master))),
        Origin::NotMe,
    );
}

fn status_of(o: &Outcome) -> Option<&Status> {
    o.replies.iter().find_map(|r| match r {
        Reply::Done(s) => Some(s),
        _ => None,
    })
}

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

#[test]
fn commit_plans_masters_related_then_expectations_and_logs_the_result() {
    let c = cfg("HashSize 8192", "FTFW { }", "ExpectationSync On");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    let m = ftp_master();
    let mut data =
        Conntrack::new(tcp("192.168.0.2", "192.168.1.2", 40001, 50000));
    data.reply = Some(data.orig.inverse());
    data.master = Some(m.orig);
    data.timeout = Some(100);
    fw1.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(data)),
        Origin::NotMe,
    );
    ftp_session(&mut fw1, &m);
    flow(&mut fw1, &mut fw2, Instant::from_millis(0));
    let now = Instant::from_millis(30_000);
    // HashSize 8192 (conntrackd skips expectations there): both stages.
    let o = fw2.control(now, Request::Commit(Target::All));
    assert!(o.replies.is_empty(), "the reply waits for the commit");
    let [
        Job {
            work: Work::Commit(plan),
            ..
        },
    ] = &o.actions[..]
    else {
        panic!("{:?}", o.actions)
    };
    assert_eq!(plan.cts.len(), 2);
    assert!(plan.cts[0].master.is_none() && plan.cts[1].master.is_some());
    assert_eq!(plan.exps.len(), 1);
    assert_eq!(plan.cts[0].timeout, Some(432000 - 30));
    assert!(plan.cts[0].status & status::CONFIRMED != 0);
    // While it runs: a second commit and -f are refused, -f internal not.
    assert!(fw2.committing());
    let again = fw2.control(now, Request::Commit(Target::Ct));
    assert!(matches!(status_of(&again), Some(Status::Refused(_))));
    assert!(matches!(
        status_of(&fw2.control(now, Request::FlushCache(CacheSel::All))),
        Some(Status::Refused(_))
    ));
    assert!(matches!(
        status_of(&fw2.control(now, Request::FlushCache(CacheSel::External))),
        Some(Status::Refused(_))
    ));
    assert_eq!(
        status_of(&fw2.control(now, Request::FlushCache(CacheSel::Internal))),
        Some(&Status::Ok)
    );
    let done = fw2.commit_done(Instant::from_millis(30_050), &[0, 0], &[0]);
    assert_eq!(done, vec![Reply::Done(Status::Ok)]);
    assert_eq!(fw2.counters.commit_ok, 3);
    // After the commit -f is accepted (conntrackd refuses it forever).
    assert_eq!(
        status_of(&fw2.control(now, Request::FlushCache(CacheSel::All))),
        Some(&Status::Ok)
    );
    assert!(fw2.external_ct.is_empty() && fw2.external_exp.is_empty());
    // Failures are reported to the client.
    fw2.control(now, Request::Commit(Target::All));
    let done = fw2.commit_done(now, &[], &[]);
    assert_eq!(done, vec![Reply::Done(Status::Ok)]);
    fw2.control(now, Request::Commit(Target::Ct));
    assert!(matches!(
        &fw2.commit_done(now, &[2], &[])[..],
        [Reply::Done(Status::Failed(_))]
    ));
}

#[test]
fn disabled_external_cache_injects_and_commit_returns_at_once() {
    let c = cfg("", "FTFW { DisableExternalCache On }", "ExpectationSync On");
    let mut fw1 = node(cfg("", "FTFW { }", "ExpectationSync On"), 1);
    let mut fw2 = node(c, 2);
    let m = ftp_master();
    ftp_session(&mut fw1, &m);
    let actions = flow(&mut fw1, &mut fw2, Instant::from_millis(0));
    let kinds: Vec<&str> = actions
        .iter()
        .flat_map(|j| match &j.work {
            Work::Inject(changes) => changes.clone(),
            other => panic!("{other:?}"),
        })
        .map(|a| match a {
            Apply::Ct { .. } => "ct",
            Apply::Exp { .. } => "exp",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["ct", "exp"]);
    assert!(fw2.external_ct.is_empty());
    let o = fw2.control(Instant::from_millis(1), Request::Commit(Target::All));
    assert_eq!(o.replies, vec![Reply::Done(Status::Ok)]);
    assert!(o.actions.is_empty() && !fw2.committing());
    // Events caused by our own injection are not replicated back.
    fw2.kernel(
        Instant::from_millis(2),
        event(Kind::New, Object::Ct(m)),
        Origin::Inject,
    );
    assert!(fw2.internal_ct.is_empty());
}

#[test]
fn own_commit_events_are_cached_but_not_sent() {
    let c = cfg("", "FTFW { }", "");
    let mut fw = node(c, 1);
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(ftp_master())),
        Origin::Commit,
    );
    assert_eq!(fw.internal_ct.len(), 1);
    assert_eq!(fw.engine.queue_lengths(), (0, 0));
}

#[test]
fn hash_limit_bounds_the_caches_and_counts_refusals() {
    let c = cfg("HashLimit 1000", "FTFW { }", "");
    let mut fw = node(c, 1);
    for i in 0..5000u32 {
        let mut ct = Conntrack::new(tcp(
            "10.0.0.1",
            "10.0.0.2",
            (i % 60000) as u16 + 1,
            80 + (i / 60000) as u16,
        ));
        ct.reply = Some(ct.orig.inverse());
        fw.kernel(
            Instant::from_millis(0),
            event(Kind::New, Object::Ct(ct)),
            Origin::NotMe,
        );
    }
    assert_eq!(fw.internal_ct.len(), 1000);
    assert_eq!(fw.internal_ct.stats.add_fail_enospc, 4000);
    let s = text(&fw.control(
        Instant::from_millis(0),
        Request::Stats {
            view: StatsView::Cache,
            format: Format::Plain,
        },
    ));
    assert!(
        s.contains("\t\tno space left in cache:\t        4000\n"),
        "{s}"
    );
    let s = text(&fw.control(
        Instant::from_millis(0),
        Request::Stats {
            view: StatsView::General,
            format: Format::Plain,
        },
    ));
    assert!(s.starts_with("cache internal:\ncurrent active connections:\t        1000\nconnections created:\t\t        1000\tfailed:\t        4000\n"), "{s}");
}

#[test]
fn a_burst_leaves_every_coalescing_period_and_its_tail_once_it_pauses() {
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    // Between the engine's once-a-second ticks (whose ALIVE goes at
    // once), after the first.
    let t0 = Instant::from_millis(1500);
    let at = |us: u64| t0 + Duration::from_micros(us);
    // The loop's part: timers when due, then the change.
    let mut sent_at = Vec::new();
    let run_timers = |fw: &mut Fw, until: Instant, sent_at: &mut Vec<_>| {
        while fw.poll_at() <= until {
            let p = fw.poll_at();
            fw.feed(p, Input::Timer);
            sent_at.extend(fw.wire.drain(..).map(|_| p));
        }
    };
    // A change a little more often than TX_IDLE for 3 ms: each puts the
    // flush off, so only the coalescing period (from the oldest change)
    // sends, and the tail leaves TX_IDLE after the last.
    let gap = TX_IDLE.as_micros() as u64 * 9 / 10;
    let changes = 3000 / gap;
    assert!(TX_COALESCE.as_micros() as u64 / gap < TX_FULL as u64);
    run_timers(&mut fw, t0 - Duration::from_micros(1), &mut Vec::new());
    for i in 0..changes as u16 {
        let e = at(u64::from(i) * gap);
        run_timers(&mut fw, e, &mut sent_at);
        let mut ct = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", 1000 + i, 80));
        ct.reply = Some(ct.orig.inverse());
        let msg = event(Kind::New, Object::Ct(ct));
        fw.feed(e, Input::Kernel(msg, Origin::NotMe));
        sent_at.extend(fw.wire.drain(..).map(|_| e));
    }
    let last = at((changes - 1) * gap);
    run_timers(&mut fw, last + TX_COALESCE, &mut sent_at);
    assert_eq!(sent_at, vec![t0 + TX_COALESCE, last + TX_IDLE]);
}

#[test]
fn purge_timer_flushes_kernel_and_internal_cache_and_commit_cancels_it() {
    let c = cfg("", "FTFW { PurgeTimeout 5 }", "");
    let mut fw = node(c, 1);
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(ftp_master())),
        Origin::NotMe,
    );
    assert_eq!(
        status_of(&fw.control(Instant::from_millis(0), Request::ResetTimers)),
        Some(&Status::Ok)
    );
    // The queued change leaves once nothing new came for TX_IDLE, then
    // FT-FW's tail probe is due (the sent change is unacknowledged, the
    // link quiet for 5 ms); the purge is due at 5 s.
    let sent = Instant::from_millis(0) + TX_IDLE;
    assert_eq!(fw.poll_at(), sent);
    fw.wire.clear();
    fw.feed(sent - Duration::from_micros(1), Input::Timer);
    assert!(fw.wire.is_empty(), "not before TX_IDLE");
    fw.feed(sent, Input::Timer);
    assert_eq!(fw.wire.len(), 1);
    assert_eq!(fw.poll_at(), sent + Duration::from_millis(5));
    assert!(fw.tick(Instant::from_millis(4000)).is_empty());
    assert_eq!(
        fw.tick(Instant::from_millis(5000)),
        vec![Job {
            purpose: Purpose::Flush { client: None },
            work: Work::Flush {
                conntracks: true,
                expectations: false
            }
        }]
    );
    assert!(fw.internal_ct.is_empty());
    // A commit cancels a pending purge.
    fw.control(Instant::from_millis(6000), Request::ResetTimers);
    fw.control(Instant::from_millis(6000), Request::Commit(Target::All));
    fw.commit_done(Instant::from_millis(6000), &[], &[]);
    // (The activity scan's dump is due by then; no flush.)
    let jobs = fw.tick(Instant::from_millis(20_000));
    assert!(
        jobs.iter().all(|j| !matches!(j.work, Work::Flush { .. })),
        "{jobs:?}"
    );
}

#[test]
fn every_commit_cancels_a_pending_purge_and_flush_external_does_not() {
    // conntrackd's -c drops the -t alarm before anything else (an
    // injecting node's commit, a commit refused as already running);
    // its -f external leaves it.
    let flushes = |fw: &mut Fw| {
        fw.tick(Instant::from_millis(20_000))
            .iter()
            .filter(|j| matches!(j.work, Work::Flush { .. }))
            .count()
    };
    let at = Instant::from_millis;
    let mut fw = node(
        cfg("", "FTFW { DisableExternalCache On PurgeTimeout 5 }", ""),
        1,
    );
    fw.control(at(0), Request::ResetTimers);
    fw.control(at(1000), Request::Commit(Target::All));
    assert_eq!(flushes(&mut fw), 0, "injecting node: -c left the purge");
    let mut fw = node(cfg("", "FTFW { PurgeTimeout 5 }", ""), 1);
    fw.control(at(0), Request::Commit(Target::All));
    fw.control(at(100), Request::ResetTimers);
    let o = fw.control(at(200), Request::Commit(Target::All));
    assert!(matches!(status_of(&o), Some(Status::Refused(_))));
    assert_eq!(flushes(&mut fw), 0, "-c during a commit left the purge");
    let mut fw = node(cfg("", "FTFW { PurgeTimeout 5 }", ""), 1);
    fw.control(at(0), Request::ResetTimers);
    fw.control(at(1000), Request::FlushCache(CacheSel::External));
    assert_eq!(flushes(&mut fw), 1, "-f external cancelled the purge");
}

#[test]
fn resync_request_and_bulk() {
    let c = cfg("", "NOTRACK { }", "");
    let (mut fw1, mut fw2) = (node(c.clone(), 1), node(c, 2));
    for p in 1..=20 {
        let mut ct = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", p, 80));
        ct.reply = Some(ct.orig.inverse());
        fw1.kernel(
            Instant::from_millis(0),
            event(Kind::New, Object::Ct(ct)),
            Origin::Flush,
        );
    }
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

#[test]
fn filtered_events_are_counted_and_not_cached() {
    let c = cfg(
        "Filter { Address Ignore { IPv4_address 192.168.0.0/24 } }",
        "FTFW { }",
        "",
    );
    let mut fw = node(c, 1);
    fw.kernel(
        Instant::from_millis(0),
        event(Kind::New, Object::Ct(ftp_master())),
        Origin::NotMe,
    );
    assert!(fw.internal_ct.is_empty());
    assert_eq!(fw.counters.events_filtered, 1);
}

#[test]
fn statistics_views() {
    let c = cfg("", "FTFW { }", "");
    let mut fw = node(c, 1);
    fw.links = vec![render::LinkView {
        kind: "UDP",
        interface: "sync0".into(),
        status: "RUNNING",
        active: true,
        pkts_sent: 14,
        bytes_sent: 368,
        ..Default::default()
    }];
    let now = Instant::from_millis(61_000);
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::General,
            format: Format::Plain,
        },
    ));
    assert!(s.contains("traffic processed:\n                   0 Bytes                         0 Pckts\n\n"), "{s}");
    assert!(s.contains("UDP traffic (active device=sync0):\n                 368 Bytes sent                    0 Bytes recv\n                  14 Pckts sent "), "{s}");
    assert!(s.ends_with("message tracking:\n                   0 Malformed msgs                    0 Lost msgs\n\n"));
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Link,
            format: Format::Plain,
        },
    ));
    assert!(
        s.starts_with("UDP traffic device=sync0 status=RUNNING role=ACTIVE:\n")
    );
    // What was refused is visible in text too, not only under --json.
    assert!(
        s.contains(
            "                   0 Foreign                       0 Auth failed\n"
        ),
        "{s}"
    );
    assert!(
        s.contains(
            "refused by the sync engine:\n                   0 Out of window "
        ),
        "{s}"
    );
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Runtime,
            format: Format::Plain,
        },
    ));
    assert!(
        s.starts_with("daemon uptime: 1 min\n\nnetlink stats:\n"),
        "{s}"
    );
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::RsQueue,
            format: Format::Plain,
        },
    ));
    assert_eq!(s, "resent queue (len=0)\n");
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Queue,
            format: Format::Plain,
        },
    ));
    assert!(s.contains("queue txqueue:\ncurrent elements:\t\t           0\n"));
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Network,
            format: Format::Plain,
        },
    ));
    assert!(s.starts_with("network statistics:\n\trecv:\n\t\tMalformed messages:\t                   0\n"));
    let j = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Cache,
            format: Format::Json,
        },
    ));
    assert!(
        j.starts_with(
            "{\"caches\":{\"internal\":{\"active\":0,\"limit\":262144,"
        ),
        "{j}"
    );
    assert!(j.contains("\"links\":[{\"kind\":\"UDP\",\"interface\":\"sync0\",\"status\":\"RUNNING\",\"active\":true,"));
    assert!(j.ends_with("}\n"));
}

#[test]
fn stats_cache_shows_the_bypass_and_inject_blocks_of_disabled_caches() {
    // conntrackd's `-s cache` asks each cache for its extended stats; the
    // bypass and the inject answer with their `-s` blocks.
    let cache = |c: Config| {
        text(&node(c, 1).control(
            Instant::from_millis(0),
            Request::Stats {
                view: StatsView::Cache,
                format: Format::Plain,
            },
        ))
    };
    let s = cache(cfg("", "NOTRACK { DisableInternalCache On }", ""));
    assert!(
        s.starts_with("internal bypass:\nconnections new:\t\t"),
        "{s}"
    );
    assert!(!s.contains("cache:internal"), "{s}");
    assert!(s.contains("cache:external\tactive objects:"), "{s}");
    let s = cache(cfg("", "FTFW { DisableExternalCache On }", ""));
    assert!(s.starts_with("cache:internal\tactive objects:"), "{s}");
    assert!(
        s.ends_with(
            "external inject:\nconnections created:\t\t           0\tfailed:\t           0\nconnections updated:\t\t           0\tfailed:\t           0\nconnections destroyed:\t\t           0\tfailed:\t           0\n\n"
        ),
        "{s}"
    );
}

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

#[test]
fn flush_cache_never_touches_the_kernel_even_without_internal_cache() {
    // The notify script runs `-c` then `-f`: a kernel flush here would
    // delete what the commit just created.
    let c = cfg(
        "",
        "NOTRACK { DisableInternalCache On }",
        "ExpectationSync On",
    );
    let mut fw = node(c, 1);
    for sel in [CacheSel::All, CacheSel::Internal, CacheSel::External] {
        let o = fw.control(Instant::from_millis(0), Request::FlushCache(sel));
        assert!(o.actions.is_empty(), "{sel:?}: {:?}", o.actions);
        assert_eq!(o.replies, vec![Reply::Done(Status::Ok)]);
    }
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

#[test]
fn a_large_dump_is_answered_in_parts_between_other_work() {
    let mut fw = node(cfg("HashLimit 20000", "FTFW { }", ""), 1);
    for p in 0..10_000u32 {
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
    for p in 0..40_000u32 {
        let ct = Conntrack::new(Tuple {
            proto: 17,
            ..tcp("10.0.0.1", "10.0.0.2", (p % 60_000) as u16, 53)
        });
        fw.kernel(
            Instant::from_millis(0),
            event(Kind::New, Object::Ct(ct)),
            Origin::Flush,
        );
    }
    let dump = |client| Input::Control {
        client,
        request: Request::Dump {
            cache: Which::Internal,
            table: Table::Ct,
            format: Format::Plain,
        },
        links: &[],
    };
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
    assert_eq!(gets(&o.jobs), [(Purpose::Refresh, m.orig)]);
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
        Purpose::Refresh,
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

#[test]
fn commit_logs_each_stage_time_in_microseconds() {
    let c = cfg("", "FTFW { }", "ExpectationSync On");
    let mut fw = node(c, 2);
    fw.control(Instant::from_millis(0), Request::Commit(Target::All));
    let done = Done::Committed {
        cts: Vec::new(),
        exps: Vec::new(),
        failed: Vec::new(),
        took_us: [147, 1_000_076],
    };
    let purpose = Purpose::Commit { client: CLIENT };
    let o = fw.feed(
        Instant::from_millis(5),
        Input::Job(Completion { purpose, done }),
    );
    let lines: Vec<&str> = o.logs.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        lines,
        [
            "Committed 0 new entries",
            "commit has taken 0.000147 seconds",
            "Committed 0 new expectations",
            "commit has taken 1.000076 seconds"
        ]
    );
}

#[test]
fn a_conntrackd_peer_is_noticed_once_per_switch_and_shown_per_link() {
    use crate::sync::MapSource;
    use crate::sync::ctd::{CtdEngine, Params};
    let mut fw = node(cfg("", "FTFW { }", ""), 100);
    fw.links = vec![LinkView {
        kind: "UDP",
        interface: "lo".into(),
        status: "RUNNING",
        active: true,
        ..Default::default()
    }];
    let mut peer = CtdEngine::new(
        Params {
            mode: Mode::FtFw,
            first_seq: 7,
            max_datagram: 1472,
            resend_queue_size: 100,
            ack_window: 20,
            tx_queue_size: 100,
            refresh_time: Duration::from_secs(60),
            opts: Default::default(),
        },
        Instant::from_millis(0),
    );
    let src = MapSource::default();
    let mut notices = Vec::new();
    for s in 1..=3 {
        let now = Instant::from_millis(s * 1000);
        peer.handle_timeout(now, &src);
        let mut buf = [0u8; 1472];
        let n = peer.poll_transmit(now, &src, &mut buf).unwrap();
        let o = fw.feed(
            now,
            Input::Datagram {
                link: 0,
                peer: 1,
                bytes: &buf[..n],
            },
        );
        notices
            .extend(o.logs.into_iter().filter(|l| l.level == log::Level::Info));
        // Our answers are conntrackd's.
        assert!(
            fw.wire
                .drain(..)
                .all(|d| crate::wire::ctd::is_conntrackd(&d))
        );
    }
    assert_eq!(
        notices,
        vec![LogRecord {
            level: log::Level::Info,
            text: "sync link lo (udp 10.0.0.2:1): peer speaks conntrackd 1.4 protocol".into()
        }]
    );
    let now = Instant::from_millis(4000);
    let s = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::Link,
            format: Format::Plain,
        },
    ));
    assert!(
        s.contains(
            "peer protocol: conntrackd 1.4\nconntrackd messages refused:\n"
        ),
        "{s}"
    );
    let j = text(&fw.control(
        now,
        Request::Stats {
            view: StatsView::General,
            format: Format::Json,
        },
    ));
    assert!(j.contains("\"peer_protocol\":\"conntrackd 1.4\",\"conntrackd_refused\":{\"truncated\":0,"), "{j}");
}

/// A commit of a large external cache goes out in batches: first the
/// expectation, its (old) master and the most recently updated entries,
/// picked before the rest is decoded (the expectation, its master and the
/// newest of them in the first stage); then, most recent first, batches
/// that grow fourfold, a new one only while fewer than two jobs wait for
/// the kernel; the last without the master the first job took. The
/// client's reply and conntrackd's lines count every job.
#[test]
fn a_large_commit_goes_out_in_growing_batches_most_recent_first() {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB, GROWTH, MAX_BATCH};
    use crate::kernel::commit::FIRST_STAGE;
    let mut fw = node(cfg("", "FTFW { }", "ExpectationSync On"), 1);
    let master = ftp_master();
    fw.external_ct
        .upsert(&master, Instant::from_millis(0), true)
        .unwrap();
    fw.external_exp
        .upsert(&pasv(&master), Instant::from_millis(0), true)
        .unwrap();
    // Growing fourfold, then held at the bound (twice), then the rest.
    let batches = [FIRST_BATCH, FIRST_BATCH * GROWTH, MAX_BATCH, MAX_BATCH];
    assert_eq!(FIRST_BATCH * GROWTH * GROWTH, MAX_BATCH);
    let last = 3000;
    let idle = (FIRST_JOB + batches.iter().sum::<usize>() + last) as u16;
    for i in 0..idle {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1024 + i, 80));
        c.timeout = Some(432000);
        c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
        // Updated at i ms: the last ones are the most recent.
        let at = Instant::from_millis(1 + u64::from(i));
        fw.external_ct.upsert(&c, at, true).unwrap();
    }
    let now = Instant::from_millis(100_000);
    let first = fw.control(now, Request::Commit(Target::All)).actions;
    assert_eq!(first.len(), 1, "{:?}", first.len());
    let Work::Commit(plan) = &first[0].work else {
        panic!("{first:?}")
    };
    let early = |batch: u32| Purpose::CommitFirst {
        client: CLIENT,
        batch,
    };
    assert_eq!(first[0].purpose, early(0));
    assert_eq!(plan.exps.len(), 1);
    assert_eq!(plan.cts.len(), FIRST_JOB + 1);
    assert_eq!(plan.first, (FIRST_STAGE + 1, 1), "the first stage");
    assert!(plan.cts.iter().any(|c| c.orig == master.orig), "its master");
    let sport = |c: &Conntrack| match c.orig.l4 {
        L4::Ports { src, .. } => src,
        _ => 0,
    };
    let ports = |p: &crate::kernel::commit::Plan| -> Vec<u16> {
        p.cts.iter().map(sport).collect()
    };
    // The ports of the `n` entries updated before the newest `skip`, most
    // recent first.
    let newest = |skip: usize, n: usize| -> Vec<u16> {
        let top = 1024 + idle - skip as u16;
        (top - n as u16..top).rev().collect()
    };
    let mut first_ports = ports(plan);
    first_ports.sort_unstable();
    let mut want = newest(0, FIRST_JOB);
    want.sort_unstable();
    assert!(want.iter().all(|p| first_ports.binary_search(p).is_ok()));
    let is_commit = |j: &Job| matches!(j.work, Work::Commit(_));
    let next_job = |fw: &mut Fw| -> Option<Job> {
        // The next batch is planned on the next turn, due at once (the
        // activity scan's dump may be due too).
        assert!(fw.poll_at() <= now);
        let mut jobs: Vec<Job> =
            fw.tick(now).into_iter().filter(is_commit).collect();
        assert!(jobs.len() <= 1, "one batch per turn");
        jobs.pop()
    };
    let done = |cts: usize, exps: usize| Done::Committed {
        cts: vec![0; cts],
        exps: vec![0; exps],
        failed: Vec::new(),
        took_us: [100, 50],
    };
    // Each batch, and the completion that lets the next one be planned
    // (the job before it: two are with the worker at most).
    let mut before = (FIRST_JOB + 1, 1);
    let mut skip = FIRST_JOB;
    for (k, &size) in batches.iter().enumerate() {
        let batch = next_job(&mut fw).expect("a batch");
        assert_eq!(batch.purpose, early(k as u32 + 1), "batch {k}");
        let Work::Commit(p) = &batch.work else {
            panic!()
        };
        assert_eq!(ports(p), newest(skip, size), "batch {k}");
        assert!(
            !fw.tick(now).iter().any(is_commit),
            "two jobs wait for the kernel: no more before one ends"
        );
        let o = fw.job(now, early(k as u32), done(before.0, before.1));
        assert!(o.replies.is_empty(), "the client waits for the rest");
        before = (size, 0);
        skip += size;
    }
    let rest = next_job(&mut fw).expect("the last batch");
    assert_eq!(rest.purpose, Purpose::Commit { client: CLIENT });
    let Work::Commit(rest_plan) = &rest.work else {
        panic!()
    };
    assert!(rest_plan.exps.is_empty());
    assert_eq!(
        ports(rest_plan),
        newest(skip, last),
        "the rest, most recent first, without the master"
    );
    let o = fw.job(now, early(batches.len() as u32), done(before.0, 0));
    assert!(o.replies.is_empty(), "the client waits for the rest");
    assert!(
        !fw.tick(now).iter().any(is_commit),
        "the rest is planned once"
    );
    let replies = fw.commit_done(now, &vec![0; last], &[]);
    assert!(replies.contains(&Reply::Done(Status::Ok)), "{replies:?}");
    assert_eq!(fw.counters.commit_ok, u64::from(idle) + 2);
    assert!(fw.commit.is_none() && fw.commit_first.is_none());
}

/// A RELATED flow in a later batch brings its master along when the
/// master is older (its own turn then skips it), not when an earlier
/// batch created it, and goes alone when the master is not cached.
#[test]
fn a_batch_brings_an_older_master_along_and_its_turn_skips_it() {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB};
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    let idle = (FIRST_JOB + FIRST_BATCH + 500) as u16;
    let flow = |i: u16| {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1024 + i, 80));
        c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
        c
    };
    for i in 0..idle {
        fw.external_ct
            .upsert(&flow(i), Instant::from_millis(1 + u64::from(i)), true)
            .unwrap();
    }
    // In the first batch: a data flow whose master is the oldest entry,
    // one whose master the first job took, one whose master is gone.
    let in_batch = |k: u16| {
        Instant::from_millis(u64::from(idle) - FIRST_JOB as u64 - u64::from(k))
    };
    let old_master = flow(0).orig;
    let recent_master = flow(idle - 1).orig;
    let mut children = Vec::new();
    for (k, master) in [(10, old_master), (11, recent_master)]
        .into_iter()
        .chain([(12, tcp("10.9.9.9", "10.2.0.1", 1, 21))])
    {
        let mut c = Conntrack::new(tcp("10.1.0.7", "10.2.0.1", 6000 + k, 20));
        c.status = status::EXPECTED | status::CONFIRMED | status::SEEN_REPLY;
        c.master = Some(master);
        fw.external_ct.upsert(&c, in_batch(k), true).unwrap();
        children.push(c.orig);
    }
    let now = Instant::from_millis(100_000);
    let first = fw.control(now, Request::Commit(Target::Ct)).actions;
    let Work::Commit(plan0) = &first[0].work else {
        panic!("{first:?}")
    };
    assert!(plan0.cts.iter().any(|c| c.orig == recent_master));
    let is_commit = |j: &Job| matches!(j.work, Work::Commit(_));
    let batch = fw.tick(now).into_iter().find(is_commit).unwrap();
    let Work::Commit(plan1) = &batch.work else {
        panic!()
    };
    let at = |t: &Tuple| plan1.cts.iter().position(|c| c.orig == *t);
    let (m, child) = (at(&old_master).unwrap(), at(&children[0]).unwrap());
    assert!(m < child, "the master is created first");
    assert!(at(&children[1]).is_some() && at(&children[2]).is_some());
    assert_eq!(at(&recent_master), None, "the first job created it");
    assert_eq!(plan1.cts.len(), FIRST_BATCH + 1, "the batch and the master");
    let purpose = first[0].purpose;
    let done = Done::Committed {
        cts: vec![0; plan0.cts.len()],
        exps: Vec::new(),
        failed: Vec::new(),
        took_us: [1, 1],
    };
    fw.job(now, purpose, done);
    let rest = fw.tick(now).into_iter().find(is_commit).unwrap();
    assert_eq!(rest.purpose, Purpose::Commit { client: CLIENT });
    let Work::Commit(plan2) = &rest.work else {
        panic!()
    };
    assert!(plan2.cts.iter().all(|c| c.orig != old_master), "once only");
    let all = plan0.cts.len() + plan1.cts.len() + plan2.cts.len();
    assert_eq!(all, usize::from(idle) + children.len());
}

/// An expectation whose master is itself RELATED (H.323's H.245
/// channel, master of the RTP expectations) and not among the 256 most
/// recent: the master's whole chain goes into the first stage, each
/// master before what names it, so the kernel is never asked for the
/// expectation (nor its master) before the master. `fillers` more recent
/// conntracks: a commit in one job, or split.
fn a_related_masters_chain_precedes_its_expectation(fillers: u16) {
    let mut fw = node(cfg("", "FTFW { }", "ExpectationSync On"), 1);
    let est = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
    let mut a = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", 40000, 1720));
    a.status = est;
    a.timeout = Some(432000);
    let mut b = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", 40001, 30000));
    b.status = est | status::EXPECTED;
    b.timeout = Some(432000);
    b.master = Some(a.orig);
    let t0 = Instant::from_millis(0);
    fw.external_ct.upsert(&a, t0, true).unwrap();
    fw.external_ct.upsert(&b, t0, true).unwrap();
    fw.external_exp.upsert(&pasv(&b), t0, true).unwrap();
    for i in 0..fillers {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1024 + i, 80));
        c.status = est;
        c.timeout = Some(432000);
        let at = Instant::from_millis(1 + u64::from(i));
        fw.external_ct.upsert(&c, at, true).unwrap();
    }
    let o =
        fw.control(Instant::from_millis(10_000), Request::Commit(Target::All));
    let Work::Commit(plan) = &o.actions[0].work else {
        panic!()
    };
    let at = |t: &Tuple| plan.cts.iter().position(|c| c.orig == *t).unwrap();
    let (ia, ib) = (at(&a.orig), at(&b.orig));
    assert_eq!(plan.exps.len(), plan.first.1, "expectations: first stage");
    assert!(ia < ib, "A before B");
    assert!(
        ib < plan.first.0,
        "B (index {ib}) must precede the expectations, created after the \
         first {} conntracks",
        plan.first.0
    );
}

#[test]
fn an_expectation_of_a_related_master_follows_its_masters_whole_chain() {
    a_related_masters_chain_precedes_its_expectation(300);
}

#[test]
fn in_a_split_commit_an_expectation_of_a_related_master_follows_its_chain() {
    let split = super::commit_split::SPLIT_ABOVE as u16;
    a_related_masters_chain_precedes_its_expectation(split + 100);
}

/// A split commit of [`FIRST_JOB`] + [`FIRST_BATCH`] + 500 idle
/// conntracks, its first two jobs handed out (the first stage's and the
/// first batch's, both with the worker).
fn split_commit_of_three_jobs(now: Instant) -> (Fw, Job, Job) {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB};
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    let n = (FIRST_JOB + FIRST_BATCH + 500) as u16;
    for i in 0..n {
        let mut c = Conntrack::new(tcp("10.1.0.1", "10.2.0.1", 1024 + i, 80));
        c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
        fw.external_ct
            .upsert(&c, Instant::from_millis(1 + u64::from(i)), true)
            .unwrap();
    }
    let mut j1 = fw.control(now, Request::Commit(Target::Ct)).actions;
    let j2 = fw.tick(now).into_iter().find(is_commit).unwrap();
    let first = |batch| Purpose::CommitFirst {
        client: CLIENT,
        batch,
    };
    assert_eq!(j1[0].purpose, first(0));
    assert_eq!(j2.purpose, first(1));
    (fw, j1.remove(0), j2)
}

fn is_commit(j: &Job) -> bool {
    matches!(j.work, Work::Commit(_))
}

/// Every entry of a commit job created.
fn committed(j: &Job) -> Done {
    let Work::Commit(p) = &j.work else { panic!() };
    Done::Committed {
        cts: vec![0; p.cts.len()],
        exps: vec![0; p.exps.len()],
        failed: Vec::new(),
        took_us: [1, 1],
    }
}

fn queue_full() -> Done {
    Done::Failed("kernel job queue full".into())
}

/// A split commit whose last job the worker refuses (its queue full)
/// while an earlier job is still queued: the refusal comes back at once,
/// out of order, and the commit (the client's answer, the NEW events'
/// return) waits for the earlier job all the same.
#[test]
fn a_refused_last_job_leaves_the_commit_running_until_every_earlier_job_ends() {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB};
    let now = Instant::from_millis(100_000);
    let (mut fw, j1, j2) = split_commit_of_three_jobs(now);
    fw.job(now, j1.purpose, committed(&j1));
    let j3 = fw.tick(now).into_iter().find(is_commit).unwrap();
    assert_eq!(j3.purpose, Purpose::Commit { client: CLIENT });
    // The worker's queue is full: j3 comes straight back, j2 still queued.
    let o = fw.job(now, j3.purpose, queue_full());
    assert!(
        o.replies.is_empty() && fw.committing(),
        "j2 ({FIRST_BATCH} entries) has not run, yet the commit ended: {:?}",
        o.replies
    );
    let o = fw.job(now, j2.purpose, committed(&j2));
    assert_eq!(
        o.replies,
        [Reply::Done(Status::Failed(
            "500 entries and 0 expectations can't be committed".into()
        ))]
    );
    assert!(!fw.committing());
    assert_eq!(fw.counters.commit_ok, (FIRST_JOB + FIRST_BATCH) as u64);
    assert_eq!(fw.counters.commit_fail, 500);
}

/// An early job refused while the one before it is still queued counts
/// its own entries as failed, not those of the job ahead of it (whose
/// completion comes later and counts its own).
#[test]
fn a_refused_early_job_counts_its_own_entries_as_failed() {
    use super::commit_split::{FIRST_BATCH, FIRST_JOB};
    let now = Instant::from_millis(100_000);
    let (mut fw, j1, j2) = split_commit_of_three_jobs(now);
    let o = fw.job(now, j2.purpose, queue_full());
    assert!(o.replies.is_empty() && fw.committing());
    let j3 = fw.tick(now).into_iter().find(is_commit).unwrap();
    assert_eq!(j3.purpose, Purpose::Commit { client: CLIENT });
    fw.job(now, j1.purpose, committed(&j1));
    let o = fw.job(now, j3.purpose, committed(&j3));
    assert_eq!(
        o.replies,
        [Reply::Done(Status::Failed(format!(
            "{FIRST_BATCH} entries and 0 expectations can't be committed"
        )))]
    );
    assert_eq!(fw.counters.commit_ok, (FIRST_JOB + 500) as u64);
    assert_eq!(fw.counters.commit_fail, FIRST_BATCH as u64);
}

/// A kernel job the worker's full queue refused is counted, and `-s`
/// shows the count: under `--json`, and in `-s link`'s text, where
/// ctsyncd's own counters follow conntrackd's.
#[test]
fn a_refused_job_is_counted_where_stats_show_it() {
    let mut fw = node(cfg("", "FTFW { }", ""), 1);
    let now = Instant::from_millis(1_000);
    let flush = fw.control(now, Request::FlushKernel(Target::Ct)).actions;
    assert!(matches!(flush[0].work, Work::Flush { .. }));
    let o = fw.job(now, flush[0].purpose, queue_full());
    assert!(matches!(o.replies[..], [Reply::Done(Status::Failed(_))]));
    let stats = |fw: &mut Fw, view, format| {
        text(&fw.control(now, Request::Stats { view, format }))
    };
    let json = stats(&mut fw, StatsView::General, Format::Json);
    assert!(json.contains("\"jobs_failed\":1}"), "{json}");
    let link = stats(&mut fw, StatsView::Link, Format::Plain);
    assert!(
        link.ends_with(
            "kernel jobs:\n                   1 Failed or refused\n\n"
        ),
        "{link}"
    );
}
