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

/// A process running inside a namespace; killed when dropped.
struct Bg(std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Netns {
    fn spawn(&self, args: &[&str]) -> Bg {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Bg(child)
    }

    /// Loopback up, and the FTP helper assigned to connections to port 21
    /// (since Linux 6.0 helpers are never assigned automatically).
    fn ftp_helper(&self) {
        self.sh("ip link set lo up");
        self.sh(
            "nft -f - <<'EOF'
table inet ctsyncd_test {
    ct helper ftp-standard { type \"ftp\" protocol tcp; }
    chain out { type filter hook output priority 0; tcp dport 21 ct helper set \"ftp-standard\"; }
}
EOF",
        );
    }
}

/// Debian's python, where python3-pyftpdlib is installed.
const PY: &str = "/usr/bin/python3";

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
        assert_eq!(acks, [0], "create failed");
        let m = wait_event(
            &mut ev,
            |m| matches!(&m.object, Object::Ct(c) if c.orig == orig),
        );
        (s.port(), acks, m.kind, m.port)
    });
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
        assert_eq!(acks, [0]);
        let m = wait_event(&mut ev, |m| m.kind == Kind::Destroy);
        assert_eq!(m.port, s.port());
        // A second delete reports ENOENT for that very request.
        let acks = s.batch(|buf, seq| {
            codec::encode_ct_delete(buf, &orig, 0, seq());
            codec::encode_ct_delete(buf, &tcp("10.9.9.9", "10.8.8.8", 1, 2), 0, seq());
        }).unwrap();
        assert_eq!(acks, [2, 2], "ENOENT for each request");
    });
}

#[test]
fn ftp_passive_expectation_is_seen_then_recreated_in_another_namespace() {
    let Some(fw1) = Netns::new("ftp1") else {
        return;
    };
    let Some(fw2) = Netns::new("ftp2") else {
        return;
    };
    fw1.ftp_helper();
    let root = std::env::temp_dir()
        .join(format!("ctsyncd-ftp-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("file.txt"), "hello\n").unwrap();
    let _server = fw1.spawn(&[
        PY,
        "-m",
        "pyftpdlib",
        "-i",
        "127.0.0.1",
        "-p",
        "21",
        "-d",
        root.to_str().unwrap(),
    ]);
    fw1.sh(&format!("for i in $(seq 100); do {PY} -c 'import socket; socket.create_connection((\"127.0.0.1\", 21), 1)' 2>/dev/null && exit 0; sleep 0.05; done; exit 1"));

    let (exp, master, listed) = fw1.enter(|| {
        let (mut ev, _) = CtSocket::events(true, 0).unwrap();
        // A real client: login, PASV, then keep the control connection open.
        let _client = fw1.spawn(&[PY, "-c", "import ftplib, time\nf = ftplib.FTP()\nf.connect('127.0.0.1', 21)\nf.login()\nprint(f.sendcmd('PASV'), flush=True)\ntime.sleep(20)"]);
        let m = wait_event(&mut ev, |m| matches!(m.object, Object::Exp(_)));
        assert_eq!(m.kind, Kind::New);
        let Object::Exp(exp) = m.object else { unreachable!() };
        let mut s = CtSocket::open().unwrap();
        let dumped = s.dump(true).unwrap();
        // Same expectation (timeouts tick and the kernel reports different
        // ids in events and dumps, so compare identity and helper).
        assert!(
            dumped.iter().any(|o| matches!(o, Object::Exp(x) if x.key() == exp.key() && x.helper == exp.helper)),
            "{exp:?} not in our dump: {dumped:?}"
        );
        let master = s.dump(false).unwrap().into_iter().find_map(|o| match o {
            Object::Ct(c) if c.orig == exp.master => Some(c),
            _ => None,
        });
        let listed = fw1.sh("conntrack -L expect 2>/dev/null");
        (exp, master.expect("master conntrack in dump"), listed)
    });
    let _ = std::fs::remove_dir_all(&root);

    // What the kernel told us matches what conntrack(8) shows.
    let L4::Ports { dst: data_port, .. } = exp.tuple.l4 else {
        panic!("{exp:?}")
    };
    let L4::Ports {
        src: client_port, ..
    } = exp.master.l4
    else {
        panic!()
    };
    assert_eq!(exp.helper.as_deref(), Some("ftp"));
    assert_eq!(
        exp.mask.l4,
        L4::Ports {
            src: 0,
            dst: 0xffff
        }
    );
    let want = format!(
        "proto=6 src=127.0.0.1 dst=127.0.0.1 sport=0 dport={data_port} mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 master-dst=127.0.0.1 sport={client_port} dport=21 class=0 helper=ftp"
    );
    assert!(listed.contains(&want), "{want}\nnot in\n{listed}");
    assert_eq!(master.helper.as_deref(), Some("ftp"));

    // fw2 never saw this connection: create the master, then the
    // expectation, through the commit rules.
    let rules = CommitRules::default();
    let (ct_errs, exp_errs) = fw2.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let ct_errs = s
            .create_cts(&[commit::prepare_ct(&master, 1, &rules)])
            .unwrap();
        let exp_errs = s
            .create_exps(&[commit::prepare_exp(&exp, 1, &rules)])
            .unwrap();
        (ct_errs, exp_errs)
    });
    assert_eq!((ct_errs, exp_errs), (vec![0], vec![0]));
    let on_fw2 = fw2.sh("conntrack -L expect 2>/dev/null");
    assert!(on_fw2.contains(&want), "{want}\nnot in\n{on_fw2}");
    let cts = fw2.sh("conntrack -L 2>/dev/null");
    assert!(
        cts.contains(&format!("sport={client_port} dport=21"))
            && cts.contains("helper=ftp"),
        "{cts}"
    );

    // Creating both again: EEXIST is handled by delete + create.
    let again = fw2.enter(|| {
        let mut s = CtSocket::open().unwrap();
        s.create_exps(&[commit::prepare_exp(&exp, 1, &rules)])
            .unwrap()
    });
    assert_eq!(again, vec![0]);
}
