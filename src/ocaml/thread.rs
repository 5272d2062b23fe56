//! OCaml's `Thread` module.
//!
//! | OCaml                  | here                      |
//! |------------------------|---------------------------|
//! | `Thread.create f x`    | [`create`]`(f, x)`        |
//! | `Thread.self ()`       | [`self_`]`()`             |
//! | `Thread.id t`          | [`id`]`(&t)`              |
//! | `Thread.join t`        | [`join`]`(&t)`            |
//! | `Thread.yield ()`      | [`yield_`]`()`            |
//! | `Thread.delay d`       | [`delay`]`(d)`            |
//! | `Thread.exit ()`       | [`exit`]`()`              |
//! | `Thread.wait_read fd`  | [`wait_read`]`(fd)`       |
//! | `Thread.wait_write fd` | [`wait_write`]`(fd)`      |
//! | `Thread.wait_timed_read fd d` | [`wait_timed_read`]`(fd, d)` |
//! | `Thread.wait_timed_write fd d` | [`wait_timed_write`]`(fd, d)` |
//! | `Thread.wait_pid p`    | [`wait_pid`]`(p)`         |
//!
//! The `wait_*` functions park only the calling thread (a bobine task), as OCaml's VM threads
//! did; a Unix error raises `Unix.Unix_error` as a panic with OCaml's text, for instance
//! `Unix.Unix_error(Unix.EBADF, "select", "")`.
//!
//! A panic escaping a thread prints `Thread N killed on uncaught exception <message>` on stderr
//! and nothing else happens: other threads go on and `join` returns normally.
//!
//! ```
//! use bobine::ocaml::thread;
//! bobine::run(|| {
//!     let t = thread::create(|n: u64| assert_eq!(n, 7), 7);
//!     assert_eq!(thread::id(&thread::self_()), 0);
//!     assert_eq!(thread::id(&t), 1);
//!     thread::join(&t);
//! });
//! ```

use std::hash::{Hash, Hasher};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::io::process::{ChildStatus, wait_child};
use crate::sched::reactor::Dir;
use crate::sched::reactor::source::wait_raw;

use crate::sched::park::stop::catch_at_root;
use crate::sched::runtime::{SpawnOptions, payload_text};
use crate::sched::task::{Task, TaskCancelled, TaskDropped};
use crate::thread::Thread;

/// Payload of [`exit`]: ends the thread silently.
struct ExitThread;

/// A thread handle: cheap to clone, comparable and hashable (programs key tables on threads).
#[derive(Clone)]
pub struct T {
    thread: Thread,
}

impl PartialEq for T {
    fn eq(&self, other: &Self) -> bool {
        self.thread.id() == other.thread.id()
    }
}
impl Eq for T {}
impl Hash for T {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.thread.id().hash(state)
    }
}
impl std::fmt::Debug for T {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Thread({})", id(self))
    }
}

/// `Thread.create f x`: starts `f x` as a new thread and returns at once; the creator keeps
/// running. The result of `f x` is discarded.
///
/// # Panics
///
/// `Sys_error` when no stack can be had for the thread.
pub fn create<A: Send + 'static>(f: impl FnOnce(A) + Send + 'static, x: A) -> T {
    // OCaml reports an uncaught exception when the thread ends, not when it is raised.
    let opts = SpawnOptions {
        report_panics: false,
        ordered_id: true,
        ..SpawnOptions::default()
    };
    let root = move |task: &Task| {
        let outcome = catch_at_root(task, move || f(x));
        if let Err(payload) = &outcome {
            // `Thread.exit`, a cancellation and the runtime's own stop end a thread silently.
            if !payload.is::<ExitThread>()
                && !payload.is::<TaskDropped>()
                && !payload.is::<TaskCancelled>()
            {
                eprintln!(
                    "Thread {} killed on uncaught exception {}",
                    task.id,
                    payload_text(&**payload)
                );
            }
        }
        task.set_outcome(outcome.map(|()| Box::new(()) as Box<dyn std::any::Any>));
    };
    match crate::thread::spawn_rooted(opts, root) {
        Ok(handle) => T {
            thread: handle.thread().clone(),
        },
        Err(e) => panic!("Sys_error(\"Thread.create: {e}\")"),
    }
}

/// `Thread.self ()`: the calling thread.
pub fn self_() -> T {
    T {
        thread: crate::thread::current(),
    }
}

/// `Thread.id t`: the main thread of a runtime is 0; created threads get 1, 2, 3 ... in
/// creation order, never reused. (Tasks spawned through other faces take ids from the same
/// runtime-wide sequence, a block at a time, so a program that mixes faces sees gaps.)
pub fn id(t: &T) -> u64 {
    match t.thread.task() {
        Some(task) => task.id,
        None => t.thread.id().as_u64().get(),
    }
}

/// `Thread.join t`: waits for the end of `t`; returns at once if it has ended (joining twice is
/// fine). `join (self ())` blocks forever, as in OCaml.
#[track_caller]
pub fn join(t: &T) {
    match t.thread.task() {
        Some(task) => task.wait_finished("Thread.join"),
        // A plain OS thread can only be "joined" by itself: that never returns.
        None => loop {
            crate::sched::park::Park::new().wait("Thread.join (self ())");
        },
    }
}

/// `Thread.yield ()`: lets the other threads run.
#[track_caller]
pub fn yield_() {
    crate::sched::yield_now()
}

/// `Thread.delay d`: sleeps `d` seconds (a negative or NaN `d` returns at once).
#[track_caller]
pub fn delay(secs: f64) {
    if secs > 0.0 {
        crate::time::sleep(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
}

/// `Thread.exit ()`: ends the current thread silently. It unwinds, so cleanups run.
pub fn exit() -> ! {
    std::panic::resume_unwind(Box::new(ExitThread))
}

/// `Thread.wait_read fd`: suspends the thread until `fd` is readable (or at end of file).
///
/// # Panics
///
/// `Unix.Unix_error(Unix.EBADF, "select", "")` if `fd` is not open or is closed meanwhile.
#[track_caller]
pub fn wait_read(fd: RawFd) {
    wait_fd(fd, false, None);
}

/// `Thread.wait_write fd`: suspends the thread until `fd` is writable.
///
/// # Panics
///
/// As [`wait_read`].
#[track_caller]
pub fn wait_write(fd: RawFd) {
    wait_fd(fd, true, None);
}

/// `Thread.wait_timed_read fd d`: suspends the thread until `fd` is readable or `d` seconds
/// have passed; true if it is readable.
///
/// # Panics
///
/// As [`wait_read`].
#[track_caller]
pub fn wait_timed_read(fd: RawFd, secs: f64) -> bool {
    wait_fd(fd, false, Some(secs))
}

/// `Thread.wait_timed_write fd d`: as [`wait_timed_read`], for writing.
///
/// # Panics
///
/// As [`wait_read`].
#[track_caller]
pub fn wait_timed_write(fd: RawFd, secs: f64) -> bool {
    wait_fd(fd, true, Some(secs))
}

#[track_caller]
fn wait_fd(fd: RawFd, write: bool, secs: Option<f64>) -> bool {
    let deadline = secs.map(|s| {
        let d = Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX);
        Instant::now().checked_add(d)
    });
    let deadline = match deadline {
        Some(None) => None, // further than the clock reaches: no deadline
        Some(Some(t)) => Some(t),
        None => None,
    };
    let what = if write {
        "Thread.wait_write"
    } else {
        "Thread.wait_read"
    };
    let dir = if write { Dir::Write } else { Dir::Read };
    match wait_raw(fd, dir, deadline, what) {
        Ok(ready) => ready,
        Err(e) => unix_error(&e, "select"),
    }
}

/// The status of a process that `wait_pid` collected (OCaml's `Unix.process_status`).
/// Signal numbers are the system's (OCaml renumbers them: `Sys.sigkill` is `-7`).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessStatus {
    /// The process ended normally with this exit code.
    WEXITED(i32),
    /// The process was killed by this signal.
    WSIGNALED(i32),
    /// The process was stopped by this signal.
    WSTOPPED(i32),
}

/// `Thread.wait_pid p` (`Unix.waitpid [] p`): suspends the thread until child `p` ends and
/// returns its pid and status. `p = -1` waits for any child, `p = 0` for any child in the
/// caller's process group.
///
/// A positive `p` is watched through a pidfd (the task parks); other values wait on the
/// blocking pool.
///
/// # Panics
///
/// `Unix.Unix_error(Unix.ECHILD, "waitpid", "")` if there is no such child.
#[track_caller]
pub fn wait_pid(pid: i32) -> (i32, ProcessStatus) {
    match wait_child(pid, "Thread.wait_pid") {
        Ok((pid, ChildStatus::Exited(code))) => (pid, ProcessStatus::WEXITED(code)),
        Ok((pid, ChildStatus::Signaled(sig))) => (pid, ProcessStatus::WSIGNALED(sig)),
        Ok((pid, ChildStatus::Stopped(sig))) => (pid, ProcessStatus::WSTOPPED(sig)),
        Err(e) => unix_error(&e, "waitpid"),
    }
}

/// Raises OCaml's `Unix.Unix_error(Unix.<code>, "<call>", "")` as a panic.
#[track_caller]
fn unix_error(e: &std::io::Error, call: &str) -> ! {
    let code = match e.raw_os_error() {
        Some(libc::EBADF) => "EBADF".to_string(),
        Some(libc::ECHILD) => "ECHILD".to_string(),
        Some(libc::EINVAL) => "EINVAL".to_string(),
        Some(libc::EPERM) => "EPERM".to_string(),
        Some(libc::ESRCH) => "ESRCH".to_string(),
        Some(libc::ENOMEM) => "ENOMEM".to_string(),
        Some(libc::EINTR) => "EINTR".to_string(),
        Some(n) => format!("EUNKNOWNERR {n}"),
        None => "EUNKNOWNERR 0".to_string(),
    };
    panic!("Unix.Unix_error(Unix.{code}, \"{call}\", \"\")")
}
