//! The daemon's kernel handles (conntrackd's resync/dump, flush, commit,
//! inject and event sockets), each registered for origin tracking, and
//! the kernel-side work behind the node's [`Action`]s.

use std::io;

use crate::config::{Config, Filter};
use crate::filter;
use crate::kernel::codec::{self, Object};
use crate::kernel::commit::{self, CommitRules};
use crate::kernel::origin::{Origin, Origins};
use crate::kernel::socket::{CtSocket, Errno, EventSocket};
use crate::model::{Conntrack, Expect, L4, Tuple};
use crate::sync::Apply;
use crate::wire::ExpKey;

pub struct Kernel {
    pub dump: CtSocket,
    pub flush: CtSocket,
    /// Lent to the commit worker thread while a commit runs (None then).
    pub commit: Option<CtSocket>,
    pub inject: CtSocket,
    pub events: EventSocket,
    pub origins: Origins,
    rules: CommitRules,
}

impl Kernel {
    /// Opens every handle.
    ///
    /// # Errors
    /// conntrackd's "can't open netlink handler" text.
    pub fn open(cfg: &Config) -> Result<Kernel, String> {
        let err = |e: io::Error| {
            format!(
                "can't open netlink handler: {e} (no ctnetlink kernel support?)"
            )
        };
        let sync = cfg.sync.clone().unwrap_or_default();
        let g = &cfg.general;
        let events = EventSocket::open(
            sync.expectation_sync.enabled(),
            g.netlink_buffer_size as usize,
            g.netlink_buffer_size_max_growth as usize,
            g.netlink_events_reliable,
        )
        .map_err(err)?;
        let (dump, flush, commit, inject) = (
            CtSocket::open().map_err(err)?,
            CtSocket::open().map_err(err)?,
            CtSocket::open().map_err(err)?,
            CtSocket::open().map_err(err)?,
        );
        let mut origins = Origins::default();
        origins.register(flush.port(), Origin::Flush);
        origins.register(commit.port(), Origin::Commit);
        origins.register(inject.port(), Origin::Inject);
        Ok(Kernel {
            dump,
            flush,
            commit: Some(commit),
            inject,
            events,
            origins,
            rules: CommitRules {
                commit_timeout: sync.commit_timeout,
                tcp_window_tracking: sync.tcp_window_tracking,
            },
        })
    }

    /// Dumps the conntrack and/or expectation tables.
    pub fn dump(
        &mut self,
        conntracks: bool,
        expectations: bool,
    ) -> io::Result<Vec<Object>> {
        let mut all = Vec::new();
        if conntracks {
            all.extend(self.dump.dump(false)?);
        }
        if expectations {
            all.extend(self.dump.dump(true)?);
        }
        Ok(all)
    }

    /// Deletes every kernel conntrack the Filter accepts (entries the node
    /// ignores are never deleted), and/or every expectation. Returns how
    /// many were deleted.
    pub fn flush_selective(
        &mut self,
        f: &Filter,
        conntracks: bool,
        expectations: bool,
    ) -> io::Result<usize> {
        let mut deleted = 0;
        if conntracks {
            let victims: Vec<Conntrack> = self
                .flush
                .dump(false)?
                .into_iter()
                .filter_map(|o| match o {
                    Object::Ct(c) if filter::conntrack(f, &c) => Some(c),
                    _ => None,
                })
                .collect();
            for chunk in victims.chunks(256) {
                let errs = self.flush.batch(|buf, seq| {
                    for c in chunk {
                        codec::encode_ct_delete(buf, &c.orig, c.zone, seq());
                    }
                })?;
                deleted += errs.iter().filter(|&&e| e == 0).count();
            }
        }
        if expectations {
            let all: Vec<Expect> = self
                .flush
                .dump(true)?
                .into_iter()
                .filter_map(|o| match o {
                    Object::Exp(x) => Some(x),
                    _ => None,
                })
                .collect();
            for chunk in all.chunks(256) {
                let errs = self.flush.batch(|buf, seq| {
                    for x in chunk {
                        codec::encode_exp_delete(buf, x, seq());
                    }
                })?;
                deleted += errs.iter().filter(|&&e| e == 0).count();
            }
        }
        Ok(deleted)
    }

    /// Applies one of the peer's changes straight to the kernel
    /// (DisableExternalCache). Returns the errno (0 = done).
    pub fn inject(&mut self, a: &Apply) -> io::Result<Errno> {
        let errs = match a {
            Apply::Ct { ct, .. } => self
                .inject
                .create_cts(&[commit::prepare_ct(ct, 0, &self.rules)])?,
            Apply::Exp { exp, .. } => self
                .inject
                .create_exps(&[commit::prepare_exp(exp, 0, &self.rules)])?,
            Apply::CtDel(k) => self.inject.batch(|buf, seq| {
                codec::encode_ct_delete(buf, &k.orig, k.zone, seq())
            })?,
            Apply::ExpDel(k) => {
                let x = expect_of_key(k);
                self.inject.batch(|buf, seq| {
                    codec::encode_exp_delete(buf, &x, seq())
                })?
            }
        };
        // A delete of something already gone is not a failure.
        Ok(errs.first().copied().filter(|&e| e != 2).unwrap_or(0))
    }
}

fn expect_of_key(k: &ExpKey) -> Expect {
    let mut x = Expect::new(k.master, k.tuple, k.mask);
    x.zone = k.zone;
    x
}

/// A tuple for error messages.
pub fn tuple_text(t: &Tuple) -> String {
    match t.l4 {
        L4::Ports { src, dst } => {
            format!("{} {}:{} -> {}:{}", t.proto, t.src, src, t.dst, dst)
        }
        _ => format!("{} {} -> {}", t.proto, t.src, t.dst),
    }
}
