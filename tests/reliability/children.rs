//! Rows whose outcome is the end of a process: a stack overflow (reported, then abort), a
//! shutdown with tasks still blocked (never aborts, never hangs, reports what cannot finish by
//! name), a panic while a destructor must block (fails softly). Each runs in a child process
//! whose exit status and stderr are checked against the documented texts (README, "Guarantees";
//! `src/stack/overflow.rs`; `src/sched/shutdown.rs`).
//!
//! The deadlocked-program row ([`reliability_deadlock_reported`]): a child whose tasks all
//! block on each other (a cycle of three tasks over channels and a lock, on two domains),
//! checked for `deadlock: all tasks are blocked` and the task dump, with how long the report
//! took from the moment the cycle closed (the detector's own tests are in `tests/diag.rs`).

use std::io::{BufWriter, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bobine::net::TcpListener;
use bobine::thread;

use crate::common::panics::payload_text;
use crate::common::tasks::{DropCounter, LockOnDrop, RecvOnDrop};
use crate::{CHILD_ENV, common, in_child, test_path};

const HOUR: Duration = Duration::from_secs(3600);

/// Which case a child of [`reliability_stack_overflow_reported`] runs.
const CASE_ENV: &str = "BOBINE_RELIABILITY_CASE";

/// Recurses until the stack runs out: each frame holds 1 KiB the optimiser cannot drop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[depth as usize % 1024] = depth as u8;
    std::hint::black_box(&mut frame);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[(depth as usize * 7) % 1024])
}

/// The child body of the overflow test: a task (named `soak-deep` with a 128 KiB stack, or
/// unnamed with the runtime's 64 KiB default) recurses without bound on domain 1 or 0 while
/// other tasks run; it prints its id first.
fn overflow_child(case: &str) {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid rlimit; lowering our own core limit is always allowed.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    let named = case == "named";
    bobine::Builder::new()
        .domains(2)
        .stack_size(64 * 1024)
        .run(move || {
            let others: Vec<_> = (0..8)
                .map(|_| {
                    thread::spawn(|| {
                        for _ in 0..1000 {
                            thread::sleep(Duration::from_millis(1));
                        }
                    })
                })
                .collect();
            let body = || {
                thread::yield_now();
                eprintln!("child: id {}", thread::current().id().as_u64());
                recurse(0)
            };
            let deep = if named {
                thread::Builder::new()
                    .name("soak-deep".into())
                    .stack_size(128 * 1024)
                    .spawn(body)
                    .unwrap()
            } else {
                thread::spawn(body)
            };
            let _ = deep.join();
            for h in others {
                let _ = h.join();
            }
        });
    eprintln!("child: the overflowing task returned");
}

/// A task that overflows its stack is reported with its name (or `<unnamed>`), its id and its
/// stack size, then the process aborts (SIGABRT, never a bare SIGSEGV): a named task with a
/// 128 KiB stack, and an unnamed one with the runtime's 64 KiB default, beside other tasks.
#[test]
fn reliability_stack_overflow_reported() {
    const NAME: &str = "reliability_stack_overflow_reported";
    let name = &test_path(module_path!(), NAME);
    if in_child(name) {
        overflow_child(&std::env::var(CASE_ENV).unwrap());
        return;
    }
    common::watchdog(60, NAME, || {
        for (case, task, kib) in [("named", "soak-deep", 128), ("unnamed", "<unnamed>", 64)] {
            let (out, killed) = common::child::run_within(
                name,
                &[(CHILD_ENV, name), (CASE_ENV, case), ("RUST_BACKTRACE", "0")],
                Duration::from_secs(30),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!killed, "{case}: the child hung\n{stderr}");
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGABRT),
                "{case}: the child must abort (SIGABRT) after the report: {:?}\nstdout:\n{}\nstderr:\n{stderr}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
            let id = stderr
                .lines()
                .find_map(|l| l.strip_prefix("child: id "))
                .unwrap_or_else(|| panic!("{case}: the task did not print its id\n{stderr}"));
            let report = format!("task '{task}' (id {id}) has overflowed its stack of {kib} KiB");
            assert!(
                stderr.contains(&report),
                "{case}: expected '{report}' in\n{stderr}"
            );
            assert!(
                stderr.contains("fatal runtime error: stack overflow, aborting"),
                "{case}: {stderr}"
            );
            eprintln!("{case}: {report}");
        }
    });
}

/// Sleeps for an hour in its destructor: a soft wait the shutdown gives up.
struct SleepOnDrop;

impl Drop for SleepOnDrop {
    fn drop(&mut self) {
        thread::sleep(HOUR);
    }
}

/// Joins its task when dropped.
struct JoinOnDrop(Option<thread::JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        let _ = self.0.take().unwrap().join();
    }
}

/// Tasks blocked on their own when the main task returns (counted by their destructors).
const BLOCKED: usize = 100;

/// Tasks taking turns at a shared receiver behind a mutex when the main task returns.
const HANDOVER: usize = 10;

/// The child body of the shutdown test.
fn shutdown_child() {
    static HELD: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        std::mem::forget(HELD.lock().unwrap());
        held_tx.send(()).unwrap();
    });
    held_rx.recv().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let handed = Arc::new(AtomicUsize::new(0));
    let (d, h) = (dropped.clone(), handed.clone());
    bobine::Builder::new().domains(2).run(move || {
        let named = |name: &str| thread::Builder::new().name(name.into());
        // Ordinary waits on things that never come: unwound, their destructors run.
        for i in 0..BLOCKED {
            let d = d.clone();
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            std::mem::forget(tx);
            drop(thread::spawn(move || {
                let _c = DropCounter(d);
                if i % 2 == 0 {
                    let _ = rx.recv();
                } else {
                    thread::sleep(HOUR);
                }
            }));
        }
        // Waiters for a mutex whose holder waits for a message: as each is stopped, the mutex
        // may be handed to the next, which keeps it and is stopped at its next wait, the
        // receive (README: a stop never loses a hand-over); if a task of its domain is stuck in
        // the middle of an unwind by then (below), whether it unwinds cannot be told, and it
        // is abandoned with a report instead (README, "Deliberate differences").
        let (tx, rx) = bobine::sync::mpsc::channel::<()>();
        std::mem::forget(tx);
        let rx = Arc::new(bobine::sync::Mutex::new(rx));
        for i in 0..HANDOVER {
            let (h, rx) = (h.clone(), rx.clone());
            drop(
                named(&format!("soak-handover-{i}"))
                    .spawn(move || {
                        let _c = DropCounter(h);
                        let _ = rx.lock().unwrap().recv();
                    })
                    .unwrap(),
            );
        }
        // A destructor joining a task whose destructor waits for ever, both on this domain,
        // the joiner first (the shutdown looks at a domain's tasks in the order they came):
        // both abandoned, the joiner reported in its join.
        let (handle_tx, handle_rx) = bobine::sync::mpsc::channel::<thread::JoinHandle<()>>();
        drop(thread::spawn_local(move || {
            let _j = JoinOnDrop(Some(handle_rx.recv().unwrap()));
            thread::sleep(HOUR);
        }));
        let (tx3, rx3) = bobine::sync::mpsc::channel::<()>();
        std::mem::forget(tx3);
        let joined = thread::spawn_local(move || {
            let _w = RecvOnDrop(rx3);
            thread::sleep(HOUR);
        });
        handle_tx.send(joined).unwrap();
        // A destructor waiting for a message nobody sends: abandoned, reported by name.
        let (tx2, rx2) = bobine::sync::mpsc::channel::<()>();
        drop(
            named("soak-recv-in-destructor")
                .spawn(move || {
                    let _w = RecvOnDrop(rx2);
                    thread::sleep(HOUR);
                })
                .unwrap(),
        );
        std::mem::forget(tx2);
        // A destructor locking a mutex a plain thread holds for ever: abandoned, reported.
        drop(
            named("soak-lock-in-destructor")
                .spawn(|| {
                    let _l = LockOnDrop(&HELD);
                    thread::sleep(HOUR);
                })
                .unwrap(),
        );
        // A destructor sleeping for an hour: the wait is given up, reported, the task ends.
        let d2 = d.clone();
        drop(
            named("soak-sleep-in-destructor")
                .spawn(move || {
                    let _c = DropCounter(d2);
                    let _s = SleepOnDrop;
                    thread::sleep(HOUR);
                })
                .unwrap(),
        );
        // A destructor flushing to a peer that never reads: the write's wait is given up,
        // reported, the task ends.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = bobine::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        std::mem::forget(server);
        let d = d.clone();
        drop(
            named("soak-flush-in-destructor")
                .spawn(move || {
                    let _c = DropCounter(d);
                    let w = buffered(client, BUFFERED);
                    thread::sleep(HOUR);
                    drop(w);
                })
                .unwrap(),
        );
        thread::sleep(Duration::from_millis(20));
    });
    eprintln!(
        "child: run returned; {} destructors ran; {} of the hand-over group's",
        dropped.load(Ordering::SeqCst),
        handed.load(Ordering::SeqCst)
    );
}

/// `run` returning with tasks still blocked neither aborts nor hangs: tasks blocked in
/// ordinary waits unwind (their destructors run); a destructor's sleep, and a destructor's
/// flush to a peer that never reads, are given up and reported by task name; destructors waiting for what nothing will give (a message, a mutex a
/// plain thread holds for ever) are reported by task name and abandoned; `run` returns.
#[test]
fn reliability_shutdown_never_hangs() {
    const NAME: &str = "reliability_shutdown_never_hangs";
    let name = &test_path(module_path!(), NAME);
    if in_child(name) {
        shutdown_child();
        return;
    }
    let stderr = common::child::run_ok(CHILD_ENV, name, 30);
    assert!(
        stderr.contains(&format!(
            "child: run returned; {} destructors ran;",
            BLOCKED + 2
        )),
        "{stderr}"
    );
    let reported = |task: &str, what: &str| {
        stderr
            .lines()
            .any(|l| l.contains(&format!("task '{task}' (id ")) && l.contains(what))
    };
    // Each of the hand-over group unwound (its destructor ran) or was reported abandoned.
    let unwound: usize = stderr
        .lines()
        .find_map(|l| l.strip_suffix(" of the hand-over group's"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hand-over count:\n{stderr}"));
    let abandoned = (0..HANDOVER)
        .filter(|i| reported(&format!("soak-handover-{i}"), "it is abandoned"))
        .count();
    assert_eq!(
        unwound + abandoned,
        HANDOVER,
        "each of the hand-over group unwinds or is reported abandoned:\n{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l
            .contains("stayed blocked in JoinHandle::join (at tests/reliability/children.rs")
            && l.contains("it is abandoned")),
        "the join in a destructor reported as abandoned, at the join's line:\n{stderr}"
    );
    for task in ["soak-recv-in-destructor", "soak-lock-in-destructor"] {
        assert!(
            reported(task, "it is abandoned"),
            "'{task}' reported as abandoned:\n{stderr}"
        );
    }
    // Each report names the call that waited (`#[track_caller]` down to the park: a line of
    // the test, or of std's `BufWriter` for the flush), never a line of bobine's own code.
    for line in stderr
        .lines()
        .filter(|l| l.starts_with("bobine: while its runtime"))
    {
        assert!(
            !line.contains("(at src/"),
            "a report names the waiting call's location, not bobine's:\n{line}"
        );
    }
    for task in ["soak-sleep-in-destructor", "soak-flush-in-destructor"] {
        assert!(
            reported(task, "that wait is given up"),
            "'{task}' reported as given up:\n{stderr}"
        );
        assert!(
            !reported(task, "abandoned"),
            "'{task}', whose wait was given up, ends; it is not abandoned:\n{stderr}"
        );
    }
}

/// Bytes the panicking writer leaves in its `BufWriter`: more than the socket buffers hold, so
/// the flush in its destructor must block until the reader drains them.
const BUFFERED: usize = 8 << 20;

/// A `BufWriter` over `s` holding `n` bytes (`i % 251` for the i-th), none written yet: they
/// go in small pieces, which it keeps until it is full (a piece as large as its capacity
/// would go straight through).
fn buffered<W: Write>(s: W, n: usize) -> BufWriter<W> {
    let mut w = BufWriter::with_capacity(n, s);
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    for piece in data.chunks(4096) {
        w.write_all(piece).unwrap();
    }
    assert_eq!(w.buffer().len(), n, "every byte still buffered");
    w
}

/// The child body of the destructor test: checks everything and prints `child: ok`.
fn panic_in_destructor_child() {
    static L: bobine::sync::Mutex<u64> = bobine::sync::Mutex::new(0);
    bobine::Builder::new().domains(2).run(|| {
        // A flush during the unwind: writer and reader on the same domain, so the reader runs
        // only if the flush parks the writer.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = bobine::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let writer = thread::spawn_local(move || {
            let _w = buffered(client, BUFFERED);
            panic!("soak: panic with a full buffer");
        });
        let reader = thread::spawn_local(move || {
            let mut got = Vec::new();
            (&server).read_to_end(&mut got).unwrap();
            got
        });
        // A lock during the unwind: held by another task for a while.
        let (locked_tx, locked_rx) = bobine::sync::mpsc::channel();
        let holder = thread::spawn(move || {
            let mut g = L.lock().unwrap();
            locked_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(50));
            *g += 1;
        });
        locked_rx.recv().unwrap();
        struct AddOnDrop;
        impl Drop for AddOnDrop {
            fn drop(&mut self) {
                *L.lock().unwrap_or_else(|e| e.into_inner()) += 10;
            }
        }
        let locker = thread::spawn(|| {
            let _a = AddOnDrop;
            panic!("soak: panic while a lock is held elsewhere");
        });
        let e = writer.join().unwrap_err();
        assert_eq!(payload_text(&*e), "soak: panic with a full buffer");
        let got = reader.join().unwrap();
        assert_eq!(got.len(), BUFFERED, "every buffered byte flushed");
        assert!(
            got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
            "the flushed bytes in order"
        );
        let e = locker.join().unwrap_err();
        assert_eq!(
            payload_text(&*e),
            "soak: panic while a lock is held elsewhere"
        );
        holder.join().unwrap();
        assert_eq!(
            *L.lock().unwrap(),
            11,
            "the destructor got the lock after its holder"
        );
    });
    eprintln!("child: ok");
}

/// A panic whose unwind runs destructors that must block (a `BufWriter<TcpStream>` flushing
/// more than the socket buffers hold, to a reader on the same domain; a lock another task holds
/// for a while) fails softly: the destructors complete (every byte arrives, the lock is taken),
/// `join` gives the panic, the process does not abort.
#[test]
fn reliability_panic_in_blocking_destructor() {
    const NAME: &str = "reliability_panic_in_blocking_destructor";
    let name = &test_path(module_path!(), NAME);
    if in_child(name) {
        common::watchdog(30, NAME, panic_in_destructor_child);
        return;
    }
    let stderr = common::child::run_ok(CHILD_ENV, name, 40);
    assert!(stderr.contains("child: ok"), "{stderr}");
    assert!(!stderr.contains("fatal runtime error"), "{stderr}");
}

/// The deadlocked program's child: three tasks in a cycle (each waits for the next: a lock, a
/// receive, a join), and the main task joining one of them. `run` must panic with the report;
/// the child prints it and how long after the cycle closed it came.
fn deadlock_child() {
    use std::sync::Mutex as StdMutex;
    let closed = Arc::new(StdMutex::new(None::<std::time::Instant>));
    let c = closed.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bobine::Builder::new().domains(2).run(move || {
            let lock = Arc::new(bobine::sync::Mutex::new(()));
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            let held = lock.lock().unwrap();
            let l = lock.clone();
            // Waits for the lock, which the main task keeps until it receives.
            let locker = thread::Builder::new()
                .name("soak-locker".into())
                .spawn(move || drop(l.lock().unwrap()))
                .unwrap();
            // Waits for the locker, then would send.
            let joiner = thread::Builder::new()
                .name("soak-joiner".into())
                .spawn(move || {
                    locker.join().unwrap();
                    tx.send(()).unwrap();
                })
                .unwrap();
            thread::sleep(Duration::from_millis(20));
            *c.lock().unwrap() = Some(std::time::Instant::now());
            // The main task receives (the cycle closes): nobody can send.
            rx.recv().unwrap();
            drop(held);
            joiner.join().unwrap();
        })
    }));
    let closed_at = closed.lock().unwrap().expect("the cycle closed");
    let msg = match outcome {
        Ok(()) => panic!("the deadlocked run returned"),
        Err(p) => payload_text(&*p),
    };
    println!(
        "child: reported {} ms after the cycle closed\n{msg}",
        closed_at.elapsed().as_millis()
    );
}

#[test]
fn reliability_deadlock_reported() {
    const NAME: &str = "reliability_deadlock_reported";
    let name = &test_path(module_path!(), NAME);
    if in_child(name) {
        deadlock_child();
        return;
    }
    let (out, killed) =
        common::child::run_within(name, &[(CHILD_ENV, name)], Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!killed, "the deadlocked child hung:\n{stdout}");
    common::child::assert_ok(name, &out);
    let after = stdout
        .lines()
        // The harness prints the test's name on the same line first.
        .find_map(|l| l.split("child: reported ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no report:\n{stdout}"));
    assert!(
        stdout.contains("deadlock: all tasks are blocked\n"),
        "{stdout}"
    );
    for (task, reason) in [
        ("main", "Receiver::recv"),
        ("soak-locker", "Mutex::lock"),
        ("soak-joiner", "JoinHandle::join"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("task '{task}' (id "))
                    && l.contains(&format!(
                        ": parked in {reason} at tests/reliability/children.rs:"
                    ))),
            "{task} in {reason}:\n{stdout}"
        );
    }
    println!("reliability_deadlock_reported: reported {after} ms after the cycle closed");
}
