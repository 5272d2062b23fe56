//! Small building blocks shared by the runtime: a spin lock for critical sections of a few
//! instructions that are never held across a switch.

use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) mod atomic;

/// A test-and-test-and-set lock for very short critical sections.
///
/// Rules: never held across a task switch, a park, or user code. After a few hundred failed
/// spins the waiter yields its OS thread, so a holder preempted by the kernel does not make
/// the other core burn its whole time slice.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one holder at a time, so sharing the lock
// between threads is as safe as sending `T` between them.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: the lock owns its `T`; moving the lock moves the `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

// Like std's `Mutex`: state behind a lock is not observed half-updated by a caught panic (no
// user code runs under a spin lock).
impl<T> std::panic::RefUnwindSafe for SpinLock<T> {}
impl<T> std::panic::UnwindSafe for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.lock_raw();
        SpinGuard { lock: self }
    }

    /// Takes the lock without a guard, for a caller that holds several locks at once in one
    /// structure of its own (which must release each with [`SpinLock::unlock_raw`], on every
    /// path).
    #[inline]
    pub(crate) fn lock_raw(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 256 {
                    spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Releases a lock taken with [`SpinLock::lock_raw`].
    ///
    /// # Safety
    ///
    /// The caller took the lock with `lock_raw` and has not released it yet; no reference it
    /// got from [`SpinLock::data_mut`] is used afterwards.
    #[inline]
    pub(crate) unsafe fn unlock_raw(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// The protected value, for a caller that holds the lock through
    /// [`SpinLock::lock_raw`].
    ///
    /// # Safety
    ///
    /// The caller holds the lock and has no other live reference to the value.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn data_mut(&self) -> &mut T {
        // SAFETY: forwarded to the caller.
        unsafe { &mut *self.value.get() }
    }
}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `locked` is held by us.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while `locked` is held by us, and `&mut self` makes
        // this the only live reference through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// Runs a libc call, mapping `-1` to the current `errno` as an `io::Error`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller upholds the syscall's contract; see the call site.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 { Err(std::io::Error::last_os_error()) } else { Ok(res) }
    }};
}
pub(crate) use syscall;

/// Formats into a fixed buffer without allocating: used where allocation is not allowed
/// (signal handlers) or not wanted.
pub(crate) struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    pub(crate) const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> std::fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Runs `f`, exiting the process if it has not returned (or unwound) within `secs`: a test
/// that deadlocks or livelocks fails the run within seconds instead of hanging it.
#[cfg(test)]
pub(crate) fn within<T>(secs: u64, f: impl FnOnce() -> T) -> T {
    use std::io::Write;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Tells the watchdog that `f` is over, however it ended (a failed assertion included).
    struct Done(Arc<AtomicBool>);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }

    let done = Done(Arc::new(AtomicBool::new(false)));
    let flag = done.0.clone();
    let site = std::thread::current().name().unwrap_or("a test").to_owned();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if flag.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Straight to the process's stderr: the test harness captures `eprintln!`, and its
        // buffer would be lost with the process.
        let _ = writeln!(
            std::io::stderr(),
            "watchdog: {site} did not finish within {secs} s (deadlock or livelock?)"
        );
        std::process::exit(3);
    });
    f()
}

/// Joins a test's helper thread, carrying its panic on (the thread printed the message; the
/// payload goes on as is, rather than as an `unwrap` of `Any`).
#[cfg(test)]
pub(crate) fn joined<T>(thread: std::thread::JoinHandle<T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A number below `bound` from a small xorshift generator seeded per thread: uniform enough
/// for picking among a few ready candidates (CML leaves, Miou's domains and winners).
pub(crate) fn random(bound: usize) -> usize {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&std::thread::current().id(), &mut h);
            std::hash::Hash::hash(&std::time::Instant::now(), &mut h);
            std::hash::Hasher::finish(&h) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % bound as u64) as usize
    })
}
