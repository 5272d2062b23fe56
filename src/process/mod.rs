//! Processes with std's signatures, whose waits park the task, not the domain: a drop-in for
//! `std::process` (`use bobine::process` replaces `use std::process`; the items that never
//! block, [`ExitStatus`], [`Output`], [`Stdio`], [`ExitCode`], [`exit`], ..., are std's own).
//!
//! What parks, and what runs where:
//!
//! - [`Command::spawn`] (and so `output` and `status`): std's spawn returns only once the child
//!   has called `exec` (it reads a close-on-exec pipe, or `posix_spawn` waits for the vfork'd
//!   child), which takes a few hundred microseconds to milliseconds. Inside a task it runs on
//!   the blocking pool (`io::unblock`), the command moved there and back, while the task
//!   parks: the domain pays one pool round trip instead of the spawn. `cargo bench --bench
//!   process` measures both (2-vCPU AMD EPYC VM): `Command::new("true").status()` took 0.81 ms
//!   in a task against std's 0.74 ms on a thread, and an empty `unblock` round trip 15 µs. On
//!   a plain thread, std's spawn runs on that thread.
//! - [`Child::wait`] parks on a pidfd (the steps below); [`Child::kill`] and
//!   [`Child::try_wait`] never block and are std's own.
//! - The pipes ([`ChildStdin`], [`ChildStdout`], [`ChildStderr`]) are std's pipe ends in
//!   non-blocking mode behind the socket core (`net::Handle`): a read or write that would
//!   block parks the task until the domain's epoll reports the pipe ready; a plain thread
//!   blocks in `poll(2)`.
//! - [`Child::wait_with_output`] and [`Command::output`] read standard output and error at
//!   once (one event sync over both pipes' readiness when both are empty), so a child that
//!   fills one pipe while the parent reads the other cannot deadlock.
//!
//! How `Child::wait` waits (the shared routine `io::process::wait_ended`, which OCaml's
//! `Thread.wait_pid` uses too):
//!
//! 1. Close the child's standard input, as std does.
//! 2. Probe with `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`: `ECHILD` means std already
//!    reaped it (and remembers the status) or someone else did; std's wait then answers at
//!    once, with the status or `ECHILD`, as it would on its own.
//! 3. Open a pidfd for the child and park until it is readable, i.e. until the child has
//!    ended. The child is not reaped: a zombie's pid cannot be reused, so the pidfd names the
//!    right process. (Without a pidfd, a blocking `waitid(.., WNOWAIT)` runs on the pool.)
//! 4. Call std's `Child::wait`: its `waitpid` finds the zombie and returns at once, and std's
//!    child records the status, so a later `wait`, `try_wait` or `kill` behaves exactly as
//!    std's.
//!
//! The O_NONBLOCK rule: the non-blocking flag lives on the pipe end's open file description,
//! shared by every holder of the descriptor. So when an end leaves bobine (to another child
//! through `Stdio::from(child.stdout.take().unwrap())`, or as an `OwnedFd` or raw descriptor),
//! the flag is cleared first and the other program sees a blocking descriptor, as with std.
//!
//! Differences from std, all deliberate:
//!
//! - `output` cannot see standard streams set on the std command (before
//!   `From<std::process::Command>`, or through [`Command::as_std_mut`]): std keeps whether a
//!   stream was set private, so this type records the ones set through its own methods, and
//!   `output` gives the others its defaults (null, piped, piped), then sets them back to
//!   inherited (what `spawn` does with a stream never set).
//! - `wait_with_output` returns a read error where std panics (see it).
//! - A child spawned from a task is forked by a pool thread: a `PR_SET_PDEATHSIG` set in
//!   `pre_exec` fires when that thread ends (after 10 s idle), not when the task's domain does,
//!   and the child starts with that thread's CPU affinity.
//!
//! This module owns the process types; it waits through `io` (pidfd, pool), `net::Handle`
//! (pipes) and `event` (the two-pipe read), and touches neither epoll nor the scheduler.

mod child;
mod command;
mod pipes;

pub use child::Child;
pub use command::Command;
pub use pipes::{ChildStderr, ChildStdin, ChildStdout};
pub use std::process::{
    CommandArgs, CommandEnvs, ExitCode, ExitStatus, Output, Stdio, Termination, abort, exit, id,
};
