//! A TCP link: the listening socket and the peer's connection to it
//! (frames in), our connection to the peer (frames out, reconnecting at
//! most once per second, a bounded queue meanwhile), reading the inbound
//! stream for `tcp_frames` to cut into frames.

// I/O layer: the reconnect pacing reads the clock, like the daemon loop;
// the sans-IO layers below never do (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::task::Context;
use std::time::{Duration, Instant};

use smol::Async;
use socket2::{Domain, Protocol, Socket, Type};

use super::LinkStats;
use super::tcp_frames::{self, Cut};

/// TCP reconnect attempts at most this often (conntrackd's 1 s).
const RECONNECT: Duration = Duration::from_secs(1);

enum Outbound {
    Idle,
    Connecting(Async<TcpStream>),
    Connected(Async<TcpStream>),
}

/// A TCP link's two connections and its send queue.
pub(super) struct Tcp {
    /// None once closed for the link to be opened again (its port free).
    listener: Option<Async<TcpListener>>,
    inbound: Option<Async<TcpStream>>,
    inbuf: Vec<u8>,
    outbound: Outbound,
    last_attempt: Option<Instant>,
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the front frame already written.
    written: usize,
    queue_max: usize,
    /// Frames dropped because the queue was full (`-s queue`: errorq's
    /// "not enough space errors").
    dropped: u64,
    dest: SocketAddr,
    /// The configured local address: the peer accepts connections only
    /// from it (its destination), which the route may not pick.
    from: Option<SocketAddr>,
    /// The interface's name and the index it was found at: connections
    /// are bound to the index, which a rename does not change.
    interface: (String, u32),
    /// `SndSocketBuffer`, `RcvSocketBuffer`: our connections' too.
    buffers: (u32, u32),
    retry: Option<smol::Timer>,
}

impl Tcp {
    pub(super) fn new(
        listener: Async<TcpListener>,
        (from, dest): (Option<SocketAddr>, SocketAddr),
        interface: (String, u32),
        buffers: (u32, u32),
        queue_max: usize,
    ) -> Tcp {
        Tcp {
            listener: Some(listener),
            inbound: None,
            inbuf: Vec::new(),
            outbound: Outbound::Idle,
            last_attempt: None,
            queue: VecDeque::new(),
            written: 0,
            queue_max: queue_max.max(1),
            dropped: 0,
            dest,
            from,
            interface,
            buffers,
            retry: None,
        }
    }

    /// Whether the peer's connection and ours are up (`-s`).
    pub(super) fn connections(&self) -> (bool, bool) {
        (
            self.inbound.is_some(),
            matches!(self.outbound, Outbound::Connected(_)),
        )
    }

    /// Closes the listening socket, so that the link can be opened again
    /// on the same port (its interface was created again).
    pub(super) fn close_listener(&mut self) {
        self.listener = None;
    }

    /// Takes over the frames `old` had not sent yet, and its count of
    /// those dropped: the link was opened again (its interface created
    /// again), its peer is the same.
    pub(super) fn carry_over(&mut self, old: &mut Tcp) {
        // A frame half written on the old connection is sent whole on
        // the new one (this one's `written` is 0).
        self.queue = std::mem::take(&mut old.queue);
        while self.queue.len() > self.queue_max {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.dropped += old.dropped;
    }

    /// Frames dropped because the queue (`ErrorQueueLength`) was full.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Frames queued but not yet fully written.
    pub(super) fn unsent(&self) -> usize {
        self.queue.len()
    }

    /// Drives accepts, connects and writes, then returns the next whole
    /// received frame, if any; errors are counted in `stats`.
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        stats: &mut LinkStats,
    ) -> Option<(usize, SocketAddr)> {
        self.drive(cx, stats, buf.len());
        self.next_frame(cx, buf, stats)
    }

    /// Queues a frame; false when it could not be sent now (not connected,
    /// or a frame had to be dropped): a send error, as conntrackd counts
    /// it. It counts as sent in `stats` once written whole, from the
    /// queue too (as conntrackd's error queue, once delivered).
    pub(super) fn enqueue(
        &mut self,
        frame: &[u8],
        stats: &mut LinkStats,
    ) -> bool {
        let dropped = self.queue.len() >= self.queue_max;
        if dropped {
            self.dropped += 1;
            // Never drop a frame that is half written.
            let at = usize::from(self.written > 0);
            if self.queue.remove(at).is_none() {
                // The only one is (`ErrorQueueLength 1`): the new frame
                // gives way, and the bound holds.
                self.flush(stats);
                return false;
            }
        }
        self.queue.push_back(frame.to_vec());
        self.flush(stats);
        !dropped && matches!(self.outbound, Outbound::Connected(_))
    }

    /// Writes queued frames until the socket would block, counting each
    /// written whole as sent and a connection lost as a send error.
    fn flush(&mut self, stats: &mut LinkStats) {
        let Outbound::Connected(s) = &self.outbound else {
            return;
        };
        let mut stream = s.get_ref();
        while let Some(front) = self.queue.front() {
            match stream.write(&front[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    if self.written == front.len() {
                        stats.pkts_sent += 1;
                        stats.bytes_sent += front.len() as u64;
                        self.queue.pop_front();
                        self.written = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    // EPIPE/ECONNRESET: reconnect; the frame is resent whole.
                    self.outbound = Outbound::Idle;
                    self.written = 0;
                    stats.err_send += 1;
                    return;
                }
            }
        }
    }

    /// Accepts, connects and flushes as far as possible now, counting in
    /// `stats` the send and receive errors and the connections refused as
    /// foreign. `room`: the size of the buffer frames are handed in.
    fn drive(
        &mut self,
        cx: &mut Context<'_>,
        stats: &mut LinkStats,
        room: usize,
    ) {
        // Accept until the listener has nothing and its readiness poll is
        // Pending: a Ready poll does not register the waker, and ignoring
        // it would leave a connection waiting in the backlog forever.
        'accept: while let Some(listener) = &self.listener {
            loop {
                match listener.get_ref().accept() {
                    // Only the peer's: any other connection (a scan, a
                    // probe) replaced its stream and lost its next
                    // frames. Counted as a UDP link counts a foreign
                    // sender, and closed.
                    Ok((_, from)) if from.ip() != self.dest.ip() => {
                        stats.foreign += 1;
                    }
                    Ok((s, _)) => {
                        if s.set_nonblocking(true).is_ok()
                            && let Ok(a) = Async::new(s)
                        {
                            self.inbound = Some(a);
                            // The old stream's whole frames are still
                            // the peer's (conntrackd handles each one it
                            // read); only a partial one ends with it.
                            let whole = tcp_frames::whole(&self.inbuf, room);
                            self.inbuf.truncate(whole);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // Out of descriptors (EMFILE, ENFILE) accept fails at
                    // once with the connection still queued, and the
                    // listener stays ready: retrying until it was not
                    // spun inside this call forever. Counted; tried again
                    // at the loop's next turn (a second at most: the
                    // loop's link check).
                    Err(_) => {
                        stats.err_recv += 1;
                        break 'accept;
                    }
                }
            }
            if listener.poll_readable(cx).is_pending() {
                break;
            }
        }
        if matches!(self.outbound, Outbound::Idle)
            && self.last_attempt.is_none_or(|t| t.elapsed() >= RECONNECT)
        {
            self.last_attempt = Some(Instant::now());
            match self.connect() {
                Ok(s) => self.outbound = Outbound::Connecting(s),
                Err(_) => stats.err_send += 1,
            }
        }
        if let Outbound::Connecting(s) = &self.outbound
            && s.poll_writable(cx).is_ready()
        {
            // Writable is not the same as connected: a socket can report
            // writable before the handshake ends (then peer_addr says
            // ENOTCONN and we keep waiting), or because it failed.
            let failed = !matches!(s.get_ref().take_error(), Ok(None));
            let connected = !failed && s.get_ref().peer_addr().is_ok();
            if failed || connected {
                let old = std::mem::replace(&mut self.outbound, Outbound::Idle);
                if connected && let Outbound::Connecting(s) = old {
                    self.outbound = Outbound::Connected(s);
                } else {
                    stats.err_send += 1;
                }
            } else if s.poll_writable(cx).is_ready() {
                // Still connecting but reported writable: look again soon.
                cx.waker().wake_by_ref();
            }
        }
        // Flush until done or the socket's writability poll is Pending
        // (which registers the waker; a Ready poll does not).
        loop {
            self.flush(stats);
            match &self.outbound {
                Outbound::Connected(s) if !self.queue.is_empty() => {
                    if s.poll_writable(cx).is_pending() {
                        break;
                    }
                }
                _ => break,
            }
        }
        if matches!(self.outbound, Outbound::Idle) {
            // Come back for the next reconnect attempt.
            let due =
                self.last_attempt.map_or(Instant::now(), |t| t + RECONNECT);
            let timer = self.retry.get_or_insert_with(|| smol::Timer::at(due));
            timer.set_at(due);
            if std::pin::Pin::new(timer).poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
    }

    fn connect(&self) -> io::Result<Async<TcpStream>> {
        let dom = if self.dest.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = Socket::new(dom, Type::STREAM, Some(Protocol::TCP))?;
        bind_to_interface(&s, &self.interface, dom)?;
        super::open::buffers(&s, self.buffers);
        if let Some(from) = self.from {
            s.bind(&from.into())?;
        }
        s.set_nonblocking(true)?;
        s.set_keepalive(true)?;
        s.set_tcp_nodelay(true)?;
        match s.connect(&self.dest.into()) {
            Ok(()) => {}
            Err(e)
                // By name: EINPROGRESS is 115 on x86 and ARM, 150 on MIPS.
                if e.raw_os_error()
                    == Some(rustix::io::Errno::INPROGRESS.raw_os_error())
                    || e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Async::new(TcpStream::from(s))
    }

    /// The next whole frame from the inbound stream, if any.
    fn next_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        stats: &mut LinkStats,
    ) -> Option<(usize, SocketAddr)> {
        loop {
            match tcp_frames::cut(&self.inbuf, buf.len()) {
                Cut::Frame(len) => {
                    buf[..len].copy_from_slice(&self.inbuf[..len]);
                    self.inbuf.drain(..len);
                    return Some((len, self.dest));
                }
                Cut::Unframeable => {
                    // Not our framing: the stream cannot be resynchronised.
                    stats.err_recv += 1;
                    self.inbound = None;
                    self.inbuf.clear();
                    return None;
                }
                Cut::NeedMore => {}
            }
            let inbound = self.inbound.as_ref()?;
            let mut chunk = [0u8; 16 * 1024];
            match inbound.get_ref().read(&mut chunk) {
                Ok(0) => {
                    self.inbound = None;
                    self.inbuf.clear();
                    return None;
                }
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if inbound.poll_readable(cx).is_ready() {
                        continue;
                    }
                    return None;
                }
                Err(_) => {
                    stats.err_recv += 1;
                    self.inbound = None;
                    return None;
                }
            }
        }
    }
}

/// Binds `s` to the interface by its index (SO_BINDTOIFINDEX), so that a
/// connection made after the interface was renamed still goes over it;
/// by name where the kernel predates that option (before Linux 5.0:
/// ENOPROTOOPT) or the index is not known.
fn bind_to_interface(
    s: &Socket,
    (name, index): &(String, u32),
    dom: Domain,
) -> io::Result<()> {
    let by_index = match std::num::NonZeroU32::new(*index) {
        Some(i) if dom == Domain::IPV6 => s.bind_device_by_index_v6(Some(i)),
        Some(i) => s.bind_device_by_index_v4(Some(i)),
        None => return s.bind_device(Some(name.as_bytes())),
    };
    match by_index {
        Err(e)
            if e.raw_os_error()
                == Some(rustix::io::Errno::NOPROTOOPT.raw_os_error()) =>
        {
            s.bind_device(Some(name.as_bytes()))
        }
        bound => bound,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A link listening on 127.0.0.1 whose peer is 127.0.0.1 at a port
    /// nothing listens on; its listening address.
    fn link(queue_max: usize) -> (Tcp, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let at = l.local_addr().unwrap();
        let dest = "127.0.0.1:1".parse().unwrap();
        (
            Tcp::new(
                Async::new(l).unwrap(),
                (None, dest),
                ("lo".into(), 1),
                (0, 0),
                queue_max,
            ),
            at,
        )
    }

    fn poll(t: &mut Tcp, stats: &mut LinkStats) -> Option<(usize, SocketAddr)> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = [0u8; 256];
        t.poll(&mut cx, &mut buf, stats)
    }

    #[test]
    fn a_connection_from_elsewhere_leaves_the_peers_stream_alone() {
        let (mut t, at) = link(8);
        let mut stats = LinkStats::default();
        let frame =
            |n: u8| vec![b'c', b'T', 1, 0, 0, 0, 0, 1, 0, 0, 0, n, 0, 2, 7, 7];
        let mut peer = TcpStream::connect(at).unwrap();
        peer.write_all(&frame(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(poll(&mut t, &mut stats).is_some());
        // Another address on the host (loopback is a /8).
        let other = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
        other.bind(&from.into()).unwrap();
        other.connect(&at.into()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let _ = poll(&mut t, &mut stats);
        peer.write_all(&frame(2)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(poll(&mut t, &mut stats).is_some(), "the peer's next frame");
        assert_eq!(stats.foreign, 1);
        assert!(t.connections().0);
    }

    #[test]
    fn a_queue_of_one_keeps_its_half_written_frame_and_its_bound() {
        let (mut t, _) = link(1);
        t.queue.push_back(vec![0; 16]);
        t.written = 5;
        assert!(!t.enqueue(&[1; 16], &mut LinkStats::default()));
        assert_eq!((t.queue.len(), t.dropped(), t.written), (1, 1, 5));
        assert_eq!(t.queue[0], vec![0; 16]);
    }
}
