//! What a flood of digest messages costs the sender: passes over its
//! internal cache, at most one per table per half period (capped at a
//! second), however the messages alternate between the tables.

use std::cell::Cell;

use super::test::{Mem, big, exp, put_exp};
use super::*;
use crate::wire::Sums;

/// A cache that counts the passes over it.
struct Passes<'a> {
    mem: &'a Mem,
    passes: Cell<usize>,
}

impl Tables for Passes<'_> {
    fn each(&self, table: Table, f: &mut dyn FnMut(RawEntry<'_>)) {
        self.passes.set(self.passes.get() + 1);
        self.mem.each(table, f)
    }
}

#[test]
fn digest_subs_alternating_tables_cost_a_pass_per_table() {
    let mut mem = big(2_000);
    for i in 0..50 {
        put_exp(&mut mem, &exp(i, 0), Instant::from_millis(0));
    }
    let internal = Passes {
        mem: &mem,
        passes: Cell::new(0),
    };
    let none = Mem::default();
    let mut s = AntiEntropy::new(Config::default(), Instant::from_millis(0));
    let sub = |table, bucket| Msg::DigestSub {
        table,
        bucket,
        sums: Sums([0; 64]),
    };
    let t0 = Instant::from_millis(5);
    for i in 0..120u8 {
        let table = if i % 2 == 0 { Table::Ct } else { Table::Exp };
        let now = t0 + Duration::from_millis(u64::from(i));
        s.on_msg(now, &sub(table, i % 64), &internal, &none);
    }
    assert_eq!(internal.passes.get(), 2);
    // A second later the digests are computed again.
    let later = t0 + Duration::from_millis(1200);
    s.on_msg(later, &sub(Table::Ct, 1), &internal, &none);
    assert_eq!(internal.passes.get(), 3);
}
