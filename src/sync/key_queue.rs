//! The keys waiting to be sent, as both protocols' engines queue them:
//! changes in order, repeated changes to one key coalescing (one message
//! carries the newest state, and whether the peer must be told it is new),
//! and a bulk's keys in a queue of their own.
//!
//! A bulk (`-B`, a resync's answer, a protocol switch) is every key of
//! the cache: its keys wait as the cache's list of them, with no index.
//! Coalesced into the key queue, 100 000 of them took the list, the queue
//! and its index, each grown by doubling: 18.6 MB of peak RSS with
//! ctsyncd's protocol and 38.7 MB with conntrackd's
//! (`tests/memory_release.rs`), against the list's 4.7. A key goes once
//! all the same, where it comes first: a bulk leaves out the keys queued
//! before it, and a key queued since goes with the bulk when the bulk
//! reaches it (its place in the key queue is then passed over).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use super::{Key, Stats};

/// Capacity kept when the queue drains (see
/// [`KeyQueue::release_if_drained`]); steady traffic stays below it.
pub(crate) const KEEP_CAPACITY: usize = 4096;

/// Where a taken key was, for [`KeyQueue::put_back`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Keys,
    Bulk,
    /// The bulk, for a key also waiting in the key queue (queued since
    /// the bulk began), whose place there is then passed over.
    BulkTook,
}

/// The keys waiting (see the module's header).
#[derive(Debug, Default)]
pub(crate) struct KeyQueue {
    /// Keys waiting to be sent, in order…
    keys: VecDeque<Key>,
    /// …and for each, whether the peer must be told it is new. A key in
    /// `keys` without one was taken along by the bulk.
    queued: HashMap<Key, bool>,
    /// A bulk's keys, sent after the first `ahead` of `keys` (queued
    /// before the bulk began) and before the rest.
    bulk: VecDeque<Key>,
    ahead: usize,
    /// Most keys `keys` holds (a bulk is the cache's, bounded by it).
    capacity: usize,
}

impl KeyQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        KeyQueue {
            capacity,
            ..Default::default()
        }
    }

    /// Keys waiting, a bulk's included.
    pub(crate) fn len(&self) -> usize {
        self.keys.len() + self.bulk.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.bulk.is_empty()
    }

    /// Queues `key` (`new`: the peer must create it). False when the
    /// queue is full (counted).
    pub(crate) fn enqueue(
        &mut self,
        key: Key,
        new: bool,
        stats: &mut Stats,
    ) -> bool {
        // One lookup for both cases (a conntrack's key is copied, not
        // allocated).
        match self.queued.entry(key.clone()) {
            Entry::Occupied(mut o) => {
                *o.get_mut() |= new;
                true
            }
            Entry::Vacant(_) if self.keys.len() >= self.capacity => {
                stats.tx_queue_full += 1;
                false
            }
            Entry::Vacant(v) => {
                v.insert(new);
                self.keys.push_back(key);
                true
            }
        }
    }

    /// Queues every key of the cache (`keys`, in the order to send them),
    /// after the keys already waiting, which it leaves out: a bulk. One
    /// under way is replaced (the new one holds all it had left to send).
    pub(crate) fn bulk(&mut self, mut keys: Vec<Key>) {
        if !self.queued.is_empty() {
            keys.retain(|k| !self.queued.contains_key(k));
        }
        self.ahead = self.keys.len();
        self.bulk = VecDeque::from(keys);
    }

    /// The next key to send and whether it is new: the keys queued before
    /// the bulk, the bulk's, then the rest. A key the bulk took along is
    /// passed over in the key queue (it has no flag in `queued`: every
    /// key waiting there has one). `None`: none waits.
    pub(crate) fn take(&mut self) -> Option<(Key, bool, Place)> {
        loop {
            if self.ahead > 0 || self.bulk.is_empty() {
                let key = self.keys.pop_front()?;
                self.ahead = self.ahead.saturating_sub(1);
                if let Some(new) = self.queued.remove(&key) {
                    return Some((key, new, Place::Keys));
                }
            } else {
                let key = self.bulk.pop_front()?;
                return Some(match self.queued.remove(&key) {
                    Some(new) => (key, new, Place::BulkTook),
                    None => (key, false, Place::Bulk),
                });
            }
        }
    }

    /// Puts back a key [`KeyQueue::take`] took, where it was.
    pub(crate) fn put_back(&mut self, key: Key, new: bool, from: Place) {
        match from {
            Place::Keys => {
                if !self.bulk.is_empty() {
                    self.ahead += 1;
                }
                self.queued.insert(key.clone(), new);
                self.keys.push_front(key);
            }
            Place::BulkTook => {
                self.queued.insert(key.clone(), new);
                self.bulk.push_front(key);
            }
            Place::Bulk => self.bulk.push_front(key),
        }
    }

    /// A burst (a bulk send, a resync) grows the key queue to its size,
    /// and neither container gives memory back on its own: once the
    /// queue is empty again, large ones are dropped, so a router's RSS
    /// after a burst of 100 000 is not the burst's (about 12 MB).
    pub(crate) fn release_if_drained(&mut self) {
        if self.keys.is_empty() && self.keys.capacity() > KEEP_CAPACITY {
            self.keys = VecDeque::new();
        }
        if self.queued.is_empty() && self.queued.capacity() > KEEP_CAPACITY {
            self.queued = HashMap::new();
        }
        if self.bulk.is_empty() && self.bulk.capacity() > KEEP_CAPACITY {
            self.bulk = VecDeque::new();
        }
    }

    /// The key queue's and its index's capacities.
    #[cfg(test)]
    pub(crate) fn capacities(&self) -> (usize, usize) {
        (self.keys.capacity(), self.queued.capacity())
    }

    /// Drops the waiting keys `which` names (the internal cache forgot
    /// them: sent now, each would read as gone and go as a DEL). Returns
    /// how many.
    pub(crate) fn forget(&mut self, which: &dyn Fn(&Key) -> bool) -> usize {
        let ahead = self.keys.iter().take(self.ahead).filter(|k| which(k));
        self.ahead -= ahead.count();
        // A key in both queues counts once (the key queue's count).
        let mut dropped = 0;
        let queued = &mut self.queued;
        self.bulk.retain(|k| {
            let drop = which(k);
            dropped += usize::from(drop && !queued.contains_key(k));
            !drop
        });
        self.keys.retain(|k| {
            let drop = which(k);
            // Passed over already (the bulk took it): not counted.
            dropped += usize::from(drop && queued.remove(k).is_some());
            !drop
        });
        dropped
    }

    /// Every waiting key with its "new" flag, in order, emptying the
    /// queue (a protocol switch hands them to the other engine).
    pub(crate) fn drain(&mut self) -> Vec<(Key, bool)> {
        let mut drained = Vec::with_capacity(self.len());
        while let Some((key, new, _)) = self.take() {
            drained.push((key, new));
        }
        drained
    }
}
