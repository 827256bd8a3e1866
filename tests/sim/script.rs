//! The scenarios' vocabulary: the notify script's steps (as keepalived
//! runs etc/keepalived/primary-backup.sh), traffic in bursts or kept
//! going while a request runs, and the checks every scenario ends with:
//! the backup's external cache is the primary's internal cache and the
//! primary's internal cache is its kernel, entry by entry; a kernel holds
//! every entry of another.

use ctsyncd::control::proto::{
    Cache, CacheSel, Request, Status, Table, Target,
};
use ctsyncd::model::Conntrack;
use ctsyncd::wire::{ct_key_of, exp_key_of};

use super::flows::{established, flow};
use super::kernel::Kernel;
use super::net::LinkParams;
use super::traffic::Traffic;
use super::{World, cfg};

pub const FW1: usize = 0;
pub const FW2: usize = 1;

/// keepalived's notify_master (primary-backup.sh primary): every step
/// runs whatever the one before answered, as in the script. Returns
/// the answers of `-c`, `-f`, `-R`, `-B`.
pub fn primary_steps(w: &mut World, i: usize) -> [Status; 4] {
    [
        Request::Commit(Target::All),
        Request::FlushCache(CacheSel::All),
        Request::ResyncKernel(Target::All),
        Request::BulkSend,
    ]
    .map(|r| w.control(i, r).1)
}

/// The notify script's primary step; every answer must be `Ok`.
pub fn primary(w: &mut World, i: usize) {
    let s = primary_steps(w, i);
    w.ensure(s.iter().all(|s| *s == Status::Ok), || {
        format!("fw{} notify primary: -c -f -R -B answered {s:?}", i + 1)
    });
}

/// keepalived's notify_backup (primary-backup.sh backup).
pub fn backup(w: &mut World, i: usize) {
    w.ok(i, Request::ResetTimers);
    w.ok(i, Request::RequestResync);
}

/// The primary's internal cache, entry by entry, is the backup's
/// external cache (conntracks and expectations).
pub fn assert_replicated(w: &mut World, primary: usize, backup: usize) {
    for table in [Table::Ct, Table::Expect] {
        let i = w.cache(primary, Cache::Internal, table);
        let e = w.cache(backup, Cache::External, table);
        if i != e {
            // The first few differences say enough.
            let missing: Vec<_> =
                i.iter().filter(|x| !e.contains(x)).take(5).collect();
            let extra: Vec<_> =
                e.iter().filter(|x| !i.contains(x)).take(5).collect();
            w.fail(&format!(
                "{table:?}: fw{} internal ({}) != fw{} external ({}); \
                 first missing {missing:#?}; first extra {extra:#?}",
                primary + 1,
                i.len(),
                backup + 1,
                e.len()
            ));
        }
    }
}

/// A node's internal cache holds exactly its kernel's entries, entry by
/// entry (as `-i --json` shows them).
pub fn assert_internal_is_kernel(w: &mut World, i: usize) {
    use ctsyncd::node::render::{ct_json, exp_json};
    let k = &w.fws[i].kernel;
    let kernel = [
        super::json_entries(&format!(
            "[{}]",
            k.conntracks()
                .map(|c| ct_json(c, 0))
                .collect::<Vec<_>>()
                .join(",")
        )),
        super::json_entries(&format!(
            "[{}]",
            k.expectations()
                .map(|x| exp_json(x, 0))
                .collect::<Vec<_>>()
                .join(",")
        )),
    ];
    for (table, kernel) in [Table::Ct, Table::Expect].into_iter().zip(kernel) {
        let cache = w.cache(i, Cache::Internal, table);
        if cache != kernel {
            let missing: Vec<_> = kernel
                .iter()
                .filter(|x| !cache.contains(x))
                .take(5)
                .collect();
            let extra: Vec<_> = cache
                .iter()
                .filter(|x| !kernel.contains(x))
                .take(5)
                .collect();
            w.fail(&format!(
                "{table:?}: fw{} internal cache ({}) != its kernel ({}); \
                 first missing {missing:#?}; first extra {extra:#?}",
                i + 1,
                cache.len(),
                kernel.len()
            ));
        }
    }
}

/// Every conntrack and expectation of `from`'s kernel is in `to`'s, with
/// the same reply tuple (NAT binding), helper and master.
pub fn assert_kernel_holds(w: &World, from: &Kernel, to: usize) {
    let k = &w.fws[to].kernel;
    for c in from.conntracks() {
        let got = k.ct(&ct_key_of(c));
        w.ensure(got.is_some(), || {
            format!("fw{} kernel lacks {}", to + 1, super::text::ct_text(c))
        });
        let got = got.unwrap();
        w.ensure(
            got.reply_tuple() == c.reply_tuple()
                && got.helper == c.helper
                && got.master == c.master,
            || format!("fw{} kernel has {got:?} for {c:?}", to + 1),
        );
    }
    for x in from.expectations() {
        let got = k.exp(&exp_key_of(x));
        w.ensure(got.is_some(), || {
            format!("fw{} kernel lacks expectation {x:?}", to + 1)
        });
        let master = ctsyncd::wire::CtKey {
            orig: x.master,
            zone: x.zone,
        };
        w.ensure(k.ct(&master).is_some(), || {
            format!("fw{} kernel lacks the master of {x:?}", to + 1)
        });
    }
}

/// Some flows through fw `i`: new, then established, a few ended.
pub fn traffic(w: &mut World, i: usize, from: u32, n: u32) -> Vec<Conntrack> {
    let mut alive = Vec::new();
    for f in from..from + n {
        let c = flow(f);
        assert!(w.new_flow(i, &c));
        let pause = w.rng.below(2);
        w.run(pause);
        let c = established(c);
        assert!(w.update_flow(i, &c));
        if f % 7 == 3 {
            assert!(w.end_flow(i, &ct_key_of(&c)));
        } else {
            alive.push(c);
        }
    }
    alive
}

pub fn two(mode: &str, options: &str) -> World {
    let c = cfg("", mode, options);
    let mut w = World::new(1, LinkParams::PERFECT, vec![c.clone(), c]);
    w.start(FW1);
    w.start(FW2);
    primary(&mut w, FW1);
    backup(&mut w, FW2);
    w
}

/// Runs `body`; if it panics, prints the transcript first (unless
/// [`World::fail`] did already).
pub fn scenario(w: &mut World, body: impl FnOnce(&mut World)) {
    w.trace = true;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(w)));
    if std::env::var_os("SIM_TRACE").is_some() || r.is_err() {
        for l in &w.transcript {
            eprintln!("{l}");
        }
    }
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

/// Sends `req` to fw `i` and keeps traffic going through `t` on fw
/// `busy` until it is answered; returns the answer's status.
pub fn while_busy(
    w: &mut World,
    t: &mut Traffic,
    busy: usize,
    i: usize,
    req: Request,
) -> Status {
    let client = w.request(i, req);
    let deadline = w.now + 60_000;
    loop {
        if let Some((_, s)) = w.answer(i, client) {
            return s;
        }
        w.ensure(w.now < deadline, || format!("{req:?} never answered"));
        t.step(w, busy);
        let pause = w.rng.below(2);
        w.run(pause);
    }
}

/// Traffic for `n` changes, a millisecond or two apart.
pub fn churn(w: &mut World, t: &mut Traffic, i: usize, n: u32) {
    for _ in 0..n {
        t.step(w, i);
        let pause = w.rng.below(3);
        w.run(pause);
    }
}
