//! The datagrams the node builds fit the link they leave on: after a
//! failover to a link of a smaller MTU (conntrackd sizes each link's
//! buffer by its own MTU), and after the current link's MTU changed.

use std::time::Duration;

use super::*;
use crate::config;
use crate::control::proto::Request;
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::{L4, Tuple};

/// An FT-FW node for a jumbo-frame link (MTU 9000) whose internal cache
/// holds `n` conntracks, put there as a resync would (nothing sent).
fn jumbo_node_holding(n: u16) -> Node {
    let text = "General { UNIX { Path /x } }\nSync { Mode FTFW { }\nUDP Default { IPv4_Destination_Address 10.0.0.2 Port 1 Interface eth2 }\nUDP { IPv4_Destination_Address 10.0.1.2 Port 1 Interface eth1 } }";
    let cfg = config::parse(text, "t.conf").unwrap().config;
    let now = Instant::from_millis(0);
    let mut node = Node::new(cfg, 1, 1, 9000 - 28, 212_992, now);
    for i in 0..n {
        let orig = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 17,
            l4: L4::Ports { src: i, dst: 53 },
        };
        let mut ct = Conntrack::new(orig);
        ct.reply = Some(orig.inverse());
        let msg = Message {
            kind: Kind::New,
            object: Object::Ct(ct),
            port: 0,
            seq: 0,
        };
        node.handle(now, Input::Kernel(msg, Origin::Flush));
    }
    node
}

/// `-B` at `now`, then the timers until the send queue is empty: the
/// datagrams sent.
fn bulk(node: &mut Node, now: Instant) -> Vec<Vec<u8>> {
    let links = Vec::new();
    let input = Input::Control {
        client: 1,
        request: Request::BulkSend,
        links: &links,
        control: Default::default(),
    };
    let mut out = node.handle(now, input);
    let mut sent = Vec::new();
    let mut now = now;
    for _ in 0..1000 {
        sent.append(&mut out.datagrams);
        if node.engine.queue_lengths().0 == 0 {
            break;
        }
        now = node.poll_at().max(now + Duration::from_micros(1));
        out = node.handle(now, Input::Timer);
    }
    assert_eq!(node.engine.queue_lengths().0, 0, "the bulk never drained");
    sent
}

#[test]
fn after_a_failover_to_a_smaller_link_the_datagrams_fit_it() {
    let mut node = jumbo_node_holding(500);
    let big = bulk(&mut node, Instant::from_millis(10));
    assert!(big.iter().any(|d| d.len() > 1472), "jumbo datagrams first");
    // eth2 went down: the backup link, MTU 1500, sends from now on.
    node.set_max_datagram(1500 - 28);
    let sent = bulk(&mut node, Instant::from_millis(2000));
    let largest = sent.iter().map(Vec::len).max().unwrap();
    assert!(largest <= 1472, "a {largest}-byte datagram on a 1500 link");
}
