//! The floating-point control registers are per domain thread, not per task.
//!
//! corosensei saves the callee-saved registers across a switch, as a function call would, and
//! nothing more: it does not save or restore the SSE control and status register (MXCSR), the
//! x87 control word, or aarch64's FPCR. So the rounding mode, precision control, exception masks
//! and flush-to-zero settings belong to the domain's OS thread, and every task of that domain
//! shares them:
//!
//! - a task that changes the mode and then switches (yield, sleep, any park) leaves the changed
//!   mode to whatever task its domain runs next;
//! - a task resumes with whatever mode the tasks that ran meanwhile left, not the one it had;
//! - a task that restores the mode before it switches leaves the other tasks unaffected.
//!
//! This matches the C ABI, which makes these control bits callee-saved across calls: code that
//! changes them must restore them before it calls anything that may switch tasks.
//!
//! A note on soundness: Rust assumes the default floating-point environment everywhere (see the
//! documentation of `_mm_setcsr`). These tests therefore do no floating-point arithmetic in Rust
//! while a mode is changed: the registers are read and written with inline assembly, the
//! effect on arithmetic is shown with arithmetic inside inline assembly, results are compared
//! as bit patterns, and every test puts the default back before it ends (also when it fails).
//!
//! Each runtime here has one domain, so every task runs on the test's own thread, in the order
//! the run queue gives (FIFO): the main task, then the tasks in the order they were spawned.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bobine::thread;

/// The rounding control of the SSE unit (x86_64: MXCSR) or of the FPU (aarch64: FPCR).
#[cfg(target_arch = "x86_64")]
mod fp {
    use core::arch::asm;

    /// Bits of MXCSR that are control (the low six bits are sticky exception flags).
    pub const CONTROL_MASK: u32 = 0xFFC0;
    /// MXCSR.RC, bits 13-14.
    pub const ROUNDING_MASK: u32 = 0b11 << 13;
    pub const TOWARD_ZERO: u32 = 0b11 << 13;
    pub const UPWARD: u32 = 0b10 << 13;

    /// Reads MXCSR.
    pub fn control() -> u32 {
        let mut v: u32 = 0;
        // SAFETY: stmxcsr writes 4 bytes to a valid, writable u32.
        unsafe { asm!("stmxcsr [{p}]", p = in(reg) &mut v, options(nostack, preserves_flags)) };
        v
    }

    /// Writes MXCSR.
    ///
    /// # Safety
    ///
    /// A non-default value is undefined behaviour for Rust floating-point code running under it;
    /// the caller must not run any, and must restore the default before it matters.
    pub unsafe fn set_control(v: u32) {
        // SAFETY: ldmxcsr reads 4 bytes from a valid u32; reserved bits are never set by
        // callers (they only change RC), so it cannot fault. The rest is the caller's contract.
        unsafe { asm!("ldmxcsr [{p}]", p = in(reg) &v, options(nostack, preserves_flags)) };
    }

    /// `a + b` computed by the SSE unit under the current MXCSR, as a bit pattern.
    pub fn add_bits(a: f64, b: f64) -> u64 {
        let mut x = a;
        // SAFETY: a register-only addition with no memory access.
        unsafe {
            asm!("addsd {x}, {y}", x = inout(xmm_reg) x, y = in(xmm_reg) b, options(nomem, nostack))
        };
        x.to_bits()
    }
}

/// The rounding control of the SSE unit (x86_64: MXCSR) or of the FPU (aarch64: FPCR).
#[cfg(target_arch = "aarch64")]
mod fp {
    use core::arch::asm;

    /// FPCR bits that are control (all of them: FPCR holds no status).
    pub const CONTROL_MASK: u32 = u32::MAX;
    /// FPCR.RMode, bits 22-23.
    pub const ROUNDING_MASK: u32 = 0b11 << 22;
    pub const TOWARD_ZERO: u32 = 0b11 << 22;
    pub const UPWARD: u32 = 0b01 << 22;

    /// Reads FPCR.
    pub fn control() -> u32 {
        let v: u64;
        // SAFETY: reading FPCR has no side effects.
        unsafe { asm!("mrs {v}, fpcr", v = out(reg) v, options(nomem, nostack, preserves_flags)) };
        v as u32
    }

    /// Writes FPCR.
    ///
    /// # Safety
    ///
    /// A non-default value is undefined behaviour for Rust floating-point code running under it;
    /// the caller must not run any, and must restore the default before it matters.
    pub unsafe fn set_control(v: u32) {
        // SAFETY: writing FPCR only changes floating-point behaviour; the rest is the caller's
        // contract.
        unsafe {
            asm!("msr fpcr, {v}", v = in(reg) v as u64, options(nomem, nostack, preserves_flags))
        };
    }

    /// `a + b` computed by the FPU under the current FPCR, as a bit pattern.
    pub fn add_bits(a: f64, b: f64) -> u64 {
        let mut x = a;
        // SAFETY: a register-only addition with no memory access.
        unsafe {
            asm!("fadd {x:d}, {x:d}, {y:d}", x = inout(vreg) x, y = in(vreg) b, options(nomem, nostack))
        };
        x.to_bits()
    }
}

/// `1 + 0.75 ulp(1)`: not representable as an f64, so the rounding mode decides the result.
const ONE_AND_THREE_QUARTER_ULP: (f64, f64) = (1.0, f64::EPSILON * 0.75);
/// `1 + 1 ulp`: what rounding to nearest (and upward) gives for the sum above.
const ROUNDED_UP: u64 = 0x3FF0_0000_0000_0001;
/// `1.0`: what rounding toward zero gives for the sum above.
const ROUNDED_DOWN: u64 = 0x3FF0_0000_0000_0000;

/// The rounding bits of the control register, as the current thread sees them now.
fn rounding() -> u32 {
    fp::control() & fp::ROUNDING_MASK
}

/// Replaces the rounding bits of the current thread's control register.
///
/// # Safety
///
/// As [`fp::set_control`]: no Rust floating-point code may run until the default is back.
unsafe fn set_rounding(mode: u32) {
    // SAFETY: forwarded to our caller.
    unsafe { fp::set_control((fp::control() & !fp::ROUNDING_MASK) | mode) };
}

/// Puts the control register back to `saved` when dropped, so a failed assertion does not leave
/// a non-default mode on the test thread.
struct RestoreControl {
    saved: u32,
}

impl RestoreControl {
    fn save() -> Self {
        RestoreControl {
            saved: fp::control(),
        }
    }
}

impl Drop for RestoreControl {
    fn drop(&mut self) {
        // SAFETY: `saved` was read from this thread's register at the start of the test, so
        // this puts the environment Rust assumes back.
        unsafe { fp::set_control(self.saved) };
    }
}

/// A step counter the tasks use to take turns on one domain, yielding while it is not theirs.
struct Turns(AtomicU32);

impl Turns {
    fn new() -> Arc<Self> {
        Arc::new(Turns(AtomicU32::new(0)))
    }
    /// Yields until step `n` is reached (bounded: the watchdog reports a hang).
    fn wait_for(&self, n: u32) {
        while self.0.load(Ordering::Acquire) < n {
            thread::yield_now();
        }
    }
    fn advance_to(&self, n: u32) {
        self.0.store(n, Ordering::Release);
    }
}

/// A rounding mode set by one task is still in force when another task of the same domain
/// runs, and a task resumes with the mode the other task left, not the one it set.
#[test]
fn rounding_mode_is_shared_by_the_tasks_of_a_domain() {
    common::watchdog(
        30,
        "rounding_mode_is_shared_by_the_tasks_of_a_domain",
        || {
            let _restore = RestoreControl::save();
            bobine::Builder::new().domains(1).run(|| {
                let default = rounding();
                assert_eq!(
                    default, 0,
                    "the test thread does not start with round-to-nearest"
                );
                let turns = Turns::new();

                let t = turns.clone();
                let a = thread::spawn(move || {
                    // SAFETY: no Rust floating-point code runs until the mode is restored below.
                    unsafe { set_rounding(fp::TOWARD_ZERO) };
                    t.advance_to(1);
                    // Switch away with the changed mode; B runs now.
                    t.wait_for(2);
                    let seen = rounding();
                    // SAFETY: back to the default.
                    unsafe { set_rounding(0) };
                    seen
                });

                let t = turns.clone();
                let b = thread::spawn(move || {
                    t.wait_for(1);
                    // A is suspended; its mode is still the thread's.
                    let seen = rounding();
                    let sum =
                        fp::add_bits(ONE_AND_THREE_QUARTER_ULP.0, ONE_AND_THREE_QUARTER_ULP.1);
                    // SAFETY: A restores the default before anything else runs Rust float code.
                    unsafe { set_rounding(fp::UPWARD) };
                    t.advance_to(2);
                    (seen, sum)
                });

                let (b_seen, b_sum) = b.join().expect("task B failed");
                let a_seen = a.join().expect("task A failed");
                assert_eq!(
                    b_seen,
                    fp::TOWARD_ZERO,
                    "B did not see the mode A left when it switched away"
                );
                assert_eq!(
                    b_sum, ROUNDED_DOWN,
                    "B's arithmetic did not round toward zero"
                );
                assert_eq!(
                    a_seen,
                    fp::UPWARD,
                    "A did not resume with the mode B left (was its own saved?)"
                );
                assert_eq!(
                    rounding(),
                    default,
                    "A's restore did not reach the main task"
                );
                assert_eq!(
                    fp::add_bits(ONE_AND_THREE_QUARTER_ULP.0, ONE_AND_THREE_QUARTER_ULP.1),
                    ROUNDED_UP
                );
            });
        },
    );
}

/// A task that restores the rounding mode before it switches leaves the other tasks of its
/// domain in the default mode.
#[test]
fn task_that_restores_rounding_mode_before_switching_leaves_others_unaffected() {
    common::watchdog(
        30,
        "task_that_restores_rounding_mode_before_switching_leaves_others_unaffected",
        || {
            let _restore = RestoreControl::save();
            bobine::Builder::new().domains(1).run(|| {
                let default_control = fp::control() & fp::CONTROL_MASK;
                let turns = Turns::new();

                let t = turns.clone();
                let a = thread::spawn(move || {
                    let mut inside = Vec::new();
                    for step in 0..10 {
                        let saved = fp::control();
                        // SAFETY: only assembly arithmetic runs until the restore just below.
                        unsafe { set_rounding(fp::TOWARD_ZERO) };
                        inside.push(fp::add_bits(
                            ONE_AND_THREE_QUARTER_ULP.0,
                            ONE_AND_THREE_QUARTER_ULP.1,
                        ));
                        // SAFETY: puts back the value read above.
                        unsafe { fp::set_control(saved) };
                        t.advance_to(2 * step + 1);
                        t.wait_for(2 * step + 2);
                    }
                    inside
                });

                let t = turns.clone();
                let b = thread::spawn(move || {
                    let mut seen = Vec::new();
                    for step in 0..10 {
                        t.wait_for(2 * step + 1);
                        seen.push((
                            fp::control() & fp::CONTROL_MASK,
                            fp::add_bits(ONE_AND_THREE_QUARTER_ULP.0, ONE_AND_THREE_QUARTER_ULP.1),
                        ));
                        t.advance_to(2 * step + 2);
                    }
                    seen
                });

                let seen = b.join().expect("task B failed");
                let inside = a.join().expect("task A failed");
                assert_eq!(
                    inside,
                    vec![ROUNDED_DOWN; 10],
                    "A's own arithmetic did not round toward zero"
                );
                assert_eq!(
                    seen,
                    vec![(default_control, ROUNDED_UP); 10],
                    "B saw a changed mode"
                );
            });
        },
    );
}

/// The x87 control word (precision and rounding control) is shared by the tasks of a domain the
/// same way, and a task that restores it before switching leaves the others unaffected.
#[cfg(target_arch = "x86_64")]
mod x87 {
    use core::arch::asm;

    use super::{Turns, common, thread};

    /// x87 precision control, bits 8-9: 00 = 24-bit significand (single).
    const PRECISION_MASK: u16 = 0b11 << 8;
    const PRECISION_SINGLE: u16 = 0b00 << 8;
    /// x87 rounding control, bits 10-11: 11 = toward zero.
    const ROUNDING_MASK: u16 = 0b11 << 10;
    const ROUND_TOWARD_ZERO: u16 = 0b11 << 10;

    /// `1 + 2^-30`: exact with a 64-bit (and 53-bit) significand, `1.0` with a 24-bit one.
    const ONE_PLUS_TINY: (f64, f64) = (1.0, 1.0 / (1u64 << 30) as f64);
    /// `1 + 0.75 ulp(f64)`: exact in the x87 registers, rounded when stored as an f64.
    const ONE_AND_THREE_QUARTER_ULP: (f64, f64) = super::ONE_AND_THREE_QUARTER_ULP;

    fn control_word() -> u16 {
        let mut cw: u16 = 0;
        // SAFETY: fnstcw writes 2 bytes to a valid, writable u16.
        unsafe { asm!("fnstcw [{p}]", p = in(reg) &mut cw, options(nostack, preserves_flags)) };
        cw
    }

    /// # Safety
    ///
    /// As `fp::set_control`: the x87 unit is not used by Rust code on x86_64, but a
    /// non-default control word must still be restored before the test ends.
    unsafe fn set_control_word(cw: u16) {
        // SAFETY: fldcw reads 2 bytes from a valid u16; callers keep every exception masked.
        unsafe { asm!("fldcw [{p}]", p = in(reg) &cw, options(nostack, preserves_flags)) };
    }

    /// `a + b` computed by the x87 unit under the current control word, stored as an f64 (so
    /// the rounding control applies to the store too), as a bit pattern.
    fn x87_add_bits(a: f64, b: f64) -> u64 {
        let mut out: f64 = 0.0;
        // SAFETY: loads two valid f64s, adds, stores to a valid f64 and pops, so the x87 stack
        // is empty again on exit; every x87 register is declared clobbered.
        unsafe {
            asm!(
                "fld qword ptr [{a}]",
                "fadd qword ptr [{b}]",
                "fstp qword ptr [{out}]",
                a = in(reg) &a,
                b = in(reg) &b,
                out = in(reg) &mut out,
                out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                options(nostack),
            )
        };
        out.to_bits()
    }

    /// Restores the x87 control word of the test thread when dropped.
    struct RestoreControlWord(u16);

    impl Drop for RestoreControlWord {
        fn drop(&mut self) {
            // SAFETY: the value was read from this thread at the start of the test.
            unsafe { set_control_word(self.0) };
        }
    }

    /// What a task observes: the precision and rounding bits, and two sums that show them.
    fn observe() -> (u16, u64, u64) {
        (
            control_word() & (PRECISION_MASK | ROUNDING_MASK),
            x87_add_bits(ONE_PLUS_TINY.0, ONE_PLUS_TINY.1),
            x87_add_bits(ONE_AND_THREE_QUARTER_ULP.0, ONE_AND_THREE_QUARTER_ULP.1),
        )
    }

    /// The default environment's observation: extended precision, round to nearest.
    fn default_observation() -> (u16, u64, u64) {
        (
            0b11 << 8,
            (1.0 + 1.0 / (1u64 << 30) as f64).to_bits(),
            super::ROUNDED_UP,
        )
    }

    /// Single precision, toward zero: `1 + 2^-30` and `1 + 0.75 ulp` both become `1.0`.
    const CHANGED_OBSERVATION: (u16, u64, u64) = (
        PRECISION_SINGLE | ROUND_TOWARD_ZERO,
        super::ROUNDED_DOWN,
        super::ROUNDED_DOWN,
    );

    /// An x87 control word set by one task is what the next task of the domain runs with.
    #[test]
    fn x87_control_word_is_shared_by_the_tasks_of_a_domain() {
        common::watchdog(
            30,
            "x87_control_word_is_shared_by_the_tasks_of_a_domain",
            || {
                let _restore = RestoreControlWord(control_word());
                bobine::Builder::new().domains(1).run(|| {
                    assert_eq!(
                        observe(),
                        default_observation(),
                        "the test thread does not start in the default x87 mode"
                    );
                    let default_cw = control_word();
                    let changed_cw = (default_cw & !(PRECISION_MASK | ROUNDING_MASK))
                        | PRECISION_SINGLE
                        | ROUND_TOWARD_ZERO;
                    let turns = Turns::new();

                    let t = turns.clone();
                    let a = thread::spawn(move || {
                        // SAFETY: restored below before the task ends.
                        unsafe { set_control_word(changed_cw) };
                        t.advance_to(1);
                        t.wait_for(2);
                        let resumed_with = control_word();
                        // SAFETY: back to the value read at the start.
                        unsafe { set_control_word(default_cw) };
                        resumed_with
                    });

                    let t = turns.clone();
                    let b = thread::spawn(move || {
                        t.wait_for(1);
                        let seen = observe();
                        t.advance_to(2);
                        seen
                    });

                    assert_eq!(
                        b.join().expect("task B failed"),
                        CHANGED_OBSERVATION,
                        "B did not run under A's control word"
                    );
                    assert_eq!(a.join().expect("task A failed"), changed_cw);
                    assert_eq!(
                        observe(),
                        default_observation(),
                        "A's restore did not reach the main task"
                    );
                });
            },
        );
    }

    /// A task that restores the x87 control word before switching leaves the others unaffected.
    #[test]
    fn task_that_restores_x87_control_word_before_switching_leaves_others_unaffected() {
        common::watchdog(
            30,
            "task_that_restores_x87_control_word_before_switching_leaves_others_unaffected",
            || {
                let _restore = RestoreControlWord(control_word());
                bobine::Builder::new().domains(1).run(|| {
                    let default_cw = control_word();
                    let changed_cw = (default_cw & !(PRECISION_MASK | ROUNDING_MASK))
                        | PRECISION_SINGLE
                        | ROUND_TOWARD_ZERO;
                    let turns = Turns::new();

                    let t = turns.clone();
                    let a = thread::spawn(move || {
                        let mut inside = Vec::new();
                        for step in 0..10 {
                            // SAFETY: restored just below, before the switch.
                            unsafe { set_control_word(changed_cw) };
                            inside.push(observe());
                            // SAFETY: back to the value read at the start.
                            unsafe { set_control_word(default_cw) };
                            t.advance_to(2 * step + 1);
                            t.wait_for(2 * step + 2);
                        }
                        inside
                    });

                    let t = turns.clone();
                    let b = thread::spawn(move || {
                        let mut seen = Vec::new();
                        for step in 0..10 {
                            t.wait_for(2 * step + 1);
                            seen.push(observe());
                            t.advance_to(2 * step + 2);
                        }
                        seen
                    });

                    let seen = b.join().expect("task B failed");
                    let inside = a.join().expect("task A failed");
                    assert_eq!(
                        inside,
                        vec![CHANGED_OBSERVATION; 10],
                        "A's own x87 arithmetic did not use its mode"
                    );
                    assert_eq!(
                        seen,
                        vec![default_observation(); 10],
                        "B saw a changed x87 mode"
                    );
                });
            },
        );
    }
}
