//! DisableExternalCache: the peer's changes applied straight to the
//! kernel, in the peer's order, through the inject socket (whose events
//! the node ignores).
//!
//! A conntrack the kernel already holds is changed in place (ctnetlink's
//! update: `IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE`), never deleted and
//! created again: the kernel drops a master's expectations with the
//! master, so a re-create would silently remove the expectations the
//! peer's helper announced (the FTP data channel of a control connection
//! whose sequence adjustment, mark or state the peer sends after its
//! expectation). conntrackd applies an update the same way
//! (`nl_update_conntrack`).
//!
//! - conntrack update: update; ENOENT ⇒ create; refused (what an update
//!   cannot change: EBUSY for a status bit only a create sets, EOPNOTSUPP)
//!   ⇒ [`recreate`]; invalid (EINVAL, ERANGE: a value the kernel's
//!   policy refuses) ⇒ the failure, the entry left as it is: a create of
//!   the same attributes is refused as well, and deleting first lost the
//!   kernel's entry for good;
//! - conntrack new: create; EEXIST ⇒ as an update (a NEW for a tuple the
//!   kernel holds is the same flow sent again: a resend, a bulk send);
//! - expectation new or update: create; EEXIST ⇒ delete and create;
//! - deletes: ENOENT is not a failure (already gone; the node counts it
//!   so).

use std::io;

use crate::kernel::codec;
use crate::kernel::commit::{self, CommitRules};
use crate::kernel::socket::{CtSocket, Errno};
use crate::model::{Conntrack, Expect};
use crate::node::Injection;
use crate::sync::Apply;
use crate::wire::ExpKey;

const ENOENT: Errno = rustix::io::Errno::NOENT.raw_os_error();
const EEXIST: Errno = rustix::io::Errno::EXIST.raw_os_error();
const EINVAL: Errno = rustix::io::Errno::INVAL.raw_os_error();
const ERANGE: Errno = rustix::io::Errno::RANGE.raw_os_error();

/// Applies the peer's changes in order. Each change's kind and errno (0
/// = done; a delete's ENOENT is passed on: the node counts an entry
/// already gone as conntrackd does, in neither column).
pub(super) fn inject(
    sock: &mut CtSocket,
    rules: &CommitRules,
    changes: &[Apply],
) -> io::Result<Vec<(Injection, Errno)>> {
    let mut out = Vec::with_capacity(changes.len());
    for a in changes {
        let e = match a {
            Apply::Ct { ct, new } => {
                inject_ct(sock, &commit::prepare_ct(ct, 0, rules), *new)?
            }
            Apply::Exp { exp, .. } => {
                first(sock.create_exps(&[commit::prepare_exp(exp, 0, rules)])?)
            }
            Apply::CtDel(k) => first(sock.batch(|buf, seq| {
                codec::encode_ct_delete(buf, &k.orig, k.zone, seq())
            })?),
            Apply::ExpDel(k) => {
                let x = expect_of_key(k);
                first(sock.batch(|buf, seq| {
                    codec::encode_exp_delete(buf, &x, seq())
                })?)
            }
        };
        out.push((Injection::of(a), e));
    }
    Ok(out)
}

/// One conntrack, prepared by the commit rules.
fn inject_ct(
    sock: &mut CtSocket,
    ct: &Conntrack,
    new: bool,
) -> io::Result<Errno> {
    if new {
        let e = one(sock, ct, codec::encode_ct_create)?;
        if e != EEXIST {
            return Ok(e);
        }
    }
    match one(sock, ct, codec::encode_ct_update)? {
        0 => Ok(0),
        ENOENT => one(sock, ct, codec::encode_ct_create),
        e @ (EINVAL | ERANGE) => Ok(e),
        _ => recreate(sock, ct),
    }
}

/// What an update cannot change: delete and create the conntrack, then
/// give it back the expectations the kernel dropped with it (read from
/// that master's own list: a dump of the whole expectation table per
/// refused update cost a router with thousands of SIP expectations a
/// walk of all of them each time).
fn recreate(sock: &mut CtSocket, ct: &Conntrack) -> io::Result<Errno> {
    let children = sock.dump_exps_of(&ct.orig, ct.zone)?;
    sock.batch(|buf, seq| {
        codec::encode_ct_delete(buf, &ct.orig, ct.zone, seq())
    })?;
    let e = one(sock, ct, codec::encode_ct_create)?;
    if e == 0 && !children.is_empty() {
        let again: Vec<Expect> = children
            .iter()
            .map(|x| commit::prepare_exp(x, 0, &CommitRules::default()))
            .map(|mut x| {
                // Keep what the kernel had left of their lifetime.
                x.timeout = x.timeout.or(Some(commit::FALLBACK_TIMEOUT));
                x
            })
            .collect();
        sock.create_exps(&again)?;
    }
    Ok(e)
}

fn one(
    sock: &mut CtSocket,
    ct: &Conntrack,
    encode: fn(&mut Vec<u8>, &Conntrack, u32),
) -> io::Result<Errno> {
    Ok(first(sock.batch(|buf, seq| encode(buf, ct, seq()))?))
}

fn first(errs: Vec<Errno>) -> Errno {
    errs.first().copied().unwrap_or(0)
}

fn expect_of_key(k: &ExpKey) -> Expect {
    let mut x = Expect::new(k.master, k.tuple, k.mask);
    x.zone = k.zone;
    x
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::kernel::test_netns::in_new_netns;
    use crate::model::{L4, ProtoInfo, Tuple, status};

    /// An update the kernel refuses as invalid (a TCP state past the last
    /// one: ERANGE, or EINVAL) is refused as a create too: deleting the entry for a
    /// create that must fail left the kernel without the flow the peer
    /// was only updating.
    #[test]
    fn an_invalid_update_leaves_the_kernels_entry() {
        let done = in_new_netns("badupd", || {
            let mut s = CtSocket::open().unwrap();
            let rules = CommitRules::default();
            let mut ct = Conntrack::new(Tuple {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                proto: 6,
                l4: L4::Ports {
                    src: 40000,
                    dst: 80,
                },
            });
            ct.status = status::SEEN_REPLY | status::ASSURED;
            ct.timeout = Some(600);
            ct.proto_info = ProtoInfo::Tcp {
                state: 3,
                wscale_orig: 0,
                wscale_reply: 0,
                flags_orig: 0,
                flags_reply: 0,
            };
            let created =
                s.create_cts(&[commit::prepare_ct(&ct, 0, &rules)]).unwrap();
            assert_eq!(created, [0]);
            let mut bad = ct.clone();
            bad.proto_info = ProtoInfo::Tcp {
                state: 200,
                wscale_orig: 0,
                wscale_reply: 0,
                flags_orig: 0,
                flags_reply: 0,
            };
            let errs = inject(
                &mut s,
                &rules,
                &[Apply::Ct {
                    ct: bad,
                    new: false,
                }],
            )
            .unwrap();
            (errs, s.get_ct(&ct.orig, 0).unwrap())
        });
        let Some((errs, now)) = done else { return };
        assert!(now.is_some(), "the refused update deleted the entry");
        // The kernel's netlink policy: ERANGE (EINVAL before it had one).
        let erange = rustix::io::Errno::RANGE.raw_os_error();
        assert_eq!(errs, [(Injection::CtUpdate, erange)]);
    }
}
