//! Anti-entropy: the peers periodically compare digests of the replicated
//! state and repair what differs, whatever caused the difference (a lost
//! event, a bug, a forged DESTROY, a restart during a storm).
//!
//! Roles (each node plays both, one per direction): the *sender* S about
//! its internal cache, the *receiver* R about its external cache.
//!
//! ```text
//!  S                                   R
//!  |-- DigestTop(64 bucket sums) ----->|  every period, per table
//!  |                                   |  compare with external digest
//!  |<-- DigestSub(bucket, 64 leaf sums)|  at most K differing buckets
//!  |                                   |  (DigestSubFor: named)
//!  |  compare with internal leaves     |
//!  |  per differing leaf (at most L):  |
//!  |  resend its keys (reliable path)  |
//!  |-- Prune(leaf, range, keep) ------>|  delete unkept entries of leaf
//! ```
//!
//! Cost: at rest (digests agree) one DigestTop per table per period
//! (about 540 bytes for a full table, 25 for an empty one) and one pass
//! over each cache. A round repairs at most K buckets and L leaves
//! (`cut_short` counts the rounds the bounds stopped); the next period
//! continues, since the digests still differ. The defaults allow a whole
//! table per period (about one bulk send), so a restart during a storm
//! is repaired in one period; smaller bounds spread it out.
//!
//! Batching (CPU: a pass per message would cost K or hundreds of passes
//! per round): S notes the differing leaves of a round's DigestSubs and
//! repairs them all in one pass over its internal cache, [`BATCH_DELAY`]
//! after the first (from [`AntiEntropy::on_timer`]); R applies the Prunes
//! it accepted likewise in one pass over its external cache (or at once
//! when [`PENDING_MAX_HASHES`] are waiting). Computing the digest itself
//! is one pass per DigestTop sent or answered, and one per table for the
//! DigestSubs of a second (however many, forged or not, and however they
//! alternate between the tables).
//!
//! In flight: S's DigestTop is about its internal cache now, so entries
//! still queued for the peer make a leaf differ; their repair resends
//! them (harmless) and the Prune spares them (below). Under steady churn
//! a few leaves are repaired each period.
//!
//! Races: a Prune is control (unsequenced), so it could overtake the data
//! message of an entry S created after building it. R therefore prunes
//! only entries it last updated no later than when it sent the DigestSub
//! that asked for the Prune: such an entry S did not hold when it
//! answered. Which DigestSub that was, the Prune says (`PruneFor`: the
//! name the `DigestSubFor` carried, or for a peer sent the plain
//! DigestSub the `ask_id` of its sums; R remembers its last few asks per
//! bucket, [`asks`]): a Prune the network delays past R's next ask for
//! its bucket still spares what R was sent in between (within a period;
//! for equal sums' hashes see [`asks`]). A plain Prune,
//! from a peer that predates `PruneFor`, is checked against the latest
//! ask of its bucket. A Prune R did not ask for (within one period) is
//! ignored, which also makes a forged Prune harmless without a key, and a
//! forged DigestSub costs at most L leaves of resends per period.
//!
//! Pure: time and the caches come in as parameters; the node acts on the
//! [`Reaction`].

mod asks;
mod hash;
mod prune;
mod repair;

pub use crate::wire::Table;
pub use asks::ASKS_KEPT;
pub use hash::{
    Digest, LEAVES, ask_id, condemned, differing, entry_hash, key_hash,
    keys_in_leaf, leaf_of, leaf_range, numbered_ask, position, prune_parts,
    split_prune,
};
pub use prune::PENDING_MAX_HASHES;

use std::time::Duration;

use super::Key;
use crate::time::Instant;
use crate::wire::{CtKey, ExpKey, FANOUT, Msg};

/// Default period (the issue asks for at most 60 s).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30);

/// Leaves to repair (sender) and accepted Prunes (receiver) wait this
/// long for the rest of their round, then are handled together in one
/// pass over the cache.
pub const BATCH_DELAY: Duration = Duration::from_millis(200);

/// One stored entry as the digest reads it.
#[derive(Debug, Clone, Copy)]
pub struct RawEntry<'a> {
    /// The stored encoding: the key's encoding, then the value's.
    pub bytes: &'a [u8],
    pub key_len: usize,
    /// When this node last wrote it.
    pub updated: Instant,
}

impl<'a> RawEntry<'a> {
    pub fn key(&self) -> &'a [u8] {
        &self.bytes[..self.key_len.min(self.bytes.len())]
    }
}

/// A node's caches as anti-entropy reads them (the node implements it
/// over `Cache::raw_entries`).
pub trait Tables {
    /// Calls `f` for every entry of `table`.
    fn each(&self, table: Table, f: &mut dyn FnMut(RawEntry<'_>));
}

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How often DigestTop is sent (per table).
    pub period: Duration,
    /// K: top buckets narrowed per received DigestTop.
    pub max_buckets: usize,
    /// L: leaves repaired per period (as sender).
    pub max_leaves: usize,
    /// Where this node's numbered asks' names start ([`numbered_ask`]):
    /// random per life, so a Prune for a previous life's ask matches none
    /// of this one's.
    pub seed: u64,
}

impl Default for Config {
    /// Every bucket and every leaf: a period may repair the whole table
    /// (the issue asks for a complete backup within one period after a
    /// restart during a storm, which touches most leaves). The bound is
    /// then one bulk send's worth per period, paced by the transmit
    /// queue; smaller values trade convergence time for bandwidth.
    fn default() -> Self {
        Config {
            period: DEFAULT_PERIOD,
            max_buckets: FANOUT,
            max_leaves: LEAVES,
            seed: 0,
        }
    }
}

/// Counters (cumulative) for `-s` and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Periods started (DigestTops sent, per table).
    pub rounds: u64,
    /// Top buckets compared against a peer's DigestTop.
    pub buckets_compared: u64,
    /// Top buckets found different (DigestSubs sent).
    pub buckets_differing: u64,
    /// Leaves found different and repaired (as sender).
    pub leaves_repaired: u64,
    /// Keys queued again for the reliable path.
    pub entries_resent: u64,
    /// External entries deleted by a Prune.
    pub entries_pruned: u64,
    /// Times a bound (K, L) left a repair for later, or the pending
    /// Prunes filled up and were applied early.
    pub cut_short: u64,
    /// Digest messages ignored: unasked Prunes, out-of-range buckets,
    /// DigestTops sooner than half a period (at most a second) after the
    /// last one answered, DigestSubs about a table not in sync.
    pub ignored: u64,
}

/// What the node must do after [`AntiEntropy::on_msg`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// Control messages for the peer.
    pub send: Vec<Msg>,
    /// Keys to queue again (`Engine::local_change(key, false)`): their
    /// current state, or a delete, goes through the reliable path.
    pub resend_keys: Vec<Key>,
    /// Keys to delete from the external cache.
    pub prune: Vec<Key>,
}

impl Reaction {
    /// Whether it repairs anything (worth a log line).
    pub fn repairs(&self) -> bool {
        !self.resend_keys.is_empty() || !self.prune.is_empty()
    }
}

/// The anti-entropy state of one node (both roles).
#[derive(Debug, Clone)]
pub struct AntiEntropy {
    cfg: Config,
    next: Instant,
    /// Leaves repaired in the current period.
    leaves_used: usize,
    /// Receiver: accepted Prunes awaiting their pass.
    pending: prune::Pending,
    /// Sender: leaves awaiting their pass.
    repairs: repair::Repairs,
    /// Receiver: the DigestSubs we sent lately, per table and bucket.
    asks: asks::Asks,
    /// Receiver: numbered asks made so far (names the next).
    asked: u64,
    /// Receiver: when we last answered a DigestTop, per table.
    answered: [Option<Instant>; 2],
    /// Rotates the first bucket served, so bounded rounds take turns.
    rotate: usize,
    /// Sender: the internal digest of each table and when it was
    /// computed, reused for the DigestSubs of the next [`Self::min_gap`]
    /// (one pass, not one per message: DigestSubs alternating between
    /// the tables cost a pass each, 2.2 s for 120 of them with 100 000
    /// entries).
    memo: [Option<(Instant, Digest)>; 2],
    /// Sender: per table, whether the internal cache stands for the
    /// kernel's (see [`AntiEntropy::set_in_sync`]).
    in_sync: [bool; 2],
    counters: Counters,
}

impl AntiEntropy {
    /// The first DigestTop goes out one period after `now` (the initial
    /// sync has had time to finish).
    pub fn new(cfg: Config, now: Instant) -> AntiEntropy {
        AntiEntropy {
            cfg,
            next: now + cfg.period,
            leaves_used: 0,
            pending: prune::Pending::default(),
            repairs: repair::Repairs::default(),
            asks: asks::Asks::default(),
            asked: 0,
            answered: [None; 2],
            rotate: 0,
            memo: [None, None],
            in_sync: [true; 2],
            counters: Counters::default(),
        }
    }

    /// Sender: whether `table` of the internal cache stands for the
    /// kernel's. Not once `-f` flushed it, until a resync with the kernel
    /// refilled it: its digest would read every entry the peer holds as
    /// gone, and the Prunes answering would delete flows that live on
    /// (conntrackd's peer keeps them). Meanwhile no DigestTop goes for it
    /// and its DigestSubs are ignored (counted); the repairs noted before
    /// go too (the next period notes them again).
    pub fn set_in_sync(&mut self, table: Table, in_sync: bool) {
        if self.in_sync[table.index()] == in_sync {
            return;
        }
        self.in_sync[table.index()] = in_sync;
        if !in_sync {
            self.repairs = repair::Repairs::default();
            self.memo[table.index()] = None;
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When [`AntiEntropy::on_timer`] must run next: the period, or
    /// sooner when accepted Prunes wait.
    pub fn poll_at(&self) -> Instant {
        [self.pending.since(), self.repairs.since()]
            .into_iter()
            .flatten()
            .map(|t| t + BATCH_DELAY)
            .fold(self.next, Instant::min)
    }

    /// Runs what is due at `now`: the pending Prunes (their victims in
    /// `prune`), and at the period a DigestTop per table about
    /// `internal` (in `send`), when the budgets start again.
    pub fn on_timer(
        &mut self,
        now: Instant,
        internal: &dyn Tables,
        external: &dyn Tables,
    ) -> Reaction {
        let mut r = Reaction::default();
        if self.pending.since().is_some_and(|t| now >= t + BATCH_DELAY) {
            r.prune = self.flush(external);
        }
        if self.repairs.since().is_some_and(|t| now >= t + BATCH_DELAY) {
            let rep = self.repairs.flush(internal);
            self.counters.entries_resent += rep.resend_keys.len() as u64;
            r.resend_keys = rep.resend_keys;
            r.send = rep.send;
        }
        if now < self.next {
            return r;
        }
        self.next = now + self.cfg.period;
        self.leaves_used = 0;
        self.memo = [None, None];
        self.counters.rounds += 1;
        let in_sync = self.in_sync;
        r.send
            .extend(Table::ALL.iter().filter(|t| in_sync[t.index()]).map(
                |t| Msg::DigestTop {
                    table: *t,
                    sums: digest(internal, *t).top(),
                },
            ));
        r
    }

    fn flush(&mut self, external: &dyn Tables) -> Vec<Key> {
        let victims = self.pending.flush(external);
        self.counters.entries_pruned += victims.len() as u64;
        victims
    }

    /// A message from the peer. Digest messages are acted on; any other
    /// message is none of ours (an empty reaction).
    pub fn on_msg(
        &mut self,
        now: Instant,
        msg: &Msg,
        internal: &dyn Tables,
        external: &dyn Tables,
    ) -> Reaction {
        match msg {
            Msg::DigestTop { table, sums } => {
                self.top(now, *table, sums, external)
            }
            Msg::DigestSub {
                table,
                bucket,
                sums,
            } => self.sub(now, *table, *bucket, sums, ask_id(sums), internal),
            // Answered naming the ask itself.
            Msg::DigestSubFor {
                ask,
                table,
                bucket,
                sums,
            } => self.sub(now, *table, *bucket, sums, *ask, internal),
            // One copy of the keep list, as the pending set holds it.
            Msg::Prune { .. } | Msg::PruneFor { .. } => match msg.as_prune() {
                Some(p) => self.prune(now, p, external),
                None => Reaction::default(),
            },
            _ => Reaction::default(),
        }
    }

    /// How long one table's digest serves: a flood of digest messages
    /// costs a pass per table per this, not one per message. A peer with
    /// a shorter period than ours is still answered.
    fn min_gap(&self) -> Duration {
        self.cfg.period.min(Duration::from_secs(2)) / 2
    }

    // ===== receiver =====

    fn top(
        &mut self,
        now: Instant,
        table: Table,
        theirs: &crate::wire::Sums,
        external: &dyn Tables,
    ) -> Reaction {
        // A flood of DigestTops must not cost a cache pass each.
        if let Some(at) = self.answered[table.index()] {
            if now.since(at) < self.min_gap() && now >= at {
                self.counters.ignored += 1;
                return Reaction::default();
            }
        }
        self.answered[table.index()] = Some(now);
        let ours = digest(external, table);
        let top = ours.top();
        self.counters.buckets_compared += FANOUT as u64;
        let diff: Vec<u8> = differing(&top, theirs, self.rotate).collect();
        self.rotate = (self.rotate + self.cfg.max_buckets) % FANOUT;
        if diff.len() > self.cfg.max_buckets {
            self.counters.cut_short += 1;
        }
        let mut r = Reaction::default();
        for b in diff.into_iter().take(self.cfg.max_buckets) {
            self.counters.buckets_differing += 1;
            let sums = ours.subs(b);
            let ask = numbered_ask(self.cfg.seed, self.asked);
            self.asked = self.asked.wrapping_add(1);
            // Sent plain to a peer that cannot read the name
            // (`Engine::send_digest`): it answers naming the sums.
            self.asks.note(table, b, (ask, ask_id(&sums)), now);
            r.send.push(Msg::DigestSubFor {
                ask,
                table,
                bucket: b,
                sums,
            });
        }
        r
    }

    /// A Prune (`ask` None) or a PruneFor: accepted for a bucket asked
    /// within a period, its victims spared if written since that ask (the
    /// one it names, or for a plain Prune the latest).
    fn prune(
        &mut self,
        now: Instant,
        p: crate::wire::Prune,
        external: &dyn Tables,
    ) -> Reaction {
        let (table, bucket, sub) = (p.table, p.bucket, p.sub);
        let in_range =
            usize::from(bucket) < FANOUT && usize::from(sub) < FANOUT;
        let accepted =
            |at: &Instant| now >= *at && now.since(*at) <= self.cfg.period;
        let at = match p.ask {
            _ if !in_range => None,
            Some(id) => {
                self.asks.named(table, bucket, id).filter(accepted).min()
            }
            None => self.asks.latest(table, bucket).filter(accepted),
        };
        let Some(at) = at else {
            self.counters.ignored += 1;
            return Reaction::default();
        };
        self.pending
            .add(now, table, (bucket, sub), p.lo, p.hi, p.keep.0, at);
        // Bounded memory: a full set is applied at once.
        let mut r = Reaction::default();
        if self.pending.is_full() {
            self.counters.cut_short += 1;
            r.prune = self.flush(external);
        }
        r
    }

    // ===== sender =====

    fn sub(
        &mut self,
        now: Instant,
        table: Table,
        bucket: u8,
        theirs: &crate::wire::Sums,
        ask: u64,
        internal: &dyn Tables,
    ) -> Reaction {
        if usize::from(bucket) >= FANOUT || !self.in_sync[table.index()] {
            self.counters.ignored += 1;
            return Reaction::default();
        }
        let (at, ours) = match self.memo[table.index()].take() {
            Some((at, d)) if now >= at && now.since(at) < self.min_gap() => {
                (at, d)
            }
            _ => (now, digest(internal, table)),
        };
        let mine = ours.subs(bucket);
        self.memo[table.index()] = Some((at, ours));
        let mut leaves: Vec<u8> = Vec::new();
        for s in differing(&mine, theirs, 0) {
            if self.leaves_used >= self.cfg.max_leaves {
                self.counters.cut_short += 1;
                break;
            }
            self.leaves_used += 1;
            leaves.push(s);
        }
        self.counters.leaves_repaired += leaves.len() as u64;
        for s in leaves {
            self.repairs.add(now, table, (bucket, s), ask);
        }
        Reaction::default()
    }
}

/// The digest of one table of `tables`.
pub fn digest(tables: &dyn Tables, table: Table) -> Digest {
    let mut d = Digest::default();
    tables.each(table, &mut |e| d.add(e.key(), e.bytes));
    d
}

/// The engine's key for a stored key encoding (None if it does not
/// decode: such an entry is skipped, never acted on).
pub fn decode_key(table: Table, key: &[u8]) -> Option<Key> {
    match table {
        Table::Ct => postcard::from_bytes::<CtKey>(key).ok().map(Key::Ct),
        Table::Exp => postcard::from_bytes::<ExpKey>(key)
            .ok()
            .map(|k| Key::Exp(Box::new(k))),
    }
}

#[cfg(test)]
mod test;
#[cfg(test)]
mod test_delayed;
#[cfg(test)]
mod test_flood;
