//! A TCP sync link out of file descriptors: `accept` fails at once
//! (EMFILE) while the peer's connection stays queued and the listener
//! stays readable. The link's poll retried at every readiness report:
//! the daemon's only thread spun at 100 % CPU. Now the failure is
//! counted (the link's receive errors) and left for a later poll, which
//! accepts the connection once a descriptor is free. And the once-a-second
//! link check, which cannot open its rtnetlink socket then, leaves the
//! link as it was instead of taking it for down.
//!
//! A test binary of its own: it lowers the whole process's descriptor
//! limit. On 127.0.0.1 in the root namespace (the link's peer address,
//! 127.0.0.2, has no listener: the link's own connection attempts are
//! refused). Runs unprivileged; skips, saying so, where the socket
//! options need privileges.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use ctsyncd::channel::Channels;
use ctsyncd::config;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use socket2::{Domain, Socket, Type};

const PORT: u16 = 37_911;

fn open_link() -> Option<Channels> {
    let text = format!(
        "General {{ UNIX {{ Path /x }} }}\nSync {{ Mode FTFW {{ }}\n\
         TCP {{ IPv4_address 127.0.0.1 IPv4_Destination_Address 127.0.0.2 \
         Port {PORT} Interface lo }}\n}}"
    );
    let sync = config::parse(&text, "t.conf").unwrap().config.sync.unwrap();
    match Channels::open(&sync) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot open the TCP link here ({e}); CI runs this as root"
            );
            None
        }
    }
}

/// The highest descriptor open now, plus one.
fn descriptors_in_use() -> u64 {
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    highest + 1
}

/// Opens descriptors until none is left below the (lowered) limit: the
/// holes below the highest one would otherwise still be handed out.
fn fill_the_table() -> Vec<std::fs::File> {
    let mut held = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
        assert!(held.len() < 10_000, "the limit did not hold");
    }
    held
}

/// CPU ticks (user + system) of the thread whose stat file this is
/// (opened beforehand: the table may be full when it is read).
fn cpu_ticks(stat: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A thread that, once told to, waits on the link's receive side for
/// `window` (nothing is sent: no frame may come) and hands back the link
/// and the CPU ticks the wait took.
struct Waiter {
    go: mpsc::Sender<Duration>,
    done: mpsc::Receiver<(Channels, u64)>,
}

impl Waiter {
    fn start(mut link: Channels) -> Waiter {
        let (go, wait_for) = mpsc::channel::<Duration>();
        let (tx, done) = mpsc::channel();
        let (opened, ready) = mpsc::channel();
        std::thread::spawn(move || {
            let stat = std::fs::File::open("/proc/thread-self/stat").unwrap();
            opened.send(()).unwrap();
            let mut buf = [0u8; 2048];
            if let Ok(window) = wait_for.recv() {
                let before = cpu_ticks(&stat);
                let got = smol::block_on(smol::future::or(
                    async { Some(link.recv(&mut buf).await) },
                    async {
                        smol::Timer::after(window).await;
                        None
                    },
                ));
                assert!(got.is_none(), "nothing was sent, yet a frame came");
                let _ = tx.send((link, cpu_ticks(&stat) - before));
            }
        });
        // Its stat file is open before the caller fills the table.
        ready.recv().unwrap();
        Waiter { go, done }
    }

    /// The link and the wait's CPU ticks, or None if the wait did not
    /// end within 5 s.
    fn wait(self, window: Duration) -> Option<(Channels, u64)> {
        self.go.send(window).unwrap();
        self.done.recv_timeout(Duration::from_secs(5)).ok()
    }
}

#[test]
fn a_tcp_link_out_of_descriptors_neither_spins_nor_goes_down() {
    let Some(link) = open_link() else {
        return;
    };
    let waiter = Waiter::start(link);
    // Made before the limit falls: connecting needs no new descriptor.
    // From the link's peer address: a connection from elsewhere is
    // refused as foreign.
    let peer = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = ([127, 0, 0, 2], 0).into();
    peer.bind(&from.into()).unwrap();
    let limit = getrlimit(Resource::Nofile);
    let full = Rlimit {
        current: Some(descriptors_in_use()),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, full).unwrap();
    let held = fill_the_table();
    let to: SocketAddr = ([127, 0, 0, 1], PORT).into();
    peer.connect(&to.into()).unwrap();

    let waited = waiter.wait(Duration::from_millis(500));
    // Full again (the waiter's ending closed its stat file): the link
    // check cannot ask the kernel.
    let held_too = fill_the_table();
    let checked = waited.map(|(mut link, ticks)| {
        let before = link.links[0].info.status;
        link.check_links();
        let after = link.links[0].info.status;
        (link, ticks, before, after)
    });
    drop((held, held_too));
    setrlimit(Resource::Nofile, limit).unwrap();
    let (link, ticks, before, after) =
        checked.expect("the link's poll never returned");
    assert_eq!(after, before, "a link check that could not ask changed it");
    // Retrying at every readiness report spun: about 50 ticks.
    assert!(ticks < 10, "{ticks} CPU ticks in 500 ms of waiting");
    assert!(
        link.links[0].stats.err_recv >= 1,
        "the failed accept was not counted: {:?}",
        link.links[0].stats
    );
    assert_eq!(link.links[0].tcp_connected().map(|c| c.0), Some(false));

    // A descriptor is free again: the queued connection is accepted.
    let (link, _) = Waiter::start(link)
        .wait(Duration::from_millis(50))
        .expect("it returned");
    assert_eq!(link.links[0].tcp_connected().map(|c| c.0), Some(true));
    drop(peer);
}
