//! The anti-entropy messages' payloads: which table a digest is about,
//! 64 bucket sums, and a leaf's list of key hashes.
//!
//! Compactness: postcard writes a `u64` as a varint, and a hash sum is
//! random, so most would take 10 bytes. [`Sums`] is written instead as a
//! byte string: an 8-byte mask of the non-zero sums, then those sums as
//! 8 fixed bytes each (little-endian). A full bucket costs 2 + 8 + 512
//! bytes (worst case), an empty table 1 + 8. [`KeyHashes`] is a byte
//! string of 8-byte hashes.
//!
//! Decoding rejects what does not have exactly that shape, so a forged
//! payload is refused as malformed, never misread.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The replicated tables a digest can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Table {
    Ct,
    Exp,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Ct, Table::Exp];

    /// 0 or 1, for per-table arrays.
    pub fn index(self) -> usize {
        match self {
            Table::Ct => 0,
            Table::Exp => 1,
        }
    }
}

/// Buckets per digest level (top buckets, and leaves per bucket).
pub const FANOUT: usize = 64;

/// Worst-case encoded size of [`Sums`]: length varint, mask, 64 sums.
/// With its message's 2 or 3 bytes more it fits any plain datagram, and
/// a sealed one from 579 bytes: on a smaller sealed link a dense digest
/// is dropped and counted (`too_big`), a wire change away from fitting.
pub const SUMS_MAX_LEN: usize = 2 + 8 + 8 * FANOUT;

/// Most key hashes one [`KeyHashes`] may carry on the wire (so a Prune
/// fits one 1472-byte datagram with its header and a seal). A smaller
/// datagram carries fewer: see [`prune_keep_max`].
pub const KEEP_MAX: usize = 160;

/// Bytes a Prune takes besides its hashes, at most: its variant, table,
/// bucket and sub (one each), `lo` and `hi` (varints, up to 10 each), the
/// hash list's length (a varint: 2 bytes up to [`KEEP_MAX`] hashes), and
/// for a `PruneFor` its `ask` (a varint, up to 10).
pub const PRUNE_FIXED_MAX: usize = 4 + 10 + 10 + 2 + 10;

/// Most key hashes a Prune may carry to fit `room` bytes of a datagram's
/// body (at least one, at most [`KEEP_MAX`]). The link's datagram may be
/// clamped down to 576 bytes, where [`KEEP_MAX`] hashes do not fit.
pub const fn prune_keep_max(room: usize) -> usize {
    let n = room.saturating_sub(PRUNE_FIXED_MAX) / 8;
    if n < 1 {
        1
    } else if n > KEEP_MAX {
        KEEP_MAX
    } else {
        n
    }
}

/// 64 wrapping sums of entry hashes (one per bucket or leaf).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sums(pub [u64; FANOUT]);

impl fmt::Debug for Sums {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonzero = self.0.iter().filter(|s| **s != 0).count();
        write!(f, "Sums({nonzero} non-zero)")
    }
}

impl Serialize for Sums {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = Vec::with_capacity(SUMS_MAX_LEN);
        let mask = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .fold(0u64, |m, (i, _)| m | 1 << i);
        out.extend_from_slice(&mask.to_le_bytes());
        for v in self.0.iter().filter(|v| **v != 0) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        s.serialize_bytes(&out)
    }
}

impl<'de> Deserialize<'de> for Sums {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sums, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Sums;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mask and the non-zero sums")
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Sums, E> {
                let (mask, rest) = b
                    .split_first_chunk::<8>()
                    .ok_or_else(|| E::custom("short sums"))?;
                let mask = u64::from_le_bytes(*mask);
                if rest.len() != 8 * mask.count_ones() as usize {
                    return Err(E::custom("sums do not match their mask"));
                }
                let mut sums = [0u64; FANOUT];
                let mut vals = rest.chunks_exact(8);
                for (i, s) in sums.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        // The length check above guarantees a chunk.
                        let c = vals.next().unwrap_or(&[0; 8]);
                        let v =
                            u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                        // A zero marked present is not the canonical form.
                        if v == 0 {
                            return Err(E::custom("zero sum marked present"));
                        }
                        *s = v;
                    }
                }
                Ok(Sums(sums))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Key hashes, 8 fixed bytes each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyHashes(pub Vec<u64>);

impl Serialize for KeyHashes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let out: Vec<u8> =
            self.0.iter().flat_map(|h| h.to_le_bytes()).collect();
        s.serialize_bytes(&out)
    }
}

impl<'de> Deserialize<'de> for KeyHashes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyHashes, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyHashes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("8-byte key hashes")
            }
            fn visit_bytes<E: de::Error>(
                self,
                b: &[u8],
            ) -> Result<KeyHashes, E> {
                if b.len() % 8 != 0 || b.len() > 8 * KEEP_MAX {
                    return Err(E::custom("not a list of key hashes"));
                }
                Ok(KeyHashes(
                    b.chunks_exact(8)
                        .map(|c| {
                            u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
                        })
                        .collect(),
                ))
            }
        }
        d.deserialize_bytes(V)
    }
}
