//! The rules the kernel imposes on entries created from another node's
//! state (conntrackd.conf(5) and reference §5.6.1, §6.4), as pure
//! functions the caches call before handing entries to the codec.
//!
//! - status: `IPS_CONFIRMED` set (ctnetlink refuses a create whose status
//!   would clear it: EBUSY), `IPS_EXPECTED`, `IPS_DYING` and the offload
//!   bits cleared;
//! - timeout: `CommitTimeout` when set, else what was left when the peer
//!   reported it minus the time it spent in our cache, 60 s when that is
//!   not positive or unknown (a create without a timeout is EINVAL);
//! - TCP: "be liberal" in both directions unless window tracking is
//!   synced, since the new primary has not seen the window;
//! - the helper name and master tuple are kept (the helper must be attached
//!   before expectations can be created on the entry);
//! - order: every master before the RELATED conntracks that name it, at
//!   any depth (H.323's H.245 channel is RELATED to its Q.931 call and
//!   master of the RTP flows), then expectations; and what matters first
//!   ([`plan_active_first`]): a first stage of the expectations, their
//!   masters' chains and the most recently active conntracks (one kernel
//!   batch), then the idle rest, most recent first.

mod order;

pub use self::order::{
    FIRST_STAGE, MAX_CHAIN, Plan, commit_order, plan, plan_active_first,
    plan_in_order,
};
use crate::model::{Conntrack, Expect, ProtoInfo, status, tcp_flag};

/// What a commit needs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitRules {
    pub commit_timeout: Option<u32>,
    pub tcp_window_tracking: bool,
}

/// Timeout used when the estimate is not positive or unknown.
pub const FALLBACK_TIMEOUT: u32 = 60;

fn timeout(reported: Option<u32>, age_secs: u32, rules: &CommitRules) -> u32 {
    rules.commit_timeout.unwrap_or_else(|| {
        match reported.map(|t| t.saturating_sub(age_secs)) {
            Some(t) if t > 0 => t,
            _ => FALLBACK_TIMEOUT,
        }
    })
}

/// The conntrack to create in the kernel for `ct`, learnt `age_secs` ago.
pub fn prepare_ct(
    ct: &Conntrack,
    age_secs: u32,
    rules: &CommitRules,
) -> Conntrack {
    let mut out = ct.clone();
    prepare_in_place(&mut out, age_secs, rules);
    out
}

/// [`prepare_ct`] on an entry the caller owns (no copy).
pub fn prepare_in_place(
    out: &mut Conntrack,
    age_secs: u32,
    rules: &CommitRules,
) {
    out.status = (out.status | status::CONFIRMED)
        & !(status::EXPECTED | status::DYING | status::OFFLOADED);
    out.timeout = Some(timeout(out.timeout, age_secs, rules));
    if let ProtoInfo::Tcp {
        flags_orig,
        flags_reply,
        ..
    } = &mut out.proto_info
        && !rules.tcp_window_tracking
    {
        *flags_orig |= tcp_flag::BE_LIBERAL;
        *flags_reply |= tcp_flag::BE_LIBERAL;
    }
    out.counters = None;
    out.id = 0;
}

/// The expectation to create for `x`, learnt `age_secs` ago. (The kernel
/// applies the helper's own timeout policy on top.)
pub fn prepare_exp(x: &Expect, age_secs: u32, rules: &CommitRules) -> Expect {
    let mut out = x.clone();
    out.timeout = Some(timeout(x.timeout, age_secs, rules));
    // The kernel clears USERSPACE itself; never ask for it.
    out.flags &= !crate::model::expect_flag::USERSPACE;
    out.id = 0;
    out
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::{L4, Tuple};

    pub(super) fn ct(master: bool) -> Conntrack {
        let t = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 6,
            l4: L4::Ports { src: 1, dst: 2 },
        };
        let mut c = Conntrack::new(t);
        c.status = status::EXPECTED
            | status::SEEN_REPLY
            | status::ASSURED
            | status::OFFLOADED;
        c.timeout = Some(100);
        c.proto_info = ProtoInfo::Tcp {
            state: 3,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: 0,
            flags_reply: tcp_flag::SACK_PERM,
        };
        c.id = 99;
        if master {
            c.master = Some(t.inverse());
        }
        c
    }

    #[test]
    fn status_timeout_and_tcp_flags() {
        let rules = CommitRules::default();
        let p = prepare_ct(&ct(false), 30, &rules);
        assert_eq!(
            p.status,
            status::CONFIRMED | status::SEEN_REPLY | status::ASSURED
        );
        assert_eq!(p.timeout, Some(70));
        assert_eq!(
            p.proto_info,
            ProtoInfo::Tcp {
                state: 3,
                wscale_orig: 7,
                wscale_reply: 7,
                flags_orig: tcp_flag::BE_LIBERAL,
                flags_reply: tcp_flag::SACK_PERM | tcp_flag::BE_LIBERAL
            }
        );
        assert_eq!(p.id, 0);
        // Older than its timeout, or unknown: the fallback.
        assert_eq!(
            prepare_ct(&ct(false), 500, &rules).timeout,
            Some(FALLBACK_TIMEOUT)
        );
        let mut unknown = ct(false);
        unknown.timeout = None;
        assert_eq!(
            prepare_ct(&unknown, 0, &rules).timeout,
            Some(FALLBACK_TIMEOUT)
        );
        // CommitTimeout wins; window tracking keeps the flags.
        let fixed = CommitRules {
            commit_timeout: Some(1800),
            tcp_window_tracking: true,
        };
        let p = prepare_ct(&ct(false), 30, &fixed);
        assert_eq!(p.timeout, Some(1800));
        assert!(matches!(p.proto_info, ProtoInfo::Tcp { flags_orig: 0, .. }));
    }
}
