//! A node's anti-entropy: its caches as the digest reads them, and what
//! it does with a [`Reaction`] (digest messages out, keys resent through
//! the reliable path, stale external entries pruned), with a counter and
//! a log line per repair.
//!
//! On only where both caches exist and the mode keeps state (FT-FW and
//! NOTRACK; ALARM refreshes everything anyway): with DisableExternalCache
//! the peer's state is in the kernel, with DisableInternalCache ours is.

use log::Level::Info;

use super::Node;
use crate::cache::{Cache, Stored};
use crate::model::{Conntrack, Expect, Mode};
use crate::sync::Key;
use crate::sync::digest::{
    self, AntiEntropy, RawEntry, Reaction, Table, Tables,
};
use crate::time::Instant;

/// Both tables of one side.
struct CacheTables<'a> {
    ct: &'a Cache<Conntrack>,
    exp: &'a Cache<Expect>,
}

fn each<V: Stored>(c: &Cache<V>, f: &mut dyn FnMut(RawEntry<'_>)) {
    for (bytes, key_len, updated) in c.raw_entries() {
        f(RawEntry {
            bytes,
            key_len,
            updated,
        });
    }
}

impl Tables for CacheTables<'_> {
    fn each(&self, table: Table, f: &mut dyn FnMut(RawEntry<'_>)) {
        match table {
            Table::Ct => each(self.ct, f),
            Table::Exp => each(self.exp, f),
        }
    }
}

/// The anti-entropy state for a configuration, if it applies. Its asks'
/// names start from the `session` id: random per start, and already in
/// every datagram's header (the challenges' secret seed must not be
/// guessable from a name).
pub(super) fn for_config(
    cfg: &crate::config::Sync,
    session: u32,
    now: Instant,
) -> Option<AntiEntropy> {
    let on = cfg.anti_entropy_period > 0
        && cfg.mode != Mode::Alarm
        && !cfg.disable_external_cache
        && !cfg.disable_internal_cache;
    on.then(|| {
        let period =
            std::time::Duration::from_secs(u64::from(cfg.anti_entropy_period));
        AntiEntropy::new(
            digest::Config {
                period,
                seed: u64::from(session) << 32,
                ..digest::Config::default()
            },
            now,
        )
    })
}

impl Node {
    /// The digest messages a datagram carried.
    pub(super) fn digests_received(&mut self, now: Instant) {
        while let Some(msg) = self.engine.pop_digest() {
            let Some(ae) = self.anti_entropy.as_mut() else {
                continue;
            };
            let internal = CacheTables {
                ct: &self.internal_ct,
                exp: &self.internal_exp,
            };
            let external = CacheTables {
                ct: &self.external_ct,
                exp: &self.external_exp,
            };
            let r = ae.on_msg(now, &msg, &internal, &external);
            self.react(r);
        }
    }

    /// The anti-entropy timer.
    pub(super) fn anti_entropy_timer(&mut self, now: Instant) {
        let Some(ae) = self.anti_entropy.as_mut() else {
            return;
        };
        if now < ae.poll_at() {
            return;
        }
        let internal = CacheTables {
            ct: &self.internal_ct,
            exp: &self.internal_exp,
        };
        let external = CacheTables {
            ct: &self.external_ct,
            exp: &self.external_exp,
        };
        let r = ae.on_timer(now, &internal, &external);
        self.react(r);
    }

    fn react(&mut self, r: Reaction) {
        if r.repairs() {
            self.out.log(
                Info,
                format!(
                    "anti-entropy: {} entries sent again, {} stale entries of the peer removed",
                    r.resend_keys.len(),
                    r.prune.len()
                ),
            );
        }
        for m in r.send {
            self.engine.send_digest(m);
        }
        for k in r.resend_keys {
            self.engine.local_change(k, false);
        }
        for k in r.prune {
            match k {
                Key::Ct(k) => self.forget_external_ct(&k),
                // Gone already with its master, pruned just before: no
                // failure.
                Key::Exp(k) => {
                    self.external_exp.take(&k);
                }
            }
        }
    }
}
