//! `bobine::process`: std's process API whose waits park the task. Output and exit codes,
//! pipes both ways, large output on both pipes at once, kill and try_wait, std's errors, a
//! pipeline handing a blocking descriptor on, dropped children, many children over two
//! domains, and the domain running other tasks while one waits. Each behaviour runs in a task
//! and, where the API is usable there, on a plain thread.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::process::{Child, Command, Stdio};
use bobine::thread;
use common::tasks::{in_task_and_thread, spawn_ticker};

/// Whether `fd`'s open file description has O_NONBLOCK set.
fn is_nonblocking(fd: impl AsFd) -> bool {
    let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    flags & libc::O_NONBLOCK != 0
}

/// Runs `f` beside the caller: in a task when called from one, else on an OS thread.
fn beside<T: Send + 'static>(
    in_task: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Box<dyn FnOnce() -> T> {
    if in_task {
        let h = thread::spawn(f);
        Box::new(move || h.join().unwrap())
    } else {
        let h = std::thread::spawn(f);
        Box::new(move || h.join().unwrap())
    }
}

/// Whether `s` is `unit` repeated (the last copy may be cut short).
fn is_repeated(s: &[u8], unit: &[u8]) -> bool {
    s.chunks(unit.len()).all(|c| unit.starts_with(c))
}

/// `output` captures standard output and error apart, with the exit status.
#[test]
fn output_captures_stdout_stderr_and_status() {
    common::watchdog(20, "output_captures_stdout_stderr_and_status", || {
        in_task_and_thread(|ctx| {
            let out = Command::new("echo").arg("hello").output().unwrap();
            assert!(out.status.success(), "{ctx}");
            assert_eq!(out.stdout, b"hello\n", "{ctx}");
            assert!(out.stderr.is_empty(), "{ctx}");

            let out = Command::new("sh")
                .args(["-c", "echo out; echo err >&2; exit 4"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(4), "{ctx}");
            assert_eq!(out.stdout, b"out\n", "{ctx}");
            assert_eq!(out.stderr, b"err\n", "{ctx}");
        });
    });
}

/// `status` gives the child's exit code, with its streams inherited.
#[test]
fn status_reports_exit_codes() {
    common::watchdog(20, "status_reports_exit_codes", || {
        in_task_and_thread(|ctx| {
            assert!(Command::new("true").status().unwrap().success(), "{ctx}");
            assert_eq!(Command::new("false").status().unwrap().code(), Some(1));
            let st = Command::new("sh").args(["-c", "exit 7"]).status().unwrap();
            assert_eq!(st.code(), Some(7), "{ctx}");
            assert!(!st.success(), "{ctx}");
        });
    });
}

/// Bytes written to `cat`'s standard input come back on its standard output, all of them,
/// in order, with the writer and the reader running at once (256 KiB is more than both pipe
/// buffers hold). In a task, writer and reader share one domain: a write or read that blocked
/// the domain would stop the other and hang.
#[test]
fn stdin_through_cat_comes_back_on_stdout() {
    fn body(in_task: bool) {
        let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        assert!(is_nonblocking(&stdin));
        let sent = data.clone();
        let writer = beside(in_task, move || stdin.write_all(&sent).unwrap());
        let mut back = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut back).unwrap();
        writer();
        assert!(back == data, "{} bytes back of {}", back.len(), data.len());
        assert!(child.wait().unwrap().success());
    }
    common::watchdog(30, "stdin_through_cat_comes_back_on_stdout", || {
        bobine::Builder::new().domains(1).run(|| body(true));
        std::thread::spawn(|| body(false)).join().unwrap();
    });
}

/// A child writing 1 MiB to standard error and then 1 MiB to standard output (each far more
/// than a pipe holds) does not deadlock `output` or `wait_with_output`, and every byte arrives.
#[test]
fn large_stdout_and_stderr_arrive_whole_without_deadlock() {
    const N: usize = 1 << 20;
    common::watchdog(
        60,
        "large_stdout_and_stderr_arrive_whole_without_deadlock",
        || {
            in_task_and_thread(|ctx| {
                let script = format!("yes e | head -c {N} >&2; yes out | head -c {N}");
                let out = Command::new("sh").args(["-c", &script]).output().unwrap();
                assert!(out.status.success(), "{ctx}");
                assert_eq!(out.stdout.len(), N, "{ctx}");
                assert_eq!(out.stderr.len(), N, "{ctx}");
                assert!(is_repeated(&out.stdout, b"out\n"), "{ctx}");
                assert!(is_repeated(&out.stderr, b"e\n"), "{ctx}");

                // Both streams in turns, through spawn and wait_with_output.
                let script = format!(
                    "for i in 1 2 3 4; do yes a | head -c {N}; yes b | head -c {N} >&2; done"
                );
                let child = Command::new("sh")
                    .args(["-c", &script])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "{ctx}");
                assert_eq!(out.stdout.len(), 4 * N, "{ctx}");
                assert_eq!(out.stderr.len(), 4 * N, "{ctx}");
                assert!(is_repeated(&out.stdout, b"a\n"), "{ctx}");
                assert!(is_repeated(&out.stderr, b"b\n"), "{ctx}");
            });
        },
    );
}

/// `kill` then `wait` gives a status killed by SIGKILL; a second `kill` and `wait` answer as
/// std's do on the same sequence.
#[test]
fn kill_then_wait_gives_the_signal() {
    common::watchdog(20, "kill_then_wait_gives_the_signal", || {
        in_task_and_thread(|ctx| {
            let mut child = Command::new("sleep").arg("30").spawn().unwrap();
            child.kill().unwrap();
            let st = child.wait().unwrap();
            assert_eq!(st.signal(), Some(libc::SIGKILL), "{ctx}");
            assert_eq!(st.code(), None, "{ctx}");

            let mut std_child = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            std_child.kill().unwrap();
            let std_st = std_child.wait().unwrap();
            assert_eq!(st, std_st, "{ctx}");
            assert_eq!(
                child.kill().is_ok(),
                std_child.kill().is_ok(),
                "{ctx}: kill after wait"
            );
            assert_eq!(child.wait().unwrap(), std_child.wait().unwrap(), "{ctx}");
            assert_eq!(child.try_wait().unwrap(), Some(st), "{ctx}");
        });
    });
}

/// `try_wait` gives `None` while the child runs and `Some` once it has ended; `wait`
/// afterwards gives the same status.
#[test]
fn try_wait_is_none_then_some() {
    common::watchdog(20, "try_wait_is_none_then_some", || {
        in_task_and_thread(|ctx| {
            let mut child = Command::new("sh")
                .args(["-c", "read x; exit 3"])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            assert_eq!(child.try_wait().unwrap(), None, "{ctx}");
            drop(child.stdin.take());
            let mut status = None;
            for _ in 0..1000 {
                status = child.try_wait().unwrap();
                if status.is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            let status = status.expect("the child did not end within 5 s");
            assert_eq!(status.code(), Some(3), "{ctx}");
            assert_eq!(child.wait().unwrap(), status, "{ctx}");
        });
    });
}

/// A program that does not exist gives the same error as std's spawn, from `spawn`, `output`
/// and `status`.
#[test]
fn missing_program_gives_std_error() {
    common::watchdog(20, "missing_program_gives_std_error", || {
        in_task_and_thread(|ctx| {
            let name = "bobine-no-such-program-here";
            let std_err = std::process::Command::new(name).spawn().unwrap_err();
            assert_eq!(std_err.kind(), std::io::ErrorKind::NotFound);
            let e = Command::new(name).spawn().unwrap_err();
            assert_eq!(e.kind(), std_err.kind(), "{ctx}");
            assert_eq!(e.raw_os_error(), std_err.raw_os_error(), "{ctx}");
            assert_eq!(Command::new(name).output().unwrap_err().kind(), e.kind());
            assert_eq!(Command::new(name).status().unwrap_err().kind(), e.kind());
            // A NUL byte in an argument, as std: InvalidInput.
            let std_nul = std::process::Command::new("true").arg("a\0b").spawn();
            let nul = Command::new("true").arg("a\0b").spawn();
            assert_eq!(
                nul.unwrap_err().kind(),
                std_nul.unwrap_err().kind(),
                "{ctx}"
            );
        });
    });
}

/// A pipeline `a | b`: the first child's standard output, handed to the second child through
/// `Stdio`, is blocking again (the second child sees O_NONBLOCK clear), and every byte passes.
#[test]
fn pipeline_hands_a_blocking_descriptor_to_the_next_child() {
    const N: usize = 300_000;
    common::watchdog(
        30,
        "pipeline_hands_a_blocking_descriptor_to_the_next_child",
        || {
            in_task_and_thread(|ctx| {
                let mut first = Command::new("sh")
                    .args(["-c", &format!("yes | head -c {N}")])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let out = first.stdout.take().unwrap();
                assert!(
                    is_nonblocking(&out),
                    "{ctx}: the parent's end is non-blocking"
                );
                // The second child prints its stdin's flags (octal), then counts its bytes.
                let second = Command::new("sh")
                    .args(["-c", "grep '^flags' /proc/self/fdinfo/0; wc -c"])
                    .stdin(Stdio::from(out))
                    .output()
                    .unwrap();
                assert!(second.status.success(), "{ctx}");
                let text = String::from_utf8(second.stdout).unwrap();
                let mut lines = text.lines();
                let flags = lines.next().unwrap().trim_start_matches("flags:").trim();
                let flags = i64::from_str_radix(flags, 8).unwrap();
                assert_eq!(flags & libc::O_NONBLOCK as i64, 0, "{ctx}: flags {flags:o}");
                let count: usize = lines.next().unwrap().trim().parse().unwrap();
                assert_eq!(count, N, "{ctx}");
                assert!(first.wait().unwrap().success(), "{ctx}");
            });
        },
    );
}

/// An end converted into an `OwnedFd` (or a raw descriptor) is blocking again; one taken from
/// an `OwnedFd` is made non-blocking, and still reads.
#[test]
fn converted_ends_are_blocking_again() {
    common::watchdog(20, "converted_ends_are_blocking_again", || {
        in_task_and_thread(|ctx| {
            let mut child = Command::new("echo")
                .arg("through")
                .stdout(Stdio::piped())
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let stdin = child.stdin.take().unwrap();
            assert!(is_nonblocking(&stdin), "{ctx}");
            let fd = OwnedFd::from(stdin);
            assert!(!is_nonblocking(&fd), "{ctx}");

            let out = OwnedFd::from(child.stdout.take().unwrap());
            assert!(!is_nonblocking(&out), "{ctx}");
            let mut out = bobine::process::ChildStdout::from(out);
            assert!(is_nonblocking(&out), "{ctx}");
            let mut s = String::new();
            out.read_to_string(&mut s).unwrap();
            assert_eq!(s, "through\n", "{ctx}");
            assert!(child.wait().unwrap().success(), "{ctx}");
        });
    });
}

/// Dropping a `Child` neither kills nor reaps it, as in std: it runs to its own end and is
/// then reaped by whoever waits for its pid.
#[test]
fn dropping_a_child_neither_kills_nor_reaps_it() {
    common::watchdog(20, "dropping_a_child_neither_kills_nor_reaps_it", || {
        in_task_and_thread(|ctx| {
            let child = Command::new("sh")
                .args(["-c", "sleep 0.2; exit 5"])
                .spawn()
                .unwrap();
            let pid = child.id() as i32;
            drop(child);
            let (reaped, status) = bobine::ocaml::thread::wait_pid(pid);
            assert_eq!(reaped, pid, "{ctx}");
            assert_eq!(
                status,
                bobine::ocaml::thread::ProcessStatus::WEXITED(5),
                "{ctx}"
            );
        });
    });
}

/// `wait` closes the child's standard input first, as std's does: `cat` then ends.
#[test]
fn wait_closes_stdin_first() {
    common::watchdog(20, "wait_closes_stdin_first", || {
        in_task_and_thread(|ctx| {
            let mut child = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
            assert!(child.stdin.is_some());
            assert!(child.wait().unwrap().success(), "{ctx}");
            assert!(child.stdin.is_none(), "{ctx}");
        });
    });
}

/// Writing to a child that has ended gives std's error (`BrokenPipe`).
#[test]
fn write_to_an_ended_child_is_a_broken_pipe() {
    common::watchdog(20, "write_to_an_ended_child_is_a_broken_pipe", || {
        in_task_and_thread(|ctx| {
            let mut std_child = std::process::Command::new("true")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let mut std_in = std_child.stdin.take().unwrap();
            std_child.wait().unwrap();
            let std_err = std_in.write_all(b"x").unwrap_err();

            let mut child = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            child.wait().unwrap();
            let err = stdin.write_all(b"x").unwrap_err();
            assert_eq!(err.kind(), std_err.kind(), "{ctx}");
            assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{ctx}");
        });
    });
}

/// The builder's getters and settings: arguments, environment (set, removed, cleared),
/// working directory; the std command converts both ways.
#[test]
fn command_settings_reach_the_child() {
    common::watchdog(20, "command_settings_reach_the_child", || {
        in_task_and_thread(|ctx| {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", "echo \"$A:$B:$HOME:$(pwd)\""])
                .env_clear()
                .envs([("A", "1"), ("B", "2")])
                .env_remove("B")
                .current_dir("/");
            assert_eq!(cmd.get_program(), "/bin/sh");
            assert_eq!(cmd.get_args().count(), 2);
            assert_eq!(cmd.get_current_dir(), Some(std::path::Path::new("/")));
            let mut std_cmd = std::process::Command::new("/bin/sh");
            std_cmd
                .args(["-c", "echo \"$A:$B:$HOME:$(pwd)\""])
                .env_clear()
                .envs([("A", "1"), ("B", "2")])
                .env_remove("B")
                .current_dir("/");
            let envs: Vec<_> = cmd.get_envs().collect();
            assert_eq!(envs, std_cmd.get_envs().collect::<Vec<_>>(), "{ctx}");
            assert!(envs.contains(&("A".as_ref(), Some("1".as_ref()))), "{ctx}");
            let out = cmd.output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "1:::/\n", "{ctx}");
            assert_eq!(out, std_cmd.output().unwrap(), "{ctx}: as std's");

            // Through std and back, then `spawn` after `output`: streams inherited again,
            // so nothing is piped.
            let mut std_cmd = std::process::Command::new("sh");
            std_cmd.args(["-c", "exit 2"]);
            let mut cmd = Command::from(std_cmd);
            assert_eq!(cmd.output().unwrap().status.code(), Some(2), "{ctx}");
            let mut child = cmd.spawn().unwrap();
            assert!(child.stdin.is_none() && child.stdout.is_none() && child.stderr.is_none());
            assert_eq!(child.wait().unwrap().code(), Some(2), "{ctx}");
            assert_eq!(cmd.into_std().get_program(), "sh", "{ctx}");
        });
    });
}

/// 50 tasks over two domains each run `true` and wait for it: every wait ends (no wake-up is
/// lost), with success.
#[test]
fn fifty_tasks_over_two_domains_run_true() {
    common::watchdog(60, "fifty_tasks_over_two_domains_run_true", || {
        let ok = bobine::Builder::new().domains(2).run(|| {
            let done = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let done = done.clone();
                    thread::spawn(move || {
                        let st = Command::new("true").status().unwrap();
                        if st.success() {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.join().unwrap();
            }
            done.load(Ordering::SeqCst)
        });
        assert_eq!(ok, 50);
    });
}

/// On a single domain, a task waiting for `sleep 1` (through `status`, then through a pipe
/// read and `output`) does not block the domain: a second task keeps counting meanwhile.
#[test]
fn the_domain_runs_other_tasks_while_one_waits_for_a_child() {
    common::watchdog(
        30,
        "the_domain_runs_other_tasks_while_one_waits_for_a_child",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let ticks = Arc::new(AtomicUsize::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let ticker = spawn_ticker(ticks.clone(), stop.clone());
                thread::sleep(Duration::from_millis(20));

                let before = ticks.load(Ordering::SeqCst);
                let t = Instant::now();
                assert!(Command::new("sleep").arg("1").status().unwrap().success());
                assert!(t.elapsed() >= Duration::from_millis(900));
                let during_wait = ticks.load(Ordering::SeqCst) - before;

                let before = ticks.load(Ordering::SeqCst);
                let out = Command::new("sh")
                    .args(["-c", "sleep 1; echo late"])
                    .output()
                    .unwrap();
                assert_eq!(out.stdout, b"late\n");
                let during_read = ticks.load(Ordering::SeqCst) - before;

                stop.store(true, Ordering::SeqCst);
                ticker.join().unwrap();
                // About 500 each at 2 ms a tick; a blocked domain would give 0 or 1.
                assert!(during_wait >= 20, "{during_wait} ticks during the wait");
                assert!(during_read >= 20, "{during_read} ticks during the read");
            });
        },
    );
}

/// A child spawned in one task can be waited for from a task on another domain.
#[test]
fn a_child_is_waited_for_from_another_domain() {
    common::watchdog(20, "a_child_is_waited_for_from_another_domain", || {
        common::tasks::with_domains(2, |domains| {
            let child: Child = Command::new("sh")
                .args(["-c", "sleep 0.2; exit 9"])
                .spawn()
                .unwrap();
            let waiter = domains.spawn_on(1, move || {
                let mut child = child;
                child.wait().unwrap().code()
            });
            assert_eq!(waiter.join().unwrap(), Some(9));
        });
    });
}
