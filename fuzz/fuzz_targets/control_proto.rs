//! The control socket's bytes: no input may panic the frame codec, and a
//! connection's bytes go through the decision the daemon's reader makes
//! (`control::server::received`: a request of ours, conntrackd 1.4's
//! client's request code, native or big-endian, or a bad frame), which
//! must not depend on how the bytes arrive, nor take one client's request
//! for the other's.
#![no_main]
use ctsyncd::control::conntrackd;
use ctsyncd::control::proto::{self, Reply, Request};
use ctsyncd::control::server::{self, ReadError, Received};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = proto::decode::<Reply>(data, proto::MAX_REPLY);
    let whole = server::received(data);
    match (&whole, proto::decode::<Request>(data, proto::MAX_REQUEST)) {
        (Received::Request(r), Ok(Some((req, _)))) => {
            assert_eq!(*r, req);
            // What we decoded is a request our client can send.
            let again = proto::encode(r);
            assert_eq!(server::received(&again), whole);
        }
        (Received::More { .. }, Ok(None)) => {}
        // Neither a request nor a frame of ours: a conntrackd code only
        // from its client's four bytes, native or big-endian.
        (Received::Conntrackd(code), Err(_)) => {
            assert!(*code <= 48);
            assert!(
                data[..4] == [*code, 0, 0, 0] || data[..4] == [0, 0, 0, *code],
                "{data:?} taken for conntrackd's request {code}"
            );
        }
        (Received::Frame(e), Err(d)) => assert_eq!(*e, d),
        (w, d) => panic!("{data:?}: the reader decided {w:?}, the codec {d:?}"),
    }

    // The reader decides after every read: byte by byte, it must reach
    // the decision it makes on the bytes at once, at the first prefix
    // that decides; until then only a big-endian conntrackd request may
    // stand out, and only as four bytes.
    let mut decided = None;
    for end in 0..=data.len() {
        match server::received(&data[..end]) {
            Received::More { big_endian } => {
                if let Some(code) = big_endian {
                    assert_eq!(data[..end], [0, 0, 0, code]);
                    assert!((1..=48).contains(&code));
                }
            }
            d => {
                decided = Some(d);
                break;
            }
        }
    }
    match decided {
        Some(d) => assert_eq!(d, whole, "{data:?}: byte by byte"),
        None => assert!(matches!(whole, Received::More { .. })),
    }

    // What the daemon then does with it: the log line, and for
    // conntrackd's client the request it stands for.
    let e = match whole {
        Received::Conntrackd(code) => {
            if let Some(req) = conntrackd::request(code) {
                assert_ne!(conntrackd::command(code), "unknown");
                let _ = proto::encode(&req);
            }
            ReadError::Conntrackd(code)
        }
        Received::Frame(e) => ReadError::Frame(e),
        _ => return,
    };
    let _ = e.to_string();
});
