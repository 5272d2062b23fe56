//! Child runs: this test binary re-run on one test in a child process, for tests that change
//! process-wide state (the environment, limits, signal dispositions) or whose process must end
//! in a way the harness could not survive. The child finds its role in an environment variable
//! that each test file names.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The command that re-runs this test binary on exactly the test `test` (one test thread, output
/// not captured by the harness), with `env` added to the environment.
pub fn command(test: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    cmd.envs(env.iter().copied());
    cmd
}

/// Runs `test` in a child process (see [`command`]) until it ends; returns its output.
pub fn run(test: &str, env: &[(&str, &str)]) -> Output {
    command(test, env)
        .output()
        .expect("cannot run the test binary as a child")
}

/// Runs `test` in a child process (see [`command`]), killing it if it has not ended within
/// `limit`. Returns its output and whether it had to be killed.
pub fn run_within(test: &str, env: &[(&str, &str)], limit: Duration) -> (Output, bool) {
    let mut child = command(test, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the test binary as a child");
    let end = Instant::now() + limit;
    let mut killed = false;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= end {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (child.wait_with_output().unwrap(), killed)
}

/// Runs `test` in a child process with `var` set to the test's name (see [`is_child_of`]),
/// killing it after `secs`; asserts that it ended on its own (no hang), without a signal (no
/// abort) and successfully. Returns its stderr.
pub fn run_ok(var: &str, test: &str, secs: u64) -> String {
    let (out, killed) = run_within(test, &[(var, test)], Duration::from_secs(secs));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !killed,
        "child '{test}' hung: killed after {secs} s\nstderr:\n{stderr}"
    );
    assert_ok(test, &out);
    stderr
}

/// Whether this process is a child run: `var` is set (to anything).
pub fn is_child(var: &str) -> bool {
    std::env::var_os(var).is_some()
}

/// Whether this process is the child run of `test`: `var` is set to the test's name.
pub fn is_child_of(var: &str, test: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == test)
}

/// Asserts that the child run of `test` ended normally (not killed by a signal) and
/// successfully; the message shows its output.
pub fn assert_ok(test: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.signal(),
        None,
        "child '{test}' was killed by signal {:?} (13 is SIGPIPE)\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.signal()
    );
    assert!(
        out.status.success(),
        "child '{test}' failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}
