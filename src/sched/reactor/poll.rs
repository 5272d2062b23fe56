//! The plain-thread side of readiness: a thread that is not a task has no domain whose epoll
//! could watch its descriptors, so it blocks in `poll(2)`.
//!
//! - [`ready_now`] and [`poll_thread`] look at one descriptor (a zero-timeout check, and a
//!   blocking wait for a socket operation on a plain thread).
//! - [`PollWake`] is what a plain thread's park needs when it waits on descriptors *and* on an
//!   unparker at once (an event sync with readiness leaves): the thread polls its descriptors
//!   plus an eventfd, and a waker that wins the park's CAS writes that eventfd. The two sides
//!   form a Dekker pair on `polling` and the park word (see [`PollWake::notify`]).
//!
//! `poll(2)` is called through `libc` here, not `nix`: these descriptors are the caller's raw
//! numbers (`bobine::io::wait_readable` on any fd, a readiness leaf), which may be closed behind
//! our back while we wait; `nix::poll` needs a `BorrowedFd`, whose contract (open for the whole
//! borrow) we cannot promise for them. A closed descriptor gives `POLLNVAL`, reported as `EBADF`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::Dir;

/// How a wait for readiness ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Readiness may have changed: try the operation again.
    Retry,
    /// The deadline passed first.
    TimedOut,
}

/// The error of a wait on a descriptor that is closed (or was closed meanwhile).
pub(crate) fn closed_error() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// The error of a wait for readiness that the runtime gave up (its task is unwinding while the
/// runtime ends, and nothing happened for the shutdown's grace: see `sched::shutdown`).
pub(crate) fn given_up_error() -> io::Error {
    io::Error::other("bobine: this wait for I/O was given up because the task's runtime is ending")
}

/// Milliseconds until `deadline` for `poll(2)`, rounded up so a waiter never wakes early and
/// spins; `-1` for no deadline; `None` if it has passed.
fn timeout_ms(deadline: Option<Instant>) -> Option<libc::c_int> {
    match deadline {
        None => Some(-1),
        Some(d) => {
            let now = Instant::now();
            (now < d).then(|| {
                (d - now)
                    .as_nanos()
                    .div_ceil(1_000_000)
                    .min(i32::MAX as u128) as libc::c_int
            })
        }
    }
}

/// `poll(2)` on `set` for at most `ms`, retried on `EINTR`; the number of ready entries.
fn poll_set(set: &mut [libc::pollfd], ms: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: `set` is a valid, writable array of `set.len()` pollfds.
        let r = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, ms) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Whether `fd` is ready in `dir` right now (a zero-timeout `poll(2)`). An error or hang-up
/// counts as ready: the operation will report it.
pub(crate) fn ready_now(fd: RawFd, dir: Dir) -> io::Result<bool> {
    let mut p = [pollfd(fd, dir.poll_events())];
    let n = poll_set(&mut p, 0)?;
    if p[0].revents & libc::POLLNVAL != 0 {
        return Err(closed_error());
    }
    Ok(n > 0)
}

/// Blocks the calling plain OS thread in `poll(2)` until `fd` is ready in `dir` or the
/// deadline passes.
pub(crate) fn poll_thread(fd: RawFd, dir: Dir, deadline: Option<Instant>) -> io::Result<Waited> {
    let mut p = [pollfd(fd, dir.poll_events())];
    loop {
        let Some(ms) = timeout_ms(deadline) else {
            return Ok(Waited::TimedOut);
        };
        if poll_set(&mut p, ms)? > 0 {
            if p[0].revents & libc::POLLNVAL != 0 {
                return Err(closed_error());
            }
            return Ok(Waited::Retry);
        }
    }
}

/// A plain thread's way to be woken out of `poll(2)` (see the module doc).
pub(crate) struct PollWake {
    /// Set while the thread is (about to be) inside `poll(2)`.
    polling: AtomicBool,
    /// The eventfd in the thread's poll set; made on first use.
    eventfd: OnceLock<EventFd>,
}

/// What [`PollWake::wait`] asks of the park it serves.
pub(crate) trait PolledPark {
    /// Whether the park has ended (a waker won its CAS).
    fn ended(&self) -> bool;
    /// Ends the park from the thread itself: for its deadline (`timed_out`), or because a
    /// descriptor became ready. False if a waker ended it first.
    fn end(&self, timed_out: bool) -> bool;
}

impl PollWake {
    pub(crate) const fn new() -> PollWake {
        PollWake {
            polling: AtomicBool::new(false),
            eventfd: OnceLock::new(),
        }
    }

    /// The waker's side, after its CAS on the park word won: if the thread polls, write its
    /// eventfd. With the thread's side (store `polling`, fence, read the word) this is a
    /// Dekker pair: either the thread sees the word ended and does not poll, or we see
    /// `polling` and interrupt the poll.
    pub(crate) fn notify(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.polling.load(Ordering::SeqCst) {
            if let Some(fd) = self.eventfd.get() {
                // EAGAIN (the counter is saturated) still leaves it readable: enough.
                let _ = fd.write(1);
            }
        }
    }

    /// Waits in `poll(2)` on `fds` (each with its `poll` events) and on the eventfd until the
    /// park ends: by a waker, by a descriptor becoming ready (ended from here, as unparked), or
    /// by `deadline` (ended from here, as timed out). The park's outcome says which.
    ///
    /// # Panics
    ///
    /// If no eventfd can be made (out of descriptors).
    pub(crate) fn wait(
        &self,
        park: &impl PolledPark,
        fds: &[(RawFd, libc::c_short)],
        deadline: Option<Instant>,
    ) {
        let eventfd = self.eventfd.get_or_init(|| {
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .unwrap_or_else(|e| panic!("bobine: cannot make an eventfd: {e}"))
        });
        let mut set: Vec<libc::pollfd> = fds.iter().map(|&(fd, ev)| pollfd(fd, ev)).collect();
        set.push(pollfd(eventfd.as_raw_fd(), libc::POLLIN));
        loop {
            self.polling.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if park.ended() {
                self.polling.store(false, Ordering::SeqCst);
                return;
            }
            let Some(ms) = timeout_ms(deadline) else {
                self.polling.store(false, Ordering::SeqCst);
                if park.end(true) {
                    return;
                }
                continue;
            };
            for p in &mut set {
                p.revents = 0;
            }
            let n = poll_set(&mut set, ms);
            self.polling.store(false, Ordering::SeqCst);
            // Consume a wake-up (harmless if there was none: the eventfd is non-blocking).
            let _ = eventfd.read();
            // An error other than EINTR (retried inside) reports nothing: look again.
            let ready =
                matches!(n, Ok(k) if k > 0) && set[..fds.len()].iter().any(|p| p.revents != 0);
            if ready && park.end(false) {
                return;
            }
        }
    }
}
