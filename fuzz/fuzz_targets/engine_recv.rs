#![no_main]
use std::time::Duration;

use ctsyncd::config::Mode;
use ctsyncd::sync::{Engine, MapSource, Params};
use ctsyncd::time::Instant;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = Params {
        mode: Mode::FtFw,
        session: 1,
        max_datagram: 1472,
        resend_queue_size: 64,
        ack_window: 4,
        tx_queue_size: 64,
        refresh_time: Duration::from_secs(1),
        seed: 3,
    };
    let src = MapSource::default();
    let mut e = Engine::new(p, Instant::from_millis(0));
    let _ = e.recv(Instant::from_millis(1), 1, data, &src);
    while e.pop_apply().is_some() {}
    let mut buf = [0u8; 1472];
    while e
        .poll_transmit(Instant::from_millis(2), &src, &mut buf)
        .is_some()
    {}
});
