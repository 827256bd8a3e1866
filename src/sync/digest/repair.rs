//! The sender's chosen leaves, repaired together in one pass over the
//! internal cache: a round's DigestSubs arrive within milliseconds, and a
//! pass per message would cost K passes.

use std::collections::HashMap;

use super::{
    Reaction, Table, Tables, decode_key, key_hash, leaf_of, prune_parts,
};
use crate::time::Instant;
use crate::wire::{FANOUT, KEEP_MAX, KeyHashes, Msg};

/// Leaves awaiting repair: one bit per leaf, per table.
#[derive(Debug, Clone)]
pub(super) struct Repairs {
    /// `[table][bucket]`, bit `sub`.
    leaves: [[u64; FANOUT]; 2],
    /// `[table][bucket]`: the id of the DigestSub that asked (its
    /// Prunes name it; the latest when several asked).
    asks: [[u64; FANOUT]; 2],
    since: Option<Instant>,
}

// By hand: std derives Default for arrays of at most 32 elements.
impl Default for Repairs {
    fn default() -> Self {
        Repairs {
            leaves: [[0; FANOUT]; 2],
            asks: [[0; FANOUT]; 2],
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
        self.asks[table.index()][b] = ask;
        self.since.get_or_insert(now);
    }

    /// The keys of every pending leaf (to resend) and a PruneFor per leaf
    /// (split by range when long; a leaf S holds nothing of gets one with
    /// an empty keep list). Empties the set.
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
                    for (lo, hi, part) in prune_parts(bucket, s, &k, KEEP_MAX) {
                        r.send.push(Msg::PruneFor {
                            ask: asks[table.index()][b],
                            table,
                            bucket,
                            sub: s,
                            lo,
                            hi,
                            keep: KeyHashes(part),
                        });
                    }
                }
            }
        }
        r
    }
}
