//! ACKs and NACKs no conntrackd peer sends (corrupt or forged): refused
//! and counted as ctsyncd's own FT-FW engine counts them, changing
//! nothing; and the widest ones a conntrackd does send, still taken.

use super::rx::WINDOW;
use super::*;
use crate::sync::MapSource;
use crate::sync::test::ct;
use crate::wire::ct_key_of;
use crate::wire::ctd::{self, Body};

/// Our first number: an ALIVE that says HELLO; data from `FIRST + 1`.
pub(super) const FIRST: u32 = 100;

pub(super) fn params() -> Params {
    Params {
        mode: Mode::FtFw,
        first_seq: FIRST,
        max_datagram: 1472,
        resend_queue_size: 1000,
        ack_window: 20,
        tx_queue_size: 1000,
        refresh_time: Duration::from_secs(5),
        opts: Options::default(),
    }
}

/// A conntrackd control message: `nethdr` then, for ACK/NACK, from, to.
pub(super) fn ctl(seq: u32, flags: u8, from: u32, to: u32) -> Vec<u8> {
    let mut m = vec![0x1a, flags];
    m.extend_from_slice(&16u16.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&from.to_be_bytes());
    m.extend_from_slice(&to.to_be_bytes());
    m
}

fn ack(seq: u32, from: u32, to: u32) -> Vec<u8> {
    ctl(seq, 0x08, from, to)
}

fn nack(seq: u32, from: u32, to: u32) -> Vec<u8> {
    ctl(seq, 0x04, from, to)
}

/// An engine that said HELLO (ALIVE `FIRST`), was answered by its peer
/// (numbered from 500) and sent three entries, `FIRST + 1 ..= FIRST + 3`,
/// all awaiting the peer's ACK; the peer's next number is 501.
struct Node {
    e: CtdEngine,
    src: MapSource,
    t: Instant,
    peer_seq: u32,
}

impl Node {
    fn new() -> Node {
        let t = Instant::from_millis(0);
        let mut n = Node {
            e: CtdEngine::new(params(), t),
            src: MapSource::default(),
            t,
            peer_seq: 500,
        };
        for port in 1..=3 {
            let c = ct(port);
            n.src.cts.insert(ct_key_of(&c), c.clone());
            n.e.local_change(Key::Ct(ct_key_of(&c)), true);
        }
        assert_eq!(n.data_sent(), 0, "data waits for the handshake");
        // HELLO|HELLO_BACK|ALIVE, as conntrackd answers our HELLO.
        let mut hello = ctl(500, 0x70, 0, 0);
        hello.truncate(8);
        hello[3] = 8;
        n.e.recv(t, &hello, &n.src);
        n.peer_seq = 501;
        assert_eq!(n.data_sent(), 3);
        assert_eq!(n.e.queue_lengths(), (0, 3), "three await an ACK");
        assert_eq!(n.e.next_seq, Seq(FIRST + 4));
        n
    }

    /// `Node::new`, then past [`WINDOW`] more numbers: a fourth entry
    /// changed and sent again and again (each send takes the place of
    /// the last in the resend queue), `FIRST + 1 ..= FIRST + 3` still
    /// awaiting the peer's ACK. Returns the fourth's last number.
    fn numbered_past_the_window() -> (Node, u32) {
        let mut n = Node::new();
        let c = ct(4);
        n.src.cts.insert(ct_key_of(&c), c.clone());
        let mut last = FIRST + 3;
        while last - FIRST <= WINDOW + 10 {
            n.e.local_change(Key::Ct(ct_key_of(&c)), false);
            assert_eq!(n.data_sent(), 1);
            last += 1;
        }
        assert_eq!(n.e.next_seq, Seq(last + 1));
        assert_eq!(n.held(), 4);
        (n, last)
    }

    /// One message from the peer, numbered on from its last.
    fn recv(&mut self, msg: impl Fn(u32) -> Vec<u8>) {
        let m = msg(self.peer_seq);
        self.peer_seq += 1;
        self.e.recv(self.t, &m, &self.src);
    }

    /// Data messages sent now.
    fn data_sent(&mut self) -> usize {
        let mut buf = [0u8; 1472];
        let mut n = 0;
        while let Some(len) = self.e.poll_transmit(self.t, &self.src, &mut buf)
        {
            n += ctd::messages(&buf[..len], Options::default())
                .filter(|m| {
                    matches!(m, Ok(m) if !matches!(
                        m.body,
                        Body::Ack { .. }
                            | Body::Nack { .. }
                            | Body::Alive
                            | Body::Resync
                    ))
                })
                .count();
        }
        n
    }

    /// Entries awaiting an ACK.
    fn held(&self) -> usize {
        self.e.queue_lengths().1
    }
}

#[test]
fn a_nack_starting_past_our_next_number_or_too_wide_is_refused_and_counted() {
    let next = FIRST + 4;
    for (from, to) in [
        (next + 1, next + 1000),
        (FIRST + 1, next + (1 << 30)),
        (FIRST + 1, FIRST + 2 + WINDOW),
    ] {
        let mut n = Node::new();
        n.recv(|s| nack(s, from, to));
        let s = n.e.stats();
        assert_eq!(
            (s.retransmitted, s.out_of_window, s.malformed),
            (0, 1, 0),
            "NACK {from}..={to}"
        );
        assert_eq!(n.data_sent(), 0, "NACK {from}..={to} resent");
        assert_eq!(n.held(), 3);
        // A real NACK of the same numbers we sent is still taken.
        let from = from.min(next - 1);
        n.recv(|s| nack(s, from, next - 1));
        assert_eq!(n.data_sent() as u32, next - from, "NACK {from}..");
    }
}

/// A ctsyncd's tail query (`tail`): a NACK from right after the last
/// number it heard, [`WINDOW`] numbers on. What we sent in its range
/// goes again; past our last number it names nothing.
#[test]
fn a_tail_query_resends_what_it_reaches_and_nothing_else() {
    let next = FIRST + 4;
    for (from, resent) in [(FIRST + 2, 2), (FIRST + 1, 3), (next, 0)] {
        let mut n = Node::new();
        n.recv(|s| nack(s, from, from - 1 + WINDOW));
        let s = n.e.stats();
        assert_eq!(
            (s.retransmitted, s.out_of_window, s.malformed),
            (resent, 0, 0),
            "query from {from}"
        );
        assert_eq!(n.data_sent(), resent as usize, "query from {from}");
        assert_eq!(n.held(), 3, "resent, and awaiting the ACK again");
    }
}

/// Starts of a report ending at `to` that no conntrackd sends (corrupt
/// or forged): 2^31 - 1 or 2^18 + 1 numbers before it, or a number
/// before our first.
fn corrupt_starts(to: u32) -> [u32; 3] {
    [
        to.wrapping_sub((1 << 31) - 1),
        to.wrapping_sub(WINDOW + 1),
        FIRST - 1,
    ]
}

#[test]
fn an_ack_wider_than_a_window_or_our_numbers_is_refused() {
    // The peer got 101 and acknowledged it, lost 102 and got 103: its
    // NACK of 102 is on its way when a corrupt or forged ACK ending at
    // 103 arrives, from 2^31 - 1 or 2^18 + 1 numbers before, or from a
    // number before our first.
    let to = FIRST + 3;
    for from in corrupt_starts(to) {
        let mut n = Node::new();
        n.recv(|s| ack(s, FIRST + 1, FIRST + 1));
        assert_eq!(n.held(), 2);
        n.recv(|s| ack(s, from, to));
        assert_eq!(n.e.stats().out_of_window, 1, "ACK {from}..={to}");
        assert_eq!(n.held(), 2, "ACK {from}..={to} released");
        n.recv(|s| nack(s, FIRST + 2, FIRST + 2));
        assert_eq!(n.data_sent(), 1, "ACK {from}..={to}: 102 not resent");
    }
}

/// Numbering 2^18 messages takes minutes under qemu-user (`.ci/cross.sh`
/// runs the tests above on the router targets, not these).
#[test]
fn past_the_window_an_ack_of_the_window_is_taken_and_a_wider_one_refused() {
    // Past 2^18 numbers, an ACK of exactly the window (conntrackd's
    // widest, with ACKWindowSize 2^18 + 1) is taken, one more is not.
    let (mut n, last) = Node::numbered_past_the_window();
    n.recv(|s| ack(s, last - WINDOW - 1, last));
    assert_eq!((n.held(), n.e.stats().out_of_window), (4, 1));
    n.recv(|s| ack(s, last - WINDOW, last));
    assert_eq!((n.held(), n.e.stats().out_of_window), (3, 1));
}

#[test]
fn the_first_ack_may_start_in_the_run_the_peer_opened_before_our_hello() {
    // conntrackd got messages of our previous life without acknowledging
    // them yet (ack_from set), and our HELLO is numbered after the first
    // of them: it keeps the run (reference §4.7), and its first ACK to
    // us reaches back into our previous numbers, however far.
    for from in [FIRST - 5, FIRST.wrapping_sub(1 << 30)] {
        let mut n = Node::new();
        n.recv(|s| ack(s, from, FIRST + 3));
        assert_eq!(n.e.stats().out_of_window, 0, "ACK {from}..");
        assert_eq!(n.held(), 0, "ACK {from}..");
        // Its next run starts after it: one reaching back is corrupt.
        let c = ct(9);
        n.src.cts.insert(ct_key_of(&c), c.clone());
        n.e.local_change(Key::Ct(ct_key_of(&c)), true);
        assert_eq!(n.data_sent(), 1);
        n.recv(|s| ack(s, from, FIRST + 4));
        assert_eq!((n.held(), n.e.stats().out_of_window), (1, 1));
    }
}

#[test]
fn a_nack_reaching_before_our_first_number_is_refused() {
    let to = FIRST + 3;
    for from in corrupt_starts(to) {
        let mut n = Node::new();
        n.recv(|s| nack(s, from, to));
        let s = n.e.stats();
        assert_eq!(
            (s.retransmitted, s.out_of_window),
            (0, 1),
            "NACK {from}..={to}"
        );
        assert_eq!(n.data_sent(), 0, "NACK {from}..={to} resent");
        assert_eq!(n.held(), 3);
        // The same gap within our numbers is still resent.
        n.recv(|s| nack(s, FIRST, to));
        assert_eq!(n.data_sent(), 3, "NACK {FIRST}..={to}");
    }
}

#[test]
fn past_the_window_a_nack_of_more_than_the_window_is_taken() {
    // conntrackd NACKs a gap in our numbers however wide it is: past 2^18
    // numbers, a NACK of more is taken.
    let (mut n, last) = Node::numbered_past_the_window();
    n.recv(|s| nack(s, FIRST + 1, last));
    assert_eq!(n.e.stats().out_of_window, 0);
    assert_eq!(n.data_sent(), 4);
}
