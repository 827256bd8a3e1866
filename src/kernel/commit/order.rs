//! The order a commit creates entries in ([`Plan`]): every master
//! before the RELATED conntracks that name it, at any depth (cut at
//! [`MAX_CHAIN`]), expectations after their stage's conntracks, and with
//! [`plan_active_first`] a first stage of what matters first (the
//! expectations, their masters' chains, the [`FIRST_STAGE`] most recently
//! active conntracks), then the idle rest. Entries are prepared by the
//! rules of `super` on the way in, and moved once, by a permutation
//! applied in place.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};

use super::{CommitRules, prepare_ct, prepare_exp, prepare_in_place};
use crate::model::{Conntrack, Expect, Tuple};

/// Everything one commit creates, in the order the kernel needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Masters first, then RELATED entries (within each stage).
    pub cts: Vec<Conntrack>,
    /// Created after the conntracks of their stage.
    pub exps: Vec<Expect>,
    /// How many of `cts` and of `exps` form the first stage, created
    /// before the rest (`(0, 0)`: one stage).
    pub first: (usize, usize),
}

impl Plan {
    /// The stages in commit order: `(conntracks, expectations)` each.
    pub fn stages(&self) -> [(&[Conntrack], &[Expect]); 2] {
        let (c, x) = self.first;
        let (c, x) = (c.min(self.cts.len()), x.min(self.exps.len()));
        [
            (&self.cts[..c], &self.exps[..x]),
            (&self.cts[c..], &self.exps[x..]),
        ]
    }
}

/// Conntracks in a commit's first stage besides the expectations'
/// masters: one kernel batch of the most recently active.
pub const FIRST_STAGE: usize = 256;

/// Longest chain of masters followed: H.323's is two links (RTP flow →
/// H.245 → Q.931). A longer one, or a cycle (only a corrupt peer's), is
/// cut there: its order then no longer matters to the kernel's success.
pub const MAX_CHAIN: u8 = 8;

/// How deep in a chain of masters each of `cts` is, among them: 0 without
/// a master, else one more than its master (1 when the master is not
/// among `cts`), at most [`MAX_CHAIN`]. Created by increasing depth,
/// every master exists before the entries that name it. RELATED entries
/// are few: only they are looked up.
fn depths<C: Borrow<Conntrack>>(cts: &[C]) -> Vec<u8> {
    let related: HashMap<Tuple, usize> = cts
        .iter()
        .enumerate()
        .map(|(i, c)| (i, Borrow::<Conntrack>::borrow(c)))
        .filter(|(_, c)| c.master.is_some())
        .map(|(i, c)| (c.orig, i))
        .collect();
    cts.iter()
        .map(|c| {
            let (mut depth, mut cur) = (0, c.borrow());
            while let Some(m) = cur.master {
                depth += 1;
                match related.get(&m) {
                    Some(&i) if depth < MAX_CHAIN => cur = cts[i].borrow(),
                    _ => break,
                }
            }
            depth
        })
        .collect()
}

/// `cts` with every master before what names it ([`depths`]), each
/// depth keeping its order.
fn masters_first<C: Borrow<Conntrack>>(cts: Vec<C>) -> Vec<C> {
    if cts.iter().all(|c| c.borrow().master.is_none()) {
        return cts;
    }
    let depth = depths(&cts);
    let mut order: Vec<u32> = (0..cts.len() as u32).collect();
    order.sort_by_key(|&i| depth[i as usize]);
    let mut cts = cts;
    permute(&mut cts, &mut order);
    cts
}

/// The one entry point the caches use: entries with their age in the
/// cache (seconds), prepared and ordered for the kernel.
pub fn plan<C: Borrow<Conntrack>, X: Borrow<Expect>>(
    cts: impl IntoIterator<Item = (C, u32)>,
    exps: impl IntoIterator<Item = (X, u32)>,
    rules: &CommitRules,
) -> Plan {
    let cts = cts
        .into_iter()
        .map(|(c, age)| prepare_ct(c.borrow(), age, rules))
        .collect();
    Plan {
        cts: masters_first(cts),
        exps: exps
            .into_iter()
            .map(|(x, age)| prepare_exp(x.borrow(), age, rules))
            .collect(),
        first: (0, 0),
    }
}

/// Like [`plan`], with what matters first: `cts` come with their age and
/// a recency (larger: more recently active, e.g. the last update's
/// time). The first stage holds every expectation, their masters and the
/// [`FIRST_STAGE`] most recent conntracks (with the masters of the
/// RELATED ones among them, and their masters' own, up each chain); the
/// second the rest, most recent first. Within each stage every master
/// precedes what names it ([`depths`]), and expectations follow their
/// stage's conntracks.
pub fn plan_active_first<X: Borrow<Expect>>(
    cts: impl IntoIterator<Item = (Conntrack, u32, u64)>,
    exps: impl IntoIterator<Item = (X, u32)>,
    rules: &CommitRules,
) -> Plan {
    // 100 000 entries of ~300 bytes: each is prepared where it lies and
    // moved once, by a permutation applied in place; only small (key,
    // index) pairs are sorted, and no second vector of entries is made
    // (its pages would be most of a commit's memory and of its time).
    let cts = cts.into_iter();
    let hint = cts.size_hint();
    let mut prepared: Vec<Conntrack> =
        Vec::with_capacity(hint.1.unwrap_or(hint.0));
    let mut recency: Vec<u64> = Vec::with_capacity(prepared.capacity());
    for (mut c, age, r) in cts {
        prepare_in_place(&mut c, age, rules);
        prepared.push(c);
        recency.push(r);
    }
    let n = prepared.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    // Stable: equally recent entries keep the cache's order.
    order.sort_by_key(|&i| std::cmp::Reverse(recency[i as usize]));
    drop(recency);
    let exps: Vec<Expect> = exps
        .into_iter()
        .map(|(x, age)| prepare_exp(x.borrow(), age, rules))
        .collect();
    // Masters the first stage needs: the expectations', and those of the
    // RELATED entries in it. A small set; one pass marks them.
    let mut needed: HashSet<_> = exps
        .iter()
        .map(|x| x.master)
        .chain(
            order
                .iter()
                .take(FIRST_STAGE)
                .filter_map(|&i| prepared[i as usize].master),
        )
        .collect();
    // A needed master may be RELATED itself (H.323's H.245 channel): its
    // own master is needed too, up the chain. RELATED entries are few:
    // only they are looked up.
    let depth = depths(&prepared);
    if depth.iter().any(|&d| d > 0) {
        let master_of: HashMap<Tuple, Tuple> = prepared
            .iter()
            .filter_map(|c| c.master.map(|m| (c.orig, m)))
            .collect();
        let mut next: Vec<Tuple> = needed.iter().copied().collect();
        for _ in 0..MAX_CHAIN {
            next = next
                .iter()
                .filter_map(|t| master_of.get(t).copied())
                .filter(|m| needed.insert(*m))
                .collect();
            if next.is_empty() {
                break;
            }
        }
    }
    // Class: stage, then depth in the chains of masters; a stable sort
    // keeps the recency order within each.
    let mut classed: Vec<((bool, u8), u32)> = order
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let c = &prepared[i as usize];
            let first = pos < FIRST_STAGE || needed.contains(&c.orig);
            ((!first, depth[i as usize]), i)
        })
        .collect();
    drop(order);
    drop(depth);
    classed.sort_by_key(|(class, _)| *class);
    let head = classed.iter().filter(|((later, _), _)| !later).count();
    let mut perm: Vec<u32> = classed.into_iter().map(|(_, i)| i).collect();
    permute(&mut prepared, &mut perm);
    let x = exps.len();
    Plan {
        cts: prepared,
        exps,
        first: (head, x),
    }
}

/// A plan of conntracks already prepared and in the order wanted (a
/// large commit's later batches, most recent first): only the masters
/// move before what names them, each depth keeping its order. RELATED
/// flows are few (FTP, SIP data channels), so a batch without one is
/// taken as it is.
pub fn plan_in_order(cts: Vec<Conntrack>) -> Plan {
    Plan {
        cts: masters_first(cts),
        exps: Vec::new(),
        first: (0, 0),
    }
}

/// Reorders `v` so that `v[k]` becomes the old `v[perm[k]]`, by swaps
/// along the permutation's cycles (`perm` is used up).
fn permute<T>(v: &mut [T], perm: &mut [u32]) {
    const DONE: u32 = u32::MAX;
    for start in 0..v.len() {
        let mut cur = start;
        while perm[cur] != DONE {
            let src = perm[cur] as usize;
            perm[cur] = DONE;
            if src == start {
                break;
            }
            v.swap(cur, src);
            cur = src;
        }
    }
}

/// Commit order of conntracks: masters before the RELATED entries that
/// name them, at any depth, so the kernel can link each child to its
/// master.
pub fn commit_order<'a>(
    cts: impl IntoIterator<Item = &'a Conntrack>,
) -> Vec<&'a Conntrack> {
    masters_first(cts.into_iter().collect())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::kernel::commit::test::ct;
    use crate::model::{L4, status};

    #[test]
    fn plan_prepares_and_orders() {
        let a = ct(true);
        let b = ct(false);
        let p = plan(
            [(&a, 10), (&b, 20)],
            [] as [(Expect, u32); 0],
            &CommitRules::default(),
        );
        assert_eq!(p.cts.len(), 2);
        assert!(p.cts[0].master.is_none() && p.cts[1].master.is_some());
        assert_eq!((p.cts[0].timeout, p.cts[1].timeout), (Some(80), Some(90)));
        assert!(p.cts.iter().all(|c| c.status & status::CONFIRMED != 0));
    }

    /// A master numbered `port`, for the recency tests.
    fn idle(port: u16) -> Conntrack {
        let mut c = ct(false);
        c.orig.l4 = L4::Ports { src: port, dst: 80 };
        c
    }

    fn port(c: &Conntrack) -> u16 {
        match c.orig.l4 {
            L4::Ports { src, .. } => src,
            _ => 0,
        }
    }

    #[test]
    fn active_flows_expectations_and_their_masters_come_first() {
        let rules = CommitRules::default();
        // 2000 idle masters, recency = their port (older = smaller).
        let mut cts: Vec<(Conntrack, u32, u64)> =
            (1..=2000).map(|p| (idle(p), 60, u64::from(p))).collect();
        // The active flow, updated last.
        cts.push((idle(9000), 0, 1_000_000));
        // An active RELATED flow (FTP data) whose master (port 3) is idle.
        let mut data = idle(9001);
        data.master = Some(idle(3).orig);
        cts.push((data, 0, 999_999));
        // An expectation whose master (port 5) is idle.
        let x = Expect {
            master: idle(5).orig,
            tuple: idle(9002).orig,
            mask: idle(9002).orig,
            timeout: Some(300),
            zone: 0,
            flags: 0,
            class: 0,
            helper: None,
            nat: None,
            func: None,
            id: 0,
        };
        let p = plan_active_first(cts, [(x, 10)], &rules);
        assert_eq!(p.cts.len(), 2002);
        // One batch of the most recent, plus the two idle masters.
        assert_eq!(p.first, (FIRST_STAGE + 2, 1));
        let [(c1, x1), (c2, x2)] = p.stages();
        assert_eq!(port(&c1[0]), 9000, "the most recent first");
        assert_eq!(x1.len(), 1);
        assert!(x2.is_empty());
        let pos = |want: u16| c1.iter().position(|c| port(c) == want);
        let (master, related) = (pos(3).unwrap(), pos(9001).unwrap());
        assert!(master < related, "a RELATED entry after its master");
        assert!(
            pos(5).is_some(),
            "the expectation's master is created first"
        );
        // RELATED last in the stage; the idle rest most recent first.
        assert!(c1[..c1.len() - 1].iter().all(|c| c.master.is_none()));
        let rest: Vec<u16> = c2.iter().map(port).collect();
        assert_eq!(rest.len(), 2002 - FIRST_STAGE - 2);
        assert!(rest.windows(2).all(|w| w[0] > w[1]), "by recency");
        assert!(!rest.contains(&3) && !rest.contains(&5));
        // Every entry once, prepared.
        let mut all: Vec<u16> = p.cts.iter().map(port).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 2002);
        assert!(p.cts.iter().all(|c| c.status & status::CONFIRMED != 0));
        assert_eq!(p.exps[0].timeout, Some(290));
    }

    #[test]
    fn a_small_table_is_one_first_stage() {
        let cts = (1..=10).map(|p| (idle(p), 0, u64::from(p)));
        let p = plan_active_first(
            cts,
            [] as [(Expect, u32); 0],
            &CommitRules::default(),
        );
        assert_eq!(p.first, (10, 0));
        let ports: Vec<u16> = p.cts.iter().map(port).collect();
        assert_eq!(ports, (1..=10).rev().collect::<Vec<_>>());
        assert!(p.stages()[1].0.is_empty());
    }

    #[test]
    fn permute_moves_every_element_to_its_place() {
        // A permutation with a fixed point, a 2-cycle and a long cycle.
        for perm in [
            vec![0u32, 2, 1, 4, 5, 6, 3],
            (0..1000).map(|i| (i * 7 + 3) % 1000).collect::<Vec<u32>>(),
            vec![],
        ] {
            let old: Vec<u32> = (100..100 + perm.len() as u32).collect();
            let mut v = old.clone();
            permute(&mut v, &mut perm.clone());
            let want: Vec<u32> =
                perm.iter().map(|&p| old[p as usize]).collect();
            assert_eq!(v, want);
        }
    }

    /// A chain: `c` RELATED to `b`, RELATED to `a` (H.323's RTP flow,
    /// H.245 and Q.931 channels), most recent first.
    fn chain() -> [Conntrack; 3] {
        let flow = |port: u16, master: Option<&Conntrack>| {
            let mut c = idle(port);
            c.master = master.map(|m| m.orig);
            c
        };
        let a = flow(1, None);
        let b = flow(2, Some(&a));
        let c = flow(3, Some(&b));
        [c, b, a]
    }

    #[test]
    fn every_master_precedes_what_names_it_at_any_depth() {
        let order: Vec<u16> =
            commit_order(&chain()).into_iter().map(port).collect();
        assert_eq!(order, [1, 2, 3]);
        let cts: Vec<u16> = plan_in_order(chain().to_vec())
            .cts
            .iter()
            .map(port)
            .collect();
        assert_eq!(cts, [1, 2, 3]);
        let [c, b, a] = chain();
        let cts = [(c, 0, 3), (b, 0, 2), (a, 0, 1)];
        let p = plan_active_first(
            cts,
            Vec::<Expect>::new().into_iter().map(|x| (x, 0)),
            &CommitRules::default(),
        );
        assert_eq!(p.cts.iter().map(port).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_cycle_of_masters_is_cut() {
        let [mut c, b, mut a] = chain();
        a.master = Some(c.orig);
        c.master = Some(b.orig);
        assert_eq!(commit_order(&[c, b, a]).len(), 3);
    }

    #[test]
    fn masters_before_related() {
        let all = [ct(true), ct(false), ct(true), ct(false)];
        let order = commit_order(&all);
        let kinds: Vec<bool> =
            order.iter().map(|c| c.master.is_some()).collect();
        assert_eq!(kinds, [false, false, true, true]);
    }
}
