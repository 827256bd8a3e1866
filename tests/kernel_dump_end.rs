//! A dump's end as the kernel reports it: an NLMSG_DONE carries the int
//! the dump ended with (`netlink_dump` copies the dump callback's result
//! into it), and a negative one means the dump stopped on an error, so
//! what came before it is not the whole table. The answer is forged by
//! a second netlink socket of the test's (root may send to any port),
//! queued before the dump is asked for, so it is read first. Needs root;
//! skipped with a message otherwise.

mod common;

use common::Netns;

use ctsyncd::kernel::codec::{self, NLM_F_MULTI};
use ctsyncd::kernel::socket::CtSocket;
use ctsyncd::model::{Conntrack, L4, Tuple};
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};

/// NLMSG_DONE (linux/netlink.h).
const NLMSG_DONE: u16 = 3;

fn done(seq: u32, result: i32) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&20u32.to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&NLM_F_MULTI.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&result.to_ne_bytes());
    m
}

#[test]
fn a_dump_that_ends_on_an_error_is_not_a_whole_table() {
    let Some(ns) = Netns::new("dend") else {
        return;
    };
    let eintr = rustix::io::Errno::INTR.raw_os_error();
    let (got, again) = ns.enter(|| {
        let mut s = CtSocket::open().unwrap();
        let mut fake = Socket::new(NETLINK_NETFILTER).unwrap();
        fake.bind_auto().unwrap();
        // The dump will be request 2 (`next_seq` starts past 1).
        let ct = Conntrack::new(Tuple {
            src: "10.1.0.1".parse().unwrap(),
            dst: "10.2.0.1".parse().unwrap(),
            proto: 6,
            l4: L4::Ports { src: 1000, dst: 80 },
        });
        let mut answer = Vec::new();
        codec::encode_ct_create(&mut answer, &ct, 2);
        answer.extend(done(2, -eintr));
        let to = SocketAddr::new(s.port(), 0);
        fake.send_to(&answer, &to, 0).unwrap();
        let got = s.dump(false).map(|o| o.len());
        // A DONE without an error still ends a dump well.
        fake.send_to(&done(3, 0), &to, 0).unwrap();
        (got, s.dump(false).map(|o| o.len()))
    });
    let e = got.expect_err("a dump that ended on EINTR was taken as whole");
    assert_eq!(e.raw_os_error(), Some(eintr), "{e}");
    assert_eq!(again.unwrap(), 0);
}
