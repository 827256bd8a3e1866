#![no_main]
use ctsyncd::control::proto::{self, Reply, Request};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = proto::decode::<Request>(data, proto::MAX_REQUEST);
    let _ = proto::decode::<Reply>(data, proto::MAX_REPLY);
});
