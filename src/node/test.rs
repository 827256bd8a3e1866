//! Two nodes wired together in memory, the loop's part played by the
//! test: the harness the node's sibling tests share (`test_commit`,
//! `test_commit_split`, `test_dumps`, `test_events`, `test_expectations`,
//! `test_resync`, `test_stats`), with the FTP control connection and PASV
//! expectation they replicate. It holds no tests of its own.

use super::*;
use crate::config;
use crate::control::proto::{Reply, Request, Status};
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::Expect;
use crate::model::{L4, ProtoInfo, Tuple, status};

pub(super) fn cfg(
    extra_general: &str,
    mode_body: &str,
    options: &str,
) -> Config {
    let text = format!(
        "General {{ UNIX {{ Path /x }} {extra_general} }}\nSync {{ Mode {mode_body}\nUDP {{ IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }}\nOptions {{ {options} }} }}"
    );
    config::parse(&text, "t.conf").unwrap().config
}

/// A node with the loop's part played by the test: what it sends is
/// kept on `wire` until [`flow`] delivers it.
pub(super) struct Fw {
    pub(super) node: Node,
    pub(super) wire: Vec<Vec<u8>>,
    pub(super) links: Vec<LinkView>,
    /// The loop's control replies, as `-s --json` shows them.
    pub(super) control_view: ControlView,
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
pub(super) struct Outcome {
    pub(super) replies: Vec<Reply>,
    pub(super) actions: Vec<Job>,
}

/// The control client every test request comes from.
pub(super) const CLIENT: ClientId = 7;

impl Fw {
    pub(super) fn feed(&mut self, now: Instant, input: Input<'_>) -> Outbox {
        let mut o = self.node.handle(now, input);
        self.wire.append(&mut o.datagrams);
        o
    }

    pub(super) fn outcome(o: Outbox) -> Outcome {
        Outcome {
            replies: o.replies.into_iter().map(|(_, r)| r).collect(),
            actions: o.jobs,
        }
    }

    pub(super) fn kernel(
        &mut self,
        now: Instant,
        msg: Message,
        origin: Origin,
    ) {
        self.feed(now, Input::Kernel(msg, origin));
    }

    pub(super) fn control(
        &mut self,
        now: Instant,
        request: Request,
    ) -> Outcome {
        let links = self.links.clone();
        let o = self.feed(
            now,
            Input::Control {
                client: CLIENT,
                request,
                links: &links,
                control: self.control_view,
            },
        );
        Fw::outcome(o)
    }

    pub(super) fn tick(&mut self, now: Instant) -> Vec<Job> {
        self.feed(now, Input::Timer).jobs
    }

    pub(super) fn job(
        &mut self,
        now: Instant,
        purpose: Purpose,
        done: Done,
    ) -> Outcome {
        let o = self.feed(now, Input::Job(Completion { purpose, done }));
        Fw::outcome(o)
    }

    pub(super) fn commit_done(
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
            aborted: None,
        };
        self.job(now, Purpose::Commit { client: CLIENT }, done)
            .replies
    }

    pub(super) fn resync_kernel(
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

pub(super) fn node(c: Config, session: u32) -> Fw {
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
        control_view: ControlView::default(),
    }
}

pub(super) fn tcp(src: &str, dst: &str, sp: u16, dp: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

/// A TCP conntrack to port 80 from `port`, with its reply tuple, as the
/// kernel reports it.
pub(super) fn conntrack(port: u16) -> Conntrack {
    let mut ct = Conntrack::new(tcp("10.0.0.1", "10.0.0.2", port, 80));
    ct.reply = Some(ct.orig.inverse());
    ct
}

/// `-R` on `fw` at `at`, its dump bringing the [`conntrack`]s of `ports`
/// 100 ms later: the internal cache stands for the kernel's table again.
pub(super) fn resync_with(
    fw: &mut Fw,
    at: Instant,
    ports: impl IntoIterator<Item = u16>,
) {
    use crate::control::proto::{Request, Target};
    let out = fw.control(at, Request::ResyncKernel(Target::All));
    let dump = out
        .actions
        .into_iter()
        .find(|j| matches!(j.purpose, Purpose::Resync { .. }))
        .expect("-R dumps the kernel");
    let live = ports
        .into_iter()
        .map(|p| crate::kernel::codec::Object::Ct(conntrack(p)))
        .collect();
    fw.job(
        at + std::time::Duration::from_millis(100),
        dump.purpose,
        Done::Dumped {
            objects: live,
            last: true,
        },
    );
}

pub(super) fn ftp_master() -> Conntrack {
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

pub(super) fn event(kind: Kind, object: Object) -> Message {
    Message {
        kind,
        object,
        port: 0,
        seq: 0,
    }
}

/// Sends what `a` has (without waiting for the transmit coalescing).
pub(super) fn send_now(a: &mut Fw, now: Instant) -> Vec<Vec<u8>> {
    a.node.tx.due_now(now);
    a.feed(now, Input::Timer);
    std::mem::take(&mut a.wire)
}

/// Moves everything `a` has to send to `b`, and `b`'s answers back (the
/// session challenge, NACKs), until both are quiet; returns b's jobs.
pub(super) fn flow(a: &mut Fw, b: &mut Fw, now: Instant) -> Vec<Job> {
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

pub(super) fn text(o: &Outcome) -> String {
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
pub(super) fn ftp_session(fw: &mut Fw, master: &Conntrack) {
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

pub(super) fn status_of(o: &Outcome) -> Option<&Status> {
    o.replies.iter().find_map(|r| match r {
        Reply::Done(s) => Some(s),
        _ => None,
    })
}

pub(super) fn queue_full() -> Done {
    Done::Failed("kernel job queue full".into())
}
