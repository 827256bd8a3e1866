//! Microbenchmarks of the hot paths: decoding a ctnetlink event (a real
//! kernel capture), encoding/decoding one replication message, sealing
//! and opening a full datagram (`AuthenticationKeyFile`), and the sender's
//! whole user-space path for one event (decode, filter, internal cache,
//! engine, datagram), without and with a key.
//!
//!     cargo bench --bench codec

use ctsyncd::kernel::codec::{self, Object, Received};
use ctsyncd::wire::seal::{Key, SEAL_OVERHEAD, Sealer};
use ctsyncd::wire::{self, Header, Msg, Seq, Writer};
use divan::black_box;

fn main() {
    divan::main();
}

const CT_EVENT: &[u8] =
    include_bytes!("../tests/fixtures/kernel/ct_new_tcp_snat.bin");
const EXP_EVENT: &[u8] =
    include_bytes!("../tests/fixtures/kernel/exp_new_ftp.bin");

fn conntrack() -> ctsyncd::model::Conntrack {
    match codec::messages(CT_EVENT).next() {
        Some(Ok(Received::Msg(m))) => match m.object {
            Object::Ct(c) => c,
            Object::Exp(_) => unreachable!(),
        },
        _ => unreachable!(),
    }
}

#[divan::bench]
fn ctnetlink_decode_conntrack_event() -> usize {
    codec::messages(black_box(CT_EVENT)).count()
}

#[divan::bench]
fn ctnetlink_decode_expectation_event() -> usize {
    codec::messages(black_box(EXP_EVENT)).count()
}

#[divan::bench]
fn wire_encode_conntrack(bencher: divan::Bencher<'_, '_>) {
    let msg = Msg::CtUpd(wire::to_wire_ct(&conntrack()));
    let mut buf = [0u8; 1472];
    bencher.bench_local(|| {
        let mut w = Writer::new(
            &mut buf,
            Header {
                flags: 0,
                session: 1,
                first_seq: Seq(1),
            },
        )
        .unwrap();
        w.push(black_box(&msg)).unwrap();
        w.finish()
    });
}

#[divan::bench]
fn wire_decode_conntrack(bencher: divan::Bencher<'_, '_>) {
    let msg = Msg::CtUpd(wire::to_wire_ct(&conntrack()));
    let mut buf = [0u8; 1472];
    let mut w = Writer::new(
        &mut buf,
        Header {
            flags: 0,
            session: 1,
            first_seq: Seq(1),
        },
    )
    .unwrap();
    w.push(&msg).unwrap();
    let n = w.finish();
    let datagram = buf[..n].to_vec();
    bencher.bench_local(|| {
        let (_, body) = wire::read(black_box(&datagram)).unwrap();
        wire::messages(body).count()
    });
}

/// A plain datagram as full as conntrack updates make it (1472 bytes
/// with room for the seal), and its length.
fn full_datagram(buf: &mut [u8; 1472]) -> usize {
    let msg = Msg::CtUpd(wire::to_wire_ct(&conntrack()));
    let mut w = Writer::new(
        &mut buf[..1472 - SEAL_OVERHEAD],
        Header {
            flags: 0,
            session: 1,
            first_seq: Seq(1),
        },
    )
    .unwrap();
    while w.push(&msg).is_ok() {}
    w.finish()
}

fn sealer() -> Sealer {
    Sealer::new(&[Key::from_bytes([7; 32])], [1; 16]).unwrap()
}

#[divan::bench]
fn wire_seal_full_datagram(bencher: divan::Bencher<'_, '_>) {
    let mut plain = [0u8; 1472];
    let n = full_datagram(&mut plain);
    let mut s = sealer();
    let mut buf = plain;
    bencher
        .counter(divan::counter::BytesCount::new(n))
        .bench_local(|| {
            buf[..n].copy_from_slice(&plain[..n]);
            s.seal(black_box(&mut buf), n).unwrap()
        });
}

#[divan::bench]
fn wire_open_full_datagram(bencher: divan::Bencher<'_, '_>) {
    let mut buf = [0u8; 1472];
    let n = full_datagram(&mut buf);
    let sealed_len = sealer().seal(&mut buf, n).unwrap();
    let s = sealer();
    let mut out = Vec::with_capacity(1472);
    bencher
        .counter(divan::counter::BytesCount::new(sealed_len))
        .bench_local(|| {
            s.open(black_box(&buf[..sealed_len]), &mut out).unwrap()
        });
}

#[divan::bench]
fn model_to_wire_and_back() -> ctsyncd::model::Conntrack {
    wire::from_wire_ct(wire::to_wire_ct(black_box(&conntrack())))
}

/// A Filter config with an `Address Ignore` list of `n` hosts in
/// 100.64.0.0/10, far from the fixture event's addresses (none when 0).
fn address_filter(n: u32) -> String {
    if n == 0 {
        return String::new();
    }
    let mut filter = String::from("Filter { Address Ignore {\n");
    for i in 0..n {
        let a = std::net::Ipv4Addr::from(0x6440_0000u32 + i * 7);
        filter.push_str(&format!("IPv4_address {a}\n"));
    }
    filter.push_str("} }\n");
    filter
}

/// The user-space filter's decision alone, with no Filter and with a
/// 100 000-address one: what a Filter adds to each event.
#[divan::bench(args = [0, 100_000])]
fn filter_conntrack(bencher: divan::Bencher<'_, '_>, filter_addresses: u32) {
    let conf = format!(
        "General {{ UNIX {{ Path /x }} {} }}",
        address_filter(filter_addresses)
    );
    let cfg = ctsyncd::config::parse(&conf, "bench.conf").unwrap().config;
    let ct = conntrack();
    let filter = &cfg.general.filter;
    // The first lookup builds the index: not part of an event's cost.
    ctsyncd::filter::conntrack(filter, &ct);
    bencher.bench_local(|| ctsyncd::filter::conntrack(filter, black_box(&ct)));
}

/// One kernel event through a sender node, as the daemon does it: decode
/// the netlink message, hand it to the node (filter, internal cache,
/// engine queue), and every 48 events build the datagrams. Each event is
/// a new flow (the source port changes), so the cache grows as in the
/// replication benchmark.
///
/// The argument is the size of the user-space `Filter`'s `Address Ignore`
/// list: 0 (no Filter) or 100 000 addresses, none matching the events, so
/// that every event pays both lookups (issue 13: under 10 % extra).
#[divan::bench(args = [0, 100_000])]
fn sender_event_to_datagram(
    bencher: divan::Bencher<'_, '_>,
    filter_addresses: u32,
) {
    sender(bencher, filter_addresses, false);
}

/// The same without a Filter, with `AuthenticationKeyFile`: every
/// datagram sealed.
#[divan::bench]
fn sender_event_to_sealed_datagram(bencher: divan::Bencher<'_, '_>) {
    sender(bencher, 0, true);
}

fn sender(
    bencher: divan::Bencher<'_, '_>,
    filter_addresses: u32,
    sealed: bool,
) {
    use ctsyncd::kernel::origin::Origin;
    use ctsyncd::model::L4;
    use ctsyncd::node::{Input, Node};
    use ctsyncd::time::Instant;
    let flows: u32 = 10_000;
    let filter = address_filter(filter_addresses);
    let conf = format!(
        "General {{ UNIX {{ Path /x }} HashLimit 1000000 {filter} }}\n\
        Sync {{ Mode FTFW {{ }}\n\
        UDP {{ IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }} }}"
    );
    let cfg = ctsyncd::config::parse(&conf, "bench.conf").unwrap().config;
    // The address index is built on the first lookup; build it here, so
    // that every clone below carries it and the timing is per event.
    assert!(ctsyncd::filter::conntrack(
        &cfg.general.filter,
        &conntrack()
    ));
    bencher
        .with_inputs(|| {
            let mut node = Node::new(
                cfg.clone(),
                1,
                1,
                1472,
                212_992,
                Instant::from_millis(0),
            );
            if sealed {
                node.set_sealer(sealer());
            }
            node
        })
        .bench_local_values(|mut node| {
            for i in 0..flows {
                let Some(Ok(Received::Msg(mut m))) =
                    codec::messages(black_box(CT_EVENT)).next()
                else {
                    unreachable!()
                };
                if let Object::Ct(c) = &mut m.object {
                    c.orig.l4 = L4::Ports {
                        src: (i % 60_000) as u16,
                        dst: 1000 + (i / 60_000) as u16,
                    };
                }
                // The node sends a full datagram's worth at once.
                let out = node.handle(
                    Instant::from_millis(u64::from(i)),
                    Input::Kernel(m, Origin::NotMe),
                );
                black_box(out.datagrams);
            }
            node
        });
}
