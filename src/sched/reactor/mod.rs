//! The reactor: how the kernel learns that a descriptor is ready, for tasks and for plain
//! threads. Only this module calls epoll and `poll(2)`.
//!
//! - [`poller`]: each domain's epoll instance and its wake-up eventfd. A descriptor is
//!   registered once, edge-triggered, the first time a task must wait on it; events are
//!   dispatched by token, never by address.
//! - [`source`]: one descriptor's readiness (per-direction ticks and waiter lists), the
//!   process-wide descriptor table, and the waits built on them ([`source::wait_raw`]).
//! - [`poll`]: the plain-thread side: a thread that is not a task has no domain to watch its
//!   descriptors, so it blocks in `poll(2)`, with an eventfd that wakers write to when the wait
//!   is also a park.
//!
//! Faces (`io`, `net`, `event`, `ocaml`) use these; nothing here knows a face.

pub(crate) mod poll;
pub(crate) mod poller;
pub(crate) mod source;

pub(crate) use poller::Poller;

/// A direction of readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Read = 0,
    Write = 1,
}

impl Dir {
    /// The `poll(2)` events of this direction.
    pub(crate) fn poll_events(self) -> libc::c_short {
        match self {
            Dir::Read => libc::POLLIN | libc::POLLRDHUP,
            Dir::Write => libc::POLLOUT,
        }
    }
}
