#![no_main]
//! The sealed-datagram path of a keyed engine: arbitrary bytes are never
//! read (nothing opens without the key), and a validly sealed datagram of
//! arbitrary content is read at most once (its replay is refused), without
//! a panic either way.
use std::time::Duration;

use ctsyncd::config::Mode;
use ctsyncd::sync::{Engine, MapSource, Params};
use ctsyncd::time::Instant;
use ctsyncd::wire::seal::{Key, SEAL_OVERHEAD, Sealer};
use ctsyncd::wire::{self, HEADER_LEN, MAGIC, Packet, Seq, VERSION};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let p = Params {
        mode: if how & 2 == 0 {
            Mode::FtFw
        } else {
            Mode::NoTrack
        },
        session: 1,
        max_datagram: 1472,
        resend_queue_size: 64,
        ack_window: 4,
        tx_queue_size: 64,
        refresh_time: Duration::from_secs(1),
        seed: 3,
    };
    let key = Key::from_bytes([7; 32]);
    let src = MapSource::default();
    let mut e = Engine::new(p, Instant::from_millis(0));
    e.set_sealer(Sealer::new(std::slice::from_ref(&key), [2; 16]).unwrap());
    if how & 1 == 0 {
        // Forging a tag would need the key.
        assert!(e.recv(Instant::from_millis(1), 1, rest, &src).is_err());
        assert!(e.pop_apply().is_none());
    } else if rest.len() >= 9 {
        // Header fields from the input, the rest as the body, sealed by
        // a key holder.
        let body = &rest[9..rest.len().min(9 + 1400)];
        let mut buf = vec![0u8; HEADER_LEN + body.len() + SEAL_OVERHEAD];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_magic(MAGIC);
        packet.set_version(VERSION);
        packet.set_flags(rest[0]);
        packet.set_session(u32::from_be_bytes([
            rest[1], rest[2], rest[3], rest[4],
        ]));
        packet.set_first_seq(Seq(u32::from_be_bytes([
            rest[5], rest[6], rest[7], rest[8],
        ])));
        packet.set_body_len(body.len() as u16);
        buf[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
        let mut sender = Sealer::new(&[key], [1; 16]).unwrap();
        let n = sender.seal(&mut buf, HEADER_LEN + body.len()).unwrap();
        let _ = e.recv(Instant::from_millis(1), 1, &buf[..n], &src);
        assert_eq!(
            e.recv(Instant::from_millis(2), 1, &buf[..n], &src),
            Err(wire::Error::Replayed)
        );
    }
    while e.pop_apply().is_some() {}
    let mut buf = [0u8; 1472];
    while e
        .poll_transmit(Instant::from_millis(3), &src, &mut buf)
        .is_some()
    {}
});
