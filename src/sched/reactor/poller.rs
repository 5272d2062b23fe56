//! A domain's epoll instance: its wake-up eventfd, and the descriptors registered with it.
//!
//! ## Registrations
//!
//! A [`Source`] is registered once, edge-triggered for both directions, with the epoll of the
//! domain that first waits on it. The poller's slab holds it; the epoll data is a token, the
//! slot's index and generation, never an address:
//!
//! 1. `register`: the source goes into a free slot (whose generation was bumped when it was
//!    last emptied), then `EPOLL_CTL_ADD` with that slot's token.
//! 2. `wait` (only ever called by the domain's thread): `epoll_wait`, then, under the slab's
//!    mutex once per batch, each token is looked up: a live slot of the same generation gives
//!    a counted reference to its source, which is dispatched after the mutex is released.
//! 3. `deregister` (any thread): `EPOLL_CTL_DEL`, then the slot is emptied and its generation
//!    bumped. An event already read for it, or one from a registration that outlives its
//!    descriptor number (a duplicate of the descriptor keeps the file registered), finds a
//!    different generation and is ignored: no event ever reaches a freed source or the wrong
//!    one.
//!
//! A domain that is busy still calls `wait` with a zero timeout every few scheduling rounds
//! when it has registrations, so I/O never starves behind computation.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::source::Source;

const WAKE_TOKEN: u64 = u64::MAX;
/// Events read per `epoll_wait`.
const BATCH: usize = 256;

/// Live registrations of `poller` (for the monitor's deadlock watch).
impl Poller {
    pub(crate) fn registered(&self) -> usize {
        self.registered.load(Ordering::SeqCst)
    }
}

pub(crate) struct Poller {
    epoll: Epoll,
    wake: EventFd,
    /// Live registrations (so a busy domain skips the zero-timeout poll when it has none).
    registered: AtomicUsize,
    slab: Mutex<Slab>,
    scratch: Mutex<Scratch>,
}

/// `wait`'s buffers, kept between calls.
struct Scratch {
    events: Vec<EpollEvent>,
    ready: Vec<(Arc<Source>, u32)>,
}

#[derive(Default)]
struct Slab {
    entries: Vec<(u32, Option<Arc<Source>>)>,
    free: Vec<usize>,
}

impl Slab {
    fn lookup(&self, token: u64) -> Option<&Arc<Source>> {
        let (slot, gen_) = ((token & 0xffff_ffff) as usize, (token >> 32) as u32);
        match self.entries.get(slot) {
            Some((g, Some(s))) if *g == gen_ => Some(s),
            _ => None,
        }
    }

    /// Empties the slot of `token` if it is still that registration's.
    fn remove(&mut self, token: u64) -> Option<Arc<Source>> {
        let (slot, gen_) = ((token & 0xffff_ffff) as usize, (token >> 32) as u32);
        match self.entries.get_mut(slot) {
            Some((g, s)) if *g == gen_ && s.is_some() => {
                *g = g.wrapping_add(1);
                self.free.push(slot);
                s.take()
            }
            _ => None,
        }
    }
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN))?;
        Ok(Poller {
            epoll,
            wake,
            registered: AtomicUsize::new(0),
            slab: Mutex::new(Slab::default()),
            scratch: Mutex::new(Scratch {
                events: vec![EpollEvent::empty(); BATCH],
                ready: Vec::with_capacity(BATCH),
            }),
        })
    }

    /// Wakes the thread sleeping in [`Poller::wait`] (or makes its next wait return at once).
    /// Callable from any thread.
    pub(crate) fn wake(&self) {
        // EAGAIN (the counter is saturated) still leaves the eventfd readable: all we need.
        let _ = self.wake.write(1);
    }

    fn slab(&self) -> std::sync::MutexGuard<'_, Slab> {
        self.slab.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step 1: registers `source` (edge-triggered, both directions). Returns its token, which
    /// [`Poller::deregister`] takes back.
    pub(crate) fn register(&self, source: &Arc<Source>) -> io::Result<u64> {
        let token = {
            let mut slab = self.slab();
            let slot = match slab.free.pop() {
                Some(i) => i,
                None => {
                    slab.entries.push((0, None));
                    slab.entries.len() - 1
                }
            };
            assert!(
                slot <= u32::MAX as usize,
                "bobine: too many registered descriptors"
            );
            let entry = &mut slab.entries[slot];
            entry.1 = Some(source.clone());
            (entry.0 as u64) << 32 | slot as u64
        };
        // SAFETY: a source is registered while a task waits on its descriptor, which the
        // waiter holds open for the duration of this call (an owned socket, or the descriptor a
        // caller passed to a raw wait).
        let fd = unsafe { BorrowedFd::borrow_raw(source.fd()) };
        let mut added = self.epoll.add(fd, Self::event(token));
        if added == Err(Errno::EEXIST) {
            // A registration of this number for the same file that bobine forgot (a raw
            // descriptor closed and reopened during a wait): take it over.
            added = self.epoll.modify(fd, &mut Self::event(token));
        }
        if let Err(e) = added {
            let s = self.slab().remove(token);
            drop(s);
            return Err(e.into());
        }
        self.registered.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }

    /// Our events (edge-triggered, both directions), with `token` as the data.
    fn event(token: u64) -> EpollEvent {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        EpollEvent::new(flags, token)
    }

    /// Whether the registration of `fd` made as `token` still exists in the kernel (a raw
    /// descriptor's file may have been closed, which removes it, and the number reused).
    ///
    /// This one call goes through `libc`: `fd` may already be closed (that is what it asks),
    /// so it cannot be lent as a `BorrowedFd`; the kernel answers `EBADF` or `ENOENT` then.
    pub(crate) fn still_registered(&self, fd: RawFd, token: u64) -> bool {
        let mut ev = Self::event(token);
        // SAFETY: `ev` is a valid epoll_event (`EpollEvent` is a transparent wrapper of one);
        // the kernel only reads it, and only looks the number `fd` up.
        let r = unsafe {
            libc::epoll_ctl(
                self.epoll.0.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                fd,
                (&mut ev as *mut EpollEvent).cast(),
            )
        };
        r == 0
    }

    /// Step 3: removes the registration of `fd` made as `token`. `fd` must still be open (the
    /// caller deregisters before closing it).
    pub(crate) fn deregister(&self, fd: RawFd, token: u64) {
        // SAFETY: per this function's contract the descriptor is still open (its owner
        // deregisters before closing it); the borrow lasts for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // An error (the file was released already) leaves nothing registered.
        let _ = self.epoll.delete(fd);
        self.forget(token);
    }

    /// Step 3 without the `DEL`, for a descriptor number that may already name another file:
    /// the slot is emptied, and events of the old registration are ignored from now on.
    pub(crate) fn forget(&self, token: u64) {
        let s = self.slab().remove(token);
        if s.is_some() {
            self.registered.fetch_sub(1, Ordering::Relaxed);
        }
        drop(s);
    }

    /// Drops every registration (the domain is shut down): the sources no longer keep the
    /// domain alive. Their waiters (tasks of other runtimes sharing a socket) are woken to try
    /// again: their next wait registers with a live domain.
    pub(crate) fn clear(&self) {
        let entries = std::mem::take(&mut *self.slab());
        self.registered.store(0, Ordering::Relaxed);
        for source in entries.entries.into_iter().filter_map(|e| e.1) {
            source.dispatch((libc::EPOLLIN | libc::EPOLLOUT) as u32);
        }
    }

    /// Whether any descriptor is registered.
    pub(crate) fn has_registrations(&self) -> bool {
        self.registered.load(Ordering::Relaxed) > 0
    }

    /// Step 2: sleeps until woken, until an I/O event, or until `timeout` (`None`: no limit),
    /// dispatching the I/O events to their sources. Returns whether a wake-up arrived (and
    /// consumes it). Only the domain's own thread calls this.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        let ms = match timeout {
            None => EpollTimeout::NONE,
            // Round up so a sleeper never wakes before its deadline and spins.
            Some(d) => EpollTimeout::try_from(d.as_nanos().div_ceil(1_000_000))
                .unwrap_or(EpollTimeout::MAX),
        };
        // Only the domain's thread waits, so the scratch lock is never contended; keeping the
        // buffers saves clearing 7 KiB of stack per wait.
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let Scratch { events, ready } = &mut *scratch;
        // An error (a signal) reports nothing; the caller's loop looks again at once.
        let n = self.epoll.wait(events, ms).unwrap_or(0);
        let mut woken = false;
        if n > 0 {
            let slab = self.slab();
            for ev in &events[..n] {
                if ev.data() == WAKE_TOKEN {
                    woken = true;
                } else if let Some(s) = slab.lookup(ev.data()) {
                    ready.push((s.clone(), ev.events().bits() as u32));
                }
            }
        }
        // Outside the slab's mutex: waking may drop the last reference to a task, whose
        // destructors may close (and deregister) sockets.
        for (source, events) in ready.drain(..) {
            source.dispatch(events);
        }
        if woken {
            self.drain_wake();
        }
        woken
    }

    /// The zero-timeout poll of a busy domain (module doc); nothing when nothing is registered.
    pub(crate) fn poll_busy(&self) {
        if self.has_registrations() {
            self.wait(Some(Duration::ZERO));
        }
    }

    fn drain_wake(&self) {
        // Non-blocking: nothing to read is fine.
        let _ = self.wake.read();
    }
}
