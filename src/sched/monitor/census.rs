//! The census of the process's threads, for the deadlock watch: which threads could still
//! wake a task, read from `/proc/self/task`.
//!
//! A thread bobine knows (a domain, a blocking-pool worker, the signal dispatcher, the
//! monitor) is judged by what bobine knows of it. Any other thread could hold a handle to a
//! task's channel, lock or park, so it could wake a task, unless it is itself waiting for
//! another thread with no time limit: blocked in a `futex` wait with no timeout (what a
//! `std::thread::park`, a `Mutex::lock`, a `join` or a `recv` without timeout come down to, and
//! how a plain thread waits inside a bobine call with no deadline). Such a thread moves only
//! when another thread wakes it; if no thread of the process can move, none of them will. A
//! thread that runs, sleeps for a time, or waits in any other system call (a `read` of a pipe
//! or a terminal, `poll`, `accept`, `wait4`) might be woken from outside the process, so it
//! counts as able to wake a task.

use std::fs;

/// Whether thread `tid` of this process is blocked waiting for another thread with no time
/// limit (a `futex` wait with no timeout). False when it cannot be told.
pub(crate) fn blocked_on_other_thread(tid: i32) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else {
        return false;
    };
    let mut fields = text.split_whitespace();
    let Some(Ok(nr)) = fields.next().map(str::parse::<i64>) else {
        // "running", or "-1 ..." (blocked, but not in a system call).
        return false;
    };
    let args: Vec<u64> = fields
        .take(6)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    if nr != libc::SYS_futex || args.len() < 4 {
        return false;
    }
    const FUTEX_WAIT: u64 = 0;
    const FUTEX_WAIT_BITSET: u64 = 9;
    const FUTEX_PRIVATE_FLAG: u64 = 128;
    const FUTEX_CLOCK_REALTIME: u64 = 256;
    let op = args[1] & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    (op == FUTEX_WAIT || op == FUTEX_WAIT_BITSET) && args[3] == 0
}

/// The threads of this process.
pub(crate) fn threads() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The system call thread `tid` of this process is in: `Some(name)`, or `None` when it is not
/// in one (it computes) or that cannot be read.
pub(crate) fn syscall_of(tid: i32) -> Option<String> {
    if tid == 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let nr: i64 = text.split_whitespace().next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    Some(syscall_name(nr).map_or_else(|| format!("syscall {nr}"), str::to_owned))
}

/// The CPU time thread `tid` of this process has used so far, or `None` if it cannot be read
/// (the thread is gone). One `clock_gettime` on the thread's CPU clock, whose id the kernel
/// derives from the thread id (`MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`: the complement of
/// the id shifted left by 3, with the per-thread bit 4 and the scheduler-clock kind 2).
pub(crate) fn cpu_time(tid: i32) -> Option<std::time::Duration> {
    if tid <= 0 {
        return None;
    }
    let clock = ((!tid) << 3) | 6;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; an id that names no thread of this
    // process gives EINVAL and writes nothing.
    let r = unsafe { libc::clock_gettime(clock as libc::clockid_t, &mut ts) };
    (r == 0).then(|| std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// `, in the system call read(2)` or `, computing (in no system call)`, for reports about
/// the thread of a busy domain.
pub(crate) fn in_syscall_text(tid: i32) -> String {
    match syscall_of(tid) {
        Some(name) => format!(", in the system call {name}"),
        None => ", computing (in no system call)".to_owned(),
    }
}

/// The name of the blocking system calls a task is likely to be caught in.
fn syscall_name(nr: i64) -> Option<&'static str> {
    use libc::*;
    let known: &[(i64, &str)] = &[
        (SYS_read, "read(2)"),
        (SYS_write, "write(2)"),
        (SYS_pread64, "pread64(2)"),
        (SYS_pwrite64, "pwrite64(2)"),
        (SYS_readv, "readv(2)"),
        (SYS_writev, "writev(2)"),
        (SYS_openat, "openat(2)"),
        (SYS_close, "close(2)"),
        (SYS_fsync, "fsync(2)"),
        (SYS_fdatasync, "fdatasync(2)"),
        (
            SYS_futex,
            "futex(2) (a lock or condition variable of another kind than bobine's)",
        ),
        (SYS_nanosleep, "nanosleep(2)"),
        (SYS_clock_nanosleep, "clock_nanosleep(2)"),
        (SYS_ppoll, "ppoll(2)"),
        (SYS_pselect6, "pselect6(2)"),
        (SYS_epoll_pwait, "epoll_pwait(2)"),
        (SYS_accept4, "accept4(2)"),
        (SYS_connect, "connect(2)"),
        (SYS_recvfrom, "recvfrom(2)"),
        (SYS_sendto, "sendto(2)"),
        (SYS_recvmsg, "recvmsg(2)"),
        (SYS_sendmsg, "sendmsg(2)"),
        (SYS_wait4, "wait4(2)"),
        (SYS_waitid, "waitid(2)"),
        (SYS_flock, "flock(2)"),
        (SYS_fcntl, "fcntl(2)"),
        (SYS_getrandom, "getrandom(2)"),
        (SYS_sched_yield, "sched_yield(2)"),
        (SYS_execve, "execve(2)"),
        (SYS_clone3, "clone3(2)"),
        (SYS_copy_file_range, "copy_file_range(2)"),
        (SYS_sendfile, "sendfile(2)"),
        (SYS_statx, "statx(2)"),
        (SYS_newfstatat, "newfstatat(2)"),
        (SYS_getdents64, "getdents64(2)"),
    ];
    #[cfg(target_arch = "x86_64")]
    let more: &[(i64, &str)] = &[
        (SYS_poll, "poll(2)"),
        (SYS_select, "select(2)"),
        (SYS_epoll_wait, "epoll_wait(2)"),
        (SYS_accept, "accept(2)"),
        (SYS_pause, "pause(2)"),
        (SYS_open, "open(2)"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let more: &[(i64, &str)] = &[];
    known
        .iter()
        .chain(more)
        .find(|(n, _)| *n == nr)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread parked with no timeout is blocked on another thread; one sleeping for a time is
    /// not; this thread, running, is not.
    #[test]
    fn the_census_tells_waiting_from_sleeping() {
        // SAFETY: `gettid` has no preconditions.
        let tid = |_: ()| unsafe { libc::gettid() };
        let (tx, rx) = std::sync::mpsc::channel();
        let parked = std::thread::spawn(move || {
            tx.send(tid(())).unwrap();
            std::thread::park();
        });
        let parked_tid = rx.recv().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(tid(())).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(400));
        });
        let sleeper_tid = rx.recv().unwrap();
        // Give both time to reach their system call (polling, no timing assertion).
        let mut seen = false;
        for _ in 0..200 {
            if blocked_on_other_thread(parked_tid) {
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(seen, "a parked thread is blocked on another thread");
        for _ in 0..200 {
            if syscall_of(sleeper_tid).is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            !blocked_on_other_thread(sleeper_tid),
            "a sleeper may wake by itself"
        );
        assert!(!blocked_on_other_thread(tid(())), "this thread runs");
        assert!(threads().contains(&parked_tid));
        assert!(
            syscall_of(sleeper_tid).is_some_and(|s| s.contains("sleep")),
            "{:?}",
            syscall_of(sleeper_tid)
        );
        parked.thread().unpark();
        parked.join().unwrap();
        sleeper.join().unwrap();
    }

    /// Another thread's CPU clock moves while it computes and stands still while it is parked.
    #[test]
    fn cpu_time_counts_computing_only() {
        use std::sync::atomic::{AtomicBool, Ordering};
        // SAFETY: `gettid` has no preconditions.
        let tid = |_: ()| unsafe { libc::gettid() };
        let (tx, rx) = std::sync::mpsc::channel();
        let spin = std::sync::Arc::new(AtomicBool::new(true));
        let flag = spin.clone();
        let worker = std::thread::spawn(move || {
            tx.send(tid(())).unwrap();
            while flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            std::thread::park();
        });
        let worker_tid = rx.recv().unwrap();
        let start = cpu_time(worker_tid).expect("a live thread's clock");
        // Computing: its clock passes 5 ms of CPU (whatever the wall time that takes).
        while cpu_time(worker_tid).unwrap() < start + std::time::Duration::from_millis(5) {
            std::thread::yield_now();
        }
        spin.store(false, Ordering::Relaxed);
        // Parked: once it is in its futex wait, its clock no longer moves.
        while !blocked_on_other_thread(worker_tid) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let parked = cpu_time(worker_tid).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(cpu_time(worker_tid).unwrap(), parked);
        assert_eq!(cpu_time(0), None);
        worker.thread().unpark();
        worker.join().unwrap();
        assert_eq!(cpu_time(worker_tid), None, "the thread is gone");
    }
}
