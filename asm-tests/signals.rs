//! Signals delivered while a task runs are handled, and the task carries on.
//!
//! A signal is delivered to an OS thread, whatever that thread is running. On a domain thread
//! that is usually a task, so the kernel builds the handler's frame on the task's stack (or on
//! the thread's alternate signal stack for an `SA_ONSTACK` handler), runs the handler, and
//! returns into the task with `sigreturn`. Nothing in the runtime is involved, but everything it
//! set up must allow it: the task stack must have room below the deepest frame, the alternate
//! stack of a domain thread must be usable, and an idle domain interrupted in `epoll_wait`
//! (`EINTR`) must go back to waiting without losing its timers.
//!
//! The handlers below only touch atomics: they count deliveries per thread (in a `const`
//! thread-local, a plain TLS access) and remember where their own frame was, so the tests can
//! tell which stack a handler ran on.
//!
//! ```text
//!  task stack, SIGUSR1 (no SA_ONSTACK)        SIGUSR2 (SA_ONSTACK)
//!  +------------------------+ top             task stack untouched; the handler runs on the
//!  | task frames ...        |                 domain thread's alternate signal stack
//!  | deepest frame          | <- interrupted
//!  | signal frame + handler | <- handler sp
//!  +------------------------+ guard page
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::thread;

thread_local! {
    /// SIGUSR1 and SIGUSR2 deliveries to this thread.
    static DELIVERED: [AtomicU64; 2] = const { [AtomicU64::new(0), AtomicU64::new(0)] };
    /// The address of a local of the last SIGUSR1 / SIGUSR2 handler that ran on this thread.
    static HANDLER_SP: [AtomicUsize; 2] = const { [AtomicUsize::new(0), AtomicUsize::new(0)] };
}

fn slot(sig: libc::c_int) -> usize {
    if sig == libc::SIGUSR1 { 0 } else { 1 }
}

/// Counts a delivery on this thread and records where the handler's frame is.
extern "C" fn on_signal(sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let i = slot(sig);
    HANDLER_SP.with(|s| s[i].store(sp, Ordering::SeqCst));
    DELIVERED.with(|d| d[i].fetch_add(1, Ordering::SeqCst));
}

/// Installs the handlers once: SIGUSR1 runs on the interrupted stack, SIGUSR2 on the
/// alternate signal stack.
fn install_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (sig, extra) in [(libc::SIGUSR1, 0), (libc::SIGUSR2, libc::SA_ONSTACK)] {
            // SAFETY: a zeroed sigaction is a valid starting point; the handler has the
            // SA_SIGINFO signature and is async-signal-safe (atomics and const TLS only).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | extra;
                libc::sigemptyset(&mut action.sa_mask);
                assert_eq!(
                    libc::sigaction(sig, &action, std::ptr::null_mut()),
                    0,
                    "sigaction failed"
                );
            }
        }
    });
}

fn delivered(sig: libc::c_int) -> u64 {
    DELIVERED.with(|d| d[slot(sig)].load(Ordering::SeqCst))
}

fn handler_sp(sig: libc::c_int) -> usize {
    HANDLER_SP.with(|s| s[slot(sig)].load(Ordering::SeqCst))
}

/// Sends `sig` to the calling thread; the handler has run when this returns.
fn raise_here(sig: libc::c_int) {
    // SAFETY: pthread_self is always a valid thread of this process, and both signals have
    // handlers installed.
    let rc = unsafe { libc::pthread_kill(libc::pthread_self(), sig) };
    assert_eq!(rc, 0, "pthread_kill failed");
}

/// The address of a local in the caller's frame: a point on the current stack.
#[inline(never)]
fn here() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Whether the SIGUSR1 handler's last frame on this thread lay on the task stack whose frame
/// `task_sp` is, below it (stacks grow down) and within `stack_size` of it.
fn handler_ran_below(task_sp: usize, stack_size: usize) -> bool {
    let sp = handler_sp(libc::SIGUSR1);
    sp < task_sp && task_sp - sp < stack_size
}

/// A task that raises SIGUSR1 on its own thread sees its handler run at once, on the task's
/// stack, and carries on: it yields, sleeps and raises again, among other tasks doing the same.
#[test]
fn signal_raised_by_a_task_on_its_own_thread_is_handled_on_its_stack() {
    install_handlers();
    common::watchdog(
        30,
        "signal_raised_by_a_task_on_its_own_thread_is_handled_on_its_stack",
        || {
            bobine::Builder::new().domains(1).run(|| {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    thread::spawn(move || {
                        let mut work = 0u64;
                        for round in 0..20 {
                            let before = delivered(libc::SIGUSR1);
                            let sp = here();
                            raise_here(libc::SIGUSR1);
                            assert_eq!(delivered(libc::SIGUSR1), before + 1, "task {t} round {round}: no handler ran");
                            assert!(
                                handler_ran_below(sp, 256 * 1024),
                                "task {t} round {round}: the handler frame at {:#x} is not on the task stack below {sp:#x}",
                                handler_sp(libc::SIGUSR1)
                            );
                            work += t * round;
                            if round % 2 == 0 {
                                thread::yield_now();
                            } else {
                                thread::sleep(Duration::from_millis(1));
                            }
                        }
                        work
                    })
                })
                .collect();
            let sums: Vec<u64> = handles.into_iter().map(|h| h.join().expect("a signalling task failed")).collect();
            let rounds: u64 = (0..20).sum();
            assert_eq!(sums, (0..4).map(|t| t * rounds).collect::<Vec<_>>());
        });
        },
    );
}

/// A signal sent from another OS thread to a domain thread that is busy running a task
/// interrupts that task: the handler runs on the task's stack, and the task then finishes.
#[test]
fn signal_from_another_thread_interrupts_a_running_task() {
    install_handlers();
    common::watchdog(
        30,
        "signal_from_another_thread_interrupts_a_running_task",
        || {
            let target = Arc::new(AtomicU64::new(0));
            let t = target.clone();
            // The sender: waits for the task to publish its domain thread, then signals it once.
            let sender = std::thread::spawn(move || {
                let id = loop {
                    match t.load(Ordering::Acquire) {
                        0 => std::thread::sleep(Duration::from_millis(1)),
                        id => break id,
                    }
                };
                // SAFETY: `id` is the pthread_t of the domain thread, which stays alive until the
                // task has seen this signal (it spins until then).
                let rc = unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR1) };
                assert_eq!(rc, 0, "pthread_kill failed");
            });
            let (spins, result) = bobine::Builder::new().domains(1).run(|| {
                let task = thread::spawn(move || {
                    let before = delivered(libc::SIGUSR1);
                    let sp = here();
                    // SAFETY: pthread_self has no preconditions.
                    target.store(unsafe { libc::pthread_self() } as u64, Ordering::Release);
                    // Spin without switching, so the signal lands while this task runs.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let mut spins = 0u64;
                    while delivered(libc::SIGUSR1) == before {
                        assert!(Instant::now() < deadline, "no signal arrived within 10 s");
                        std::hint::spin_loop();
                        spins += 1;
                    }
                    assert_eq!(delivered(libc::SIGUSR1), before + 1);
                    assert!(
                        handler_ran_below(sp, 256 * 1024),
                        "the handler frame at {:#x} is not on the task stack below {sp:#x}",
                        handler_sp(libc::SIGUSR1)
                    );
                    // Carry on normally after the interruption.
                    let mut acc = 0u64;
                    for i in 0..10u64 {
                        thread::yield_now();
                        acc += i;
                    }
                    (spins, acc)
                });
                task.join().expect("the interrupted task failed")
            });
            sender.join().expect("the sender failed");
            assert!(spins > 0, "the task did not wait for the signal");
            assert_eq!(result, 45);
        },
    );
}

/// A handler that runs while a task is deep in its stack runs below the deepest frame (or on
/// the alternate signal stack for `SA_ONSTACK`), and the task's frames are intact afterwards.
#[test]
fn signal_handled_while_a_task_is_deep_in_its_stack() {
    const STACK: usize = 256 * 1024;
    const DEPTH: u32 = 100;

    /// Descends `DEPTH` frames of about 1 KiB each, raises both signals at the bottom, and
    /// returns the sum of the depths read back from every frame on the way up.
    #[inline(never)]
    fn descend(depth: u32, top: usize, seen: &mut Vec<String>) -> u32 {
        let frame = std::hint::black_box([depth as u8; 1024]);
        if depth == DEPTH {
            let bottom = here();
            let (usr1, usr2) = (delivered(libc::SIGUSR1), delivered(libc::SIGUSR2));
            raise_here(libc::SIGUSR1);
            raise_here(libc::SIGUSR2);
            if delivered(libc::SIGUSR1) != usr1 + 1 || delivered(libc::SIGUSR2) != usr2 + 1 {
                seen.push("a handler did not run".into());
            }
            if !handler_ran_below(bottom, STACK) {
                seen.push(format!(
                    "SIGUSR1 handler at {:#x}, not below the deepest frame {bottom:#x}",
                    handler_sp(libc::SIGUSR1)
                ));
            }
            let alt = handler_sp(libc::SIGUSR2);
            if alt <= top && top - alt < STACK {
                seen.push(format!(
                    "SA_ONSTACK handler at {alt:#x} ran on the task stack (top {top:#x})"
                ));
            }
            thread::yield_now();
            return u32::from(frame[1023]);
        }
        descend(depth + 1, top, seen) + u32::from(frame[1023])
    }

    install_handlers();
    common::watchdog(
        30,
        "signal_handled_while_a_task_is_deep_in_its_stack",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let handles: Vec<_> = (0..3)
                    .map(|_| {
                        thread::Builder::new()
                            .stack_size(STACK)
                            .spawn(|| {
                                let mut seen = Vec::new();
                                let sum = descend(0, here(), &mut seen);
                                (sum, seen)
                            })
                            .expect("spawn task")
                    })
                    .collect();
                for h in handles {
                    let (sum, problems) = h.join().expect("a deep task failed");
                    assert!(problems.is_empty(), "{problems:?}");
                    assert_eq!(sum, DEPTH * (DEPTH + 1) / 2, "the deep frames were damaged");
                }
            });
        },
    );
}

/// A signal that interrupts an idle domain (asleep in `epoll_wait` while its only task sleeps)
/// does not break the scheduler: the handler runs and the sleeping task still wakes up.
#[test]
fn signal_interrupting_an_idle_domain_does_not_lose_its_timers() {
    install_handlers();
    common::watchdog(
        30,
        "signal_interrupting_an_idle_domain_does_not_lose_its_timers",
        || {
            let target = Arc::new(AtomicU64::new(0));
            let t = target.clone();
            let sender = std::thread::spawn(move || {
                let id = loop {
                    match t.load(Ordering::Acquire) {
                        0 => std::thread::sleep(Duration::from_millis(1)),
                        id => break id,
                    }
                };
                // Most likely the domain is asleep in epoll_wait by now: its only task sleeps.
                std::thread::sleep(Duration::from_millis(5));
                // SAFETY: the domain thread stays alive until its task has seen this signal.
                let rc = unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR1) };
                assert_eq!(rc, 0, "pthread_kill failed");
            });
            let naps = bobine::Builder::new().domains(1).run(|| {
                let before = delivered(libc::SIGUSR1);
                // SAFETY: pthread_self has no preconditions.
                target.store(unsafe { libc::pthread_self() } as u64, Ordering::Release);
                let mut naps = 0u32;
                while delivered(libc::SIGUSR1) == before {
                    assert!(naps < 2000, "no signal arrived after 2000 naps");
                    thread::sleep(Duration::from_millis(5));
                    naps += 1;
                }
                // The timers still work after the interruption.
                for _ in 0..3 {
                    thread::sleep(Duration::from_millis(1));
                    naps += 1;
                }
                naps
            });
            sender.join().expect("the sender failed");
            assert!(naps >= 4, "the main task did not sleep through the signal");
        },
    );
}

/// The `/proc/self/maps` line of the mapping holding `addr`: (start, end, permissions).
fn mapping_of(addr: usize) -> Option<(usize, usize, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let perms = fields.next()?.to_owned();
        (start <= addr && addr < end).then_some((start, end, perms))
    })
}

/// A domain thread without an alternate signal stack gets one from the runtime, with a guard
/// below it: seen from a task, the thread's alternate stack is enabled and the memory just below
/// `ss_sp` is a mapping with no access (`---p`), so a handler overflowing it faults.
#[test]
fn the_runtime_alternate_signal_stack_has_a_guard_below_it() {
    common::watchdog(
        30,
        "the_runtime_alternate_signal_stack_has_a_guard_below_it",
        || {
            // This test thread has std's alternate stack; set it aside so that `run`, making
            // this thread domain 0, installs the runtime's own.
            let off = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            let mut std_stack = std::mem::MaybeUninit::<libc::stack_t>::zeroed();
            // SAFETY: valid pointers; this thread is running on its own stack, not the
            // alternate one, so disabling it is allowed.
            let rc = unsafe { libc::sigaltstack(&off, std_stack.as_mut_ptr()) };
            assert_eq!(rc, 0, "sigaltstack: {}", std::io::Error::last_os_error());
            // SAFETY: all-zero is a valid stack_t, filled in by the call above.
            let std_stack = unsafe { std_stack.assume_init() };

            let seen = bobine::Builder::new().domains(1).run(|| {
                let mut cur = std::mem::MaybeUninit::<libc::stack_t>::zeroed();
                // SAFETY: a query (null new stack) into a valid out-pointer.
                let rc = unsafe { libc::sigaltstack(std::ptr::null(), cur.as_mut_ptr()) };
                assert_eq!(rc, 0, "sigaltstack: {}", std::io::Error::last_os_error());
                // SAFETY: filled in by the call above.
                let cur = unsafe { cur.assume_init() };
                let sp = cur.ss_sp as usize;
                // Read while the runtime (and so its alternate stack) is alive.
                (
                    cur.ss_flags,
                    sp,
                    mapping_of(sp),
                    mapping_of(sp.wrapping_sub(1)),
                )
            });

            if std_stack.ss_flags & libc::SS_DISABLE == 0 {
                // SAFETY: std's alternate stack is still mapped (std frees it when this thread
                // ends); putting it back restores the thread as it was.
                unsafe { libc::sigaltstack(&std_stack, std::ptr::null_mut()) };
            }

            let (flags, sp, stack, below) = seen;
            assert_eq!(
                flags & libc::SS_DISABLE,
                0,
                "the domain thread has no alternate signal stack"
            );
            let stack = stack.expect("the alternate stack is not mapped");
            assert!(
                stack.2.starts_with("rw"),
                "the alternate stack at {sp:#x} is not writable: {stack:?}"
            );
            let Some((start, end, perms)) = below else {
                panic!("nothing is mapped just below the alternate stack at {sp:#x}: no guard");
            };
            assert_eq!(
                perms, "---p",
                "the mapping just below the alternate stack at {sp:#x} ({start:#x}-{end:#x}) is \
                 accessible: no guard"
            );
            assert_eq!(
                end, sp,
                "the guard does not end where the alternate stack starts"
            );
        },
    );
}
