//! Two whole nodes (`ctsyncd::node::Node`) over a link the input drives,
//! each with a simulated kernel worker and control clients: where every
//! part of the daemon meets. The input picks one configuration for both
//! (mode, disabled caches, expectations, polling, activity scans,
//! anti-entropy, the peer protocol, HashLimit, overrun resyncs, a
//! filter), the start-up dump, then a sequence of steps in its own
//! order: kernel events from a small pool of tuples (so they collide)
//! with varied attributes, overruns and undecodable messages; control
//! requests of every kind from new clients, clients that leave or read
//! slowly; each kernel job answered at a step of its choosing with an
//! outcome of its choosing (parts of a dump, a commit refused in part or
//! cut short, a job that failed, a full job queue); time; datagrams
//! delivered, dropped, duplicated, reordered or corrupted; the link's
//! MTU. Then everything heals: jobs succeed, the link delivers, time
//! runs.
//!
//! The worker is the daemon's (`daemon::worker`) in shape: jobs run one
//! at a time in the order given, a dump's parts come in sequence
//! (conntracks before expectations) and end with `last` or a failure, a
//! refused job comes back at once as failed, a commit answers one errno
//! per planned entry, the start-up jobs run to their end before anything
//! else.
//!
//! Checked after every step, from what the node documents:
//! - a client's frames end with one `Reply::Done` and nothing follows it
//!   (`Outbox::replies`), and only clients that asked are answered;
//! - no cache holds more than its `HashLimit` (`cache`), nor the engine's
//!   queues more than their bounds (`Snapshot::tx_queue_limit`,
//!   `resend_queue_limit`);
//! - counters only grow: the node's, the caches' (a flush counts its
//!   entries as deleted, `Cache::flush`), the engine's and anti-entropy's;
//! - a datagram fits the link's largest (`Node::set_max_datagram`);
//! - one resync dump out at a time (`node::resync`), one activity scan
//!   (`node::activity`), at most `IN_FLIGHT` (2) commit jobs
//!   (`node::commit_split`);
//! - a commit runs (`Node::committing`) exactly while the `-c` that
//!   started it waits for its `Done`;
//! - the NEW event group is left only by a commit, and joined again once
//!   when it ends (`node::commit_events`): left and joined alternate, and
//!   a node that left is committing;
//! - the timers do not spin: at one instant, `Input::Timer` brings
//!   `poll_at` past it within a bounded number of turns (it may be in the
//!   past only while a dump part or a commit batch is due, and those end).
//!
//! After the heal, every request of a client still there has had its
//! `Done`.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use ctsyncd::config::{self, Config};
use ctsyncd::control::proto::{
    Cache as Which, CacheSel, Format, Reply, Request, StatsView, Table, Target,
};
use ctsyncd::kernel::codec::{Kind, Message, Object};
use ctsyncd::kernel::origin::Origin;
use ctsyncd::model::{
    Conntrack, Expect, ExpectNat, L4, ProtoInfo, SeqAdj, Timestamp, Tuple,
    expect_flag, status,
};
use ctsyncd::node::{
    ClientId, Completion, Done, Injection, Input, Job, LinkView, Node, Outbox,
    Purpose, Snapshot, Work,
};
use ctsyncd::time::Instant;

/// Steps one input may take.
const MAX_STEPS: usize = 400;
/// Datagrams in flight per direction (the link's buffer); more are lost.
const IN_FLIGHT: usize = 64;
/// Commit jobs the node hands the worker at most (`commit_split`).
const COMMIT_JOBS: usize = 2;
/// Timer turns at one instant before it counts as a busy loop: a dump
/// part or a commit batch per turn, and the pool's entries are few (a
/// synthetic bulk is [`BULK`]).
const MAX_TURNS: usize = 200;
/// Entries a synthetic bulk dump delivers: more than a commit splits
/// (`commit_split::SPLIT_ABOVE`, 1024) into three jobs or more (the
/// first stage's 256, a first batch of 1024, the next of 4096), and more
/// than a cache dump renders in one part (`dumps::DUMP_PART`, 4096), so
/// that dumps are paced.
const BULK: u16 = 4200;
/// Rounds of the heal.
const HEAL_ROUNDS: usize = 600;
const T0: Instant = Instant::from_millis(1_000_000);
const EIO: i32 = 5;

// ===== input =====

/// Reads the input a byte at a time (zeros once it runs out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ===== configuration =====

/// One configuration for both nodes from three bytes; None when the
/// parser refuses it (the harness's mistake: see `config_text`).
fn config(r: &mut Bytes) -> Option<(Config, String)> {
    let text = config_text(r.byte(), r.byte(), r.byte());
    let parsed = config::parse(&text, "fuzz.conf").ok()?;
    Some((parsed.config, text))
}

fn config_text(b0: u8, b1: u8, b2: u8) -> String {
    let mode = match b0 & 3 {
        1 => "NOTRACK",
        2 => "ALARM",
        _ => "FTFW",
    };
    let mut body = String::new();
    if mode != "ALARM" {
        if b0 & 4 != 0 {
            body += "DisableExternalCache On ";
        }
        if b0 & 8 != 0 {
            body += "StartupResync On ";
        }
    }
    match mode {
        "NOTRACK" if b0 & 16 != 0 => body += "DisableInternalCache On ",
        "FTFW" if b0 & 16 != 0 => body += "ResendQueueSize 16 ACKWindowSize 4 ",
        "ALARM" => body += "RefreshTime 2 CacheTimeout 6 ",
        _ => {}
    }
    if b0 & 32 != 0 {
        body += "PurgeTimeout 3 ";
    }
    if b0 & 64 != 0 {
        body += "CommitTimeout 30 ";
    }
    let mut general = String::new();
    general += match b1 & 3 {
        0 => "HashLimit 8 ",
        1 => "HashLimit 64 ",
        2 => "HashLimit 2048 ",
        _ => "HashLimit 8192 ",
    };
    if b1 & 4 != 0 {
        general += "PollSecs 5 ";
    }
    general += match (b1 >> 3) & 3 {
        1 => "NetlinkOverrunResync On ",
        2 => "NetlinkOverrunResync Off ",
        3 => "NetlinkOverrunResync 2 ",
        _ => "",
    };
    if b1 & 32 != 0 {
        general += "Filter { Address Ignore { IPv4_address 10.0.0.3 } } ";
    }
    let mut options = String::new();
    options += match b2 & 3 {
        1 => "ExpectationSync On ",
        2 => "ExpectationSync { ftp } ",
        _ => "",
    };
    if b2 & 4 != 0 {
        options += "ActivityScan 10 ";
    }
    if b2 & 8 != 0 {
        options += "AntiEntropyPeriod 4 ";
    }
    if b2 & 16 != 0 {
        options += "PeerProtocol conntrackd ";
    }
    if b2 & 32 != 0 {
        options += "TCPWindowTracking On ";
    }
    format!(
        "General {{ UNIX {{ Path /x }} {general}}}\nSync {{ Mode {mode} {{ {body}}}\nUDP {{ IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }}\nOptions {{ {options}}} }}"
    )
}

// ===== the pool of entries =====

/// One of 64 tuples: protocol, source, ports and family from the byte,
/// so that events collide.
fn tuple(b: u8) -> Tuple {
    let v6 = b & 0x20 != 0;
    tuple_in(b, v6)
}

fn tuple_in(b: u8, v6: bool) -> Tuple {
    let (src, dst): (IpAddr, IpAddr) = match (v6, (b >> 2) & 1) {
        (false, 0) => {
            ("10.0.0.1".parse().unwrap(), "10.0.1.1".parse().unwrap())
        }
        (false, _) => {
            ("10.0.0.3".parse().unwrap(), "10.0.1.1".parse().unwrap())
        }
        (true, 0) => (
            "2001:db8::1".parse().unwrap(),
            "2001:db8:1::1".parse().unwrap(),
        ),
        (true, _) => (
            "2001:db8::3".parse().unwrap(),
            "2001:db8:1::1".parse().unwrap(),
        ),
    };
    let sport = if b & 8 != 0 { 1025 } else { 1024 };
    let dport = if b & 16 != 0 { 80 } else { 21 };
    let (proto, l4) = match b & 3 {
        0 => (
            6,
            L4::Ports {
                src: sport,
                dst: dport,
            },
        ),
        1 => (
            17,
            L4::Ports {
                src: sport,
                dst: dport,
            },
        ),
        2 if v6 => (
            58,
            L4::Icmp {
                kind: 128,
                code: 0,
                id: sport,
            },
        ),
        2 => (
            1,
            L4::Icmp {
                kind: 8,
                code: 0,
                id: sport,
            },
        ),
        _ => (
            132,
            L4::Ports {
                src: sport,
                dst: dport,
            },
        ),
    };
    Tuple {
        src,
        dst,
        proto,
        l4,
    }
}

/// The reply tuple of `orig` with its destination translated (SNAT).
fn translated(orig: &Tuple, port: bool) -> Tuple {
    let mut r = orig.inverse();
    r.dst = match orig.src {
        IpAddr::V4(_) => "192.0.2.1".parse().unwrap(),
        IpAddr::V6(_) => "2001:db8:2::1".parse().unwrap(),
    };
    if let (true, L4::Ports { src, .. }) = (port, r.l4) {
        r.l4 = L4::Ports { src, dst: 61000 };
    }
    r
}

fn helper(b: u8) -> Option<ctsyncd::model::HelperName> {
    match b & 3 {
        1 => Some("ftp".try_into().unwrap()),
        2 => Some("sip".try_into().unwrap()),
        _ => None,
    }
}

/// A conntrack of the pool with attributes from the input.
fn conntrack(r: &mut Bytes) -> Conntrack {
    let orig = tuple(r.byte());
    conntrack_of(orig, r)
}

fn conntrack_of(orig: Tuple, r: &mut Bytes) -> Conntrack {
    let mut c = Conntrack::new(orig);
    let (f, g, s) = (r.byte(), r.byte(), r.byte());
    c.zone = u16::from(f & 1);
    c.reply = match (f >> 1) & 3 {
        0 => None,
        1 => Some(translated(&orig, f & 8 != 0)),
        _ => Some(orig.inverse()),
    };
    let bits = [
        status::SEEN_REPLY,
        status::ASSURED,
        status::CONFIRMED,
        status::SRC_NAT | status::SRC_NAT_DONE,
        status::EXPECTED,
        status::OFFLOAD,
        status::SEQ_ADJUST,
        status::DYING,
    ];
    c.status = bits
        .iter()
        .enumerate()
        .filter(|(i, _)| s & (1 << i) != 0)
        .fold(0, |acc, (_, b)| acc | b);
    c.timeout = match g & 3 {
        0 => None,
        1 => Some(30),
        2 => Some(432_000),
        _ => Some(u32::from(r.byte())),
    };
    c.mark = u32::from((g >> 2) & 3);
    c.helper = helper(g >> 4);
    if c.status & status::EXPECTED != 0 {
        c.master = Some(tuple_in(r.byte(), orig.src.is_ipv6()));
    }
    c.proto_info = match (orig.proto, g & 0x40 != 0) {
        (6, true) => ProtoInfo::Tcp {
            state: r.byte() % 10,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: 0x03,
            flags_reply: 0x03,
        },
        (132, true) => ProtoInfo::Sctp {
            state: r.byte() % 10,
            vtag_orig: 1,
            vtag_reply: 2,
        },
        _ => ProtoInfo::None,
    };
    if g & 0x80 != 0 {
        let adj = SeqAdj {
            correction_pos: u32::from(r.byte()),
            offset_before: 0,
            offset_after: 4,
        };
        c.seq_adj = Some([adj, SeqAdj::default()]);
        c.labels = Some([f; 16]);
    }
    if f & 0x10 != 0 {
        c.counters = Some(ctsyncd::model::Counters {
            orig_packets: 3,
            orig_bytes: 300,
            reply_packets: 2,
            reply_bytes: 200,
        });
        c.timestamp = Some(Timestamp {
            start_s: 1_700_000_000,
            stop_s: 0,
        });
    }
    c.id = u32::from(f >> 5);
    c
}

/// An expectation of the pool: its master and expected tuple from the
/// pool (one family), attributes from the input.
fn expectation(r: &mut Bytes) -> Expect {
    let master = tuple(r.byte());
    let v6 = master.src.is_ipv6();
    let expected = tuple_in(r.byte(), v6);
    let ones: IpAddr = if v6 {
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()
    } else {
        "255.255.255.255".parse().unwrap()
    };
    let mask = Tuple {
        src: ones,
        dst: ones,
        proto: expected.proto,
        l4: match expected.l4 {
            L4::Ports { .. } => L4::Ports {
                src: 0,
                dst: 0xffff,
            },
            other => other,
        },
    };
    let mut x = Expect::new(master, expected, mask);
    let f = r.byte();
    x.zone = u16::from(f & 1);
    x.timeout = match (f >> 1) & 3 {
        0 => None,
        1 => Some(300),
        _ => Some(u32::from(r.byte())),
    };
    x.flags = [
        0,
        expect_flag::PERMANENT,
        expect_flag::INACTIVE,
        expect_flag::USERSPACE,
    ][usize::from((f >> 3) & 3)];
    x.helper = helper(f >> 5);
    if f & 0x80 != 0 {
        x.nat = Some(ExpectNat {
            dir: u32::from(f & 1),
            tuple: translated(&expected, false),
        });
        x.func = Some("nat-follow-master".try_into().unwrap());
    }
    x.class = u32::from((f >> 6) & 1);
    x
}

/// One entry of a synthetic bulk (distinct from the pool's).
fn bulk_entry(i: u16) -> Conntrack {
    let mut c = Conntrack::new(Tuple {
        src: "10.0.2.1".parse().unwrap(),
        dst: "10.0.1.1".parse().unwrap(),
        proto: 17,
        l4: L4::Ports {
            src: 2000 + i,
            dst: 53,
        },
    });
    c.reply = Some(c.orig.inverse());
    c.status = status::CONFIRMED | status::SEEN_REPLY;
    c.timeout = Some(120);
    c
}

// ===== the simulated kernel worker =====

/// A node's kernel worker: jobs in the order given, one at a time.
#[derive(Default)]
struct Worker {
    queue: VecDeque<Job>,
    /// The job at the front is a dump that has delivered expectations
    /// (conntracks come first).
    dumping_exps: bool,
    /// Its queue is full: every job handed to it comes back refused.
    full: bool,
}

/// The next completion of `job` (true: its last), as the input says.
fn answer(
    job: &Job,
    dumping_exps: &mut bool,
    r: &mut Bytes,
    healthy: bool,
) -> (Done, bool) {
    let sel = if healthy { 0x40 } else { r.byte() };
    let failed = || Done::Failed("simulated kernel failure".into());
    match &job.work {
        Work::Dump {
            conntracks,
            expectations,
        } => {
            if sel & 0x0f == 0x0f {
                return (failed(), true);
            }
            let mut objects = Vec::new();
            if *conntracks && sel & 0x20 != 0 && !*dumping_exps && !healthy {
                // A table far larger than the pool.
                if r.byte() == 0xb1 {
                    objects.extend((0..BULK).map(bulk_entry).map(Object::Ct));
                }
            }
            let n = if healthy { 0 } else { (sel >> 1) & 7 };
            for _ in 0..n {
                let exp = r.byte() & 1 != 0;
                match (exp, *conntracks, *expectations) {
                    (false, true, _) if !*dumping_exps => {
                        objects.push(Object::Ct(conntrack(r)));
                    }
                    (true, _, true) => {
                        *dumping_exps = true;
                        objects.push(Object::Exp(expectation(r)));
                    }
                    _ => {}
                }
            }
            let last = sel & 1 == 0;
            (Done::Dumped { objects, last }, last)
        }
        Work::Get { orig, zone } => {
            if sel & 0x0f == 0x0f {
                return (failed(), true);
            }
            let objects = if sel & 1 == 0 {
                let mut c = conntrack_of(*orig, r);
                c.zone = *zone;
                vec![Object::Ct(c)]
            } else {
                Vec::new()
            };
            (
                Done::Dumped {
                    objects,
                    last: true,
                },
                true,
            )
        }
        Work::Flush { .. } => match sel & 0x0f {
            0x0f => (failed(), true),
            n => (Done::Flushed(usize::from(n)), true),
        },
        Work::Inject(changes) => match sel & 0x0f {
            0x0f => (failed(), true),
            n => {
                let results = changes
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (Injection::of(a), errno(n, i)))
                    .collect();
                (Done::Injected(results), true)
            }
        },
        Work::Commit(plan) => {
            if sel & 0x0f == 0x0f {
                return (failed(), true);
            }
            // As `worker::committed`: the kernel answers a prefix (all of
            // it unless the socket failed), the rest counts as EIO, and
            // only the kernel's refusals are listed with their entries.
            let mode = sel & 0x0f;
            let total = plan.cts.len() + plan.exps.len();
            let answered = if sel & 0x10 != 0 {
                usize::from(r.byte()) % (total + 1)
            } else {
                total
            };
            let cts_answered = answered.min(plan.cts.len());
            let exps_answered = answered - cts_answered;
            let mut cts: Vec<i32> =
                (0..cts_answered).map(|i| errno(mode, i)).collect();
            let mut exps: Vec<i32> = (0..exps_answered)
                .map(|i| errno(mode, cts_answered + i))
                .collect();
            let failed = cts
                .iter()
                .zip(&plan.cts)
                .filter(|(e, _)| **e != 0)
                .map(|(&e, c)| (e, Object::Ct(c.clone())))
                .chain(
                    exps.iter()
                        .zip(&plan.exps)
                        .filter(|(e, _)| **e != 0)
                        .map(|(&e, x)| (e, Object::Exp(x.clone()))),
                )
                .collect();
            let aborted =
                (answered < total).then(|| "Connection timed out".into());
            cts.resize(plan.cts.len(), EIO);
            exps.resize(plan.exps.len(), EIO);
            let done = Done::Committed {
                cts,
                exps,
                failed,
                took_us: [u32::from(sel), 7],
                aborted,
            };
            (done, true)
        }
    }
}

/// Entry `i`'s errno in a job answered by pattern `mode`: all created, or
/// one in `mode` refused (EEXIST, ENOENT, EINVAL in turn).
fn errno(mode: u8, i: usize) -> i32 {
    match mode {
        0..=5 => 0,
        m if i.is_multiple_of(usize::from(m - 4)) => [17, 2, 22][i % 3],
        _ => 0,
    }
}

// ===== one side =====

/// A client's request and what it got.
struct ClientState {
    request: Option<Request>,
    done: bool,
    /// Left (`Node::client_gone`): its reply may still come, or not.
    gone: bool,
    /// Its dump is paused (`Node::dump_paced`).
    behind: bool,
}

struct Side {
    name: &'static str,
    node: Node,
    worker: Worker,
    clients: HashMap<ClientId, ClientState>,
    max_datagram: usize,
    /// The node left the NEW event group (and has not joined again).
    left_new_events: bool,
    /// The node asked to stop (`-k`): the daemon is gone.
    stopped: bool,
    /// Datagrams sent, not yet delivered.
    out: VecDeque<Vec<u8>>,
    /// The counters of the last check.
    counters: Vec<(&'static str, u64)>,
}

impl Side {
    fn new(
        name: &'static str,
        cfg: Config,
        session: u32,
        now: Instant,
    ) -> Side {
        let max_datagram = 1472;
        Side {
            name,
            node: Node::new(
                cfg,
                session,
                u64::from(session),
                max_datagram,
                212_992,
                now,
            ),
            worker: Worker::default(),
            clients: HashMap::new(),
            max_datagram,
            left_new_events: false,
            stopped: false,
            out: VecDeque::new(),
            counters: Vec::new(),
        }
    }

    fn handle(&mut self, now: Instant, input: Input<'_>) {
        if self.stopped {
            return;
        }
        let out = self.node.handle(now, input);
        self.absorb(now, out);
    }

    /// Everything an outbox asks for, as the daemon's loop does it
    /// (`Replicator::apply`), with the checks on what it holds.
    fn absorb(&mut self, now: Instant, out: Outbox) {
        let mut out = out;
        loop {
            for (client, reply) in &out.replies {
                let Some(c) = self.clients.get_mut(client) else {
                    panic!(
                        "{}: a reply to client {client}, which never asked: {reply:?}",
                        self.name
                    );
                };
                assert!(
                    !c.done,
                    "{}: client {client} ({:?}) got {reply:?} after its Done",
                    self.name, c.request
                );
                if matches!(reply, Reply::Done(_)) {
                    c.done = true;
                }
            }
            for d in &out.datagrams {
                assert!(
                    d.len() <= self.max_datagram,
                    "{}: a datagram of {} bytes on a link of {}",
                    self.name,
                    d.len(),
                    self.max_datagram
                );
                if self.out.len() < IN_FLIGHT {
                    self.out.push_back(d.clone());
                }
            }
            match out.new_events {
                Some(false) => {
                    assert!(
                        !self.left_new_events,
                        "{}: left the NEW group twice",
                        self.name
                    );
                    self.left_new_events = true;
                }
                Some(true) => {
                    assert!(
                        self.left_new_events,
                        "{}: joined the NEW group it had not left",
                        self.name
                    );
                    self.left_new_events = false;
                }
                None => {}
            }
            if out.shutdown {
                self.stopped = true;
                return;
            }
            let mut refused = Vec::new();
            for job in std::mem::take(&mut out.jobs) {
                if self.worker.full {
                    refused.push(Completion {
                        purpose: job.purpose,
                        done: Done::Failed("kernel job queue full".into()),
                    });
                } else {
                    self.worker.queue.push_back(job);
                }
            }
            if refused.is_empty() {
                return;
            }
            let mut next = Outbox::default();
            for c in refused {
                next.merge(self.node.handle(now, Input::Job(c)));
            }
            out = next;
        }
    }

    /// The worker's next completion of its front job.
    fn work(&mut self, now: Instant, r: &mut Bytes, healthy: bool) {
        let Some(job) = self.worker.queue.front() else {
            return;
        };
        let (done, last) =
            answer(job, &mut self.worker.dumping_exps, r, healthy);
        let purpose = job.purpose;
        if last {
            self.worker.queue.pop_front();
            self.worker.dumping_exps = false;
        }
        self.handle(now, Input::Job(Completion { purpose, done }));
    }

    fn request(&mut self, now: Instant, client: ClientId, request: Request) {
        self.clients.insert(
            client,
            ClientState {
                request: Some(request),
                done: false,
                gone: false,
                behind: false,
            },
        );
        let links = [LinkView::default()];
        self.handle(
            now,
            Input::Control {
                client,
                request,
                links: &links,
                control: Default::default(),
            },
        );
    }

    /// Runs the timers due by `now`; a spin at one instant is a finding.
    fn timers(&mut self, now: Instant) {
        let mut turns = 0;
        while !self.stopped && self.node.poll_at() <= now {
            turns += 1;
            assert!(
                turns <= MAX_TURNS,
                "{}: poll_at stays at or before {now:?} after {MAX_TURNS} timer turns",
                self.name
            );
            self.handle(now, Input::Timer);
        }
    }

    /// The checks on the node's state after a step.
    fn check(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        let snap = self.node.snapshot(now, &[], false);
        for (name, c) in [
            ("internal ct", snap.internal_ct),
            ("internal exp", snap.internal_exp),
            ("external ct", snap.external_ct),
            ("external exp", snap.external_exp),
        ] {
            assert!(
                c.len <= c.limit,
                "{}: {name} cache holds {} of {}",
                self.name,
                c.len,
                c.limit
            );
        }
        assert!(
            snap.tx_queue <= snap.tx_queue_limit,
            "{}: tx queue {} of {}",
            self.name,
            snap.tx_queue,
            snap.tx_queue_limit
        );
        assert!(
            snap.resend_queue <= snap.resend_queue_limit,
            "{}: resend queue {} of {}",
            self.name,
            snap.resend_queue,
            snap.resend_queue_limit
        );
        let counters = counters_of(&snap);
        if !self.counters.is_empty() {
            for ((name, before), (_, after)) in
                self.counters.iter().zip(&counters)
            {
                assert!(
                    after >= before,
                    "{}: counter {name} went down from {before} to {after}",
                    self.name
                );
            }
        }
        self.counters = counters;
        let in_flight = |f: fn(&Purpose) -> bool| {
            self.worker.queue.iter().filter(|j| f(&j.purpose)).count()
        };
        let resyncs = in_flight(|p| matches!(p, Purpose::Resync { .. }));
        assert!(
            resyncs <= 1,
            "{}: {resyncs} resync dumps out at once",
            self.name
        );
        let scans = in_flight(|p| matches!(p, Purpose::ActivityScan));
        assert!(
            scans <= 1,
            "{}: {scans} activity scans out at once",
            self.name
        );
        let commits = in_flight(|p| {
            matches!(p, Purpose::Commit { .. } | Purpose::CommitFirst { .. })
        });
        assert!(
            commits <= COMMIT_JOBS,
            "{}: {commits} commit jobs out at once",
            self.name
        );
        assert!(
            !self.left_new_events || self.node.committing(),
            "{}: out of the NEW group with no commit running",
            self.name
        );
        // "Between -c and its completion": the -c that started it waits
        // for its Done until the commit ends (a refused one, or one with
        // nothing to commit, has it at once).
        let commit_waits = self
            .clients
            .values()
            .any(|c| matches!(c.request, Some(Request::Commit(_))) && !c.done);
        assert_eq!(
            self.node.committing(),
            commit_waits,
            "{}: committing() says {}, a -c waiting for its Done: {}",
            self.name,
            self.node.committing(),
            commit_waits
        );
    }

    /// Clients that asked, are still there and have no `Done`.
    fn waiting(&self) -> Vec<(ClientId, Option<Request>)> {
        if self.stopped {
            return Vec::new();
        }
        let mut v: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.done && !c.gone)
            .map(|(id, c)| (*id, c.request))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }
}

/// Reads named fields of a value into a list of counters.
macro_rules! counters {
    ($out:ident, $prefix:literal, $v:expr, [$($f:ident),* $(,)?]) => {
        $( $out.push((concat!($prefix, stringify!($f)), $v.$f)); )*
    };
}

/// Every counter of a snapshot that only grows, named, in a fixed order
/// (the caches' counters, not their sizes).
fn counters_of(s: &Snapshot) -> Vec<(&'static str, u64)> {
    let mut out = Vec::with_capacity(128);
    let c = &s.counters;
    counters!(
        out,
        "node.",
        c,
        [
            events_received,
            events_filtered,
            events_unknown,
            catch_event_failed,
            overruns,
            kernel_flushes,
            kernel_resyncs,
            traffic_bytes,
            traffic_packets,
            local_read_failed,
            local_unknown_request,
            commit_ok,
            commit_fail,
            inject_ok,
            inject_fail,
            jobs_failed,
            activity_scans,
            activity_resent,
        ]
    );
    counters!(out, "bypass ct.", c.bypass_ct, [new, updated, destroyed]);
    counters!(out, "bypass exp.", c.bypass_exp, [new, updated, destroyed]);
    macro_rules! cache {
        ($prefix:literal, $v:expr) => {
            counters!(
                out,
                $prefix,
                $v.stats,
                [
                    add_ok,
                    add_fail,
                    add_fail_enospc,
                    upd_ok,
                    upd_fail,
                    upd_enoent,
                    del_ok,
                    del_fail,
                    del_enoent,
                ]
            );
        };
    }
    cache!("internal ct.", s.internal_ct);
    cache!("internal exp.", s.internal_exp);
    cache!("external ct.", s.external_ct);
    cache!("external exp.", s.external_exp);
    counters!(
        out,
        "sync.",
        s.sync,
        [
            datagrams_sent,
            datagrams_recv,
            msgs_sent,
            msgs_recv,
            malformed,
            bad_version,
            bad_header,
            auth_failed,
            replayed,
            unsealed,
            lost,
            before,
            retransmitted,
            resend_queue_dropped,
            tx_queue_full,
            too_big,
            background_dropped,
            peer_restarts,
            resyncs_requested_by_peer,
            out_of_window,
            unconfirmed,
            challenges_sent,
            challenges_answered,
            challenges_held,
            answers_held,
            probes_sent,
            tail_resent,
            tail_queries,
            given_up_silent,
            bulks_on_return,
            synced_sent,
            resyncs_complete,
        ]
    );
    if let Some(a) = &s.anti_entropy {
        counters!(
            out,
            "anti-entropy.",
            a,
            [
                rounds,
                buckets_compared,
                buckets_differing,
                leaves_repaired,
                entries_resent,
                entries_pruned,
                cut_short,
                ignored,
            ]
        );
    }
    out
}

// ===== requests =====

fn target(b: u8) -> Target {
    [Target::All, Target::Ct, Target::Expect][usize::from(b % 3)]
}

fn format(b: u8) -> Format {
    [Format::Plain, Format::Xml, Format::Json][usize::from(b % 3)]
}

/// A request of any kind but `-k` (which ends the daemon: rare, below).
fn request(r: &mut Bytes) -> Request {
    let b = r.byte();
    let arg = r.byte();
    match b % 10 {
        0 => Request::Commit(target(arg)),
        1 => Request::FlushCache(
            [CacheSel::All, CacheSel::Internal, CacheSel::External]
                [usize::from(arg % 3)],
        ),
        2 => Request::FlushKernel(target(arg)),
        3 => Request::Dump {
            cache: if arg & 1 != 0 {
                Which::External
            } else {
                Which::Internal
            },
            table: if arg & 2 != 0 {
                Table::Expect
            } else {
                Table::Ct
            },
            format: format(arg >> 2),
        },
        4 => {
            let views = [
                StatsView::General,
                StatsView::Network,
                StatsView::Cache,
                StatsView::Runtime,
                StatsView::Link,
                StatsView::RsQueue,
                StatsView::Process,
                StatsView::Queue,
                StatsView::Expect,
                StatsView::Ready,
            ];
            Request::Stats {
                view: views[usize::from(arg % 10)],
                format: format(arg / 10),
            }
        }
        5 => Request::ResyncKernel(target(arg)),
        6 => Request::BulkSend,
        7 => Request::RequestResync,
        8 => Request::ResetTimers,
        _ if arg == 0x6b => Request::Kill,
        _ => Request::Commit(target(arg)),
    }
}

// ===== the driver =====

struct World {
    now: Instant,
    sides: [Side; 2],
    next_client: ClientId,
}

impl World {
    fn check(&mut self) {
        let now = self.now;
        for s in &mut self.sides {
            s.check(now);
        }
    }

    /// Time runs to `to`, the timers firing when due.
    fn advance(&mut self, to: Instant) {
        loop {
            let next = self
                .sides
                .iter()
                .filter(|s| !s.stopped)
                .map(|s| s.node.poll_at())
                .min();
            match next {
                Some(at) if at <= to => {
                    self.now = self.now.max(at);
                    let now = self.now;
                    for s in &mut self.sides {
                        s.timers(now);
                    }
                    self.check();
                }
                _ => break,
            }
        }
        self.now = self.now.max(to);
    }

    /// Delivers `d` from side `from` to the other.
    fn deliver(&mut self, from: usize, d: &[u8]) {
        let now = self.now;
        let to = &mut self.sides[1 - from];
        to.handle(
            now,
            Input::Datagram {
                link: 0,
                peer: 1 + from as u64,
                bytes: d,
            },
        );
    }

    fn step(&mut self, r: &mut Bytes) {
        let op = r.byte();
        let who = usize::from(op >> 7);
        let now = self.now;
        match op & 0x0f {
            0..=2 => {
                let kind = [Kind::New, Kind::Update, Kind::Destroy]
                    [usize::from(r.byte() % 3)];
                let b = r.byte();
                let object = if b & 3 == 3 {
                    Object::Exp(expectation(r))
                } else {
                    Object::Ct(conntrack(r))
                };
                let origin = match b >> 5 {
                    5 => Origin::Commit,
                    6 => Origin::Flush,
                    7 => Origin::Inject,
                    _ => Origin::NotMe,
                };
                let msg = Message {
                    kind,
                    object,
                    port: 0,
                    seq: 0,
                };
                self.sides[who].handle(now, Input::Kernel(msg, origin));
            }
            3 => {
                let input = match r.byte() % 3 {
                    0 => Input::KernelUndecodable,
                    1 => Input::KernelReadFailed,
                    _ => Input::Overrun {
                        buffer: 212_992 * (1 + usize::from(r.byte() & 3)),
                    },
                };
                self.sides[who].handle(now, input);
            }
            4 | 5 => {
                let client = self.next_client;
                self.next_client += 1;
                let req = request(r);
                self.sides[who].request(now, client, req);
            }
            6 => {
                // A client leaves, or reads slowly, or catches up.
                let b = r.byte();
                let side = &mut self.sides[who];
                let mut ids: Vec<ClientId> =
                    side.clients.keys().copied().collect();
                ids.sort_unstable();
                if let Some(&id) =
                    ids.get(usize::from(b >> 2) % ids.len().max(1))
                {
                    let c = side.clients.get_mut(&id).unwrap();
                    match b & 3 {
                        0 => {
                            c.gone = true;
                            side.node.client_gone(id);
                        }
                        1 | 2 => {
                            c.behind = b & 3 == 1;
                            side.node.dump_paced(id, c.behind);
                        }
                        _ => {
                            let client = self.next_client;
                            self.next_client += 1;
                            let side = &mut self.sides[who];
                            side.clients.insert(
                                client,
                                ClientState {
                                    request: None,
                                    done: false,
                                    gone: false,
                                    behind: false,
                                },
                            );
                            side.handle(
                                now,
                                Input::BadControl {
                                    client,
                                    why: "malformed frame body".into(),
                                },
                            );
                        }
                    }
                }
            }
            7 | 8 => self.sides[who].work(now, r, false),
            9 => {
                let side = &mut self.sides[who];
                side.worker.full = !side.worker.full;
            }
            10 => {
                let dt = match r.byte() % 10 {
                    0 => Duration::ZERO,
                    1 => Duration::from_micros(300),
                    2 => Duration::from_millis(5),
                    3 => Duration::from_millis(50),
                    4 => Duration::from_millis(210),
                    5 => Duration::from_secs(1),
                    6 => Duration::from_secs(3),
                    7 => Duration::from_secs(11),
                    8 => Duration::from_secs(45),
                    _ => Duration::from_secs(300),
                };
                self.advance(now + dt);
            }
            11 | 12 => {
                // The link: deliver the oldest, or one that overtakes,
                // drop, duplicate or corrupt.
                let b = r.byte();
                let n = self.sides[who].out.len();
                if n == 0 {
                    return;
                }
                let at = if b & 0x80 != 0 {
                    usize::from(r.byte()) % n
                } else {
                    0
                };
                let Some(mut d) = self.sides[who].out.remove(at) else {
                    return;
                };
                match b & 7 {
                    0 => {}
                    1 => self.deliver(who, &d.clone()),
                    2 if !d.is_empty() => {
                        let pos = usize::from(r.u16()) % d.len();
                        d[pos] ^= r.byte() | 1;
                        self.deliver(who, &d);
                    }
                    3 if !d.is_empty() => {
                        let len = usize::from(r.u16()) % d.len();
                        self.deliver(who, &d[..len]);
                    }
                    _ => self.deliver(who, &d),
                }
            }
            13 => self.sides[who].handle(now, Input::EventsPaused),
            14 => {
                let n = match r.byte() % 4 {
                    0 => 576,
                    1 => 1280,
                    2 => 1472,
                    _ => 8952,
                };
                let side = &mut self.sides[who];
                side.node.set_max_datagram(n);
                side.max_datagram = n;
            }
            _ => {
                // Both sides' links delivered in order.
                for from in 0..2 {
                    while let Some(d) = self.sides[from].out.pop_front() {
                        self.deliver(from, &d);
                    }
                }
            }
        }
        self.check();
    }

    /// Every job the workers hold succeeds, and the link delivers all
    /// it holds, until neither has anything left (bounded: a node that
    /// injects what it receives may answer with more).
    fn drain(&mut self, now: Instant) {
        let mut none = Bytes(&[]);
        for _ in 0..16 {
            for s in &mut self.sides {
                while !s.stopped && !s.worker.queue.is_empty() {
                    s.work(now, &mut none, true);
                }
            }
            if self.sides.iter().all(|s| s.out.is_empty()) {
                return;
            }
            for from in 0..2 {
                while let Some(d) = self.sides[from].out.pop_front() {
                    self.deliver(from, &d);
                }
            }
        }
    }

    /// The heal: every job succeeds, dumps resume, the link delivers
    /// everything, time runs; until every client still there has its
    /// `Done` and the workers are idle.
    fn heal(&mut self) {
        for s in &mut self.sides {
            s.worker.full = false;
            let ids: Vec<ClientId> = s
                .clients
                .iter()
                .filter(|(_, c)| c.behind)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                s.node.dump_paced(id, false);
                s.clients.get_mut(&id).unwrap().behind = false;
            }
        }
        for _ in 0..HEAL_ROUNDS {
            let now = self.now;
            self.drain(now);
            self.check();
            if self.sides.iter().all(|s| s.waiting().is_empty()) {
                return;
            }
            self.advance(now + Duration::from_millis(250));
        }
        for s in &self.sides {
            assert!(
                s.waiting().is_empty(),
                "{}: clients still without their Done after the heal: {:?}",
                s.name,
                s.waiting()
            );
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut r = Bytes(data);
    let Some((cfg, _text)) = config(&mut r) else {
        return;
    };
    let now = T0;
    let mut world = World {
        now,
        sides: [
            Side::new("A", cfg.clone(), 100, now),
            Side::new("B", cfg, 200, now),
        ],
        next_client: 1,
    };
    // Start-up, as `Replicator::start_up`: the node's jobs run to their
    // end (a failure there stops the daemon) before anything else.
    for s in &mut world.sides {
        let out = s.node.start(now);
        s.absorb(now, out);
        let mut parts = 0;
        while !s.worker.queue.is_empty() {
            parts += 1;
            let healthy = parts > 8;
            let (done, last) = {
                let job = s.worker.queue.front().unwrap();
                let (mut done, mut last) =
                    answer(job, &mut s.worker.dumping_exps, &mut r, healthy);
                if matches!(done, Done::Failed(_)) {
                    (done, last) = answer(
                        job,
                        &mut s.worker.dumping_exps,
                        &mut Bytes(&[]),
                        true,
                    );
                }
                (done, last)
            };
            let purpose = s.worker.queue.front().unwrap().purpose;
            if last {
                s.worker.queue.pop_front();
                s.worker.dumping_exps = false;
            }
            s.handle(now, Input::Job(Completion { purpose, done }));
        }
    }
    world.check();
    for _ in 0..MAX_STEPS {
        if r.is_empty() {
            break;
        }
        world.step(&mut r);
    }
    world.heal();
    if std::env::var_os("NODE_DRIVE_SUMMARY").is_some() {
        for s in &world.sides {
            eprintln!("summary {}: {}", s.name, summary(&s.node, world.now));
        }
    }
});

/// How deep an input went, for `NODE_DRIVE_SUMMARY=1` runs over a corpus.
fn summary(node: &Node, now: Instant) -> String {
    let s = node.snapshot(now, &[], false);
    let c = &s.counters;
    format!(
        "internal_ct={} external_ct={} internal_exp={} external_exp={} commit_ok={} commit_fail={} inject_ok={} jobs_failed={} activity_scans={} msgs_recv={} challenges_answered={} anti_entropy_rounds={}",
        s.internal_ct.len,
        s.external_ct.len,
        s.internal_exp.len,
        s.external_exp.len,
        c.commit_ok,
        c.commit_fail,
        c.inject_ok,
        c.jobs_failed,
        c.activity_scans,
        s.sync.msgs_recv,
        s.sync.challenges_answered,
        s.anti_entropy.map_or(0, |a| a.rounds),
    )
}

// ===== seeds =====
//
// Inputs that reach deep states at once (`printf` them into
// fuzz/corpus/node_drive/): the fuzzer finds its way there from them
// sooner than from nothing.
//
// - a split commit: HashLimit 8192, A's start-up dump brings a bulk, A's
//   `-B` crosses the link, B commits and plans its next batch:
//   `\x00\x03\x00\x20\xb1\x40\x04\x06\x00\x0a\x02\x0f\x0a\x02\x0f\x0a\x05\x0f\x0a\x05\x0f\x84\x00\x01\x0a\x00\x0a\x00`
// - a commit refused in part (HashLimit 64, the same way to B, whose
//   worker refuses every other entry):
//   `\x00\x01\x00\x20\xb1\x40\x04\x06\x00\x0a\x02\x0f\x0a\x02\x0f\x0a\x05\x0f\x0a\x05\x0f\x84\x00\x01\x87\x06`
// - a commit job out while the timers run: `\x00\x00\x00\x40\x40\x04\x00\x00\x0a\x00`
// - a full resend queue (ResendQueueSize 16, HashLimit 64: a second `-B`
//   once the session is confirmed, nothing delivered):
//   `\x10\x01\x00\x20\xb1\x40\x04\x06\x00\x0a\x02\x0f\x0a\x02\x0f\x0a\x02\x0f\x04\x06\x00\x0a\x02\x0a\x05`
// - a cache dump of two parts whose client reads slowly:
//   `\x00\x03\x00\x20\xb1\x40\x04\x03\x00\x06\x01\x0a\x00`
