//! The stack is 16-byte aligned at task entry and after every resume.
//!
//! Both ABIs bobine supports require `sp % 16 == 0` at a call instruction. Code compiled from
//! Rust (and C) relies on it: SSE spills with `movaps`, `alignas(16)` locals, and varargs all
//! fault or misbehave on a misaligned stack. A task's first frame is set up by the context
//! switch, not by a `call` from compiled code, so the switch must get the alignment right; and
//! every resume must hand back exactly the stack pointer the task suspended with.
//!
//! [`sp_at_entry`] is a two-instruction assembly function that returns the stack pointer as
//! its callee sees it:
//!
//! ```text
//!  x86_64                                   aarch64
//!  caller: rsp % 16 == 0, then `call`       caller: sp % 16 == 0, then `bl`
//!  entry:  [rsp] = return address           entry:  sp unchanged (return address in x30)
//!          so rsp % 16 == 8                         so sp % 16 == 0
//! ```
//!
//! The tests call it at the start of tasks of many stack sizes and after `yield_now`, `sleep`
//! and `join` (a park), and also check that the stack pointer seen from one frame is the same
//! before and after each switch (the task resumes on its own stack, where it left off).
//!
//! Tasks only record what they see ([`Trace`]); the assertions run later on a big stack. A
//! failed assertion in a 16 KiB task would otherwise die of a stack overflow in the panic hook
//! (which captures a backtrace when `RUST_BACKTRACE` is set) instead of printing its message.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use bobine::thread;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".text",
    ".globl bobine_asmtest_sp_at_entry",
    ".hidden bobine_asmtest_sp_at_entry",
    ".type bobine_asmtest_sp_at_entry, @function",
    ".p2align 4",
    "bobine_asmtest_sp_at_entry:",
    ".cfi_startproc",
    // rsp points at the return address the caller's `call` pushed.
    "    mov rax, rsp",
    "    ret",
    ".cfi_endproc",
    ".size bobine_asmtest_sp_at_entry, . - bobine_asmtest_sp_at_entry",
);

/// `sp % 16` that a correctly aligned caller produces at the callee's first instruction.
#[cfg(target_arch = "x86_64")]
const ENTRY_RESIDUE: usize = 8;

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".text",
    ".globl bobine_asmtest_sp_at_entry",
    ".hidden bobine_asmtest_sp_at_entry",
    ".type bobine_asmtest_sp_at_entry, %function",
    ".p2align 4",
    "bobine_asmtest_sp_at_entry:",
    ".cfi_startproc",
    // `bl` leaves sp alone: the return address is in x30.
    "    mov x0, sp",
    "    ret",
    ".cfi_endproc",
    ".size bobine_asmtest_sp_at_entry, . - bobine_asmtest_sp_at_entry",
);

/// `sp % 16` that a correctly aligned caller produces at the callee's first instruction.
#[cfg(target_arch = "aarch64")]
const ENTRY_RESIDUE: usize = 0;

// SAFETY: the symbol is defined by the `global_asm!` above: it takes no arguments, touches no
// memory, clobbers only the return register, and returns; calling it is always safe.
unsafe extern "C" {
    #[link_name = "bobine_asmtest_sp_at_entry"]
    safe fn sp_at_entry() -> usize;
}

/// What tasks saw: the stack pointer at the entry of [`sp_at_entry`] at named points, and for
/// switches the value seen just before the switch from the same frame.
#[derive(Default)]
struct Trace(Vec<Seen>);

struct Seen {
    context: String,
    sp: usize,
    before_switch: Option<usize>,
}

impl Trace {
    /// Records the stack pointer a callee sees when called from here.
    #[inline(never)]
    fn entry(&mut self, context: String) -> usize {
        let sp = sp_at_entry();
        self.0.push(Seen {
            context,
            sp,
            before_switch: None,
        });
        sp
    }

    /// Records the stack pointer seen from this frame just before and just after `switch`.
    #[inline(never)]
    fn around(&mut self, context: String, switch: impl FnOnce()) {
        let before = sp_at_entry();
        switch();
        let after = sp_at_entry();
        self.0.push(Seen {
            context,
            sp: after,
            before_switch: Some(before),
        });
    }

    fn extend(&mut self, other: Trace) {
        self.0.extend(other.0);
    }

    /// Asserts every record: aligned as after a correct call, and resumed at the same place.
    fn assert_aligned(&self, expected_records: usize) {
        assert_eq!(self.0.len(), expected_records, "some checks did not run");
        for seen in &self.0 {
            let Seen {
                context,
                sp,
                before_switch,
            } = seen;
            assert_eq!(
                sp % 16,
                ENTRY_RESIDUE,
                "{context}: sp at function entry is {sp:#x}, so the stack was not 16-byte aligned at the call"
            );
            if let Some(before) = before_switch {
                assert_eq!(
                    before, sp,
                    "{context}: the task resumed with a different stack pointer"
                );
            }
        }
    }
}

/// Stack sizes requested through `thread::Builder::stack_size`: the minimum, sizes that are not
/// powers of two or not page multiples, the default, and large ones.
const SIZES: [usize; 7] = [
    16 * 1024,
    20 * 1024,
    64 * 1024,
    100_000,
    256 * 1024,
    1024 * 1024,
    4 * 1024 * 1024,
];

/// Tasks per stack size in the switching tests.
const PER_SIZE: usize = 3;

/// The body of a switching task: alignment at entry, then around `rounds` rounds of switches.
fn switching_task(label: String, rounds: u32) -> (usize, Trace) {
    let mut trace = Trace::default();
    let entry = trace.entry(format!("{label} at entry"));
    for round in 0..rounds {
        trace.around(
            format!("{label} round {round}, yield_now"),
            thread::yield_now,
        );
        if round % 8 == 0 {
            trace.around(format!("{label} round {round}, sleep"), || {
                thread::sleep(Duration::from_millis(1))
            });
        }
        if round % 16 == 0 {
            let mut child_trace = Trace::default();
            let child_label = format!("child of {label} at entry");
            trace.around(format!("{label} round {round}, join"), || {
                let child = thread::Builder::new()
                    .stack_size(16 * 1024)
                    .spawn(move || {
                        let mut t = Trace::default();
                        t.entry(child_label);
                        t
                    })
                    .expect("spawn child");
                child_trace = child.join().expect("child task failed");
            });
            trace.extend(child_trace);
        }
    }
    (entry, trace)
}

/// Records that [`switching_task`] makes for `rounds` rounds.
fn switching_records(rounds: u32) -> usize {
    let rounds = rounds as usize;
    // entry + a yield per round + a sleep every 8 + a join and the child's entry every 16.
    1 + rounds + rounds.div_ceil(8) + 2 * rounds.div_ceil(16)
}

/// Runs [`PER_SIZE`] switching tasks for every stack size in [`SIZES`], all at once, and
/// asserts what they saw.
fn check_all_sizes(rounds: u32) {
    let handles: Vec<_> = SIZES
        .iter()
        .flat_map(|&size| (0..PER_SIZE).map(move |i| (size, i)))
        .map(|(size, i)| {
            thread::Builder::new()
                .name(format!("size-{size}-{i}"))
                .stack_size(size)
                .spawn(move || switching_task(format!("task {i} with a {size}-byte stack"), rounds))
                .expect("spawn task")
        })
        .collect();
    let mut trace = Trace::default();
    let mut entries = HashSet::new();
    for h in handles {
        let (entry, t) = h.join().expect("a checking task failed");
        entries.insert(entry);
        trace.extend(t);
    }
    trace.assert_aligned(SIZES.len() * PER_SIZE * switching_records(rounds));
    assert_eq!(
        entries.len(),
        SIZES.len() * PER_SIZE,
        "tasks alive at the same time must run on distinct stacks"
    );
}

/// At the first instruction of a task, for every stack size, the stack is aligned as after a
/// `call` from correctly aligned code.
#[test]
fn stack_is_aligned_at_task_entry_for_every_stack_size() {
    common::watchdog(
        30,
        "stack_is_aligned_at_task_entry_for_every_stack_size",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let mut trace = Trace::default();
                trace.entry("main task at entry".into());
                for &size in &SIZES {
                    for i in 0..4 {
                        let h = thread::Builder::new()
                            .stack_size(size)
                            .spawn(move || {
                                let mut t = Trace::default();
                                t.entry(format!("task {i} with a {size}-byte stack at entry"));
                                t
                            })
                            .expect("spawn task");
                        trace.extend(h.join().expect("task failed"));
                    }
                }
                trace.assert_aligned(1 + SIZES.len() * 4);
            });
        },
    );
}

/// The main task and tasks using the runtime's default stack size are aligned at entry, for
/// several runtime-wide stack sizes.
#[test]
fn stack_is_aligned_at_entry_with_runtime_default_sizes() {
    common::watchdog(
        30,
        "stack_is_aligned_at_entry_with_runtime_default_sizes",
        || {
            let mut trace = Trace::default();
            for &size in &SIZES {
                let t = bobine::Builder::new().domains(1).stack_size(size).run(|| {
                    let mut t = Trace::default();
                    t.entry(format!("main task with a runtime default of {size} bytes"));
                    let child = thread::spawn(move || {
                        let mut t = Trace::default();
                        t.entry(format!("task with a runtime default of {size} bytes"));
                        t
                    });
                    t.extend(child.join().expect("task failed"));
                    t
                });
                trace.extend(t);
            }
            // Asserted on the test's own thread: the main tasks above may have only 16 KiB.
            trace.assert_aligned(SIZES.len() * 2);
        },
    );
}

/// After every `yield_now`, `sleep` and `join`, a task resumes with its stack aligned and at
/// the same stack pointer, while tasks of every stack size interleave on one domain.
#[test]
fn stack_is_aligned_after_every_resume() {
    common::watchdog(30, "stack_is_aligned_after_every_resume", || {
        bobine::Builder::new()
            .domains(1)
            .run(|| check_all_sizes(64));
    });
}

/// The same holds on a runtime of two domains.
#[test]
fn stack_is_aligned_after_every_resume_on_two_domains() {
    common::watchdog(
        30,
        "stack_is_aligned_after_every_resume_on_two_domains",
        || {
            bobine::Builder::new()
                .domains(2)
                .run(|| check_all_sizes(32));
        },
    );
}

/// Alignment holds at every depth of a task that switches from deep inside nested frames of
/// different sizes, and in tasks spawned by tasks.
#[test]
fn stack_is_aligned_after_resume_at_every_depth() {
    const DEPTH: u32 = 24;
    const LEVELS: u32 = 6;

    /// Recurses with a frame of about `N` bytes (odd sizes on purpose), switching at every
    /// level; returns the sum of the depths it went through, read back from each frame.
    #[inline(never)]
    fn descend<const N: usize>(trace: &mut Trace, depth: u32) -> u32 {
        let pad = std::hint::black_box([depth as u8; N]);
        trace.around(format!("depth {depth}, frame {N}"), thread::yield_now);
        let below = if depth == DEPTH {
            0
        } else if depth % 2 == 0 {
            descend::<37>(trace, depth + 1)
        } else {
            descend::<1001>(trace, depth + 1)
        };
        below + pad[N - 1] as u32
    }

    /// Each level spawns the next and joins it; the last one descends.
    fn nest(level: u32) -> (u32, Trace) {
        let mut trace = Trace::default();
        trace.entry(format!("nested task at level {level} at entry"));
        if level == 0 {
            let sum = descend::<13>(&mut trace, 0);
            return (sum, trace);
        }
        let child = thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || nest(level - 1))
            .expect("spawn nested task");
        let mut out = (0, Trace::default());
        trace.around(format!("level {level} joining its child"), || {
            out = child.join().expect("nested task failed")
        });
        trace.extend(out.1);
        (out.0, trace)
    }

    common::watchdog(30, "stack_is_aligned_after_resume_at_every_depth", || {
        bobine::Builder::new().domains(1).run(|| {
            let handles: Vec<_> = (0..4).map(|_| thread::spawn(|| nest(LEVELS))).collect();
            for h in handles {
                let (sum, trace) = h.join().expect("task failed");
                // Each level of the descent adds its depth: 0 + 1 + ... + DEPTH.
                assert_eq!(
                    sum,
                    DEPTH * (DEPTH + 1) / 2,
                    "the deep frames lost their locals"
                );
                // Per level: its entry and its join; then the descent: DEPTH + 1 switches.
                trace
                    .assert_aligned((LEVELS as usize + 1) + LEVELS as usize + (DEPTH as usize + 1));
            }
        });
    });
}
