//! The receiver's recent DigestSubs, per table and top bucket: when each
//! was sent and the ids a `PruneFor` names it by, so that a Prune spares
//! what was written since the ask it answers, however late it comes
//! within a period.
//!
//! Each ask has two names. Its own, unique (`DigestSubFor` carries it,
//! and a peer that reads that answers with it): a Prune naming it
//! answers that ask alone, and is accepted while the ask is at most a
//! period old; a Prune delayed longer is ignored, and the next period
//! repairs. And the hash of its sums (`ask_id`), which an older peer,
//! sent the plain DigestSub, answers with: equal sums give equal hashes,
//! so a bucket that keeps differing the same way (a stale entry) is
//! asked again under one hash, and a Prune naming it may answer any of
//! those asks. It is accepted for the asks with that hash at most a
//! period old, and spares what was written since the earliest of them:
//! between equal asks nothing in the bucket changed, so that spares
//! nothing stale, and a stale entry is pruned within a period or two.
//! (Sparing from an ask older than a period, which a Prune delayed that
//! long might answer, kept an entry that was written again with the same
//! bytes from ever being pruned while the bucket's sums stayed put: the
//! anti_entropy fuzz target's finding. With an older peer, that delayed
//! Prune is checked against the later ask: an entry dropped and written
//! again with the same bytes in between can be deleted until the next
//! period.)
//!
//! A plain Prune (from a build without `PruneFor`) names no ask and is
//! checked against the latest one for its bucket, as before: a Prune
//! delayed past the next ask for its bucket could then delete an entry
//! written in between.

use super::Table;
use crate::time::Instant;
use crate::wire::FANOUT;

/// DigestSubs remembered per bucket. A bucket is asked at most once per
/// DigestTop answered (at most twice a second): with equal periods the
/// last four asks span minutes, with a peer whose period is a second or
/// two only seconds. A Prune naming an id no longer remembered is ignored
/// (and counted), never matched to another; the next period repairs.
pub const ASKS_KEPT: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Ask {
    /// Its own name, unique.
    id: u64,
    /// The hash of its sums (`ask_id`).
    sums_id: u64,
    at: Instant,
}

/// Newest first, per (table, bucket).
#[derive(Debug, Clone)]
pub(super) struct Asks {
    recent: Box<[[Option<Ask>; ASKS_KEPT]]>,
}

impl Default for Asks {
    fn default() -> Self {
        Asks {
            recent: vec![[None; ASKS_KEPT]; 2 * FANOUT].into_boxed_slice(),
        }
    }
}

fn slot(table: Table, bucket: u8) -> usize {
    table.index() * FANOUT + usize::from(bucket) % FANOUT
}

impl Asks {
    /// A DigestSub for `bucket` went out at `at`, named `id`, its sums
    /// hashing to `sums_id`.
    pub(super) fn note(
        &mut self,
        table: Table,
        bucket: u8,
        (id, sums_id): (u64, u64),
        at: Instant,
    ) {
        let r = &mut self.recent[slot(table, bucket)];
        r.rotate_right(1);
        r[0] = Some(Ask { id, sums_id, at });
    }

    /// When the latest DigestSub for `bucket` went out.
    pub(super) fn latest(&self, table: Table, bucket: u8) -> Option<Instant> {
        self.recent[slot(table, bucket)][0].map(|a| a.at)
    }

    /// When the DigestSubs named `id` went out: the one whose own name it
    /// is, or those whose sums hash to it (the caller takes the earliest
    /// it still accepts).
    pub(super) fn named(
        &self,
        table: Table,
        bucket: u8,
        id: u64,
    ) -> impl Iterator<Item = Instant> + '_ {
        self.recent[slot(table, bucket)]
            .iter()
            .flatten()
            .filter(move |a| a.id == id || a.sums_id == id)
            .map(|a| a.at)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    #[test]
    fn an_ask_is_found_by_its_id_until_newer_ones_push_it_out() {
        let mut a = Asks::default();
        let named = |a: &Asks, table, bucket, id| {
            a.named(table, bucket, id).collect::<Vec<_>>()
        };
        a.note(Table::Ct, 7, (1, 100), t(1));
        a.note(Table::Ct, 7, (2, 200), t(2));
        a.note(Table::Exp, 7, (3, 300), t(3));
        assert_eq!(a.latest(Table::Ct, 7), Some(t(2)));
        assert_eq!(named(&a, Table::Ct, 7, 100), [t(1)]);
        assert_eq!(named(&a, Table::Ct, 7, 1), [t(1)], "by its own name");
        assert_eq!(named(&a, Table::Ct, 7, 300), [], "another table");
        assert_eq!(named(&a, Table::Ct, 8, 100), [], "another bucket");
        // Equal sums, equal hashes: both asks; each its own name.
        a.note(Table::Ct, 7, (4, 100), t(4));
        assert_eq!(named(&a, Table::Ct, 7, 100), [t(4), t(1)]);
        assert_eq!(named(&a, Table::Ct, 7, 1), [t(1)]);
        assert_eq!(named(&a, Table::Ct, 7, 4), [t(4)]);
        for i in 0..ASKS_KEPT as u64 - 1 {
            a.note(Table::Ct, 7, (10 + i, 1000 + i), t(10 + i));
        }
        assert_eq!(named(&a, Table::Ct, 7, 200), [], "forgotten");
        assert_eq!(named(&a, Table::Ct, 7, 1), [], "forgotten");
        assert_eq!(named(&a, Table::Ct, 7, 100), [t(4)]);
    }
}
