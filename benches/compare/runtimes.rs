//! The runtimes the loops need beyond `benches/common`'s: bobine on two domains with its tasks
//! split evenly between them, and tokio's multi-thread runtime.
//!
//! bobine has no public way to put a task on a given domain: a task starts on the domain that
//! spawned it, and an idle domain takes half of a busy domain's never-started tasks when it asks
//! (tasks never migrate once started). [`split_evenly`] gets an even split the way
//! `benches/events.rs` does for its two-domain ping-pong: spawn every task, block domain 0's
//! thread for 2 ms so that domain 1 wakes up and asks, then yield so that domain 0 hands the
//! tasks over; each task says where it started, and a runtime where the split came out
//! otherwise is thrown away ([`REBUILDS`] counts them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The body of one task placed by [`split_evenly`].
pub type Body = Box<dyn FnOnce() + Send>;

/// Runtimes [`split_evenly`] threw away in this process because the split was uneven.
pub static REBUILDS: AtomicU64 = AtomicU64::new(0);

/// Runs the bodies `make` returns as tasks of a two-domain bobine runtime, half of them started
/// on each domain, and returns the time from their release to the last one's end. Rebuilds the
/// runtime (with fresh bodies) until the split is even.
pub fn split_evenly(make: impl Fn() -> Vec<Body>) -> Duration {
    for _ in 0..100 {
        if let Some(d) = split_once(make()) {
            return d;
        }
        REBUILDS.fetch_add(1, SeqCst);
    }
    panic!("bobine: no even split of the tasks between two domains in 100 runtimes");
}

/// One try of [`split_evenly`]: `None` (the bodies dropped unrun) if the split was uneven.
fn split_once(bodies: Vec<Body>) -> Option<Duration> {
    let n = bodies.len();
    bobine::Builder::new().domains(2).run(move || {
        let home = std::thread::current().id();
        let gate = Arc::new(bobine::sync::Semaphore::new(0));
        let go = Arc::new(AtomicBool::new(false));
        // Tasks started, and those of them started on domain 0 (the thread of `run`).
        let started = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let (gate, go, started) = (gate.clone(), go.clone(), started.clone());
                bobine::thread::spawn(move || {
                    if std::thread::current().id() == home {
                        started.1.fetch_add(1, SeqCst);
                    }
                    started.0.fetch_add(1, SeqCst);
                    gate.acquire();
                    if go.load(SeqCst) {
                        body();
                    }
                })
            })
            .collect();
        // Block domain 0 (not a yield) long enough for the idle domain 1 to wake up and ask for
        // half of the never-started tasks, then yield so that domain 0 hands them over.
        std::thread::sleep(Duration::from_millis(2));
        while started.0.load(SeqCst) < n {
            bobine::thread::yield_now();
        }
        let even = started.1.load(SeqCst) == n / 2;
        go.store(even, SeqCst);
        let start = Instant::now();
        for _ in 0..n {
            gate.release();
        }
        for t in tasks {
            t.join().expect("a placed task panicked");
        }
        even.then(|| start.elapsed())
    })
}

/// Runs `fut` as a spawned task of a fresh tokio multi-thread runtime with 2 workers (the
/// two-thread counterpart of `common::peers::tokio_run`).
pub fn tokio_mt_run<F>(fut: F) -> Duration
where
    F: Future<Output = Duration> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move { tokio::spawn(fut).await.expect("driver task panicked") })
}
