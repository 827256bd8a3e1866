//! The peer side's reading of datagrams: what the engine accepted from a
//! datagram reaches the external cache even when the datagram ends in a
//! message it cannot read; what the challenge budgets held back of the
//! datagrams' asks shows in `-s`.

use super::*;
use crate::config;
use crate::model::{L4, Tuple};
use crate::wire::{self, Header, Msg, Seq, Writer};

const PEER_SESSION: u32 = 0x5e55;

fn receiver() -> Node {
    let text = "General { UNIX { Path /x } }\nSync { Mode FTFW { }\nUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    Node::new(cfg, 1, 1, 1472, 212_992, Instant::from_millis(0))
}

/// A datagram of the peer's session carrying `msgs`, numbered from `first`,
/// with `tail` (raw bytes) after them.
fn datagram(first: u32, msgs: &[Msg], tail: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1472];
    let header = Header {
        flags: 0,
        session: PEER_SESSION,
        first_seq: Seq(first),
    };
    let mut w = Writer::new(&mut buf, header).unwrap();
    for m in msgs {
        w.push(m).unwrap();
    }
    let n = w.finish();
    buf.truncate(n);
    buf.extend_from_slice(tail);
    let body = (buf.len() - wire::HEADER_LEN) as u16;
    wire::Packet::new_unchecked(&mut buf[..]).set_body_len(body);
    buf
}

fn feed(node: &mut Node, now: Instant, bytes: &[u8]) -> Outbox {
    node.handle(
        now,
        Input::Datagram {
            link: 0,
            peer: 9,
            bytes,
        },
    )
}

/// The nonce of the challenge among `sent` datagrams.
fn challenge(sent: &[Vec<u8>]) -> u64 {
    sent.iter()
        .flat_map(|d| {
            let (_, body) = wire::read(d).unwrap();
            wire::messages(body).map(Result::unwrap).collect::<Vec<_>>()
        })
        .find_map(|m| match m {
            Msg::Challenge { nonce } => Some(nonce),
            _ => None,
        })
        .expect("a challenge")
}

fn ct(port: u16) -> Conntrack {
    let orig = Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: 17,
        l4: L4::Ports { src: port, dst: 53 },
    };
    let mut ct = Conntrack::new(orig);
    ct.reply = Some(orig.inverse());
    ct
}

/// A receiver whose peer has proven its session, expecting number 100.
fn proven_receiver(now: Instant) -> Node {
    let mut b = receiver();
    // The peer's first word: unproven, held and challenged.
    let alive = datagram(100, &[Msg::Alive { next: Seq(100) }], &[]);
    let mut sent = feed(&mut b, now, &alive).datagrams;
    b.tx.due_now(now);
    sent.extend(b.handle(now, Input::Timer).datagrams);
    let nonce = challenge(&sent);
    let answer = Msg::Response {
        echo: nonce,
        from: Seq(100),
        next: Seq(100),
    };
    feed(&mut b, now, &datagram(100, &[answer], &[]));
    assert!(b.engine.stats().challenges_answered >= 1, "proven");
    b
}

#[test]
fn what_a_datagram_said_before_an_unreadable_message_reaches_the_cache() {
    let now = Instant::from_millis(10);
    let mut b = proven_receiver(now);
    // A newer peer's message kind after an entry (a version appends
    // kinds; this build reads it as malformed and drops the rest).
    let d = datagram(100, &[Msg::CtNew(wire::to_wire_ct(&ct(1)))], &[0x7f]);
    feed(&mut b, now, &d);
    assert_eq!(b.engine.stats().malformed, 1);
    // The entry counted as received (FT-FW acknowledges it): it must be
    // in the external cache, not wait for the peer's next datagram.
    assert_eq!(b.external_ct.len(), 1, "the entry before it is applied");
}

#[test]
fn a_peers_delete_of_an_entry_never_received_is_no_failed_deletion() {
    // conntrackd's external cache drops a DEL it has nothing for unseen:
    // after a restart of either side, or a NEW lost for good, every such
    // DEL read as a failed deletion ('entry not found') in -s cache.
    let now = Instant::from_millis(10);
    let mut b = proven_receiver(now);
    let unknown = Msg::CtDel(wire::ct_key_of(&ct(7)));
    let known = ct(8);
    let msgs = [
        unknown,
        Msg::CtNew(wire::to_wire_ct(&known)),
        Msg::CtDel(wire::ct_key_of(&known)),
    ];
    feed(&mut b, now, &datagram(100, &msgs, &[]));
    let st = &b.external_ct.stats;
    assert_eq!(
        (st.add_ok, st.del_ok),
        (1, 1),
        "the known one came and went"
    );
    assert_eq!((st.del_fail, st.del_enoent), (0, 0));
}

#[test]
fn what_the_challenge_budgets_held_back_is_in_the_stats() {
    // Twelve datagrams at once, each of a new session (forged, or a
    // flood of restarts) and carrying two challenges: the budgets ask
    // eleven of them and answer eleven of the challenges (gate::ASK_BURST).
    use crate::control::proto::{Format, Reply, Request, StatsView};
    let now = Instant::from_millis(10);
    let mut b = receiver();
    for session in 1..=12u32 {
        let asks = [Msg::Challenge { nonce: 1 }, Msg::Challenge { nonce: 2 }];
        let mut buf = vec![0u8; 1472];
        let header = Header {
            flags: 0,
            session,
            first_seq: Seq(0),
        };
        let mut w = Writer::new(&mut buf, header).unwrap();
        for m in &asks {
            w.push(m).unwrap();
        }
        let n = w.finish();
        feed(&mut b, now, &buf[..n]);
    }
    let s = b.engine.stats();
    assert_eq!((s.challenges_sent, s.challenges_held), (11, 1));
    assert_eq!(s.answers_held, 24 - 11);
    let mut stats = |view, format| {
        let request = Request::Stats { view, format };
        let o = b.handle(
            now,
            Input::Control {
                client: 1,
                request,
                links: &[],
                control: Default::default(),
            },
        );
        let text: String = o
            .replies
            .iter()
            .filter_map(|(_, r)| match r {
                Reply::Data(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        text
    };
    let json = stats(StatsView::General, Format::Json);
    assert!(
        json.contains(
            "\"challenges_sent\":11,\"challenges_answered\":0,\"challenges_held\":1,\"answers_held\":13,"
        ),
        "{json}"
    );
    let link = stats(StatsView::Link, Format::Plain);
    assert!(
        link.contains(
            "Challenges sent\n                   1 Challenges held              13 Answers held\n\n"
        ),
        "{link}"
    );
}
