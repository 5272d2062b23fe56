//! One descriptor's readiness: what tasks blocked on it wait for, and what wakes them.
//!
//! A [`Source`] keeps, per direction (read, write), a *tick* that counts the readiness events
//! epoll reported, and a FIFO of blocked waiters. Operations follow one pattern:
//!
//! 1. Read the direction's tick, then try the operation (non-blocking).
//! 2. On `EAGAIN`, make sure the source is registered with a live domain's epoll
//!    (edge-triggered, once; registering reports the current readiness as a first event).
//! 3. Under the source's lock, compare the tick with the one read in step 1: changed means an
//!    event arrived since the attempt, so retry at once; unchanged, queue and park.
//! 4. The poller, on an event, bumps the tick first, then takes the lock and wakes every waiter
//!    of that direction. A waiter's check (step 3) is under the same lock, so it either sees
//!    the new tick or is already queued when the poller looks: no edge is lost.
//! 5. So that an event costs no lock in a direction nobody waits on (epoll reports `EPOLLOUT`
//!    with nearly every `EPOLLIN` edge), each direction counts its waiters and watchers in
//!    `interest`. A waiter increments it (SeqCst) *before* its tick check in step 3 and
//!    decrements it when it leaves; the poller bumps the tick (SeqCst) and then reads
//!    `interest`, taking the lock only if it is not zero. This is a Dekker pair: either the
//!    poller sees the waiter's interest, or the waiter sees the new tick.
//!
//! Steps 1-5 are model-checked with loom as a model (`loom_checks::readiness`, kept in step
//! with this file).
//!
//! A source closed by its owner (a bobine socket being dropped) wakes its waiters with an
//! error at once. Sources made for raw descriptors (`wait_readable` on an fd bobine does not
//! own) remember the file's identity (device and inode); their waiters check it again every
//! [`REVALIDATE`], so a descriptor closed behind bobine's back, or closed and reused for
//! another file, gives an error instead of a hang or a wake-up for the wrong file.
//!
//! The process-wide descriptor table maps each descriptor number to its source, so that a raw
//! wait on a bobine socket's descriptor shares the socket's registration (epoll accepts one
//! registration per descriptor and instance).

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Dir;
use super::poll::{Waited, closed_error, given_up_error, poll_thread, ready_now};
use crate::sched::domain::DomainShared;
use crate::sched::park::Unparker;
use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::SpinLock;

/// How often waiters on a raw descriptor check that it still names the same file.
pub(crate) const REVALIDATE: Duration = Duration::from_millis(100);

struct Lists {
    waiters: [WaitList; 2],
    /// Unparkers of blocked event syncs with a readiness leaf on this descriptor.
    watchers: [Vec<Unparker>; 2],
}

/// Where a source is registered. The domain is held weakly: a descriptor that outlives a
/// runtime (a raw descriptor stays in the table until its number is reused) must not keep that
/// runtime's domain, its epoll and its eventfd alive.
struct Registration {
    domain: Weak<DomainShared>,
    token: u64,
}

impl Registration {
    /// The domain, if it is alive and not shut down (its epoll still serves waiters).
    fn live(&self) -> Option<Arc<DomainShared>> {
        self.domain
            .upgrade()
            .filter(|d| !d.closed.load(Ordering::Acquire))
    }

    /// Removes the registration from its domain's epoll, if the domain is still there.
    fn deregister(self, fd: RawFd) {
        if let Some(d) = self.domain.upgrade() {
            d.poller().deregister(fd, self.token);
        }
    }

    /// Forgets the registration (without `EPOLL_CTL_DEL`: the descriptor number may name
    /// another file by now).
    fn forget(self) {
        if let Some(d) = self.domain.upgrade() {
            d.poller().forget(self.token);
        }
    }
}

/// The readiness state of one descriptor (see the module doc).
pub(crate) struct Source {
    fd: RawFd,
    ticks: [AtomicU64; 2],
    /// Per direction, waiters queued plus watchers registered (module doc, step 5).
    interest: [AtomicUsize; 2],
    /// Per direction, set for good once epoll reported a final condition (`RDHUP`/`HUP` or an
    /// error): the descriptor stays ready in that direction without further edges.
    finished: [AtomicBool; 2],
    closed: AtomicBool,
    lists: SpinLock<Lists>,
    reg: SpinLock<Option<Registration>>,
    /// Serialises (re-)registration, which makes syscalls: not under the spin lock.
    registering: Mutex<()>,
    /// `(st_dev, st_ino)` of a raw descriptor's file; `None` for a source owned by a socket.
    identity: Option<(u64, u64)>,
}

impl Source {
    fn new(fd: RawFd, identity: Option<(u64, u64)>) -> Source {
        Source {
            fd,
            ticks: [AtomicU64::new(0), AtomicU64::new(0)],
            interest: [AtomicUsize::new(0), AtomicUsize::new(0)],
            finished: [AtomicBool::new(false), AtomicBool::new(false)],
            closed: AtomicBool::new(false),
            lists: SpinLock::new(Lists {
                waiters: [WaitList::new(), WaitList::new()],
                watchers: [Vec::new(), Vec::new()],
            }),
            reg: SpinLock::new(None),
            registering: Mutex::new(()),
            identity,
        }
    }

    /// A source for a descriptor owned by a bobine type, entered in the descriptor table
    /// (replacing a raw source left there for an earlier file with the same number).
    pub(crate) fn owned(fd: RawFd) -> Arc<Source> {
        let source = Arc::new(Source::new(fd, None));
        let old = table(fd)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fd, source.clone());
        if let Some(old) = old {
            old.close();
        }
        source
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Step 1: the tick to compare against after an attempt in direction `dir`.
    pub(crate) fn tick(&self, dir: Dir) -> u64 {
        self.ticks[dir as usize].load(Ordering::Acquire)
    }

    /// Steps 2 and 3, for the running task: parks until an event in `dir` newer than `tick`,
    /// the deadline, or the source's closing. Returns `Ok(Retry)` also when the descriptor
    /// cannot be polled by epoll (a regular file is always ready).
    #[track_caller]
    pub(crate) fn wait(
        self: &Arc<Self>,
        dir: Dir,
        tick: u64,
        deadline: Option<Instant>,
        reason: &'static str,
    ) -> io::Result<Waited> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        if !self.ensure_registered()? {
            return Ok(Waited::Retry);
        }
        let d = dir as usize;
        let guard = self.lists.lock();
        self.interest[d].fetch_add(1, Ordering::SeqCst);
        let _interest = Interest(&self.interest[d]);
        if self.ticks[d].load(Ordering::SeqCst) != tick {
            return Ok(Waited::Retry);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let wait = Wait::soft(reason).until(deadline);
        match WaitIn::new(&self.lists, |l: &mut Lists| &mut l.waiters[d], wait).park(guard) {
            // Readiness is a nudge in spirit (the caller retries its operation), whichever way
            // the waker unlinked us.
            Woken::Notified | Woken::Nudged if self.closed.load(Ordering::Acquire) => {
                Err(closed_error())
            }
            Woken::Notified | Woken::Nudged => Ok(Waited::Retry),
            Woken::TimedOut => Ok(Waited::TimedOut),
            Woken::Interrupted => Err(given_up_error()),
        }
    }

    /// Adds an event sync's unparker to the watchers of `dir` (readiness leaves); stale ones
    /// (their sync has moved on) are swept here. Returns false when epoll cannot watch the
    /// descriptor (the leaf is then always ready).
    pub(crate) fn watch(self: &Arc<Self>, dir: Dir, u: Unparker) -> io::Result<bool> {
        if !self.ensure_registered()? {
            return Ok(false);
        }
        let d = dir as usize;
        let mut lists = self.lists.lock();
        let w = &mut lists.watchers[d];
        let before = w.len();
        w.retain(Unparker::is_pending);
        if before != w.len() {
            self.interest[d].fetch_sub(before - w.len(), Ordering::SeqCst);
        }
        w.push(u);
        self.interest[d].fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    /// Step 2: registers with the current domain unless registered with a live one. Returns
    /// false when epoll refuses the descriptor as never blocking (`EPERM`: regular files), and
    /// `EBADF` once the source is closed.
    ///
    /// Registering and closing are serialised by `registering`: a close either comes first
    /// (and this sees `closed`), or waits for this registration and then removes it. Without
    /// that, a registration racing a close left an entry in the domain's slab for good.
    fn ensure_registered(self: &Arc<Self>) -> io::Result<bool> {
        // Registered with the domain running this call (the usual case: no reference count),
        // or with another live one.
        if self.reg.lock().as_ref().is_some_and(|r| {
            crate::sched::runs_live_domain(r.domain.as_ptr()) || r.live().is_some()
        }) {
            return Ok(true);
        }
        let _serial = self.registering.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let old = {
            let mut reg = self.reg.lock();
            if reg.as_ref().is_some_and(|r| r.live().is_some()) {
                return Ok(true);
            }
            reg.take()
        };
        if let Some(old) = old {
            old.deregister(self.fd);
        }
        let domain = crate::sched::with_local(|l| l.shared.clone());
        match domain.poller().register(self) {
            Ok(token) => {
                *self.reg.lock() = Some(Registration {
                    domain: Arc::downgrade(&domain),
                    token,
                });
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether epoll reported a final condition in `dir` (end of file, hang-up, error): the
    /// descriptor is ready for good in that direction. Read after [`Source::tick`].
    pub(crate) fn finished(&self, dir: Dir) -> bool {
        self.finished[dir as usize].load(Ordering::Acquire)
    }

    /// Step 4, on the domain's thread: an epoll event for this descriptor.
    pub(crate) fn dispatch(&self, events: u32) {
        let err = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        // Before the ticks move, so that whoever sees the new tick sees these too.
        if events & (libc::EPOLLRDHUP as u32 | err) != 0 {
            self.finished[Dir::Read as usize].store(true, Ordering::Release);
        }
        if events & err != 0 {
            self.finished[Dir::Write as usize].store(true, Ordering::Release);
        }
        if events & ((libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) as u32 | err) != 0 {
            self.ready(Dir::Read);
        }
        if events & (libc::EPOLLOUT as u32 | err) != 0 {
            self.ready(Dir::Write);
        }
    }

    /// Bumps `dir`'s tick and wakes everyone waiting in that direction.
    fn ready(&self, dir: Dir) {
        let d = dir as usize;
        self.ticks[d].fetch_add(1, Ordering::SeqCst);
        if self.interest[d].load(Ordering::SeqCst) == 0 {
            return;
        }
        // Unparked outside the lock, a handful at a time (usually there is one waiter).
        const AT_ONCE: usize = 4;
        loop {
            let mut batch: [Option<Unparker>; AT_ONCE] = [const { None }; AT_ONCE];
            let (watchers, full) = {
                let mut lists = self.lists.lock();
                let watchers = std::mem::take(&mut lists.watchers[d]);
                if !watchers.is_empty() {
                    self.interest[d].fetch_sub(watchers.len(), Ordering::SeqCst);
                }
                let mut n = 0;
                while n < AT_ONCE {
                    match lists.waiters[d].pop_front() {
                        Some(u) => {
                            batch[n] = Some(u);
                            n += 1;
                        }
                        None => break,
                    }
                }
                (watchers, n == AT_ONCE)
            };
            for u in watchers.into_iter().chain(batch.into_iter().flatten()) {
                u.unpark();
            }
            if !full {
                break;
            }
        }
    }

    /// The owner closes the descriptor: waiters wake with an error, the registration and the
    /// table entry go. Call before the descriptor itself is closed.
    pub(crate) fn close(&self) {
        if !self.shut(|r| r.deregister(self.fd)) {
            return;
        }
        let mut t = table(self.fd).lock().unwrap_or_else(|e| e.into_inner());
        if t.get(&self.fd).is_some_and(|s| std::ptr::eq(&**s, self)) {
            t.remove(&self.fd);
        }
    }

    /// Marks the source closed, wakes its waiters (they see `closed` and return an error) and
    /// ends its registration with `end`, after any registration in progress (see
    /// `ensure_registered`). False if it was closed already.
    fn shut(&self, end: impl FnOnce(Registration)) -> bool {
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.ready(Dir::Read);
        self.ready(Dir::Write);
        let _serial = self.registering.lock().unwrap_or_else(|e| e.into_inner());
        let reg = self.reg.lock().take();
        if let Some(r) = reg {
            end(r);
        }
        true
    }

    /// Whether a raw source's descriptor still names the file it was made for.
    fn still_same_file(&self) -> bool {
        match self.identity {
            None => !self.closed.load(Ordering::Acquire),
            Some(id) => identity(self.fd) == Some(id),
        }
    }
}

/// A waiter's share of `interest`, given back when it leaves (also on unwinding).
struct Interest<'a>(&'a AtomicUsize);

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The descriptor table (see the module doc), sharded to keep accept storms apart.
fn table(fd: RawFd) -> &'static Shard {
    const SHARDS: usize = 32;
    static TABLE: LazyLock<Vec<Shard>> =
        LazyLock::new(|| (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect());
    &TABLE[fd as usize % SHARDS]
}

type Shard = Mutex<HashMap<RawFd, Arc<Source>>>;

/// `(st_dev, st_ino)` of the file `fd` names, or `None` if it is not open.
///
/// Through `libc`, not `nix::sys::stat::fstat`: asking whether a raw number is still open (and
/// still the same file) is the point, so it cannot be lent as a `BorrowedFd`.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat writes into a zeroed, properly sized stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; an invalid fd gives EBADF.
    let r = unsafe { libc::fstat(fd, &mut st) };
    (r == 0).then_some((st.st_dev, st.st_ino))
}

/// The source for a raw descriptor: the owner's if bobine owns it, else a raw source (made now,
/// or kept from an earlier wait on the same file).
fn raw_source(fd: RawFd) -> io::Result<Arc<Source>> {
    let id = identity(fd).ok_or_else(closed_error)?;
    let mut t = table(fd).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = t.get(&fd) {
        if s.identity.is_none() || s.identity == Some(id) {
            return Ok(s.clone());
        }
    }
    let s = Arc::new(Source::new(fd, Some(id)));
    if let Some(old) = t.insert(fd, s.clone()) {
        drop(t);
        // A raw source of an earlier file with this number: its waiters learn it is gone.
        old.close_raw();
    }
    Ok(s)
}

impl Source {
    /// Closes a raw source that no longer names its file (its descriptor may already be
    /// closed or reused, so the registration is not deleted by number: it went with the old
    /// file, or goes when that file is released).
    fn close_raw(&self) {
        self.shut(Registration::forget);
    }
}

/// Makes `u` wake when `fd` becomes ready in `dir` (a readiness leaf of a task's blocked
/// sync). An error means epoll cannot watch `fd`; the caller's readiness check then sees it
/// ready (or in error) at once.
pub(crate) fn watch(fd: RawFd, dir: Dir, u: Unparker) -> io::Result<()> {
    let source = raw_source(fd)?;
    source.check_raw_registration();
    source.watch(dir, u)?;
    Ok(())
}

impl Source {
    /// For a raw source about to be waited on: if the kernel dropped its registration (the
    /// file it was made for was closed, and the number now names another file that `fstat`
    /// cannot tell apart, such as another eventfd), forget it so that the wait registers
    /// again.
    fn check_raw_registration(&self) {
        if self.identity.is_none() {
            return;
        }
        let _serial = self.registering.lock().unwrap_or_else(|e| e.into_inner());
        let gone = match &*self.reg.lock() {
            Some(r) => r
                .live()
                .is_some_and(|d| !d.poller().still_registered(self.fd, r.token)),
            None => false,
        };
        if gone {
            let reg = self.reg.lock().take();
            if let Some(r) = reg {
                r.forget();
            }
        }
    }
}

/// Waits until the raw descriptor `fd` is ready in `dir`, or `deadline` passes (`Ok(false)`).
/// A descriptor closed meanwhile (or reused for another file) gives `EBADF`.
#[track_caller]
pub(crate) fn wait_raw(
    fd: RawFd,
    dir: Dir,
    deadline: Option<Instant>,
    reason: &'static str,
) -> io::Result<bool> {
    let in_task = !crate::sched::current_ptr().is_null();
    let source = if in_task { Some(raw_source(fd)?) } else { None };
    if let Some(s) = &source {
        s.check_raw_registration();
    }
    let first_id = identity(fd).ok_or_else(closed_error)?;
    loop {
        let tick = source.as_ref().map(|s| s.tick(dir));
        if ready_now(fd, dir)? {
            return Ok(true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        let slice = now + REVALIDATE;
        let until = deadline.map_or(slice, |d| d.min(slice));
        match &source {
            Some(s) => {
                if let Some(tick) = tick {
                    s.wait(dir, tick, Some(until), reason)?;
                }
                if !s.still_same_file() {
                    return Err(closed_error());
                }
            }
            None => {
                poll_thread(fd, dir, Some(until))?;
                if identity(fd) != Some(first_id) {
                    return Err(closed_error());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registration that comes after the source was closed is refused, so nothing is left in
    /// the domain's epoll and slab (a registration racing a close used to stay there for good).
    #[test]
    fn no_registration_after_close() {
        crate::Builder::new().domains(1).run(|| {
            let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&a);
            let source = Source::owned(fd);
            source.close();
            let err = source.ensure_registered().unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EBADF));
            let registered = crate::sched::with_local(|l| l.shared.poller().has_registrations());
            assert!(!registered, "a closed source registered");
        });
    }

    /// Closing a registered source removes its registration.
    #[test]
    fn close_removes_the_registration() {
        crate::Builder::new().domains(1).run(|| {
            let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&a);
            let source = Source::owned(fd);
            assert!(source.ensure_registered().unwrap());
            let registered = || crate::sched::with_local(|l| l.shared.poller().has_registrations());
            assert!(registered());
            source.close();
            assert!(!registered());
        });
    }
}
