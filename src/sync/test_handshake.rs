//! The challenge handshake at first contact, with explicit times: a lost
//! challenge or answer is asked again on the clock (not on the peer's next
//! datagram, which at startup is a keepalive a second later), each answer
//! measures the round trip, and a challenged sender probes again.

use super::test::{ct, datagram_from, engines, key, params};
use super::*;

/// What `e` sends at `now`, datagram by datagram.
fn sent(e: &mut Engine, src: &MapSource, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 1472];
    let mut out = Vec::new();
    while let Some(n) = e.poll_transmit(now, src, &mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

fn deliver(e: &mut Engine, d: &[Vec<u8>], now: Instant) {
    for d in d {
        e.recv(now, 1, d, &MapSource::default()).unwrap();
    }
}

/// The challenges' nonces in `d`.
fn challenges(d: &[Vec<u8>]) -> Vec<u64> {
    d.iter()
        .flat_map(|d| {
            let (_, body) = wire::read(d).unwrap();
            wire::messages(body).map(Result::unwrap).collect::<Vec<_>>()
        })
        .filter_map(|m| match m {
            Msg::Challenge { nonce } => Some(nonce),
            _ => None,
        })
        .collect()
}

#[test]
fn a_lost_challenge_is_asked_again_on_the_clock_and_measures_the_round_trip() {
    let ms = Instant::from_millis;
    let mut a = Engine::new(params(Mode::FtFw, 100), ms(0));
    let mut b = Engine::new(params(Mode::FtFw, 200), ms(0));
    let mut a_src = MapSource::default();
    let c = ct(1);
    a_src.cts.insert(wire::ct_key_of(&c), c.clone());
    a.local_change(key(&c), true);
    // A's first datagram reaches B, whose challenge is lost; A says
    // nothing more for a while.
    let first = sent(&mut a, &a_src, ms(0));
    deliver(&mut b, &first, ms(1));
    let lost = challenges(&sent(&mut b, &MapSource::default(), ms(1)));
    assert_eq!(lost.len(), 1);
    assert!(b.round_trip().is_none() && a.round_trip().is_none());
    // The clock asks again 5 ms on, with another nonce.
    assert_eq!(b.poll_at(), ms(6));
    b.handle_timeout(ms(6), &MapSource::default());
    let again = sent(&mut b, &MapSource::default(), ms(6));
    assert_eq!(challenges(&again).len(), 1);
    assert_ne!(challenges(&again), lost);
    // A answers (and challenges B) 1 ms on; B's answer 1 ms later.
    deliver(&mut a, &again, ms(7));
    let answer = sent(&mut a, &a_src, ms(7));
    deliver(&mut b, &answer, ms(8));
    deliver(&mut a, &sent(&mut b, &MapSource::default(), ms(8)), ms(9));
    assert_eq!(
        (a.stats().challenges_answered, b.stats().challenges_answered),
        (1, 1)
    );
    // Each answer measured its own challenge: 2 ms (B asked again at 6,
    // not at 1), and the clock stops asking.
    let rtt = |e: &Engine| e.round_trip().map(|r| r.smoothed);
    assert_eq!(rtt(&b), Some(Duration::from_millis(2)));
    assert_eq!(rtt(&a), Some(Duration::from_millis(2)));
    assert!(b.poll_at() > ms(100), "{:?}", b.poll_at());
}

#[test]
fn a_challenged_sender_probes_again() {
    // A's data and every probe after it are lost, and B, heard all along
    // (its keepalives), answers none of them (A's session is not proven
    // there): A gives up probing.
    let ms = Instant::from_millis;
    let (mut a, _b) = engines(Mode::FtFw, 100, 200, ms(0));
    let mut a_src = MapSource::default();
    let c = ct(1);
    a_src.cts.insert(wire::ct_key_of(&c), c.clone());
    a.local_change(key(&c), true);
    sent(&mut a, &a_src, ms(0));
    let alive = datagram_from(200, 0, &[Msg::Alive { next: Seq(0) }]);
    let mut t = ms(0);
    let mut heard_at = ms(0);
    while t < ms(20_000) {
        if t.since(heard_at) >= Duration::from_millis(500) {
            heard_at = t;
            a.recv(t, 1, &alive, &MapSource::default()).unwrap();
        }
        t = a.poll_at().min(heard_at + Duration::from_millis(500));
        a.handle_timeout(t, &a_src);
        sent(&mut a, &a_src, t);
    }
    let probes = a.stats().probes_sent;
    assert!(probes > 0, "it did probe");
    assert!(a.poll_at() > t + Duration::from_millis(500), "and stopped");
    // Now B challenges A (its session is not proven there, so it read
    // none of the probes): A answers, and the next probe comes soon.
    let challenge = datagram_from(200, 0, &[Msg::Challenge { nonce: 7 }]);
    a.recv(t, 1, &challenge, &MapSource::default()).unwrap();
    sent(&mut a, &a_src, t);
    let next = a.poll_at();
    assert!(
        next <= t + Duration::from_millis(10),
        "{next:?} after {t:?}"
    );
    a.handle_timeout(next, &a_src);
    sent(&mut a, &a_src, next);
    assert_eq!(a.stats().probes_sent, probes + 1);
}

#[test]
fn an_answer_overtaken_by_later_data_leaves_the_tracking_where_it_is() {
    // A and B proven; B has A's numbers up to 2. An ALIVE of A's from
    // before them comes late: B asks A to prove its session again.
    let ms = Instant::from_millis;
    let (mut a, mut b) = engines(Mode::FtFw, 100, 200, ms(0));
    let mut a_src = MapSource::default();
    let change = |a: &mut Engine, a_src: &mut MapSource, port| {
        let c = ct(port);
        a_src.cts.insert(wire::ct_key_of(&c), c.clone());
        a.local_change(key(&c), true);
    };
    let old_alive = sent_alive(&mut a, &a_src, ms(0));
    for port in 1..=3 {
        change(&mut a, &mut a_src, port);
        deliver(&mut b, &sent(&mut a, &a_src, ms(1)), ms(1));
    }
    let expects = |b: &Engine| b.mode.get().expects(1);
    let before = expects(&b);
    deliver(&mut b, &old_alive, ms(2));
    let ask = sent(&mut b, &MapSource::default(), ms(2));
    assert_eq!(challenges(&ask).len(), 1);
    // A answers, then sends two more changes; those overtake the answer.
    deliver(&mut a, &ask, ms(3));
    let answer = sent(&mut a, &a_src, ms(3));
    change(&mut a, &mut a_src, 4);
    change(&mut a, &mut a_src, 5);
    deliver(&mut b, &sent(&mut a, &a_src, ms(4)), ms(5));
    let ahead = expects(&b);
    assert!(ahead > before);
    deliver(&mut b, &answer, ms(6));
    assert_eq!(b.stats().challenges_answered, 1);
    assert_eq!(expects(&b), ahead, "not moved back to the answer's");
}

/// A's keepalive at `now` (a datagram of its own).
fn sent_alive(a: &mut Engine, src: &MapSource, now: Instant) -> Vec<Vec<u8>> {
    let next = a.tx.next_seq();
    a.tx.control(Msg::Alive { next });
    sent(a, src, now)
}

#[test]
fn a_held_datagram_is_counted_once_when_replayed_after_the_proof() {
    // `-s`'s received datagrams and messages count what arrived: the
    // held ones were counted when they came, not again when replayed.
    let ms = Instant::from_millis;
    let mut b = Engine::new(params(Mode::FtFw, 200), ms(0));
    let src = MapSource::default();
    let c = ct(1);
    let data = datagram_from(
        100,
        50,
        &[
            Msg::CtNew(wire::to_wire_ct(&c)),
            Msg::CtNew(wire::to_wire_ct(&ct(2))),
        ],
    );
    b.recv(ms(0), 1, &data, &src).unwrap();
    assert_eq!(b.stats().unconfirmed, 1, "held");
    let nonce = challenges(&sent(&mut b, &src, ms(0)))[0];
    let answer = Msg::Response {
        echo: nonce,
        from: Seq(50),
        next: Seq(52),
    };
    b.recv(ms(1), 1, &datagram_from(100, 52, &[answer]), &src)
        .unwrap();
    let mut applied = 0;
    while b.pop_apply().is_some() {
        applied += 1;
    }
    assert_eq!(applied, 2, "the held datagram was replayed");
    let s = b.stats();
    assert_eq!((s.datagrams_recv, s.msgs_recv), (2, 3));
}
