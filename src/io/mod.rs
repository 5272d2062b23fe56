//! Operating-system readiness: each domain's epoll instance and its wake-up eventfd.
//!
//! This module is the only one that calls epoll. For now it provides what a domain needs to
//! sleep when it has nothing to run and to be woken from other threads; socket readiness and
//! the blocking pool build on the same [`Poller`].

mod poller;

pub(crate) use poller::Poller;

/// Runs a libc call, mapping `-1` to the current `errno` as an `io::Error`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller upholds the syscall's contract; see the call site.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 { Err(std::io::Error::last_os_error()) } else { Ok(res) }
    }};
}
pub(crate) use syscall;
