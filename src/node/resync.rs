//! Resyncs of the internal cache with the kernel's table (start-up,
//! `-R`, an overrun, polling, after a commit, `-B` without internal
//! cache): the dump arrives in parts while events keep coming, and what
//! it did not find is swept at its end.
//!
//! One dump is out at a time. A resync asked for while one runs waits
//! for its end and then gets a dump of its own (requests that arrive
//! meanwhile share it): a second dump handed to the worker at once would
//! read the table before the first one's end, and the events handled in
//! between would be tracked by neither (a flow born then swept, one
//! destroyed then brought back). One dump out also means its completion,
//! even a refusal by the worker's full queue, is never mistaken for
//! another's.

use std::collections::HashSet;

use super::kernel_side::Held;
use super::{ClientId, Job, Node, Purpose, Work};
use crate::control::proto::{Reply, Status};
use crate::kernel::codec::{Kind, Message, Object};
use crate::kernel::origin::Origin;
use crate::model::Expect;
use crate::sync::Key;
use crate::time::Instant;
use crate::wire::{CtKey, ExpKey, Table};

/// A resync whose dump is still arriving.
///
/// Events are handled while the dump runs (from the moment it is handed
/// to the worker: it reads the whole table before it hands over the
/// first part), so three races need care: an entry an event created
/// after the kernel dumped its part is no less alive for being missing
/// from the dump (the entry's mark in the internal cache, set by events
/// and fresh dump entries alike: what is unmarked at the end is stale,
/// and the sweep is a pass over the cache's slots instead of a lookup of
/// every key in a set as large as the table); an entry an event
/// destroyed may still come in a later part of the (older) dump
/// (`gone`); and an entry an event changed may come in the dump with its
/// older state, which must not replace the event's (`touched`, when the
/// event's state was cached: an expectation whose master was not cached
/// yet is taken from the dump).
#[derive(Debug, Default)]
pub(super) struct ResyncRun {
    pub(super) gone_ct: HashSet<CtKey>,
    pub(super) gone_exp: HashSet<ExpKey>,
    pub(super) touched_ct: HashSet<CtKey>,
    pub(super) touched_exp: HashSet<ExpKey>,
    /// Clients whose `-R` came while an earlier dump ran and waited for
    /// this one (the purpose carries the client of a dump asked for
    /// while none ran).
    clients: Vec<ClientId>,
    /// Expectation events whose master was not cached yet (its part of
    /// the dump still to come: after `-f`, every master), as (event,
    /// new, send, counted as an event): taken at the dump's end if their
    /// master then is. The dump, older than the event, does not carry
    /// them, so dropped they would be lost to the cache and the peer.
    pub(super) held_exp: Vec<(Expect, bool, bool, bool)>,
    /// `-f` flushed the internal cache while this dump ran: the parts
    /// that came before are gone, so its end does not bring the cache
    /// back in sync with the kernel.
    pub(super) flushed: bool,
    /// The NEW group was left (a commit ran) while this dump was out: a
    /// flow it finds that neither cache knows may be one whose NEW event
    /// was never read. Cached silently, it would be taken as known by
    /// the commit's own resync, and the peer would never hear of it.
    pub(super) new_unseen: bool,
}

/// Most expectation events a resync holds for their master.
pub(super) const MAX_HELD_EXP: usize = 4096;

/// Resyncs asked for while a dump runs, folded into one dump after it:
/// it covers what each asked for.
#[derive(Debug, Default)]
pub(super) struct ResyncWanted {
    conntracks: bool,
    expectations: bool,
    send: bool,
    announce_new: bool,
    clients: Vec<ClientId>,
}

impl Node {
    /// Asks for a dump to resync with (see [`Purpose::Resync`]); events
    /// are tracked from the moment it is handed to the worker, since the
    /// dump may be older than the events handled while it arrives. While
    /// another dump runs, it waits for that one's end.
    pub(super) fn resync_job(
        &mut self,
        client: Option<ClientId>,
        ct: bool,
        exp: bool,
        send: bool,
        announce_new: bool,
    ) {
        if self.resync.is_some() {
            let w = self.resync_wanted.get_or_insert_default();
            w.conntracks |= ct;
            w.expectations |= exp;
            w.send |= send;
            w.announce_new |= announce_new;
            w.clients.extend(client);
            return;
        }
        self.resync = Some(ResyncRun {
            new_unseen: self.new_events_paused,
            ..ResyncRun::default()
        });
        self.out.jobs.push(Job {
            purpose: Purpose::Resync {
                client,
                conntracks: ct,
                expectations: exp,
                send,
                announce_new,
            },
            work: Work::Dump {
                conntracks: ct,
                expectations: exp,
            },
        });
    }

    /// A part of a resync's dump (start-up, `-R`, overrun, `-B` without
    /// internal cache). Entries no longer in the kernel leave the internal
    /// cache when the last part is in; with `send`, every change is also
    /// sent.
    pub(super) fn resync_part(
        &mut self,
        now: Instant,
        purpose: Purpose,
        objects: Vec<Object>,
        last: bool,
    ) {
        let Purpose::Resync {
            client,
            conntracks,
            expectations,
            send,
            announce_new,
        } = purpose
        else {
            return;
        };
        let mut run = self.resync.take().unwrap_or_default();
        // After an overrun the peer has not heard of what was lost: a
        // silent -R would repair our cache but never tell it.
        let send = send || self.overrun_unsent;
        let origin = if send { Origin::NotMe } else { Origin::Flush };
        let announce_new = (announce_new || run.new_unseen) && !send;
        // Conntracks before expectations: masters must be cached first.
        let (cts, exps): (Vec<Object>, Vec<Object>) = objects
            .into_iter()
            .partition(|o| matches!(o, Object::Ct(_)));
        for mut o in cts.into_iter().chain(exps) {
            if let Object::Exp(x) = &mut o {
                // Its key, marked below, is in its master's zone.
                self.stamp_master_zone(x);
            }
            // Whether to take it, and whether neither cache knows it.
            let held = Held::of(&o);
            let (fresh, unknown) = match &held {
                Held::Ct(k) => {
                    let cached = self.internal_ct.contains(k);
                    // An event's state is newer, if it was cached.
                    let fresh = !run.gone_ct.contains(k)
                        && (!run.touched_ct.contains(k) || !cached);
                    (fresh, !cached && !self.external_ct.contains(k))
                }
                Held::Exp(k) => {
                    let cached = self.internal_exp.contains(k);
                    let fresh = !run.gone_exp.contains(k)
                        && (!run.touched_exp.contains(k) || !cached);
                    (fresh, !cached && !self.external_exp.contains(k))
                }
            };
            if !fresh {
                // Destroyed or changed by an event the dump may predate.
                continue;
            }
            // A flow whose NEW event a commit kept away goes to the peer
            // as that event would have.
            let (kind, origin) = if announce_new && unknown {
                (Kind::New, Origin::NotMe)
            } else {
                (Kind::Update, origin)
            };
            let msg = Message {
                kind,
                object: o,
                port: 0,
                seq: 0,
            };
            self.kernel(now, msg, origin, false);
            self.mark_held(&held, true);
        }
        if !last {
            self.resync = Some(run);
            return;
        }
        // Before the sweep, which keeps only what is marked.
        self.take_held_exps(now, &mut run);
        if conntracks {
            let stale = self.internal_ct.remove_unmarked();
            self.purged_ct.clear();
            for k in stale {
                if send {
                    self.engine.local_change(Key::Ct(k), false);
                } else {
                    self.purged_ct.insert(k);
                }
            }
        } else {
            // Not swept (the sweep clears the marks it keeps): events
            // marked entries all the same.
            self.internal_ct.clear_marks();
        }
        if expectations {
            let stale = self.internal_exp.remove_unmarked();
            self.purged_exp.clear();
            for k in stale {
                if send {
                    self.engine.local_change(Key::Exp(Box::new(k)), false);
                } else {
                    self.purged_exp.insert(k);
                }
            }
        } else {
            self.internal_exp.clear_marks();
        }
        if send {
            self.overrun_unsent = false;
        }
        if !run.flushed {
            self.internal_resynced(conntracks, expectations);
        }
        self.answer_resync(client, run.clients, &Status::Ok);
        // Bulk sends waiting for a commit's resync (or one queued
        // behind it) go now, if this was the last.
        self.commit_resync_done();
        self.kernel_bulk_done();
        self.next_resync();
    }

    /// The expectation events `run` held for their master, in their
    /// order: each whose master is cached now and that no DESTROY ended
    /// since is handled as it would have been when it came, and marked.
    fn take_held_exps(&mut self, now: Instant, run: &mut ResyncRun) {
        for (mut x, new, send, event) in std::mem::take(&mut run.held_exp) {
            if run.gone_exp.contains(&crate::wire::exp_key_of(&x)) {
                continue;
            }
            // A master in a zone, come in the dump after it, gives its
            // zone now.
            self.stamp_master_zone(&mut x);
            let key = crate::wire::exp_key_of(&x);
            let master = CtKey {
                orig: x.master,
                zone: x.zone,
            };
            if run.gone_exp.contains(&key)
                || !self.internal_ct.contains(&master)
            {
                continue;
            }
            self.replicate_exp(now, x, new, send, event);
            self.mark_held(&Held::Exp(key), true);
        }
    }

    /// A resync whose dump failed (or that the worker's full queue
    /// refused): nothing is removed. Only one dump is ever out
    /// ([`Node::resync_job`]), so the failure is that dump's.
    pub(super) fn resync_failed(
        &mut self,
        now: Instant,
        purpose: Purpose,
        why: &str,
    ) {
        let mut run = self.resync.take().unwrap_or_default();
        // The parts that came may have cached the held events' masters.
        self.take_held_exps(now, &mut run);
        let clients = run.clients;
        // The next resync starts without this one's marks.
        self.internal_ct.clear_marks();
        self.internal_exp.clear_marks();
        self.counters.jobs_failed += 1;
        self.out
            .log(log::Level::Error, format!("can't dump kernel table: {why}"));
        self.overrun_resync_failed(now);
        let Purpose::Resync {
            client,
            conntracks,
            expectations,
            announce_new,
            ..
        } = purpose
        else {
            return self.next_resync();
        };
        if announce_new {
            // A commit's: the cache lacks what it committed, and no dump
            // comes on its own. As after `-f`, it stands for the kernel's
            // table no longer: a bulk (the `-B` waiting, the peer's
            // RESYNC) comes from a dump, which refills it.
            self.internal_flushed(conntracks && expectations);
        }
        let failed = Status::Failed(format!("can't dump kernel table: {why}"));
        self.answer_resync(client, clients, &failed);
        // Waiting bulk sends get what the cache holds, rather than nothing.
        // A bulk of the kernel's table owed to the peer is not done: its
        // answer is not said complete (a later dump, a `-B` or the
        // peer's next request, sends it).
        self.commit_resync_done();
        self.next_resync();
    }

    /// `-f` flushed the internal conntracks (and with `exps` its
    /// expectations): it stands for the kernel's table no longer, until
    /// a resync's dump refilled it (see `AntiEntropy::set_in_sync`).
    pub(super) fn internal_flushed(&mut self, exps: bool) {
        if let Some(run) = self.resync.as_mut() {
            run.flushed = true;
        }
        self.flushed[0] = true;
        // Without ExpectationSync no resync refills (or needs) them.
        self.flushed[1] |= exps && self.expectations();
        self.anti_entropy_follows_flushes();
    }

    /// A resync's dump refilled the tables it covered.
    fn internal_resynced(&mut self, conntracks: bool, expectations: bool) {
        self.flushed[0] &= !conntracks;
        self.flushed[1] &= !expectations;
        self.unfilled[0] &= !conntracks;
        self.unfilled[1] &= !expectations;
        self.anti_entropy_follows_flushes();
    }

    /// Anti-entropy digests a table only while it is neither `flushed`
    /// nor `unfilled` (one record of it, the node's; a table paused
    /// without ExpectationSync was never resumed, no resync covering it).
    pub(super) fn anti_entropy_follows_flushes(&mut self) {
        if let Some(ae) = self.anti_entropy.as_mut() {
            for (t, i) in [(Table::Ct, 0), (Table::Exp, 1)] {
                ae.set_in_sync(t, !self.flushed[i] && !self.unfilled[i]);
            }
        }
    }

    /// The clients a resync's dump answers: the `-R` it was asked for,
    /// and those that waited for it.
    fn answer_resync(
        &mut self,
        client: Option<ClientId>,
        waited: Vec<ClientId>,
        s: &Status,
    ) {
        for c in client.into_iter().chain(waited) {
            self.out.reply(c, Reply::Done(s.clone()));
        }
    }

    /// A dump ended or failed: a bulk of the kernel's table owed to the
    /// peer (see `Engine::take_kernel_bulk`) is queued, unless a dump
    /// asked for meanwhile (the one that bulk started) is still to come.
    fn kernel_bulk_done(&mut self) {
        if self.resync_wanted.is_none() {
            self.engine.kernel_bulk_done();
        }
    }

    /// A dump ended or failed: the resync asked for meanwhile, if any,
    /// starts now, its dump taken after the one that ended.
    fn next_resync(&mut self) {
        let Some(w) = self.resync_wanted.take() else {
            return;
        };
        self.resync = Some(ResyncRun {
            clients: w.clients,
            new_unseen: self.new_events_paused,
            ..ResyncRun::default()
        });
        self.out.jobs.push(Job {
            purpose: Purpose::Resync {
                client: None,
                conntracks: w.conntracks,
                expectations: w.expectations,
                send: w.send,
                announce_new: w.announce_new,
            },
            work: Work::Dump {
                conntracks: w.conntracks,
                expectations: w.expectations,
            },
        });
    }
}
