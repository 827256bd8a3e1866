//! The internal caches as the sync engine reads them: its [`Source`] of
//! current states, stored wire encodings and keys.

use crate::cache::Cache;
use crate::model::{Conntrack, Expect};
use crate::sync::{Key, Source, State};

/// The internal caches as the engine's [`Source`].
pub struct Internal<'a> {
    pub ct: &'a Cache<Conntrack>,
    pub exp: &'a Cache<Expect>,
    /// `DisableInternalCache`: the caches only stage events until sent.
    pub bypass: bool,
}

impl Source for Internal<'_> {
    fn current(&self, key: &Key) -> Option<State> {
        match key {
            Key::Ct(k) => self.ct.get(k).map(|e| State::Ct(e.value)),
            Key::Exp(k) => self.exp.get(k).map(|e| State::Exp(e.value)),
        }
    }

    fn encoded(&self, key: &Key) -> Option<&[u8]> {
        // The caches hold the wire's encoding (cache::stored).
        match key {
            Key::Ct(k) => self.ct.get_encoded(k),
            Key::Exp(k) => self.exp.get_encoded(k),
        }
    }

    fn in_kernel(&self) -> bool {
        self.bypass
    }

    fn keys(&self) -> Vec<Key> {
        // Conntracks first: masters reach the peer before expectations.
        // Sized once: a bulk's queue is this list (see `sync::tx`).
        let mut v = Vec::with_capacity(self.ct.len() + self.exp.len());
        v.extend(self.ct.keys().map(Key::Ct));
        v.extend(self.exp.keys().map(|k| Key::Exp(Box::new(k))));
        v
    }
}
