//! A set of address prefixes (the items of a Filter's `Address` rule)
//! that answers "is this address inside any of them?" in O(log n).
//!
//! The prefixes are kept as written (the configuration's order, repeats
//! dropped) for display and comparison. Lookups go through an index built
//! on the first lookup after a change, in O(n log n): per family, the
//! prefixes turned into address ranges, sorted and merged, so one binary
//! search decides. A linear scan per event made a 20 000-address Filter
//! cost the sender 20× its CPU. The index is dropped on every insertion,
//! so it can never describe another list than the one it sits beside.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::OnceLock;

use super::Cidr;

/// Address prefixes with O(log n) membership.
#[derive(Clone, Default)]
pub struct Prefixes {
    list: Vec<Cidr>,
    seen: HashSet<Cidr>,
    index: OnceLock<Index>,
}

/// Merged, sorted, inclusive address ranges per family.
#[derive(Clone, Default)]
struct Index {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Prefixes {
    /// Adds `c`; false (and no change) when it is already there.
    pub fn insert(&mut self, c: Cidr) -> bool {
        if !self.seen.insert(c) {
            return false;
        }
        self.list.push(c);
        self.index = OnceLock::new();
        true
    }

    /// Whether `c` itself is in the set, as written (O(1)).
    pub fn has(&self, c: &Cidr) -> bool {
        self.seen.contains(c)
    }

    /// Whether `addr` lies inside any prefix of its own family (an IPv4
    /// address never matches an IPv6 prefix, nor the reverse). A prefix
    /// length beyond the family's width counts as a host entry.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let index = self.index.get_or_init(|| Index::build(&self.list));
        match addr {
            IpAddr::V4(a) => within(&index.v4, u32::from(a)),
            IpAddr::V6(a) => within(&index.v6, u128::from(a)),
        }
    }
}

impl Index {
    fn build(list: &[Cidr]) -> Index {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in list {
            match c.addr {
                IpAddr::V4(n) => {
                    let host = 32 - u32::from(c.prefix.min(32));
                    let span = u32::MAX.checked_shr(32 - host).unwrap_or(0);
                    let lo = u32::from(n) & !span;
                    v4.push((lo, lo | span));
                }
                IpAddr::V6(n) => {
                    let host = 128 - u32::from(c.prefix.min(128));
                    let span = u128::MAX.checked_shr(128 - host).unwrap_or(0);
                    let lo = u128::from(n) & !span;
                    v6.push((lo, lo | span));
                }
            }
        }
        Index {
            v4: merge(v4),
            v6: merge(v6),
        }
    }
}

/// Sorts ranges and fuses the overlapping ones, so that the result is
/// disjoint and increasing: the last range starting at or below an
/// address is the only one that can hold it.
fn merge<T: Copy + Ord>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Whether `a` falls in one of the disjoint sorted `ranges`.
fn within<T: Copy + Ord>(ranges: &[(T, T)], a: T) -> bool {
    let after = ranges.partition_point(|r| r.0 <= a);
    after > 0 && a <= ranges[after - 1].1
}

impl std::ops::Deref for Prefixes {
    type Target = [Cidr];

    fn deref(&self) -> &[Cidr] {
        &self.list
    }
}

impl FromIterator<Cidr> for Prefixes {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Prefixes {
        let mut p = Prefixes::default();
        for c in iter {
            p.insert(c);
        }
        p
    }
}

impl From<Vec<Cidr>> for Prefixes {
    fn from(list: Vec<Cidr>) -> Prefixes {
        list.into_iter().collect()
    }
}

// The index is derived data: equality and debug output are the list's.
impl PartialEq for Prefixes {
    fn eq(&self, other: &Prefixes) -> bool {
        self.list == other.list
    }
}

impl Eq for Prefixes {}

impl PartialEq<Vec<Cidr>> for Prefixes {
    fn eq(&self, other: &Vec<Cidr>) -> bool {
        &self.list == other
    }
}

impl std::fmt::Debug for Prefixes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.list.fmt(f)
    }
}

#[cfg(test)]
mod test {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// The linear scan this index replaced: the reference semantics.
    fn in_prefix(addr: IpAddr, c: &Cidr) -> bool {
        match (addr, c.addr) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let bits = u32::from(c.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(a) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let bits = u32::from(c.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    }

    /// xorshift64*: deterministic test input without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Addresses drawn from a small neighbourhood, so that prefixes
    /// overlap, nest and touch, and lookups hit their edges.
    fn address(rng: &mut Rng, v6: bool) -> IpAddr {
        let low = rng.below(1 << 10);
        let noise = if rng.below(8) == 0 { rng.next() } else { 0 };
        if v6 {
            let base: u128 = 0xfd00 << 112;
            IpAddr::from(Ipv6Addr::from(
                base | u128::from(low) | u128::from(noise) << 64,
            ))
        } else {
            let base: u32 = 0x0a00_0000;
            IpAddr::from(Ipv4Addr::from(
                base | low as u32 | (noise as u32 & 0x00ff_0000),
            ))
        }
    }

    fn cidr(rng: &mut Rng) -> Cidr {
        let v6 = rng.below(2) == 0;
        let width = if v6 { 128 } else { 32 };
        // Mostly long prefixes, some short ones, now and then beyond the
        // family's width (treated as a host).
        let prefix = match rng.below(10) {
            0 => rng.below(width + 1),
            1 => width + 1 + rng.below(8),
            _ => width - rng.below(11),
        } as u8;
        Cidr {
            addr: address(rng, v6),
            prefix,
        }
    }

    #[test]
    fn agrees_with_the_linear_scan() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let n = rng.below(40) as usize;
            let list: Vec<Cidr> = (0..n).map(|_| cidr(&mut rng)).collect();
            let set: Prefixes = list.iter().copied().collect();
            for _ in 0..300 {
                let v6 = rng.below(2) == 0;
                let a = address(&mut rng, v6);
                let linear = list.iter().any(|c| in_prefix(a, c));
                assert_eq!(
                    set.contains(a),
                    linear,
                    "round {round}: {a} in {list:?}"
                );
            }
            // Every listed address, and its neighbours, are edges.
            for c in &list {
                for a in [c.addr, step(c.addr, 1), step(c.addr, -1)] {
                    let linear = list.iter().any(|c| in_prefix(a, c));
                    assert_eq!(set.contains(a), linear, "{a} in {list:?}");
                }
            }
        }
    }

    fn step(a: IpAddr, d: i8) -> IpAddr {
        match a {
            IpAddr::V4(x) => IpAddr::from(Ipv4Addr::from(
                u32::from(x).wrapping_add_signed(d.into()),
            )),
            IpAddr::V6(x) => IpAddr::from(Ipv6Addr::from(
                u128::from(x).wrapping_add_signed(d.into()),
            )),
        }
    }

    #[test]
    fn whole_space_edges_and_families() {
        let p = |s: &str, prefix| Cidr {
            addr: s.parse().unwrap(),
            prefix,
        };
        let all: Prefixes = vec![p("0.0.0.0", 0)].into();
        assert!(all.contains("255.255.255.255".parse().unwrap()));
        assert!(all.contains("0.0.0.0".parse().unwrap()));
        assert!(!all.contains("::".parse().unwrap()), "families never mix");
        let mut edge: Prefixes = vec![p("255.255.255.255", 32)].into();
        assert!(edge.contains("255.255.255.255".parse().unwrap()));
        assert!(!edge.contains("255.255.255.254".parse().unwrap()));
        // Inserting drops the index: the next lookup sees the new prefix.
        assert!(edge.insert(p("10.0.0.0", 8)));
        assert!(!edge.insert(p("10.0.0.0", 8)), "repeats are dropped");
        assert!(edge.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(edge.len(), 2);
        let v6: Prefixes = vec![p("::", 0)].into();
        assert!(v6.contains("ffff::1".parse().unwrap()));
    }
}
