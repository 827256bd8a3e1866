//! `Checksum off`: UDP datagrams sent without a checksum (`SO_NO_CHECK`),
//! as conntrackd sets it on its sender sockets. The option exists only for
//! IPv4 (an IPv6 UDP checksum is mandatory; the kernel ignores it there).
//!
//! Neither rustix nor socket2 offers `SO_NO_CHECK`, so this is one of the
//! crate's two `unsafe` calls (with `daemon::trim`): a `setsockopt` on a
//! socket we own, with a pointer to a local `c_int` and its exact size.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// Turns the UDP checksum off on `socket` when `checksum` is false (the
/// default, on, leaves the socket as it is).
pub(super) fn apply(socket: &impl AsRawFd, checksum: bool) -> io::Result<()> {
    if checksum {
        return Ok(());
    }
    let one: libc::c_int = 1;
    // SAFETY: the fd is open for the borrow's duration; optval points to a
    // live c_int and optlen is its size, so the kernel reads only it.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&raw const one).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
