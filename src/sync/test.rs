//! The helpers of the engine's deterministic tests (explicit times),
//! shared by its `test_*` siblings: engines and their parameters, a
//! proven pair, conntracks and their keys, one engine's datagrams pumped
//! into another, datagrams built by hand, the control messages an engine
//! sends. It holds no tests of its own.

use super::*;
use crate::model::{Conntrack, L4, Tuple};
use crate::wire::{Header, Writer};

pub(super) fn params(mode: Mode, session: u32) -> Params {
    Params {
        mode,
        session,
        max_datagram: 1472,
        resend_queue_size: 1000,
        ack_window: 4,
        tx_queue_size: 10_000,
        refresh_time: Duration::from_secs(5),
        seed: u64::from(session),
    }
}

/// Two engines that already proved their sessions to each other (each
/// knows the other as peer 1, as [`pump`] delivers).
pub(super) fn engines(
    mode: Mode,
    a: u32,
    b: u32,
    t: Instant,
) -> (Engine, Engine) {
    let (mut ea, mut eb) = (
        Engine::new(params(mode, a), t),
        Engine::new(params(mode, b), t),
    );
    ea.trust(1, b);
    eb.trust(1, a);
    (ea, eb)
}

/// FT-FW engines A (session 100, with the queue bounds given) and B
/// (200, the default ones), proven to each other, A having heard B.
pub(super) fn heard_pair(
    resend_queue_size: usize,
    tx_queue_size: usize,
    t: Instant,
) -> (Engine, Engine) {
    let mut p = params(Mode::FtFw, 100);
    p.resend_queue_size = resend_queue_size;
    p.tx_queue_size = tx_queue_size;
    let mut a = Engine::new(p, t);
    let mut b = Engine::new(params(Mode::FtFw, 200), t);
    a.trust(1, 200);
    b.trust(1, 100);
    hears(&mut a, &b, t);
    (a, b)
}

/// `a` hears `b` (an ALIVE of `b`'s next number, as peer 1). A session
/// is heard as it proves itself, which [`Engine::trust`] skips: a sender
/// that never heard its peer treats it as silent (`ftfw::SILENT_HOLD`).
pub(super) fn hears(a: &mut Engine, b: &Engine, now: Instant) {
    let next = b.tx.next_seq();
    let d = datagram_from(b.p.session, next.0, &[Msg::Alive { next }]);
    a.recv(now, 1, &d, &MapSource::default()).unwrap();
}

pub(super) fn ct(port: u16) -> Conntrack {
    let mut c = Conntrack::new(Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: 17,
        l4: L4::Ports { src: port, dst: 53 },
    });
    c.timeout = Some(30);
    // As the kernel reports it: the reply tuple is always known.
    c.reply = Some(c.orig.inverse());
    c
}

/// A cache of `ct(1..=n)` that counts the walks over its keys (a bulk
/// is one).
#[derive(Default)]
pub(super) struct Counted {
    pub(super) map: MapSource,
    pub(super) walks: std::cell::Cell<usize>,
}

impl Counted {
    pub(super) fn with(n: u16) -> Counted {
        let mut c = Counted::default();
        for p in 1..=n {
            let flow = ct(p);
            c.map.cts.insert(wire::ct_key_of(&flow), flow);
        }
        c
    }
}

impl Source for Counted {
    fn current(&self, key: &Key) -> Option<State> {
        self.map.current(key)
    }

    fn keys(&self) -> Vec<Key> {
        self.walks.set(self.walks.get() + 1);
        self.map.keys()
    }
}

pub(super) fn key(c: &Conntrack) -> Key {
    Key::Ct(wire::ct_key_of(c))
}

/// A new conntrack `ct(port)` in `src`, the cache `e` sends from, and
/// queued on `e` as the kernel's NEW would queue it.
pub(super) fn new_ct(e: &mut Engine, src: &mut MapSource, port: u16) {
    let c = ct(port);
    src.cts.insert(wire::ct_key_of(&c), c.clone());
    e.local_change(key(&c), true);
}

/// Everything A sends right now, delivered to B (optionally filtered).
pub(super) fn pump(
    a: &mut Engine,
    a_src: &MapSource,
    b: &mut Engine,
    b_src: &mut MapSource,
    now: Instant,
    mut deliver: impl FnMut(usize) -> bool,
) -> usize {
    let mut buf = [0u8; 1472];
    let mut n = 0;
    while let Some(len) = a.poll_transmit(now, a_src, &mut buf) {
        if deliver(n) {
            if std::env::var("PUMP_TRACE").is_ok() {
                let (h, body) = wire::read(&buf[..len]).unwrap();
                let m: Vec<_> = wire::messages(body).collect();
                eprintln!("{} -> {}: {h:?} {m:?}", a.p.session, b.p.session);
            }
            b.recv(now, 1, &buf[..len], &*b_src).unwrap();
            while let Some(ap) = b.pop_apply() {
                b_src.apply(ap);
            }
        }
        n += 1;
    }
    n
}

/// A datagram from session 9 whose first data message is `first`.
pub(super) fn datagram(first: u32, msgs: &[Msg]) -> Vec<u8> {
    datagram_from(9, first, msgs)
}

/// A datagram from `session` whose first data message is `first`.
pub(super) fn datagram_from(session: u32, first: u32, msgs: &[Msg]) -> Vec<u8> {
    let mut buf = [0u8; 1472];
    let header = Header {
        flags: 0,
        session,
        first_seq: Seq(first),
    };
    let mut w = Writer::new(&mut buf, header).unwrap();
    for m in msgs {
        w.push(m).unwrap();
    }
    let n = w.finish();
    buf[..n].to_vec()
}

/// The control messages `e` sends now.
pub(super) fn control_out(e: &mut Engine) -> Vec<Msg> {
    let mut buf = [0u8; 1472];
    let mut out = Vec::new();
    while let Some(n) = e.poll_transmit(
        Instant::from_millis(0),
        &MapSource::default(),
        &mut buf,
    ) {
        let (_, body) = wire::read(&buf[..n]).unwrap();
        out.extend(wire::messages(body).map(Result::unwrap));
    }
    out
}

pub(super) fn del(port: u16) -> Msg {
    Msg::CtDel(wire::ct_key_of(&ct(port)))
}
