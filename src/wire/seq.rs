//! Sequence numbers of data messages, ordered the way TCP orders them.
//!
//! A sequence number is a `u32` that wraps. Two numbers are compared by
//! their signed distance (the kernel's `before()`/`after()` in
//! `include/net/tcp.h`, smoltcp's `SeqNumber`): `a < b` when `b` lies
//! 1 to 2³¹ steps ahead of `a`. Exactly 2³¹ apart, each is before the
//! other (as in the kernel), so `a < b` does not then imply `b > a`: the
//! checks that matter bound the distance first (a window far below 2³¹).
//! That order is only meaningful inside a window of 2³¹, so [`Seq`] is
//! `PartialOrd` and never `Ord` (it is not transitive around the circle)
//! and never sorts.
//!
//! On the wire a [`Seq`] is exactly its `u32` (serde-transparent).

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Sub};

use serde::{Deserialize, Serialize};

/// A wrapping sequence number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u32);

impl Seq {
    /// The number after this one.
    pub fn next(self) -> Seq {
        self + 1
    }

    /// The number before this one.
    pub fn prev(self) -> Seq {
        Seq(self.0.wrapping_sub(1))
    }

    /// True when `from <= self <= to` in wrap-aware order.
    pub fn in_range(self, from: Seq, to: Seq) -> bool {
        from <= self && self <= to
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        // The signed distance decides; the bit pattern never does.
        Some((self.0.wrapping_sub(other.0) as i32).cmp(&0))
    }
}

impl Add<u32> for Seq {
    type Output = Seq;

    fn add(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }
}

impl Sub for Seq {
    /// How many steps `rhs` lies behind `self` (modulo 2³²).
    type Output = u32;

    fn sub(self, rhs: Seq) -> u32 {
        self.0.wrapping_sub(rhs.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const MAX: Seq = Seq(u32::MAX);

    #[test]
    fn order_is_by_distance_across_the_wrap() {
        assert!(Seq(1) < Seq(2));
        assert!(MAX < Seq(0), "0 comes after u32::MAX");
        assert!(MAX < Seq(5));
        assert!(Seq(5) > MAX);
        assert!(Seq(0x7fff_ffff) > Seq(0));
        assert!(Seq(0x8000_0001) < Seq(0), "more than half ahead is behind");
        // Exactly half way round, each is before the other.
        assert!(Seq(0) < Seq(0x8000_0000) && Seq(0x8000_0000) < Seq(0));
        assert_eq!(Seq(7).partial_cmp(&Seq(7)), Some(Ordering::Equal));
    }

    #[test]
    fn arithmetic_wraps() {
        assert_eq!(MAX.next(), Seq(0));
        assert_eq!(Seq(0).prev(), MAX);
        assert_eq!(MAX + 3, Seq(2));
        assert_eq!(Seq(2) - MAX, 3);
        assert_eq!(Seq(9) - Seq(4), 5);
    }

    #[test]
    fn ranges_span_the_wrap() {
        let (from, to) = (Seq(u32::MAX - 1), Seq(1));
        for s in [u32::MAX - 1, u32::MAX, 0, 1] {
            assert!(Seq(s).in_range(from, to), "{s}");
        }
        assert!(!Seq(2).in_range(from, to));
        assert!(!Seq(u32::MAX - 2).in_range(from, to));
        assert!(Seq(4).in_range(Seq(4), Seq(4)));
    }

    #[test]
    fn encodes_as_its_u32() {
        let mut buf = [0u8; 8];
        let seq = postcard::to_slice(&Seq(300), &mut buf).unwrap().to_vec();
        let mut raw = [0u8; 8];
        assert_eq!(seq, postcard::to_slice(&300u32, &mut raw).unwrap());
    }
}
