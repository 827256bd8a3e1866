//! Transcript tests: each `tests/transcripts/*.txt` is a conversation
//! with one or more nodes (the inputs) and what each input caused (the
//! lines starting with `>`). The runner replays the inputs against real
//! nodes and simulated kernels (`sim/kernel.rs`), writes what they cause
//! in the same format, and compares the whole text. On a mismatch it
//! prints the actual transcript, ready to be reviewed and pasted over the
//! file (nothing is ever accepted automatically).
//!
//! The format, one item a line:
//!
//! ```text
//! # a comment (kept as is)
//! config General { UNIX { Path /x } }      (config lines are joined)
//! at 0 start                               (fw1 unless `fwN` follows `at T`)
//! at 5 fw2 start
//! at 10 kernel new tcp 10.0.0.1:1000 -> 10.0.0.2:80 established
//! at 10 kernel new exp tcp 10.0.0.1:0 -> 10.0.0.2:5000 master tcp 10.0.0.1:1000 -> 10.0.0.2:21
//! at 10 kernel destroy tcp 10.0.0.1:1000 -> 10.0.0.2:80
//! at 12 timer                              (Input::Timer)
//! at 12 poll                               (prints poll_at)
//! at 13 fw2 deliver                        (datagrams sent to fw2 so far)
//! at 13 fw2 drop                           (... lost instead)
//! at 20 control -c                         (the real CLI's parser)
//! at 21 jobs                               (the worker runs the queued jobs)
//! at 30 overrun                            (the event socket overran)
//! at 40 meet                               (the nodes talk until quiet)
//! at 50 fw2 forge session 0x999            (restamp what waits for fw2)
//! ```
//!
//! A peer's session is believed only once it answered a challenge, so a
//! datagram reaches the other node's caches only after a round trip. A
//! change waits for company up to `TX_IDLE` (50 µs) after the last input
//! and `TX_COALESCE` (2 ms) at most; a report, a challenge or a resend
//! leaves at once. The transcripts' clock counts whole milliseconds: a
//! deadline shows as the next one (`poll_at 11` for 10.05 ms).
//! `meet` plays that conversation out: it delivers whatever waits for a
//! running node, else runs the earliest timer due within `TX_COALESCE`
//! (moving the clock there), and again, until nothing waits and no such
//! timer is due (at most `MEET_ROUNDS` steps, else the transcript
//! fails). Each step is printed as the input it stands for (`> at 15 fw2
//! timer`), followed by what it caused; the clock stays where the last
//! step left it, so the next `at T` must not be earlier. `forge session
//! S` rewrites the session id in the header of every datagram waiting
//! for the node: a datagram claiming a new session of its sender.
//!
//! Kernel entries: `tcp|udp SRC:PORT -> DST:PORT` then any of `reply
//! SRC:PORT -> DST:PORT`, `established`, `helper NAME`, `master TUPLE`;
//! expectations: `exp TUPLE master TUPLE` (mask: the destination port).
//! `kernel lost new ...` changes the kernel but loses the events (as an
//! overrun does); `event new|update|destroy ...` hands the node an event
//! without touching the kernel (one that comes late, or one newer than a
//! dump being read). `jobs` shows each job the worker runs (`> worker ...`), each
//! completion (`> complete ...`) and each kernel event the job caused
//! (`> event ...`), each followed by what it caused. Dumps come in parts
//! of two entries. Datagrams a node sends are listed with their messages
//! (`> datagrams 1: Challenge Response 257..258`, datagrams apart by
//! `|`); `deliver` hands each to every other node.

mod sim;

use std::collections::VecDeque;
use std::fmt::Write as _;

use ctsyncd::cli::{Invocation, RunMode};
use ctsyncd::config::Config;
use ctsyncd::control::proto::Reply;
use ctsyncd::kernel::codec::{Kind, Message, Object};
use ctsyncd::kernel::origin::Origin;
use ctsyncd::model::{Conntrack, Expect, L4, ProtoInfo, Tuple, status};
use ctsyncd::node::{Completion, Input, Job, Node, Outbox, TX_COALESCE};
use ctsyncd::time::Instant;
use ctsyncd::wire::{Msg, Packet, ct_key_of, exp_key_of};
use sim::kernel::{Event, Kernel};

const DUMP_PART: usize = 2;
/// The most deliveries and timers one `meet` runs.
const MEET_ROUNDS: usize = 16;

#[derive(Default)]
struct Fw {
    node: Option<Node>,
    kernel: Kernel,
    jobs: VecDeque<Job>,
    /// Datagrams sent to this firewall, not yet delivered.
    inbox: Vec<(usize, Vec<u8>)>,
    starts: u32,
}

struct Run {
    cfg: Config,
    fws: Vec<Fw>,
    now: u64,
    next_client: u64,
    out: Vec<String>,
}

impl Run {
    fn say(&mut self, line: impl AsRef<str>) {
        self.out.push(format!("> {}", line.as_ref()));
    }

    fn feed(&mut self, i: usize, input: Input<'_>) {
        let Some(node) = self.fws[i].node.as_mut() else {
            self.say("(not running)");
            return;
        };
        let out = node.handle(Instant::from_millis(self.now), input);
        self.outbox(i, out);
    }

    fn outbox(&mut self, i: usize, out: Outbox) {
        if !out.datagrams.is_empty() {
            let what: Vec<String> =
                out.datagrams.iter().map(|d| datagram_text(d)).collect();
            self.say(format!(
                "datagrams {}: {}",
                out.datagrams.len(),
                what.join(" | ")
            ));
        }
        for d in out.datagrams {
            for (to, fw) in self.fws.iter_mut().enumerate() {
                if to != i {
                    fw.inbox.push((i, d.clone()));
                }
            }
        }
        for j in out.jobs {
            self.say(format!("job {}", sim::text::job_text(&j)));
            self.fws[i].jobs.push_back(j);
        }
        for (c, r) in out.replies {
            match r {
                Reply::Data(t) => {
                    for l in t.lines() {
                        self.say(format!("#{c} | {l}"));
                    }
                }
                Reply::Done(s) => self.say(format!("#{c} done {s:?}")),
            }
        }
        for l in out.logs {
            let level = l.level.as_str().to_lowercase();
            // An entry's line: after the time alone in the LogFile.
            let entry = if l.entry { "entry " } else { "" };
            self.say(format!("log {level} {entry}{}", l.text));
        }
        if out.shutdown {
            self.say("shutdown");
            self.fws[i].node = None;
        }
    }

    fn events(&mut self, i: usize, events: Vec<Event>) {
        for (m, o) in events {
            self.say(format!("event {}", sim::text::event_text(&m, o)));
            self.feed(i, Input::Kernel(m, o));
        }
    }

    fn input(&mut self, i: usize, cmd: &str) -> Result<(), String> {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["start"] => {
                let fw = &mut self.fws[i];
                fw.starts += 1;
                let session = (i as u32 + 1) * 0x100 + fw.starts;
                let now = Instant::from_millis(self.now);
                let mut node = Node::new(
                    self.cfg.clone(),
                    session,
                    u64::from(session) * 31,
                    1472,
                    212_992,
                    now,
                );
                let out = node.start(now);
                fw.node = Some(node);
                fw.jobs.clear();
                self.outbox(i, out);
            }
            ["timer"] => self.feed(i, Input::Timer),
            ["poll"] => {
                let at = self.fws[i]
                    .node
                    .as_ref()
                    .map(|n| n.poll_at().micros().div_ceil(1000));
                self.say(format!(
                    "poll_at {}",
                    at.map_or("-".into(), |t| t.to_string())
                ));
            }
            ["overrun"] => self.feed(i, Input::Overrun { buffer: 425_984 }),
            ["deliver"] => {
                for (from, d) in std::mem::take(&mut self.fws[i].inbox) {
                    let input = Input::Datagram {
                        link: 0,
                        peer: from as u64,
                        bytes: &d,
                    };
                    self.feed(i, input);
                }
            }
            ["meet"] => self.meet()?,
            ["forge", "session", s] => {
                let session = match s.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => s.parse(),
                }
                .map_err(|_| format!("bad session {s}"))?;
                let inbox = &mut self.fws[i].inbox;
                for (_, d) in inbox.iter_mut() {
                    Packet::new_checked(&mut d[..])
                        .map_err(|e| format!("forge: {e:?}"))?
                        .set_session(session);
                }
                let n = inbox.len();
                self.say(format!("forged {n}"));
            }
            ["drop"] => {
                let n = std::mem::take(&mut self.fws[i].inbox).len();
                self.say(format!("dropped {n}"));
            }
            ["jobs"] => {
                let mut ran = 0;
                while let Some(job) = self.fws[i].jobs.pop_front() {
                    ran += 1;
                    if ran > 100 {
                        return Err("jobs keep coming".into());
                    }
                    self.say(format!("worker {}", sim::text::job_text(&job)));
                    let mut ev = Vec::new();
                    let fw = &mut self.fws[i];
                    let dones =
                        fw.kernel.run(&self.cfg, &job.work, DUMP_PART, &mut ev);
                    // The loop prefers completions over kernel events.
                    for d in dones {
                        self.say(format!(
                            "complete {}",
                            sim::text::done_text(&d)
                        ));
                        let c = Completion {
                            purpose: job.purpose,
                            done: d,
                        };
                        self.feed(i, Input::Job(c));
                    }
                    self.events(i, ev);
                }
            }
            ["control", args @ ..] => {
                let parsed =
                    ctsyncd::cli::parse(args).map_err(|e| e.message)?;
                let Invocation::Run {
                    mode: RunMode::Client(request),
                    ..
                } = parsed.invocation
                else {
                    return Err(format!("not a client command: {args:?}"));
                };
                let client = self.next_client;
                self.next_client += 1;
                self.say(format!("#{client} is {request:?}"));
                let input = Input::Control {
                    client,
                    request,
                    links: &[],
                    control: Default::default(),
                };
                self.feed(i, input);
            }
            ["kernel", "lost", change @ ..] => {
                // The change happens; its events are lost (an overrun).
                self.kernel(i, change)?;
            }
            ["event", kind, spec @ ..] => {
                // An event as the socket delivers it, late or early: the
                // kernel's table is not touched.
                let kind = match *kind {
                    "new" => Kind::New,
                    "update" => Kind::Update,
                    "destroy" => Kind::Destroy,
                    k => return Err(format!("unknown event kind {k}")),
                };
                let object = match spec {
                    ["exp", rest @ ..] => Object::Exp(expect(rest)?),
                    _ => Object::Ct(conntrack(spec)?),
                };
                let m = Message {
                    kind,
                    object,
                    port: 0,
                    seq: 0,
                };
                self.feed(i, Input::Kernel(m, Origin::NotMe));
            }
            ["kernel", change @ ..] => {
                // Traffic's events reach the node at once.
                for (m, o) in self.kernel(i, change)? {
                    self.feed(i, Input::Kernel(m, o));
                }
            }
            _ => return Err(format!("unknown input {cmd:?}")),
        }
        Ok(())
    }

    /// Delivers and runs coalescing timers until every node is quiet.
    fn meet(&mut self) -> Result<(), String> {
        let window = TX_COALESCE.as_millis() as u64;
        for _ in 0..MEET_ROUNDS {
            let waiting = (0..self.fws.len()).find(|&i| {
                self.fws[i].node.is_some() && !self.fws[i].inbox.is_empty()
            });
            if let Some(i) = waiting {
                self.say(format!("at {} fw{} deliver", self.now, i + 1));
                self.input(i, "deliver")?;
                continue;
            }
            let due = self
                .fws
                .iter()
                .enumerate()
                .filter_map(|(i, fw)| {
                    let at =
                        fw.node.as_ref()?.poll_at().micros().div_ceil(1000);
                    (at <= self.now + window).then_some((at, i))
                })
                .min();
            let Some((at, i)) = due else {
                return Ok(());
            };
            self.now = self.now.max(at);
            self.say(format!("at {} fw{} timer", self.now, i + 1));
            self.feed(i, Input::Timer);
        }
        Err(format!("meet: still talking after {MEET_ROUNDS} steps"))
    }

    /// A change traffic makes in fw `i`'s kernel; returns its events.
    fn kernel(
        &mut self,
        i: usize,
        change: &[&str],
    ) -> Result<Vec<Event>, String> {
        let [kind, spec @ ..] = change else {
            return Err("kernel new|update|destroy ...".into());
        };
        let mut ev = Vec::new();
        let k = &mut self.fws[i].kernel;
        let o = Origin::NotMe;
        let r = match (*kind, spec) {
            ("new", ["exp", rest @ ..]) => {
                k.create_exp(&expect(rest)?, o, &mut ev)
            }
            ("destroy", ["exp", rest @ ..]) => {
                k.delete_exp(&exp_key_of(&expect(rest)?), o, &mut ev)
            }
            ("new", _) => k.create_ct(&conntrack(spec)?, o, &mut ev),
            ("update", _) => k.update_ct(&conntrack(spec)?, o, &mut ev),
            ("destroy", _) => {
                k.delete_ct(&ct_key_of(&conntrack(spec)?), o, &mut ev)
            }
            _ => return Err(format!("unknown kernel change {kind}")),
        };
        if let Err(e) = r {
            self.say(format!("kernel refused: errno {e}"));
        }
        Ok(ev)
    }
}

/// A datagram's messages, by kind (with their numbers for the handshake
/// and the acknowledgements).
fn datagram_text(d: &[u8]) -> String {
    let Ok((_, body)) = ctsyncd::wire::read(d) else {
        return "(unreadable)".into();
    };
    let names: Vec<String> = ctsyncd::wire::messages(body)
        .map(|m| match m {
            Ok(Msg::CtNew(_)) => "CtNew".into(),
            Ok(Msg::CtUpd(_)) => "CtUpd".into(),
            Ok(Msg::CtDel(_)) => "CtDel".into(),
            Ok(Msg::ExpNew(_)) => "ExpNew".into(),
            Ok(Msg::ExpUpd(_)) => "ExpUpd".into(),
            Ok(Msg::ExpDel(_)) => "ExpDel".into(),
            Ok(Msg::Ack { from, to }) => format!("Ack {}..{}", from.0, to.0),
            Ok(Msg::Nack { from, to }) => {
                format!("Nack {}..{}", from.0, to.0)
            }
            Ok(Msg::Alive { next }) => format!("Alive {}", next.0),
            Ok(Msg::Resync) => "Resync".into(),
            Ok(Msg::Challenge { .. }) => "Challenge".into(),
            Ok(Msg::Response { from, next, .. }) => {
                format!("Response {}..{}", from.0, next.0)
            }
            Ok(Msg::DigestTop { table, .. }) => format!("DigestTop {table:?}"),
            Ok(Msg::DigestSub { table, bucket, .. }) => {
                format!("DigestSub {table:?} {bucket}")
            }
            Ok(Msg::Prune {
                table, bucket, sub, ..
            }) => format!("Prune {table:?} {bucket}/{sub}"),
            Ok(Msg::PruneFor {
                table, bucket, sub, ..
            }) => format!("PruneFor {table:?} {bucket}/{sub}"),
            Ok(Msg::Synced { resync }) => format!("Synced {}", resync.0),
            Ok(Msg::DigestSubFor { table, bucket, .. }) => {
                format!("DigestSubFor {table:?} {bucket}")
            }
            Err(_) => "(malformed)".into(),
        })
        .collect();
    names.join(" ")
}

fn endpoint(s: &str) -> Result<(std::net::IpAddr, u16), String> {
    let (a, p) = s.rsplit_once(':').ok_or(format!("no port in {s}"))?;
    let a = a.trim_start_matches('[').trim_end_matches(']');
    Ok((
        a.parse().map_err(|_| format!("bad address {a}"))?,
        p.parse().map_err(|_| format!("bad port {p}"))?,
    ))
}

/// `tcp A:p -> B:q` at the start of `w`; returns it and what follows.
fn tuple<'a>(w: &'a [&'a str]) -> Result<(Tuple, &'a [&'a str]), String> {
    let [proto, src, "->", dst, rest @ ..] = w else {
        return Err(format!("expected PROTO SRC:PORT -> DST:PORT in {w:?}"));
    };
    let proto = match *proto {
        "tcp" => 6,
        "udp" => 17,
        p => return Err(format!("unknown protocol {p}")),
    };
    let ((s, sp), (d, dp)) = (endpoint(src)?, endpoint(dst)?);
    let t = Tuple {
        src: s,
        dst: d,
        proto,
        l4: L4::Ports { src: sp, dst: dp },
    };
    Ok((t, rest))
}

fn conntrack(w: &[&str]) -> Result<Conntrack, String> {
    let (orig, mut rest) = tuple(w)?;
    let mut c = Conntrack::new(orig);
    c.status = status::CONFIRMED;
    c.timeout = Some(120);
    if orig.proto == 6 {
        c.proto_info = ProtoInfo::Tcp {
            state: 1,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: 0,
            flags_reply: 0,
        };
    }
    while let [word, more @ ..] = rest {
        rest = match *word {
            "reply" => {
                // Same protocol as the original direction.
                let proto = w[0];
                let with: Vec<&str> = std::iter::once(proto)
                    .chain(more.iter().copied())
                    .collect();
                let (t, r) = tuple(&with)?;
                let r = &more[more.len() - r.len()..];
                c.reply = Some(t);
                r
            }
            "master" => {
                let (t, r) = tuple(more)?;
                c.master = Some(t);
                c.status |= status::EXPECTED;
                r
            }
            "helper" => {
                let [name, r @ ..] = more else {
                    return Err("helper needs a name".into());
                };
                c.helper = Some((*name).try_into().map_err(|_| "bad helper")?);
                r
            }
            "established" => {
                c.status |= status::SEEN_REPLY | status::ASSURED;
                c.timeout = Some(432_000);
                if let ProtoInfo::Tcp { state, .. } = &mut c.proto_info {
                    *state = 3;
                }
                more
            }
            other => return Err(format!("unknown conntrack option {other}")),
        };
    }
    Ok(c)
}

fn expect(w: &[&str]) -> Result<Expect, String> {
    let (t, rest) = tuple(w)?;
    let ["master", rest @ ..] = rest else {
        return Err("an expectation needs `master TUPLE`".into());
    };
    let (master, rest) = tuple(rest)?;
    let mask = Tuple {
        src: "255.255.255.255".parse().unwrap(),
        dst: "255.255.255.255".parse().unwrap(),
        proto: t.proto,
        l4: L4::Ports {
            src: 0,
            dst: 0xffff,
        },
    };
    let mut x = Expect::new(master, t, mask);
    x.timeout = Some(300);
    match rest {
        [] => {}
        ["helper", name] => {
            x.helper = Some((*name).try_into().map_err(|_| "bad helper")?)
        }
        other => return Err(format!("unknown expectation options {other:?}")),
    }
    Ok(x)
}

/// Replays one transcript; returns the actual text.
fn replay(text: &str) -> Result<String, String> {
    let config_text: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("config "))
        .fold(String::new(), |mut s, l| {
            let _ = writeln!(s, "{l}");
            s
        });
    let cfg = ctsyncd::config::parse(&config_text, "transcript.conf")
        .map_err(|e| format!("config: {e:?}"))?
        .config;
    let mut run = Run {
        cfg,
        fws: (0..3).map(|_| Fw::default()).collect(),
        now: 0,
        next_client: 1,
        out: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('>') {
            continue;
        }
        run.out.push(line.to_string());
        let Some(rest) = line.strip_prefix("at ") else {
            continue;
        };
        let (t, rest) = rest.split_once(' ').ok_or("at T needs an input")?;
        let t: u64 = t
            .parse()
            .map_err(|_| format!("line {}: bad time {t}", n + 1))?;
        if t < run.now {
            return Err(format!("line {}: time goes back", n + 1));
        }
        run.now = t;
        let (fw, cmd) = match rest.split_once(' ') {
            Some((f, cmd)) if f.starts_with("fw") => {
                let i: usize =
                    f[2..].parse().map_err(|_| format!("bad node {f}"))?;
                (i.checked_sub(1).filter(|&i| i < 3).ok_or("fw1..fw3")?, cmd)
            }
            _ => (0, rest),
        };
        run.input(fw, cmd)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
    }
    let mut s = run.out.join("\n");
    s.push('\n');
    Ok(s)
}

#[test]
fn transcripts() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/transcripts")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "the transcripts are missing");
    let mut failed = Vec::new();
    for path in &files {
        let want = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match replay(&want) {
            Ok(got) if got == want => {}
            Ok(got) => {
                let (n, (w, g)) = want
                    .lines()
                    .chain(std::iter::repeat(""))
                    .zip(got.lines())
                    .enumerate()
                    .find(|(_, (w, g))| w != g)
                    .unwrap_or((got.lines().count(), ("", "")));
                eprintln!(
                    "=== {name}: differs at line {}\n  want: {w}\n  got:  {g}\n=== actual transcript (review, then paste over the file):\n{got}=== end of {name}",
                    n + 1
                );
                failed.push(name);
            }
            Err(e) => {
                eprintln!("=== {name}: {e}");
                failed.push(name);
            }
        }
    }
    assert!(failed.is_empty(), "transcripts that differ: {failed:?}");
}
