//! A task that overflows its stack hits its guard page, and the process aborts with a message
//! naming the task, like std does for threads.
//!
//! A stack overflow ends the process, so every case runs in a child process: this binary
//! re-runs itself with `BOBINE_OVERFLOW_CHILD=<case>`, the child starts a runtime and makes a
//! task recurse without bound, and the parent checks how the child died and what it printed.
//!
//! Parent, per case:
//! 1. spawn `current_exe()` with the case in the environment and stderr piped;
//! 2. wait at most [`CHILD_TIMEOUT`], killing the child past it (a hang is a failure);
//! 3. assert the signal that ended it (SIGABRT for an overflow: the handler prints and aborts)
//!    and the lines on its stderr.
//!
//! The binary has no test harness (`harness = false`): it prints one line per case and a final
//! `N passed, M failed` line, and exits non-zero if a case failed.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bobine::thread;

const CHILD_ENV: &str = "BOBINE_OVERFLOW_CHILD";
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the child of the other-domain case tries to get a task onto domain 1.
const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The line a child prints when a case could not be set up (it then exits with code 2).
const SETUP_FAILED: &str = "overflow-child: setup failed:";

/// Recurses until the stack runs out: each frame holds a 4 KiB array the optimiser cannot drop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[depth as usize % 4096] = depth as u8;
    std::hint::black_box(&mut frame);
    // Never true, but the compiler cannot know: keeps the recursion "conditional".
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[(depth as usize * 7) % 4096])
}

/// The usable stack of the tasks of the `large_frame_below_guard` cases.
const CLASH_STACK: usize = 64 * 1024;
/// How far below its stack's lowest usable address the `large_frame_below_guard` task writes:
/// past a one-page guard, within a 64 KiB one.
const CLASH_DEPTH: usize = 24 * 1024;

/// What C code with a frame larger than the guard does when compiled without stack-clash
/// probes: its first store lands far below the stack pointer, past the guard, without ever
/// touching the guard itself. Writes one byte [`CLASH_DEPTH`] bytes below the lowest usable
/// address of the running task's [`CLASH_STACK`]-byte stack; if that does not fault, prints
/// why and exits with code 3.
///
/// The stack's top is the stack pointer rounded up to a page: at this depth only the runtime's
/// entry frames sit above the task's body, less than a page; if they were more, the write only
/// lands deeper (still inside a 64 KiB guard, and still in the neighbouring slot without it).
#[inline(never)]
fn large_frame_without_probes() {
    let page = 4096;
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let top = sp.next_multiple_of(page);
    let lowest_usable = top - CLASH_STACK;
    let target = lowest_usable - CLASH_DEPTH;
    // SAFETY: deliberately unsound, in a child process that exists to die of it: the address
    // lies below this task's stack, where the runtime must have put a guard region that faults.
    unsafe { std::ptr::write_volatile(std::ptr::with_exposed_provenance_mut::<u8>(target), 0x5a) };
    eprintln!(
        "overflow-child: the write {CLASH_DEPTH} bytes below the stack (at {target:#x}) did not \
         fault: it landed in mapped memory, the neighbouring slot's stack"
    );
    std::process::exit(3);
}

/// Announces which task and thread is about to overflow, for the parent to check.
fn announce() {
    let me = thread::current();
    eprintln!(
        "overflow-child: task '{}' recursing on thread '{}'",
        me.name().unwrap_or("<unnamed>"),
        std::thread::current().name().unwrap_or("<unnamed>")
    );
    eprintln!("overflow-child: its id is {}", me.id().as_u64());
}

/// The report line expected for the announced task (named by its `ThreadId`, as every report
/// is) with a stack of `kib` KiB.
fn expected_report(o: &ChildOutcome, kib: usize) -> String {
    let (task, _) = announced(&o.stderr).unwrap_or_default();
    let id = o
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("overflow-child: its id is "))
        .unwrap_or("<not announced>");
    format!("task '{task}' (id {id}) has overflowed its stack of {kib} KiB")
}

/// Child side: runs one case. Never returns: the case kills the process, or the child exits
/// with code 2 after printing why the case could not be run.
fn child(case: &str) -> ! {
    // No core files from the aborts we provoke.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid rlimit; lowering our own core limit is always allowed.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };

    match case {
        "named_default_stack" | "named_default_stack_mprotect_guard" => {
            bobine::Builder::new().domains(1).run(|| {
                let deep = thread::Builder::new()
                    .name("deep".into())
                    .spawn(|| {
                        // Switch a few times first, with other tasks running in between.
                        for _ in 0..3 {
                            thread::yield_now();
                            thread::sleep(Duration::from_millis(1));
                        }
                        announce();
                        recurse(0)
                    })
                    .expect("spawn deep");
                let others: Vec<_> = (0..4)
                    .map(|_| {
                        thread::spawn(|| {
                            for _ in 0..100 {
                                thread::yield_now();
                            }
                        })
                    })
                    .collect();
                let _ = deep.join();
                for h in others {
                    let _ = h.join();
                }
            });
        }
        "unnamed_64k_stack" => {
            bobine::Builder::new().domains(1).run(|| {
                let h = thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(|| {
                        announce();
                        recurse(0)
                    })
                    .expect("spawn task");
                let _ = h.join();
            });
        }
        "task_on_second_domain" => {
            static CLAIMED: AtomicBool = AtomicBool::new(false);
            bobine::Builder::new().domains(2).run(|| {
                // Tasks start where they are spawned (domain 0 here) unless an idle domain takes
                // them before they start: spawn waves of named workers until one of them finds
                // itself on domain 1; that one overflows. Worker n gets id n (the main task is 0).
                let deadline = Instant::now() + PLACEMENT_TIMEOUT;
                let mut n = 0u64;
                while !CLAIMED.load(Ordering::Acquire) && Instant::now() < deadline {
                    let wave: Vec<_> = (0..16)
                        .map(|_| {
                            n += 1;
                            thread::Builder::new()
                                .name(format!("worker-{n}"))
                                .spawn(|| {
                                    let on_domain_1 = std::thread::current().name() == Some("bobine-domain-1");
                                    if on_domain_1 && !CLAIMED.swap(true, Ordering::AcqRel) {
                                        announce();
                                        recurse(0);
                                    }
                                })
                                .expect("spawn worker")
                        })
                        .collect();
                    for h in wave {
                        let _ = h.join();
                    }
                }
                if !CLAIMED.load(Ordering::Acquire) {
                    eprintln!(
                        "{SETUP_FAILED} none of {n} tasks spawned on domain 0 of a 2-domain runtime \
                         ran on bobine-domain-1 within {PLACEMENT_TIMEOUT:?}"
                    );
                    std::process::exit(2);
                }
                // The claimed task aborts the process; wait for it.
                loop {
                    thread::sleep(Duration::from_millis(10));
                }
            });
        }
        "global_runtime_domain" => {
            // Spawned from a plain thread: the task runs on a domain thread of the global
            // runtime, not on this thread; the global runtime also numbers its tasks from 1.
            let h = thread::Builder::new()
                .name("far".into())
                .spawn(|| {
                    announce();
                    recurse(0)
                })
                .expect("spawn on the global runtime");
            let _ = h.join();
        }
        "large_frame_below_guard" | "large_frame_below_guard_mprotect_guard" => {
            bobine::Builder::new().domains(1).run(|| {
                // Two tasks with the same small stack, so they sit in adjacent slots of one
                // chunk: the neighbour (spawned first, the lower slot) stays parked with live
                // frames while the other writes below its own stack.
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                let neighbour = thread::Builder::new()
                    .name("neighbour".into())
                    .stack_size(CLASH_STACK)
                    .spawn(move || {
                        // Parks until the process dies (a plain channel would block the domain).
                        while rx.try_recv().is_err() {
                            thread::sleep(Duration::from_millis(1));
                        }
                    })
                    .expect("spawn neighbour");
                thread::yield_now();
                let clash = thread::Builder::new()
                    .name("clash".into())
                    .stack_size(CLASH_STACK)
                    .spawn(|| {
                        announce();
                        large_frame_without_probes();
                    })
                    .expect("spawn clash");
                let _ = clash.join();
                let _ = tx.send(());
                let _ = neighbour.join();
            });
        }
        "fault_outside_guard" => {
            bobine::Builder::new().domains(1).run(|| {
                let h = thread::Builder::new()
                    .name("wild".into())
                    .spawn(|| {
                        announce();
                        // SAFETY: deliberately unsound, in a child process that exists to die of
                        // it: address 8 is never mapped, so this volatile read (which cannot be
                        // elided) faults outside any guard page.
                        unsafe { std::ptr::read_volatile(std::ptr::without_provenance::<u8>(8)) }
                    })
                    .expect("spawn task");
                let _ = h.join();
            });
        }
        other => {
            eprintln!("{SETUP_FAILED} unknown case {other:?}");
            std::process::exit(2);
        }
    }
    eprintln!("{SETUP_FAILED} case {case} returned instead of dying");
    std::process::exit(2);
}

/// How a child ended.
struct ChildOutcome {
    status: Option<ExitStatus>,
    stderr: String,
}

/// Runs this binary as the child of `case`, killing it after [`CHILD_TIMEOUT`].
fn run_child(case: &str, extra_env: &[(&str, &str)]) -> ChildOutcome {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, case)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child process");
    // Read stderr on a thread, so a chatty child cannot block on a full pipe.
    let mut pipe = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for child") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let stderr = reader.join().expect("stderr reader");
    ChildOutcome { status, stderr }
}

/// Checks that the child was ended by `signal` and that its stderr has every expected line.
fn check(
    outcome: &ChildOutcome,
    signal: libc::c_int,
    expected: &[String],
    unexpected: &[&str],
) -> Result<(), String> {
    let Some(status) = outcome.status else {
        return Err(format!(
            "the child did not end within {CHILD_TIMEOUT:?} and was killed"
        ));
    };
    if status.signal() != Some(signal) {
        return Err(format!(
            "the child ended with {status}, expected signal {signal}"
        ));
    }
    for line in expected {
        if !outcome.stderr.lines().any(|l| l == line) {
            return Err(format!("stderr lacks the line {line:?}"));
        }
    }
    for text in unexpected {
        if outcome.stderr.contains(text) {
            return Err(format!("stderr contains {text:?}"));
        }
    }
    Ok(())
}

/// The task name the child announced, if it did.
fn announced(stderr: &str) -> Option<(String, String)> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("overflow-child: task '"))?;
    let rest = line.strip_prefix("overflow-child: task '")?;
    let (task, rest) = rest.split_once("' recursing on thread '")?;
    let thread = rest.strip_suffix('\'')?;
    Some((task.to_owned(), thread.to_owned()))
}

/// One case: what it proves, and how to check its child.
struct Case {
    name: &'static str,
    proves: &'static str,
    verify: fn(&ChildOutcome) -> Result<(), String>,
    env: &'static [(&'static str, &'static str)],
}

const OVERFLOW_LINE_END: &str = "fatal runtime error: stack overflow, aborting";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "named_default_stack",
            proves: "a named task with the default stack that overflows after switching is reported by name, id and size",
            env: &[],
            verify: |o| {
                check(
                    o,
                    libc::SIGABRT,
                    &[
                        "overflow-child: task 'deep' recursing on thread 'main'".into(),
                        expected_report(o, 256),
                        OVERFLOW_LINE_END.into(),
                    ],
                    &[],
                )
            },
        },
        Case {
            name: "named_default_stack_mprotect_guard",
            proves: "the same report when guard pages are made with mprotect (the pre-6.13 fallback)",
            env: &[("BOBINE_GUARD", "mprotect")],
            verify: |o| {
                check(
                    o,
                    libc::SIGABRT,
                    &[expected_report(o, 256), OVERFLOW_LINE_END.into()],
                    &[],
                )
            },
        },
        Case {
            name: "unnamed_64k_stack",
            proves: "an unnamed task with a 64 KiB stack is reported as '<unnamed>' with its own stack size",
            env: &[],
            verify: |o| {
                check(
                    o,
                    libc::SIGABRT,
                    &[expected_report(o, 64), OVERFLOW_LINE_END.into()],
                    &[],
                )
            },
        },
        Case {
            name: "task_on_second_domain",
            proves: "a task overflowing on domain 1 of a 2-domain runtime, among other tasks, is reported",
            env: &[],
            verify: |o| {
                if let Some(line) = o.stderr.lines().find(|l| l.starts_with(SETUP_FAILED)) {
                    return Err(line.to_owned());
                }
                let Some((task, thread)) = announced(&o.stderr) else {
                    return Err("the child did not announce its overflowing task".into());
                };
                if thread != "bobine-domain-1" {
                    return Err(format!(
                        "the task overflowed on thread {thread:?}, not bobine-domain-1"
                    ));
                }
                if !task.starts_with("worker-") {
                    return Err(format!("unexpected task {task:?}"));
                }
                check(
                    o,
                    libc::SIGABRT,
                    &[expected_report(o, 256), OVERFLOW_LINE_END.into()],
                    &[],
                )
            },
        },
        Case {
            name: "global_runtime_domain",
            proves: "a task of the global runtime, on one of its domain threads, is reported",
            env: &[("BOBINE_DOMAINS", "2")],
            verify: |o| {
                let Some((_, thread)) = announced(&o.stderr) else {
                    return Err("the child did not announce its overflowing task".into());
                };
                if !thread.starts_with("bobine-global-") {
                    return Err(format!(
                        "the task ran on thread {thread:?}, not a global domain thread"
                    ));
                }
                check(
                    o,
                    libc::SIGABRT,
                    &[expected_report(o, 256), OVERFLOW_LINE_END.into()],
                    &[],
                )
            },
        },
        Case {
            name: "large_frame_below_guard",
            proves: "a store 24 KiB below a task's stack (a large C frame without stack-clash probes) hits the guard region and is reported as an overflow, instead of landing in the neighbouring slot",
            env: &[],
            verify: |o| {
                check(
                    o,
                    libc::SIGABRT,
                    &[
                        "overflow-child: task 'clash' recursing on thread 'main'".into(),
                        expected_report(o, 64),
                        OVERFLOW_LINE_END.into(),
                    ],
                    &[],
                )
            },
        },
        Case {
            name: "large_frame_below_guard_mprotect_guard",
            proves: "the same with guard regions made with mprotect (the pre-6.13 fallback)",
            env: &[("BOBINE_GUARD", "mprotect")],
            verify: |o| {
                check(
                    o,
                    libc::SIGABRT,
                    &[expected_report(o, 64), OVERFLOW_LINE_END.into()],
                    &[],
                )
            },
        },
        Case {
            name: "fault_outside_guard",
            proves: "a fault outside any guard page is not reported as an overflow: the process dies of SIGSEGV",
            env: &[],
            verify: |o| {
                check(
                    o,
                    libc::SIGSEGV,
                    &["overflow-child: task 'wild' recursing on thread 'main'".into()],
                    &["has overflowed its stack"],
                )
            },
        },
    ]
}

fn main() {
    if let Ok(case) = std::env::var(CHILD_ENV) {
        child(&case);
    }
    // `cargo test -- <filter>` passes arguments; run the cases whose name contains the filter.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for case in cases() {
        if filter.as_deref().is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let outcome = run_child(case.name, case.env);
        match (case.verify)(&outcome) {
            Ok(()) => {
                passed += 1;
                println!("overflow {} ... ok ({})", case.name, case.proves);
            }
            Err(why) => {
                failed += 1;
                println!("overflow {} ... FAILED: {why}", case.name);
                println!("  proves: {}", case.proves);
                println!("  child status: {:?}", outcome.status);
                println!("  child stderr:");
                for line in outcome.stderr.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
