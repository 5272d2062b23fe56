//! Signals: the process-wide facility that tells the rest of the crate that the process received
//! a signal, without ever running their code in signal context.
//!
//! A user subscribes with [`watch`] and gets a [`Watch`]; while one watch of a signal exists,
//! the signal's disposition is ours (a handler that only counts and writes one byte); the
//! watchers' callbacks run on one dispatcher OS thread, `bobine-signals`. When the last watch of
//! a signal goes, the disposition the process had before comes back. The facility belongs to
//! the process, not to a runtime: plain threads, several runtimes at once, or none, all use the
//! same one.
//!
//! Glossary:
//! - **delivery**: one run of our handler for a signal (the kernel merges a standard signal
//!   sent twice before it is handled into one delivery; real-time signals queue).
//! - **count**: `DELIVERED[sig]`, how many deliveries of `sig` our handler has seen since the
//!   process started. It only grows.
//! - **seen**: per watch, the count it has been told about. A watch starts with the count of
//!   the moment it is added, so earlier deliveries are not its business.
//! - **batch**: the deliveries of one signal that arrive between two scans of the dispatcher;
//!   a watch is called once per batch.
//!
//! ## A signal's state
//!
//! | state     | disposition                                | who leaves it, to what |
//! |-----------|--------------------------------------------|------------------------|
//! | UNWATCHED | whatever the process set (default, ignore, its own handler) | [`watch`]: saves that action, installs ours -> WATCHED |
//! | WATCHED   | ours: count, write a byte to the pipe      | the last [`Watch`] of the signal dropped: puts the saved action back -> UNWATCHED |
//!
//! Both transitions happen under the registry lock, so a watch added on one thread and the last
//! one dropped on another never interleave their `sigaction` calls.
//!
//! ## Protocol
//!
//! 1. **Watch.** [`watch`] checks the number ([`check`]), then under the registry lock: starts
//!    the dispatcher once per process (the pipe, then the thread); if the signal is UNWATCHED,
//!    installs our handler with `sigaction`, keeping the action it replaces; reads the count as
//!    the watch's *seen* and adds the watch. That read is the watch's start: a delivery counted
//!    before it happened before the watch; one counted after it will be reported to the watch.
//! 2. **Handler** (signal context): saves `errno`; increments the count (SeqCst); writes one
//!    byte to the pipe's non-blocking write end (a full pipe drops it: the dispatcher has bytes
//!    to read already); restores `errno`. No lock, no allocation, nothing that can be freed:
//!    the counts are statics and the pipe is never closed.
//! 3. **Dispatch.** The dispatcher blocks in `read(2)` on the pipe's read end. Woken, it takes
//!    the registry lock and, for every WATCHED signal, reads the count; each watch whose *seen*
//!    differs is brought up to date and set aside. Outside the lock it calls the set-aside
//!    watches' `on_signal`, one after the other. The handler counts before it writes and the
//!    dispatcher reads the count after it read the byte, so a delivery is seen by this scan or
//!    its byte wakes the next one: none is lost for a watch that existed when it was counted.
//! 4. **Unwatch.** Dropping a [`Watch`] removes it under the registry lock; if it was the
//!    signal's last, the saved action goes back (only if ours is still installed: an action
//!    someone set behind our back stays). Then the watch is marked dead under its call lock,
//!    which waits out a call of its `on_signal` in progress: once `drop` has returned, the
//!    callback is not running and will not run again (unless the watch is dropped by
//!    `on_signal` itself, on the dispatcher thread, which does not wait for itself).
//! 5. **A delivery racing the restore.** A delivery that reaches our handler after the last
//!    watch went but before the restore is counted and reaches nobody: the signal was still
//!    ours when it arrived. A handler still running while the action is restored touches only
//!    statics, so nothing it uses goes away. Deliveries after the restore meet the previous
//!    action; signals pending (blocked) at that moment too.
//!
//! ## Rejected designs
//!
//! - **`signalfd`.** It only receives signals blocked in every thread of the process. A library
//!   cannot set the masks of threads it does not own (`main`, std threads, a test harness's),
//!   and on any thread that leaves the signal unblocked the default action (often: end the
//!   process) would run instead.
//! - **Waking waiters from the handler.** An unpark takes locks and may allocate: not
//!   async-signal-safe. The handler only counts and writes.
//! - **The pipe in each domain's epoll.** The facility serves plain threads and processes with
//!   zero or several runtimes; tying it to a domain would tie it to that runtime's life. One
//!   dispatcher thread costs one parked OS thread, started only when a signal is first watched.
//! - **Keeping our handler once a signal was watched** (tokio's choice). It saves a `sigaction`
//!   per first watch and last drop, but a process that once waited for SIGINT would swallow
//!   every later Ctrl-C. The previous action comes back instead.
//! - **An eventfd instead of a pipe.** One descriptor fewer, but the handler's write must never
//!   block and an eventfd's blocking flag is shared by both sides, so the dispatcher would need
//!   `poll(2)`; a pipe's ends have flags of their own (blocking read, non-blocking write).
//!
//! ## Costs and limits
//!
//! [`watch`] and dropping a [`Watch`] take one lock, plus a `sigaction` for the first watch and
//! the last drop of a signal; the first watch of the process also makes the pipe and the
//! thread. Nothing here is on a yield or park path. Calls go through nix, except `sigaction`
//! (nix's `Signal` cannot hold real-time signals) and the handler's `write(2)`.
//! A child made by `fork` without `exec` has no dispatcher thread: its watches are never
//! called.

use std::cell::Cell;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Signal numbers 1 to 64 (`SIGRTMAX` on Linux) index these tables; slot 0 is unused.
const SLOTS: usize = 65;

/// The count of each signal (glossary): incremented by the handler, read by the dispatcher and
/// by [`watch`].
static DELIVERED: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// The pipe's write end, for the handler; -1 until the dispatcher has started. Never closed.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Who watches what, and the actions our handler replaced.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    started: false,
    signals: [const { Watched::new() }; SLOTS],
});

thread_local! {
    /// Set on the dispatcher thread (a watch dropped by an `on_signal` must not wait for the
    /// call that is dropping it).
    static ON_DISPATCHER: Cell<bool> = const { Cell::new(false) };
}

struct Registry {
    /// Whether the pipe and the dispatcher thread exist.
    started: bool,
    signals: [Watched; SLOTS],
}

/// One signal's watches; `previous` is `Some` exactly while the signal is WATCHED.
struct Watched {
    watches: Vec<Entry>,
    previous: Option<libc::sigaction>,
}

impl Watched {
    const fn new() -> Watched {
        Watched {
            watches: Vec::new(),
            previous: None,
        }
    }
}

/// A watch as the registry holds it, with the count it has been told about.
struct Entry {
    sub: Arc<Subscriber>,
    seen: u64,
}

/// What a [`Watch`] and the registry share.
struct Subscriber {
    on_signal: Arc<dyn Fn(i32) + Send + Sync>,
    /// False once the watch is dropped: no call starts after that.
    live: AtomicBool,
    /// Held by the dispatcher while it calls `on_signal`; the dropping side takes it once to
    /// wait such a call out (protocol step 4).
    calling: Mutex<()>,
}

impl Subscriber {
    /// Step 3's call, on the dispatcher thread. A panicking callback was reported by the panic
    /// hook; the dispatcher goes on with the others.
    fn call(&self, sig: i32) {
        let _calling = self.calling.lock().unwrap_or_else(PoisonError::into_inner);
        if self.live.load(Ordering::Acquire) {
            let f = &self.on_signal;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(sig)));
        }
    }
}

/// A subscription to one signal (see [`watch`]); dropping it unsubscribes. When the last watch
/// of a signal goes, the signal's previous disposition is restored.
///
/// Once `drop` has returned, the watch's `on_signal` is not running and is never called again,
/// except when the watch is dropped by an `on_signal` itself (on the dispatcher thread): that
/// call finishes normally.
#[must_use = "dropping a Watch unsubscribes at once"]
pub(crate) struct Watch {
    sig: i32,
    sub: Arc<Subscriber>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("sig", &self.sig).finish()
    }
}

/// Subscribes `on_signal` to the signal `sig`.
///
/// From the moment `watch` returns (precisely: a point inside it), every delivery of `sig` to
/// the process is reported: `on_signal(sig)` runs on the dispatcher thread `bobine-signals`,
/// never in signal context, once per batch of deliveries (several deliveries between two
/// scans of the dispatcher make one call; none is lost, but they are not counted one by one).
/// Deliveries before the watch started are never reported to it. While any watch of `sig`
/// exists, the process's own disposition of `sig` (its default action, an ignore, or a
/// handler) does not run; it is back when the last watch is dropped.
///
/// `on_signal` must be short and must not block for long (an unpark, a queue push): every
/// watcher of every signal shares the one dispatcher thread, and a thread dropping the watch
/// waits for a call in progress. It may create and drop watches, its own included. A panic in
/// it is reported by the panic hook and does not stop the dispatcher. The dispatcher is a plain
/// OS thread, in no runtime: an [`Unparker`](super::park::Unparker) is how it reaches a task.
///
/// Two ways to use it:
/// - For one wait (the CML `signal` leaf): watch when the wait starts, have `on_signal` raise a
///   flag and unpark the waiter, drop the watch when the wait ends.
/// - For a handler that lives until replaced and runs as ordinary code (Miou's `sys_signal`):
///   keep the `Watch` as long as the handler is installed (replacing it drops the old watch
///   after the new one is made, so the signal never falls back to its previous disposition in
///   between); have `on_signal` push `sig` on a queue that a task of the runtime drains (on
///   domain 0, say) and unpark that task. Batches mean one push may stand for several
///   deliveries, as with `Sys.signal` in OCaml, which also merges a signal received twice
///   before its handler runs.
///
/// # Errors
///
/// What [`check`] says of `sig`; the error of making the pipe or starting the dispatcher
/// thread (the first watch of the process); the error of `sigaction`.
pub(crate) fn watch(sig: i32, on_signal: Arc<dyn Fn(i32) + Send + Sync>) -> io::Result<Watch> {
    check(sig)?;
    let slot = sig as usize;
    let mut registry = lock();
    // Step 1: the dispatcher, once.
    if !registry.started {
        start_dispatcher()?;
        registry.started = true;
    }
    let watched = &mut registry.signals[slot];
    if watched.previous.is_none() {
        watched.previous = Some(install(sig)?);
    }
    // The watch starts here: what the count already holds happened before it.
    let seen = DELIVERED[slot].load(Ordering::SeqCst);
    let sub = Arc::new(Subscriber {
        on_signal,
        live: AtomicBool::new(true),
        calling: Mutex::new(()),
    });
    watched.watches.push(Entry {
        sub: sub.clone(),
        seen,
    });
    Ok(Watch { sig, sub })
}

impl Drop for Watch {
    /// Step 4.
    fn drop(&mut self) {
        {
            let mut registry = lock();
            let watched = &mut registry.signals[self.sig as usize];
            watched.watches.retain(|e| !Arc::ptr_eq(&e.sub, &self.sub));
            if watched.watches.is_empty() {
                if let Some(previous) = watched.previous.take() {
                    restore(self.sig, &previous);
                }
            }
        }
        self.sub.live.store(false, Ordering::Release);
        if !ON_DISPATCHER.with(Cell::get) {
            // Wait out a call in progress; no call starts once `live` is false.
            drop(
                self.sub
                    .calling
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
    }
}

/// Whether no signal is watched: then the dispatcher wakes nobody (for the monitor's deadlock
/// watch).
pub(crate) fn no_watch() -> bool {
    lock().signals.iter().all(|w| w.watches.is_empty())
}

/// Checks that `sig` is a signal one may watch.
///
/// # Errors
///
/// `InvalidInput`, with a message naming the signal, for: SIGKILL and SIGSTOP (they cannot be
/// caught); the synchronous fault signals SIGSEGV, SIGBUS, SIGFPE and SIGILL (a fault runs its
/// instruction again when the handler returns, and the stack overflow handler owns SIGSEGV and
/// SIGBUS); the numbers between the standard signals and `SIGRTMIN`, which the C library keeps
/// for its threads; and numbers outside `1..=SIGRTMAX`.
pub(crate) fn check(sig: i32) -> io::Result<()> {
    let max = libc::SIGRTMAX().min(SLOTS as i32 - 1);
    let why = match sig {
        libc::SIGKILL | libc::SIGSTOP => "it can be neither caught nor ignored".to_owned(),
        libc::SIGSEGV | libc::SIGBUS => "it reports a memory fault (bobine's stack overflow \
             handler owns it), and a handler that returns runs the fault again"
            .to_owned(),
        libc::SIGFPE | libc::SIGILL => "it reports a fault of the instruction that raised it, \
             which runs again when a handler returns"
            .to_owned(),
        s if s < 1 || s > max => format!("signal numbers go from 1 to SIGRTMAX ({max})"),
        s if s < libc::SIGRTMIN() && Signal::try_from(s).is_err() => format!(
            "the C library keeps the numbers below SIGRTMIN ({}) for its threads",
            libc::SIGRTMIN()
        ),
        _ => return Ok(()),
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("signal {} cannot be watched: {why}", name(sig)),
    ))
}

/// `9 (SIGKILL)`, `36 (SIGRTMIN+2)`, or the bare number.
fn name(sig: i32) -> String {
    if let Ok(s) = Signal::try_from(sig) {
        format!("{sig} ({})", s.as_str())
    } else if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) {
        format!("{sig} (SIGRTMIN+{})", sig - libc::SIGRTMIN())
    } else {
        sig.to_string()
    }
}

/// The registry, even if a thread panicked while holding it (nothing under it runs user code,
/// so its state is whole).
fn lock() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes the pipe and starts the dispatcher thread (step 1); publishes the write end for the
/// handler before any handler of ours is installed.
fn start_dispatcher() -> io::Result<()> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    std::thread::Builder::new()
        .name("bobine-signals".into())
        .spawn(move || dispatch_loop(read))?;
    // The write end lives as long as the process: a handler may run at any time.
    WAKE_FD.store(write.into_raw_fd(), Ordering::Release);
    Ok(())
}

/// Step 3, for ever: wait for a byte, scan, call.
fn dispatch_loop(read: OwnedFd) {
    ON_DISPATCHER.with(|d| d.set(true));
    let _helper = super::monitor::helper_thread(no_watch);
    let mut bytes = [0u8; 64];
    loop {
        match nix::unistd::read(&read, &mut bytes) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                // Cannot happen with a pipe whose write end is never closed; say so rather
                // than spin.
                eprintln!("bobine: the signal dispatcher stops: read from its pipe: {e}");
                return;
            }
        }
        let due: Vec<(Arc<Subscriber>, i32)> = {
            let mut registry = lock();
            let mut due = Vec::new();
            for (slot, watched) in registry.signals.iter_mut().enumerate() {
                if watched.watches.is_empty() {
                    continue;
                }
                let count = DELIVERED[slot].load(Ordering::SeqCst);
                for entry in &mut watched.watches {
                    if entry.seen != count {
                        entry.seen = count;
                        due.push((entry.sub.clone(), slot as i32));
                    }
                }
            }
            due
        };
        for (sub, sig) in due {
            sub.call(sig);
        }
    }
}

/// Step 2: the handler.
extern "C" fn on_delivery(sig: libc::c_int) {
    let errno = Errno::last_raw();
    if let Some(count) = usize::try_from(sig).ok().and_then(|i| DELIVERED.get(i)) {
        count.fetch_add(1, Ordering::SeqCst);
    }
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; `fd` is the pipe's write end, which is never
        // closed; the buffer is one byte of a live local. A failed write (a full pipe) is fine:
        // the dispatcher has bytes to read already.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
    Errno::set_raw(errno);
}

/// Our action: [`on_delivery`], restarting interrupted system calls, on the alternate signal
/// stack when the thread has one (a task stack may be nearly full).
fn ours() -> libc::sigaction {
    SigAction::new(
        SigHandler::Handler(on_delivery),
        SaFlags::SA_RESTART | SaFlags::SA_ONSTACK,
        SigSet::empty(),
    )
    .into()
}

/// Installs our handler for `sig`; returns the action it replaced.
fn install(sig: i32) -> io::Result<libc::sigaction> {
    let ours = ours();
    // SAFETY: a zeroed `sigaction` is plain data, and the kernel overwrites it below.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `sig` passed `check`; both pointers are valid for the call; `on_delivery` is
    // async-signal-safe (atomics on statics, write(2), errno).
    let rc = unsafe { libc::sigaction(sig, &ours, &mut previous) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(previous)
}

/// Puts `previous` back as the action of `sig`, if our handler is still the one installed.
fn restore(sig: i32, previous: &libc::sigaction) {
    // SAFETY: as in `install`; a zeroed `sigaction` is plain data.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a query (null new action) into a valid out-pointer.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) };
    if rc == 0 && current.sa_sigaction == ours().sa_sigaction {
        // SAFETY: `previous` is the action the kernel gave us for this very signal.
        unsafe { libc::sigaction(sig, previous, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::time::Duration;

    use super::*;
    use crate::util::{joined, within};

    /// Each test watches signals of its own (the tests share one process): `SIGRTMIN + k`.
    fn rt(k: i32) -> i32 {
        libc::SIGRTMIN() + k
    }

    /// Deliveries to the tests' own handler, per signal.
    static FALLBACK: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

    extern "C" fn count_fallback(sig: libc::c_int) {
        FALLBACK[sig as usize].fetch_add(1, SeqCst);
    }

    /// Installs the tests' counting handler as `sig`'s action, so that a delivery nobody
    /// watches is counted instead of ending the process (the default for real-time signals).
    fn fallback(sig: i32) {
        let action: libc::sigaction = SigAction::new(
            SigHandler::Handler(count_fallback),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        )
        .into();
        // SAFETY: a valid action whose handler only touches an atomic.
        let rc = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
        assert_eq!(rc, 0);
    }

    fn fallbacks(sig: i32) -> u64 {
        FALLBACK[sig as usize].load(SeqCst)
    }

    /// Sends `sig` to this thread: the handler in place runs before `raise` returns.
    fn raise(sig: i32) {
        // SAFETY: raise(3) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::raise(sig) }, 0);
    }

    /// A watch that counts its calls.
    fn counted(sig: i32) -> (Watch, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let w = watch(
            sig,
            Arc::new(move |s| {
                assert_eq!(s, sig, "called with its own signal");
                c.fetch_add(1, SeqCst);
            }),
        )
        .unwrap();
        (w, calls)
    }

    /// Waits until `calls` reaches `n` (the watchdog ends a wait that never does).
    fn wait_calls(calls: &AtomicU64, n: u64) {
        while calls.load(SeqCst) < n {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `check` refuses SIGKILL, SIGSTOP, the fault signals, the C library's numbers and
    /// numbers out of range, naming the signal; it accepts the others.
    #[test]
    fn check_refuses_what_cannot_be_watched_and_names_it() {
        let refused = [
            (libc::SIGKILL, "9 (SIGKILL)"),
            (libc::SIGSTOP, "19 (SIGSTOP)"),
            (libc::SIGSEGV, "11 (SIGSEGV)"),
            (libc::SIGBUS, "7 (SIGBUS)"),
            (libc::SIGFPE, "8 (SIGFPE)"),
            (libc::SIGILL, "4 (SIGILL)"),
            (0, "signal 0 "),
            (-1, "signal -1 "),
            (libc::SIGRTMAX() + 1, "signal 65 "),
            (32, "signal 32 "),
        ];
        for (sig, named) in refused {
            let e = check(sig).expect_err(named);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            let text = e.to_string();
            assert!(text.contains(named), "{text:?} names {named:?}");
            assert!(text.contains("cannot be watched"), "{text:?}");
            assert!(watch(sig, Arc::new(|_| {})).is_err(), "{named}");
        }
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGUSR1,
            libc::SIGCHLD,
            libc::SIGRTMIN(),
            libc::SIGRTMAX(),
        ] {
            assert!(check(sig).is_ok(), "signal {sig}");
        }
        assert_eq!(
            name(libc::SIGRTMIN() + 2),
            format!("{} (SIGRTMIN+2)", libc::SIGRTMIN() + 2)
        );
    }

    /// A delivery after `watch` returned is reported on the dispatcher thread; the process's
    /// previous action does not run meanwhile.
    #[test]
    fn a_delivery_after_the_watch_is_reported_on_the_dispatcher() {
        within(20, || {
            let sig = rt(0);
            fallback(sig);
            let on = Arc::new(Mutex::new(None));
            let o = on.clone();
            let w = watch(
                sig,
                Arc::new(move |_| {
                    *o.lock().unwrap() = std::thread::current().name().map(str::to_owned);
                }),
            )
            .unwrap();
            raise(sig);
            while on.lock().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(on.lock().unwrap().as_deref(), Some("bobine-signals"));
            assert_eq!(fallbacks(sig), 0, "the previous action ran while watched");
            drop(w);
        });
    }

    /// A watch added after a delivery is not told of it, even though the dispatcher scans
    /// every watched signal afterwards (a delivery of another signal makes it scan).
    #[test]
    fn a_delivery_before_the_watch_is_never_reported() {
        within(20, || {
            let (sig, other) = (rt(1), rt(2));
            fallback(sig);
            fallback(other);
            let (early, early_calls) = counted(sig);
            raise(sig);
            wait_calls(&early_calls, 1);
            let (late, late_calls) = counted(sig);
            let (scan, scans) = counted(other);
            // Two full scans of the dispatcher after `late` was added (scans run one after the
            // other, so the second starts after the first has made all its calls).
            raise(other);
            wait_calls(&scans, 1);
            raise(other);
            wait_calls(&scans, 2);
            assert_eq!(late_calls.load(SeqCst), 0, "told of a delivery before it");
            // It is told of the next one.
            raise(sig);
            wait_calls(&late_calls, 1);
            wait_calls(&early_calls, 2);
            drop((early, late, scan));
        });
    }

    /// Deliveries spaced by the watch's own calls are each reported: nothing lost.
    #[test]
    fn spaced_deliveries_are_each_reported() {
        within(30, || {
            let sig = rt(3);
            fallback(sig);
            let (w, calls) = counted(sig);
            const N: u64 = 200;
            for i in 1..=N {
                raise(sig);
                wait_calls(&calls, i);
            }
            assert_eq!(calls.load(SeqCst), N);
            assert_eq!(fallbacks(sig), 0);
            drop(w);
        });
    }

    /// One delivery calls every watch of the signal, each once.
    #[test]
    fn one_delivery_calls_every_watch_once() {
        within(20, || {
            let sig = rt(4);
            fallback(sig);
            let watches: Vec<_> = (0..4).map(|_| counted(sig)).collect();
            raise(sig);
            for (_, calls) in &watches {
                wait_calls(calls, 1);
            }
            // One more scan (another delivery) to see that nothing was called twice.
            let (probe, probes) = counted(sig);
            raise(sig);
            wait_calls(&probes, 1);
            for (_, calls) in &watches {
                wait_calls(calls, 2);
                assert_eq!(calls.load(SeqCst), 2);
            }
            drop((watches, probe));
        });
    }

    /// The previous action comes back when the last watch of the signal goes, not before.
    #[test]
    fn the_last_watch_dropped_restores_the_previous_action() {
        within(20, || {
            let sig = rt(5);
            fallback(sig);
            let (first, _) = counted(sig);
            let (second, calls) = counted(sig);
            drop(first);
            raise(sig);
            wait_calls(&calls, 1);
            assert_eq!(fallbacks(sig), 0, "restored while a watch remained");
            drop(second);
            raise(sig);
            assert_eq!(fallbacks(sig), 1, "the previous action is back");
            assert_eq!(calls.load(SeqCst), 1);
            // And watching again takes it over again.
            let (again, again_calls) = counted(sig);
            raise(sig);
            wait_calls(&again_calls, 1);
            assert_eq!(fallbacks(sig), 1);
            drop(again);
            raise(sig);
            assert_eq!(fallbacks(sig), 2);
        });
    }

    /// Watches added and dropped in a loop on one thread while another raises the signal: each
    /// delivery meets either our handler or the previous action (never the default action,
    /// which would end the process), and none is lost between the two.
    #[test]
    fn installs_and_restores_racing_deliveries_lose_none() {
        within(60, || {
            let sig = rt(6);
            fallback(sig);
            let before = DELIVERED[sig as usize].load(SeqCst);
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let churn = std::thread::spawn(move || {
                let mut rounds = 0u64;
                while !s.load(SeqCst) {
                    drop(watch(sig, Arc::new(|_| {})).unwrap());
                    rounds += 1;
                }
                rounds
            });
            const N: u64 = 5000;
            for _ in 0..N {
                raise(sig);
            }
            stop.store(true, SeqCst);
            assert!(joined(churn) > 0);
            let ours = DELIVERED[sig as usize].load(SeqCst) - before;
            assert_eq!(ours + fallbacks(sig), N, "ours {ours}");
        });
    }

    /// Once `drop` has returned, the callback is not running and never runs again: dropping
    /// waits out a call in progress.
    #[test]
    fn drop_waits_out_a_call_in_progress() {
        within(20, || {
            let sig = rt(7);
            fallback(sig);
            let inside = Arc::new(AtomicU64::new(0));
            let i = inside.clone();
            let w = watch(
                sig,
                Arc::new(move |_| {
                    i.fetch_add(1, SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    i.fetch_add(1, SeqCst);
                }),
            )
            .unwrap();
            raise(sig);
            wait_calls(&inside, 1);
            drop(w);
            assert_eq!(inside.load(SeqCst), 2, "drop returned during a call");
            raise(sig);
            assert_eq!(fallbacks(sig), 1);
            assert_eq!(inside.load(SeqCst), 2);
        });
    }

    /// A callback may drop its own watch (on the dispatcher thread, which does not wait for
    /// itself); the dispatcher goes on serving other watches.
    #[test]
    fn a_callback_may_drop_its_own_watch() {
        within(20, || {
            let sig = rt(8);
            fallback(sig);
            let own: Arc<Mutex<Option<Watch>>> = Arc::new(Mutex::new(None));
            let o = own.clone();
            let w = watch(
                sig,
                Arc::new(move |_| {
                    drop(o.lock().unwrap().take());
                }),
            )
            .unwrap();
            *own.lock().unwrap() = Some(w);
            raise(sig);
            while own.lock().unwrap().is_some() {
                std::thread::sleep(Duration::from_millis(1));
            }
            // The last watch went: the previous action is back.
            raise(sig);
            assert_eq!(fallbacks(sig), 1);
            let (later, calls) = counted(sig);
            raise(sig);
            wait_calls(&calls, 1);
            drop(later);
        });
    }

    /// A callback that panics is reported and the dispatcher goes on with the others, now
    /// and at later deliveries.
    #[test]
    fn a_panicking_callback_does_not_stop_the_dispatcher() {
        within(20, || {
            let sig = rt(9);
            fallback(sig);
            let panicky =
                watch(sig, Arc::new(|_| panic!("a callback panicking on purpose"))).unwrap();
            let (w, calls) = counted(sig);
            for i in 1..=3 {
                raise(sig);
                wait_calls(&calls, i);
            }
            drop((panicky, w));
        });
    }
}
