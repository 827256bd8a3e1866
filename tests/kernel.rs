//! ctsyncd's kernel layer against the real kernel, inside a network
//! namespace created and removed by the test. Needs root; skipped with a
//! message otherwise (CI runs as root).

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use ctsyncd::kernel::codec::{self, Kind, Object, Received};
use ctsyncd::kernel::commit::{self, CommitRules};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::{Conntrack, L4, ProtoInfo, Tuple, status};

/// A network namespace that exists for the lifetime of the value.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: kernel tests need root (CI runs them as root)");
            return None;
        }
        let name = format!("ctsyncd-k{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Some(Netns(name))
    }

    /// Runs `f` on a thread that lives in the namespace: sockets it opens
    /// belong there.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).unwrap();
                rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    fn sh(&self, cmd: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
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

/// Reads events until `pred` matches one (bounded in time and count).
fn wait_event(
    ev: &mut CtSocket,
    mut pred: impl FnMut(&codec::Message) -> bool,
) -> codec::Message {
    for _ in 0..1000 {
        let n = ev.recv_blocking(Duration::from_secs(5)).expect("event");
        for r in codec::messages(ev.received(n)) {
            if let Ok(Received::Msg(m)) = r
                && pred(&m)
            {
                return m;
            }
        }
    }
    panic!("event not seen");
}

#[test]
fn create_snat_helper_conntrack_and_see_it_in_conntrack_l() {
    let Some(ns) = Netns::new("create") else {
        return;
    };
    let orig = tcp("192.168.0.2", "192.168.1.2", 40000, 21);
    let (port, acks, ev_kind, ev_port) = ns.enter(|| {
        let (mut ev, _) = CtSocket::events(true, 0).unwrap();
        let mut s = CtSocket::open().unwrap();
        let mut ct = Conntrack::new(orig);
        ct.reply = Some(tcp("192.168.1.2", "192.168.1.100", 21, 40000));
        ct.status = status::SEEN_REPLY | status::ASSURED;
        ct.timeout = Some(600);
        ct.mark = 42;
        ct.helper = Some("ftp".try_into().unwrap());
        ct.proto_info = ProtoInfo::Tcp {
            state: 3,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: 0,
            flags_reply: 0,
        };
        // Through the commit rules, as the caches will do it.
        let ct = commit::prepare_ct(&ct, 0, &CommitRules::default());
        let acks = s
            .batch(|buf, seq| codec::encode_ct_create(buf, &ct, seq()))
            .unwrap();
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].1, 0, "create failed: errno {}", acks[0].1);
        let m = wait_event(
            &mut ev,
            |m| matches!(&m.object, Object::Ct(c) if c.orig == orig),
        );
        (s.port(), acks, m.kind, m.port)
    });
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].1, 0, "create failed: errno {}", acks[0].1);
    // Origin tracking: the event names our socket's port id.
    assert_eq!((ev_kind, ev_port), (Kind::New, port));
    let l = ns.sh("conntrack -L 2>/dev/null");
    let line = l
        .lines()
        .find(|l| l.contains("sport=40000"))
        .unwrap_or_else(|| panic!("{l}"));
    for want in [
        "tcp      6 ",
        "ESTABLISHED src=192.168.0.2 dst=192.168.1.2 sport=40000 dport=21",
        "src=192.168.1.2 dst=192.168.1.100 sport=21 dport=40000",
        "[ASSURED]",
        "mark=42",
        "helper=ftp",
    ] {
        assert!(line.contains(want), "{want} not in: {line}");
    }
}

#[test]
fn foreign_changes_arrive_as_events_and_in_dumps() {
    let Some(ns) = Netns::new("events") else {
        return;
    };
    let orig = tcp("10.1.0.1", "10.2.0.1", 1234, 80);
    ns.enter(|| {
        let (mut ev, size) = CtSocket::events(false, 1 << 20).unwrap();
        assert!(size >= 1 << 20, "SO_RCVBUFFORCE gave {size}");
        let mine = ev.port();
        ns.sh("conntrack -I -p tcp -s 10.1.0.1 -d 10.2.0.1 --sport 1234 --dport 80 --state ESTABLISHED -t 300 -u SEEN_REPLY 2>&1");
        let m = wait_event(&mut ev, |m| matches!(&m.object, Object::Ct(c) if c.orig == orig));
        assert_eq!(m.kind, Kind::New);
        assert_ne!(m.port, mine, "a foreign change must not look like ours");

        let mut s = CtSocket::open().unwrap();
        let dumped = s.dump(false).unwrap();
        let ct = dumped.iter().find_map(|o| match o { Object::Ct(c) if c.orig == orig => Some(c), _ => None }).expect("in dump");
        assert_eq!(ct.reply, Some(orig.inverse()));
        assert_eq!(ct.tcp_state(), Some(3));
        assert!(ct.timeout.unwrap() <= 300 && ct.timeout.unwrap() > 250);

        ns.sh("conntrack -U -p tcp -s 10.1.0.1 -d 10.2.0.1 --sport 1234 --dport 80 -m 5 2>&1");
        let m = wait_event(&mut ev, |m| matches!(&m.object, Object::Ct(c) if c.orig == orig && c.mark == 5));
        assert_eq!(m.kind, Kind::Update);

        // Deleting through our socket: DESTROY, with our port as origin.
        let acks = s.batch(|buf, seq| codec::encode_ct_delete(buf, &orig, 0, seq())).unwrap();
        assert_eq!(acks[0].1, 0);
        let m = wait_event(&mut ev, |m| m.kind == Kind::Destroy);
        assert_eq!(m.port, s.port());
        // A second delete reports ENOENT for that very request.
        let acks = s.batch(|buf, seq| {
            codec::encode_ct_delete(buf, &orig, 0, seq());
            codec::encode_ct_delete(buf, &tcp("10.9.9.9", "10.8.8.8", 1, 2), 0, seq());
        }).unwrap();
        assert_eq!(acks.len(), 2);
        assert!(acks.iter().all(|&(_, e)| e == 2), "{acks:?}");
    });
}
