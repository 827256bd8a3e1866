//! Sealed engines, as the daemon runs them: no session is trusted
//! up front, every datagram is really sealed and opened, and the
//! captures replayed are the bytes that crossed the link.

use super::*;
use crate::model::{Conntrack, L4, Tuple};
use crate::wire::seal::{self, Sealer};

fn params(mode: Mode, session: u32) -> Params {
    Params {
        mode,
        session,
        max_datagram: 1472,
        resend_queue_size: 1000,
        ack_window: 4,
        tx_queue_size: 10_000,
        refresh_time: Duration::from_secs(5),
        seed: u64::from(session) * 0x9e37_79b9,
    }
}

/// An engine sealing with `keys[0]` (each opens); `start` stands for the
/// per-start randomness the daemon draws (session, seed, epoch).
pub(super) fn keyed(mode: Mode, start: u8, keys: &[u8], t: Instant) -> Engine {
    let mut e = Engine::new(params(mode, 1000 + u32::from(start)), t);
    let keys: Vec<seal::Key> = keys
        .iter()
        .map(|&k| seal::Key::from_bytes([k; 32]))
        .collect();
    e.set_sealer(Sealer::new(&keys, [start; 16]).unwrap());
    e
}

pub(super) fn ct(port: u16) -> Conntrack {
    let mut c = Conntrack::new(Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: 6,
        l4: L4::Ports { src: port, dst: 22 },
    });
    c.timeout = Some(300);
    c.reply = Some(c.orig.inverse());
    c
}

/// One node: its engine and its cache (internal on the primary,
/// external on the backup).
pub(super) struct Side {
    pub(super) e: Engine,
    pub(super) cache: MapSource,
}

/// Everything `a` sends now, delivered to `b`; returns the bytes sent.
pub(super) fn send(a: &mut Side, b: &mut Side, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 1472];
    let mut sent = Vec::new();
    while let Some(len) = a.e.poll_transmit(now, &a.cache, &mut buf) {
        let d = buf[..len].to_vec();
        deliver(b, &d, now);
        sent.push(d);
    }
    sent
}

fn deliver(b: &mut Side, d: &[u8], now: Instant) {
    let _ = b.e.recv(now, 1, d, &b.cache);
    while let Some(ap) = b.e.pop_apply() {
        b.cache.apply(ap);
    }
}

/// `rounds` exchanges 300 ms apart from `t`; returns the capture of what
/// the primary sent and the time after.
pub(super) fn run(
    p: &mut Side,
    b: &mut Side,
    t: Instant,
    rounds: u64,
) -> (Vec<Vec<u8>>, Instant) {
    let mut capture = Vec::new();
    let mut now = t;
    for _ in 0..rounds {
        p.e.handle_timeout(now, &p.cache);
        b.e.handle_timeout(now, &b.cache);
        capture.extend(send(p, b, now));
        send(b, p, now);
        now = now + Duration::from_millis(300);
    }
    (capture, now)
}

pub(super) fn primary_with_flows(mode: Mode, keys: &[u8], t: Instant) -> Side {
    let mut p = Side {
        e: keyed(mode, 1, keys, t),
        cache: MapSource::default(),
    };
    for port in 1..=20 {
        let c = ct(port);
        p.cache.cts.insert(wire::ct_key_of(&c), c.clone());
        p.e.local_change(Key::Ct(wire::ct_key_of(&c)), true);
    }
    p
}

pub(super) fn backup(mode: Mode, start: u8, keys: &[u8], t: Instant) -> Side {
    Side {
        e: keyed(mode, start, keys, t),
        cache: MapSource::default(),
    }
}

fn delete_all(p: &mut Side) {
    let keys: Vec<_> = p.cache.cts.keys().cloned().collect();
    p.cache.cts.clear();
    for k in keys {
        p.e.local_change(Key::Ct(k), false);
    }
}

const MODES: [Mode; 2] = [Mode::FtFw, Mode::NoTrack];

#[test]
fn a_sealed_pair_proves_its_sessions_and_converges() {
    for mode in MODES {
        let t = Instant::from_millis(0);
        let mut p = primary_with_flows(mode, &[7], t);
        let mut b = backup(mode, 2, &[7], t);
        run(&mut p, &mut b, t, 20);
        assert_eq!(b.cache.cts.len(), 20, "{mode:?}");
        assert!(b.e.stats().challenges_answered >= 1);
        assert!(p.e.stats().challenges_answered >= 1);
        let s = b.e.stats();
        assert_eq!((s.auth_failed, s.replayed, s.unsealed), (0, 0, 0));
    }
}

#[test]
fn a_wrong_key_delivers_nothing_and_is_counted() {
    for mode in MODES {
        let t = Instant::from_millis(0);
        let mut p = primary_with_flows(mode, &[7], t);
        let mut b = backup(mode, 2, &[8], t);
        run(&mut p, &mut b, t, 20);
        assert!(b.cache.cts.is_empty(), "{mode:?}");
        assert!(b.e.stats().auth_failed > 0);
        assert!(p.e.stats().auth_failed > 0, "the backup's ACKs too");
    }
}

#[test]
fn plain_and_foreign_datagrams_are_refused_when_keyed() {
    let t = Instant::from_millis(0);
    let mut plain = Side {
        e: Engine::new(params(Mode::FtFw, 5), t),
        cache: MapSource::default(),
    };
    let c = ct(1);
    plain.cache.cts.insert(wire::ct_key_of(&c), c.clone());
    plain.e.local_change(Key::Ct(wire::ct_key_of(&c)), true);
    let mut b = backup(Mode::FtFw, 2, &[7], t);
    run(&mut plain, &mut b, t, 10);
    // conntrackd's header (version 0, NET_T_STATE_CT_NEW), and garbage.
    deliver(&mut b, &[0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01], t);
    deliver(&mut b, b"cT", t);
    assert!(b.cache.cts.is_empty());
    let s = b.e.stats();
    assert!(s.unsealed >= 4 && s.datagrams_recv == 0, "{s:?}");
}

#[test]
fn a_capture_replayed_at_the_live_backup_changes_nothing() {
    for mode in MODES {
        let t = Instant::from_millis(0);
        let mut p = primary_with_flows(mode, &[7], t);
        let mut b = backup(mode, 2, &[7], t);
        let (mut capture, now) = run(&mut p, &mut b, t, 20);
        assert_eq!(b.cache.cts.len(), 20);
        delete_all(&mut p);
        let (more, now) = run(&mut p, &mut b, now, 20);
        capture.extend(more);
        assert!(b.cache.cts.is_empty(), "{mode:?}: deletions arrived");
        let before = b.e.stats().replayed;
        for d in &capture {
            deliver(&mut b, d, now);
        }
        // And the pair keeps talking meanwhile.
        run(&mut p, &mut b, now, 10);
        assert!(
            b.cache.cts.is_empty(),
            "{mode:?}: a replay re-created flows"
        );
        assert_eq!(b.e.stats().replayed - before, capture.len() as u64);
    }
}

#[test]
fn a_capture_replayed_at_a_restarted_backup_changes_nothing() {
    for mode in MODES {
        let t = Instant::from_millis(0);
        let mut p = primary_with_flows(mode, &[7], t);
        let mut b = backup(mode, 2, &[7], t);
        let (mut capture, now) = run(&mut p, &mut b, t, 20);
        delete_all(&mut p);
        let (more, now) = run(&mut p, &mut b, now, 20);
        capture.extend(more);
        // The backup restarts (new session, seed and epoch; same key) and
        // the capture reaches it before, while and after the live primary
        // proves its session to it.
        let mut fresh = backup(mode, 3, &[7], now);
        for d in &capture {
            deliver(&mut fresh, d, now);
        }
        assert!(fresh.cache.cts.is_empty(), "{mode:?}: before the proof");
        let (_, now) = run(&mut p, &mut fresh, now, 10);
        assert!(fresh.e.stats().challenges_answered >= 1, "{mode:?}");
        for d in &capture {
            deliver(&mut fresh, d, now);
        }
        run(&mut p, &mut fresh, now, 10);
        assert!(
            fresh.cache.cts.is_empty(),
            "{mode:?}: a replay re-created flows"
        );
        assert!(fresh.e.stats().replayed >= capture.len() as u64);
        // The live primary's new flows still arrive.
        let c = ct(999);
        p.cache.cts.insert(wire::ct_key_of(&c), c.clone());
        p.e.local_change(Key::Ct(wire::ct_key_of(&c)), true);
        run(&mut p, &mut fresh, now + Duration::from_secs(10), 10);
        assert_eq!(fresh.cache.cts.len(), 1, "{mode:?}");
    }
}

#[test]
fn every_flipped_bit_of_a_live_datagram_is_refused() {
    let t = Instant::from_millis(0);
    let mut p = primary_with_flows(Mode::NoTrack, &[7], t);
    let mut b = backup(Mode::NoTrack, 2, &[7], t);
    let (capture, now) = run(&mut p, &mut b, t, 20);
    // A fresh datagram the backup has not seen yet, with one bit flipped.
    let c = ct(500);
    p.cache.cts.insert(wire::ct_key_of(&c), c.clone());
    p.e.local_change(Key::Ct(wire::ct_key_of(&c)), true);
    let mut buf = [0u8; 1472];
    let len = p.e.poll_transmit(now, &p.cache, &mut buf).unwrap();
    let d = buf[..len].to_vec();
    assert!(!capture.contains(&d));
    let refused =
        |s: &Stats| s.auth_failed + s.bad_version + s.unsealed + s.bad_header;
    let before = refused(b.e.stats());
    for bit in 0..len * 8 {
        let mut bad = d.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        deliver(&mut b, &bad, now);
    }
    // The version byte's bits make it plain or another version, the body
    // length's bits misframe it; every other bit fails the tag.
    assert_eq!(refused(b.e.stats()) - before, (len * 8) as u64);
    // Magic (16 bits), version (8) and length (16) are checked first.
    assert!(b.e.stats().auth_failed >= (len * 8 - 40) as u64);
    assert_eq!(b.cache.cts.len(), 20, "nothing of it applied");
    deliver(&mut b, &d, now);
    assert_eq!(b.cache.cts.len(), 21, "the original still opens");
}

/// What `a` sends now, not delivered (it will arrive late).
fn held_back(a: &mut Side, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 1472];
    let mut out = Vec::new();
    while let Some(len) = a.e.poll_transmit(now, &a.cache, &mut buf) {
        out.push(buf[..len].to_vec());
    }
    out
}

#[test]
fn a_keyed_answer_overtaken_by_later_data_leaves_the_tracking_where_it_is() {
    // As the plain test (`test_handshake`), sealed: with a key only
    // reordering can put the tracking ahead of the peer's answer.
    let t = Instant::from_millis(0);
    let mut p = primary_with_flows(Mode::FtFw, &[4], t);
    let mut b = backup(Mode::FtFw, 2, &[4], t);
    let (_, mut now) = run(&mut p, &mut b, t, 4);
    assert_eq!(b.cache.cts.len(), 20, "replicated");
    let expects = |b: &Side| b.e.mode.get().expects(1);
    // A keepalive of the primary's, overtaken by a change sent after it.
    p.e.tx.control(Msg::Alive {
        next: p.e.tx.next_seq(),
    });
    let old_alive = held_back(&mut p, now);
    delete_all(&mut p);
    send(&mut p, &mut b, now);
    let before = expects(&b);
    let asked = b.e.stats().challenges_sent;
    for d in &old_alive {
        deliver(&mut b, d, now);
    }
    // The backup asks the primary to prove its session again; the
    // primary answers, then sends more, which overtakes the answer.
    assert_eq!(b.e.stats().challenges_sent, asked + 1);
    now = now + Duration::from_millis(1);
    send(&mut b, &mut p, now);
    let answer = held_back(&mut p, now);
    for port in 30..=31 {
        let c = ct(port);
        p.cache.cts.insert(wire::ct_key_of(&c), c.clone());
        p.e.local_change(Key::Ct(wire::ct_key_of(&c)), true);
    }
    send(&mut p, &mut b, now);
    let ahead = expects(&b);
    assert!(ahead > before);
    for d in &answer {
        deliver(&mut b, d, now);
    }
    assert_eq!(expects(&b), ahead, "not moved back to the answer's");
    assert_eq!(b.cache.cts.len(), 2, "the deletes and the two new flows");
}

pub(super) fn deliver_from(b: &mut Side, peer: u64, d: &[u8], now: Instant) {
    let _ = b.e.recv(now, peer, d, &b.cache);
    while let Some(ap) = b.e.pop_apply() {
        b.cache.apply(ap);
    }
}

/// What a primary sends now goes to the backup as if from `peer`'s
/// address (an attacker redirecting it: the original never arrives).
fn send_from(p: &mut Side, b: &mut Side, peer: u64, now: Instant) -> usize {
    let mut buf = [0u8; 1472];
    let mut n = 0;
    while let Some(len) = p.e.poll_transmit(now, &p.cache, &mut buf) {
        deliver_from(b, peer, &buf[..len], now);
        n += 1;
    }
    n
}

#[test]
fn a_capture_replayed_from_another_address_cannot_recreate_a_deleted_flow() {
    let t = Instant::from_millis(0);
    let mut p = primary_with_flows(Mode::FtFw, &[7], t);
    let mut b = backup(Mode::FtFw, 2, &[7], t);
    let (capture, now) = run(&mut p, &mut b, t, 20);
    assert_eq!(b.cache.cts.len(), 20);
    // 1. An old capture re-sent from another address (peer id 2) meets
    // the sender's window, not a fresh one of that address.
    let challenges = b.e.stats().challenges_sent;
    deliver_from(&mut b, 2, &capture[0], now);
    assert_eq!(b.e.stats().replayed, 1, "refused as a replay");
    assert_eq!(b.e.stats().challenges_sent, challenges, "nothing asked");
    // 2. A fresh datagram of p's, redirected to come from address 2, is
    // new: b challenges (2, p's session) on the link, and p answers.
    let c = ct(998);
    p.cache.cts.insert(wire::ct_key_of(&c), c.clone());
    p.e.local_change(Key::Ct(wire::ct_key_of(&c)), true);
    assert!(send_from(&mut p, &mut b, 2, now) > 0);
    assert_eq!(b.e.stats().challenges_sent, challenges + 1);
    send(&mut b, &mut p, now);
    let answer = send(&mut p, &mut b, now);
    assert!(!answer.is_empty());
    // 3. The attacker re-sends p's answer from address 2: its counter
    // was taken when it came from p, so it proves nothing.
    let proven = b.e.stats().challenges_answered;
    let replayed = b.e.stats().replayed;
    for d in &answer {
        deliver_from(&mut b, 2, d, now);
    }
    assert_eq!(b.e.stats().challenges_answered, proven, "2 is not proven");
    assert_eq!(b.e.stats().replayed, replayed + answer.len() as u64);
    // 4. p creates flow 999 (captured), then deletes it; b follows.
    let c = ct(999);
    let k = wire::ct_key_of(&c);
    p.cache.cts.insert(k, c.clone());
    p.e.local_change(Key::Ct(k), true);
    let now = now + Duration::from_millis(10);
    let created = send(&mut p, &mut b, now);
    assert!(b.cache.cts.contains_key(&k));
    let (_, now) = run(&mut p, &mut b, now, 5);
    p.cache.cts.remove(&k);
    p.e.local_change(Key::Ct(k), false);
    let (_, now) = run(&mut p, &mut b, now, 5);
    assert!(!b.cache.cts.contains_key(&k), "deleted on b");
    // 5. Much later the attacker replays the creation from address 2.
    let now = now + Duration::from_secs(60);
    let replayed = b.e.stats().replayed;
    for d in &created {
        deliver_from(&mut b, 2, d, now);
    }
    assert!(
        !b.cache.cts.contains_key(&k),
        "a replayed capture re-created a deleted flow (replayed={})",
        b.e.stats().replayed
    );
    assert_eq!(b.e.stats().replayed, replayed + created.len() as u64);
}

#[test]
fn the_peer_still_syncs_after_its_captures_are_replayed_from_elsewhere() {
    let t = Instant::from_millis(0);
    let mut p = primary_with_flows(Mode::FtFw, &[7], t);
    let mut b = backup(Mode::FtFw, 2, &[7], t);
    let (capture, now) = run(&mut p, &mut b, t, 20);
    assert_eq!(b.cache.cts.len(), 20);
    // The whole capture re-sent from two other addresses: all refused.
    for peer in [2, 3] {
        for d in &capture {
            deliver_from(&mut b, peer, d, now);
        }
    }
    assert_eq!(b.e.stats().replayed, 2 * capture.len() as u64);
    // p goes on from its own address: a new flow and a delete arrive.
    let c = ct(500);
    p.cache.cts.insert(wire::ct_key_of(&c), c.clone());
    p.e.local_change(Key::Ct(wire::ct_key_of(&c)), true);
    let gone = ct(3);
    p.cache.cts.remove(&wire::ct_key_of(&gone));
    p.e.local_change(Key::Ct(wire::ct_key_of(&gone)), false);
    let (_, _) = run(&mut p, &mut b, now, 5);
    assert!(b.cache.cts.contains_key(&wire::ct_key_of(&c)), "created");
    assert!(
        !b.cache.cts.contains_key(&wire::ct_key_of(&gone)),
        "deleted"
    );
    assert_eq!(b.cache.cts.len(), 20);
}

#[test]
fn a_digest_too_big_for_a_small_sealed_link_is_dropped_not_blocking() {
    // At 576 bytes a seal leaves 522 for messages: a dense DigestTop
    // (524 bytes) never fits. It is dropped and counted; the Prune after
    // it goes in parts that fit, and the DigestSub after those.
    let t = Instant::ZERO;
    let mut a = keyed(Mode::FtFw, 1, &[7], t);
    a.p.max_datagram = 576;
    a.trust(1, 2000);
    let sums = wire::Sums(std::array::from_fn(|i| i as u64 + 1));
    a.send_digest(Msg::DigestTop {
        table: wire::Table::Ct,
        sums,
    });
    a.send_digest(Msg::Prune {
        table: wire::Table::Ct,
        bucket: 0,
        sub: 0,
        lo: 0,
        hi: u64::MAX,
        keep: wire::KeyHashes((0..wire::KEEP_MAX as u64).collect()),
    });
    let mut sparse = [0; wire::FANOUT];
    sparse[3] = 9;
    a.send_digest(Msg::DigestSub {
        table: wire::Table::Ct,
        bucket: 1,
        sums: wire::Sums(sparse),
    });
    let src = MapSource::default();
    let mut buf = [0u8; 1472];
    let mut datagrams = 0;
    while let Some(n) = a.poll_transmit(t, &src, &mut buf) {
        assert!(n <= 576, "{n} bytes");
        datagrams += 1;
    }
    let s = a.stats();
    assert_eq!(s.too_big, 1, "the DigestTop");
    assert!(datagrams >= 3, "the Prune's parts: {datagrams}");
    assert!(s.msgs_sent >= 4, "{} messages", s.msgs_sent);
    assert!(!a.wants_transmit());
}
