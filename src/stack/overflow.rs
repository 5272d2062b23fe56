//! Stack overflow reporting: a SIGSEGV/SIGBUS handler that recognises a fault in the guard page
//! of the task running on this thread.
//!
//! Protocol:
//! 1. The handler is installed once per process ([`install_handler`]), with `SA_ONSTACK`, and
//!    remembers the handlers it replaces (often std's, which reports main-thread overflows). In
//!    this order: (a) read the current SIGSEGV and SIGBUS actions into `PREVIOUS`; (b) publish
//!    them by setting `PREVIOUS_READY` (Release); (c) only then install ours. A fault on another
//!    thread may run our handler the instant the kernel has it, so it must find `PREVIOUS`
//!    complete: the handler loads `PREVIOUS_READY` (Acquire) before reading it. (Installing and
//!    receiving the old action in the same `sigaction` call, as before, left a window where the
//!    handler could run before the kernel had written `PREVIOUS`.)
//! 2. Every domain thread has an alternate signal stack ([`AltStack`]), since a fault in a guard
//!    region leaves no room on the faulting stack to run the handler. Ours has a guard region
//!    below it too, so a handler that overflows the alternate stack faults (the kernel then
//!    kills the process, SIGSEGV being blocked in its own handler) instead of writing into
//!    whatever mapping lies below.
//! 3. The scheduler tells the handler, through the lookup function it passed at installation,
//!    which task runs on the faulting thread: a plain load of the scheduler's `const`
//!    thread-local (async-signal-safe), so a switch pays nothing extra for overflow reporting.
//! 4. On a fault anywhere inside that task's guard region (the [`GUARD`](super::GUARD) bytes
//!    below its stack) the handler writes
//!    `task '<name>' (id N) has overflowed its stack of S KiB` with `write(2)` (no allocation, no
//!    lock) and aborts. Any other fault goes to the previous handler, or to the default action.
//!
//! The calls go through nix, except three that stay raw libc: reading an action without
//! changing it (nix's `sigaction` always installs one), `sigaltstack` (nix 0.30 does not wrap
//! it), and `write`/`abort` in the handler (async-signal-safe, nothing to wrap).

use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memmap2::{MmapMut, MmapOptions};
use nix::sys::mman::{self, ProtFlags};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::util::StackBuf;

/// What the handler needs to know about the running task.
pub(crate) struct OverflowInfo {
    pub(crate) guard_low: usize,
    pub(crate) guard_high: usize,
    pub(crate) stack_size: usize,
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
}

/// Finds the [`OverflowInfo`] of the task running on the calling thread (null if none). It must
/// be async-signal-safe: a read of a `const` thread-local and a field offset.
pub(crate) type RunningLookup = fn() -> *const OverflowInfo;

static LOOKUP: AtomicUsize = AtomicUsize::new(0);

/// The signals the handler takes, in the order of `PREVIOUS`.
const SIGNALS: [Signal; 2] = [Signal::SIGSEGV, Signal::SIGBUS];

/// The actions our handler replaced, one per entry of [`SIGNALS`]. Written once, before
/// `PREVIOUS_READY` is set; read only after it is seen set.
static mut PREVIOUS: MaybeUninit<[libc::sigaction; 2]> = MaybeUninit::uninit();
/// Set (Release) once `PREVIOUS` is complete, before our handler is installed.
static PREVIOUS_READY: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the overflow handler for SIGSEGV and SIGBUS once per process; `running` tells it
/// which task runs on the faulting thread.
pub(crate) fn install_handler(running: RunningLookup) {
    INSTALL.call_once(|| {
        LOOKUP.store(running as usize, Ordering::Release);
        // Step 1a: read the actions in place now, without changing them.
        // SAFETY: runs once (in `call_once`), before PREVIOUS_READY is set, so no handler reads
        // PREVIOUS yet; `sigaction` with a null new action only writes the current one to a
        // valid out-pointer.
        unsafe {
            let slots = (&raw mut PREVIOUS).cast::<libc::sigaction>();
            for (i, sig) in SIGNALS.into_iter().enumerate() {
                libc::sigaction(sig as libc::c_int, std::ptr::null(), slots.add(i));
            }
        }
        // Step 1b: publish them.
        PREVIOUS_READY.store(true, Ordering::Release);
        // Step 1c: install ours.
        let ours = SigAction::new(
            SigHandler::SigAction(handler),
            SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
            SigSet::empty(),
        );
        for sig in SIGNALS {
            // SAFETY: `handler` is async-signal-safe (atomics, a const thread-local, write(2),
            // abort(3), sigaction(2), and the previous handler, which was installed for exactly
            // these signals). Installing cannot fail for these signals with a valid action; if
            // it did, the previous handler would simply stay.
            let _ = unsafe { sigaction(sig, &ours) };
        }
    });
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let lookup = LOOKUP.load(Ordering::Acquire);
    let running = if lookup == 0 {
        std::ptr::null()
    } else {
        // SAFETY: LOOKUP only ever holds a `RunningLookup` stored by `install_handler`.
        let f: RunningLookup = unsafe { std::mem::transmute::<usize, RunningLookup>(lookup) };
        f()
    };
    if !running.is_null() {
        // SAFETY: the scheduler keeps the published task alive while it runs on this thread,
        // and the fault happened while it ran.
        let task = unsafe { &*running };
        if addr >= task.guard_low && addr < task.guard_high {
            report(task);
        }
    }
    // Not ours: hand over to whoever was there before us.
    let i = if sig == libc::SIGSEGV { 0 } else { 1 };
    // SAFETY: PREVIOUS is read only once PREVIOUS_READY is seen set (Acquire), which happens
    // only after PREVIOUS was fully written, and it is never written again. A handler other
    // than SIG_DFL/SIG_IGN was installed for this signal by whoever was there before us, with
    // the signature its SA_SIGINFO flag says.
    let chained = PREVIOUS_READY.load(Ordering::Acquire)
        && unsafe {
            let prev = &*(&raw const PREVIOUS).cast::<libc::sigaction>().add(i);
            let h = prev.sa_sigaction;
            if h == libc::SIG_DFL || h == libc::SIG_IGN {
                false
            } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
                type Full = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
                std::mem::transmute::<usize, Full>(h)(sig, info, ctx);
                true
            } else {
                std::mem::transmute::<usize, extern "C" fn(libc::c_int)>(h)(sig);
                true
            }
        };
    if chained {
        return;
    }
    // No handler before us (or, impossibly, none published yet): restore the default action
    // and return; the faulting instruction runs again and the kernel applies the default
    // action (a core dump).
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing the default action is async-signal-safe and always valid.
    let _ = unsafe { sigaction(SIGNALS[i], &dfl) };
}

fn report(task: &OverflowInfo) -> ! {
    let mut msg = StackBuf::<512>::new();
    let name = task.name.as_deref().unwrap_or("<unnamed>");
    let _ = writeln!(
        msg,
        "\ntask '{}' (id {}) has overflowed its stack of {} KiB",
        name,
        task.id,
        task.stack_size / 1024
    );
    let _ = writeln!(msg, "fatal runtime error: stack overflow, aborting");
    let bytes = msg.as_bytes();
    // SAFETY: write(2) and abort(3) are async-signal-safe; the buffer is valid.
    unsafe {
        libc::write(2, bytes.as_ptr() as *const libc::c_void, bytes.len());
        libc::abort();
    }
}

/// An alternate signal stack for the current thread, installed unless one is already there
/// (std installs its own on the threads it starts when its overflow handler is in place).
///
/// ```text
///  one anonymous mapping (memmap2):
///  +----------------------------+--------------------------------+
///  | guard (GUARD bytes), ---p  | alternate stack (64 KiB), rw-p |
///  +----------------------------+--------------------------------+
///                               ^ss_sp                           ^ss_sp + ss_size
/// ```
///
/// The guard is made with `mprotect(PROT_NONE)`, so it is its own mapping: a handler overflowing
/// the alternate stack faults there instead of writing into whatever lies below.
pub(crate) struct AltStack {
    /// The mapping while it is this thread's alternate stack; `None` if another was in place.
    mapping: Option<MmapMut>,
}

impl AltStack {
    /// Installs an alternate signal stack on the calling thread if it has none; it stays until
    /// the value is dropped.
    pub(crate) fn ensure() -> AltStack {
        let mut old = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: 0,
            ss_size: 0,
        };
        // SAFETY: a query (null new stack) into a valid out-pointer.
        let rc = unsafe { libc::sigaltstack(std::ptr::null(), &mut old) };
        if rc != 0 || old.ss_flags & libc::SS_DISABLE == 0 {
            return AltStack { mapping: None };
        }
        let guard = super::guard_len();
        let size = super::round_to_page((64 * 1024usize).max(libc::SIGSTKSZ));
        let Ok(mut map) = MmapOptions::new().len(guard + size).map_anon() else {
            return AltStack { mapping: None };
        };
        let low = NonNull::new(map.as_mut_ptr().cast::<libc::c_void>()).expect("not at 0");
        // SAFETY: the first `guard` bytes of the fresh mapping we own, page aligned; no
        // reference into them exists, and nothing reads or writes them afterwards.
        if unsafe { mman::mprotect(low, guard, ProtFlags::PROT_NONE) }.is_err() {
            return AltStack { mapping: None };
        }
        let st = libc::stack_t {
            // In bounds: `guard` is less than the mapping's length.
            ss_sp: map.as_mut_ptr().wrapping_add(guard).cast(),
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: `st` describes the writable part of the mapping, which stays mapped (held
        // by the returned value) until `drop` has disabled the alternate stack.
        if unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) } != 0 {
            return AltStack { mapping: None };
        }
        AltStack { mapping: Some(map) }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if let Some(map) = self.mapping.take() {
            let st = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disabling takes no memory; the alternate stack is disabled before its
            // mapping is unmapped (when `map` drops, below).
            unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
            drop(map);
        }
    }
}
