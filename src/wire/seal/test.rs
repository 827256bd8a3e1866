use super::*;
use crate::wire::{Header, Msg, Seq, Writer, messages, read};

const EPOCH: [u8; EPOCH_LEN] = [7; EPOCH_LEN];

fn key(b: u8) -> Key {
    Key::from_bytes([b; KEY_LEN])
}

/// A plain datagram with two messages, and room to seal it.
fn plain(buf: &mut [u8]) -> usize {
    let limit = buf.len() - SEAL_OVERHEAD;
    let mut w = Writer::new(
        &mut buf[..limit],
        Header {
            flags: 0,
            session: 0x0a0b_0c0d,
            first_seq: Seq(41),
        },
    )
    .unwrap();
    w.push(&Msg::Resync).unwrap();
    w.push(&Msg::Alive { next: Seq(42) }).unwrap();
    w.finish()
}

fn sealed(s: &mut Sealer) -> Vec<u8> {
    let mut buf = vec![0u8; 200];
    let n = plain(&mut buf);
    let m = s.seal(&mut buf, n).unwrap();
    assert_eq!(m, n + SEAL_OVERHEAD);
    buf.truncate(m);
    buf
}

#[test]
fn sealed_datagrams_open_to_what_was_sealed() {
    let mut s = Sealer::new(&[key(1)], EPOCH).unwrap();
    let mut buf = vec![0u8; 200];
    let n = plain(&mut buf);
    let want = buf[..n].to_vec();
    let d = sealed(&mut s);
    // The header stays clear (but for the version), the body does not.
    assert_eq!(d[2], SEALED_VERSION);
    assert_eq!(d[3..HEADER_LEN], want[3..HEADER_LEN]);
    assert_ne!(d[HEADER_LEN..n], want[HEADER_LEN..n]);
    assert_eq!(d[n..n + EPOCH_LEN], EPOCH);
    let mut out = Vec::new();
    let origin = s.open(&d, &mut out).unwrap();
    assert_eq!(out, want);
    assert_eq!(
        origin,
        Origin {
            epoch: EPOCH,
            counter: 0
        }
    );
    let (h, body) = read(&out).unwrap();
    assert_eq!(h.first_seq, Seq(41));
    assert_eq!(messages(body).count(), 2);
    // The next datagram takes the next nonce.
    let d2 = sealed(&mut s);
    assert_eq!(s.open(&d2, &mut out).unwrap().counter, 1);
    assert_ne!(d, d2);
}

#[test]
fn every_flipped_bit_is_refused() {
    let mut s = Sealer::new(&[key(1)], EPOCH).unwrap();
    let d = sealed(&mut s);
    let mut out = Vec::new();
    for bit in 0..d.len() * 8 {
        let mut bad = d.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let r = s.open(&bad, &mut out);
        assert!(r.is_err(), "bit {bit} flipped and still opened");
        assert!(out.is_empty(), "bit {bit}: nothing of it may be kept");
    }
}

#[test]
fn a_wrong_key_opens_nothing_and_both_keys_open_during_a_rotation() {
    let mut a = Sealer::new(&[key(1)], EPOCH).unwrap();
    let mut b = Sealer::new(&[key(2)], EPOCH).unwrap();
    let mut out = Vec::new();
    let from_a = sealed(&mut a);
    let from_b = sealed(&mut b);
    assert_eq!(b.open(&from_a, &mut out), Err(Error::Auth));
    assert_eq!(a.open(&from_b, &mut out), Err(Error::Auth));
    // A+B seals with A and opens both; B+A seals with B.
    let mut ab = Sealer::new(&[key(1), key(2)], EPOCH).unwrap();
    let mut ba = Sealer::new(&[key(2), key(1)], EPOCH).unwrap();
    assert!(ab.open(&from_a, &mut out).is_ok());
    assert!(ab.open(&from_b, &mut out).is_ok());
    assert!(a.open(&sealed(&mut ab), &mut out).is_ok());
    assert!(b.open(&sealed(&mut ba), &mut out).is_ok());
    assert!(Sealer::new(&[], EPOCH).is_none());
}

#[test]
fn anything_unsealed_is_refused() {
    let s = Sealer::new(&[key(1)], EPOCH).unwrap();
    let mut buf = vec![0u8; 200];
    let n = plain(&mut buf);
    let mut out = Vec::new();
    assert_eq!(s.open(&buf[..n], &mut out), Err(Error::Unsealed));
    // conntrackd's 8-byte nethdr (version 0), garbage, empty.
    assert_eq!(
        s.open(&[0x00, 0x01, 0, 8, 0, 0, 0, 1], &mut out),
        Err(Error::Unsealed)
    );
    assert_eq!(s.open(&[], &mut out), Err(Error::Unsealed));
    let mut other = buf[..n].to_vec();
    other[2] = 9;
    assert_eq!(s.open(&other, &mut out), Err(Error::Version(9)));
    // Cut short or padded.
    let mut s2 = Sealer::new(&[key(1)], EPOCH).unwrap();
    let d = sealed(&mut s2);
    for cut in 0..d.len() {
        assert!(s.open(&d[..cut], &mut out).is_err(), "prefix {cut}");
    }
    let mut long = d.clone();
    long.push(0);
    assert_eq!(s.open(&long, &mut out), Err(Error::TrailingBytes));
}

#[test]
fn sealing_needs_room() {
    let mut s = Sealer::new(&[key(1)], EPOCH).unwrap();
    let mut buf = vec![0u8; 200];
    let n = plain(&mut buf);
    assert_eq!(
        s.seal(&mut buf[..n + SEAL_OVERHEAD - 1], n),
        Err(Error::TooBig)
    );
    assert_eq!(s.seal(&mut buf, 3), Err(Error::TooBig));
}

#[test]
fn keys_read_as_wg_genkey_writes_them() {
    // RFC 4648's test vectors, then a 32-byte key.
    for (bytes, text) in [
        (&b""[..], ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"fooba", "Zm9vYmE="),
        (b"foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64_encode(bytes), text);
        assert_eq!(base64_decode(text).unwrap(), bytes);
    }
    let k = Key::from_bytes(core::array::from_fn(|i| i as u8 * 7));
    let text = k.to_base64();
    assert_eq!(text.len(), 44);
    assert_eq!(Key::from_base64(&format!("  {text}\n")), Ok(k.clone()));
    assert_eq!(format!("{k:?}"), "Key(…)");
    assert_eq!(Key::from_base64("Zm9vYmFy"), Err(KeyError::Length(6)));
    for bad in ["Zm9", "Zm=v", "Z===", "Zh==", "Zm9v\u{e9}mFy", "Zm 9v"] {
        assert!(Key::from_base64(bad).is_err(), "{bad} accepted");
    }
}
