//! A commit without its own echoes: while `-c` runs, the event socket
//! leaves the conntrack NEW group, so the kernel does not build (and we do
//! not read) a NEW event for each entry the commit creates; when the
//! commit ends, the socket joins again and a resync with the kernel's
//! table brings in what those events would have carried.
//!
//! That is two things: the committed entries, which belong in the
//! internal cache (conntrackd learns them from the echoes; a later `-B`
//! or a peer's resync request sends them), and any flow that traffic
//! created during the commit (keepalived has just moved the addresses),
//! which the peer must hear of as a NEW event would have told it. The
//! resync tells them apart by the external cache: what the commit created
//! came from it (its echo would not have been sent either), a flow that
//! neither cache knows is new and is sent (`announce_new`). Flows that
//! ended meanwhile are no concern: the DESTROY group stays joined. A `-B`
//! that comes before that resync has ended (a notify script runs `-c`
//! then `-B`) waits for it, and for any resync queued behind it (the
//! script's `-f; -R`), so it sends the committed entries too.
//!
//! Only where events feed the internal cache: with polling there are no
//! events, and without an internal cache the peer is sent each event as
//! it comes, so there is nothing to resync from.

use super::{ClientId, Node};

impl Node {
    /// A commit starts: leave the NEW group until it ends.
    pub(super) fn pause_new_events(&mut self) {
        if self.new_events_paused
            || self.internal_disabled()
            || self.poll_period().is_some()
        {
            return;
        }
        self.new_events_paused = true;
        self.out.new_events = Some(false);
        // A dump already out may be read, or its parts handled, from now.
        if let Some(run) = self.resync.as_mut() {
            run.new_unseen = true;
        }
    }

    /// The commit ended (its last job, done or failed): join the NEW group
    /// again, then resync the internal cache from a dump taken after that,
    /// so no entry falls between the two.
    pub(super) fn resume_new_events(&mut self) {
        if !self.new_events_paused {
            return;
        }
        self.new_events_paused = false;
        self.out.new_events = Some(true);
        self.bulk_after_commit.get_or_insert_default();
        let exp = self.expectations();
        self.resync_job(None, true, exp, false, true);
    }

    /// A `-B` during a commit or its resync waits for the resync's end:
    /// until then the committed entries are not all in the internal
    /// cache, and a bulk send would leave them out (the notify script of
    /// a new primary runs `-c` and then `-B`). True when it waits.
    pub(super) fn bulk_waits_for_commit(&mut self, client: ClientId) -> bool {
        if self.new_events_paused {
            self.bulk_after_commit.get_or_insert_default().push(client);
            return true;
        }
        match &mut self.bulk_after_commit {
            Some(waiting) => {
                waiting.push(client);
                true
            }
            None => false,
        }
    }

    /// The resync after a commit ended (its last part, or its failure),
    /// or one queued behind it: the bulk sends that waited for it go now,
    /// unless another resync is queued. A notify script's `-c; -f; -R; -B`
    /// empties the internal cache while the commit's resync runs, and its
    /// `-R` waits for that one's end: a bulk then left out what the first
    /// parts had cached, and the `-R` cached them again silently.
    pub(super) fn commit_resync_done(&mut self) {
        if self.new_events_paused || self.resync_wanted.is_some() {
            return;
        }
        let Some(waiting) = self.bulk_after_commit.take() else {
            return;
        };
        if waiting.is_empty() {
            return;
        }
        let src = super::Internal {
            ct: &self.internal_ct,
            exp: &self.internal_exp,
            bypass: self.cache_not_kernel(),
        };
        self.engine.bulk(&src);
        for client in waiting {
            self.done(client, crate::control::proto::Status::Ok);
        }
    }
}

#[cfg(test)]
mod test {
    use super::super::test_support::{dumped_objects, sent_from};
    use super::super::{
        ClientId, Completion, Done, Input, Job, Node, Outbox, Purpose, Work,
    };
    use crate::config;
    use crate::control::proto::{Reply, Request, Status, Target};
    use crate::kernel::codec::Object;
    use crate::model::{Conntrack, Expect, L4, Tuple, status};
    use crate::time::Instant;
    use crate::wire::{Msg, ct_key_of};

    const CLIENT: ClientId = 3;
    const T0: Instant = Instant::from_millis(1_000);

    fn node(general: &str, mode: &str) -> Node {
        let text = format!(
            "General {{ UNIX {{ Path /x }} {general} }}\nSync {{ Mode {mode}\nUDP {{ IPv4_Destination_Address 10.0.0.2 Port 1 Interface lo }}\nOptions {{ ExpectationSync On }} }}"
        );
        let cfg = config::parse(&text, "t.conf").unwrap().config;
        Node::new(cfg, 1, 1, 1472, 212_992, T0)
    }

    fn tuple(proto: u8, sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: "192.168.0.2".parse().unwrap(),
            dst: "192.168.1.2".parse().unwrap(),
            proto,
            l4: L4::Ports {
                src: sport,
                dst: dport,
            },
        }
    }

    fn flow(proto: u8, sport: u16, dport: u16) -> Conntrack {
        let mut c = Conntrack::new(tuple(proto, sport, dport));
        c.reply = Some(c.orig.inverse());
        c.status = status::CONFIRMED | status::SEEN_REPLY;
        c.timeout = Some(120);
        c
    }

    fn expectation(master: &Conntrack) -> Expect {
        Expect {
            master: master.orig,
            tuple: tuple(6, 0, 50000),
            mask: Tuple {
                src: "255.255.255.255".parse().unwrap(),
                dst: "255.255.255.255".parse().unwrap(),
                proto: 6,
                l4: L4::Ports {
                    src: 0,
                    dst: 0xffff,
                },
            },
            timeout: Some(300),
            zone: 0,
            flags: 0,
            class: 0,
            helper: Some("ftp".try_into().unwrap()),
            nat: None,
            func: None,
            id: 0,
        }
    }

    fn control(n: &mut Node, now: Instant, request: Request) -> Outbox {
        let input = Input::Control {
            client: CLIENT,
            request,
            links: &[],
            control: Default::default(),
        };
        n.handle(now, input)
    }

    fn done(n: &mut Node, now: Instant, purpose: Purpose, d: Done) -> Outbox {
        n.handle(now, Input::Job(Completion { purpose, done: d }))
    }

    fn committed(cts: usize, exps: usize) -> Done {
        Done::Committed {
            cts: vec![0; cts],
            exps: vec![0; exps],
            failed: Vec::new(),
            took_us: [10, 10],
            aborted: None,
        }
    }

    /// The resync jobs an outbox asks for, as (purpose, work).
    fn resyncs(out: &Outbox) -> Vec<&Job> {
        out.jobs
            .iter()
            .filter(|j| matches!(j.purpose, Purpose::Resync { .. }))
            .collect()
    }

    const AFTER_COMMIT: Purpose = Purpose::Resync {
        client: None,
        conntracks: true,
        expectations: true,
        send: false,
        announce_new: true,
    };

    /// The NEW group is left while the commit runs and joined when it
    /// ends; the resync that follows caches what the commit created
    /// without sending it, and sends a flow that started meanwhile as new.
    #[test]
    fn a_commit_runs_without_new_events_and_a_resync_recovers_them() {
        let mut n = node("", "FTFW { }");
        let master = flow(6, 40000, 21);
        let idle = flow(17, 5000, 53);
        let exp = expectation(&master);
        n.external_ct.upsert(&master, T0, true).unwrap();
        n.external_ct.upsert(&idle, T0, true).unwrap();
        n.external_exp.upsert(&exp, T0, true).unwrap();

        let out = control(&mut n, T0, Request::Commit(Target::All));
        assert_eq!(out.new_events, Some(false), "left before the commit");
        assert!(matches!(
            out.jobs[..],
            [Job {
                work: Work::Commit(_),
                ..
            }]
        ));
        let purpose = out.jobs[0].purpose;

        let out = done(&mut n, T0, purpose, committed(2, 1));
        assert_eq!(out.new_events, Some(true), "joined when it ends");
        assert!(out.replies.contains(&(CLIENT, Reply::Done(Status::Ok))));
        let texts: Vec<&str> = out.logs.iter().map(|l| &*l.text).collect();
        assert!(texts.contains(&"Committed 2 new entries"), "{texts:?}");
        let r = resyncs(&out);
        assert_eq!(r.len(), 1, "{:?}", out.jobs);
        assert_eq!(r[0].purpose, AFTER_COMMIT);
        assert_eq!(
            r[0].work,
            Work::Dump {
                conntracks: true,
                expectations: true,
            }
        );

        // The dump: what the commit created, and a flow traffic started
        // while the NEW events were away.
        let started = flow(17, 6000, 53);
        let objects = vec![
            Object::Ct(master.clone()),
            Object::Ct(idle.clone()),
            Object::Ct(started.clone()),
            Object::Exp(exp),
        ];
        let sent = dumped_objects(&mut n, T0, AFTER_COMMIT, objects);
        assert_eq!(n.internal_ct.len(), 3);
        assert_eq!(n.internal_exp.len(), 1, "its master came first");
        let [Msg::CtNew(w)] = &sent[..] else {
            panic!("only the flow that started is sent, as new: {sent:?}")
        };
        let key = ct_key_of(&crate::wire::from_wire_ct(w.clone()));
        assert_eq!(key, ct_key_of(&started));
        assert!(n.resync.is_none(), "the resync is over");
    }

    /// `-B` right after `-c` (a notify script's order) waits for the
    /// resync that brings the committed entries into the internal cache,
    /// then sends them all; one after that resync is answered at once.
    #[test]
    fn a_bulk_send_after_a_commit_waits_for_its_resync() {
        let mut n = node("", "FTFW { }");
        let (a, b) = (flow(17, 5000, 53), flow(17, 5001, 53));
        n.external_ct.upsert(&a, T0, true).unwrap();
        n.external_ct.upsert(&b, T0, true).unwrap();
        let out = control(&mut n, T0, Request::Commit(Target::Ct));
        let purpose = out.jobs[0].purpose;
        let out = done(&mut n, T0, purpose, committed(2, 0));
        let resync = resyncs(&out)[0].purpose;

        let out = control(&mut n, T0, Request::BulkSend);
        assert!(out.replies.is_empty(), "it waits: {:?}", out.replies);
        assert!(out.datagrams.is_empty());

        let dump = Done::Dumped {
            objects: vec![Object::Ct(a.clone()), Object::Ct(b.clone())],
            last: true,
        };
        let out = done(&mut n, T0, resync, dump);
        assert!(out.replies.contains(&(CLIENT, Reply::Done(Status::Ok))));
        let sent = sent_from(&mut n, T0, &out);
        let mut keys: Vec<_> = sent
            .iter()
            .map(|m| match m {
                Msg::CtNew(w) | Msg::CtUpd(w) => {
                    ct_key_of(&crate::wire::from_wire_ct(w.clone()))
                }
                other => panic!("only the committed entries: {other:?}"),
            })
            .collect();
        keys.sort_by_key(|k| format!("{k:?}"));
        let mut want = vec![ct_key_of(&a), ct_key_of(&b)];
        want.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(keys, want, "the bulk send carries what was committed");

        let out = control(&mut n, T0, Request::BulkSend);
        assert!(out.replies.contains(&(CLIENT, Reply::Done(Status::Ok))));
    }

    /// A split commit's first job ending, or a second `-c`, does not join
    /// the group again; the last job does, failed or not, and only once.
    #[test]
    fn only_the_last_commit_job_joins_again_even_when_it_fails() {
        let mut n = node("", "FTFW { }");
        let idle = 3 * super::super::commit_split::SPLIT_ABOVE as u16;
        for i in 0..idle {
            let at = Instant::from_millis(u64::from(i));
            n.external_ct
                .upsert(&flow(17, 1024 + i, 53), at, true)
                .unwrap();
        }
        let now = T0 + std::time::Duration::from_secs(10);
        let out = control(&mut n, now, Request::Commit(Target::Ct));
        assert_eq!(out.new_events, Some(false));
        assert_eq!(
            out.jobs[0].purpose,
            Purpose::CommitFirst {
                client: CLIENT,
                batch: 0
            }
        );
        let next_batch = |n: &mut Node| {
            let out = n.handle(now, Input::Timer);
            assert!(out.new_events.is_none());
            let job =
                out.jobs.iter().find(|j| matches!(j.work, Work::Commit(_)));
            job.map(|j| j.purpose)
        };
        assert_eq!(
            next_batch(&mut n),
            Some(Purpose::CommitFirst {
                client: CLIENT,
                batch: 1
            }),
            "the next most recent"
        );

        let again = control(&mut n, now, Request::Commit(Target::Ct));
        assert!(again.new_events.is_none(), "a refused -c changes nothing");
        assert!(matches!(
            again.replies[..],
            [(_, Reply::Done(Status::Refused(_)))]
        ));

        let first = super::super::commit_split::FIRST_JOB;
        let out = done(
            &mut n,
            now,
            Purpose::CommitFirst {
                client: CLIENT,
                batch: 0,
            },
            committed(first, 0),
        );
        assert!(out.new_events.is_none() && resyncs(&out).is_empty());
        assert!(n.committing());
        assert_eq!(
            next_batch(&mut n),
            Some(Purpose::Commit { client: CLIENT }),
            "the rest, once the first job is done"
        );
        // The second job fails as a whole: its entries count as failed.
        let out = done(
            &mut n,
            now,
            Purpose::CommitFirst {
                client: CLIENT,
                batch: 1,
            },
            Done::Failed("the worker is gone".into()),
        );
        assert!(out.new_events.is_none() && out.replies.is_empty());

        let out = done(
            &mut n,
            now,
            Purpose::Commit { client: CLIENT },
            Done::Failed("the worker is gone".into()),
        );
        assert_eq!(
            (n.counters.commit_ok, n.counters.commit_fail),
            (first as u64, u64::from(idle) - first as u64),
            "every entry counted once, failed where its job failed"
        );
        assert_eq!(out.new_events, Some(true));
        assert!(matches!(
            out.replies[..],
            [(_, Reply::Done(Status::Failed(_)))]
        ));
        assert_eq!(resyncs(&out).len(), 1);
        assert!(!n.committing());

        // The next commit leaves and joins again.
        let out = control(&mut n, now, Request::Commit(Target::Ct));
        assert_eq!(out.new_events, Some(false));
    }

    /// Polling has no events to leave; without an internal cache the
    /// events are the replication itself.
    #[test]
    fn polling_and_no_internal_cache_keep_their_events() {
        for (general, mode) in [
            ("PollSecs 5", "FTFW { }"),
            ("", "NOTRACK { DisableInternalCache On }"),
        ] {
            let mut n = node(general, mode);
            n.external_ct.upsert(&flow(17, 5000, 53), T0, true).unwrap();
            let out = control(&mut n, T0, Request::Commit(Target::Ct));
            assert!(out.new_events.is_none(), "{general} {mode}");
            let purpose = out.jobs[0].purpose;
            let out = done(&mut n, T0, purpose, committed(1, 0));
            assert!(out.new_events.is_none(), "{general} {mode}");
            assert!(resyncs(&out).is_empty(), "{general} {mode}");
        }
    }

    /// The notify script's `primary` branch (`-c; -f; -R; -B`): the `-f`
    /// empties the internal cache while the commit's resync runs, the
    /// `-R` waits for that dump's end, and the `-B` for the `-R`'s dump,
    /// so every committed entry goes to the peer. It waited for the
    /// commit's resync only: what that resync's first parts had cached
    /// was flushed before the bulk, and the `-R` cached it again
    /// silently.
    #[test]
    fn a_scripts_flush_and_resync_after_a_commit_leave_nothing_out_of_the_bulk()
    {
        use crate::control::proto::CacheSel;
        let mut n = node("", "FTFW { }");
        let (a, b) = (flow(17, 5000, 53), flow(17, 5001, 53));
        n.external_ct.upsert(&a, T0, true).unwrap();
        n.external_ct.upsert(&b, T0, true).unwrap();
        let out = control(&mut n, T0, Request::Commit(Target::All));
        let purpose = out.jobs[0].purpose;
        let out = done(&mut n, T0, purpose, committed(2, 0));
        let r1 = resyncs(&out)[0].purpose;
        let first = Done::Dumped {
            objects: vec![Object::Ct(a.clone())],
            last: false,
        };
        let out = done(&mut n, T0, r1, first);
        let mut sent = sent_from(&mut n, T0, &out);
        control(&mut n, T0, Request::FlushCache(CacheSel::All));
        let out = control(&mut n, T0, Request::ResyncKernel(Target::All));
        assert!(out.jobs.is_empty(), "-R waits for the running dump");
        let out = control(&mut n, T0, Request::BulkSend);
        assert!(out.replies.is_empty(), "-B waits");
        let last = Done::Dumped {
            objects: vec![Object::Ct(b.clone())],
            last: true,
        };
        let out = done(&mut n, T0, r1, last);
        assert!(out.replies.is_empty(), "-R and -B wait for the -R's dump");
        sent.extend(sent_from(&mut n, T0, &out));
        let r2 = resyncs(&out)[0].purpose;
        let both = vec![Object::Ct(a.clone()), Object::Ct(b.clone())];
        let out = done(
            &mut n,
            T0,
            r2,
            Done::Dumped {
                objects: both,
                last: true,
            },
        );
        let answers = out
            .replies
            .iter()
            .filter(|r| **r == (CLIENT, Reply::Done(Status::Ok)))
            .count();
        assert_eq!(answers, 2, "the -R and the -B: {:?}", out.replies);
        sent.extend(sent_from(&mut n, T0, &out));
        assert_eq!(n.internal_ct.len(), 2);
        let keys: Vec<_> = sent
            .iter()
            .filter_map(|m| match m {
                Msg::CtNew(w) | Msg::CtUpd(w) => {
                    Some(ct_key_of(&crate::wire::from_wire_ct(w.clone())))
                }
                _ => None,
            })
            .collect();
        for f in [&a, &b] {
            assert!(keys.contains(&ct_key_of(f)), "{f:?} not sent: {keys:?}");
        }
    }
}
