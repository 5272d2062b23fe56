//! `bobine::task_local!`: one value per task (per thread outside any task), made on first
//! access, dropped when the task ends (before its `join` returns), newest first, with std's
//! `AccessError` rules during destruction; in tasks (one and two domains) and on plain threads.

mod common;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bobine::thread;
use common::panics::panic_text;
use common::tasks::in_task_and_thread;

const HOUR: Duration = Duration::from_secs(3600);

bobine::task_local! {
    /// A per-task counter.
    static COUNTER: Cell<u64> = Cell::new(0);
    static LOG: RefCell<Vec<u64>> = RefCell::new(Vec::new());
    pub(crate) static INITS: Cell<u32> = {
        INIT_RUNS.fetch_add(1, Ordering::SeqCst);
        Cell::new(7)
    };
}

/// How many times `INITS`'s initialiser ran, in any task or thread.
static INIT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Counts its drop on the counter it holds, if any.
struct TracksDrop(Option<Arc<AtomicUsize>>);

impl Drop for TracksDrop {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Two tasks on one domain, interleaving at every step (yields), each see their own value; the
/// main task's value is its own as well.
#[test]
fn tasks_on_one_domain_each_see_their_own_value() {
    common::watchdog(30, "tasks_on_one_domain_each_see_their_own_value", || {
        bobine::Builder::new().domains(1).run(|| {
            COUNTER.set(1000);
            let hs: Vec<_> = (1..=2u64)
                .map(|k| {
                    thread::spawn(move || {
                        for _ in 0..100 {
                            COUNTER.set(COUNTER.get() + k);
                            LOG.with_borrow_mut(|l| l.push(k));
                            thread::yield_now();
                        }
                        (
                            COUNTER.get(),
                            LOG.with_borrow(|l| l.iter().all(|&x| x == k)),
                        )
                    })
                })
                .collect();
            let got: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(got, vec![(100, true), (200, true)]);
            assert_eq!(COUNTER.get(), 1000);
            assert!(LOG.with_borrow(Vec::is_empty));
        });
    });
}

/// A task's values are dropped when it ends, before its `join` returns, whether it returned,
/// panicked or was cancelled, and for detached tasks and the main task too; a task that never
/// used the key drops nothing.
#[test]
fn values_are_dropped_when_the_task_ends() {
    common::watchdog(30, "values_are_dropped_when_the_task_ends", || {
        bobine::Builder::new().domains(2).run(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let set = |d: &Arc<AtomicUsize>| {
                let d = d.clone();
                move || {
                    TRACK.set(Some(TracksDrop(Some(d))));
                    true
                }
            };
            let ok = thread::spawn(set(&drops));
            assert!(ok.join().unwrap());
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "dropped before join returned"
            );
            let f = set(&drops);
            let panicked = thread::spawn(move || {
                f();
                panic!("after setting");
            });
            assert!(panicked.join().is_err());
            assert_eq!(drops.load(Ordering::SeqCst), 2);
            let f = set(&drops);
            let cancelled = thread::spawn(move || {
                f();
                thread::sleep(HOUR);
            });
            thread::sleep(Duration::from_millis(10));
            cancelled.cancel();
            assert!(cancelled.join().is_err());
            assert_eq!(drops.load(Ordering::SeqCst), 3);
            let f = set(&drops);
            drop(thread::spawn(f));
            for _ in 0..1000 {
                if drops.load(Ordering::SeqCst) == 4 {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(drops.load(Ordering::SeqCst), 4);
            thread::spawn(|| COUNTER.get()).join().unwrap();
            assert_eq!(drops.load(Ordering::SeqCst), 4);
        });
        // The main task's values too, by the time `run` returns.
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        bobine::run(move || TRACK.set(Some(TracksDrop(Some(d)))));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

bobine::task_local! {
    static TRACK: RefCell<Option<TracksDrop>> = RefCell::new(None);
}

/// Nested access: `with` of one key inside `with` of another, and of the same key twice
/// (shared borrows), see the same task's values; an initialiser may use another key.
#[test]
fn nested_access_sees_the_same_values() {
    common::watchdog(30, "nested_access_sees_the_same_values", || {
        in_task_and_thread(|wh| {
            COUNTER.set(3);
            let got = COUNTER.with(|outer| {
                LOG.with_borrow_mut(|l| l.push(outer.get()));
                COUNTER.with(|inner| {
                    inner.set(inner.get() + 1);
                    assert!(std::ptr::eq(outer, inner), "{wh}: two values for one key");
                });
                outer.get()
            });
            assert_eq!(got, 4, "{wh}");
            assert_eq!(LOG.take(), vec![3], "{wh}");
            assert_eq!(DERIVED.get(), 40, "{wh}: an initialiser reads another key");
        });
    });
}

bobine::task_local! {
    static DERIVED: Cell<u64> = Cell::new(COUNTER.get() * 10);
}

/// `set` on a key not used yet makes the value without running the initialiser; `get`,
/// `take`, `replace` and the `RefCell` methods behave as std's; in a task and on a thread.
#[test]
fn cell_and_refcell_conveniences_behave_as_std() {
    common::watchdog(30, "cell_and_refcell_conveniences", || {
        in_task_and_thread(|wh| {
            let before = INIT_RUNS.load(Ordering::SeqCst);
            INITS.set(1);
            assert_eq!(INITS.get(), 1, "{wh}");
            assert_eq!(
                INIT_RUNS.load(Ordering::SeqCst),
                before,
                "{wh}: set ran the init"
            );
            assert_eq!(INITS.replace(2), 1, "{wh}");
            assert_eq!(INITS.take(), 2, "{wh}");
            assert_eq!(INITS.get(), 0, "{wh}");
            LOG.set(vec![1, 2]);
            LOG.with_borrow_mut(|l| l.push(3));
            assert_eq!(LOG.with_borrow(|l| l.clone()), vec![1, 2, 3], "{wh}");
            assert_eq!(LOG.replace(vec![9]), vec![1, 2, 3], "{wh}");
            assert_eq!(LOG.take(), vec![9], "{wh}");
        });
        // The initialiser runs once per task that reads the key first.
        let before = INIT_RUNS.load(Ordering::SeqCst);
        bobine::run(|| {
            let hs: Vec<_> = (0..3).map(|_| thread::spawn(|| INITS.get())).collect();
            for h in hs {
                assert_eq!(h.join().unwrap(), 7);
            }
        });
        assert_eq!(INIT_RUNS.load(Ordering::SeqCst), before + 3);
    });
}

/// On plain threads a key is a thread-local: each thread has its own value, dropped when the
/// thread ends.
#[test]
fn on_plain_threads_one_value_per_thread() {
    common::watchdog(30, "on_plain_threads_one_value_per_thread", || {
        let drops = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (1..=3u64)
            .map(|k| {
                let d = drops.clone();
                std::thread::spawn(move || {
                    TRACK.set(Some(TracksDrop(Some(d))));
                    for _ in 0..k {
                        COUNTER.set(COUNTER.get() + k);
                    }
                    COUNTER.get()
                })
            })
            .collect();
        let got: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got, vec![1, 4, 9]);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    });
}

/// What destructors saw, in order.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records, when dropped, what the other key and its own key give.
struct Witness(&'static str);

impl Drop for Witness {
    fn drop(&mut self) {
        let other = if self.0 == "first" { &SECOND } else { &FIRST };
        let other_ok = other.try_with(|w| w.0).map_err(|e| e.to_string());
        let own = match self.0 {
            "first" => &FIRST,
            _ => &SECOND,
        };
        let own_err = own.try_with(|_| ()).unwrap_err();
        let own_with = panic_text(|| own.with(|_| ()));
        SEEN.lock().unwrap().push(format!(
            "{} dropped; other: {other_ok:?}; own: {own_err} / {own_with}",
            self.0
        ));
    }
}

bobine::task_local! {
    static FIRST: Witness = Witness("first");
    static SECOND: Witness = Witness("second");
}

/// Destructors run newest first; one may read a key whose value is still alive, and gets
/// `AccessError` (or a panic from `with`) for its own key and for keys already destroyed.
#[test]
fn destructors_run_newest_first_and_see_destroyed_keys_as_gone() {
    common::watchdog(30, "destructors_run_newest_first", || {
        SEEN.lock().unwrap().clear();
        bobine::run(|| {
            thread::spawn(|| {
                FIRST.with(|_| ());
                SECOND.with(|_| ());
            })
            .join()
            .unwrap();
        });
        let seen = SEEN.lock().unwrap().clone();
        let gone = "already destroyed / cannot access a Task Local Storage value during or \
                    after destruction: AccessError";
        assert_eq!(
            seen,
            vec![
                format!("second dropped; other: Ok(\"first\"); own: {gone}"),
                format!("first dropped; other: Err(\"already destroyed\"); own: {gone}"),
            ]
        );
    });
}

/// Sleeps in its destructor, then counts the drop.
struct SleepyDrop(Option<Arc<AtomicUsize>>);

impl Drop for SleepyDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            thread::sleep(Duration::from_millis(5));
            c.fetch_add(1, Ordering::SeqCst);
        }
    }
}

bobine::task_local! {
    static SLEEPY: RefCell<SleepyDrop> = RefCell::new(SleepyDrop(None));
}

/// A value's destructor may block (here it sleeps) even when its task was cancelled: the stop
/// does not cut the destructor's wait short, and the value is dropped before `join` returns.
#[test]
fn a_destructor_may_block_in_a_cancelled_task() {
    common::watchdog(30, "a_destructor_may_block_in_a_cancelled_task", || {
        bobine::Builder::new().domains(2).run(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let d = drops.clone();
            let h = thread::spawn(move || {
                SLEEPY.set(SleepyDrop(Some(d)));
                thread::sleep(HOUR);
            });
            thread::sleep(Duration::from_millis(10));
            h.cancel();
            assert!(h.join().unwrap_err().is::<bobine::TaskCancelled>());
            assert_eq!(drops.load(Ordering::SeqCst), 1);
        });
    });
}
