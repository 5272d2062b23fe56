//! Stack overflow reporting: a SIGSEGV/SIGBUS handler that recognises a fault in the guard page
//! of the task running on this thread.
//!
//! Protocol:
//! 1. The handler is installed once per process ([`install_handler`]), with `SA_ONSTACK`, and
//!    remembers the handler it replaces (often std's, which reports main-thread overflows).
//! 2. Every domain thread has an alternate signal stack ([`AltStack`]), since a fault in a guard
//!    page leaves no room on the faulting stack to run the handler.
//! 3. The scheduler tells the handler, through the lookup function it passed at installation,
//!    which task runs on the faulting thread: a plain load of the scheduler's `const`
//!    thread-local (async-signal-safe), so a switch pays nothing extra for overflow reporting.
//! 4. On a fault inside that task's guard page the handler writes
//!    `task '<name>' (id N) has overflowed its stack of S KiB` with `write(2)` (no allocation, no
//!    lock) and aborts. Any other fault goes to the previous handler, or to the default action.

use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

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

struct Previous(MaybeUninit<[libc::sigaction; 2]>);
static mut PREVIOUS: Previous = Previous(MaybeUninit::uninit());
static INSTALL: Once = Once::new();

/// Installs the overflow handler for SIGSEGV and SIGBUS once per process; `running` tells it
/// which task runs on the faulting thread.
pub(crate) fn install_handler(running: RunningLookup) {
    INSTALL.call_once(|| {
        LOOKUP.store(running as usize, Ordering::Release);
        // SAFETY: runs once, before any fault can reach `handler` (which only reads PREVIOUS
        // after installation); sigaction is given valid, zero-initialised structures.
        unsafe {
            let prev = &raw mut PREVIOUS;
            let slots = (*prev).0.as_mut_ptr() as *mut libc::sigaction;
            for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, slots.add(i));
            }
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
    // SAFETY: PREVIOUS was filled before this handler was installed.
    unsafe {
        let prev = &raw const PREVIOUS;
        let slots = (*prev).0.as_ptr() as *const libc::sigaction;
        let prev = &*slots.add(if sig == libc::SIGSEGV { 0 } else { 1 });
        let h = prev.sa_sigaction;
        if h == libc::SIG_DFL || h == libc::SIG_IGN {
            // Restore the default action and return: the faulting instruction runs again and
            // the kernel applies the default action (a core dump).
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
            f(sig);
        }
    }
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

/// An alternate signal stack for the current thread, installed unless one is already there.
pub(crate) struct AltStack {
    mapping: Option<(*mut libc::c_void, usize)>,
}

impl AltStack {
    pub(crate) fn ensure() -> AltStack {
        // SAFETY: querying the current alternate stack with a null new stack is always valid.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `old` is a valid out-pointer.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut old) };
        if old.ss_flags & libc::SS_DISABLE == 0 {
            return AltStack { mapping: None };
        }
        let len = (64 * 1024usize).max(libc::SIGSTKSZ);
        // SAFETY: a fresh anonymous private mapping; no memory is aliased.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return AltStack { mapping: None };
        }
        let st = libc::stack_t {
            ss_sp: ptr,
            ss_flags: 0,
            ss_size: len,
        };
        // SAFETY: `st` describes the mapping above, which lives until this value is dropped.
        unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
        AltStack {
            mapping: Some((ptr, len)),
        }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if let Some((ptr, len)) = self.mapping {
            let st = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: the alternate stack is disabled before its memory is unmapped; the
            // mapping is ours.
            unsafe {
                libc::sigaltstack(&st, std::ptr::null_mut());
                libc::munmap(ptr, len);
            }
        }
    }
}
