//! Byte fixtures for every message type, the worst-case sizes, and
//! rejection of every malformed or truncated datagram.

use super::msg::CtExtra;
use super::*;
use crate::model::{
    Conntrack, Expect, ExpectNat, L4, ProtoInfo, SeqAdj, Tuple, status,
};

fn t4() -> Tuple {
    Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: 6,
        l4: L4::Ports { src: 1000, dst: 80 },
    }
}

/// postcard bytes of `t4()`: V4 tag, 4 bytes, V4 tag, 4 bytes, proto,
/// Ports tag, varint 1000, varint 80.
const T4: [u8; 15] = [0, 10, 0, 0, 1, 0, 10, 0, 0, 2, 6, 1, 0xe8, 0x07, 0x50];

fn enc(m: &Msg) -> Vec<u8> {
    postcard::to_allocvec(m).unwrap()
}

fn check(m: Msg, bytes: &[u8]) {
    assert_eq!(enc(&m), bytes, "{m:?}");
    let (back, rest) = postcard::take_from_bytes::<Msg>(bytes).unwrap();
    assert_eq!(back, m);
    assert!(rest.is_empty());
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn control_message_fixtures() {
    check(
        Msg::Ack {
            from: Seq(1),
            to: Seq(300),
        },
        &[6, 1, 0xac, 0x02],
    );
    check(
        Msg::Nack {
            from: Seq(5),
            to: Seq(5),
        },
        &[7, 5, 5],
    );
    check(Msg::Alive { next: Seq(128) }, &[8, 0x80, 0x01]);
    check(Msg::Resync, &[9]);
    assert!(Msg::Resync.is_data() && !Msg::Alive { next: Seq(0) }.is_data());
}

#[test]
fn digest_message_fixtures() {
    let mut sums = [0u64; 64];
    check(
        Msg::DigestTop {
            table: Table::Ct,
            sums: Sums(sums),
        },
        &[12, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    // The mask names bucket 1; its sum follows in 8 fixed bytes.
    sums[1] = 0x0102;
    check(
        Msg::DigestSub {
            table: Table::Exp,
            bucket: 5,
            sums: Sums(sums),
        },
        &[13, 1, 5, 16, 2, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0],
    );
    check(
        Msg::Prune {
            table: Table::Ct,
            bucket: 1,
            sub: 2,
            lo: 3,
            hi: 300,
            keep: KeyHashes(vec![7]),
        },
        &[14, 0, 1, 2, 3, 0xac, 0x02, 8, 7, 0, 0, 0, 0, 0, 0, 0],
    );
    // Appended after Synced (15): the kind and the ask come first.
    check(
        Msg::PruneFor {
            ask: 5,
            table: Table::Exp,
            bucket: 1,
            sub: 2,
            lo: 3,
            hi: 300,
            keep: KeyHashes(vec![]),
        },
        &[16, 5, 1, 1, 2, 3, 0xac, 0x02, 0],
    );
    // Appended after PruneFor (16): the kind, the ask, then as DigestSub.
    check(
        Msg::DigestSubFor {
            ask: 300,
            table: Table::Exp,
            bucket: 5,
            sums: Sums(sums),
        },
        &[
            17, 0xac, 0x02, 1, 5, 16, 2, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0,
            0, 0,
        ],
    );
    for m in [
        Msg::DigestTop {
            table: Table::Ct,
            sums: Sums(sums),
        },
        Msg::Prune {
            table: Table::Ct,
            bucket: 0,
            sub: 0,
            lo: 0,
            hi: 0,
            keep: KeyHashes(vec![]),
        },
        Msg::PruneFor {
            ask: 0,
            table: Table::Ct,
            bucket: 0,
            sub: 0,
            lo: 0,
            hi: 0,
            keep: KeyHashes(vec![]),
        },
        Msg::DigestSubFor {
            ask: 0,
            table: Table::Ct,
            bucket: 0,
            sums: Sums(sums),
        },
    ] {
        assert!(!m.is_data(), "anti-entropy is control, never sequenced");
    }
}

#[test]
fn conntrack_message_fixtures() {
    let key = CtKey {
        orig: t4(),
        zone: 0,
    };
    check(Msg::CtDel(key), &cat(&[&[2], &T4, &[0]]));
    let w = WireCt {
        key,
        reply: None,
        status: 0x19e,
        timeout: Some(120),
        proto: ProtoInfo::Tcp {
            state: 3,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: 8,
            flags_reply: 8,
        },
        extra: None,
    };
    // zone 0, no reply, status, Some(120), Tcp {..}, no extra.
    let body: &[u8] = &[0, 0, 0x9e, 0x03, 1, 120, 1, 3, 7, 7, 8, 8, 0];
    check(Msg::CtNew(w.clone()), &cat(&[&[0], &T4, body]));
    check(Msg::CtUpd(w.clone()), &cat(&[&[1], &T4, body]));
    // With NAT (reply present) and extras (mark 5, helper "ftp").
    let mut nat = w;
    nat.reply = Some(Tuple {
        src: "10.0.0.2".parse().unwrap(),
        dst: "10.0.0.9".parse().unwrap(),
        proto: 6,
        l4: L4::Ports { src: 80, dst: 1000 },
    });
    nat.extra = Some(CtExtra {
        mark: 5,
        helper: Some("ftp".try_into().unwrap()),
        ..CtExtra::default()
    });
    let reply: &[u8] =
        &[1, 0, 10, 0, 0, 2, 0, 10, 0, 0, 9, 6, 1, 0x50, 0xe8, 0x07];
    let rest: &[u8] = &[0x9e, 0x03, 1, 120, 1, 3, 7, 7, 8, 8];
    let extra: &[u8] = &[1, 5, 0, 1, 3, b'f', b't', b'p', 0, 0, 0];
    check(
        Msg::CtUpd(nat),
        &cat(&[&[1], &T4, &[0], reply, rest, extra]),
    );
}

#[test]
fn expectation_message_fixtures() {
    let mask = Tuple {
        src: "255.255.255.255".parse().unwrap(),
        dst: "255.255.255.255".parse().unwrap(),
        proto: 6,
        l4: L4::Ports {
            src: 0,
            dst: 0xffff,
        },
    };
    let mut tuple = t4();
    tuple.l4 = L4::Ports { src: 0, dst: 50000 };
    let key = ExpKey {
        master: t4(),
        tuple,
        mask,
        zone: 0,
    };
    let tuple_b: &[u8] =
        &[0, 10, 0, 0, 1, 0, 10, 0, 0, 2, 6, 1, 0, 0xd0, 0x86, 0x03];
    let mask_b: &[u8] = &[
        0, 255, 255, 255, 255, 0, 255, 255, 255, 255, 6, 1, 0, 0xff, 0xff, 0x03,
    ];
    let key_b = cat(&[&T4, tuple_b, mask_b, &[0]]);
    check(Msg::ExpDel(key), &cat(&[&[5], &key_b]));
    let w = WireExp {
        key,
        timeout: Some(300),
        flags: 0,
        class: 0,
        helper: Some("ftp".try_into().unwrap()),
        nat: None,
        func: None,
    };
    let rest: &[u8] = &[1, 0xac, 0x02, 0, 0, 1, 3, b'f', b't', b'p', 0, 0];
    check(Msg::ExpNew(w.clone()), &cat(&[&[3], &key_b, rest]));
    check(Msg::ExpUpd(w), &cat(&[&[4], &key_b, rest]));
}

#[test]
fn datagram_fixture_and_round_trip() {
    let mut buf = [0u8; 64];
    let mut w = Writer::new(
        &mut buf,
        Header {
            flags: flag::HELLO,
            session: 0x0102_0304,
            first_seq: Seq(7),
        },
    )
    .unwrap();
    w.push(&Msg::Ack {
        from: Seq(1),
        to: Seq(300),
    })
    .unwrap();
    w.push(&Msg::Resync).unwrap();
    assert_eq!(w.counts(), (2, 1));
    let n = w.finish();
    assert_eq!(
        &buf[..n],
        &[
            b'c', b'T', 1, 1, 1, 2, 3, 4, 0, 0, 0, 7, 0, 5, 6, 1, 0xac, 2, 9
        ]
    );
    let (h, body) = read(&buf[..n]).unwrap();
    assert_eq!(
        h,
        Header {
            flags: flag::HELLO,
            session: 0x0102_0304,
            first_seq: Seq(7)
        }
    );
    let msgs: Vec<Msg> = messages(body).map(Result::unwrap).collect();
    assert_eq!(
        msgs,
        [
            Msg::Ack {
                from: Seq(1),
                to: Seq(300)
            },
            Msg::Resync
        ]
    );
}

fn worst_ct() -> Conntrack {
    let v6 = |a: &str, b: &str| Tuple {
        src: a.parse().unwrap(),
        dst: b.parse().unwrap(),
        proto: 132,
        l4: L4::Ports {
            src: u16::MAX,
            dst: u16::MAX,
        },
    };
    let all = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let mut ct = Conntrack::new(v6(all, all));
    ct.reply = Some(v6("fe80::1", all));
    ct.zone = u16::MAX;
    ct.status = u32::MAX;
    ct.timeout = Some(u32::MAX);
    ct.mark = u32::MAX;
    ct.secmark = u32::MAX;
    ct.proto_info = ProtoInfo::Dccp {
        state: 255,
        role: 255,
        handshake_seq: u64::MAX,
    };
    ct.helper = Some("abcdefghijklmno".try_into().unwrap());
    ct.master = Some(v6(all, all));
    let m = SeqAdj {
        correction_pos: u32::MAX,
        offset_before: u32::MAX,
        offset_after: u32::MAX,
    };
    ct.seq_adj = Some([m, m]);
    ct.labels = Some([0xff; 16]);
    ct
}

#[test]
fn worst_case_sizes_fit_a_datagram() {
    // 1500-byte MTU minus IPv6 and UDP headers, our header and a seal.
    let room = 1500 - 48 - HEADER_LEN - seal::SEAL_OVERHEAD;
    let ct = enc(&Msg::CtUpd(to_wire_ct(&worst_ct())));
    assert_eq!(ct.len(), 232);
    let all = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
    let t = Tuple {
        src: all,
        dst: all,
        proto: 255,
        l4: L4::Icmp {
            kind: 255,
            code: 255,
            id: u16::MAX,
        },
    };
    let x = Expect {
        master: t,
        tuple: t,
        mask: t,
        timeout: Some(u32::MAX),
        zone: u16::MAX,
        flags: u32::MAX,
        class: u32::MAX,
        helper: Some("abcdefghijklmno".try_into().unwrap()),
        nat: Some(ExpectNat {
            dir: u32::MAX,
            tuple: t,
        }),
        func: Some("abcdefghijklmnopqrstuvwxyz01234".try_into().unwrap()),
        id: 0,
    };
    let xb = enc(&Msg::ExpUpd(to_wire_exp(&x)));
    assert_eq!(xb.len(), 240);
    assert!(ct.len() < room && xb.len() < room);
    // Both round-trip.
    assert_eq!(from_wire_ct(to_wire_ct(&worst_ct())), worst_ct());
    assert_eq!(from_wire_exp(to_wire_exp(&x)), x);
}

#[test]
fn a_prune_of_prune_keep_max_hashes_fits_its_room() {
    // From the smallest link (576 bytes, sealed) to KEEP_MAX's 1472.
    for room in [576 - HEADER_LEN - seal::SEAL_OVERHEAD, 576 - HEADER_LEN]
        .into_iter()
        .chain([1232, 1472].map(|d| d - HEADER_LEN - seal::SEAL_OVERHEAD))
    {
        let n = prune_keep_max(room);
        let m = Msg::PruneFor {
            ask: u64::MAX,
            table: Table::Exp,
            bucket: u8::MAX,
            sub: u8::MAX,
            lo: u64::MAX,
            hi: u64::MAX,
            keep: KeyHashes(vec![u64::MAX; n]),
        };
        assert!(enc(&m).len() <= room, "{n} hashes in {room} bytes");
    }
    let sealed_1472 = 1472 - HEADER_LEN - seal::SEAL_OVERHEAD;
    assert_eq!(prune_keep_max(sealed_1472), KEEP_MAX);
    assert_eq!(prune_keep_max(0), 1);
}

#[test]
fn typical_flow_is_compact() {
    // An established, un-NATed TCP flow: conntrackd sends 68 bytes.
    let mut ct = Conntrack::new(t4());
    ct.reply = Some(t4().inverse());
    ct.status = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;
    ct.timeout = Some(431999);
    ct.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 7,
        flags_orig: 0,
        flags_reply: 0,
    };
    assert_eq!(enc(&Msg::CtUpd(to_wire_ct(&ct))).len(), 30);
}

#[test]
fn a_message_that_does_not_fit_is_refused() {
    let mut buf = [0u8; HEADER_LEN + 56];
    let mut w = Writer::new(
        &mut buf,
        Header {
            flags: 0,
            session: 1,
            first_seq: Seq(1),
        },
    )
    .unwrap();
    let big = Msg::CtUpd(to_wire_ct(&worst_ct()));
    assert_eq!(w.push(&big), Err(Error::TooBig));
    // The datagram is unchanged and still usable.
    w.push(&Msg::Resync).unwrap();
    assert_eq!(w.counts(), (1, 1));
    let mut tiny = [0u8; 8];
    assert!(
        Writer::new(
            &mut tiny,
            Header {
                flags: 0,
                session: 1,
                first_seq: Seq(1)
            }
        )
        .is_err()
    );
}

#[test]
fn an_encoded_body_is_pushed_as_push_writes_its_message() {
    let header = Header {
        flags: 0,
        session: 1,
        first_seq: Seq(1),
    };
    let mut x = Expect::new(t4(), t4(), t4().inverse());
    x.timeout = Some(300);
    x.helper = Some("ftp".try_into().unwrap());
    let (ct, exp) = (to_wire_ct(&worst_ct()), to_wire_exp(&x));
    let typical = to_wire_ct(&Conntrack::new(t4()));
    let cases = [
        (Encoded::CtNew, Msg::CtNew(ct.clone())),
        (Encoded::CtUpd, Msg::CtUpd(ct)),
        (Encoded::CtNew, Msg::CtNew(typical)),
        (Encoded::ExpNew, Msg::ExpNew(exp.clone())),
        (Encoded::ExpUpd, Msg::ExpUpd(exp)),
    ];
    let (mut a, mut b) = ([0u8; 2000], [0u8; 2000]);
    let mut wa = Writer::new(&mut a, header).unwrap();
    let mut wb = Writer::new(&mut b, header).unwrap();
    for (kind, m) in &cases {
        let body = match m {
            Msg::CtNew(w) | Msg::CtUpd(w) => postcard::to_allocvec(w),
            Msg::ExpNew(w) | Msg::ExpUpd(w) => postcard::to_allocvec(w),
            _ => unreachable!(),
        }
        .unwrap();
        wa.push(m).unwrap();
        wb.push_encoded(*kind, &body).unwrap();
        assert_eq!(wa.counts(), wb.counts());
    }
    let (la, lb) = (wa.finish(), wb.finish());
    assert_eq!(a[..la], b[..lb]);
    // One that does not fit is refused and changes nothing.
    let mut small = [0u8; HEADER_LEN + 20];
    let mut w = Writer::new(&mut small, header).unwrap();
    let body = postcard::to_allocvec(&to_wire_ct(&worst_ct())).unwrap();
    assert_eq!(w.push_encoded(Encoded::CtUpd, &body), Err(Error::TooBig));
    assert_eq!(w.counts(), (0, 0));
}

fn datagram() -> Vec<u8> {
    let mut buf = vec![0u8; 200];
    let mut w = Writer::new(
        &mut buf,
        Header {
            flags: 0,
            session: 9,
            first_seq: Seq(1),
        },
    )
    .unwrap();
    w.push(&Msg::CtDel(CtKey {
        orig: t4(),
        zone: 0,
    }))
    .unwrap();
    w.push(&Msg::Alive { next: Seq(2) }).unwrap();
    let n = w.finish();
    buf.truncate(n);
    buf
}

#[test]
fn malformed_datagrams_are_rejected() {
    let good = datagram();
    assert!(read(&good).is_ok());
    for cut in 0..good.len() {
        assert!(read(&good[..cut]).is_err(), "prefix {cut} accepted");
    }
    let mut bad = good.clone();
    bad[0] = b'x';
    assert_eq!(read(&bad), Err(Error::BadMagic));
    let mut bad = good.clone();
    bad[2] = 2;
    assert_eq!(read(&bad), Err(Error::Version(2)));
    let mut bad = good.clone();
    bad.push(0);
    assert_eq!(read(&bad), Err(Error::TrailingBytes));
    // A body whose second message has an unknown kind.
    let mut bad = good.clone();
    let second = HEADER_LEN
        + enc(&Msg::CtDel(CtKey {
            orig: t4(),
            zone: 0,
        }))
        .len();
    bad[second] = 200;
    let (_, body) = read(&bad).unwrap();
    let got: Vec<_> = messages(body).collect();
    assert_eq!(got.len(), 2);
    assert!(got[0].is_ok());
    assert_eq!(got[1], Err(Error::Malformed));
}

#[test]
fn random_bytes_never_panic() {
    let good = datagram();
    let mut x: u64 = 0x1234_5678;
    for i in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut d = if i % 2 == 0 {
            good.clone()
        } else {
            (0..(x % 64) as usize)
                .map(|k| (x >> (k % 8 * 8)) as u8)
                .collect()
        };
        if !d.is_empty() {
            let k = x as usize % d.len();
            d[k] = (x >> 32) as u8;
        }
        if let Ok((_, body)) = read(&d) {
            let _ = messages(body).count();
        }
        // The view's contract: once checked, no accessor panics.
        if let Ok(p) = Packet::new_checked(&d[..]) {
            let _ = (Header::parse(&p), p.body(), p.trailer());
        }
    }
}
