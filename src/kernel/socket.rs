//! ctnetlink request sockets (netlink-sys).
//!
//! Owns: opening NETLINK_NETFILTER sockets, sending batches of requests in
//! one `send` and matching every acknowledgement back to the request that
//! caused it (by sequence number), table dumps, and the event groups'
//! subscription with its receive buffer (`SO_RCVBUFFORCE`); reading the
//! events is [`super::events`]'. Each socket knows its netlink port id,
//! which the kernel puts in the events it caused: that is how the daemon
//! recognises its own commits and flushes (origin tracking).

use std::io::{self, ErrorKind};
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

mod create;

use super::codec::{self, Object, Received};
use crate::filter::bpf;
use crate::model::Expect;

/// Requests per `send`: small enough for the default socket buffers, large
/// enough that a commit of 100 000 entries takes a few hundred sends.
const BATCH: usize = 256;
/// Bytes of creates per `send`, past which a batch ends early. Netlink
/// refuses a send larger than the socket's send buffer (EMSGSIZE), and a
/// request socket keeps the system's: 212 992 bytes on 64-bit kernels,
/// less on 32-bit ones, whose socket buffers are smaller (the default is
/// 256 of their smaller packet buffers), and less still where an
/// operator lowered `net.core.wmem_default`. 256 IPv4 entries stay well
/// under this; 256 of the largest (IPv6 with NAT, a master, labels) would
/// take 147 kB.
const SEND_BYTES: usize = 64 * 1024;
/// A request socket's receive buffer (see [`CtSocket::open`]).
const REQUEST_RCVBUF: usize = 1 << 20;
/// Errno values come from rustix, never as numbers: they differ between
/// architectures (ENOBUFS is 105 on x86 and ARM, 132 on MIPS).
const EEXIST: Errno = rustix::io::Errno::EXIST.raw_os_error();
const ENOENT: Errno = rustix::io::Errno::NOENT.raw_os_error();

/// Largest netlink datagram we read (the kernel sends at most a page per
/// dump message batch; events are far smaller).
pub(super) const RX_BUF: usize = 64 * 1024;

/// One netlink socket for requests (create, delete, get, dump) or events.
pub struct CtSocket {
    pub(super) sock: Socket,
    port: u32,
    seq: u32,
    /// Allocated at the first receive: the flush, commit and inject
    /// sockets of an idle daemon never need their 64 KiB.
    rx: Vec<u8>,
}

/// The outcome of one request of a batch: 0 or a positive errno.
pub type Errno = i32;

impl CtSocket {
    /// Opens a request socket bound to a kernel-assigned port id.
    pub fn open() -> io::Result<CtSocket> {
        let s = CtSocket::bind()?;
        // Every request of a batch that fails is acknowledged, each ack
        // charged its buffer's true size (several hundred bytes; not
        // measured): by that arithmetic a batch of 256 EEXISTs (a commit
        // over entries traffic made again) takes most of the default
        // 208 KB, and past it the whole job would fail (ENOBUFS). Room
        // for several batches; without CAP_NET_ADMIN the default stays.
        // (Not the event sockets': their size is `NetlinkBufferSize`'s,
        // and `-s runtime` shows it as conntrackd does.)
        let _ = s.set_rcvbuf(REQUEST_RCVBUF);
        Ok(s)
    }

    /// A socket bound to a kernel-assigned port id, its buffers the
    /// system's.
    fn bind() -> io::Result<CtSocket> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        let addr = sock.bind_auto()?;
        // Acknowledgements without the echoed request: a batch of
        // thousands of creates then answers in a few kilobytes.
        sock.set_cap_ack(true)?;
        Ok(CtSocket {
            sock,
            port: addr.port_number(),
            seq: 1,
            rx: Vec::new(),
        })
    }

    /// An event socket subscribed to nothing (`PollSecs`), its buffer the
    /// system's.
    pub fn unsubscribed() -> io::Result<CtSocket> {
        CtSocket::bind()
    }

    /// Opens a socket subscribed to conntrack events (and expectation
    /// events when `expectations`). `rcvbuf` > 0 forces the receive buffer
    /// size (CAP_NET_ADMIN; without it, as far as `net.core.rmem_max`
    /// allows); the effective size is returned with it.
    pub fn events(
        expectations: bool,
        rcvbuf: usize,
    ) -> io::Result<(CtSocket, usize)> {
        let s = CtSocket::bind()?;
        let mut groups = vec![
            codec::NFNLGRP_CONNTRACK_NEW,
            codec::NFNLGRP_CONNTRACK_UPDATE,
            codec::NFNLGRP_CONNTRACK_DESTROY,
        ];
        if expectations {
            groups.extend([
                codec::NFNLGRP_CONNTRACK_EXP_NEW,
                codec::NFNLGRP_CONNTRACK_EXP_UPDATE,
                codec::NFNLGRP_CONNTRACK_EXP_DESTROY,
            ]);
        }
        for g in groups {
            s.sock.add_membership(g)?;
        }
        if rcvbuf > 0
            && let Err(e) = s.set_rcvbuf(rcvbuf)
        {
            // Forcing takes CAP_NET_ADMIN in the initial user namespace,
            // which a container lacks though it may join the groups. As
            // conntrackd's nfnl_rcvbufsiz: ask without force (the kernel
            // caps it at net.core.rmem_max) rather than not start; the
            // size returned is what was granted.
            log::warn!(
                "netlink event socket buffer size could not be forced to \
                 {rcvbuf} bytes ({e}): capped by net.core.rmem_max"
            );
            rustix::net::sockopt::set_socket_recv_buffer_size(
                s.sock.as_fd(),
                rcvbuf / 2,
            )?;
        }
        let size = s.rcvbuf()?;
        Ok((s, size))
    }

    /// Forces the receive buffer size. The kernel doubles the value it is
    /// given, so half is passed and the effective size is `bytes`.
    pub fn set_rcvbuf(&self, bytes: usize) -> io::Result<()> {
        rustix::net::sockopt::set_socket_recv_buffer_size_force(
            self.sock.as_fd(),
            bytes / 2,
        )
        .map_err(io::Error::from)
    }

    /// The effective receive buffer size in bytes.
    pub fn rcvbuf(&self) -> io::Result<usize> {
        rustix::net::sockopt::socket_recv_buffer_size(self.sock.as_fd())
            .map_err(io::Error::from)
    }

    /// Delivers event errors instead of dropping them silently and never
    /// reports ENOBUFS (`NetlinkEventsReliable`).
    pub fn set_reliable(&self) -> io::Result<()> {
        self.sock.set_broadcast_error(true)?;
        self.sock.set_no_enobufs(true)
    }

    /// Attaches a classic BPF program (`SO_ATTACH_FILTER`): the kernel
    /// runs it on every message before queueing it to this socket and
    /// drops those it returns 0 for (`Filter From Kernelspace`).
    pub fn attach_filter(&self, prog: &[bpf::Insn]) -> io::Result<()> {
        let insns: Vec<socket2::SockFilter> = prog
            .iter()
            .map(|i| socket2::SockFilter::new(i.code, i.jt, i.jf, i.k))
            .collect();
        socket2::SockRef::from(&self.sock).attach_filter(&insns)
    }

    /// This socket's netlink port id.
    pub fn port(&self) -> u32 {
        self.port
    }

    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// The next sequence number (requests of a batch each take one).
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends a batch built by `build` (which appends requests, taking a
    /// sequence number for each from the closure's argument) in one `send`
    /// and waits for one acknowledgement per request. Returns the errno of
    /// each request (0 = done) in the order the requests were built.
    pub fn batch<F>(&mut self, build: F) -> io::Result<Vec<Errno>>
    where
        F: FnOnce(&mut Vec<u8>, &mut dyn FnMut() -> u32),
    {
        let mut out = Vec::with_capacity(4096);
        let mut seqs = Vec::new();
        {
            let mut take = || {
                let s = self.next_seq();
                seqs.push(s);
                s
            };
            build(&mut out, &mut take);
        }
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        // Only the last request asks for an acknowledgement: the kernel
        // handles a batch in order and reports every error anyway, so that
        // one ACK means "all done" and saves a poll + recv per entry.
        ack_last_only(&mut out);
        self.sock.send_to(&out, &SocketAddr::new(0, 0), 0)?;
        let last = seqs[seqs.len() - 1];
        let mut errs: Vec<Errno> = vec![0; seqs.len()];
        let mut done = false;
        while !done {
            let n = self.recv_blocking(Duration::from_secs(10))?;
            for r in codec::messages(&self.rx[..n]) {
                if let Ok(Received::Ack { seq, errno }) = r {
                    if let Some(i) = batch_index(&seqs, seq) {
                        errs[i] = errno;
                    }
                    done |= seq == last;
                }
            }
        }
        Ok(errs)
    }

    /// The conntrack with this original tuple as the kernel holds it now
    /// (none: it is gone).
    pub fn get_ct(
        &mut self,
        orig: &crate::model::Tuple,
        zone: u16,
    ) -> io::Result<Option<Object>> {
        let seq = self.next_seq();
        let mut out = Vec::with_capacity(128);
        codec::encode_ct_get(&mut out, orig, zone, seq);
        self.sock.send_to(&out, &SocketAddr::new(0, 0), 0)?;
        let mut found = None;
        loop {
            let n = self.recv_blocking(Duration::from_secs(10))?;
            for r in codec::messages(&self.rx[..n]) {
                match r {
                    Ok(Received::Msg(m)) if m.seq == seq => {
                        found = Some(m.object);
                    }
                    Ok(Received::Ack { seq: s, errno }) if s == seq => {
                        return match errno {
                            0 => Ok(found),
                            e if e == ENOENT => Ok(None),
                            e => Err(io::Error::from_raw_os_error(e)),
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    /// Dumps the conntrack table (or the expectation table).
    pub fn dump(&mut self, expectations: bool) -> io::Result<Vec<Object>> {
        let mut objects = Vec::new();
        self.dump_each(expectations, &mut |o| objects.push(o))?;
        Ok(objects)
    }

    /// [`CtSocket::dump`], each object handed to `each` as it is read (a
    /// table of 100 000 is never held whole: its ~30 MB would stay in the
    /// allocator's arena after it is freed).
    pub fn dump_each(
        &mut self,
        expectations: bool,
        each: &mut dyn FnMut(Object),
    ) -> io::Result<()> {
        self.dump_request(
            |out, seq| codec::encode_dump(out, expectations, seq),
            each,
        )
    }

    /// The expectations the kernel holds for one master conntrack
    /// (ctnetlink's per-master dump: only that master's list is walked,
    /// however many the table holds); none when the kernel does not hold
    /// the master.
    pub fn dump_exps_of(
        &mut self,
        master: &crate::model::Tuple,
        zone: u16,
    ) -> io::Result<Vec<Expect>> {
        let mut exps = Vec::new();
        let dumped = self.dump_request(
            |out, seq| codec::encode_exp_dump_of(out, master, zone, seq),
            &mut |o| {
                if let Object::Exp(mut x) = o {
                    // ctnetlink reports no zone in an expectation (no
                    // CTA_EXPECT_ZONE in its dumps), but all of a master's
                    // list is in the master's: read as zone 0, they could
                    // not be created again (ENOENT: no such master there).
                    x.zone = zone;
                    exps.push(x);
                }
            },
        );
        match dumped {
            Err(e) if e.raw_os_error() == Some(ENOENT) => Ok(Vec::new()),
            r => r.map(|()| exps),
        }
    }

    /// Sends one dump request and hands each object of its answer to
    /// `each`, until the dump's end (or an ACK: a request that needed no
    /// dump, or its error).
    fn dump_request(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>, u32),
        each: &mut dyn FnMut(Object),
    ) -> io::Result<()> {
        let seq = self.next_seq();
        let mut out = Vec::with_capacity(128);
        encode(&mut out, seq);
        self.sock.send_to(&out, &SocketAddr::new(0, 0), 0)?;
        loop {
            let n = self.recv_blocking(Duration::from_secs(30))?;
            if let Some(end) = dump_part(&self.rx[..n], seq, each) {
                return end;
            }
        }
    }

    /// Reads one datagram into the internal buffer, waiting at most
    /// `timeout`. ENOBUFS (events lost) is returned as an error.
    pub fn recv_blocking(&mut self, timeout: Duration) -> io::Result<usize> {
        let fd = self.sock.as_fd();
        let mut pfd = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        // `Timespec::tv_nsec` is a C long on 32-bit libc targets (mips
        // musl): let rustix convert. Only an absurd timeout can fail.
        let ts = rustix::time::Timespec::try_from(timeout).map_err(|_| {
            io::Error::new(ErrorKind::InvalidInput, "timeout out of range")
        })?;
        let ready = rustix::event::poll(&mut pfd, Some(&ts))
            .map_err(io::Error::from)?;
        if ready == 0 {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "no answer from the kernel",
            ));
        }
        self.recv_now()
    }

    /// Reads one datagram that is ready now.
    pub fn recv_now(&mut self) -> io::Result<usize> {
        if self.rx.is_empty() {
            self.rx = vec![0; RX_BUF];
        }
        let n = recv_into(&self.sock, &mut self.rx)?;
        Ok(n)
    }

    /// The last datagram read.
    pub fn received(&self, n: usize) -> &[u8] {
        &self.rx[..n]
    }
}

/// Hands the objects of one datagram of the answer to dump request `seq`
/// to `each`; the dump's outcome once the datagram holds its end (its
/// DONE, or an ACK: a request that needed no dump, or its error). A DONE
/// that carries an error fails the dump: what came before it is not the
/// whole table (a resync would take the missing entries for gone).
fn dump_part(
    buf: &[u8],
    seq: u32,
    each: &mut dyn FnMut(Object),
) -> Option<io::Result<()>> {
    for r in codec::messages(buf) {
        match r {
            Ok(Received::Msg(m)) if m.seq == seq => each(m.object),
            Ok(
                Received::Done { seq: s, errno }
                | Received::Ack { seq: s, errno },
            ) if s == seq => {
                return Some(match errno {
                    0 => Ok(()),
                    e => Err(io::Error::from_raw_os_error(e)),
                });
            }
            // A malformed entry is skipped; the rest of the dump is
            // still good.
            _ => {}
        }
    }
    None
}

/// Clears NLM_F_ACK on every request of a batch but the last.
fn ack_last_only(batch: &mut [u8]) {
    let mut at = 0;
    while at + 16 <= batch.len() {
        let len = u32::from_ne_bytes([
            batch[at],
            batch[at + 1],
            batch[at + 2],
            batch[at + 3],
        ]) as usize;
        let next = at + ((len + 3) & !3);
        if len < 16 || next >= batch.len() {
            return;
        }
        let flags = u16::from_ne_bytes([batch[at + 6], batch[at + 7]])
            & !codec::NLM_F_ACK;
        batch[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
        at = next;
    }
}

impl AsFd for CtSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Which request of a batch numbered `seqs` (consecutive, from
/// [`CtSocket::next_seq`]) an acknowledgement numbered `seq` is for. The
/// numbers skip 0, so past a wrap inside the batch each is one less
/// than its place: without this, the errors of those requests were
/// dropped and they counted as done.
fn batch_index(seqs: &[u32], seq: u32) -> Option<usize> {
    let at = seq.wrapping_sub(*seqs.first()?) as usize;
    [at, at.wrapping_sub(1)]
        .into_iter()
        .find(|&i| seqs.get(i) == Some(&seq))
}

pub(super) fn recv_into(sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len();
    let mut slice = buf;
    let n = sock.recv(&mut slice, 0)?;
    Ok(n.min(len))
}

#[cfg(test)]
mod test {
    use super::{BATCH, SEND_BYTES, ack_last_only, batch_index};
    use crate::kernel::codec::{self, NLM_F_ACK};
    use crate::model::{
        Conntrack, Expect, ExpectNat, L4, ProtoInfo, SeqAdj, Tuple,
    };

    #[test]
    fn a_batch_that_wraps_its_numbers_finds_each_acknowledgement() {
        // As next_seq numbers them: 0 is skipped.
        let seqs = [u32::MAX - 1, u32::MAX, 1, 2];
        for (i, &s) in seqs.iter().enumerate() {
            assert_eq!(batch_index(&seqs, s), Some(i), "seq {s}");
        }
        let plain = [7, 8, 9];
        assert_eq!(batch_index(&plain, 9), Some(2));
        assert_eq!(batch_index(&plain, 10), None);
        assert_eq!(batch_index(&plain, 6), None);
        assert_eq!(batch_index(&[], 1), None);
    }

    #[test]
    fn only_the_last_request_of_a_batch_asks_for_an_ack() {
        let t = crate::model::Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 6,
            l4: crate::model::L4::Ports { src: 1, dst: 2 },
        };
        let mut buf = Vec::new();
        for seq in 1..=3 {
            codec::encode_ct_delete(&mut buf, &t, 0, seq);
        }
        ack_last_only(&mut buf);
        let len = buf.len() / 3;
        let flags =
            |i: usize| u16::from_ne_bytes([buf[i * len + 6], buf[i * len + 7]]);
        assert_eq!((flags(0) & NLM_F_ACK, flags(1) & NLM_F_ACK), (0, 0));
        assert_eq!(flags(2) & NLM_F_ACK, NLM_F_ACK);
    }

    fn tuple6(src: &str, dst: &str, sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: 6,
            l4: L4::Ports {
                src: sport,
                dst: dport,
            },
        }
    }

    /// A batch is one `send`, which netlink refuses (EMSGSIZE) past the
    /// socket's send buffer less 32 bytes; the request sockets keep the
    /// system's: 212 992 bytes on 64-bit kernels, less on 32-bit ones.
    /// A batch ends past SEND_BYTES, so the largest send is SEND_BYTES
    /// and one item more: the largest item a commit creates (IPv6, NAT
    /// both ways, a master, a helper, sequence adjustments, labels) or
    /// its retry's delete + create pair must keep it under half the
    /// 64-bit default; 256 of them would not (147 kB). Ordinary IPv4
    /// entries still go BATCH to a send.
    #[test]
    fn a_batch_of_the_largest_requests_fits_a_small_send_buffer() {
        const SMALL_SNDBUF: usize = 212_992 / 2 - 32;
        let orig = tuple6("2001:db8::1", "2001:db8:1::1", 40000, 21);
        let mut ct = Conntrack::new(orig);
        ct.reply = Some(tuple6("2001:db8:2::1", "2001:db8:3::1", 2121, 50000));
        ct.master = Some(tuple6("2001:db8::1", "2001:db8:1::1", 39999, 21));
        ct.helper = Some("abcdefghijklmno".try_into().unwrap());
        ct.mark = 1;
        ct.zone = 1;
        ct.timeout = Some(432_000);
        ct.proto_info = ProtoInfo::Tcp {
            state: 3,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: 0x23,
            flags_reply: 0x23,
        };
        let adj = SeqAdj {
            correction_pos: 1,
            offset_before: 2,
            offset_after: 3,
        };
        ct.seq_adj = Some([adj, adj]);
        ct.labels = Some([0xff; 16]);
        assert!(ct.snat().is_some() && ct.dnat().is_some(), "NAT both ways");
        let mut x = Expect::new(
            orig,
            tuple6("2001:db8::1", "2001:db8:1::1", 0, 50000),
            tuple6("ffff::ffff", "ffff::ffff", 0, 0xffff),
        );
        x.helper = Some("abcdefghijklmno".try_into().unwrap());
        x.zone = 1;
        x.timeout = Some(300);
        x.nat = Some(ExpectNat {
            dir: 1,
            tuple: tuple6("2001:db8:2::1", "2001:db8:3::1", 0, 50000),
        });
        x.func = Some("abcdefghijklmnopqrstuvwxyz01234".try_into().unwrap());

        let size = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = Vec::new();
            f(&mut buf);
            buf.len()
        };
        let create = size(&|b| codec::encode_ct_create(b, &ct, 1));
        let update = size(&|b| codec::encode_ct_update(b, &ct, 1));
        let delete = size(&|b| codec::encode_ct_delete(b, &orig, 1, 1));
        let exp = size(&|b| codec::encode_exp_create(b, &x, 1));
        let exp_delete = size(&|b| codec::encode_exp_delete(b, &x, 1));
        let largest = [create, update, delete + create, exp_delete + exp];
        let largest = largest.into_iter().max().unwrap();
        assert!(
            BATCH * create > SMALL_SNDBUF,
            "{BATCH} creates of {create} bytes: the byte bound is not needed"
        );
        assert!(
            SEND_BYTES + largest <= SMALL_SNDBUF,
            "a send of up to {} bytes, over {SMALL_SNDBUF}",
            SEND_BYTES + largest
        );

        // What a commit of IPv4 flows creates: a TCP flow with a reply,
        // a mark and a timeout.
        let mut plain = Conntrack::new(Tuple {
            src: "192.168.0.2".parse().unwrap(),
            dst: "192.168.1.2".parse().unwrap(),
            proto: 6,
            l4: L4::Ports {
                src: 40000,
                dst: 443,
            },
        });
        plain.mark = 1;
        plain.timeout = Some(432_000);
        plain.proto_info = ct.proto_info;
        let plain = size(&|b| codec::encode_ct_create(b, &plain, 1));
        assert!(
            BATCH * plain <= SEND_BYTES,
            "{BATCH} IPv4 creates of {plain} bytes are cut short"
        );
    }
}
