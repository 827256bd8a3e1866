//! Stats mode (`Stats { }`, reference §9): the flow logger. Flows that
//! pass the Filter are cached from the start-up dump and the kernel's
//! events; when the kernel destroys a cached flow it leaves the cache and
//! its line is returned for the stats log: the destroy event's flow, as
//! the kernel tells it (its state, its counters when the kernel keeps
//! them, its mark when set; no helper), in the plain conntrack format,
//! as conntrackd writes it after the `ctime` stamp. Also the
//! `-s`, `-s cache` and `-i` of a stats-mode daemon, `-f internal`, and
//! the folding of a kernel dump (`-R`, or after an event overrun, when
//! the flows that ended unseen are logged too). Pure: the daemon owns the
//! file, the kernel and the clock.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::render::{cache_extended, ct_line_counted, stats_part};
use crate::cache::{CacheStats, Entry};
use crate::config::Filter;
use crate::control::proto::Format;
use crate::filter;
use crate::kernel::codec::Kind;
use crate::model::{Conntrack, ProtoInfo};
use crate::time::Instant;
use crate::wire::{CtKey, ct_key_of};

/// Where news of a flow came from, which decides whether it told the
/// flow's mark: conntrackd shows a mark only when the kernel reported it
/// (`mark=N` in `-i` only once CTA_MARK came).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A dump of the kernel's table: it always carries the mark.
    Dump,
    /// A kernel event, sent for `port` (0: the packet path or a timeout;
    /// else the ctnetlink request that caused it).
    Event { port: u32 },
}

impl Source {
    /// Whether a NEW or UPDATE with mark `mark` reported it, the flow's
    /// mark having been `before` (0 for a new flow). The kernel
    /// (`ctnetlink_conntrack_event`) puts CTA_MARK into an event when the
    /// mark is set or the event is for a change of the mark (IPCT_MARK),
    /// and every event of a ctnetlink request that creates or changes a
    /// flow is for one: a mark of 0 in an event of the packet path is
    /// reported only when it was not 0 before (a packet cleared it).
    fn reports_mark(self, mark: u32, before: u32) -> bool {
        match self {
            Source::Dump => true,
            Source::Event { port } => mark != 0 || port != 0 || before != 0,
        }
    }
}

/// A cached flow: what the events told, and since when it is cached.
#[derive(Debug)]
struct Flow {
    ct: Conntrack,
    /// The kernel reported its mark (see [`Source`]); until then it is 0,
    /// and not shown.
    mark_told: bool,
    since: Instant,
    /// The event count when an event or a dump last touched it: a dump
    /// that started later than that and did not see it proves it gone.
    touched: u64,
}

/// A kernel dump being folded in (`-R`, or after an overrun).
#[derive(Debug)]
pub struct Resync {
    /// Log the flows the dump proves gone (after an overrun; `-R` only
    /// adds and updates, as conntrackd's does).
    purge: bool,
    started: u64,
    seen: HashSet<CtKey>,
}

/// The stats cache and its counters.
#[derive(Debug)]
pub struct FlowLog {
    filter: Filter,
    limit: usize,
    flows: HashMap<CtKey, Flow>,
    /// Events (and dumped entries) folded in so far.
    ticks: u64,
    /// Events the Filter dropped.
    pub filtered: u64,
    pub created: u64,
    pub created_failed: u64,
    pub updated: u64,
    pub destroyed: u64,
    pub traffic_bytes: u64,
    pub traffic_packets: u64,
}

impl FlowLog {
    /// An empty cache of at most `limit` flows (`HashLimit`).
    pub fn new(filter: Filter, limit: usize) -> FlowLog {
        FlowLog {
            filter,
            limit,
            flows: HashMap::new(),
            ticks: 0,
            filtered: 0,
            created: 0,
            created_failed: 0,
            updated: 0,
            destroyed: 0,
            traffic_bytes: 0,
            traffic_packets: 0,
        }
    }

    /// One kernel event (or a dump's entry, as an update, from
    /// [`Source::Dump`]) at `now`: the line to log when it destroyed a
    /// cached flow.
    pub fn event(
        &mut self,
        kind: Kind,
        mut ct: Conntrack,
        from: Source,
        now: Instant,
    ) -> Option<String> {
        self.ticks += 1;
        let key = ct_key_of(&ct);
        // conntrackd filters every event, a destroy too: a flow whose
        // end the Filter rejects (a TCP state filter, the connection in
        // TIME_WAIT) is not logged nor counted. Its cache then keeps the
        // flow for good (until `-f internal`, a HashLimit's worth of them
        // stopping the logging of new flows): this one lets it go.
        if !filter::conntrack(&self.filter, &ct) {
            self.filtered += 1;
            if kind == Kind::Destroy {
                self.flows.remove(&key);
            }
            return None;
        }
        if kind == Kind::Destroy {
            // conntrackd logs the event, not what it cached: a helper
            // (which no destroy event carries) is not in the line.
            self.flows.remove(&key)?;
            self.destroyed += 1;
            if let Some(c) = ct.counters {
                self.traffic_bytes += c.orig_bytes + c.reply_bytes;
                self.traffic_packets += c.orig_packets + c.reply_packets;
            }
            return Some(ct_line_counted(&ct));
        }
        ct.timeout = None;
        ct.counters = None;
        let touched = self.ticks;
        let full = self.flows.len() >= self.limit;
        match self.flows.get_mut(&key) {
            Some(old) => {
                // A mark the kernel reported is taken as it is, 0 too (a
                // packet cleared it); one it did not report is unchanged
                // (conntrackd copies only the attributes an event has).
                let mark = ct.mark;
                let told = from.reports_mark(mark, old.ct.mark);
                old.ct = merged(&old.ct, ct);
                if told {
                    old.ct.mark = mark;
                    old.mark_told = true;
                }
                old.touched = touched;
                self.updated += 1;
            }
            None if full => self.created_failed += 1,
            None => {
                let since = now;
                let mark_told = from.reports_mark(ct.mark, 0);
                let flow = Flow {
                    ct,
                    mark_told,
                    since,
                    touched,
                };
                self.flows.insert(key, flow);
                self.created += 1;
            }
        }
        None
    }

    /// `-f internal`: forgets every flow (counted as destroyed, as
    /// conntrackd counts them; none is logged). Returns how many.
    pub fn flush(&mut self) -> usize {
        let n = self.flows.len();
        self.flows.clear();
        self.destroyed += n as u64;
        n
    }

    /// Starts folding in a kernel dump (see [`FlowLog::resync_part`]).
    pub fn resync_start(&self, purge: bool) -> Resync {
        Resync {
            purge,
            started: self.ticks,
            seen: HashSet::new(),
        }
    }

    /// Folds in one part of the dump (each entry as an update).
    pub fn resync_part(
        &mut self,
        r: &mut Resync,
        part: impl IntoIterator<Item = Conntrack>,
        now: Instant,
    ) {
        for ct in part {
            if r.purge {
                r.seen.insert(ct_key_of(&ct));
            }
            self.event(Kind::Update, ct, Source::Dump, now);
        }
    }

    /// Ends the dump: with `purge`, the flows it proves gone (cached
    /// before it started, not in it) leave the cache and their lines are
    /// returned for the stats log.
    pub fn resync_end(&mut self, r: Resync) -> Vec<String> {
        if !r.purge {
            return Vec::new();
        }
        let gone: Vec<CtKey> = self
            .flows
            .iter()
            .filter(|(k, f)| f.touched <= r.started && !r.seen.contains(*k))
            .map(|(k, _)| *k)
            .collect();
        let mut lines = Vec::with_capacity(gone.len());
        for k in gone {
            if let Some(f) = self.flows.remove(&k) {
                self.destroyed += 1;
                lines.push(ct_line_counted(&f.ct));
            }
        }
        lines
    }

    /// `-i` in `format` (plain lines with `[active since]`, XML, or a
    /// JSON array), in no particular order, as conntrackd's.
    pub fn dump_text(&self, now: Instant, format: Format) -> String {
        let entries = self.flows.values().map(|f| Entry {
            value: (f.ct.clone(), f.mark_told),
            since: f.since,
            updated: f.since,
        });
        let part = stats_part(entries, now, format);
        if format == Format::Json {
            format!("[{part}]\n")
        } else {
            part
        }
    }

    /// `-s cache`: conntrackd's block for its one cache, `stats`.
    pub fn cache_text(&self) -> String {
        let st = CacheStats {
            add_ok: self.created,
            add_fail: self.created_failed,
            add_fail_enospc: self.created_failed,
            upd_ok: self.updated,
            del_ok: self.destroyed,
            ..CacheStats::default()
        };
        let mut s = String::new();
        cache_extended(&mut s, "stats", self.flows.len(), &st);
        s
    }

    /// Flows cached now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// `-s` of a stats-mode daemon, in conntrackd 1.4.7's layout.
    pub fn stats_text(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "cache stats:\n\
             current active connections:\t{:>12}\n\
             connections created:\t\t{:>12}\tfailed:\t{:>12}\n\
             connections updated:\t\t{:>12}\tfailed:\t{:>12}\n\
             connections destroyed:\t\t{:>12}\tfailed:\t{:>12}\n\n\
             traffic processed:\n{:>20} Bytes {:>25} Pckts\n\n",
            self.flows.len(),
            self.created,
            self.created_failed,
            self.updated,
            0,
            self.destroyed,
            0,
            self.traffic_bytes,
            self.traffic_packets,
        );
        s
    }
}

/// An update's flow completed with what earlier events carried and this
/// one does not (an UPDATE has a TCP state only when it changed, a helper
/// only when one is attached), as conntrackd copies only the attributes
/// an event has into its cached flow.
fn merged(old: &Conntrack, mut ct: Conntrack) -> Conntrack {
    if ct.proto_info == ProtoInfo::None {
        ct.proto_info = old.proto_info;
    }
    if ct.mark == 0 {
        ct.mark = old.mark;
    }
    if ct.reply.is_none() {
        ct.reply = old.reply;
    }
    ct.helper = ct.helper.take().or_else(|| old.helper.clone());
    ct.master = ct.master.or(old.master);
    ct.labels = ct.labels.or(old.labels);
    ct
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::{AddressRule, Cidr, Logic};
    use crate::model::{L4, Tuple, status};

    const T0: Instant = Instant::ZERO;
    /// An event of the packet path.
    const EV: Source = Source::Event { port: 0 };

    fn tcp(port: u16, state: Option<u8>) -> Conntrack {
        let mut c = Conntrack::new(Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 6,
            l4: L4::Ports { src: port, dst: 80 },
        });
        c.reply = Some(c.orig.inverse());
        c.status = status::SEEN_REPLY | status::ASSURED;
        if let Some(state) = state {
            c.proto_info = ProtoInfo::Tcp {
                state,
                wscale_orig: 0,
                wscale_reply: 0,
                flags_orig: 0,
                flags_reply: 0,
            };
        }
        c
    }

    #[test]
    fn a_destroyed_flow_is_logged_with_its_last_state() {
        let mut log = FlowLog::new(Filter::default(), 10);
        let mut new = tcp(1000, Some(3));
        new.mark = 5;
        assert_eq!(log.event(Kind::New, new, EV, T0), None);
        // The destroy event has the state and the mark (set).
        let mut gone = tcp(1000, Some(3));
        gone.mark = 5;
        gone.counters = Some(crate::model::Counters {
            orig_packets: 3,
            orig_bytes: 180,
            reply_packets: 2,
            reply_bytes: 120,
        });
        // conntrackd 1.4.7's line for the same flow (after its ctime).
        assert_eq!(
            log.event(Kind::Destroy, gone.clone(), EV, T0).as_deref(),
            Some(
                "tcp      6 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=80 packets=3 bytes=180 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1000 packets=2 bytes=120 [ASSURED] mark=5"
            )
        );
        assert_eq!((log.created, log.destroyed, log.len()), (1, 1, 0));
        assert_eq!((log.traffic_bytes, log.traffic_packets), (300, 5));
        // Not cached (any more): nothing to log.
        assert_eq!(log.event(Kind::Destroy, gone, EV, T0), None);
    }

    #[test]
    fn a_timestamped_flow_is_logged_with_its_lifetime() {
        let mut log = FlowLog::new(Filter::default(), 10);
        let mut new = tcp(1000, Some(3));
        new.helper = Some(crate::model::HelperName::try_from("ftp").unwrap());
        new.zone = 3;
        new.timestamp = Some(crate::model::Timestamp {
            start_s: 1,
            stop_s: 0,
        });
        log.event(Kind::New, new, EV, T0);
        // No helper in the destroy event: none in the line (as
        // conntrackd's, which logs the event).
        let mut gone = tcp(1000, Some(3));
        gone.zone = 3;
        // Whole seconds of the stop minus whole seconds of the start, as
        // conntrackd prints it.
        gone.timestamp = Some(crate::model::Timestamp {
            start_s: 1,
            stop_s: 5,
        });
        assert_eq!(
            log.event(Kind::Destroy, gone, EV, T0).as_deref(),
            Some(
                "tcp      6 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1000 [ASSURED] zone=3 delta-time=4"
            )
        );
    }

    #[test]
    fn filtered_flows_are_not_logged_and_the_cache_is_bounded() {
        let filter = Filter {
            address: Some(AddressRule {
                logic: Logic::Ignore,
                items: vec![Cidr {
                    addr: "10.0.0.1".parse().unwrap(),
                    prefix: 32,
                }]
                .into(),
            }),
            ..Filter::default()
        };
        let mut log = FlowLog::new(filter, 1);
        log.event(Kind::New, tcp(1, Some(3)), EV, T0);
        assert_eq!(log.event(Kind::Destroy, tcp(1, None), EV, T0), None);
        // The destroy event is filtered (and counted) as the others are.
        assert_eq!((log.filtered, log.destroyed), (2, 0));
        let mut log = FlowLog::new(Filter::default(), 1);
        log.event(Kind::New, tcp(1, Some(3)), EV, T0);
        log.event(Kind::New, tcp(2, Some(3)), EV, T0);
        log.event(Kind::Update, tcp(1, Some(4)), EV, T0);
        assert_eq!((log.created, log.created_failed, log.updated), (1, 1, 1));
        assert!(log.stats_text().starts_with(
            "cache stats:\ncurrent active connections:\t           1\nconnections created:\t\t           1\tfailed:\t           1\n"
        ));
        assert!(log.stats_text().ends_with(
            "traffic processed:\n                   0 Bytes                         0 Pckts\n\n"
        ));
    }

    #[test]
    fn a_flush_forgets_every_flow_without_logging_it() {
        let mut log = FlowLog::new(Filter::default(), 10);
        log.event(Kind::New, tcp(1, Some(3)), EV, T0);
        log.event(Kind::New, tcp(2, Some(3)), EV, T0);
        assert_eq!(log.flush(), 2);
        assert_eq!((log.len(), log.destroyed), (0, 2));
        assert_eq!(log.event(Kind::Destroy, tcp(1, None), EV, T0), None);
    }

    #[test]
    fn a_resync_after_an_overrun_logs_the_flows_that_ended_unseen() {
        let mut log = FlowLog::new(Filter::default(), 10);
        log.event(Kind::New, tcp(1, Some(3)), EV, T0);
        log.event(Kind::New, tcp(2, Some(3)), EV, T0);
        let mut r = log.resync_start(true);
        // Created while the dump runs: not in it, but not gone either.
        log.event(Kind::New, tcp(3, Some(3)), EV, T0);
        log.resync_part(&mut r, [tcp(2, Some(3)), tcp(4, Some(3))], T0);
        let gone = log.resync_end(r);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].contains("sport=1 dport=80"), "{gone:?}");
        assert_eq!(log.len(), 3);
        assert_eq!((log.created, log.updated, log.destroyed), (4, 1, 1));
        // `-R` only adds and updates.
        let mut r = log.resync_start(false);
        log.resync_part(&mut r, [tcp(5, Some(3))], T0);
        assert!(log.resync_end(r).is_empty());
        assert_eq!(log.len(), 4);
    }

    /// `-i`'s lines of every flow, without their ages, sorted.
    fn listed(log: &FlowLog) -> Vec<String> {
        let text = log.dump_text(T0, Format::Plain);
        let mut v: Vec<String> = text
            .lines()
            .map(|l| l.trim_end_matches(" [active since 0s]").to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_mark_is_shown_once_the_kernel_reported_it() {
        let mut log = FlowLog::new(Filter::default(), 10);
        // Events of the packet path: no CTA_MARK while the mark is 0.
        log.event(Kind::New, tcp(1, Some(3)), EV, T0);
        log.event(Kind::Update, tcp(1, Some(4)), EV, T0);
        // A dump always carries it.
        log.event(Kind::Update, tcp(2, Some(3)), Source::Dump, T0);
        log.event(Kind::Update, tcp(2, Some(3)), EV, T0);
        // So does every event of a ctnetlink request (`conntrack -I`).
        let ctnetlink = Source::Event { port: 4321 };
        log.event(Kind::New, tcp(3, Some(3)), ctnetlink, T0);
        // A packet sets a mark, a later one clears it.
        let mut marked = tcp(4, Some(3));
        marked.mark = 5;
        log.event(Kind::New, tcp(4, Some(3)), EV, T0);
        log.event(Kind::Update, marked, EV, T0);
        log.event(Kind::Update, tcp(4, Some(3)), EV, T0);
        let lines = listed(&log);
        let mark = |port: u16| {
            let l = lines
                .iter()
                .find(|l| l.contains(&format!("sport={port} ")))
                .unwrap();
            l.split(" mark=").nth(1).map(str::to_string)
        };
        assert_eq!(mark(1), None, "{lines:#?}");
        assert_eq!(mark(2).as_deref(), Some("0"), "{lines:#?}");
        assert_eq!(mark(3).as_deref(), Some("0"), "{lines:#?}");
        assert_eq!(mark(4).as_deref(), Some("0"), "{lines:#?}");
        let xml = log.dump_text(T0, Format::Xml);
        assert_eq!(xml.matches("<mark>0</mark>").count(), 3, "{xml}");
        // The cleared mark is not in the line of the flow's end (its
        // destroy event has none).
        let line = log.event(Kind::Destroy, tcp(4, None), EV, T0).unwrap();
        assert!(!line.contains("mark="), "{line}");
    }

    #[test]
    fn the_internal_dump_and_cache_block_are_conntrackds() {
        let mut log = FlowLog::new(Filter::default(), 10);
        let mut c = tcp(1000, Some(3));
        c.mark = 5;
        log.event(Kind::New, c, EV, Instant::from_millis(1000));
        // conntrackd 1.4.7's `-i` line in Stats mode for this flow.
        assert_eq!(
            log.dump_text(Instant::from_millis(22_500), Format::Plain),
            "tcp      6 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1000 [ASSURED] mark=5 [active since 21s]\n"
        );
        let json = log.dump_text(T0, Format::Json);
        assert!(json.starts_with("[{") && json.ends_with("}]\n"), "{json}");
        log.flush();
        assert_eq!(
            log.cache_text(),
            "cache:stats\tactive objects:\t\t           0\n\tactive/total entries:\t\t           0/           0\n\tcreation OK/failed:\t\t           1/           0\n\t\tno memory available:\t           0\n\t\tno space left in cache:\t           0\n\tupdate OK/failed:\t\t           0/           0\n\t\tentry not found:\t           0\n\tdeletion created/failed:\t           1/           0\n\t\tentry not found:\t           0\n\n"
        );
    }
}
