//! The simulation's one-line renderings: of kernel entries and events,
//! of node inputs and outboxes, of jobs and their completions. The
//! transcripts of both test binaries are made of these.

use std::fmt::Write as _;

use ctsyncd::control::proto::Reply;
use ctsyncd::kernel::codec::{Kind, Message, Object};
use ctsyncd::kernel::origin::Origin;
use ctsyncd::model::{Conntrack, L4, Tuple};
use ctsyncd::node::{Input, Job, Outbox, Work};

/// A conntrack's identity as text.
pub fn ct_text(c: &Conntrack) -> String {
    let mut s = tuple_text(&c.orig);
    if let Some(m) = &c.master {
        let _ = write!(s, " master {}", tuple_text(m));
    }
    s
}

pub fn tuple_text(t: &Tuple) -> String {
    let p = match t.proto {
        6 => "tcp",
        17 => "udp",
        _ => "other",
    };
    match t.l4 {
        L4::Ports { src, dst } => {
            format!("{p} {}:{src} -> {}:{dst}", t.src, t.dst)
        }
        _ => format!("{p} {} -> {}", t.src, t.dst),
    }
}

fn object_text(o: &Object) -> String {
    match o {
        Object::Ct(c) => format!("ct {}", ct_text(c)),
        Object::Exp(x) => format!(
            "exp {} master {}",
            tuple_text(&x.tuple),
            tuple_text(&x.master)
        ),
    }
}

fn kind_text(k: Kind) -> &'static str {
    match k {
        Kind::New => "new",
        Kind::Update => "update",
        Kind::Destroy => "destroy",
    }
}

pub fn event_text(m: &Message, o: Origin) -> String {
    format!("{} {} ({o:?})", kind_text(m.kind), object_text(&m.object))
}

/// One input, one line.
pub fn describe(input: &Input<'_>) -> String {
    match input {
        Input::Kernel(m, o) => format!("kernel {}", event_text(m, *o)),
        Input::KernelUndecodable => "kernel undecodable".into(),
        Input::KernelReadFailed => "kernel read failed".into(),
        Input::Overrun { buffer } => format!("overrun (buffer {buffer})"),
        Input::Datagram { peer, bytes, .. } => {
            format!("datagram from fw{} ({} bytes)", peer + 1, bytes.len())
        }
        Input::Control {
            client, request, ..
        } => format!("control #{client} {request:?}"),
        Input::BadControl { client, why } => {
            format!("bad control #{client}: {why}")
        }
        Input::Timer => "timer".into(),
        Input::EventsPaused => "events paused".into(),
        Input::Job(c) => {
            format!("job done {:?}: {}", c.purpose, done_text(&c.done))
        }
    }
}

pub fn done_text(d: &ctsyncd::node::Done) -> String {
    use ctsyncd::node::{Done, Injection};
    match d {
        Done::Committed { cts, exps, .. } => {
            format!("Committed cts {} exps {}", errnos(cts), errnos(exps))
        }
        Done::Injected(r) => {
            // A delete that finds its entry gone is done (the node counts
            // it in neither column): "gone", not a failure.
            let gone = |&&(what, e): &&(Injection, i32)| {
                e == 2
                    && matches!(
                        what,
                        Injection::CtDelete | Injection::ExpDelete
                    )
            };
            let e: Vec<i32> =
                r.iter().filter(|x| !gone(x)).map(|&(_, e)| e).collect();
            match r.iter().filter(gone).count() {
                0 => format!("Injected {}", errnos(&e)),
                n => format!("Injected {}, {n} gone", errnos(&e)),
            }
        }
        Done::Flushed(n) => format!("Flushed {n}"),
        Done::Dumped { objects, last } => format!(
            "Dumped {} entries{}",
            objects.len(),
            if *last { ", last" } else { "" }
        ),
        Done::Failed(why) => format!("Failed {why:?}"),
    }
}

/// A list of errnos as "n ok" plus the failures, in order.
fn errnos(e: &[i32]) -> String {
    let ok = e.iter().filter(|&&e| e == 0).count();
    let failed: Vec<i32> = e.iter().copied().filter(|&e| e != 0).collect();
    if failed.is_empty() {
        format!("{ok} ok")
    } else {
        format!("{ok} ok, failed {failed:?}")
    }
}

pub fn job_text(j: &Job) -> String {
    match &j.work {
        Work::Commit(p) => {
            format!("Commit {} cts {} exps", p.cts.len(), p.exps.len())
        }
        Work::Inject(a) => format!("Inject {} changes", a.len()),
        Work::Get { orig, .. } => format!("Get {orig:?}"),
        Work::Flush {
            conntracks,
            expectations,
        } => format!("Flush ct={conntracks} exp={expectations}"),
        Work::Dump {
            conntracks,
            expectations,
        } => format!("Dump ct={conntracks} exp={expectations}"),
    }
}

/// What an outbox holds, one line.
pub fn describe_out(o: &Outbox) -> String {
    let mut parts = Vec::new();
    if !o.datagrams.is_empty() {
        parts.push(format!("{} datagrams", o.datagrams.len()));
    }
    for j in &o.jobs {
        parts.push(format!("job {}", job_text(j)));
    }
    for (c, r) in &o.replies {
        match r {
            Reply::Data(t) => {
                parts.push(format!("#{c} data {} bytes", t.len()))
            }
            Reply::Done(s) => parts.push(format!("#{c} {s:?}")),
        }
    }
    for l in &o.logs {
        parts.push(format!("log {:?}", l.text));
    }
    if o.shutdown {
        parts.push("shutdown".into());
    }
    parts.join("; ")
}
