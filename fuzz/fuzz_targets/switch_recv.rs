//! The protocol switch (`sync::Switch`) fed datagrams the input makes,
//! of either protocol, at times it chooses, in every mode, pinned or
//! `auto`, over datagrams or a stream: no input may panic it, switch
//! more than once per datagram, or leave it, once its timer ran and it
//! sent, with a deadline in the past (the loop would spin).
//! The first byte picks the mode, the setting and the link; then a series
//! of records: a header byte (bits 0-2: time step in 50 ms units, bit 3:
//! run the timer and send, bit 4: send) and a length byte, then that many
//! bytes of datagram.
#![no_main]

use std::time::Duration;

use ctsyncd::config::PeerProtocol;
use ctsyncd::model::Mode;
use ctsyncd::sync::{MapSource, Params, Switch};
use ctsyncd::time::Instant;
use ctsyncd::wire::ctd::Options;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let mode = [Mode::FtFw, Mode::NoTrack, Mode::Alarm][usize::from(setup % 3)];
    let setting = [
        PeerProtocol::Auto,
        PeerProtocol::Ctsyncd,
        PeerProtocol::Conntrackd,
    ][usize::from(setup / 3 % 3)];
    let stream = setup & 0x80 != 0;
    let p = Params {
        mode,
        session: 7,
        max_datagram: 1472,
        resend_queue_size: 64,
        ack_window: 4,
        tx_queue_size: 64,
        refresh_time: Duration::from_secs(1),
        seed: 3,
    };
    let src = MapSource::default();
    let mut now = Instant::from_millis(0);
    let mut sw = Switch::new(p, Options::default(), setting, stream, now);
    let mut buf = [0u8; 1472];
    let mut switches = 0u32;
    let mut records = 0u32;
    while let [head, len, tail @ ..] = rest {
        records += 1;
        let n = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        rest = next;
        now = now + Duration::from_millis(50 * u64::from(head & 7));
        let got = sw.recv(now, 1, datagram, &src);
        switches += u32::from(got.switched.is_some());
        let timer = head & 8 != 0;
        if timer {
            sw.handle_timeout(now, &src);
        }
        if timer || head & 16 != 0 {
            let mut sent = 0;
            while sw.poll_transmit(now, &src, &mut buf).is_some() {
                sent += 1;
                assert!(sent < 10_000, "poll_transmit never ends");
            }
        }
        // As the daemon's loop does it: a deadline still due after the
        // timer ran and everything went would make the loop spin.
        if timer {
            assert!(sw.poll_at() > now, "a deadline left in the past");
        }
        while sw.pop_apply().is_some() {}
        while sw.pop_digest().is_some() {}
    }
    // A switch needs a datagram (and back, a proven session): never more
    // than one per record.
    assert!(switches <= records);
});
