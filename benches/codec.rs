//! Microbenchmarks of the hot paths: decoding a ctnetlink event (a real
//! kernel capture), and encoding/decoding one replication message.
//!
//!     cargo bench --bench codec

use ctsyncd::kernel::codec::{self, Object, Received};
use ctsyncd::wire::{self, Header, Msg, Writer};
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
                first_seq: 1,
            },
        )
        .unwrap();
        w.push(black_box(&msg)).unwrap();
        w.finish(None)
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
            first_seq: 1,
        },
    )
    .unwrap();
    w.push(&msg).unwrap();
    let n = w.finish(None);
    let datagram = buf[..n].to_vec();
    bencher.bench_local(|| {
        let (_, body) = wire::read(black_box(&datagram), None).unwrap();
        wire::messages(body).count()
    });
}

#[divan::bench]
fn model_to_wire_and_back() -> ctsyncd::model::Conntrack {
    wire::from_wire_ct(wire::to_wire_ct(black_box(&conntrack())))
}
