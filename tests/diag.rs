//! Diagnostics (`bobine::diag`): the task dump, and the monitor's reports.
//!
//! The dump is checked in this process. The reports (deadlock, stall, SIGQUIT, a long
//! shutdown) are printed on stderr or end `run`, so each runs in a child process (this binary
//! re-run on one test with `BOBINE_DIAG_CHILD` set to its name) whose output the parent reads.
//! A child runs with one test thread, so the harness's main thread waits for it in a plain
//! `recv` and does not count as a thread that could wake a task (see `bobine::diag`); in this
//! process, with several test threads, no deadlock is ever reported.
//!
//! Each "no false report" case keeps every task of its runtime parked for 1.5 s, longer than
//! the detector needs to report a deadlock (it reports within about a second), with one thing
//! left that will wake them: a timer, a descriptor, a blocking-pool job, a signal, a plain
//! thread.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bobine::diag::{TaskInfo, TaskState};
use bobine::thread;
use common::child;

const CHILD: &str = "BOBINE_DIAG_CHILD";
/// How long a case that must not be reported keeps its tasks parked.
const QUIET: Duration = Duration::from_millis(1500);

fn find<'a>(tasks: &'a [TaskInfo], name: &str) -> &'a TaskInfo {
    tasks
        .iter()
        .find(|t| t.name() == Some(name))
        .unwrap_or_else(|| panic!("no task '{name}' in the dump: {tasks:#?}"))
}

/// The tasks of the caller's runtime (tests run side by side in this process, each with its
/// own runtimes, and a dump shows them all), and the notes that name it.
fn mine(dump: &bobine::diag::TaskDump) -> (Vec<TaskInfo>, Vec<String>) {
    let me = thread::current().id().as_u64().get();
    let rt = dump
        .tasks()
        .iter()
        .find(|t| t.id() == me)
        .expect("the caller is in the dump")
        .runtime();
    let tasks = dump
        .tasks()
        .iter()
        .filter(|t| t.runtime() == rt)
        .cloned()
        .collect();
    let notes = dump
        .notes()
        .iter()
        .filter(|n| n.contains(&format!("of runtime {rt} ")))
        .cloned()
        .collect();
    (tasks, notes)
}

/// Spawns a named task.
fn named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new().name(name.into()).spawn(f).unwrap()
}

/// Yields until `cond` holds (bounded: the watchdog ends a test that hangs).
fn until(cond: impl Fn() -> bool) {
    while !cond() {
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn dump_lists_every_task_with_its_state_reason_place_and_wait() {
    common::watchdog(30, "dump_lists_every_task", || {
        bobine::Builder::new().domains(2).run(|| {
            let lock = Arc::new(bobine::sync::Mutex::new(()));
            let held = lock.lock().unwrap();
            let l2 = lock.clone();
            let locker = named("locker", move || drop(l2.lock().unwrap()));
            let (tx, rx) = bobine::sync::mpsc::channel::<u8>();
            let receiver = named("receiver", move || rx.recv().unwrap());
            let sleeper = named("sleeper", || thread::sleep(Duration::from_secs(30)));
            // Give them time to park (they may run on either domain).
            thread::sleep(Duration::from_millis(50));
            // Queued on this domain, not started before the dump.
            let queued = thread::spawn_local(|| 7);
            let queued_id = queued.thread().id().as_u64().get();
            let dump = bobine::diag::dump();
            let (tasks, notes) = mine(&dump);
            let tasks = &tasks[..];

            let me = find(tasks, "main");
            assert_eq!(me.state(), TaskState::Running);
            assert_eq!(me.domain(), 0);
            for (name, reason) in [
                ("locker", "Mutex::lock"),
                ("receiver", "Receiver::recv"),
                ("sleeper", "sleep"),
            ] {
                let t = find(tasks, name);
                assert_eq!(t.state(), TaskState::Parked, "{t:?}");
                assert_eq!(t.reason(), Some(reason), "{t:?}");
                let at = t.location().expect("a parked task has a location");
                assert!(at.file().ends_with("diag.rs"), "{t:?}");
                assert!(t.waiting() > Duration::ZERO, "{t:?}");
                assert!(t.domain() < 2);
            }
            let q = tasks.iter().find(|t| t.id() == queued_id).unwrap();
            assert_eq!(q.state(), TaskState::Ready);
            assert_eq!(q.location(), None);
            assert_eq!(q.domain(), 0);
            assert!(notes.is_empty(), "{notes:?}");

            let text = dump.to_string();
            assert!(text.starts_with("bobine task dump: "), "{text}");
            assert!(text.contains("task 'locker' (id "), "{text}");
            assert!(
                text.contains(": parked in Mutex::lock at tests/diag.rs:"),
                "{text}"
            );
            assert!(text.contains(": ready (not started yet)"), "{text}");

            drop(held);
            tx.send(1).unwrap();
            locker.join().unwrap();
            assert_eq!(receiver.join().unwrap(), 1);
            sleeper.cancel();
            assert!(sleeper.join().is_err());
            assert_eq!(queued.join().unwrap(), 7);
        })
    });
}

#[test]
fn dump_json_carries_the_same_records() {
    common::watchdog(30, "dump_json", || {
        bobine::Builder::new().domains(1).run(|| {
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            let waiter = named("json \"quoted\"\n", move || rx.recv());
            thread::yield_now();
            let dump = bobine::diag::dump();
            let json: serde_json::Value = serde_json::from_str(&dump.to_json()).unwrap();
            let rt = mine(&dump).0[0].runtime();
            let tasks: Vec<&serde_json::Value> = json["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["runtime"] == rt)
                .collect();
            assert_eq!(tasks.len(), mine(&dump).0.len());
            let w = tasks
                .iter()
                .find(|t| t["name"] == "json \"quoted\"\n")
                .expect("names survive escaping");
            assert_eq!(w["state"], "parked");
            assert_eq!(w["reason"], "Receiver::recv");
            assert_eq!(w["domain"], 0);
            assert!(
                w["location"]
                    .as_str()
                    .unwrap()
                    .starts_with("tests/diag.rs:")
            );
            assert!(w["waiting_us"].as_u64().is_some());
            let main = tasks.iter().find(|t| t["name"] == "main").unwrap();
            assert_eq!(main["state"], "running");
            assert_eq!(main["reason"], serde_json::Value::Null);
            let runtimes = json["runtimes"].as_array().unwrap();
            let this = runtimes.iter().find(|r| r["id"] == rt).unwrap();
            assert_eq!(this["domains"], 1);
            assert!(json["notes"].as_array().is_some());
            drop(tx);
            waiter.join().unwrap().unwrap_err();
        })
    });
}

/// A plain thread may take a dump of a runtime it is not part of.
#[test]
fn dump_from_a_plain_thread() {
    common::watchdog(30, "dump_from_a_plain_thread", || {
        let parked = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicBool::new(false));
        let (p, s) = (parked.clone(), seen.clone());
        let rt = std::thread::spawn(move || {
            bobine::Builder::new().domains(2).run(move || {
                let (tx, rx) = bobine::sync::mpsc::channel::<()>();
                let w = named("dump-me", move || rx.recv());
                thread::sleep(Duration::from_millis(20));
                p.store(true, Ordering::Release);
                until(|| s.load(Ordering::Acquire));
                drop(tx);
                w.join().unwrap().unwrap_err();
            })
        });
        while !parked.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let dump = bobine::diag::dump();
        let t = find(dump.tasks(), "dump-me");
        assert_eq!(t.state(), TaskState::Parked);
        assert_eq!(t.reason(), Some("Receiver::recv"));
        seen.store(true, Ordering::Release);
        rt.join().unwrap();
    });
}

/// A domain kept busy by one task cannot answer: the dump lists the task it runs, read from
/// outside, and says what it could not see.
#[test]
fn dump_of_a_busy_domain_names_the_task_it_runs() {
    common::watchdog(30, "dump_of_a_busy_domain", || {
        common::tasks::with_domains(2, |domains| {
            let stop = Arc::new(AtomicBool::new(false));
            let spinning = Arc::new(AtomicBool::new(false));
            let (st, sp) = (stop.clone(), spinning.clone());
            // On domain 1, so that the main task (domain 0) can end it.
            let hog = domains.spawn_on(1, move || {
                sp.store(true, Ordering::Release);
                while !st.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            });
            let hog_id = hog.thread().id().as_u64().get();
            until(|| spinning.load(Ordering::Acquire));
            let dump = bobine::diag::dump();
            stop.store(true, Ordering::Release);
            hog.join().unwrap();
            let (tasks, notes) = mine(&dump);
            let h = tasks.iter().find(|t| t.id() == hog_id).unwrap();
            assert_eq!(h.state(), TaskState::Running);
            assert_eq!(h.domain(), 1);
            assert_eq!(notes.len(), 1, "{dump}");
            let note = &notes[0];
            assert!(
                note.contains("did not come back to its scheduler")
                    && note.contains(&format!("(id {hog_id})")),
                "{note}"
            );
        })
    });
}

// ---- child runs ----

/// Runs the child role of `test` and returns its stderr, asserting it ended on its own and
/// successfully.
fn child_ok(test: &str, secs: u64) -> String {
    child::run_ok(CHILD, test, secs)
}

/// In the child role of `test`: runs `f` as the case; the parent ignores it otherwise.
fn as_child(test: &str, f: impl FnOnce()) -> bool {
    if child::is_child_of(CHILD, test) {
        f();
        true
    } else {
        false
    }
}

/// The child's side of a deadlock case: runs `f` as a runtime that deadlocks, checks that
/// `run` panicked with the report, and prints the report (for the parent) and how long it took.
fn expect_deadlock(builder: bobine::Builder, f: impl FnOnce() + Send + 'static) {
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.run(f)));
    let payload = outcome.expect_err("a deadlocked runtime's run panics");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .expect("the report is a String");
    assert!(
        msg.starts_with("deadlock: all tasks are blocked\n"),
        "{msg}"
    );
    println!(
        "deadlock-child: reported after {} ms\n{msg}",
        started.elapsed().as_millis()
    );
}

/// Two tasks take two locks in opposite orders.
#[test]
fn deadlock_is_reported_with_the_dump() {
    let test = "deadlock_is_reported_with_the_dump";
    if as_child(test, || {
        expect_deadlock(bobine::Builder::new().domains(2), || {
            let a = Arc::new(bobine::sync::Mutex::new(()));
            let b = Arc::new(bobine::sync::Mutex::new(()));
            let (a2, b2) = (a.clone(), b.clone());
            let _ga = a.lock().unwrap();
            let other = named("other", move || {
                let _gb = b2.lock().unwrap();
                thread::sleep(Duration::from_millis(50));
                let _ga = a2.lock().unwrap();
            });
            thread::sleep(Duration::from_millis(20));
            let _gb = b.lock().unwrap();
            other.join().unwrap();
        })
    }) {
        return;
    }
    let (out, killed) = child::run_within(test, &[(CHILD, test)], Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!killed, "the deadlocked child hung:\n{stdout}");
    child::assert_ok(test, &out);
    assert!(
        stdout.contains("deadlock-child: reported after"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bobine task dump: 2 tasks in 1 runtime"),
        "{stdout}"
    );
    assert!(
        stdout.contains("task 'main' (id ") && stdout.contains("task 'other' (id "),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches(": parked in Mutex::lock at tests/diag.rs:")
            .count(),
        2,
        "{stdout}"
    );
}

/// A plain thread waiting inside a bobine call (a join) with no deadline is part of the
/// deadlock, not a way out of it.
#[test]
fn deadlock_with_a_plain_thread_waiting_in_bobine_is_reported() {
    let test = "deadlock_with_a_plain_thread_waiting_in_bobine_is_reported";
    if as_child(test, || {
        expect_deadlock(bobine::Builder::new().domains(1), || {
            let (_tx, rx) = bobine::sync::mpsc::channel::<()>();
            let stuck = named("stuck", move || rx.recv());
            let outside = std::thread::spawn(move || stuck.join());
            thread::sleep(Duration::from_millis(10));
            let _ = bobine::sync::mpsc::channel::<()>().1.recv();
            drop(outside);
        })
    }) {
        return;
    }
    let stdout = String::from_utf8_lossy(&child::run(test, &[(CHILD, test)]).stdout).into_owned();
    assert!(
        stdout.contains("deadlock-child: reported after"),
        "{stdout}"
    );
    assert!(stdout.contains("task 'stuck' (id "), "{stdout}");
}

/// `deadlock_detection(false)`: the deadlocked child waits for ever (the parent ends it).
#[test]
fn deadlock_detection_off_waits() {
    let test = "deadlock_detection_off_waits";
    if as_child(test, || {
        bobine::Builder::new()
            .domains(1)
            .deadlock_detection(false)
            .run(|| {
                let _ = bobine::sync::mpsc::channel::<()>().1.recv();
            });
    }) {
        return;
    }
    let (out, killed) = child::run_within(test, &[(CHILD, test)], Duration::from_secs(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(killed, "the child ended by itself:\n{stderr}");
    assert!(!stderr.contains("deadlock"), "{stderr}");
}

/// Cases that look deadlocked for 1.5 s, with one thing left that wakes them: the child
/// ends normally and prints no report.
fn not_reported(test: &str) {
    let stderr = child_ok(test, 30);
    assert!(!stderr.contains("deadlock"), "{stderr}");
}

#[test]
fn no_false_report_while_a_timer_can_wake() {
    let test = "no_false_report_while_a_timer_can_wake";
    if as_child(test, || {
        bobine::Builder::new().domains(2).run(|| {
            let lock = Arc::new(bobine::sync::Mutex::new(0));
            let l2 = lock.clone();
            let holder = named("holder", move || {
                let mut g = l2.lock().unwrap();
                thread::sleep(QUIET);
                *g += 1;
            });
            thread::sleep(Duration::from_millis(20));
            *lock.lock().unwrap() += 1;
            holder.join().unwrap();
            assert_eq!(*lock.lock().unwrap(), 2);
        })
    }) {
        return;
    }
    not_reported(test);
}

#[test]
fn no_false_report_while_a_descriptor_can_wake() {
    let test = "no_false_report_while_a_descriptor_can_wake";
    if as_child(test, || {
        bobine::Builder::new().domains(1).run(|| {
            use std::os::fd::AsRawFd;
            // Another process writes to the pipe later; this process has nothing else to do.
            let mut writer = std::process::Command::new("sh")
                .args(["-c", &format!("sleep {}; echo ready", QUIET.as_secs_f64())])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = writer.stdout.take().unwrap();
            bobine::event::readable(out.as_raw_fd()).sync();
            let mut text = String::new();
            out.read_to_string(&mut text).unwrap();
            assert_eq!(text, "ready\n");
            bobine::io::unblock(move || writer.wait()).unwrap();
        })
    }) {
        return;
    }
    not_reported(test);
}

#[test]
fn no_false_report_while_a_pool_job_can_wake() {
    let test = "no_false_report_while_a_pool_job_can_wake";
    if as_child(test, || {
        bobine::Builder::new().domains(1).run(|| {
            let v = bobine::io::unblock(|| {
                std::thread::sleep(QUIET);
                5
            });
            assert_eq!(v, 5);
        })
    }) {
        return;
    }
    not_reported(test);
}

#[test]
fn no_false_report_while_a_signal_can_wake() {
    let test = "no_false_report_while_a_signal_can_wake";
    if as_child(test, || {
        bobine::Builder::new().domains(1).run(|| {
            let pid = std::process::id();
            let usr1 = bobine::event::signal(libc::SIGUSR1);
            // Another process sends the signal later.
            let mut sender = std::process::Command::new("sh")
                .args([
                    "-c",
                    &format!("sleep {}; kill -USR1 {pid}", QUIET.as_secs_f64()),
                ])
                .spawn()
                .unwrap();
            usr1.sync();
            bobine::io::unblock(move || sender.wait()).unwrap();
        })
    }) {
        return;
    }
    not_reported(test);
}

#[test]
fn no_false_report_while_an_outside_thread_can_wake() {
    let test = "no_false_report_while_an_outside_thread_can_wake";
    if as_child(test, || {
        bobine::Builder::new().domains(2).run(|| {
            let (tx, rx) = bobine::sync::mpsc::channel();
            let outside = std::thread::spawn(move || {
                std::thread::sleep(QUIET);
                tx.send(9).unwrap();
            });
            assert_eq!(rx.recv().unwrap(), 9);
            outside.join().unwrap();
        })
    }) {
        return;
    }
    not_reported(test);
}

// ---- stalls, SIGQUIT, long shutdowns ----

/// A blocking call of std and a computation are each reported once, with the task's name,
/// where it resumed, and the system call.
#[test]
fn stall_is_reported_once_per_task() {
    let test = "stall_is_reported_once_per_task";
    if as_child(test, || {
        bobine::Builder::new().domains(2).run(|| {
            // Far longer than the 10 ms bound, so that a loaded machine that keeps the
            // monitor off its core for a while still lets it see them.
            let sleeper = named("blocker", || {
                std::thread::sleep(Duration::from_millis(300));
                thread::yield_now();
                std::thread::sleep(Duration::from_millis(300));
            });
            let spinner = named("spinner", || {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(300) {
                    std::hint::spin_loop();
                }
            });
            sleeper.join().unwrap();
            spinner.join().unwrap();
        })
    }) {
        return;
    }
    let stderr = child_ok(test, 30);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("without parking"))
        .collect();
    let blocker: Vec<&&str> = lines.iter().filter(|l| l.contains("'blocker'")).collect();
    assert_eq!(blocker.len(), 1, "reported once:\n{stderr}");
    assert!(blocker[0].contains("nanosleep"), "{stderr}");
    assert!(
        blocker[0].contains("bobine: task 'blocker' (id "),
        "{stderr}"
    );
    let spinner: Vec<&&str> = lines.iter().filter(|l| l.contains("'spinner'")).collect();
    assert_eq!(spinner.len(), 1, "{stderr}");
    assert!(
        spinner[0].contains("computing (in no system call)"),
        "{stderr}"
    );
}

/// `BOBINE_STALL_MS=0` turns the stall report off (the same child as above).
#[test]
fn stall_report_can_be_turned_off() {
    let test = "stall_is_reported_once_per_task";
    let (out, killed) = child::run_within(
        test,
        &[(CHILD, test), ("BOBINE_STALL_MS", "0")],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!killed, "{stderr}");
    child::assert_ok(test, &out);
    assert!(!stderr.contains("without parking"), "{stderr}");
}

/// A SIGQUIT prints the dump and the process goes on; a handler installed before bobine still
/// runs.
#[test]
fn sigquit_prints_the_dump_and_the_process_goes_on() {
    let test = "sigquit_prints_the_dump_and_the_process_goes_on";
    static PREVIOUS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    extern "C" fn previous(_sig: libc::c_int) {
        PREVIOUS.fetch_add(1, Ordering::SeqCst);
    }
    if as_child(test, || {
        // SAFETY: a zeroed sigaction is plain data; the handler only touches an atomic.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = previous as *const () as usize;
            assert_eq!(
                libc::sigaction(libc::SIGQUIT, &action, std::ptr::null_mut()),
                0
            );
        }
        bobine::Builder::new().domains(2).run(|| {
            let started = Arc::new(AtomicBool::new(false));
            let s = started.clone();
            let waiter = named("quitter", move || {
                s.store(true, Ordering::Release);
                // Waits for the parent to close our stdin (a pool job).
                bobine::io::unblock(|| {
                    let mut rest = Vec::new();
                    std::io::stdin().read_to_end(&mut rest).unwrap();
                })
            });
            // Started, so owned by a domain (a task handed between domains as the dump is
            // taken may be missed).
            until(|| started.load(Ordering::Acquire));
            println!("sigquit-child: ready");
            waiter.join().unwrap();
        });
        println!(
            "sigquit-child: the previous handler ran {} time(s)",
            PREVIOUS.load(Ordering::SeqCst)
        );
    }) {
        return;
    }
    common::watchdog(60, test, || sigquit_parent(test));
}

fn sigquit_parent(test: &str) {
    let mut child = child::command(test, &[(CHILD, test)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("sigquit-child: ready") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "child ended early"
        );
    }
    // SAFETY: kill(2) with a pid we own.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) }, 0);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("bobine: end of the task dump") {
        assert!(Instant::now() < deadline, "no dump:\n{seen}");
        let mut l = String::new();
        assert!(stderr.read_line(&mut l).unwrap() > 0, "no dump:\n{seen}");
        seen.push_str(&l);
    }
    assert!(seen.contains("task 'quitter' (id "), "{seen}");
    assert!(seen.contains("bobine: SIGQUIT"), "{seen}");
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{rest}");
    assert!(
        rest.contains("sigquit-child: the previous handler ran 1 time(s)"),
        "{rest}"
    );
}

/// A runtime that takes long to end prints what it waits for.
#[test]
fn a_long_shutdown_prints_what_it_waits_for() {
    let test = "a_long_shutdown_prints_what_it_waits_for";
    /// Computes for 2 s in its destructor, without parking: nothing can stop that.
    struct Stubborn;
    impl Drop for Stubborn {
        fn drop(&mut self) {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(2) {
                std::hint::spin_loop();
            }
        }
    }
    if as_child(test, || {
        bobine::Builder::new().domains(2).run(|| {
            drop(named("stubborn", move || {
                let _s = Stubborn;
                thread::sleep(Duration::from_secs(3600));
            }));
            thread::sleep(Duration::from_millis(20));
            // Returning stops it: it unwinds, and its destructor keeps its domain busy.
        });
    }) {
        return;
    }
    let (out, killed) = child::run_within(
        test,
        &[(CHILD, test), ("BOBINE_SHUTDOWN_REPORT_MS", "500")],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!killed, "{stderr}");
    child::assert_ok(test, &out);
    assert!(stderr.contains("has been ending for"), "{stderr}");
    assert!(stderr.contains("'stubborn'"), "{stderr}");
}
