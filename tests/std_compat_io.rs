//! The std compatibility program, continued (`tests/sync_std_compat.rs` has its first part,
//! over `sync` and `thread`): one program, written once against the `thread`, `process` and
//! `fs` module names, is instantiated with std's modules and with bobine's, and must give the
//! same results: inside `bobine::run` (1 and 2 domains) and on a plain thread outside any
//! runtime (tasks then run on the global runtime).
//!
//! It covers `thread::park`/`park_timeout`/`Thread::unpark` (a ping-pong on the token alone),
//! child processes (output, exit codes, pipes both ways, kill, a missing program) and files
//! (whole-file calls, `File` with seeks, directories, errors).

mod common;

use std::io::ErrorKind;
use std::path::PathBuf;

/// What the program observed; std's run and bobine's runs must agree on every field.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    /// Rounds of the park/unpark ping-pong that completed, and whether a token given before
    /// `park` let it return at once (twice in a row: `unpark` twice gives one token).
    park: (u64, bool),
    /// `sh -c` with output on both streams and an exit code: stdout, stderr, code.
    output: (String, String, Option<i32>),
    /// Bytes written to `cat`'s stdin and read back from its stdout, compared.
    cat: (usize, bool),
    /// `status()` of `true` and of `false`.
    statuses: (bool, bool),
    /// `try_wait` of a running `sleep`, then the signal that `kill` ended it with.
    killed: (bool, Option<i32>),
    /// The error kind of spawning a program that does not exist.
    missing: ErrorKind,
    /// Files: what was read back whole, the file's length, the `File` round trip after seeks,
    /// the directory listing (sorted), and the error kind of reading a missing file.
    files: (String, u64, Vec<u8>, Vec<String>, ErrorKind),
}

const ROUNDS: u64 = 200;
const CAT_BYTES: usize = 256 * 1024;

fn expected() -> Summary {
    Summary {
        park: (ROUNDS, true),
        output: ("out\n".into(), "err\n".into(), Some(3)),
        cat: (CAT_BYTES, true),
        statuses: (true, false),
        killed: (true, Some(libc::SIGKILL)),
        missing: ErrorKind::NotFound,
        files: (
            "hello, file".into(),
            11,
            b"HELLO, file!".to_vec(),
            vec!["a.txt".into(), "b.txt".into(), "sub".into()],
            ErrorKind::NotFound,
        ),
    }
}

/// A fresh directory for one run of the program.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bobine-std-compat-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The program, over the module paths `$thread`, `$process` and `$fs` (std's or bobine's).
macro_rules! program {
    ($name:ident, $thread:path, $process:path, $fs:path) => {
        mod $name {
            use std::io::{Read, Seek, SeekFrom, Write};
            use std::os::unix::process::ExitStatusExt;
            use std::path::Path;
            use std::sync::Arc;
            use std::sync::atomic::{AtomicU64, Ordering};

            use super::*;
            use $fs as fs;
            use $process as process;
            use $thread as thread;

            pub fn run(dir: &Path) -> Summary {
                Summary {
                    park: (ping_pong(), token_before_park()),
                    output: output(),
                    cat: cat(),
                    statuses: (
                        process::Command::new("true").status().unwrap().success(),
                        process::Command::new("false").status().unwrap().success(),
                    ),
                    killed: killed(),
                    missing: process::Command::new("/nonexistent/bobine-no-such-program")
                        .spawn()
                        .map(|_| ())
                        .unwrap_err()
                        .kind(),
                    files: files(dir),
                }
            }

            /// Two threads take turns through a shared counter, each parking until its turn
            /// and unparking the other: only the token carries the wake-ups.
            fn ping_pong() -> u64 {
                let turn = Arc::new(AtomicU64::new(0));
                let main = thread::current();
                let other = {
                    let turn = turn.clone();
                    thread::spawn(move || {
                        for round in 0..ROUNDS {
                            while turn.load(Ordering::SeqCst) != 2 * round + 1 {
                                thread::park();
                            }
                            turn.store(2 * round + 2, Ordering::SeqCst);
                            main.unpark();
                        }
                    })
                };
                let mut done = 0;
                for round in 0..ROUNDS {
                    turn.store(2 * round + 1, Ordering::SeqCst);
                    other.thread().unpark();
                    while turn.load(Ordering::SeqCst) != 2 * round + 2 {
                        thread::park_timeout(std::time::Duration::from_secs(1));
                    }
                    done += 1;
                }
                other.join().unwrap();
                done
            }

            /// `unpark` before `park` makes `park` return at once; a second `unpark` adds no
            /// second token, so the next `park_timeout` waits out its (short) timeout.
            fn token_before_park() -> bool {
                let me = thread::current();
                me.unpark();
                me.unpark();
                thread::park();
                thread::park_timeout(std::time::Duration::from_millis(10));
                true
            }

            fn output() -> (String, String, Option<i32>) {
                let out = process::Command::new("sh")
                    .args(["-c", "echo out; echo err >&2; exit 3"])
                    .output()
                    .unwrap();
                (
                    String::from_utf8(out.stdout).unwrap(),
                    String::from_utf8(out.stderr).unwrap(),
                    out.status.code(),
                )
            }

            /// More than a pipe's buffer through `cat`, written by another thread while this
            /// one reads.
            fn cat() -> (usize, bool) {
                let mut child = process::Command::new("cat")
                    .stdin(process::Stdio::piped())
                    .stdout(process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                let data: Vec<u8> = (0..CAT_BYTES).map(|i| (i % 251) as u8).collect();
                let sent = data.clone();
                let writer = thread::spawn(move || stdin.write_all(&sent).unwrap());
                let mut back = Vec::new();
                child.stdout.take().unwrap().read_to_end(&mut back).unwrap();
                writer.join().unwrap();
                assert!(child.wait().unwrap().success());
                (back.len(), back == data)
            }

            fn killed() -> (bool, Option<i32>) {
                let mut child = process::Command::new("sleep").arg("10").spawn().unwrap();
                let running = child.try_wait().unwrap().is_none();
                child.kill().unwrap();
                (running, child.wait().unwrap().signal())
            }

            fn files(dir: &Path) -> (String, u64, Vec<u8>, Vec<String>, ErrorKind) {
                let a = dir.join("a.txt");
                fs::write(&a, "hello, file").unwrap();
                let whole = fs::read_to_string(&a).unwrap();
                let len = fs::metadata(&a).unwrap().len();

                let b = dir.join("b.txt");
                fs::copy(&a, &b).unwrap();
                let mut f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&b)
                    .unwrap();
                f.write_all(b"HELLO").unwrap();
                f.seek(SeekFrom::End(0)).unwrap();
                f.write_all(b"!").unwrap();
                f.sync_all().unwrap();
                f.seek(SeekFrom::Start(0)).unwrap();
                let mut back = Vec::new();
                f.read_to_end(&mut back).unwrap();
                drop(f);

                fs::create_dir_all(dir.join("sub").join("deeper")).unwrap();
                fs::write(dir.join("gone.txt"), b"x").unwrap();
                fs::rename(dir.join("gone.txt"), dir.join("sub").join("moved.txt")).unwrap();
                fs::remove_file(dir.join("sub").join("moved.txt")).unwrap();
                let mut names: Vec<String> = fs::read_dir(dir)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                names.sort();

                let missing = fs::read(dir.join("missing")).unwrap_err().kind();
                (whole, len, back, names, missing)
            }
        }
    };
}

program!(std_program, std::thread, std::process, std::fs);
program!(bobine_program, bobine::thread, bobine::process, bobine::fs);

#[test]
fn std_program_gives_the_reference_results() {
    common::watchdog(60, "std_program_gives_the_reference_results", || {
        let dir = scratch("std");
        assert_eq!(std_program::run(&dir), expected());
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn bobine_program_matches_std_inside_run_on_one_and_two_domains() {
    common::watchdog(120, "bobine_program_matches_std_inside_run", || {
        for domains in [1, 2] {
            let dir = scratch(&format!("run{domains}"));
            let got = bobine::Builder::new()
                .domains(domains)
                .run(|| bobine_program::run(&dir));
            assert_eq!(got, expected(), "{domains} domain(s)");
            std::fs::remove_dir_all(dir).unwrap();
        }
    });
}

#[test]
fn bobine_program_matches_std_outside_any_runtime() {
    common::watchdog(60, "bobine_program_matches_std_outside_any_runtime", || {
        let dir = scratch("plain");
        assert_eq!(bobine_program::run(&dir), expected());
        std::fs::remove_dir_all(dir).unwrap();
    });
}
