//! What the engine exchanges with the caches: the [`Key`]s it queues, the
//! [`State`] it reads through [`Source`] at transmit time, and the
//! [`Apply`] changes it hands back for the external cache. [`MapSource`]
//! is a plain-map [`Source`] for tests and simulations.

use std::collections::HashMap;

use crate::model::{Conntrack, Expect};
use crate::wire::{self, CtKey, ExpKey};

/// The identity of an entry in the queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Ct(CtKey),
    /// Boxed: expectation keys are large and rare.
    Exp(Box<ExpKey>),
}

impl std::hash::Hash for Key {
    /// The inner key's hash alone, without the variant's: one `write` for
    /// a conntrack (see `Tuple`'s hash). A conntrack and an expectation
    /// hashing alike are still told apart by `Eq`.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Key::Ct(k) => k.hash(state),
            Key::Exp(k) => k.hash(state),
        }
    }
}

/// The current state of an entry, as the internal cache has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ct(Conntrack),
    Exp(Expect),
}

/// The internal cache as the engine sees it.
pub trait Source {
    /// The entry's current state; None when it is gone (a DEL is sent).
    fn current(&self, key: &Key) -> Option<State>;
    /// The entry's current state as the wire encodes its body (the
    /// postcard encoding of its `WireCt` / `WireExp`), when the source
    /// holds it in that form: sending it then needs no decoding. None:
    /// ask [`Source::current`].
    fn encoded(&self, _key: &Key) -> Option<&[u8]> {
        None
    }
    /// Every key, conntracks first (masters reach the peer before their
    /// expectations), for bulk sends and resync answers.
    fn keys(&self) -> Vec<Key>;
    /// Whether the state is the kernel's table, which only a dump reads
    /// (`DisableInternalCache`: the cache just stages events until they
    /// are sent). A bulk send is then the node's to make from a dump
    /// ([`crate::sync::Engine::take_kernel_bulk`]); the keys staged are
    /// not the state.
    fn in_kernel(&self) -> bool {
        false
    }
}

/// A change for the external cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// Replace the entry (`new`) or create/merge it.
    Ct {
        ct: Conntrack,
        new: bool,
    },
    CtDel(CtKey),
    Exp {
        exp: Expect,
        new: bool,
    },
    ExpDel(ExpKey),
}

/// Test and simulation helper: a `Source` over a plain map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MapSource {
    pub cts: HashMap<CtKey, Conntrack>,
    pub exps: HashMap<ExpKey, Expect>,
}

impl Source for MapSource {
    fn current(&self, key: &Key) -> Option<State> {
        match key {
            Key::Ct(k) => self.cts.get(k).cloned().map(State::Ct),
            Key::Exp(k) => self.exps.get(k).cloned().map(State::Exp),
        }
    }

    fn keys(&self) -> Vec<Key> {
        // Sorted, so that simulations are reproducible run to run (map
        // iteration order is random).
        let mut cts: Vec<&CtKey> = self.cts.keys().collect();
        cts.sort_by_cached_key(|k| format!("{k:?}"));
        let mut exps: Vec<&ExpKey> = self.exps.keys().collect();
        exps.sort_by_cached_key(|k| format!("{k:?}"));
        let mut v: Vec<Key> = cts.into_iter().map(|k| Key::Ct(*k)).collect();
        v.extend(exps.into_iter().map(|k| Key::Exp(Box::new(*k))));
        v
    }
}

impl MapSource {
    /// Applies one external-cache change (what a receiver does).
    pub fn apply(&mut self, a: Apply) {
        match a {
            Apply::Ct { ct, .. } => {
                self.cts.insert(wire::ct_key_of(&ct), ct);
            }
            Apply::CtDel(k) => {
                self.cts.remove(&k);
            }
            Apply::Exp { exp, .. } => {
                self.exps.insert(wire::exp_key_of(&exp), exp);
            }
            Apply::ExpDel(k) => {
                self.exps.remove(&k);
            }
        }
    }
}

impl Apply {
    /// The external-cache change a received data message asks for; None
    /// for the messages that change no entry (RESYNC and control).
    pub(crate) fn from_msg(msg: wire::Msg) -> Option<Apply> {
        use wire::Msg;
        Some(match msg {
            Msg::CtNew(w) => Apply::Ct {
                ct: wire::from_wire_ct(w),
                new: true,
            },
            Msg::CtUpd(w) => Apply::Ct {
                ct: wire::from_wire_ct(w),
                new: false,
            },
            Msg::CtDel(k) => Apply::CtDel(k),
            Msg::ExpNew(w) => Apply::Exp {
                exp: wire::from_wire_exp(w),
                new: true,
            },
            Msg::ExpUpd(w) => Apply::Exp {
                exp: wire::from_wire_exp(w),
                new: false,
            },
            Msg::ExpDel(k) => Apply::ExpDel(k),
            Msg::Resync
            | Msg::Challenge { .. }
            | Msg::Response { .. }
            | Msg::Ack { .. }
            | Msg::Nack { .. }
            | Msg::Alive { .. }
            | Msg::DigestTop { .. }
            | Msg::DigestSub { .. }
            | Msg::Prune { .. }
            | Msg::Synced { .. }
            | Msg::PruneFor { .. }
            | Msg::DigestSubFor { .. } => return None,
        })
    }
}
