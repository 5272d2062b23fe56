//! Backtraces and unwinding work on task stacks.
//!
//! A task's frames live on its own stack, entered through corosensei's trampoline rather than
//! a normal call. The unwinder (used by `std::backtrace` and by panics) walks frames with DWARF
//! CFI, so it must be able to step through the task's frames, and through the frames around a
//! switch, without stopping early or crashing. corosensei describes its trampoline with CFI
//! that links the task's root frame to the frame that resumed it, so a backtrace taken in a
//! task continues onto the domain thread's own stack, up to the function that called `run`.
//!
//! The tests run in the debug profile, with debug info, so symbol names are available.

#[path = "../tests/common/mod.rs"]
mod common;

use std::backtrace::Backtrace;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bobine::thread;

/// The frame that takes the backtrace; its name is what the tests look for.
#[inline(never)]
fn bobine_distinctive_backtrace_probe(switch_first: bool) -> String {
    if switch_first {
        thread::yield_now();
        thread::sleep(Duration::from_millis(1));
        thread::yield_now();
    }
    let bt = Backtrace::force_capture().to_string();
    std::hint::black_box(bt)
}

/// The probe's caller, one frame up.
#[inline(never)]
fn bobine_distinctive_probe_caller(switch_first: bool) -> String {
    let bt = bobine_distinctive_backtrace_probe(switch_first);
    std::hint::black_box(bt)
}

/// The number of the frame naming exactly `symbol` (not one of its closures), if any.
fn frame_number(bt: &str, symbol: &str) -> Option<u32> {
    bt.lines().find_map(|line| {
        let (n, name) = line.trim_start().split_once(": ")?;
        if name == symbol { n.parse().ok() } else { None }
    })
}

/// Asserts that `bt` shows the probe, and its caller exactly one frame up.
fn assert_shows_task_frames(bt: &str) {
    let probe = frame_number(bt, "asm_backtrace::bobine_distinctive_backtrace_probe");
    let caller = frame_number(bt, "asm_backtrace::bobine_distinctive_probe_caller");
    assert!(
        probe.is_some(),
        "the backtrace lacks the probe frame:\n{bt}"
    );
    assert_eq!(
        caller,
        probe.map(|p| p + 1),
        "the probe's caller is not the frame above it:\n{bt}"
    );
}

/// A backtrace captured in a task shows the task's own frames, innermost first.
#[test]
fn backtrace_in_task_shows_task_frames() {
    common::watchdog(30, "backtrace_in_task_shows_task_frames", || {
        let bt = bobine::Builder::new().domains(1).run(|| {
            thread::spawn(|| bobine_distinctive_probe_caller(false))
                .join()
                .expect("task failed")
        });
        assert_shows_task_frames(&bt);
    });
}

/// A backtrace captured after the task switched away and back (yield, sleep) still shows its
/// frames, in tasks with different stack sizes running at the same time.
#[test]
fn backtrace_after_resume_shows_task_frames() {
    common::watchdog(30, "backtrace_after_resume_shows_task_frames", || {
        let traces = bobine::Builder::new().domains(1).run(|| {
            let handles: Vec<_> = [64 * 1024, 256 * 1024, 1024 * 1024, 64 * 1024, 256 * 1024]
                .into_iter()
                .map(|size| {
                    thread::Builder::new()
                        .stack_size(size)
                        .spawn(|| bobine_distinctive_probe_caller(true))
                        .expect("spawn task")
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("task failed"))
                .collect::<Vec<_>>()
        });
        assert_eq!(traces.len(), 5);
        for bt in &traces {
            assert_shows_task_frames(bt);
        }
    });
}

/// A backtrace taken in the main task and in a task on a runtime of two domains shows the
/// task's frames too.
#[test]
fn backtrace_in_main_task_and_on_two_domains_shows_task_frames() {
    common::watchdog(
        30,
        "backtrace_in_main_task_and_on_two_domains_shows_task_frames",
        || {
            let (main_bt, task_bts) = bobine::Builder::new().domains(2).run(|| {
                let handles: Vec<_> = (0..4)
                    .map(|_| thread::spawn(|| bobine_distinctive_probe_caller(true)))
                    .collect();
                let main_bt = bobine_distinctive_probe_caller(true);
                (
                    main_bt,
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("task failed"))
                        .collect::<Vec<_>>(),
                )
            });
            assert_shows_task_frames(&main_bt);
            for bt in &task_bts {
                assert_shows_task_frames(bt);
            }
        },
    );
}

/// Starts a runtime and captures a backtrace in a task of it; never inlined, so it is a frame
/// of its own on the thread that calls `run`.
#[inline(never)]
fn bobine_distinctive_run_caller() -> String {
    let bt = bobine::Builder::new().domains(1).run(|| {
        thread::spawn(|| bobine_distinctive_probe_caller(true))
            .join()
            .expect("task failed")
    });
    std::hint::black_box(bt)
}

/// The unwinder walks past the task's root frame onto the domain thread's stack: a backtrace
/// taken in a task reaches the function that called `run`.
#[test]
fn backtrace_in_task_continues_past_the_switch_to_the_caller_of_run() {
    common::watchdog(
        30,
        "backtrace_in_task_continues_past_the_switch_to_the_caller_of_run",
        || {
            let bt = bobine_distinctive_run_caller();
            assert_shows_task_frames(&bt);
            let caller = frame_number(&bt, "asm_backtrace::bobine_distinctive_probe_caller");
            let run_caller = frame_number(&bt, "asm_backtrace::bobine_distinctive_run_caller");
            assert!(
                run_caller > caller,
                "the backtrace stops on the task's stack instead of reaching the caller of run:\n{bt}"
            );
        },
    );
}

/// A panic after a switch unwinds the task's own frames (their destructors run, innermost
/// first) and reaches `join` as `Err` with its payload; the other tasks carry on.
#[test]
fn panic_after_switch_unwinds_task_frames_and_runs_destructors() {
    /// Records its number in `order` when dropped.
    struct Guard(usize, Arc<std::sync::Mutex<Vec<usize>>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.1.lock().expect("order lock").push(self.0);
        }
    }

    #[inline(never)]
    fn nested(level: usize, order: Arc<std::sync::Mutex<Vec<usize>>>) {
        let _guard = Guard(level, order.clone());
        thread::yield_now();
        if level == 5 {
            thread::sleep(Duration::from_millis(1));
            std::panic::panic_any(format!("deliberate panic at level {level}"));
        }
        nested(level + 1, order);
    }

    common::watchdog(
        30,
        "panic_after_switch_unwinds_task_frames_and_runs_destructors",
        || {
            let order = Arc::new(std::sync::Mutex::new(Vec::new()));
            let bystanders = Arc::new(AtomicUsize::new(0));
            let (payload, bystanders_done) = bobine::Builder::new().domains(1).run(|| {
                let others: Vec<_> = (0..3)
                    .map(|_| {
                        let b = bystanders.clone();
                        thread::spawn(move || {
                            for _ in 0..20 {
                                thread::yield_now();
                            }
                            b.fetch_add(1, Ordering::SeqCst);
                        })
                    })
                    .collect();
                let o = order.clone();
                let err = thread::spawn(move || nested(0, o))
                    .join()
                    .expect_err("the task should have panicked");
                for h in others {
                    h.join().expect("bystander failed");
                }
                (
                    err.downcast::<String>().map(|s| *s),
                    bystanders.load(Ordering::SeqCst),
                )
            });
            assert_eq!(payload.as_deref().ok(), Some("deliberate panic at level 5"));
            assert_eq!(
                *order.lock().expect("order lock"),
                vec![5, 4, 3, 2, 1, 0],
                "destructors did not run innermost first"
            );
            assert_eq!(bystanders_done, 3);
        },
    );
}
