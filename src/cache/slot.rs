//! One cached entry as the cache's table holds it: 16 bytes on every
//! target.
//!
//! Owns: the packing of a slot's six fields into one 128-bit word: the
//! encoding's slab cell (32 bits) and length (9 bits: up to the slab's
//! largest cell, or "boxed"), the length of the key's encoding at its
//! start (8 bits), when the entry was inserted and last updated (39
//! bits each: milliseconds of daemon uptime, 17 years' worth; later times
//! stay at the largest, see [`TIME_MAX`]), and a mark (1 bit: a resync
//! marks what the kernel still holds, then sweeps the rest, without a
//! set of 200 000 keys beside the cache).
//!
//! Why: the table's buckets were more than half of a cache's memory (at
//! most 7/8 of them hold a slot): a boxed encoding's pointer and two
//! timestamps took 32 bytes (24 on a 32-bit target).

use super::slab::{Handle, MAX_SMALL, Slab};
use crate::time::Instant;

const CELL_AT: u32 = 0;
const CELL_BITS: u32 = 32;
const LEN_AT: u32 = CELL_AT + CELL_BITS;
const LEN_BITS: u32 = 9;
const KEY_AT: u32 = LEN_AT + LEN_BITS;
const KEY_BITS: u32 = 8;
const SINCE_AT: u32 = KEY_AT + KEY_BITS;
const TIME_BITS: u32 = 39;
const UPDATED_AT: u32 = SINCE_AT + TIME_BITS;
const MARK_AT: u32 = UPDATED_AT + TIME_BITS;
const _: () = assert!(MARK_AT < 128);

/// The length code of an encoding boxed outside the slab's cells (whose
/// length the box knows).
const LEN_BOXED: u32 = (1 << LEN_BITS) - 1;
const _: () = assert!(MAX_SMALL < LEN_BOXED as usize);

/// The latest time a slot can hold (17.4 years after the daemon started);
/// a later one is held as this.
pub(super) const TIME_MAX: u64 = (1 << TIME_BITS) - 1;

/// The longest key encoding a slot can give the length of.
pub(super) const MAX_KEY_LEN: usize = (1 << KEY_BITS) - 1;

#[derive(Debug, Clone, Copy)]
pub(super) struct Slot(u128);

fn time(t: Instant) -> u64 {
    t.millis().min(TIME_MAX)
}

impl Slot {
    /// A new entry's slot. `key_len` must be at most [`MAX_KEY_LEN`] (the
    /// cache refuses longer keys before it gets here).
    pub(super) fn holding(key_len: u8, handle: Handle, now: Instant) -> Slot {
        let mut s = Slot(0);
        s.replace(key_len, handle);
        s.set_since(now);
        s.set_updated(now);
        s
    }

    fn get(&self, at: u32, bits: u32) -> u64 {
        ((self.0 >> at) & ((1 << bits) - 1)) as u64
    }

    fn set(&mut self, at: u32, bits: u32, v: u64) {
        let mask = ((1u128 << bits) - 1) << at;
        self.0 = (self.0 & !mask) | ((u128::from(v) << at) & mask);
    }

    pub(super) fn handle(&self) -> Handle {
        Handle::new(
            self.get(CELL_AT, CELL_BITS) as u32,
            self.get(LEN_AT, LEN_BITS) as u32,
        )
    }

    /// The entry's encoding (key first).
    pub(super) fn encoded<'s>(&self, slab: &'s Slab) -> &'s [u8] {
        slab.get(self.handle())
    }

    /// The key's encoding.
    pub(super) fn key<'s>(&self, slab: &'s Slab) -> &'s [u8] {
        self.encoded(slab).get(..self.key_len()).unwrap_or_default()
    }

    pub(super) fn key_len(&self) -> usize {
        self.get(KEY_AT, KEY_BITS) as usize
    }

    pub(super) fn since(&self) -> Instant {
        Instant::from_millis(self.get(SINCE_AT, TIME_BITS))
    }

    pub(super) fn updated(&self) -> Instant {
        Instant::from_millis(self.get(UPDATED_AT, TIME_BITS))
    }

    pub(super) fn set_since(&mut self, t: Instant) {
        self.set(SINCE_AT, TIME_BITS, time(t));
    }

    pub(super) fn set_updated(&mut self, t: Instant) {
        self.set(UPDATED_AT, TIME_BITS, time(t));
    }

    pub(super) fn marked(&self) -> bool {
        self.get(MARK_AT, 1) == 1
    }

    pub(super) fn set_mark(&mut self, on: bool) {
        self.set(MARK_AT, 1, u64::from(on));
    }

    /// A new encoding (whose key is the same), now at `handle`. A boxed
    /// encoding's length is not kept: the box has it.
    pub(super) fn replace(&mut self, key_len: u8, handle: Handle) {
        let len = (handle.len() as u64).min(u64::from(LEN_BOXED));
        self.set(CELL_AT, CELL_BITS, u64::from(handle.cell()));
        self.set(LEN_AT, LEN_BITS, len);
        self.set(KEY_AT, KEY_BITS, u64::from(key_len));
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sixteen_bytes_and_every_field_round_trips() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        let h = Handle::new(u32::MAX - 1, MAX_SMALL as u32);
        let mut s = Slot::holding(255, h, Instant::from_millis(TIME_MAX));
        assert_eq!(s.handle(), h);
        assert_eq!(s.key_len(), MAX_KEY_LEN);
        assert_eq!(
            (s.since(), s.updated()),
            (
                Instant::from_millis(TIME_MAX),
                Instant::from_millis(TIME_MAX)
            )
        );
        s.set_updated(Instant::from_millis(7));
        assert_eq!(
            (s.since(), s.updated()),
            (Instant::from_millis(TIME_MAX), Instant::from_millis(7))
        );
        s.set_since(Instant::from_millis(3));
        assert_eq!(
            (s.since(), s.updated()),
            (Instant::from_millis(3), Instant::from_millis(7))
        );
        assert!(!s.marked());
        s.set_mark(true);
        assert!(s.marked());
        assert_eq!(
            (s.since(), s.updated()),
            (Instant::from_millis(3), Instant::from_millis(7))
        );
        assert_eq!((s.handle(), s.key_len()), (h, MAX_KEY_LEN));
        let h2 = Handle::new(5, 1);
        s.replace(9, h2);
        assert_eq!((s.handle(), s.key_len()), (h2, 9));
        assert_eq!(
            (s.since(), s.updated()),
            (Instant::from_millis(3), Instant::from_millis(7))
        );
        // A new encoding (an update) keeps the mark; it is cleared alone.
        assert!(s.marked());
        s.set_mark(false);
        assert!(!s.marked());
        assert_eq!((s.handle(), s.key_len()), (h2, 9));
        // Later than 17 years: held as the latest; nothing else changes.
        s.set_updated(Instant::from_millis(u64::MAX));
        assert_eq!(s.updated(), Instant::from_millis(TIME_MAX));
        assert_eq!(
            (s.handle(), s.key_len(), s.since()),
            (h2, 9, Instant::from_millis(3))
        );
        assert!(!s.marked());
    }

    #[test]
    fn a_boxed_encoding_keeps_its_cell() {
        let mut slab = Slab::new();
        let big: Vec<u8> = (0..2000).map(|i| i as u8).collect();
        let h = slab.alloc(&big).unwrap();
        let s = Slot::holding(4, h, Instant::from_millis(1));
        assert_eq!(s.encoded(&slab), &big[..]);
        assert_eq!(s.key(&slab), &big[..4]);
    }
}
