//! Many parked tasks at once: spawns `n` tasks on one domain, each parked on one shared
//! semaphore, lets them all run to their park, then releases and joins them; prints the cost
//! per task of each phase, the resident memory each parked task adds (`VmRSS`) and the
//! page-table memory (`VmPTE`) while they are all parked. The measurement behind the "a million
//! tasks" target: the cost per task should stay flat from 10⁴ to 10⁶.
//!
//! `million_parked n --floor` measures instead what the kernel alone charges for the same
//! stacks, with no runtime: chunks of 64 slots laid out as bobine lays them out (a 64 KiB
//! guard below each 256 KiB stack), one `madvise(MADV_GUARD_INSTALL)` per guard, one write to
//! the top page of each stack (the page a task's first frame lands on), one read of the page
//! 16 KiB below the top (the page a returned stack is probed at), and the `munmap` that gives
//! it all back. That is the floor under bobine's figure for as long as every task has its own
//! guarded stack.
//!
//! Run with `cargo run --release --example million_parked [n] [--floor]` (default 100 000);
//! under `perf stat -e page-faults` for the faults per task.

use std::sync::Arc;
use std::time::Instant;

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmPTE`...), or 0 if absent.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut n = 100_000usize;
    let mut floor = false;
    for arg in std::env::args().skip(1) {
        if arg == "--floor" {
            floor = true;
        } else {
            n = arg.parse().expect("a number of tasks, or --floor");
        }
    }
    if floor {
        kernel_floor(n);
    } else {
        parked(n);
    }
}

/// The runtime's figure: n tasks spawned, parked, released and joined.
fn parked(n: usize) {
    bobine::Builder::new()
        .domains(1)
        .max_tasks(n + 16)
        .run(move || {
            let gate = Arc::new(bobine::sync::Semaphore::new(0));
            let (rss0, pte0) = (status_kib("VmRSS"), status_kib("VmPTE"));
            let t0 = Instant::now();
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let g = gate.clone();
                    bobine::thread::spawn(move || g.acquire())
                })
                .collect();
            let t1 = Instant::now();
            // One domain: a yield runs every task queued before it, up to its park.
            bobine::thread::yield_now();
            let t2 = Instant::now();
            let (rss1, pte1) = (status_kib("VmRSS"), status_kib("VmPTE"));
            for _ in 0..n {
                gate.release();
            }
            for t in tasks {
                t.join().expect("a parked task ends");
            }
            let t3 = Instant::now();
            let per = |a: Instant, b: Instant| (b - a).as_nanos() as f64 / n as f64;
            let bytes = |a: u64, b: u64| (b.saturating_sub(a) * 1024) as f64 / n as f64;
            println!(
                "{n} tasks: spawn {:.0} ns/task, first run to the park {:.0} ns/task, release \
                 and join {:.0} ns/task, in all {:.0} ns/task; while parked: resident {:.0} \
                 B/task (page tables {:.0} B/task more), VmPTE {} kB",
                per(t0, t1),
                per(t1, t2),
                per(t2, t3),
                per(t0, t3),
                bytes(rss0, rss1),
                bytes(pte0, pte1),
                pte1,
            );
        });
}

/// The kernel's part alone, with bobine's stack layout (see the module doc).
fn kernel_floor(n: usize) {
    const SLOTS: usize = 64;
    const GUARD: usize = 64 * 1024;
    const STACK: usize = 256 * 1024;
    const SLOT: usize = GUARD + STACK;
    /// `madvise` advice of Linux 6.13+ that libc does not name yet.
    const MADV_GUARD_INSTALL: libc::c_int = 102;
    let chunks = n.div_ceil(SLOTS);
    let slots = chunks * SLOTS;
    let t0 = Instant::now();
    let mut maps = Vec::with_capacity(chunks);
    for _ in 0..chunks {
        // SAFETY: a fresh anonymous private mapping; no Rust reference points into it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SLOTS * SLOT,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap failed");
        let base = base as usize;
        // SAFETY: advice on the mapping made above.
        unsafe {
            libc::madvise(
                base as *mut libc::c_void,
                SLOTS * SLOT,
                libc::MADV_NOHUGEPAGE,
            )
        };
        for i in 0..SLOTS {
            // SAFETY: the guard range of slot i, page aligned, inside the mapping.
            let rc = unsafe {
                libc::madvise(
                    (base + i * SLOT) as *mut libc::c_void,
                    GUARD,
                    MADV_GUARD_INSTALL,
                )
            };
            assert_eq!(rc, 0, "MADV_GUARD_INSTALL needs Linux 6.13+");
        }
        maps.push(base);
    }
    let t1 = Instant::now();
    for &base in &maps {
        for i in 0..SLOTS {
            let top = base + (i + 1) * SLOT;
            // SAFETY: the highest word of slot i's stack, inside the mapping, not a guard.
            unsafe { std::ptr::write_volatile((top - 64) as *mut u64, 1) };
        }
    }
    let t2 = Instant::now();
    let mut sum = 0u64;
    for &base in &maps {
        for i in 0..SLOTS {
            let probe = base + (i + 1) * SLOT - 16 * 1024 - 4096;
            // SAFETY: a word of slot i's stack, inside the mapping, not a guard.
            sum += unsafe { std::ptr::read_volatile(probe as *const u64) };
        }
    }
    let t3 = Instant::now();
    for &base in &maps {
        // SAFETY: unmaps a mapping made above, which nothing uses any more.
        unsafe { libc::munmap(base as *mut libc::c_void, SLOTS * SLOT) };
    }
    let t4 = Instant::now();
    assert_eq!(sum, 0, "probe pages read as zero");
    let per = |a: Instant, b: Instant| (b - a).as_nanos() as f64 / slots as f64;
    println!(
        "{slots} stacks, kernel only: map and guard {:.0} ns/stack, first write to the top \
         page {:.0}, read of the probe page {:.0}, unmap {:.0}, in all {:.0} ns/stack",
        per(t0, t1),
        per(t1, t2),
        per(t2, t3),
        per(t3, t4),
        per(t0, t4),
    );
}
