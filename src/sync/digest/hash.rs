//! The pure half of anti-entropy: where a key sits in the digest tree,
//! what an entry hashes to, and the digest of a table.
//!
//! Hashes must be equal on every node and build, so nothing here uses
//! std's `RandomState`: FNV-1a 64 over the bytes, then murmur3's 64-bit
//! finaliser, whose avalanche makes the top bits (the position) as good
//! as the low ones. Two domains (a seed each) keep a key's hash apart
//! from its entry's. They are not keyed: an attacker who chooses tuples
//! could make two keys collide, which at worst lets one stale entry
//! survive a Prune (only liveness; a forged datagram does more).

use crate::wire::{FANOUT, Sums};

/// Leaves in a digest: 64 top buckets of 64 leaves.
pub const LEAVES: usize = FANOUT * FANOUT;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const SEED_KEY: u64 = 0x6b65_7973; // "keys"
const SEED_ENTRY: u64 = 0x656e_7472; // "entr"
const SEED_ASK: u64 = 0x6173_6b73; // "asks"

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(FNV_OFFSET ^ seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    });
    fmix64(h ^ bytes.len() as u64)
}

/// The hash of an entry's key encoding: names it in a Prune and places
/// it in the tree.
pub fn key_hash(key: &[u8]) -> u64 {
    hash(SEED_KEY, key)
}

/// The hash of an entry's whole stored encoding (key and value).
pub fn entry_hash(entry: &[u8]) -> u64 {
    hash(SEED_ENTRY, entry)
}

/// The id a `PruneFor` names its DigestSub by: a hash of the sums that
/// DigestSub carried (both ends have them; no id travels with the ask,
/// so a build that predates `PruneFor` asks in the same words).
pub fn ask_id(sums: &Sums) -> u64 {
    sums.0
        .iter()
        .fold(SEED_ASK, |h, s| fmix64(h ^ s).wrapping_add(FNV_PRIME))
}

/// The own name of a node's `n`th numbered ask (`DigestSubFor`): unique
/// for a `seed` (the mix is a bijection), and unlike another life's
/// names, whose seed was another.
pub fn numbered_ask(seed: u64, n: u64) -> u64 {
    fmix64(seed.wrapping_add(n))
}

/// A key hash's (top bucket, leaf): its top 6 bits, then the next 6.
pub fn leaf_of(key_hash: u64) -> (u8, u8) {
    ((key_hash >> 58) as u8, ((key_hash >> 52) & 63) as u8)
}

/// The (top bucket, leaf) of a key encoding.
pub fn position(key: &[u8]) -> (u8, u8) {
    leaf_of(key_hash(key))
}

/// The key hashes a leaf holds: a contiguous range.
pub fn leaf_range(bucket: u8, sub: u8) -> (u64, u64) {
    let lo = (u64::from(bucket & 63) << 58) | (u64::from(sub & 63) << 52);
    (lo, lo | ((1 << 52) - 1))
}

/// The digest of one table: a wrapping sum of entry hashes per leaf (a
/// sum, not a XOR, so two equal entries never cancel). A top bucket's sum
/// is the sum of its leaves.
#[derive(Clone, PartialEq, Eq)]
pub struct Digest {
    leaves: Box<[u64]>,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({:?})", self.top())
    }
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            leaves: vec![0; LEAVES].into_boxed_slice(),
        }
    }
}

impl Digest {
    /// The digest of `(key bytes, entry bytes)` pairs, in any order.
    pub fn of<'a>(
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Digest {
        let mut d = Digest::default();
        for (key, entry) in entries {
            d.add(key, entry);
        }
        d
    }

    /// Counts one entry in.
    pub fn add(&mut self, key: &[u8], entry: &[u8]) {
        let (b, s) = position(key);
        let leaf = &mut self.leaves[usize::from(b) * FANOUT + usize::from(s)];
        *leaf = leaf.wrapping_add(entry_hash(entry));
    }

    /// The 64 top bucket sums (what a DigestTop carries).
    pub fn top(&self) -> Sums {
        let mut top = [0u64; FANOUT];
        for (t, leaves) in top.iter_mut().zip(self.leaves.chunks_exact(FANOUT))
        {
            *t = leaves.iter().fold(0, |a, l| a.wrapping_add(*l));
        }
        Sums(top)
    }

    /// The 64 leaf sums of top bucket `bucket` (what a DigestSub
    /// carries); all zero for a bucket out of range.
    pub fn subs(&self, bucket: u8) -> Sums {
        let mut subs = [0u64; FANOUT];
        let b = usize::from(bucket);
        if b < FANOUT {
            subs.copy_from_slice(&self.leaves[b * FANOUT..(b + 1) * FANOUT]);
        }
        Sums(subs)
    }
}

/// The indices where two sum arrays differ, from `start` round (so a
/// bounded caller does not always serve the same buckets first).
pub fn differing<'a>(
    a: &'a Sums,
    b: &'a Sums,
    start: usize,
) -> impl Iterator<Item = u8> + 'a {
    (0..FANOUT)
        .map(move |i| (i + start) % FANOUT)
        .filter(move |i| a.0[*i] != b.0[*i])
        .map(|i| i as u8)
}

/// The key hashes of the entries in leaf (`bucket`, `sub`), given `(key
/// bytes)` of a table, sorted.
pub fn keys_in_leaf<'a>(
    keys: impl IntoIterator<Item = &'a [u8]>,
    bucket: u8,
    sub: u8,
) -> Vec<u64> {
    let mut v: Vec<u64> = keys
        .into_iter()
        .map(key_hash)
        .filter(|h| leaf_of(*h) == (bucket, sub))
        .collect();
    v.sort_unstable();
    v
}

/// Whether a Prune (`bucket`, `sub`, `lo..=hi`, sorted `keep`) condemns
/// an entry with key hash `kh`: it lies in that leaf and that range, and
/// is not kept. Nothing outside the leaf is ever condemned, whatever the
/// range says.
pub fn condemned(
    kh: u64,
    bucket: u8,
    sub: u8,
    lo: u64,
    hi: u64,
    keep: &[u64],
) -> bool {
    leaf_of(kh) == (bucket, sub)
        && (lo..=hi).contains(&kh)
        && keep.binary_search(&kh).is_err()
}

/// The Prune ranges for a leaf holding sorted key hashes `keep`: chunks
/// of at most `max` hashes, whose ranges cover the whole leaf without
/// overlap (so every part is complete for its range).
pub fn prune_parts(
    bucket: u8,
    sub: u8,
    keep: &[u64],
    max: usize,
) -> Vec<(u64, u64, Vec<u64>)> {
    let (leaf_lo, leaf_hi) = leaf_range(bucket, sub);
    split_prune(leaf_lo, leaf_hi, keep, max)
}

/// One Prune's range `lo..=hi` and key hashes `keep` as parts of at most
/// `max` hashes, whose ranges cover `lo..=hi` without overlap (every part
/// complete for its range: together they condemn what the whole did).
/// A hash outside the range keeps nothing and is left out.
pub fn split_prune(
    lo: u64,
    hi: u64,
    keep: &[u64],
    max: usize,
) -> Vec<(u64, u64, Vec<u64>)> {
    let max = max.max(1);
    let mut keep: Vec<u64> = keep
        .iter()
        .copied()
        .filter(|h| (lo..=hi).contains(h))
        .collect();
    if keep.is_empty() {
        return vec![(lo, hi, Vec::new())];
    }
    keep.sort_unstable();
    // Equal hashes (a collision) would make an empty range.
    keep.dedup();
    let chunks: Vec<&[u64]> = keep.chunks(max).collect();
    let mut parts = Vec::with_capacity(chunks.len());
    let mut from = lo;
    for (i, c) in chunks.iter().enumerate() {
        // A part ends just before the next part's first hash.
        let to = match chunks.get(i + 1) {
            Some(next) => next[0] - 1,
            None => hi,
        };
        parts.push((from, to, c.to_vec()));
        from = to.wrapping_add(1);
    }
    parts
}
