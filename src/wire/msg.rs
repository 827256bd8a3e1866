//! The messages of the replication protocol and their compact forms.
//!
//! Compactness (fewer bytes per replicated entry than conntrackd's TLVs):
//! postcard varints; addresses as 4/16 raw bytes; the reply tuple only when
//! NAT makes it differ from the inverse of the original; rarely-set fields
//! (mark, secmark, helper, master, seq-adj, labels) behind one presence
//! byte. A data message always carries the *current* state of its entry
//! (conntrackd's "rebuild the message at transmit time"), so a resent
//! message can never roll a peer back to an older state.

use serde::{Deserialize, Serialize};

use super::Seq;
use super::digest::{KeyHashes, Sums, Table};
use crate::model::{
    Conntrack, Expect, ExpectFn, ExpectNat, ProtoInfo, SeqAdj, Tuple,
};
use crate::model::{HelperName, TUPLE_PACKED_MAX};

/// One protocol message. Variants are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// A conntrack the peer has not been told about before.
    CtNew(WireCt),
    /// The current state of a conntrack (creates it when unknown).
    CtUpd(WireCt),
    /// The conntrack is gone.
    CtDel(CtKey),
    ExpNew(WireExp),
    ExpUpd(WireExp),
    ExpDel(ExpKey),
    /// "I have every data message from `from` to `to`" (inclusive).
    Ack {
        from: Seq,
        to: Seq,
    },
    /// "Send again what you have from `from` to `to`".
    Nack {
        from: Seq,
        to: Seq,
    },
    /// Keep-alive; `next` is the sequence number the sender will use next,
    /// so a lost last message is noticed within one alive period.
    Alive {
        next: Seq,
    },
    /// "Send me your whole internal cache" (`-n`, StartupResync).
    Resync,
    /// "Prove you are live": a session we have not confirmed (a new or
    /// restarted peer, or a known one whose numbering jumped out of the
    /// window) is asked to echo `nonce`.
    Challenge {
        nonce: u64,
    },
    /// The answer to a [`Msg::Challenge`]: its `nonce`, the oldest number
    /// the sender can still resend (`from`) and the number it will use
    /// next. The asker resumes its tracking there.
    Response {
        echo: u64,
        from: Seq,
        next: Seq,
    },
    /// Anti-entropy, sender about its internal cache: the sums of its
    /// entry hashes per top bucket (see `sync::digest`).
    DigestTop {
        table: Table,
        sums: Sums,
    },
    /// Anti-entropy, receiver about its external cache: the leaf sums of
    /// one top bucket whose sum differed.
    DigestSub {
        table: Table,
        bucket: u8,
        sums: Sums,
    },
    /// Anti-entropy: "of your external entries in leaf (`bucket`, `sub`)
    /// whose key hash lies in `lo..=hi`, keep only those in `keep`". The
    /// range lets a long list span several messages, each one complete
    /// for its range.
    Prune {
        table: Table,
        bucket: u8,
        sub: u8,
        lo: u64,
        hi: u64,
        keep: KeyHashes,
    },
    /// "Your resync request `resync` is answered in full: everything it
    /// brought you is acknowledged" (ctsyncd peers only; a node waiting
    /// for it tells keepalived it is ready, `-s ready`).
    Synced {
        resync: Seq,
    },
    /// A [`Msg::Prune`] that names the DigestSub it answers: `ask` is the
    /// [`Msg::DigestSubFor`]'s own, or `sync::digest::ask_id` of a plain
    /// DigestSub's sums. The receiver then spares what it wrote since
    /// *that* ask (within a period; for a sums' hash, the earliest of the
    /// asks with equal sums), even after it asked again (a plain Prune is
    /// checked against the latest ask for its bucket).
    /// Sent only to a peer whose datagrams carry [`super::flag::PRUNE_FOR`].
    PruneFor {
        ask: u64,
        table: Table,
        bucket: u8,
        sub: u8,
        lo: u64,
        hi: u64,
        keep: KeyHashes,
    },
    /// A [`Msg::DigestSub`] that names itself: `ask` is unique to this ask
    /// (the hash of its sums is shared by every ask with equal sums), and
    /// the PruneFor answering it names it. Sent only when every peer's
    /// datagrams carry [`super::flag::DIGEST_SUB_FOR`].
    DigestSubFor {
        ask: u64,
        table: Table,
        bucket: u8,
        sums: Sums,
    },
}

impl Msg {
    /// Data messages are sequenced (and, in FT-FW, acknowledged).
    pub fn is_data(&self) -> bool {
        !matches!(
            self,
            Msg::Ack { .. }
                | Msg::Nack { .. }
                | Msg::Alive { .. }
                | Msg::Challenge { .. }
                | Msg::Response { .. }
                | Msg::DigestTop { .. }
                | Msg::DigestSub { .. }
                | Msg::Prune { .. }
                | Msg::Synced { .. }
                | Msg::PruneFor { .. }
                | Msg::DigestSubFor { .. }
        )
    }

    /// A Prune of either kind, taken apart (`ask` None for a plain one);
    /// None for any other message.
    pub fn as_prune(&self) -> Option<Prune> {
        match self {
            Msg::Prune {
                table,
                bucket,
                sub,
                lo,
                hi,
                keep,
            } => Some(Prune {
                ask: None,
                table: *table,
                bucket: *bucket,
                sub: *sub,
                lo: *lo,
                hi: *hi,
                keep: keep.clone(),
            }),
            Msg::PruneFor {
                ask,
                table,
                bucket,
                sub,
                lo,
                hi,
                keep,
            } => Some(Prune {
                ask: Some(*ask),
                table: *table,
                bucket: *bucket,
                sub: *sub,
                lo: *lo,
                hi: *hi,
                keep: keep.clone(),
            }),
            _ => None,
        }
    }
}

/// A Prune's fields whichever its kind: a [`Msg::PruneFor`] when it names
/// an ask, a plain [`Msg::Prune`] when not (see [`Msg::as_prune`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prune {
    pub ask: Option<u64>,
    pub table: Table,
    pub bucket: u8,
    pub sub: u8,
    pub lo: u64,
    pub hi: u64,
    pub keep: KeyHashes,
}

impl From<Prune> for Msg {
    fn from(p: Prune) -> Msg {
        let Prune {
            ask,
            table,
            bucket,
            sub,
            lo,
            hi,
            keep,
        } = p;
        match ask {
            Some(ask) => Msg::PruneFor {
                ask,
                table,
                bucket,
                sub,
                lo,
                hi,
                keep,
            },
            None => Msg::Prune {
                table,
                bucket,
                sub,
                lo,
                hi,
                keep,
            },
        }
    }
}

/// Identity of a conntrack on the wire and in caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtKey {
    pub orig: Tuple,
    pub zone: u16,
}

impl std::hash::Hash for CtKey {
    /// The packed tuple and the zone in one `write` (see `Tuple`'s hash).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (tuple, n) = self.orig.packed();
        let mut b = [0u8; TUPLE_PACKED_MAX + 2];
        b[..n].copy_from_slice(&tuple[..n]);
        // Right after the tuple: its packing tells its own length, so
        // the zone's bytes cannot be taken for the tuple's.
        b[n..n + 2].copy_from_slice(&self.zone.to_be_bytes());
        state.write(&b[..n + 2]);
    }
}

/// Identity of an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExpKey {
    pub master: Tuple,
    pub tuple: Tuple,
    pub mask: Tuple,
    pub zone: u16,
}

/// The fields most entries leave at their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CtExtra {
    pub mark: u32,
    pub secmark: u32,
    pub helper: Option<HelperName>,
    pub master: Option<Tuple>,
    pub seq_adj: Option<[SeqAdj; 2]>,
    pub labels: Option<[u8; 16]>,
}

/// A conntrack as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCt {
    pub key: CtKey,
    /// Only when it is not the inverse of the original (NAT).
    pub reply: Option<Tuple>,
    pub status: u32,
    pub timeout: Option<u32>,
    pub proto: ProtoInfo,
    pub extra: Option<CtExtra>,
}

/// An expectation as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireExp {
    pub key: ExpKey,
    pub timeout: Option<u32>,
    pub flags: u32,
    pub class: u32,
    pub helper: Option<HelperName>,
    pub nat: Option<ExpectNat>,
    pub func: Option<ExpectFn>,
}

pub fn ct_key_of(ct: &Conntrack) -> CtKey {
    CtKey {
        orig: ct.orig,
        zone: ct.zone,
    }
}

pub fn exp_key_of(x: &Expect) -> ExpKey {
    ExpKey {
        master: x.master,
        tuple: x.tuple,
        mask: x.mask,
        zone: x.zone,
    }
}

/// The wire form of `ct`.
pub fn to_wire_ct(ct: &Conntrack) -> WireCt {
    let extra = CtExtra {
        mark: ct.mark,
        secmark: ct.secmark,
        helper: ct.helper.clone(),
        master: ct.master,
        seq_adj: ct.seq_adj,
        labels: ct.labels,
    };
    WireCt {
        key: ct_key_of(ct),
        reply: ct.reply.filter(|r| *r != ct.orig.inverse()),
        status: ct.status,
        timeout: ct.timeout,
        proto: ct.proto_info,
        extra: (extra != CtExtra::default()).then_some(extra),
    }
}

/// The model value of a received conntrack.
pub fn from_wire_ct(w: WireCt) -> Conntrack {
    let mut ct = Conntrack::new(w.key.orig);
    ct.zone = w.key.zone;
    ct.reply = Some(w.reply.unwrap_or_else(|| w.key.orig.inverse()));
    ct.status = w.status;
    ct.timeout = w.timeout;
    ct.proto_info = w.proto;
    if let Some(e) = w.extra {
        ct.mark = e.mark;
        ct.secmark = e.secmark;
        ct.helper = e.helper;
        ct.master = e.master;
        ct.seq_adj = e.seq_adj;
        ct.labels = e.labels;
    }
    ct
}

pub fn to_wire_exp(x: &Expect) -> WireExp {
    WireExp {
        key: exp_key_of(x),
        timeout: x.timeout,
        flags: x.flags,
        class: x.class,
        helper: x.helper.clone(),
        nat: x.nat,
        func: x.func.clone(),
    }
}

pub fn from_wire_exp(w: WireExp) -> Expect {
    Expect {
        master: w.key.master,
        tuple: w.key.tuple,
        mask: w.key.mask,
        timeout: w.timeout,
        zone: w.key.zone,
        flags: w.flags,
        class: w.class,
        helper: w.helper,
        nat: w.nat,
        func: w.func,
        id: 0,
    }
}
