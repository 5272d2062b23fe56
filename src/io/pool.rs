//! The blocking pool: OS threads that run calls which cannot be made non-blocking (files,
//! name lookups, foreign libraries), so that the task making them parks instead of blocking
//! its domain.
//!
//! The pool starts empty and grows on demand: a job submitted while no worker is idle starts a
//! new one, up to [`max_threads`] (`BOBINE_BLOCKING_THREADS`, default 512); beyond that, jobs
//! wait in FIFO order for a worker. A worker idle for [`KEEP_ALIVE`] exits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::sched::park::{Park, Unparker, Wake};

/// How long an idle worker waits for a job before it exits.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_THREADS: usize = 512;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    /// Workers alive.
    threads: AtomicUsize,
    /// Workers waiting for a job.
    idle: AtomicUsize,
    /// Serialises the decision to start a worker.
    grow: Mutex<()>,
    max: usize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let (jobs, queue) = crossbeam_channel::unbounded();
    Pool {
        jobs,
        queue,
        threads: AtomicUsize::new(0),
        idle: AtomicUsize::new(0),
        grow: Mutex::new(()),
        max: max_threads(),
    }
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
    fn submit(&'static self, job: Job) {
        self.jobs
            .send(job)
            .expect("the pool's receiver lives as long as the pool");
        if self.idle.load(Ordering::SeqCst) > 0 {
            return;
        }
        let _g = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        if self.idle.load(Ordering::SeqCst) == 0 && self.threads.load(Ordering::SeqCst) < self.max {
            self.threads.fetch_add(1, Ordering::SeqCst);
            let started = std::thread::Builder::new()
                .name("bobine-blocking".into())
                .spawn(move || self.work());
            if started.is_err() {
                // Out of threads: the job waits for a worker that exists (if none does, the
                // next submission tries again).
                self.threads.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn work(&'static self) {
        loop {
            self.idle.fetch_add(1, Ordering::SeqCst);
            let job = self.queue.recv_timeout(KEEP_ALIVE);
            self.idle.fetch_sub(1, Ordering::SeqCst);
            match job {
                Ok(job) => job(),
                Err(RecvTimeoutError::Timeout) => {
                    // Leave, unless a job slipped in as we timed out.
                    match self.queue.try_recv() {
                        Ok(job) => job(),
                        Err(_) => {
                            self.threads.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
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
/// If `f` panics (its payload), or if the task is interrupted while it waits (its runtime
/// ending): `f` then runs to completion on the pool and its value is dropped there.
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
    let why = park.wait("io::unblock");
    let result = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    match result {
        Some(Ok(v)) => v,
        Some(Err(payload)) => std::panic::resume_unwind(payload),
        None => {
            debug_assert_eq!(why, Wake::Interrupted, "only the job wakes an unblock park");
            crate::sched::interrupted_wait("io::unblock")
        }
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
