//! Where a cache keeps its entries' encodings: a slab of fixed-size cells
//! instead of one heap allocation per entry.
//!
//! Owns: the cells, the blocks they are cut from and the free lists.
//! Cells come in size classes, multiples of [`GRAIN`] bytes up to
//! [`MAX_SMALL`] (every real conntrack and expectation encoding fits:
//! see `stored::test`); each class is a list of fixed-size blocks, so
//! growing never reallocates (or doubles) the cells already held. A freed
//! cell goes on its class's free list, linked through the cell itself
//! (its first four bytes hold the next free cell), and is the next one
//! that class hands out: at a constant number of entries, churn reuses
//! cells instead of growing. A class whose last cell is freed gives its
//! blocks back, and [`Slab::clear`] gives everything back.
//!
//! Why: a boxed 23-byte encoding (a routed UDP flow) costs a 16-byte fat
//! pointer in the slot plus a 32-byte malloc chunk (48 from 25 bytes on);
//! a cell costs its class's size (24 bytes) and 41 bits of the slot (a
//! [`Handle`]: cell number and length). Encodings longer than
//! [`MAX_SMALL`] (none today; the cache is generic) are boxed one by one
//! in an overflow list, so no length is ever refused for its size alone.

/// Cell sizes are multiples of this (and at least this: a free cell holds
/// a 4-byte link).
pub(super) const GRAIN: usize = 8;
/// Number of size classes: cells of 8, 16, … 504 bytes (a slot has 9
/// bits for an encoding's length, the largest value meaning "boxed").
const CLASSES: usize = 63;
/// The longest encoding held in a cell.
pub(super) const MAX_SMALL: usize = GRAIN * CLASSES;
/// A block holds the largest power-of-two number of cells that fits in
/// this many bytes (at least one): small enough that a half-used block per
/// class wastes little, large enough that malloc's own overhead is noise.
const BLOCK_BYTES: usize = 8192;
/// "No cell": the end of a free list.
const NONE: u32 = u32::MAX;
/// The class of encodings boxed one by one.
const LARGE: usize = CLASSES;

/// log2 of the number of cells in one block of class `c`.
const fn block_shift(c: usize) -> u32 {
    let per_block = BLOCK_BYTES / (GRAIN * (c + 1));
    if per_block == 0 { 0 } else { per_block.ilog2() }
}

const SHIFTS: [u32; CLASSES] = {
    let mut s = [0; CLASSES];
    let mut c = 0;
    while c < CLASSES {
        s[c] = block_shift(c);
        c += 1;
    }
    s
};

/// Which class holds an encoding of `len` bytes.
fn class_of(len: usize) -> usize {
    if len > MAX_SMALL {
        LARGE
    } else {
        len.saturating_sub(1) / GRAIN
    }
}

/// Where an encoding is: its class's cell number and its length (which
/// gives the class). Eight bytes on every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Handle {
    cell: u32,
    len: u32,
}

impl Handle {
    /// The handle of cell `cell` holding `len` bytes (any `len` past
    /// [`MAX_SMALL`] for a boxed encoding: the box knows its length).
    pub(super) fn new(cell: u32, len: u32) -> Handle {
        Handle { cell, len }
    }

    pub(super) fn cell(self) -> u32 {
        self.cell
    }

    pub(super) fn len(self) -> usize {
        self.len as usize
    }

    /// A key that orders handles as their cells lie in memory (class by
    /// class, cell by cell): a copy in that order reads the slab in
    /// sequence instead of missing the cache at each cell.
    pub(super) fn memory_order(self) -> u64 {
        ((class_of(self.len()) as u64) << 32) | u64::from(self.cell)
    }
}

/// The cells of one size.
#[derive(Debug, Clone, Default)]
struct Class {
    blocks: Vec<Box<[u8]>>,
    /// Cells below this number have been handed out at least once; the
    /// next never-used one is this.
    fresh: u32,
    /// The first free cell (then linked through the cells), or [`NONE`].
    free: u32,
    /// Cells in use.
    live: u32,
}

impl Class {
    fn empty() -> Class {
        Class {
            free: NONE,
            ..Class::default()
        }
    }
}

/// Cells for a cache's encodings.
#[derive(Debug, Clone)]
pub(super) struct Slab {
    classes: Vec<Class>,
    /// Encodings longer than [`MAX_SMALL`], each boxed; a freed one leaves
    /// an empty box (no allocation) whose index is on `large_free`.
    large: Vec<Box<[u8]>>,
    large_free: Vec<u32>,
    /// Sum of the held encodings' lengths.
    live_bytes: usize,
}

impl Default for Slab {
    fn default() -> Self {
        Slab::new()
    }
}

impl Slab {
    pub(super) fn new() -> Slab {
        Slab {
            // Made with the first cell: an empty cache holds nothing.
            classes: Vec::new(),
            large: Vec::new(),
            large_free: Vec::new(),
            live_bytes: 0,
        }
    }

    /// The block and byte offset of cell `cell` of class `c`.
    fn locate(c: usize, cell: u32) -> (usize, usize) {
        let shift = SHIFTS.get(c).copied().unwrap_or(0);
        let block = (cell >> shift) as usize;
        let index = (cell & ((1 << shift) - 1)) as usize;
        (block, index * GRAIN * (c + 1))
    }

    /// The cell's bytes (all of them, not just an encoding's length).
    fn cell_mut(&mut self, c: usize, cell: u32) -> Option<&mut [u8]> {
        let (block, off) = Self::locate(c, cell);
        self.classes
            .get_mut(c)?
            .blocks
            .get_mut(block)?
            .get_mut(off..off + GRAIN * (c + 1))
    }

    /// The encoding `h` refers to (empty for a handle this slab did not
    /// give out, which a cache never holds).
    pub(super) fn get(&self, h: Handle) -> &[u8] {
        let len = h.len();
        let c = class_of(len);
        let bytes = if c == LARGE {
            self.large.get(h.cell as usize).map(|b| &b[..])
        } else {
            let (block, off) = Self::locate(c, h.cell);
            self.classes
                .get(c)
                .and_then(|k| k.blocks.get(block))
                .and_then(|b| b.get(off..off + len))
        };
        debug_assert!(bytes.is_some(), "a dangling slab handle");
        bytes.unwrap_or_default()
    }

    /// Stores `bytes`; None only when a class has run out of cell numbers
    /// (four billion) or the length does not fit a handle.
    pub(super) fn alloc(&mut self, bytes: &[u8]) -> Option<Handle> {
        let len = u32::try_from(bytes.len()).ok()?;
        let c = class_of(bytes.len());
        let cell = if c == LARGE {
            self.alloc_large(bytes)?
        } else {
            let cell = self.alloc_cell(c)?;
            let dst = self.cell_mut(c, cell)?;
            dst[..bytes.len()].copy_from_slice(bytes);
            cell
        };
        self.live_bytes += bytes.len();
        Some(Handle { cell, len })
    }

    fn alloc_large(&mut self, bytes: &[u8]) -> Option<u32> {
        if let Some(i) = self.large_free.pop() {
            if let Some(b) = self.large.get_mut(i as usize) {
                *b = bytes.into();
                return Some(i);
            }
        }
        let i = u32::try_from(self.large.len())
            .ok()
            .filter(|&i| i != NONE)?;
        self.large.push(bytes.into());
        Some(i)
    }

    /// A cell of class `c`: the last one freed, else a never-used one (in
    /// a new block when the last is full).
    fn alloc_cell(&mut self, c: usize) -> Option<u32> {
        let shift = SHIFTS.get(c).copied()?;
        if self.classes.is_empty() {
            self.classes = (0..CLASSES).map(|_| Class::empty()).collect();
        }
        let head = self.classes.get(c)?.free;
        if head != NONE {
            let next = self
                .cell_mut(c, head)
                .and_then(|b| b.first_chunk::<4>().copied())
                .map_or(NONE, u32::from_le_bytes);
            let class = self.classes.get_mut(c)?;
            // A link past the cells ever handed out would be a bug: drop
            // the rest of the list (those cells leak until the class
            // empties) rather than hand out a cell twice.
            class.free = if next < class.fresh { next } else { NONE };
            class.live += 1;
            return Some(head);
        }
        let class = self.classes.get_mut(c)?;
        let cell = class.fresh;
        if cell == NONE {
            return None;
        }
        if (cell >> shift) as usize == class.blocks.len() {
            let size = (GRAIN * (c + 1)) << shift;
            class.blocks.push(vec![0; size].into_boxed_slice());
        }
        class.fresh += 1;
        class.live += 1;
        Some(cell)
    }

    /// Gives `h`'s cell back.
    pub(super) fn free(&mut self, h: Handle) {
        let c = class_of(h.len());
        if c == LARGE {
            if let Some(b) = self.large.get_mut(h.cell as usize) {
                if !b.is_empty() {
                    self.live_bytes -= b.len();
                    *b = Box::default();
                    self.large_free.push(h.cell);
                }
            }
            if self.large_free.len() == self.large.len() {
                self.large = Vec::new();
                self.large_free = Vec::new();
            }
            return;
        }
        let Some(class) = self.classes.get(c) else {
            return;
        };
        if h.cell >= class.fresh || class.live == 0 {
            debug_assert!(false, "freeing a cell never handed out");
            return;
        }
        let old_head = class.free;
        if let Some(cell) = self.cell_mut(c, h.cell) {
            cell[..4].copy_from_slice(&old_head.to_le_bytes());
        }
        self.live_bytes -= h.len();
        if let Some(class) = self.classes.get_mut(c) {
            class.live -= 1;
            class.free = h.cell;
            if class.live == 0 {
                // The class is empty: its blocks go back to the system,
                // and the list of classes too when all are.
                *class = Class::empty();
                if self.classes.iter().all(|k| k.live == 0) {
                    self.classes = Vec::new();
                }
            }
        }
    }

    /// Stores `bytes` in place of `h`'s encoding: in the same cell when
    /// the class is the same, else in a new cell (the old one is freed
    /// only once the new one is had, so a failure changes nothing).
    pub(super) fn replace(
        &mut self,
        h: Handle,
        bytes: &[u8],
    ) -> Option<Handle> {
        let c = class_of(h.len());
        if c != LARGE && c == class_of(bytes.len()) {
            let cell = self.cell_mut(c, h.cell)?;
            cell[..bytes.len()].copy_from_slice(bytes);
            self.live_bytes = self.live_bytes - h.len() + bytes.len();
            return Some(Handle {
                cell: h.cell,
                len: bytes.len() as u32,
            });
        }
        let new = self.alloc(bytes)?;
        self.free(h);
        Some(new)
    }

    /// Frees everything, blocks included.
    pub(super) fn clear(&mut self) {
        *self = Slab::new();
    }

    /// Bytes of the held encodings.
    #[cfg(test)]
    pub(super) fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Bytes the slab holds from the allocator: blocks, the lists of
    /// blocks, overflow boxes and their list.
    pub(super) fn reserved_bytes(&self) -> usize {
        let ptr = std::mem::size_of::<Box<[u8]>>();
        let classes: usize = self
            .classes
            .iter()
            .map(|k| {
                k.blocks.iter().map(|b| b.len()).sum::<usize>()
                    + k.blocks.capacity() * ptr
            })
            .sum();
        let large: usize = self.large.iter().map(|b| b.len()).sum();
        classes
            + self.classes.capacity() * std::mem::size_of::<Class>()
            + large
            + self.large.capacity() * ptr
            + self.large_free.capacity() * 4
    }
}

#[cfg(test)]
mod test;
