//! Diagnostics: the task dump, and what the runtime reports when something goes wrong.
//!
//! - [`dump`] lists every task of every live runtime: id, name, domain, state, why and where a
//!   parked task waits, and for how long. A SIGQUIT (`kill -QUIT <pid>`, or Ctrl-\ in a
//!   terminal) prints the same to stderr, and the process keeps running (a SIGQUIT handler
//!   function installed before bobine's first runtime still runs after it; `BOBINE_SIGQUIT=0`
//!   leaves SIGQUIT alone, and so does a process that ignores it).
//! - **Deadlock**: when every task of a runtime is parked and nothing can wake any of them, the
//!   runtime is ended (its tasks unwind, as when `run`'s closure returns) and `run` panics with
//!   a message that begins `deadlock: all tasks are blocked`, followed by the dump, within
//!   about a second. "Nothing can wake them" means: no timer is armed, no descriptor is
//!   registered, no blocking-pool job is queued or running, no signal is watched, every domain
//!   of every runtime of the process sleeps, and every other thread of the process is blocked
//!   waiting for another thread with no time limit (read from `/proc/self/task/*/syscall`: a
//!   `futex` wait with no timeout, which is what a plain thread inside a bobine call, a
//!   `join`, a std lock or a `recv` come down to). Any thread that could move (it computes,
//!   sleeps, reads a terminal, waits with a timeout: a test harness running several tests at
//!   once does) could hold a handle that wakes a task, so no deadlock is reported while one
//!   exists; nor while a descriptor or timer could still fire, even one nobody will ever make
//!   fire. [`Builder::deadlock_detection(false)`](crate::Builder::deadlock_detection) turns the
//!   report off.
//! - **Stall**: a domain that has not come back to its scheduler for more than 10 ms (a task
//!   computing without yielding, or a blocking call of std made inside a task) is reported on
//!   stderr once per task, with the task's name, where it last resumed, and the system call
//!   its domain is in, if any. Scheduling is cooperative: the report does not stop the task.
//!   `BOBINE_STALL_MS=<ms>` changes the bound; `BOBINE_STALL_MS=0` turns the report off (for a
//!   program whose tasks compute for long on purpose).
//! - **A shutdown that takes long**: a runtime still ending 5 s after its main task returned
//!   prints the dump of what it waits for, and again every 30 s.
//!
//! These reports come from one thread per process, `bobine-monitor`, which looks at the
//! domains every 5 ms while some run a task and every 50 ms while all sleep.
//!
//! ```
//! use bobine::diag::TaskState;
//!
//! bobine::Builder::new().domains(1).run(|| {
//!     let (tx, rx) = bobine::sync::mpsc::channel::<()>();
//!     let waiter = bobine::thread::Builder::new()
//!         .name("waiter".into())
//!         .spawn(move || rx.recv())
//!         .unwrap();
//!     bobine::thread::yield_now(); // let it reach its `recv`
//!     let dump = bobine::diag::dump();
//!     let w = dump.tasks().iter().find(|t| t.name() == Some("waiter")).unwrap();
//!     assert_eq!(w.state(), TaskState::Parked);
//!     assert!(dump.to_string().contains("task 'waiter'"));
//!     drop(tx);
//!     waiter.join().unwrap().unwrap_err();
//! });
//! ```

pub use crate::sched::inspect::{TaskDump, TaskInfo, TaskState};

/// Every task of every live runtime of the process, at this moment (see the module doc).
///
/// Each domain describes its own tasks between two of them; a task calling `dump` parks
/// meanwhile, so its domain goes on. A domain that does not answer within 200 ms (a task keeps
/// it busy) is described from outside: only the task it runs is listed, with a note.
pub fn dump() -> TaskDump {
    crate::sched::inspect::collect(&crate::sched::monitor::live_runtimes())
}
