#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((_, body)) = ctsyncd::wire::read(data, None) {
        for _ in ctsyncd::wire::messages(body) {}
    }
});
