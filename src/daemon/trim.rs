//! Freed heap memory back to the system when the node says that large
//! containers were freed (`Outbox::release_memory`: a large resync dump
//! ended, a drained send queue of a bulk or a resync, a large cache
//! flushed).
//!
//! A resync dump of 100 000 entries passes through the loop as parts of
//! 2048 decoded entries while the internal cache grows by as many small
//! allocations; glibc keeps the parts' freed memory in its arenas, between
//! the cache's live chunks, and the daemon stayed about 10 MB larger than
//! when the same entries came as events (measured after a 100 000-entry
//! commit and its resync: 30–32 MB against 20 MB; with a trim, 19–22 MB).
//! `malloc_trim` returns the free pages. Only glibc has it (musl returns
//! large frees itself); elsewhere this does nothing.
//!
//! With `channel::no_check`, one of the crate's two `unsafe` calls.

#![allow(unsafe_code)]

/// Returns the allocator's free pages to the system.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer; it only walks the allocator's
    // own free lists, under the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
