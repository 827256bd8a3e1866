#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((_, body)) = ctsyncd::wire::read(data) {
        for _ in ctsyncd::wire::messages(body) {}
    }
    // Once checked, no accessor of the header view may panic.
    if let Ok(p) = ctsyncd::wire::Packet::new_checked(data) {
        let _ = (ctsyncd::wire::Header::parse(&p), p.body(), p.trailer());
    }
});
