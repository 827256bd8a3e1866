//! The receiver's pending Prunes, applied in one pass over the external
//! cache instead of one pass per message (a large repair brings hundreds
//! of Prunes within milliseconds).

use std::collections::HashMap;

use super::{RawEntry, Table, Tables, decode_key, key_hash, leaf_of};
use crate::sync::Key;
use crate::time::Instant;

/// Key hashes held while waiting for the pass; past this the pass runs
/// at once (memory stays bounded whatever a peer sends).
pub const PENDING_MAX_HASHES: usize = 65_536;

/// One accepted Prune.
#[derive(Debug, Clone)]
struct Part {
    lo: u64,
    hi: u64,
    /// Sorted.
    keep: Vec<u64>,
    /// When we asked for it: entries written later are spared.
    asked: Instant,
}

/// Accepted Prunes by (table, bucket, leaf).
#[derive(Debug, Clone, Default)]
pub(super) struct Pending {
    parts: HashMap<(Table, u8, u8), Vec<Part>>,
    hashes: usize,
    /// When the first of them arrived.
    since: Option<Instant>,
}

impl Pending {
    pub(super) fn since(&self) -> Option<Instant> {
        self.since
    }

    pub(super) fn is_full(&self) -> bool {
        self.hashes >= PENDING_MAX_HASHES
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn add(
        &mut self,
        now: Instant,
        table: Table,
        leaf: (u8, u8),
        lo: u64,
        hi: u64,
        mut keep: Vec<u64>,
        asked: Instant,
    ) {
        keep.sort_unstable();
        self.hashes += keep.len() + 1;
        self.since.get_or_insert(now);
        self.parts
            .entry((table, leaf.0, leaf.1))
            .or_default()
            .push(Part {
                lo,
                hi,
                keep,
                asked,
            });
    }

    /// The external entries the pending Prunes condemn: in a pruned leaf,
    /// covered by one of its parts, kept by none of those, and not
    /// written since we asked. Empties the set.
    pub(super) fn flush(&mut self, external: &dyn Tables) -> Vec<Key> {
        let parts = std::mem::take(&mut self.parts);
        *self = Pending::default();
        let mut out = Vec::new();
        for table in Table::ALL {
            if !parts.keys().any(|(t, _, _)| *t == table) {
                continue;
            }
            external.each(table, &mut |e: RawEntry<'_>| {
                let kh = key_hash(e.key());
                let (b, s) = leaf_of(kh);
                let Some(ps) = parts.get(&(table, b, s)) else {
                    return;
                };
                let covering =
                    ps.iter().filter(|p| (p.lo..=p.hi).contains(&kh));
                let mut covered = false;
                for p in covering {
                    if p.keep.binary_search(&kh).is_ok() || e.updated > p.asked
                    {
                        return;
                    }
                    covered = true;
                }
                if covered {
                    if let Some(k) = decode_key(table, e.key()) {
                        out.push(k);
                    }
                }
            });
        }
        out
    }
}
