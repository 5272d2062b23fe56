//! The OCaml `Thread.wait_*` functions (`bobine::ocaml::thread`): timed waits, waits for
//! readiness, `wait_pid` on exited, killed and foreign processes, OCaml's `Unix_error` texts,
//! and the domain running other threads while one waits.

mod common;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::ocaml::thread::{
    ProcessStatus, wait_pid, wait_read, wait_timed_read, wait_timed_write, wait_write,
};
use bobine::thread;
use common::fds::pipe;
use common::panics::panic_text;
use common::tasks::spawn_ticker;

/// Set (to the test's name) in a child process's environment to make that test run its child
/// body.
const CHILD_ENV: &str = "BOBINE_OCAML_WAIT_CHILD";

/// Starts `sh -c script` and returns its pid. The test reaps it with `wait_pid`: std's `Child`
/// is dropped without waiting.
#[allow(clippy::zombie_processes)] // reaped by `wait_pid`
fn spawn_sh(script: &str) -> i32 {
    let child = Command::new("sh").args(["-c", script]).spawn().unwrap();
    child.id() as i32
}

/// Timed waits: false after the delay on a descriptor that stays quiet (or full), true at once
/// when it is ready, true when it becomes ready during the wait.
#[test]
fn timed_waits_give_false_after_the_delay_and_true_when_ready() {
    common::watchdog(
        20,
        "timed_waits_give_false_after_the_delay_and_true_when_ready",
        || {
            bobine::run(|| {
                let (r, w) = pipe();
                let (rfd, wfd) = (r.as_raw_fd(), w.as_raw_fd());

                let t = Instant::now();
                assert!(!wait_timed_read(rfd, 0.1));
                let took = t.elapsed();
                assert!(took >= Duration::from_millis(100), "{took:?}");
                assert!(took < Duration::from_secs(5), "{took:?}");
                assert!(wait_timed_write(wfd, 5.0), "an empty pipe is writable");
                assert!(!wait_timed_read(rfd, 0.0), "a zero delay polls");
                assert!(!wait_timed_read(rfd, -1.0), "a negative delay polls");

                let mut wfile = std::fs::File::from(w);
                let writer = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(30));
                    wfile.write_all(b"x").unwrap();
                    wfile
                });
                let t = Instant::now();
                assert!(wait_timed_read(rfd, 5.0), "data arrived during the wait");
                assert!(t.elapsed() < Duration::from_secs(5));
                let mut wfile = writer.join().unwrap();
                assert!(
                    wait_timed_read(rfd, 5.0),
                    "still readable: nothing was consumed"
                );

                // Fill the pipe: then writing times out, and draining it makes it writable.
                let wfd = wfile.as_raw_fd();
                // SAFETY: F_SETFL with O_NONBLOCK on our write end.
                unsafe { libc::fcntl(wfd, libc::F_SETFL, libc::O_NONBLOCK) };
                let chunk = [0u8; 4096];
                let mut full = false;
                for _ in 0..10_000 {
                    match wfile.write(&chunk) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            full = true;
                            break;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                assert!(full, "the pipe never filled up");
                let t = Instant::now();
                assert!(!wait_timed_write(wfd, 0.1));
                assert!(t.elapsed() >= Duration::from_millis(100));
                let mut rfile = std::fs::File::from(r);
                let drainer = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(30));
                    let mut buf = vec![0u8; 1 << 16];
                    let n = rfile.read(&mut buf).unwrap();
                    assert!(n > 0);
                    rfile
                });
                assert!(
                    wait_timed_write(wfd, 5.0),
                    "the pipe was drained during the wait"
                );
                drop(drainer.join().unwrap());
                drop(wfile);
            });
        },
    );
}

/// `wait_read` / `wait_write` return once the descriptor is ready: at once, or when it
/// becomes ready; end of file counts as readable.
#[test]
fn wait_read_and_wait_write_return_when_ready() {
    common::watchdog(10, "wait_read_and_wait_write_return_when_ready", || {
        bobine::run(|| {
            let (r, w) = pipe();
            let rfd = r.as_raw_fd();
            wait_write(w.as_raw_fd());
            let mut wfile = std::fs::File::from(w);
            let writer = thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                wfile.write_all(b"y").unwrap();
                wfile
            });
            wait_read(rfd);
            let wfile = writer.join().unwrap();
            let mut rfile = std::fs::File::from(r);
            let mut one = [0u8; 1];
            rfile.read_exact(&mut one).unwrap();
            assert_eq!(&one, b"y");
            let closer = thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                drop(wfile);
            });
            wait_read(rfile.as_raw_fd()); // end of file
            closer.join().unwrap();
            assert_eq!(rfile.read(&mut one).unwrap(), 0);
        });
    });
}

/// A thread waiting (`wait_read`, `wait_timed_read`, `wait_pid`) does not block its domain: a
/// ticker thread of the same (only) domain keeps ticking.
#[test]
fn other_threads_run_while_one_waits() {
    common::watchdog(15, "other_threads_run_while_one_waits", || {
        bobine::Builder::new().domains(1).run(|| {
            let ticks = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let ticker = spawn_ticker(ticks.clone(), stop.clone());
            let (r, w) = pipe();

            let t0 = ticks.load(Ordering::SeqCst);
            assert!(!wait_timed_read(r.as_raw_fd(), 0.2));
            assert!(
                ticks.load(Ordering::SeqCst) >= t0 + 5,
                "the ticker did not run during wait_timed_read"
            );

            let mut wfile = std::fs::File::from(w);
            let t = ticks.clone();
            let writer = thread::spawn(move || {
                // Writes once the ticker has run while the main thread waits.
                let t0 = t.load(Ordering::SeqCst);
                while t.load(Ordering::SeqCst) < t0 + 5 {
                    thread::sleep(Duration::from_millis(1));
                }
                wfile.write_all(b"z").unwrap();
                wfile
            });
            wait_read(r.as_raw_fd());
            drop(writer.join().unwrap());

            let mut child = Command::new("sh")
                .args(["-c", "sleep 0.2; exit 4"])
                .spawn()
                .unwrap();
            let t0 = ticks.load(Ordering::SeqCst);
            let pid = child.id() as i32;
            assert_eq!(wait_pid(pid), (pid, ProcessStatus::WEXITED(4)));
            assert!(
                ticks.load(Ordering::SeqCst) >= t0 + 5,
                "the ticker did not run during wait_pid"
            );
            // Reaped already: std's own wait now fails with ECHILD.
            assert!(child.try_wait().is_err());

            stop.store(true, Ordering::SeqCst);
            ticker.join().unwrap();
        });
    });
}

/// `wait_pid` gives `(pid, WEXITED(code))` for a child that exits, also when it has already
/// exited, and `(pid, WSIGNALED(9))` for a child killed by `SIGKILL`.
#[test]
fn wait_pid_reports_exit_codes_and_signals() {
    common::watchdog(15, "wait_pid_reports_exit_codes_and_signals", || {
        bobine::run(|| {
            let pid = spawn_sh("exit 3");
            assert_eq!(wait_pid(pid), (pid, ProcessStatus::WEXITED(3)));

            // Exited (a zombie) before the wait starts.
            let pid = spawn_sh("exit 0");
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(wait_pid(pid), (pid, ProcessStatus::WEXITED(0)));

            // Killed while the thread waits.
            let pid = spawn_sh("exec sleep 30");
            let killer = thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                // SAFETY: kill(2) on our own child, which has not been reaped.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            });
            assert_eq!(
                wait_pid(pid),
                (pid, ProcessStatus::WSIGNALED(libc::SIGKILL))
            );
            assert_eq!(
                ProcessStatus::WSIGNALED(libc::SIGKILL),
                ProcessStatus::WSIGNALED(9)
            );
            killer.join().unwrap();

            // Several children waited for by several threads at once.
            let waiters: Vec<_> = (0..4)
                .map(|code| {
                    let pid = spawn_sh(&format!("sleep 0.05; exit {code}"));
                    thread::spawn(move || (pid, wait_pid(pid), code))
                })
                .collect();
            for w in waiters {
                let (pid, got, code) = w.join().unwrap();
                assert_eq!(got, (pid, ProcessStatus::WEXITED(code)));
            }
        });
    });
}

/// `wait_pid` of a process that does not exist raises
/// `Unix.Unix_error(Unix.ECHILD, "waitpid", "")`.
#[test]
fn wait_pid_on_a_missing_process_raises_echild() {
    common::watchdog(10, "wait_pid_on_a_missing_process_raises_echild", || {
        bobine::run(|| {
            // A child reaped already: its pid names no child of ours (nor, most likely, any
            // process).
            let mut child = Command::new("true").spawn().unwrap();
            let pid = child.id() as i32;
            child.wait().unwrap();
            assert_eq!(
                panic_text(|| {
                    wait_pid(pid);
                }),
                "Unix.Unix_error(Unix.ECHILD, \"waitpid\", \"\")"
            );
        });
    });
}

/// `wait_pid` of a live process that is not our child (our own process, our parent) raises
/// `Unix.Unix_error(Unix.ECHILD, "waitpid", "")` at once, as `waitpid(2)` does. Checked in a
/// child process, killed if it hangs.
#[test]
fn wait_pid_on_a_live_non_child_raises_echild() {
    const NAME: &str = "wait_pid_on_a_live_non_child_raises_echild";
    if common::child::is_child_of(CHILD_ENV, NAME) {
        bobine::run(|| {
            // SAFETY: getppid(2) has no preconditions.
            let parent = unsafe { libc::getppid() };
            for pid in [std::process::id() as i32, parent] {
                let text = panic_text(|| {
                    wait_pid(pid);
                });
                println!("wait_pid({pid}): {text}");
                assert_eq!(text, "Unix.Unix_error(Unix.ECHILD, \"waitpid\", \"\")");
            }
        });
        return;
    }
    common::watchdog(20, NAME, || {
        let (out, killed) = common::child::run_within(
            NAME,
            &[(CHILD_ENV, NAME), ("RUST_BACKTRACE", "0")],
            Duration::from_secs(5),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !killed,
            "wait_pid on a live process that is not a child hung (the child test was killed \
             after 5 s)\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            out.status.success(),
            "{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    });
}

/// `wait_pid(-1)` (any child) and `wait_pid(0)` (any child of the process group) collect a
/// child. In a child process, so that no other test's children are reaped.
#[test]
fn wait_pid_for_any_child() {
    const NAME: &str = "wait_pid_for_any_child";
    if common::child::is_child_of(CHILD_ENV, NAME) {
        bobine::run(|| {
            let pid = spawn_sh("exit 5");
            assert_eq!(wait_pid(-1), (pid, ProcessStatus::WEXITED(5)));
            let pid = spawn_sh("exit 6");
            assert_eq!(wait_pid(0), (pid, ProcessStatus::WEXITED(6)));
            assert_eq!(
                panic_text(|| {
                    wait_pid(-1);
                }),
                "Unix.Unix_error(Unix.ECHILD, \"waitpid\", \"\")",
                "no child left"
            );
        });
        return;
    }
    common::watchdog(20, NAME, || {
        let (out, killed) = common::child::run_within(
            NAME,
            &[(CHILD_ENV, NAME), ("RUST_BACKTRACE", "0")],
            Duration::from_secs(10),
        );
        assert!(!killed, "the child test hung");
        assert!(
            out.status.success(),
            "{:?}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Waiting on a descriptor that is not open raises `Unix.Unix_error(Unix.EBADF, "select", "")`,
/// for every wait function, in a task and on a plain thread.
#[test]
fn waits_on_a_bad_descriptor_raise_ebadf() {
    common::watchdog(10, "waits_on_a_bad_descriptor_raise_ebadf", || {
        fn check() {
            const BAD: RawFd = 1_000_000;
            let expected = "Unix.Unix_error(Unix.EBADF, \"select\", \"\")";
            assert_eq!(panic_text(|| wait_read(BAD)), expected);
            assert_eq!(panic_text(|| wait_write(BAD)), expected);
            assert_eq!(
                panic_text(|| {
                    wait_timed_read(BAD, 1.0);
                }),
                expected
            );
            assert_eq!(
                panic_text(|| {
                    wait_timed_write(BAD, 1.0);
                }),
                expected
            );
            assert_eq!(panic_text(|| wait_read(-1)), expected);
        }
        bobine::run(check);
        std::thread::spawn(check).join().unwrap();
    });
}

/// A descriptor closed behind bobine's back while a thread waits in `wait_read` raises EBADF
/// (within the 100 ms revalidation, not never).
#[test]
fn a_descriptor_closed_during_wait_read_raises_ebadf() {
    common::watchdog(
        10,
        "a_descriptor_closed_during_wait_read_raises_ebadf",
        || {
            bobine::run(|| {
                let (r, _w) = pipe();
                let raw = std::mem::ManuallyDrop::new(r).as_raw_fd(); // closed by hand below
                let waiter = thread::spawn(move || panic_text(|| wait_read(raw)));
                thread::sleep(Duration::from_millis(30));
                // SAFETY: the read end is ours (never dropped: ManuallyDrop) and closed once.
                assert_eq!(unsafe { libc::close(raw) }, 0);
                assert_eq!(
                    waiter.join().unwrap(),
                    "Unix.Unix_error(Unix.EBADF, \"select\", \"\")"
                );
            });
        },
    );
}
