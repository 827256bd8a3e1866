use std::collections::HashMap;

use super::*;

/// splitmix64: a seeded, reproducible stream for the model test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn bytes(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag as u8).wrapping_add((i as u8).wrapping_mul(7)))
        .collect()
}

#[test]
fn handles_are_eight_bytes() {
    assert_eq!(std::mem::size_of::<Handle>(), 8);
}

#[test]
fn classes_round_up_to_the_grain() {
    assert_eq!(class_of(0), 0);
    assert_eq!(class_of(1), 0);
    assert_eq!(class_of(8), 0);
    assert_eq!(class_of(9), 1);
    assert_eq!(class_of(30), 3);
    assert_eq!(class_of(MAX_SMALL), CLASSES - 1);
    assert_eq!(class_of(MAX_SMALL + 1), LARGE);
    // Every block is a power of two of cells within BLOCK_BYTES.
    for (c, shift) in SHIFTS.iter().enumerate() {
        let size = GRAIN * (c + 1);
        let block = size << shift;
        assert!(block <= BLOCK_BYTES && 2 * block > BLOCK_BYTES, "{c}");
    }
}

#[test]
fn alloc_free_and_reuse_per_class() {
    let mut s = Slab::new();
    let a = s.alloc(&bytes(1, 30)).unwrap();
    let b = s.alloc(&bytes(2, 30)).unwrap();
    let c = s.alloc(&bytes(3, 5)).unwrap();
    assert_eq!(s.get(a), &bytes(1, 30)[..]);
    assert_eq!(s.get(b), &bytes(2, 30)[..]);
    assert_eq!(s.get(c), &bytes(3, 5)[..]);
    assert_eq!(s.live_bytes(), 65);
    // Two classes in use: one block each.
    let blocks = s.reserved_bytes();
    s.free(a);
    assert_eq!(s.get(b), &bytes(2, 30)[..]);
    // The freed cell is the next one its class hands out, for any length
    // of that class; another class does not take it.
    let d = s.alloc(&bytes(4, 7)).unwrap();
    assert_ne!(d.cell, a.cell);
    let e = s.alloc(&bytes(5, 25)).unwrap();
    assert_eq!(e.cell, a.cell);
    assert_eq!(s.get(e), &bytes(5, 25)[..]);
    assert_eq!(s.reserved_bytes(), blocks);
    // Freeing a class's last cell gives its block back.
    s.free(b);
    s.free(e);
    assert!(s.reserved_bytes() < blocks);
    assert_eq!(s.get(c), &bytes(3, 5)[..]);
    assert_eq!(s.get(d), &bytes(4, 7)[..]);
    assert_eq!(s.live_bytes(), 12);
    s.clear();
    assert_eq!(s.live_bytes(), 0);
    let empty = Slab::new().reserved_bytes();
    assert_eq!(s.reserved_bytes(), empty);
}

#[test]
fn a_full_block_starts_another_and_links_survive() {
    let mut s = Slab::new();
    let per_block = 1usize << SHIFTS[3];
    let hs: Vec<Handle> = (0..3 * per_block as u64 + 1)
        .map(|i| s.alloc(&bytes(i, 32)).unwrap())
        .collect();
    assert_eq!(s.classes[3].blocks.len(), 4);
    // Free every other cell (across blocks), then take them back.
    for h in hs.iter().step_by(2) {
        s.free(*h);
    }
    for (i, h) in hs.iter().enumerate().skip(1).step_by(2) {
        assert_eq!(s.get(*h), &bytes(i as u64, 32)[..]);
    }
    let again: Vec<Handle> = (0..hs.len().div_ceil(2))
        .map(|i| s.alloc(&bytes(1000 + i as u64, 32)).unwrap())
        .collect();
    assert_eq!(s.classes[3].blocks.len(), 4, "freed cells were reused");
    let mut cells: Vec<u32> = again.iter().map(|h| h.cell).collect();
    cells.sort_unstable();
    let want: Vec<u32> = hs.iter().step_by(2).map(|h| h.cell).collect();
    assert_eq!(cells, want);
}

#[test]
fn replace_moves_between_classes_and_overflow() {
    let mut s = Slab::new();
    let keep = s.alloc(&bytes(9, 16)).unwrap();
    let h = s.alloc(&bytes(1, 10)).unwrap();
    // Same class: same cell.
    let h2 = s.replace(h, &bytes(2, 16)).unwrap();
    assert_eq!(h2.cell, h.cell);
    assert_eq!(s.get(h2), &bytes(2, 16)[..]);
    // Longer: another class; then past the largest class: boxed.
    let h3 = s.replace(h2, &bytes(3, 100)).unwrap();
    assert_eq!(s.get(h3), &bytes(3, 100)[..]);
    let big = bytes(4, MAX_SMALL + 100);
    let h4 = s.replace(h3, &big).unwrap();
    assert_eq!(s.get(h4), &big[..]);
    assert_eq!(s.live_bytes(), 16 + big.len());
    // And back to a cell; the overflow list is given back.
    let h5 = s.replace(h4, &bytes(5, 3)).unwrap();
    assert_eq!(s.get(h5), &bytes(5, 3)[..]);
    assert!(s.large.is_empty());
    assert_eq!(s.get(keep), &bytes(9, 16)[..]);
    assert_eq!(s.live_bytes(), 19);
}

/// Inserts, updates of varying lengths, deletes and flushes against a
/// HashMap, with contents checked throughout; then churn at a constant
/// number of entries must not grow the slab.
#[test]
fn matches_a_map_under_random_churn() {
    let mut rng = Rng(0x5eed_cafe);
    let mut s = Slab::new();
    let mut model: HashMap<u64, (Handle, Vec<u8>)> = HashMap::new();
    let len = |rng: &mut Rng| match rng.below(10) {
        0 => rng.below(MAX_SMALL as u64 + 200) as usize,
        _ => 20 + rng.below(40) as usize,
    };
    for step in 0..60_000u64 {
        let k = rng.below(2_000);
        match rng.below(100) {
            0 if step % 7 == 0 => {
                s.clear();
                model.clear();
            }
            0..=49 => {
                let v = bytes(step, len(&mut rng));
                let h = match model.get(&k) {
                    Some((h, _)) => s.replace(*h, &v),
                    None => s.alloc(&v),
                };
                model.insert(k, (h.unwrap(), v));
            }
            _ => {
                if let Some((h, _)) = model.remove(&k) {
                    s.free(h);
                }
            }
        }
        if step % 997 == 0 {
            for (h, v) in model.values() {
                assert_eq!(s.get(*h), &v[..], "step {step}");
            }
            let live: usize = model.values().map(|(_, v)| v.len()).sum();
            assert_eq!(s.live_bytes(), live);
        }
    }
    // Constant size: delete and insert again every entry, 25 to 32 bytes
    // long, many times over; the slab holds no more memory.
    for k in 0..2_000 {
        model.entry(k).or_insert_with(|| {
            let v = bytes(k, 30);
            (s.alloc(&v).unwrap(), v)
        });
    }
    let mut settled = 0;
    for round in 0..20u64 {
        for k in 0..2_000 {
            let (h, _) = model.remove(&k).unwrap();
            s.free(h);
            let v = bytes(round * k, 25 + ((round + k) % 8) as usize);
            model.insert(k, (s.alloc(&v).unwrap(), v));
        }
        // After the first round every entry is in the 32-byte class.
        if round == 0 {
            settled = s.reserved_bytes();
        }
        assert!(s.reserved_bytes() <= settled, "round {round}");
    }
    for (h, v) in model.values() {
        assert_eq!(s.get(*h), &v[..]);
    }
    for (h, _) in model.into_values() {
        s.free(h);
    }
    assert_eq!(s.live_bytes(), 0);
    assert_eq!(s.reserved_bytes(), Slab::new().reserved_bytes());
}
