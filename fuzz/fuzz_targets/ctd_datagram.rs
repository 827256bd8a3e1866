#![no_main]
//! conntrackd 1.4 datagrams (`wire::ctd`): no input may panic the decoder
//! or the stream framing, and every message the decoder accepts must
//! encode and decode back to itself.
use ctsyncd::wire::ctd::{self, Options};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ctd::is_conntrackd(data);
    if let Some(Ok(n)) = ctd::stream_message_len(data) {
        assert!(n >= ctd::HEADER_LEN && n <= data.len());
    }
    let mut buf = vec![0u8; 70_000];
    for opts in [
        Options::default(),
        Options {
            nat_order: ctd::NatByteOrder::V142,
            send_timeout: true,
        },
    ] {
        for m in ctd::messages(data, opts).flatten() {
            let n = ctd::encode(&m, opts, &mut buf).expect("encodes");
            let again: Vec<_> = ctd::messages(&buf[..n], opts).collect();
            assert_eq!(again, vec![Ok(m)]);
        }
    }
});
