#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for _ in ctsyncd::kernel::codec::messages(data) {}
});
