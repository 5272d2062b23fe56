//! The blocking pool: OS threads that run calls which cannot be made non-blocking (files,
//! name lookups, foreign libraries), so that the task making them parks instead of blocking
//! its domain.
//!
//! The pool starts empty and grows on demand: a job submitted while no worker is idle starts a
//! new one, up to [`max_threads`] (`BOBINE_BLOCKING_THREADS`, default 512); beyond that, jobs
//! wait in FIFO order for a worker. A worker idle for [`KEEP_ALIVE`] exits.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

use crate::sched::park::{Park, Unparker, Wait};

/// How long an idle worker waits for a job before it exits.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_THREADS: usize = 512;

type Job = Box<dyn FnOnce() + Send>;

/// The pool: a FIFO of jobs and its workers, under one mutex (a job is a blocking call, so
/// the mutex is cheap next to it).
///
/// Invariant: a job never waits while a worker could be started for it. After a push, if the
/// jobs waiting outnumber the workers waiting, a worker is started (below the bound). Waiting
/// workers count themselves in `idle` and leave that count themselves when they wake, so a
/// burst of jobs arriving before the woken workers run still starts new ones.
struct Pool {
    state: Mutex<State>,
    work: Condvar,
    max: usize,
}

struct State {
    jobs: VecDeque<Job>,
    /// Workers alive.
    threads: usize,
    /// Workers waiting on `work`.
    idle: usize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    state: Mutex::new(State {
        jobs: VecDeque::new(),
        threads: 0,
        idle: 0,
    }),
    work: Condvar::new(),
    max: max_threads(),
});

/// The pool's bound: `BOBINE_BLOCKING_THREADS` if set to a positive number, else 512.
fn max_threads() -> usize {
    std::env::var("BOBINE_BLOCKING_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_MAX_THREADS)
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&'static self, job: Job) {
        let mut st = self.lock();
        st.jobs.push_back(job);
        if st.jobs.len() > st.idle && st.threads < self.max {
            st.threads += 1;
            let started = std::thread::Builder::new()
                .name("bobine-blocking".into())
                .spawn(move || self.work());
            if started.is_err() {
                // Out of threads: the job waits for a worker that exists (if none does, the
                // next submission tries again).
                st.threads -= 1;
            }
        }
        drop(st);
        self.work.notify_one();
    }

    fn work(&'static self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                job();
                st = self.lock();
                continue;
            }
            st.idle += 1;
            let (next, timeout) = self
                .work
                .wait_timeout(st, KEEP_ALIVE)
                .unwrap_or_else(|e| e.into_inner());
            st = next;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                st.threads -= 1;
                return;
            }
        }
    }
}

/// Runs `f`, a call that may block (file I/O, a name lookup, a foreign library), on the
/// blocking pool while the calling task parks; its domain runs other tasks meanwhile. Returns
/// `f`'s value; a panic in `f` is resumed in the caller with its payload. Outside any task,
/// `f` simply runs on the calling thread.
///
/// The pool grows on demand up to `BOBINE_BLOCKING_THREADS` threads (default 512) and reaps
/// threads idle for 10 s; past the bound, calls wait their turn (FIFO).
///
/// ```
/// bobine::run(|| {
///     let n = bobine::io::unblock(|| std::fs::read("Cargo.toml").map(|b| b.len()));
///     assert!(n.unwrap() > 0);
/// });
/// ```
///
/// # Panics
///
/// If `f` panics (its payload). A task stopped while it waits (its runtime ending) unwinds
/// from here: `f` still runs to completion on the pool and its value is dropped there.
#[track_caller]
pub fn unblock<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if crate::sched::current_ptr().is_null() {
        return f();
    }
    let slot: Arc<Mutex<Option<std::thread::Result<T>>>> = Arc::new(Mutex::new(None));
    let park = Park::new();
    let done = Done {
        slot: slot.clone(),
        unparker: park.unparker(),
    };
    POOL.submit(Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        done.finish(r);
    }));
    // A task stopped here unwinds; the job still runs to its end on the pool, and its value
    // is dropped there.
    let why = park.wait_for(&Wait::hand_over("io::unblock"));
    let result = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    match result {
        Some(Ok(v)) => v,
        Some(Err(payload)) => std::panic::resume_unwind(payload),
        None => unreachable!("only the job ends an unblock park ({why:?})"),
    }
}

/// The job's end of an [`unblock`] call: stores the result, then wakes the caller.
struct Done<T> {
    slot: Arc<Mutex<Option<std::thread::Result<T>>>>,
    unparker: Unparker,
}

impl<T> Done<T> {
    fn finish(self, r: std::thread::Result<T>) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.unparker.unpark();
    }
}
