//! Stats mode (`Stats { }`, reference §9): the flow logger. Flows that
//! pass the Filter are cached from the start-up dump and the kernel's
//! events; when the kernel destroys a cached flow it leaves the cache and
//! its line is returned for the stats log: the cached flow (so a TCP flow
//! keeps the state its last event carried) in the plain conntrack format,
//! as conntrackd writes it after the `ctime` stamp, with the destroy
//! event's packet and byte counters when the kernel keeps them. Also the
//! `-s` block
//! of a stats-mode daemon. Pure: the daemon owns the file and the clock.

use std::collections::HashMap;
use std::fmt::Write;

use super::render::ct_line_counted;
use crate::config::Filter;
use crate::filter;
use crate::kernel::codec::Kind;
use crate::model::{Conntrack, ProtoInfo};
use crate::wire::{CtKey, ct_key_of};

/// The stats cache and its counters.
#[derive(Debug)]
pub struct FlowLog {
    filter: Filter,
    limit: usize,
    flows: HashMap<CtKey, Conntrack>,
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
            created: 0,
            created_failed: 0,
            updated: 0,
            destroyed: 0,
            traffic_bytes: 0,
            traffic_packets: 0,
        }
    }

    /// One kernel event (or a start-up dump entry, as an update): the
    /// line to log when it destroyed a cached flow.
    pub fn event(&mut self, kind: Kind, mut ct: Conntrack) -> Option<String> {
        let key = ct_key_of(&ct);
        if kind == Kind::Destroy {
            let cached = self.flows.remove(&key)?;
            self.destroyed += 1;
            if let Some(c) = ct.counters {
                self.traffic_bytes += c.orig_bytes + c.reply_bytes;
                self.traffic_packets += c.orig_packets + c.reply_packets;
            }
            return Some(ct_line_counted(&merged(&cached, ct)));
        }
        if !filter::conntrack(&self.filter, &ct) {
            return None;
        }
        ct.timeout = None;
        ct.counters = None;
        match self.flows.get(&key) {
            Some(old) => {
                let ct = merged(old, ct);
                self.flows.insert(key, ct);
                self.updated += 1;
            }
            None if self.flows.len() >= self.limit => self.created_failed += 1,
            None => {
                self.flows.insert(key, ct);
                self.created += 1;
            }
        }
        None
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

/// An event's flow completed with what earlier events carried and this
/// one does not (a DESTROY or an UPDATE has no TCP state, a mark only
/// when it is set).
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
        assert_eq!(log.event(Kind::New, new), None);
        let mut gone = tcp(1000, None);
        gone.counters = Some(crate::model::Counters {
            orig_packets: 3,
            orig_bytes: 180,
            reply_packets: 2,
            reply_bytes: 120,
        });
        // conntrackd 1.4.7's line for the same flow (after its ctime).
        assert_eq!(
            log.event(Kind::Destroy, gone.clone()).as_deref(),
            Some(
                "tcp      6 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=80 packets=3 bytes=180 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1000 packets=2 bytes=120 [ASSURED] mark=5"
            )
        );
        assert_eq!((log.created, log.destroyed, log.len()), (1, 1, 0));
        assert_eq!((log.traffic_bytes, log.traffic_packets), (300, 5));
        // Not cached (any more): nothing to log.
        assert_eq!(log.event(Kind::Destroy, gone), None);
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
        log.event(Kind::New, new);
        let mut gone = tcp(1000, None);
        gone.zone = 3;
        // Whole seconds of the stop minus whole seconds of the start, as
        // conntrackd prints it.
        gone.timestamp = Some(crate::model::Timestamp {
            start_s: 1,
            stop_s: 5,
        });
        assert_eq!(
            log.event(Kind::Destroy, gone).as_deref(),
            Some(
                "tcp      6 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1000 [ASSURED] zone=3 delta-time=4 helper=ftp"
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
        log.event(Kind::New, tcp(1, Some(3)));
        assert_eq!(log.event(Kind::Destroy, tcp(1, None)), None);
        let mut log = FlowLog::new(Filter::default(), 1);
        log.event(Kind::New, tcp(1, Some(3)));
        log.event(Kind::New, tcp(2, Some(3)));
        log.event(Kind::Update, tcp(1, Some(4)));
        assert_eq!((log.created, log.created_failed, log.updated), (1, 1, 1));
        assert!(log.stats_text().starts_with(
            "cache stats:\ncurrent active connections:\t           1\nconnections created:\t\t           1\tfailed:\t           1\n"
        ));
        assert!(log.stats_text().ends_with(
            "traffic processed:\n                   0 Bytes                         0 Pckts\n\n"
        ));
    }
}
