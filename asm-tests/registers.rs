//! Callee-saved registers survive a task switch.
//!
//! The C ABI lets a function assume that the callee-saved registers hold, when a call returns,
//! what they held before it. A task switch happens inside such a call (`yield_now`, `sleep`),
//! and while the task is away its domain runs the scheduler and other tasks, which use those
//! registers freely. So the switch itself must save and restore them.
//!
//! [`call_with_callee_saved`] is written in assembly so that the compiler cannot keep anything of
//! its own in those registers: it loads a distinctive value into every callee-saved register,
//! calls an `extern "C-unwind"` trampoline that switches tasks, and stores what the registers hold
//! afterwards. Many tasks do this at once with different values on one domain, so every switch
//! away from one of them runs code that puts other values in the same registers.
//!
//! ```text
//!  task stack while the trampoline runs (x86_64)
//!  +---------------------------+  higher addresses
//!  | return address            |  <- pushed by the Rust caller's `call`
//!  | caller's rbp, rbx,        |
//!  | r12, r13, r14, r15        |  <- saved: we clobber them with the test values
//!  | out pointer (rsi)         |  <- caller-saved, so kept here; also realigns rsp to 16
//!  +---------------------------+  <- rsp at `call trampoline` (16-byte aligned)
//!  | trampoline frames ...     |  -> yield_now / sleep -> switch to the scheduler
//! ```
//!
//! x86_64 checks rbx, rbp, r12-r15; aarch64 checks x19-x28 and d8-d15.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use bobine::thread;

/// Switch with `yield_now`: the task stays runnable and goes to the back of the run queue.
extern "C-unwind" fn yield_trampoline() {
    thread::yield_now();
}

/// Switch with a timed park: the task leaves the run queue until its timer fires.
extern "C-unwind" fn sleep_trampoline() {
    thread::sleep(Duration::from_millis(1));
}

#[cfg(target_arch = "x86_64")]
mod arch {
    /// Registers checked, in the order of the `values`/`out` arrays.
    pub const NAMES: [&str; 6] = ["rbx", "rbp", "r12", "r13", "r14", "r15"];

    core::arch::global_asm!(
        ".text",
        ".globl bobine_asmtest_call_with_callee_saved",
        ".hidden bobine_asmtest_call_with_callee_saved",
        ".type bobine_asmtest_call_with_callee_saved, @function",
        ".p2align 4",
        // rdi = values (6 x u64), rsi = out (6 x u64), rdx = trampoline.
        "bobine_asmtest_call_with_callee_saved:",
        ".cfi_startproc",
        // Save the caller's callee-saved registers: we are about to overwrite all of them.
        "    push rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset rbp, -16",
        "    push rbx",
        ".cfi_def_cfa_offset 24",
        ".cfi_offset rbx, -24",
        "    push r12",
        ".cfi_def_cfa_offset 32",
        ".cfi_offset r12, -32",
        "    push r13",
        ".cfi_def_cfa_offset 40",
        ".cfi_offset r13, -40",
        "    push r14",
        ".cfi_def_cfa_offset 48",
        ".cfi_offset r14, -48",
        "    push r15",
        ".cfi_def_cfa_offset 56",
        ".cfi_offset r15, -56",
        // Keep `out` across the call (rsi is caller-saved). The seventh push also brings rsp back
        // to a multiple of 16, as the ABI requires at a call.
        "    push rsi",
        ".cfi_def_cfa_offset 64",
        // Load the distinctive values.
        "    mov rbx, [rdi]",
        "    mov rbp, [rdi + 8]",
        "    mov r12, [rdi + 16]",
        "    mov r13, [rdi + 24]",
        "    mov r14, [rdi + 32]",
        "    mov r15, [rdi + 40]",
        // The trampoline switches to the scheduler, which runs other tasks, and comes back.
        "    call rdx",
        // Store what the registers hold now.
        "    pop rsi",
        ".cfi_def_cfa_offset 56",
        "    mov [rsi], rbx",
        "    mov [rsi + 8], rbp",
        "    mov [rsi + 16], r12",
        "    mov [rsi + 24], r13",
        "    mov [rsi + 32], r14",
        "    mov [rsi + 40], r15",
        // Give the caller its registers back.
        "    pop r15",
        ".cfi_def_cfa_offset 48",
        "    pop r14",
        ".cfi_def_cfa_offset 40",
        "    pop r13",
        ".cfi_def_cfa_offset 32",
        "    pop r12",
        ".cfi_def_cfa_offset 24",
        "    pop rbx",
        ".cfi_def_cfa_offset 16",
        "    pop rbp",
        ".cfi_def_cfa_offset 8",
        "    ret",
        ".cfi_endproc",
        ".size bobine_asmtest_call_with_callee_saved, . - bobine_asmtest_call_with_callee_saved",
    );
}

#[cfg(target_arch = "aarch64")]
mod arch {
    /// Registers checked, in the order of the `values`/`out` arrays (d registers as raw bits).
    pub const NAMES: [&str; 18] = [
        "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "d8", "d9", "d10",
        "d11", "d12", "d13", "d14", "d15",
    ];

    core::arch::global_asm!(
        ".text",
        ".globl bobine_asmtest_call_with_callee_saved",
        ".hidden bobine_asmtest_call_with_callee_saved",
        ".type bobine_asmtest_call_with_callee_saved, %function",
        ".p2align 4",
        // x0 = values (18 x u64), x1 = out (18 x u64), x2 = trampoline.
        "bobine_asmtest_call_with_callee_saved:",
        ".cfi_startproc",
        // Frame record, then the caller's callee-saved registers (we overwrite all of them).
        "    stp x29, x30, [sp, #-16]!",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset x30, -8",
        ".cfi_offset x29, -16",
        "    mov x29, sp",
        ".cfi_def_cfa x29, 16",
        "    stp x19, x20, [sp, #-16]!",
        "    stp x21, x22, [sp, #-16]!",
        "    stp x23, x24, [sp, #-16]!",
        "    stp x25, x26, [sp, #-16]!",
        "    stp x27, x28, [sp, #-16]!",
        "    stp d8, d9, [sp, #-16]!",
        "    stp d10, d11, [sp, #-16]!",
        "    stp d12, d13, [sp, #-16]!",
        "    stp d14, d15, [sp, #-16]!",
        ".cfi_offset x19, -32",
        ".cfi_offset x20, -24",
        ".cfi_offset x21, -48",
        ".cfi_offset x22, -40",
        ".cfi_offset x23, -64",
        ".cfi_offset x24, -56",
        ".cfi_offset x25, -80",
        ".cfi_offset x26, -72",
        ".cfi_offset x27, -96",
        ".cfi_offset x28, -88",
        ".cfi_offset d8, -112",
        ".cfi_offset d9, -104",
        ".cfi_offset d10, -128",
        ".cfi_offset d11, -120",
        ".cfi_offset d12, -144",
        ".cfi_offset d13, -136",
        ".cfi_offset d14, -160",
        ".cfi_offset d15, -152",
        // Keep `out` across the call (x1 is caller-saved); sp stays a multiple of 16.
        "    str x1, [sp, #-16]!",
        // Load the distinctive values.
        "    ldp x19, x20, [x0]",
        "    ldp x21, x22, [x0, #16]",
        "    ldp x23, x24, [x0, #32]",
        "    ldp x25, x26, [x0, #48]",
        "    ldp x27, x28, [x0, #64]",
        "    ldp d8, d9, [x0, #80]",
        "    ldp d10, d11, [x0, #96]",
        "    ldp d12, d13, [x0, #112]",
        "    ldp d14, d15, [x0, #128]",
        // The trampoline switches to the scheduler, which runs other tasks, and comes back.
        "    blr x2",
        // Store what the registers hold now.
        "    ldr x1, [sp], #16",
        "    stp x19, x20, [x1]",
        "    stp x21, x22, [x1, #16]",
        "    stp x23, x24, [x1, #32]",
        "    stp x25, x26, [x1, #48]",
        "    stp x27, x28, [x1, #64]",
        "    stp d8, d9, [x1, #80]",
        "    stp d10, d11, [x1, #96]",
        "    stp d12, d13, [x1, #112]",
        "    stp d14, d15, [x1, #128]",
        // Give the caller its registers back.
        "    ldp d14, d15, [sp], #16",
        "    ldp d12, d13, [sp], #16",
        "    ldp d10, d11, [sp], #16",
        "    ldp d8, d9, [sp], #16",
        "    ldp x27, x28, [sp], #16",
        "    ldp x25, x26, [sp], #16",
        "    ldp x23, x24, [sp], #16",
        "    ldp x21, x22, [sp], #16",
        "    ldp x19, x20, [sp], #16",
        "    ldp x29, x30, [sp], #16",
        ".cfi_def_cfa sp, 0",
        ".cfi_restore x30",
        ".cfi_restore x29",
        "    ret",
        ".cfi_endproc",
        ".size bobine_asmtest_call_with_callee_saved, . - bobine_asmtest_call_with_callee_saved",
    );
}

const N: usize = arch::NAMES.len();

// SAFETY: the symbol is defined by the `global_asm!` above with exactly this signature: it
// reads N words from `values`, writes N words to `out`, calls `trampoline` once with the stack
// aligned as the C ABI requires, and restores every callee-saved register before returning.
unsafe extern "C-unwind" {
    #[link_name = "bobine_asmtest_call_with_callee_saved"]
    fn call_with_callee_saved(
        values: *const u64,
        out: *mut u64,
        trampoline: extern "C-unwind" fn(),
    );
}

/// A value that differs for every task, round and register (and is never 0).
fn distinctive(task: u64, round: u64, reg: usize) -> u64 {
    // splitmix64 finaliser over the triple.
    let mut z = (task << 40) ^ (round << 8) ^ reg as u64 ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// Loads task-and-round-specific values into every callee-saved register, switches through
/// `trampoline`, and asserts that every register still holds its value.
fn check_registers(task: u64, round: u64, trampoline: extern "C-unwind" fn()) {
    let values: [u64; N] = std::array::from_fn(|r| distinctive(task, round, r));
    let mut out = [0u64; N];
    // SAFETY: both arrays hold N words and outlive the call. The trampoline may unwind (the
    // runtime force-unwinds tasks still suspended when it ends, e.g. after a failed assertion
    // in another task): the assembly has CFI for every register it saves, so the unwinder can
    // restore the caller's registers and carry on past it.
    unsafe { call_with_callee_saved(values.as_ptr(), out.as_mut_ptr(), trampoline) };
    for r in 0..N {
        assert_eq!(
            out[r],
            values[r],
            "task {task}, round {round}: {} was {:#018x} before the switch and {:#018x} after",
            arch::NAMES[r],
            values[r],
            out[r]
        );
    }
}

/// Mostly yields, with a timed park every fourth round.
fn mixed_switch(round: u64) -> extern "C-unwind" fn() {
    if round % 4 == 3 {
        sleep_trampoline
    } else {
        yield_trampoline
    }
}

/// Runs `tasks` tasks (plus the calling task) that each check the registers `rounds` times,
/// switching with `pick(round)`.
fn many_tasks_check(tasks: u64, rounds: u64, pick: fn(u64) -> extern "C-unwind" fn()) {
    let handles: Vec<_> = (1..=tasks)
        .map(|t| {
            thread::spawn(move || {
                for round in 0..rounds {
                    check_registers(t, round, pick(round));
                }
            })
        })
        .collect();
    for round in 0..rounds {
        check_registers(0, round, pick(round));
    }
    for h in handles {
        h.join().expect("a checking task failed");
    }
}

/// Callee-saved registers hold their values after `yield_now`, with 8 other tasks clobbering
/// them on the same domain between the switch away and the resume.
#[test]
fn callee_saved_registers_survive_yield() {
    common::watchdog(30, "callee_saved_registers_survive_yield", || {
        bobine::Builder::new()
            .domains(1)
            .run(|| many_tasks_check(8, 200, |_| yield_trampoline));
    });
}

/// Callee-saved registers hold their values after a park in `sleep`, while other sleeping
/// tasks of the same domain are resumed in between.
#[test]
fn callee_saved_registers_survive_sleep() {
    common::watchdog(30, "callee_saved_registers_survive_sleep", || {
        bobine::Builder::new()
            .domains(1)
            .run(|| many_tasks_check(8, 20, |_| sleep_trampoline));
    });
}

/// Callee-saved registers survive yields and parks mixed, in a runtime of two domains. (Which
/// domain runs each task is the scheduler's choice; the next test is the one that makes sure
/// several OS threads take part.)
#[test]
fn callee_saved_registers_survive_switches_on_two_domains() {
    common::watchdog(
        30,
        "callee_saved_registers_survive_switches_on_two_domains",
        || {
            bobine::Builder::new()
                .domains(2)
                .run(|| many_tasks_check(16, 60, mixed_switch));
        },
    );
}

/// Callee-saved registers survive switches on the global runtime's domain threads, where
/// tasks spawned from a plain thread are spread over several OS threads.
#[test]
fn callee_saved_registers_survive_switches_on_global_runtime_domains() {
    common::watchdog(
        30,
        "callee_saved_registers_survive_switches_on_global_runtime_domains",
        || {
            let handles: Vec<_> = (100..116u64)
                .map(|t| {
                    thread::spawn(move || {
                        for round in 0..60 {
                            check_registers(t, round, mixed_switch(round));
                        }
                        std::thread::current()
                            .name()
                            .unwrap_or("<unnamed>")
                            .to_owned()
                    })
                })
                .collect();
            let threads: HashSet<String> = handles
                .into_iter()
                .map(|h| h.join().expect("a checking task failed"))
                .collect();
            assert!(
                threads.iter().all(|n| n.starts_with("bobine-global-")),
                "tasks ran on {threads:?}"
            );
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            if cores >= 2 && std::env::var_os("BOBINE_DOMAINS").is_none() {
                assert!(
                    threads.len() >= 2,
                    "16 tasks spawned from a plain thread all ran on {threads:?}"
                );
            }
        },
    );
}
