//! The blocking pool: OS threads that run calls which cannot be made non-blocking (files,
//! name lookups, foreign libraries), so that the task making them parks instead of blocking
//! its domain.
//!
//! The pool starts empty and grows on demand: a job submitted while no worker is idle starts a
//! new one, up to [`max_threads`] (`BOBINE_BLOCKING_THREADS`, default 512); beyond that, jobs
//! wait in FIFO order for a worker. A worker idle for [`KEEP_ALIVE`] exits.
//!
//! Jobs travel on one unbounded `crossbeam_channel` (FIFO, many senders, many receivers):
//! idle workers block in `recv_timeout`, and each job goes to exactly one of them. (The workers
//! are plain OS threads that are never tasks and only ever wait for a job with a timeout, which
//! the channel does; the calling task waits the one way, `Park`.) Beside the
//! channel, three counters, all read and written with `SeqCst`:
//!
//! | counter   | counts                                      | up                         | down                          |
//! |-----------|---------------------------------------------|----------------------------|-------------------------------|
//! | `queued`  | jobs submitted and not yet taken by a worker | submitter, before `send`   | worker, after `recv` gave it one |
//! | `idle`    | workers in (or entering) `recv_timeout`     | worker, before `recv`      | worker, after `recv` returns  |
//! | `threads` | workers alive (or being started)            | submitter, below the bound | worker, when it times out     |
//!
//! Rule: a job never waits while a worker could be started for it. The jobs waiting are
//! `queued`; the workers that will take one are `idle`; when `queued > idle`, one more worker
//! is needed, and it is started if `threads` is below the bound.
//!
//! Protocol:
//! 1. A submitter increments `queued`, then sends the job (in that order, so `queued` never
//!    drops below the jobs in the channel and a worker's decrement cannot underflow it).
//! 2. It then loads `idle`; if `queued` (the value its increment returned) exceeds it, it
//!    reserves a thread (`threads += 1` unless at the bound) and starts a worker. If the OS
//!    refuses the thread, the reservation is given back and the job waits for a worker that
//!    exists (the next submission tries again).
//! 3. A worker increments `idle`, then blocks in `recv_timeout(KEEP_ALIVE)`.
//! 4. Given a job, it decrements `idle`, then `queued` (in that order: between the two, a
//!    submitter over-counts the jobs waiting and at worst starts a worker too many; the other
//!    order would let it see this busy worker as idle and start none), runs the job, and goes
//!    back to 3.
//! 5. Timed out, it decrements `idle`, gives its thread back (`threads -= 1`), and only then
//!    loads `queued`. If it is zero the worker exits. Otherwise a job may have been submitted
//!    at the same moment, by a submitter that counted this worker as idle in step 2 and so
//!    started nobody: the worker takes its thread back (`threads += 1` unless at the bound, in
//!    which case a submitter or another returning worker has just taken the thread it gave
//!    back, and will take the job) and returns to 3.
//!
//! Steps 2 and 5 are a Dekker pair: the submitter writes `queued` then reads `idle` (and
//! `threads`); the exiting worker writes `idle` and `threads` then reads `queued`. With all of
//! them `SeqCst`, at least one side sees the other's write: either the submitter sees the worker
//! gone and starts another, or the worker sees the job and stays. No job is stranded by a
//! worker leaving.
//!
//! The obvious alternative, a mutex over a `VecDeque` and a condition variable (what this
//! module was before), serialises every submission and every wake-up on one lock; the channel
//! hands a job to a sleeping worker without one, and the counters stay lock-free.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::sched::park::{Park, Unparker, Wait, Wake};

/// How long an idle worker waits for a job before it exits.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_THREADS: usize = 512;

type Job = Box<dyn FnOnce() + Send>;

/// The pool: the job channel, its counters (see the module doc) and the bound.
struct Pool {
    jobs: Sender<Job>,
    work: Receiver<Job>,
    /// Jobs submitted and not yet taken by a worker.
    queued: AtomicUsize,
    /// Workers in (or about to enter) `recv_timeout`.
    idle: AtomicUsize,
    /// Workers alive, or being started.
    threads: AtomicUsize,
    max: usize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let (jobs, work) = crossbeam_channel::unbounded();
    Pool {
        jobs,
        work,
        queued: AtomicUsize::new(0),
        idle: AtomicUsize::new(0),
        threads: AtomicUsize::new(0),
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
    /// Reserves a worker thread unless the pool is at its bound.
    fn reserve_thread(&self) -> bool {
        self.threads
            .fetch_update(SeqCst, SeqCst, |n| (n < self.max).then_some(n + 1))
            .is_ok()
    }

    fn submit(&'static self, job: Job) {
        // Step 1.
        let queued = self.queued.fetch_add(1, SeqCst) + 1;
        self.jobs
            .send(job)
            .unwrap_or_else(|_| unreachable!("the pool holds a receiver for as long as it lives"));
        // Step 2.
        if queued > self.idle.load(SeqCst) && self.reserve_thread() {
            let started = std::thread::Builder::new()
                .name("bobine-blocking".into())
                .spawn(move || self.work());
            if started.is_err() {
                // Out of threads: the job waits for a worker that exists (if none does, the
                // next submission tries again).
                self.threads.fetch_sub(1, SeqCst);
            }
        }
    }

    /// Whether no job waits or runs: every worker alive waits for one (for the monitor's
    /// deadlock watch: a job that ends wakes its caller).
    fn quiet(&self) -> bool {
        self.queued.load(SeqCst) == 0 && self.idle.load(SeqCst) == self.threads.load(SeqCst)
    }

    fn work(&'static self) {
        let _helper = crate::sched::monitor::helper_thread(|| POOL.quiet());
        loop {
            // Step 3.
            self.idle.fetch_add(1, SeqCst);
            match self.work.recv_timeout(KEEP_ALIVE) {
                Ok(job) => {
                    // Step 4.
                    self.idle.fetch_sub(1, SeqCst);
                    self.queued.fetch_sub(1, SeqCst);
                    job();
                }
                Err(RecvTimeoutError::Timeout) => {
                    // Step 5.
                    self.idle.fetch_sub(1, SeqCst);
                    self.threads.fetch_sub(1, SeqCst);
                    if self.queued.load(SeqCst) == 0 || !self.reserve_thread() {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("the pool holds a sender for as long as it lives")
                }
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
/// If `f` panics (its payload). A task stopped while it waits (cancelled, or its runtime
/// ending) unwinds
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
    let call: Arc<Mutex<Call<T>>> = Arc::new(Mutex::new(Call {
        result: None,
        waiter: None,
    }));
    let theirs = call.clone();
    POOL.submit(Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let waiter = {
            let mut call = theirs.lock().unwrap_or_else(|e| e.into_inner());
            call.result = Some(r);
            call.waiter.take()
        };
        if let Some(w) = waiter {
            w.unpark();
        }
    }));
    loop {
        let park = Park::new();
        {
            let mut call = call.lock().unwrap_or_else(|e| e.into_inner());
            match call.result.take() {
                Some(Ok(v)) => return v,
                Some(Err(payload)) => std::panic::resume_unwind(payload),
                None => call.waiter = Some(park.unparker()),
            }
        }
        // A task stopped here unwinds (unless the result arrived as the stop landed: then it
        // is returned, and the stop takes effect at the next park point); the job still runs
        // to its end on the pool, and its value is dropped there.
        if park.wait_for(&Wait::hand_over("io::unblock")) == Wake::Interrupted {
            let done = call
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .result
                .is_some();
            if !done {
                crate::sched::park::stop::unwind_if_stopped();
            }
        }
    }
}

/// One [`unblock`] call, shared by the caller and its job: the job's result, and the caller's
/// unparker while it waits.
struct Call<T> {
    result: Option<std::thread::Result<T>>,
    waiter: Option<Unparker>,
}
