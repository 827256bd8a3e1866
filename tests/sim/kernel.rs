//! A simulated kernel conntrack table: conntracks keyed by original
//! tuple + zone, expectations by master/tuple/mask/zone, with the rules
//! ctnetlink enforces that matter to a commit (EEXIST on a create of an
//! existing entry, ENOENT for an expectation or RELATED conntrack whose
//! master is missing, a master's expectations die with it). Every change
//! returns the events the kernel would multicast, tagged with the
//! [`Origin`] of the socket that caused it.
//!
//! It also runs the node's [`Work`] exactly as the daemon's kernel worker
//! does (src/daemon/worker.rs): dumps in parts, flushes through the
//! Filter, commits with per-entry errnos, injections in order.
//!
//! Iteration is in creation order, so everything is deterministic.

use std::collections::{BTreeMap, HashMap};

use ctsyncd::config::Config;
use ctsyncd::kernel::codec::{Kind, Message, Object};
use ctsyncd::kernel::commit::{self, CommitRules};
use ctsyncd::kernel::origin::Origin;
use ctsyncd::model::{Conntrack, Expect};
use ctsyncd::node::{Done, Injection, Work};
use ctsyncd::sync::Apply;
use ctsyncd::wire::{CtKey, ExpKey, ct_key_of, exp_key_of};

pub const EEXIST: i32 = 17;
pub const ENOENT: i32 = 2;

/// One kernel event as the event socket delivers it.
pub type Event = (Message, Origin);

/// Entries in creation order, found by key.
struct Table<K, V> {
    index: HashMap<K, u64>,
    order: BTreeMap<u64, V>,
    next: u64,
}

impl<K: std::hash::Hash + Eq + Copy, V> Table<K, V> {
    fn new() -> Self {
        Table {
            index: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.index.get(k).and_then(|i| self.order.get(i))
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.index.get(k).and_then(|i| self.order.get_mut(i))
    }

    fn insert(&mut self, k: K, v: V) {
        self.next += 1;
        self.index.insert(k, self.next);
        self.order.insert(self.next, v);
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.index.remove(k)?;
        self.order.remove(&i)
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.order.values()
    }
}

pub struct Kernel {
    cts: Table<CtKey, Conntrack>,
    exps: Table<ExpKey, Expect>,
}

fn ev(kind: Kind, object: Object, origin: Origin) -> Event {
    (
        Message {
            kind,
            object,
            port: 0,
            seq: 0,
        },
        origin,
    )
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel::new()
    }
}

impl Kernel {
    pub fn new() -> Kernel {
        Kernel {
            cts: Table::new(),
            exps: Table::new(),
        }
    }

    pub fn conntracks(&self) -> impl Iterator<Item = &Conntrack> {
        self.cts.values()
    }

    pub fn expectations(&self) -> impl Iterator<Item = &Expect> {
        self.exps.values()
    }

    pub fn ct(&self, k: &CtKey) -> Option<&Conntrack> {
        self.cts.get(k)
    }

    pub fn exp(&self, k: &ExpKey) -> Option<&Expect> {
        self.exps.get(k)
    }

    pub fn ct_count(&self) -> usize {
        self.cts.index.len()
    }

    pub fn exp_count(&self) -> usize {
        self.exps.index.len()
    }

    // ===== the table's rules =====

    /// Creates a conntrack (ctnetlink IPCTNL_MSG_CT_NEW with NLM_F_CREATE
    /// | NLM_F_EXCL).
    pub fn create_ct(
        &mut self,
        ct: &Conntrack,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> Result<(), i32> {
        let k = ct_key_of(ct);
        if self.cts.get(&k).is_some() {
            return Err(EEXIST);
        }
        if let Some(m) = ct.master {
            // ctnetlink looks the master up in the same zone.
            let mk = CtKey {
                orig: m,
                zone: ct.zone,
            };
            if self.cts.get(&mk).is_none() {
                return Err(ENOENT);
            }
        }
        let mut c = ct.clone();
        c.counters = None;
        self.cts.insert(k, c.clone());
        events.push(ev(Kind::New, Object::Ct(c), origin));
        Ok(())
    }

    /// Changes an existing conntrack (traffic, or an injected update).
    pub fn update_ct(
        &mut self,
        ct: &Conntrack,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> Result<(), i32> {
        let k = ct_key_of(ct);
        let Some(old) = self.cts.get_mut(&k) else {
            return Err(ENOENT);
        };
        *old = ct.clone();
        events.push(ev(Kind::Update, Object::Ct(ct.clone()), origin));
        Ok(())
    }

    /// Deletes a conntrack and, as the kernel does, its expectations.
    pub fn delete_ct(
        &mut self,
        k: &CtKey,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> Result<(), i32> {
        let ct = self.cts.remove(k).ok_or(ENOENT)?;
        events.push(ev(Kind::Destroy, Object::Ct(ct), origin));
        let orphans: Vec<ExpKey> = self
            .exps
            .index
            .keys()
            .filter(|x| x.master == k.orig && x.zone == k.zone)
            .copied()
            .collect();
        let mut orphans: Vec<(u64, ExpKey)> = orphans
            .into_iter()
            .map(|x| (self.exps.index[&x], x))
            .collect();
        orphans.sort_by_key(|(i, _)| *i);
        for (_, x) in orphans {
            let e = self.exps.remove(&x).expect("indexed");
            events.push(ev(Kind::Destroy, Object::Exp(e), origin));
        }
        Ok(())
    }

    /// Creates an expectation: its master must exist.
    pub fn create_exp(
        &mut self,
        x: &Expect,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> Result<(), i32> {
        let k = exp_key_of(x);
        let master = CtKey {
            orig: x.master,
            zone: x.zone,
        };
        if self.cts.get(&master).is_none() {
            return Err(ENOENT);
        }
        if self.exps.get(&k).is_some() {
            return Err(EEXIST);
        }
        self.exps.insert(k, x.clone());
        events.push(ev(Kind::New, Object::Exp(x.clone()), origin));
        Ok(())
    }

    pub fn delete_exp(
        &mut self,
        k: &ExpKey,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> Result<(), i32> {
        let x = self.exps.remove(k).ok_or(ENOENT)?;
        events.push(ev(Kind::Destroy, Object::Exp(x), origin));
        Ok(())
    }

    // ===== the worker's part =====

    /// Everything a dump returns: conntracks, then expectations.
    pub fn dump(&self, conntracks: bool, expectations: bool) -> Vec<Object> {
        let mut all = Vec::new();
        if conntracks {
            all.extend(self.cts.values().cloned().map(Object::Ct));
        }
        if expectations {
            all.extend(self.exps.values().cloned().map(Object::Exp));
        }
        all
    }

    /// Runs one job as the worker does. A dump's parts (of `part`
    /// entries) are returned in order; the caller delivers them.
    pub fn run(
        &mut self,
        cfg: &Config,
        work: &Work,
        part: usize,
        events: &mut Vec<Event>,
    ) -> Vec<Done> {
        match work {
            Work::Dump {
                conntracks,
                expectations,
            } => {
                let all = self.dump(*conntracks, *expectations);
                if all.is_empty() {
                    return vec![Done::Dumped {
                        objects: Vec::new(),
                        last: true,
                    }];
                }
                let n = all.len().div_ceil(part);
                all.chunks(part)
                    .enumerate()
                    .map(|(i, c)| Done::Dumped {
                        objects: c.to_vec(),
                        last: i + 1 == n,
                    })
                    .collect()
            }
            Work::Flush {
                conntracks,
                expectations,
            } => {
                let mut deleted = 0;
                if *conntracks {
                    let victims: Vec<CtKey> = self
                        .cts
                        .values()
                        .filter(|c| {
                            ctsyncd::filter::conntrack(&cfg.general.filter, c)
                        })
                        .map(ct_key_of)
                        .collect();
                    for k in victims {
                        // An expectation flush below may race; a master
                        // gone already is not an error.
                        if self.delete_ct(&k, Origin::Flush, events).is_ok() {
                            deleted += 1;
                        }
                    }
                }
                if *expectations {
                    let all: Vec<ExpKey> =
                        self.exps.values().map(exp_key_of).collect();
                    for k in all {
                        if self.delete_exp(&k, Origin::Flush, events).is_ok() {
                            deleted += 1;
                        }
                    }
                }
                vec![Done::Flushed(deleted)]
            }
            Work::Commit(plan) => {
                // Stage by stage, as the daemon's worker commits.
                let (mut cts, mut exps) = (Vec::new(), Vec::new());
                for (stage_cts, stage_exps) in plan.stages() {
                    for c in stage_cts {
                        let mut r = self.create_ct(c, Origin::Commit, events);
                        if r == Err(ENOENT) && c.master.is_some() {
                            // The master ended: the worker creates the
                            // RELATED flow without it.
                            let alone = Conntrack {
                                master: None,
                                ..c.clone()
                            };
                            r = self.create_ct(&alone, Origin::Commit, events);
                        }
                        cts.push(errno(r));
                    }
                    for x in stage_exps {
                        exps.push(errno(self.create_exp(
                            x,
                            Origin::Commit,
                            events,
                        )));
                    }
                }
                let failed = cts
                    .iter()
                    .zip(&plan.cts)
                    .filter(|(e, _)| **e != 0)
                    .map(|(&e, c)| (e, Object::Ct(c.clone())))
                    .chain(
                        exps.iter()
                            .zip(&plan.exps)
                            .filter(|(e, _)| **e != 0)
                            .map(|(&e, x)| (e, Object::Exp(x.clone()))),
                    )
                    .collect();
                // The simulated kernel takes no time.
                vec![Done::Committed {
                    cts,
                    exps,
                    failed,
                    took_us: [0; 2],
                    aborted: None,
                }]
            }
            Work::Get { orig, zone } => {
                let k = CtKey {
                    orig: *orig,
                    zone: *zone,
                };
                vec![Done::Dumped {
                    objects: self
                        .ct(&k)
                        .cloned()
                        .map(Object::Ct)
                        .into_iter()
                        .collect(),
                    last: true,
                }]
            }
            Work::Inject(changes) => {
                let sync = cfg.sync.clone().unwrap_or_default();
                let rules = CommitRules {
                    commit_timeout: sync.commit_timeout,
                    tcp_window_tracking: sync.tcp_window_tracking,
                };
                let results = changes
                    .iter()
                    .map(|a| (Injection::of(a), self.inject(a, &rules, events)))
                    .collect();
                vec![Done::Injected(results)]
            }
        }
    }

    /// One injected change, as the worker sends it
    /// (src/daemon/inject.rs): a conntrack the table holds is updated in
    /// place (a NEW that finds it exists too), one it lacks is created; a
    /// delete of a missing entry is not a failure. (This table accepts
    /// every update: the kernel's refusals, which make the worker delete
    /// and re-create, are not modelled.)
    fn inject(
        &mut self,
        a: &Apply,
        rules: &CommitRules,
        events: &mut Vec<Event>,
    ) -> i32 {
        let o = Origin::Inject;
        match a {
            Apply::Ct { ct, new } => {
                let ct = commit::prepare_ct(ct, 0, rules);
                if *new {
                    match self.create_ct(&ct, o, events) {
                        Err(EEXIST) => {}
                        r => return errno(r),
                    }
                }
                match self.update_ct(&ct, o, events) {
                    Err(ENOENT) => errno(self.create_ct(&ct, o, events)),
                    r => errno(r),
                }
            }
            Apply::Exp { exp, .. } => errno(self.create_exp(
                &commit::prepare_exp(exp, 0, rules),
                o,
                events,
            )),
            // As the worker: a delete's ENOENT is passed on, the node
            // counts it done.
            Apply::CtDel(k) => errno(self.delete_ct(k, o, events)),
            Apply::ExpDel(k) => errno(self.delete_exp(k, o, events)),
        }
    }
}

fn errno(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(0)
}
