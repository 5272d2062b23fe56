//! [`Command`]: std's process builder, whose `spawn` runs on the blocking pool inside a task.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::Path;

use super::{Child, CommandArgs, CommandEnvs, ExitStatus, Output, Stdio};

/// A process builder with std's methods and signatures (it wraps a `std::process::Command`);
/// [`Command::spawn`] gives a bobine [`Child`], whose waits and pipes park the task.
///
/// The std command is at hand for the `CommandExt` traits ([`Command::as_std_mut`]) and
/// converts both ways ([`From<std::process::Command>`], [`Command::into_std`]).
///
/// ```
/// use bobine::process::Command;
/// bobine::run(|| {
///     let out = Command::new("sh").args(["-c", "echo $GREETING"]).env("GREETING", "hi").output();
///     assert_eq!(out.unwrap().stdout, b"hi\n");
/// });
/// ```
pub struct Command {
    inner: std::process::Command,
    /// Whether stdin, stdout, stderr were set through this type: `output` gives the others
    /// its own defaults (null, piped, piped), as std's does.
    stdio_set: [bool; 3],
}

impl Command {
    /// A command to run `program` (found on `PATH` if it has no `/`), with no arguments, the
    /// parent's environment and working directory, and (for `spawn` and `status`) the parent's
    /// standard streams.
    pub fn new<S: AsRef<OsStr>>(program: S) -> Command {
        Command::from(std::process::Command::new(program))
    }

    /// Adds one argument.
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env<K, V>(&mut self, key: K, val: V) -> &mut Command
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.env(key, val);
        self
    }

    /// Sets several environment variables for the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove<K: AsRef<OsStr>>(&mut self, key: K) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Clears the child's environment (variables set afterwards are kept).
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir<P: AsRef<Path>>(&mut self, dir: P) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// Sets the child's standard input ([`Stdio::piped`] gives [`Child::stdin`]).
    pub fn stdin<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdio_set[0] = true;
        self
    }

    /// Sets the child's standard output ([`Stdio::piped`] gives [`Child::stdout`]).
    pub fn stdout<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdio_set[1] = true;
        self
    }

    /// Sets the child's standard error ([`Stdio::piped`] gives [`Child::stderr`]).
    pub fn stderr<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stderr(cfg);
        self.stdio_set[2] = true;
        self
    }

    /// The program, as given to [`Command::new`].
    pub fn get_program(&self) -> &OsStr {
        self.inner.get_program()
    }

    /// The arguments (without the program).
    pub fn get_args(&self) -> CommandArgs<'_> {
        self.inner.get_args()
    }

    /// The environment changes made (`None` for a removed variable).
    pub fn get_envs(&self) -> CommandEnvs<'_> {
        self.inner.get_envs()
    }

    /// The working directory, if one was set.
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.inner.get_current_dir()
    }

    /// Starts the child and returns it, as std's `spawn`. Inside a task, std's spawn (which
    /// returns once the child has called `exec`) runs on the blocking pool while the task
    /// parks; a plain OS thread runs it itself.
    ///
    /// # Errors
    ///
    /// As std's: `NotFound` for a missing program, `PermissionDenied`, `InvalidInput` for an
    /// argument with a NUL byte, and so on.
    #[track_caller]
    pub fn spawn(&mut self) -> io::Result<Child> {
        self.spawn_std().map(Child::from_std)
    }

    /// Runs the child to its end and collects its output, as std's `output`: standard output
    /// and error are piped and standard input is null unless set through this type (see the
    /// module doc), and both pipes are read at once (see [`Child::wait_with_output`]).
    ///
    /// # Errors
    ///
    /// The error of starting the child, of a read, or of the wait.
    #[track_caller]
    pub fn output(&mut self) -> io::Result<Output> {
        let [stdin, stdout, stderr] = self.stdio_set;
        if !stdin {
            self.inner.stdin(Stdio::null());
        }
        if !stdout {
            self.inner.stdout(Stdio::piped());
        }
        if !stderr {
            self.inner.stderr(Stdio::piped());
        }
        let spawned = self.spawn_std();
        // Back to what `spawn` and `status` do with a stream that was never set.
        if !stdin {
            self.inner.stdin(Stdio::inherit());
        }
        if !stdout {
            self.inner.stdout(Stdio::inherit());
        }
        if !stderr {
            self.inner.stderr(Stdio::inherit());
        }
        Child::from_std(spawned?).wait_with_output()
    }

    /// Runs the child to its end (streams inherited unless set) and returns its status, as
    /// std's `status`; the task parks while it runs.
    ///
    /// # Errors
    ///
    /// The error of starting the child or of the wait.
    #[track_caller]
    pub fn status(&mut self) -> io::Result<ExitStatus> {
        self.spawn()?.wait()
    }

    /// The std command, to read it.
    pub fn as_std(&self) -> &std::process::Command {
        &self.inner
    }

    /// The std command, for the `CommandExt` traits (`uid`, `process_group`, `pre_exec`, ...).
    /// Standard streams set here are not seen by [`Command::output`] (see the module doc).
    ///
    /// ```
    /// use std::os::unix::process::CommandExt;
    /// let mut cmd = bobine::process::Command::new("sh");
    /// cmd.args(["-c", "exit 0"]).as_std_mut().process_group(0);
    /// assert!(cmd.status().unwrap().success());
    /// ```
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.inner
    }

    /// The std command.
    pub fn into_std(self) -> std::process::Command {
        self.inner
    }

    /// std's spawn: on the blocking pool inside a task (the command goes there and back), on
    /// the calling thread outside.
    #[track_caller]
    fn spawn_std(&mut self) -> io::Result<std::process::Child> {
        if crate::sched::current_ptr().is_null() {
            return self.inner.spawn();
        }
        // A task stopped while it waits unwinds from `unblock`, leaving this placeholder
        // behind: its command is lost with it.
        let mut cmd = std::mem::replace(&mut self.inner, std::process::Command::new(""));
        let (cmd, spawned) = crate::io::unblock(move || {
            let spawned = cmd.spawn();
            (cmd, spawned)
        });
        self.inner = cmd;
        spawned
    }
}

/// A bobine command with the std command's settings. Standard streams already set on it are
/// not seen by [`Command::output`] (see the module doc).
impl From<std::process::Command> for Command {
    fn from(inner: std::process::Command) -> Command {
        Command {
            inner,
            stdio_set: [false; 3],
        }
    }
}

/// As std's: the program and arguments, quoted (`{:#?}`: every setting).
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}
