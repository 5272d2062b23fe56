//! [`Child`]: a running (or ended) child process, whose waits park the task.

use std::io::{self, Read};
use std::os::fd::AsRawFd;

use super::pipes::{ChildStderr, ChildStdin, ChildStdout};
use super::{ExitStatus, Output};

/// A child process, as std's `Child`: its pipes in the public fields, [`Child::wait`] parks
/// the task (the pidfd steps of the module doc), [`Child::kill`] and [`Child::try_wait`] never
/// block.
///
/// Dropping a `Child` neither kills nor reaps the process, as in std: it keeps running, and
/// once it ends it stays a zombie until something waits for it.
///
/// ```
/// use bobine::process::Command;
/// bobine::run(|| {
///     let mut child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
///     let status = child.wait().unwrap();
///     assert_eq!(status.code(), Some(3));
/// });
/// ```
#[derive(Debug)]
pub struct Child {
    /// std's child, whose pipes have been taken out into the fields below. It reaps the
    /// process and remembers its status, so `kill`, `try_wait` and `wait` agree with std's.
    inner: std::process::Child,
    /// The child's standard input, if it was piped ([`Stdio::piped`](super::Stdio::piped)).
    pub stdin: Option<ChildStdin>,
    /// The child's standard output, if it was piped.
    pub stdout: Option<ChildStdout>,
    /// The child's standard error, if it was piped.
    pub stderr: Option<ChildStderr>,
}

impl Child {
    /// Takes std's child, moving its pipes into bobine's (non-blocking) ends.
    pub(super) fn from_std(mut inner: std::process::Child) -> Child {
        Child {
            stdin: inner.stdin.take().map(ChildStdin::new),
            stdout: inner.stdout.take().map(ChildStdout::new),
            stderr: inner.stderr.take().map(ChildStderr::new),
            inner,
        }
    }

    /// The child's process id (std's `Child::id`).
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Sends `SIGKILL` to the child, unless it has been reaped already (then `Ok`), exactly as
    /// std's `Child::kill`. It does not wait: call [`Child::wait`] to reap it.
    ///
    /// # Errors
    ///
    /// As std's: the error of `kill(2)`.
    pub fn kill(&mut self) -> io::Result<()> {
        self.inner.kill()
    }

    /// Waits for the child to end and returns its status, closing its standard input first
    /// (as std does, so a child reading it sees end of file). The task parks on a pidfd until
    /// the child has ended (its domain runs other tasks); a plain OS thread blocks. Calling it
    /// again returns the same status.
    ///
    /// # Errors
    ///
    /// As std's (`ECHILD` if the child was reaped behind std's back); the error of the wait.
    #[track_caller]
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        // Steps 1 and 2 of the module doc: until the child has ended, without reaping it.
        // ECHILD: std has reaped it already (its status is remembered) or someone else has
        // (std's wait then gives ECHILD): either way std's wait answers at once.
        match crate::io::process::wait_ended(self.inner.id() as i32, "Child::wait") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {}
            Err(e) => return Err(e),
        }
        // Step 3: the child is a zombie, so std's waitpid reaps it without blocking.
        self.inner.wait()
    }

    /// Reaps the child if it has ended (`Some(status)`), else returns `None` at once: std's
    /// `Child::try_wait`, which never blocks.
    ///
    /// # Errors
    ///
    /// As std's: the error of `waitpid(2)`.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// Closes the child's standard input, reads all of its standard output and error (both at
    /// once, so a child that fills one pipe while the parent reads the other cannot deadlock),
    /// then waits for it, as std's `Child::wait_with_output`. Pipes that were not set up give
    /// empty vectors. The task parks while the pipes are empty and while it waits.
    ///
    /// # Errors
    ///
    /// The error of a read or of the wait. (std panics on a read error, which it never meets
    /// on a pipe; bobine's reads can fail where std's cannot, when the task's runtime is
    /// ending, so the error is returned.)
    #[track_caller]
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        match (self.stdout.take(), self.stderr.take()) {
            (None, None) => {}
            (Some(mut out), None) => {
                out.read_to_end(&mut stdout)?;
            }
            (None, Some(mut err)) => {
                err.read_to_end(&mut stderr)?;
            }
            (Some(out), Some(err)) => read2(out, &mut stdout, err, &mut stderr)?,
        }
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// Reads `out` and `err` to their ends at once: each pipe is put in bobine's non-blocking mode
/// (a read gives `WouldBlock` instead of parking) and read until it would block; when both
/// would, the caller waits for either to become readable with one event sync (a task parks, a
/// plain thread blocks in `poll(2)`). Once one is at its end, the other is read to its end with
/// ordinary parking reads.
///
/// The alternative, a helper task (or thread) reading one pipe while the caller reads the
/// other, needs a runtime on plain threads and a spawn per call; one sync over two readiness
/// leaves works the same in both places.
#[track_caller]
fn read2(
    mut out: ChildStdout,
    out_buf: &mut Vec<u8>,
    mut err: ChildStderr,
    err_buf: &mut Vec<u8>,
) -> io::Result<()> {
    out.handle().set_nonblocking(true);
    err.handle().set_nonblocking(true);
    loop {
        if drain(&mut out, out_buf)? {
            err.handle().set_nonblocking(false);
            err.read_to_end(err_buf)?;
            return Ok(());
        }
        if drain(&mut err, err_buf)? {
            out.handle().set_nonblocking(false);
            out.read_to_end(out_buf)?;
            return Ok(());
        }
        // Both would block. Level-triggered checks (the event's readiness leaves), so data that
        // came after the reads above is seen at once: no wake-up is lost.
        crate::event::select(vec![
            crate::event::readable(out.as_raw_fd()),
            crate::event::readable(err.as_raw_fd()),
        ]);
    }
}

/// Reads what `pipe` holds into `buf`: true at its end, false when it would block.
fn drain(pipe: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    // `read_to_end` keeps what it read when it stops on an error.
    match pipe.read_to_end(buf) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}
