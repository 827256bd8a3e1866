//! The sender's chosen leaves, repaired together in one pass over the
//! internal cache: a round's DigestSubs arrive within milliseconds, and a
//! pass per message would cost K passes.
//!
//! A leaf's Prune names the DigestSub that asked. Several DigestSubs may
//! ask for one bucket before the pass (receivers on one multicast link
//! answering the same DigestTop, or a DigestTop answered twice): the
//! bucket's leaves get a Prune naming each of them (at most
//! [`ASKS_KEPT`], the latest), so every asker finds its own. Naming an
//! ask that did not note a particular leaf is sound: the keep list is
//! this node's state at the pass, after every ask it names was made.

use std::collections::HashMap;

use super::{
    ASKS_KEPT, Reaction, Table, Tables, decode_key, key_hash, leaf_of,
    prune_parts,
};
use crate::time::Instant;
use crate::wire::{FANOUT, KEEP_MAX, KeyHashes, Msg};

/// Leaves awaiting repair: one bit per leaf, per table.
#[derive(Debug, Clone)]
pub(super) struct Repairs {
    /// `[table][bucket]`, bit `sub`.
    leaves: [[u64; FANOUT]; 2],
    /// Per (table, bucket) with leaves noted: the ids of the DigestSubs
    /// that noted them, distinct, oldest first, at most [`ASKS_KEPT`].
    asks: HashMap<(Table, u8), Vec<u64>>,
    since: Option<Instant>,
}

// By hand: std derives Default for arrays of at most 32 elements.
impl Default for Repairs {
    fn default() -> Self {
        Repairs {
            leaves: [[0; FANOUT]; 2],
            asks: HashMap::new(),
            since: None,
        }
    }
}

impl Repairs {
    pub(super) fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Leaf (`bucket`, `sub`) differs, as the DigestSub named `ask` said.
    pub(super) fn add(
        &mut self,
        now: Instant,
        table: Table,
        (bucket, sub): (u8, u8),
        ask: u64,
    ) {
        let b = usize::from(bucket) % FANOUT;
        self.leaves[table.index()][b] |= 1 << (sub % 64);
        let ids = self.asks.entry((table, b as u8)).or_default();
        if !ids.contains(&ask) {
            if ids.len() == ASKS_KEPT {
                ids.remove(0);
            }
            ids.push(ask);
        }
        self.since.get_or_insert(now);
    }

    /// The keys of every pending leaf (to resend) and a PruneFor per leaf
    /// and ask (split by range when long; a leaf S holds nothing of gets
    /// one with an empty keep list). Empties the set.
    pub(super) fn flush(&mut self, internal: &dyn Tables) -> Reaction {
        let Repairs { leaves, asks, .. } = std::mem::take(self);
        let mut r = Reaction::default();
        for table in Table::ALL {
            let bits = &leaves[table.index()];
            if bits.iter().all(|w| *w == 0) {
                continue;
            }
            let mut keep: HashMap<(u8, u8), Vec<u64>> = HashMap::new();
            internal.each(table, &mut |e| {
                let kh = key_hash(e.key());
                let (b, s) = leaf_of(kh);
                if bits[usize::from(b)] & (1 << s) == 0 {
                    return;
                }
                if let Some(k) = decode_key(table, e.key()) {
                    keep.entry((b, s)).or_default().push(kh);
                    r.resend_keys.push(k);
                }
            });
            for (b, word) in bits.iter().enumerate() {
                for s in (0..64u8).filter(|s| word & (1 << s) != 0) {
                    let bucket = b as u8;
                    let mut k = keep.remove(&(bucket, s)).unwrap_or_default();
                    k.sort_unstable();
                    let parts = prune_parts(bucket, s, &k, KEEP_MAX);
                    let ids = asks.get(&(table, bucket)).map_or(&[][..], |v| v);
                    for &ask in ids {
                        for (lo, hi, part) in &parts {
                            r.send.push(Msg::PruneFor {
                                ask,
                                table,
                                bucket,
                                sub: s,
                                lo: *lo,
                                hi: *hi,
                                keep: KeyHashes(part.clone()),
                            });
                        }
                    }
                }
            }
        }
        r
    }
}
