//! The whole-firewall simulation: firewalls made of a real [`Node`] and a
//! simulated kernel ([`kernel::Kernel`]), joined by a lossy, reordering,
//! duplicating link ([`net::Link`]), on a virtual clock, every choice
//! drawn from one seed.
//!
//! The world plays the daemon's loop and kernel worker
//! (src/daemon/replicator.rs, src/daemon/worker.rs): it hands the node
//! its inputs, sends its datagrams, runs its jobs one at a time against
//! the simulated kernel (a dump comes back in parts, one per
//! millisecond), and feeds back both the completions and the kernel
//! events those jobs caused, with their [`Origin`]. Events and
//! completions each keep their order but interleave at random, as the
//! event socket and the worker's channel do. The clock jumps to the
//! earliest of the nodes' `poll_at()`, the next delivery and the next
//! job.
//!
//! With `trace` on, every input and what it caused is written to the
//! transcript, one line each; [`World::fail`] prints it with the seed.

#![allow(dead_code)] // each test binary uses its own part

pub mod flows;
pub mod kernel;
pub mod net;
pub mod script;
pub mod text;
pub mod traffic;

use std::collections::{HashMap, VecDeque};

use ctsyncd::config::{self, Config};
use ctsyncd::control::proto::{Cache, Format, Reply, Request, Status, Table};
use ctsyncd::kernel::origin::Origin;
use ctsyncd::model::{Conntrack, Expect};
use ctsyncd::node::{ClientId, Completion, Input, Job, Node, Outbox};
use ctsyncd::time::Instant;
use ctsyncd::wire::{CtKey, exp_key_of};

use kernel::{Event, Kernel};
use net::{Link, LinkParams, Rng};
use text::{describe, describe_out, job_text};

/// Entries per part of a dump (the worker uses 2048; small parts let
/// events interleave with a resync).
pub const DUMP_PART: usize = 16;
pub const MAX_DATAGRAM: usize = 1472;

/// A configuration as a lab firewall would have it: `general` goes into
/// `General`, `mode` is the `Mode` line's body, `options` the `Options`
/// block's.
pub fn cfg(general: &str, mode: &str, options: &str) -> Config {
    let text = format!(
        "General {{ UNIX {{ Path /run/ctsyncd.sock }} {general} }}\n\
         Sync {{ Mode {mode}\n\
         UDP {{ IPv4_Destination_Address 10.0.0.2 Port 3780 Interface sync0 }}\n\
         Options {{ {options} }} }}"
    );
    config::parse(&text, "sim.conf")
        .expect("valid config")
        .config
}

/// One firewall: its kernel (always there) and its daemon (when running).
pub struct Fw {
    pub name: &'static str,
    pub cfg: Config,
    pub node: Option<Node>,
    pub kernel: Kernel,
    /// Sessions used so far (each start is a new daemon).
    pub starts: u32,
    /// Jobs waiting for the worker.
    jobs: VecDeque<Job>,
    /// The worker is busy until then.
    busy_until: u64,
    /// Events on the event socket, with their delivery time.
    events: VecDeque<(u64, Event)>,
    /// Completions on the worker's channel.
    done: VecDeque<(u64, Completion)>,
    /// Every client's replies so far.
    pub replies: HashMap<ClientId, Vec<Reply>>,
    pub logs: Vec<String>,
    next_client: ClientId,
}

impl Fw {
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("daemon running")
    }
}

pub struct World {
    pub seed: u64,
    pub rng: Rng,
    pub now: u64,
    pub link: Link,
    pub fws: Vec<Fw>,
    pub trace: bool,
    pub transcript: Vec<String>,
}

impl World {
    pub fn new(seed: u64, params: LinkParams, cfgs: Vec<Config>) -> World {
        let names = ["fw1", "fw2", "fw3"];
        let fws = cfgs
            .into_iter()
            .zip(names)
            .map(|(cfg, name)| Fw {
                name,
                cfg,
                node: None,
                kernel: Kernel::new(),
                starts: 0,
                jobs: VecDeque::new(),
                busy_until: 0,
                events: VecDeque::new(),
                done: VecDeque::new(),
                replies: HashMap::new(),
                logs: Vec::new(),
                next_client: 1,
            })
            .collect();
        World {
            seed,
            rng: Rng(seed),
            now: 0,
            link: Link::new(params),
            fws,
            trace: true,
            transcript: Vec::new(),
        }
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.trace {
            let l = line();
            self.transcript.push(format!("{:>8} {l}", self.now));
        }
    }

    /// Prints the seed and the transcript, then panics with `why`.
    pub fn fail(&self, why: &str) -> ! {
        let test = env!("CARGO_CRATE_NAME");
        eprintln!("=== {test}: seed {} failed: {why}", self.seed);
        eprintln!("=== transcript ({} lines):", self.transcript.len());
        for l in &self.transcript {
            eprintln!("{l}");
        }
        panic!("seed {}: {why}", self.seed);
    }

    /// `fail` unless `ok`.
    pub fn ensure(&self, ok: bool, why: impl FnOnce() -> String) {
        if !ok {
            self.fail(&why());
        }
    }

    // ===== daemons =====

    /// Starts (or restarts) fw `i`'s daemon: a new node, a new session,
    /// the start-up jobs. Returns once the start-up dump is in, as the
    /// real daemon is not ready before.
    pub fn start(&mut self, i: usize) {
        let fw = &mut self.fws[i];
        fw.starts += 1;
        let session = (i as u32 + 1) * 0x1000 + fw.starts;
        let now = Instant::from_millis(self.now);
        let mut node = Node::new(
            fw.cfg.clone(),
            session,
            u64::from(session) * 31,
            MAX_DATAGRAM,
            212_992,
            now,
        );
        let out = node.start(now);
        fw.node = Some(node);
        fw.jobs.clear();
        fw.events.clear();
        fw.done.clear();
        fw.busy_until = self.now;
        let name = fw.name;
        self.note(|| format!("{name} start session {session:#x}"));
        self.outbox(i, out);
        let deadline = self.now + 10_000;
        while !self.fws[i].jobs.is_empty()
            || !self.fws[i].done.is_empty()
            || self.fws[i].busy_until > self.now
        {
            if self.now > deadline {
                self.fail("start-up never finished");
            }
            self.step();
        }
    }

    /// Kills fw `i`'s daemon (a crash: nothing is written, the lock and
    /// the kernel stay as they are).
    pub fn crash(&mut self, i: usize) {
        let fw = &mut self.fws[i];
        fw.node = None;
        fw.jobs.clear();
        fw.events.clear();
        fw.done.clear();
        let name = fw.name;
        self.link.drop_node(i);
        self.note(|| format!("{name} crash"));
    }

    // ===== inputs =====

    fn feed(&mut self, i: usize, input: Input<'_>) {
        if self.fws[i].node.is_none() {
            return;
        }
        if self.trace {
            let l = format!("{} < {}", self.fws[i].name, describe(&input));
            self.transcript.push(format!("{:>8} {l}", self.now));
        }
        let node = self.fws[i].node.as_mut().expect("running");
        let out = node.handle(Instant::from_millis(self.now), input);
        self.outbox(i, out);
    }

    fn outbox(&mut self, i: usize, out: Outbox) {
        if self.trace && !out.is_empty() {
            let l = format!("{} > {}", self.fws[i].name, describe_out(&out));
            self.transcript.push(format!("{:>8} {l}", self.now));
        }
        for d in &out.datagrams {
            for to in 0..self.fws.len() {
                if to != i && self.fws[to].node.is_some() {
                    self.link.send(&mut self.rng, self.now, i, to, d);
                }
            }
        }
        let fw = &mut self.fws[i];
        fw.jobs.extend(out.jobs);
        for (c, r) in out.replies {
            fw.replies.entry(c).or_default().push(r);
        }
        fw.logs.extend(out.logs.into_iter().map(|l| {
            format!("{} {}", l.level.as_str().to_lowercase(), l.text)
        }));
        if out.shutdown {
            fw.node = None;
        }
    }

    /// Kernel events reach fw `i`'s event socket (in order, within 0–2 ms).
    pub fn emit(&mut self, i: usize, events: Vec<Event>) {
        if self.fws[i].node.is_none() {
            return;
        }
        for e in events {
            let last = self.fws[i].events.back().map_or(0, |(t, _)| *t);
            let at = (self.now + self.rng.below(3)).max(last);
            self.fws[i].events.push_back((at, e));
        }
    }

    /// Sends a control request to fw `i` without waiting for the answer
    /// (see [`World::answer`]).
    pub fn request(&mut self, i: usize, req: Request) -> ClientId {
        let client = self.fws[i].next_client;
        self.fws[i].next_client += 1;
        self.feed(
            i,
            Input::Control {
                client,
                request: req,
                links: &[],
                control: Default::default(),
            },
        );
        client
    }

    /// A client's text and final status, once it has its last reply.
    pub fn answer(
        &self,
        i: usize,
        client: ClientId,
    ) -> Option<(String, Status)> {
        let replies = self.fws[i].replies.get(&client)?;
        let Some(Reply::Done(s)) = replies.last() else {
            return None;
        };
        let text = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Data(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        Some((text, s.clone()))
    }

    /// fw `i`'s event socket overruns: the events waiting on it are
    /// lost.
    pub fn overrun(&mut self, i: usize) {
        let lost = std::mem::take(&mut self.fws[i].events).len();
        self.note(|| {
            format!("fw{} event socket overrun, {lost} events lost", i + 1)
        });
        self.feed(i, Input::Overrun { buffer: 425_984 });
    }

    /// A control request to fw `i`; runs the world until its last reply.
    /// Returns the text and the status.
    pub fn control(&mut self, i: usize, req: Request) -> (String, Status) {
        let client = self.request(i, req);
        let deadline = self.now + 120_000;
        loop {
            if let Some(a) = self.answer(i, client) {
                return a;
            }
            if self.now > deadline || self.fws[i].node.is_none() {
                self.fail(&format!("{req:?} to fw{} never answered", i + 1));
            }
            self.step();
        }
    }

    /// Like [`World::control`]; fails unless the answer is `Ok`.
    pub fn ok(&mut self, i: usize, req: Request) -> String {
        let (text, s) = self.control(i, req);
        self.ensure(s == Status::Ok, || {
            format!("{req:?} on fw{}: {s:?}", i + 1)
        });
        text
    }

    // ===== the clock =====

    /// When something happens next.
    fn next_at(&self) -> u64 {
        let mut t = self.link.next_at().unwrap_or(u64::MAX);
        for fw in &self.fws {
            let Some(node) = &fw.node else { continue };
            t = t.min(node.poll_at().micros().div_ceil(1000));
            if let Some((at, _)) = fw.events.front() {
                t = t.min(*at);
            }
            if let Some((at, _)) = fw.done.front() {
                t = t.min(*at);
            }
            if !fw.jobs.is_empty() {
                t = t.min(fw.busy_until);
            }
        }
        t
    }

    /// Advances the clock to the next thing that happens and does it
    /// (and everything else due then).
    pub fn step(&mut self) {
        let next = self.next_at();
        self.now = self.now.max(next);
        self.do_due();
    }

    /// Runs the world for `ms` of virtual time.
    pub fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        let mut spins = 0u32;
        loop {
            let next = self.next_at();
            if next > end {
                self.now = end;
                return;
            }
            if next <= self.now {
                spins += 1;
                if spins > 100_000 {
                    self.fail("livelock: nothing moves the clock");
                }
            } else {
                spins = 0;
            }
            self.now = self.now.max(next);
            self.do_due();
        }
    }

    fn do_due(&mut self) {
        let now = self.now;
        for i in 0..self.fws.len() {
            self.run_jobs(i);
            // The two channels interleave at random, each in order.
            loop {
                let fw = &self.fws[i];
                let ev = fw.events.front().is_some_and(|(t, _)| *t <= now);
                let dn = fw.done.front().is_some_and(|(t, _)| *t <= now);
                let take_event = match (ev, dn) {
                    (false, false) => break,
                    (true, true) => self.rng.chance(50),
                    (e, _) => e,
                };
                if take_event {
                    let (_, (m, o)) = self.fws[i].events.pop_front().unwrap();
                    self.feed(i, Input::Kernel(m, o));
                } else {
                    let (_, c) = self.fws[i].done.pop_front().unwrap();
                    self.feed(i, Input::Job(c));
                }
            }
        }
        while let Some(f) = self.link.pop_due(now) {
            if self.fws[f.to].node.is_some() && self.link.up {
                let input = Input::Datagram {
                    link: 0,
                    peer: f.from as u64,
                    bytes: &f.bytes,
                };
                self.feed(f.to, input);
            }
        }
        for i in 0..self.fws.len() {
            let due = self.fws[i]
                .node
                .as_ref()
                .is_some_and(|n| n.poll_at().micros().div_ceil(1000) <= now);
            if due {
                self.feed(i, Input::Timer);
            }
        }
    }

    /// The worker: starts the next job when idle. Its effect on the
    /// kernel happens now; the completion (each part of a dump one
    /// millisecond after the last) and the events come later.
    fn run_jobs(&mut self, i: usize) {
        while self.fws[i].busy_until <= self.now {
            let Some(job) = self.fws[i].jobs.pop_front() else {
                return;
            };
            self.note(|| format!("fw{} worker runs {}", i + 1, job_text(&job)));
            let fw = &mut self.fws[i];
            let mut events = Vec::new();
            let dones =
                fw.kernel.run(&fw.cfg, &job.work, DUMP_PART, &mut events);
            let mut at = self.now + 1 + self.rng.below(2);
            for d in dones {
                let c = Completion {
                    purpose: job.purpose,
                    done: d,
                };
                self.fws[i].done.push_back((at, c));
                at += 1;
            }
            self.fws[i].busy_until = at - 1;
            self.emit(i, events);
        }
    }

    // ===== traffic =====

    /// A packet creates a flow in fw `i`'s kernel.
    pub fn new_flow(&mut self, i: usize, ct: &Conntrack) -> bool {
        let mut ev = Vec::new();
        let ok = self.fws[i]
            .kernel
            .create_ct(ct, Origin::NotMe, &mut ev)
            .is_ok();
        self.emit(i, ev);
        ok
    }

    /// A packet changes a flow (state, timeout).
    pub fn update_flow(&mut self, i: usize, ct: &Conntrack) -> bool {
        let mut ev = Vec::new();
        let ok = self.fws[i]
            .kernel
            .update_ct(ct, Origin::NotMe, &mut ev)
            .is_ok();
        self.emit(i, ev);
        ok
    }

    /// A flow ends (FIN, timeout).
    pub fn end_flow(&mut self, i: usize, k: &CtKey) -> bool {
        let mut ev = Vec::new();
        let ok = self.fws[i]
            .kernel
            .delete_ct(k, Origin::NotMe, &mut ev)
            .is_ok();
        self.emit(i, ev);
        ok
    }

    /// A helper creates an expectation.
    pub fn expect(&mut self, i: usize, x: &Expect) -> bool {
        let mut ev = Vec::new();
        let ok = self.fws[i]
            .kernel
            .create_exp(x, Origin::NotMe, &mut ev)
            .is_ok();
        self.emit(i, ev);
        ok
    }

    /// A connection matches the expectation: it is consumed, and the
    /// RELATED conntrack is created.
    pub fn consume(&mut self, i: usize, x: &Expect, data: &Conntrack) -> bool {
        let mut ev = Vec::new();
        let k = &mut self.fws[i].kernel;
        let ok = k.delete_exp(&exp_key_of(x), Origin::NotMe, &mut ev).is_ok()
            && k.create_ct(data, Origin::NotMe, &mut ev).is_ok();
        self.emit(i, ev);
        ok
    }

    // ===== looking =====

    /// A cache as `-i`/`-e --json` shows it, one entry per item, sorted,
    /// without the `active_since` field (it is the only one that may
    /// differ between two nodes that agree).
    pub fn cache(
        &mut self,
        i: usize,
        cache: Cache,
        table: Table,
    ) -> Vec<String> {
        let text = self.ok(
            i,
            Request::Dump {
                cache,
                table,
                format: Format::Json,
            },
        );
        json_entries(&text)
    }
}

/// Splits a JSON dump (an array, or one object a line as `-i --json`
/// without internal cache gives) into its objects, each without
/// `active_since`.
pub fn json_entries(text: &str) -> Vec<String> {
    let body = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find(",\"active_since\":") {
        let entry = rest[..at].trim_start().trim_start_matches(',');
        out.push(format!("{entry}}}"));
        let tail = &rest[at..];
        let end = tail.find('}').expect("object end");
        rest = &tail[end + 1..];
    }
    out.sort();
    out
}
