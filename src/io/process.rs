//! Waiting for a child process without blocking the domain: the machinery behind OCaml's
//! `Thread.wait_pid` and `bobine::process::Child::wait`, kept here so that every face that
//! waits for processes shares it.
//!
//! Two routines share it. [`wait_ended`] waits until child `pid` has ended *without reaping
//! it* (steps 1, 2 and 2b), so that its owner (std's `Child`, inside `bobine::process`) reaps
//! it itself and keeps its own state right. [`wait_child`] reaps as well (steps 1 to 4).
//!
//! For a positive pid:
//! 1. Probe with `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`: `ECHILD` means it is not a
//!    child of ours (or it was reaped already), and the wait fails at once (a pidfd would
//!    otherwise wait for any process to end, ours or not). `WNOWAIT` leaves an ended child
//!    unreaped.
//! 2. Open a pidfd for it (`pidfd_open(2)`, Linux 5.3+) and wait until it is readable, which it
//!    is once the process has ended: the task parks on the domain's epoll like any descriptor
//!    wait (a plain OS thread blocks in `poll(2)`). The child is still unreaped: while it is a
//!    zombie of ours its pid cannot be reused, so the pidfd names the right process.
//!    2b. If no pidfd could be had, wait with a blocking `waitid(.., WEXITED | WNOWAIT)` on
//!    the blocking pool while the task parks (it too leaves the child unreaped).
//!
//!    [`wait_ended`] stops here.
//! 3. Reap it with `waitpid(pid, WNOHANG)`.
//! 4. If that found nothing, wait with a blocking `waitpid` on the blocking pool while the
//!    task parks.
//!
//! Any other pid (`-1`: any child, `0`: any child of our process group, `< -1`: any child of
//! that group) has no pidfd to wait on, and goes straight to step 4.
//!
//! The probes go through nix. The pidfd is opened with the raw `syscall(2)` (neither libc nor
//! nix wraps `pidfd_open`), and reaping stays on `libc::waitpid`: nix's wait functions decode
//! the status into its `Signal` enum, which cannot hold a real-time signal, so a child killed by
//! `SIGRTMIN + n` would come back as an error instead of its status (for the same reason, the
//! probes look only at `ECHILD` and ignore what nix makes of the status).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::sched::reactor::Dir;
use crate::sched::reactor::source::wait_raw;

/// How a child that [`wait_child`] collected ended (or stopped). Signal numbers are the
/// system's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildStatus {
    /// It ended normally with this exit code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// It was stopped by this signal.
    Stopped(i32),
}

/// Waits until child `pid` (positive) has ended, without reaping it (steps 1, 2 and 2b of the
/// module doc); `reason` names the wait in task dumps. The calling task parks; a plain OS
/// thread blocks.
///
/// # Errors
///
/// `ECHILD` if there is no such child (never was, or already reaped); the error of waiting on
/// its pidfd or of `waitid`.
#[track_caller]
pub(crate) fn wait_ended(pid: i32, reason: &'static str) -> io::Result<()> {
    debug_assert!(pid > 0, "wait_ended takes one child's pid");
    // Step 1. Only ECHILD matters: the probe's other outcomes (the child is running, has
    // ended, or nix could not decode a real-time signal, EINVAL) all go on to step 2.
    if let Err(Errno::ECHILD) = waitid(Id::Pid(Pid::from_raw(pid)), ended_flags(true)) {
        return Err(io::Error::from_raw_os_error(libc::ECHILD));
    }
    // Step 2.
    if let Some(pidfd) = pidfd_open(pid) {
        wait_raw(pidfd.as_raw_fd(), Dir::Read, None, reason)?;
        return Ok(());
    }
    // Step 2b.
    crate::io::unblock(move || {
        loop {
            match waitid(Id::Pid(Pid::from_raw(pid)), ended_flags(false)) {
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return Err(io::Error::from_raw_os_error(libc::ECHILD)),
                // Ended (EINVAL: nix could not decode a real-time signal, but the child ended).
                _ => return Ok(()),
            }
        }
    })
}

/// `WEXITED | WNOWAIT`, with `WNOHANG` for a probe.
fn ended_flags(probe: bool) -> WaitPidFlag {
    let f = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    if probe { f | WaitPidFlag::WNOHANG } else { f }
}

/// Waits until child `pid` ends (see the module doc for the meaning of `pid <= 0`), reaps it and
/// returns its pid and status; `reason` names the wait in task dumps. The calling task parks;
/// a plain OS thread blocks.
///
/// # Errors
///
/// `ECHILD` if there is no such child; the error of waiting on its pidfd or of `waitpid`.
#[track_caller]
pub(crate) fn wait_child(pid: i32, reason: &'static str) -> io::Result<(i32, ChildStatus)> {
    if pid > 0 {
        // Steps 1, 2 (and 2b).
        wait_ended(pid, reason)?;
        // Step 3.
        if let Some(reaped) = waitpid(pid, libc::WNOHANG)? {
            return Ok(reaped);
        }
    }
    // Step 4.
    match crate::io::unblock(move || waitpid(pid, 0))? {
        Some(reaped) => Ok(reaped),
        None => unreachable!("a blocking waitpid returns a child"),
    }
}

/// A pidfd for `pid`, or `None` if the kernel gives none (too old, or the process is gone).
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; it touches
    // no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `waitpid(2)`, retried on `EINTR`; `None` when `WNOHANG` found nothing yet.
fn waitpid(pid: i32, flags: libc::c_int) -> io::Result<Option<(i32, ChildStatus)>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid c_int to write to.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r > 0 {
            let st = if libc::WIFEXITED(status) {
                ChildStatus::Exited(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                ChildStatus::Signaled(libc::WTERMSIG(status))
            } else {
                ChildStatus::Stopped(libc::WSTOPSIG(status))
            };
            return Ok(Some((r, st)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
